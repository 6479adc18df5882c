//! `iris contacts add|remove|list`, `iris discover`, `iris block` and `iris unblock`: one JSON
//! line per contact, registered number or block changed.

use std::collections::HashMap;

use iris_client::pb;
use iris_client::{Client, ClientError};
use serde_json::{json, Value};

use super::one_shot::{account_of, accounts_of, CommonArgs};

/// The `iris contacts` subcommands; each prints the whole list after it, one line per contact.
#[derive(clap::Subcommand, Debug)]
pub enum ContactsCommand {
    /// Add people (by phone) to my contacts.
    Add(PhonesArgs),
    /// Remove people (by phone) from my contacts.
    Remove(PhonesArgs),
    /// Print my contacts.
    List(CommonArgs),
}

impl ContactsCommand {
    /// The flags every subcommand has.
    pub fn common(&self) -> &CommonArgs {
        match self {
            Self::Add(a) | Self::Remove(a) => &a.common,
            Self::List(a) => a,
        }
    }
}

/// Flags of `iris contacts add|remove` and `iris presence show`.
#[derive(clap::Args, Debug)]
pub struct PhonesArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Phone numbers (E.164), comma-separated (presence: at most 1,000).
    #[arg(long, value_delimiter = ',', required = true)]
    pub phones: Vec<String>,
}

/// Flags of `iris discover`.
#[derive(clap::Args, Debug)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Phone numbers to look up (at most 1,000).
    #[arg(required = true, num_args = 1..)]
    pub phones: Vec<String>,
}

/// Flags of `iris block|unblock`.
#[derive(clap::Args, Debug)]
pub struct BlockArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The phone number (E.164).
    #[arg(long)]
    pub phone: String,
}

/// Runs an `iris contacts` subcommand; answers the list after it.
pub async fn contacts(client: &Client, command: &ContactsCommand) -> anyhow::Result<Vec<Value>> {
    let list = match command {
        ContactsCommand::Add(a) => client.contacts_add(discovered_accounts(client, &a.phones).await?).await?,
        // Contacts are looked up for free, so removal resolves them one by one.
        ContactsCommand::Remove(a) => client.contacts_remove(accounts_of(client, &a.phones).await?).await?,
        ContactsCommand::List(_) => client.contacts().await?,
    };
    Ok(list.iter().map(contact_json).collect())
}

/// The accounts of `phones`, in order, found with one discovery request per 1,000 numbers: a
/// lookup per number would cost each stranger a discovery request of its own, and adding them
/// costs another. A number nobody has (or whose account blocked me) is `NOT_FOUND`, naming it.
async fn discovered_accounts(client: &Client, phones: &[String]) -> anyhow::Result<Vec<u64>> {
    let phones = phones.iter().map(|p| iris_proto::phone::validate(p)).collect::<Result<Vec<String>, _>>()?;
    let mut found = HashMap::new();
    for chunk in phones.chunks(iris_server::contacts::DISCOVER_PHONES_MAX) {
        found.extend(client.discover(chunk.to_vec()).await?.into_iter().map(|c| (c.phone, c.account_id)));
    }
    let account_of = |phone: &String| {
        found.get(phone).copied().ok_or_else(|| {
            let code = pb::ErrorCode::NotFound as i32;
            ClientError::Rejected(pb::Error { code, message: format!("{phone} is not on Iris"), ..Default::default() })
        })
    };
    Ok(phones.iter().map(account_of).collect::<Result<_, _>>()?)
}

/// Runs `iris discover`: the registered numbers among those asked. Malformed numbers are sent
/// as typed (the server answers them as not registered).
pub async fn discover(client: &Client, a: &DiscoverArgs) -> anyhow::Result<Vec<Value>> {
    Ok(client.discover(a.phones.clone()).await?.iter().map(contact_json).collect())
}

/// Runs `iris block` (`blocked`) or `iris unblock`.
pub async fn block(client: &Client, a: &BlockArgs, blocked: bool) -> anyhow::Result<Vec<Value>> {
    let account_id = account_of(client, &a.phone).await?;
    if blocked {
        client.block(account_id).await?;
    } else {
        client.unblock(account_id).await?;
    }
    Ok(vec![json!({ "account_id": account_id, "phone": a.phone, "blocked": blocked })])
}

/// Flags of `iris report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The phone number (E.164) of the account to report.
    #[arg(long)]
    pub phone: String,
    /// Why, in your words (at most 500 bytes).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// A message of theirs to disclose with the report, as you read it (repeatable; at most 10).
    #[arg(long = "message")]
    pub messages: Vec<String>,
}

/// Reports an account for abuse; answers `{"account_id","phone","report_id","repeated"}`.
pub async fn report(client: &Client, a: &ReportArgs) -> anyhow::Result<Vec<Value>> {
    let account_id = account_of(client, &a.phone).await?;
    let messages = a
        .messages
        .iter()
        .map(|m| pb::ReportedMessage { content: m.clone().into_bytes().into(), ..Default::default() })
        .collect();
    let r = client.report(account_id, a.reason.clone(), messages).await?;
    Ok(vec![json!({ "account_id": account_id, "phone": a.phone, "report_id": r.report_id, "repeated": r.repeated })])
}

fn contact_json(c: &pb::Contact) -> Value {
    json!({ "account_id": c.account_id, "phone": c.phone })
}

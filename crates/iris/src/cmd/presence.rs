//! `iris presence show|subscribe|privacy`: who is online (or when they were last seen) as JSON
//! lines `{"account_id","phone","online","last_seen_ms"}`, and who may see my own presence.
//! What a line shows already honours the watched account's privacy and blocks (the server
//! decides; a hidden state looks like "offline, last seen 0").

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use iris_client::pb::{self, PresencePrivacy};
use iris_client::{Client, ClientError, Event};
use serde_json::{json, Value};

use super::one_shot::{accounts_of, CommonArgs};
use super::session::Session;

/// Silence after which `iris presence subscribe` without `--count` stops.
const DEFAULT_SILENCE_S: f64 = 5.0;

/// The `iris presence` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PresenceCommand {
    /// Print the current presence of these people, one line each.
    Show(super::contacts::PhonesArgs),
    /// Print the current presence of these people, then each change as it is pushed.
    #[command(
        visible_alias = "watch",
        after_help = "Stops after --count pushes (the first state lines are not counted), or after --timeout \
seconds without a push. Defaults: without --count, stop after 5 s of silence; with --count, wait as long as it \
takes. --timeout 0 waits forever."
    )]
    Subscribe(WatchArgs),
    /// Set who may see my online status and last seen: everyone, contacts or nobody.
    Privacy(PrivacyArgs),
}

/// Flags of `iris presence subscribe`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// Phone numbers (E.164), comma-separated (at most 1,000).
    #[arg(long, value_delimiter = ',', required = true)]
    pub phones: Vec<String>,
    /// Stop after this many pushes.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds without a push (0 = never) [default: 5 without --count, never with it].
    #[arg(long)]
    pub timeout: Option<f64>,
}

/// Who may see my presence.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum Audience {
    /// Anyone who asks.
    Everyone,
    /// Only accounts in my contact list.
    Contacts,
    /// Nobody: I show as offline with no last seen.
    Nobody,
}

/// Flags of `iris presence privacy`.
#[derive(clap::Args, Debug)]
pub struct PrivacyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Who may see my online status and last seen.
    #[arg(value_enum)]
    pub audience: Audience,
}

/// Runs `show` and `privacy` (`subscribe` streams: see [`watch`]).
pub async fn once(client: &Client, command: &PresenceCommand) -> anyhow::Result<Vec<Value>> {
    match command {
        PresenceCommand::Show(a) => {
            let (states, phones) = subscribe(client, &a.phones).await?;
            Ok(states.iter().map(|p| presence_json(p, &phones)).collect())
        }
        PresenceCommand::Privacy(a) => {
            let privacy = match a.audience {
                Audience::Everyone => PresencePrivacy::Everyone,
                Audience::Contacts => PresencePrivacy::Contacts,
                Audience::Nobody => PresencePrivacy::Nobody,
            };
            client.set_presence(false, Some(privacy)).await?;
            let name = privacy.as_str_name().trim_start_matches("PRESENCE_PRIVACY_");
            Ok(vec![json!({ "privacy": name })])
        }
        PresenceCommand::Subscribe(_) => anyhow::bail!("`presence subscribe` streams: run it through `watch`"),
    }
}

/// Runs `iris presence subscribe`: the state lines, then one line per push until the count or
/// the silence limit. Inbox items are left unacked for `iris recv`.
pub async fn watch(args: &WatchArgs) -> anyhow::Result<()> {
    let silence = match (args.timeout, args.count) {
        (Some(s), _) if s > 0.0 => Some(Duration::from_secs_f64(s)),
        (Some(_), _) | (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs_f64(DEFAULT_SILENCE_S)),
    };
    let mut session = Session::open(&args.profile, false).await?;
    let outcome = stream(&mut session, args, silence).await;
    session.close().await?;
    outcome
}

async fn stream(session: &mut Session, args: &WatchArgs, silence: Option<Duration>) -> anyhow::Result<()> {
    let answer = tokio::time::timeout(Duration::from_secs(30), subscribe(&session.client, &args.phones)).await;
    let (states, phones) = answer.map_err(|_| ClientError::Timeout("waiting for the server's answer"))??;
    for p in &states {
        println!("{}", presence_json(p, &phones));
    }
    let mut n_pushes = 0;
    loop {
        if args.count.is_some_and(|count| n_pushes >= count) {
            return Ok(());
        }
        let event = match silence {
            Some(limit) => match tokio::time::timeout(limit, session.events.next()).await {
                Ok(event) => event,
                Err(_) => return Ok(()),
            },
            None => session.events.next().await,
        };
        match event {
            None => return Err(anyhow!("the client stopped")),
            Some(Event::Fatal(err)) => return Err(ClientError::Fatal(err).into()),
            Some(Event::Presence(p)) if phones.contains_key(&p.account_id) => {
                n_pushes += 1;
                println!("{}", presence_json(&p, &phones));
            }
            Some(_) => {}
        }
    }
}

/// Subscribes to the accounts of `phones`; answers their state and account → phone.
async fn subscribe(
    client: &Client,
    phones: &[String],
) -> anyhow::Result<(Vec<pb::PresenceUpdate>, HashMap<u64, String>)> {
    let ids = accounts_of(client, phones).await?;
    let names: HashMap<u64, String> = ids.iter().copied().zip(phones.iter().cloned()).collect();
    Ok((client.presence_subscribe(ids).await?, names))
}

fn presence_json(p: &pb::PresenceUpdate, phones: &HashMap<u64, String>) -> Value {
    json!({
        "account_id": p.account_id,
        "phone": phones.get(&p.account_id).map_or("", String::as_str),
        "online": p.online,
        "last_seen_ms": p.last_seen_ms,
    })
}

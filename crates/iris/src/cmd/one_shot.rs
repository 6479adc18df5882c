//! What the one-shot commands share: their common flags, and phone numbers resolved to
//! accounts through the HTTP API where the protocol wants account ids.

use std::path::PathBuf;

use iris_client::Client;

/// Flags every one-shot command has.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// Seconds to wait for the server's answer (retries included).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Message actions (reply, forward, edit, react): unencrypted, one payload the server can
    /// read (for tests and benchmarks).
    #[arg(long)]
    pub plaintext: bool,
}

/// The account of an E.164 phone number (`ERROR_CODE_NOT_FOUND` when nobody has it).
pub async fn account_of(client: &Client, phone: &str) -> anyhow::Result<u64> {
    let phone = iris_proto::phone::validate(phone)?;
    Ok(client.account_info(&phone).await?.account_id)
}

/// Accounts of several phone numbers, in order.
pub async fn accounts_of(client: &Client, phones: &[String]) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::with_capacity(phones.len());
    for phone in phones {
        ids.push(account_of(client, phone).await?);
    }
    Ok(ids)
}

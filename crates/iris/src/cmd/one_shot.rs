//! What the one-shot commands (groups, contacts, actions, presence, timers) share: their
//! common flags, how one runs, and phone numbers resolved to accounts through the HTTP API
//! where the protocol wants account ids.

use std::path::PathBuf;
use std::time::Duration;

use iris_client::{Client, ClientError};
use serde_json::Value;

use super::session::Session;

/// Flags every one-shot command has.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// Seconds to wait for the server's answer (retries included).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// The commands that carry a message (group send, reply, forward, edit, react):
    /// unencrypted, one payload the server can read (for tests and benchmarks).
    #[arg(long)]
    pub plaintext: bool,
}

/// Opens the profile's device (with its end-to-end keys unless `plaintext`), runs `execute`
/// within the command's timeout, closes the device (saving the profile) and prints the
/// answer's JSON lines on stdout.
pub async fn run(
    common: &CommonArgs,
    plaintext: bool,
    execute: impl AsyncFnOnce(&Session) -> anyhow::Result<Vec<Value>>,
) -> anyhow::Result<()> {
    let limit = Duration::from_secs(common.timeout);
    let session = Session::open_as(&common.profile, false, plaintext).await?;
    let answer = tokio::time::timeout(limit, execute(&session)).await;
    session.close().await?;
    let lines = answer.map_err(|_| ClientError::Timeout("waiting for the server's answer"))??;
    for line in lines {
        println!("{line}");
    }
    Ok(())
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

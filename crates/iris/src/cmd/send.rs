//! `iris send`: one text message, answered by one JSON line once the server stored it.

use std::path::PathBuf;
use std::time::Duration;

use iris_client::pb::SendStatus;
use iris_client::{ClientError, Recipient};
use serde::Serialize;

use super::session::Session;

/// Flags of `iris send`.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// Recipient's phone number, E.164.
    #[arg(long)]
    pub to: String,
    /// Seconds to wait for the server to accept the message (retries included).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Send it unencrypted (one payload the server can read; for tests and benchmarks).
    #[arg(long)]
    pub plaintext: bool,
    /// The text; several words are joined with spaces.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    pub text: Vec<String>,
}

/// The answer, as printed (field order is the documented one).
#[derive(Serialize)]
struct SendLine<'a> {
    server_msg_id: u64,
    server_ts_ms: u64,
    status: &'a str,
    client_msg_id: &'a str,
    duplicate: bool,
    encrypted: bool,
}

/// Sends (end-to-end encrypted unless `--plaintext`) and prints
/// `{"server_msg_id","server_ts_ms","status","client_msg_id","duplicate","encrypted"}`.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let to = iris_proto::phone::validate(&args.to)?;
    let text = args.text.join(" ");
    let session = Session::open_as(&args.profile, false, args.plaintext).await?;
    let send = async {
        match &session.e2e {
            None => session.client.send(Recipient::Phone(to), text.into_bytes()).await.map_err(anyhow::Error::from),
            Some(e2e) => {
                let account = session.client.account_info(&to).await?.account_id;
                e2e.send_text(account, &text).await.map_err(anyhow::Error::from)
            }
        }
    };
    let sent = tokio::time::timeout(Duration::from_secs(args.timeout), send).await;
    session.close().await?;
    let result = sent.map_err(|_| ClientError::Timeout("waiting for the server to accept the message"))??;
    let encrypted = !args.plaintext;
    let status = SendStatus::try_from(result.status).unwrap_or(SendStatus::Unspecified);
    let line = SendLine {
        server_msg_id: result.server_msg_id,
        server_ts_ms: result.server_ts_ms,
        status: status.as_str_name().trim_start_matches("SEND_STATUS_"),
        client_msg_id: &result.client_msg_id,
        duplicate: result.duplicate,
        encrypted,
    };
    let line = serde_json::to_string(&line)?;
    println!("{line}");
    Ok(())
}

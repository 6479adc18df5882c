//! `iris send`: one text message, or a file as media (`--file`, uploaded with a progress bar,
//! encrypted unless `--plaintext`), answered by one JSON line once the server stored it.

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
    /// Send this file as media (photo, video, voice note or document, told by its bytes); the
    /// text becomes its caption.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// With --file: upload the file unencrypted, so the server strips an image's metadata and
    /// makes its thumbnail (by default the file is encrypted here and the server sees ciphertext).
    #[arg(long, requires = "file")]
    pub plaintext: bool,
    /// The text (the caption with --file); several words are joined with spaces.
    #[arg(required_unless_present = "file", num_args = 1.., allow_hyphen_values = true)]
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
    /// With --file: the blobs the message references.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    media_ids: Vec<String>,
}

/// Sends and prints `{"server_msg_id","server_ts_ms","status","client_msg_id","duplicate"}`.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let to = iris_proto::phone::validate(&args.to)?;
    let text = args.text.join(" ");
    let session = Session::open(&args.profile, false).await?;
    let mut media_ids = Vec::new();
    let sent = match &args.file {
        Some(path) => {
            let msg = match super::attach::prepare(&session.client, path, args.plaintext, &to, &text).await {
                Ok(msg) => msg,
                Err(e) => {
                    session.close().await?;
                    return Err(e);
                }
            };
            media_ids = msg.media_ids.clone();
            tokio::time::timeout(Duration::from_secs(args.timeout), session.client.send_message(msg)).await
        }
        None => {
            let send = session.client.send(Recipient::Phone(to), text.into_bytes());
            tokio::time::timeout(Duration::from_secs(args.timeout), send).await
        }
    };
    session.close().await?;
    let result = sent.map_err(|_| ClientError::Timeout("waiting for the server to accept the message"))??;
    let status = SendStatus::try_from(result.status).unwrap_or(SendStatus::Unspecified);
    let line = SendLine {
        server_msg_id: result.server_msg_id,
        server_ts_ms: result.server_ts_ms,
        status: status.as_str_name().trim_start_matches("SEND_STATUS_"),
        client_msg_id: &result.client_msg_id,
        duplicate: result.duplicate,
        media_ids,
    };
    let line = serde_json::to_string(&line)?;
    println!("{line}");
    Ok(())
}

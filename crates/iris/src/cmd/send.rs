//! `iris send`: one text message, or a file as media (`--file`, uploaded with a progress bar,
//! encrypted unless `--plaintext`), answered by one JSON line once the server stored it.

use std::path::PathBuf;
use std::time::Duration;

use iris_client::pb::{self, SendStatus};
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
    /// Send it unencrypted: one payload the server can read, and with --file the file uploaded
    /// as it is, so the server strips an image's metadata and makes its thumbnail (by default the
    /// message is end-to-end encrypted and the file encrypted here; the server sees ciphertext).
    #[arg(long)]
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
    encrypted: bool,
    /// With --file: the blobs the message references.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    media_ids: Vec<String>,
}

/// Sends (end-to-end encrypted unless `--plaintext`) and prints
/// `{"server_msg_id","server_ts_ms","status","client_msg_id","duplicate","encrypted"}`, plus
/// `media_ids` with `--file`.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let to = iris_proto::phone::validate(&args.to)?;
    let text = args.text.join(" ");
    let session = Session::open_as(&args.profile, false, args.plaintext).await?;
    let media = match &args.file {
        Some(path) => match super::attach::prepare(&session.client, path, args.plaintext, &text).await {
            Ok(media) => Some(media),
            Err(e) => {
                session.close().await?;
                return Err(e);
            }
        },
        None => None,
    };
    let media_ids = media.as_ref().map(|(_, ids)| ids.clone()).unwrap_or_default();
    let send = async {
        match (&session.e2e, media) {
            (None, None) => {
                session.client.send(Recipient::Phone(to), text.into_bytes()).await.map_err(anyhow::Error::from)
            }
            (None, Some((media, media_ids))) => {
                let msg = pb::SendMessage {
                    client_msg_id: iris_client::new_client_msg_id(),
                    to_phone: to,
                    body: Some(pb::send_message::Body::Payload(iris_client::media::media_payload(
                        media.media,
                        &media.caption,
                    ))),
                    media_ids,
                    ..Default::default()
                };
                session.client.send_message(msg).await.map_err(anyhow::Error::from)
            }
            (Some(e2e), media) => {
                let account = session.client.account_info(&to).await?.account_id;
                match media {
                    None => e2e.send_text(account, &text).await,
                    Some((media, media_ids)) => e2e.send_media(account, &media, media_ids).await,
                }
                .map_err(anyhow::Error::from)
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
        media_ids,
    };
    let line = serde_json::to_string(&line)?;
    println!("{line}");
    Ok(())
}

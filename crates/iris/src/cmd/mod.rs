//! The client commands (`login`, `account delete`, `send`, `recv`, `chat`, `group`, and in `social` contacts,
//! blocks, message actions and presence) and what they share: opening a client from a profile,
//! error reporting as a JSON line, and quiet logging.

pub mod account;
mod actions;
pub mod admin;
mod attach;
pub mod call;
pub mod chat;
mod contacts;
pub mod devices;
pub mod group;
pub mod identity;
mod keys;
pub mod login;
mod one_shot;
mod presence;
pub mod push;
pub mod recv;
pub mod send;
mod session;
pub mod social;
pub mod timer;

use std::future::Future;

use iris_client::pb::ReceiptType;
use iris_client::ClientError;

/// Runs a client command with SDK logs on stderr (level from `IRIS_LOG`, default `error`, so
/// stdout stays machine-readable and the terminal quiet).
pub async fn with_logging(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IRIS_LOG").unwrap_or_else(|_| "error".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    command.await
}

/// Prints a failed command's error on stderr as one JSON line `{"code","message"}`: the wire
/// error name when the server gave one (`ERROR_CODE_UNKNOWN_RECIPIENT`), else a `CLIENT_*` kind.
pub fn report_error(err: &anyhow::Error) {
    let client_error = err.downcast_ref::<ClientError>();
    let code = client_error.map_or("CLIENT_ERROR", ClientError::code_name);
    let mut line = serde_json::json!({ "code": code, "message": format!("{err:#}") });
    if let Some(ms) = client_error.and_then(ClientError::retry_after_ms) {
        line["retry_after_ms"] = ms.into();
    }
    eprintln!("{line}");
}

/// `DELIVERED` / `READ` for a receipt's wire type.
pub fn receipt_name(receipt_type: i32) -> &'static str {
    match ReceiptType::try_from(receipt_type) {
        Ok(ReceiptType::Delivered) => "DELIVERED",
        Ok(ReceiptType::Read) => "READ",
        _ => "UNSPECIFIED",
    }
}

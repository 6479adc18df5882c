//! `iris keys`: this device's end-to-end identity and its fingerprint, and with `--peer` the
//! safety number of the conversation with another person, for two people to compare (read out,
//! or side by side): equal numbers mean nobody sits in the middle.

use std::path::PathBuf;

use serde_json::json;

use super::one_shot::account_of;
use super::session::Session;

/// Flags of `iris keys`.
#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// Also print the safety number of the conversation with this phone number (E.164).
    #[arg(long)]
    pub peer: Option<String>,
}

/// Prints `{"account_id","device_id","curve25519","ed25519","fingerprint"}` and, with `--peer`,
/// `{"peer_phone","peer_account_id","safety_number"}`.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let session = Session::open_encrypted(&args.profile, false).await?;
    let e2e = session.e2e.as_ref().expect("opened encrypted");
    let creds = session.client.credentials();
    let (curve25519, ed25519) = e2e.identity_keys().await;
    let mut lines = vec![json!({
        "account_id": creds.account_id,
        "device_id": creds.device_id,
        "curve25519": curve25519,
        "ed25519": ed25519,
        "fingerprint": e2e.fingerprint().await,
    })];
    if let Some(phone) = &args.peer {
        let peer = account_of(&session.client, phone).await?;
        lines.push(json!({
            "peer_phone": phone,
            "peer_account_id": peer,
            "safety_number": e2e.safety_number(peer).await?,
        }));
    }
    session.close().await?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

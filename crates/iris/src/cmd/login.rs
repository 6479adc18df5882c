//! `iris login`: phone number → one-time code → device credentials, saved as a profile.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use iris_client::HttpApi;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::session::Session;
use crate::profile::{key_store_path, new_e2e_secret, Profile};

/// The code every dev-mode server accepts.
pub(super) const DEV_CODE: &str = "000000";

/// Flags of `iris login`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// Base URL of the server's HTTP API.
    #[arg(long, env = "IRIS_SERVER", default_value = "http://127.0.0.1:7701")]
    pub server: String,
    /// The account's phone number, E.164 (`+14155550123`); the account is created on first login.
    #[arg(long)]
    pub phone: String,
    /// A label for this device, shown in device lists.
    #[arg(long, default_value = "iris-cli")]
    pub device_name: String,
    /// Where to write the profile (server URL, credentials, inbox cursor), with mode 0600.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// The one-time code, when already received: skips requesting a new one. Without it, a dev
    /// server's fixed code is used, or the code is read from the terminal (or stdin).
    #[arg(long)]
    pub code: Option<String>,
    /// Overwrite an existing profile. Each login links a new device (5 per account at most).
    #[arg(long)]
    pub force: bool,
    /// Do not create end-to-end keys (a plaintext-only device, for tests and benchmarks).
    #[arg(long)]
    pub plaintext: bool,
}

/// Logs in and prints `{"account_id","device_id","phone"}`.
pub async fn run(args: LoginArgs) -> anyhow::Result<()> {
    let phone = iris_proto::phone::validate(&args.phone)?;
    if args.profile.exists() && !args.force {
        bail!("profile {} exists; pass --force to replace it with a new device", args.profile.display());
    }
    let api = HttpApi::new(&args.server)?;
    let code = match args.code {
        Some(code) => code,
        None => {
            let info = api.server_info().await.context("asking the server for its info")?;
            api.request_code(&phone).await.context("requesting a one-time code")?;
            if info.dev {
                DEV_CODE.to_owned()
            } else {
                prompt_code(&phone).await?
            }
        }
    };
    let credentials = api.verify(&phone, code.trim(), &args.device_name).await.context("verifying the code")?;
    let line = serde_json::json!({
        "account_id": credentials.account_id,
        "device_id": credentials.device_id,
        "phone": credentials.phone,
    });
    let e2e_secret = (!args.plaintext).then(new_e2e_secret);
    Profile { server: api.base_url().to_owned(), credentials, last_acked_seq: 0, e2e_secret }.save(&args.profile)?;
    if !args.plaintext {
        // A new identity for a new device: a store left by an earlier login is replaced.
        let _ = std::fs::remove_file(key_store_path(&args.profile));
        // Publishes the device's identity and keys right away, so it is reachable encrypted.
        Session::open_encrypted(&args.profile, false).await?.close().await?;
    }
    println!("{line}");
    Ok(())
}

/// Reads a one-time code from the terminal (or stdin).
pub(super) async fn prompt_code(phone: &str) -> anyhow::Result<String> {
    eprint!("Enter the code sent to {phone}: ");
    let mut line = String::new();
    BufReader::new(tokio::io::stdin()).read_line(&mut line).await?;
    let code = line.trim().to_owned();
    if code.is_empty() {
        bail!("no code entered");
    }
    Ok(code)
}

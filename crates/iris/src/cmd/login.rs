//! `iris login`: phone number → one-time code → device credentials, saved as a profile.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use iris_client::api::LinkPending;
use iris_client::{HttpApi, Verified};
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
    /// Register this device as the account's new primary (a new phone): every other device of
    /// the account is logged out. Needs `--pin` if the number has a registration PIN.
    #[arg(long)]
    pub new_primary: bool,
    /// The registration PIN, with `--new-primary`.
    #[arg(long)]
    pub pin: Option<String>,
    /// Approve the link at once with the primary's profile on this machine, instead of
    /// waiting for `iris devices approve CODE` on the primary.
    #[arg(long)]
    pub approve_with: Option<PathBuf>,
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
    let credentials = if args.new_primary {
        api.register_primary(&phone, code.trim(), &args.device_name, args.pin.as_deref()).await
    } else {
        match api.verify_or_link(&phone, code.trim(), &args.device_name).await.context("verifying the code")? {
            Verified::Registered(creds) => Ok(creds),
            Verified::LinkPending(pending) => wait_for_approval(&api, &pending, args.approve_with.as_deref()).await,
        }
    }
    .context("verifying the code")?;
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

/// Shows the link code (text and QR code, on stderr) and waits until the primary approves it,
/// or approves it with `approve_with`, the primary's profile.
async fn wait_for_approval(
    api: &HttpApi,
    pending: &LinkPending,
    approve_with: Option<&std::path::Path>,
) -> Result<iris_client::api::Credentials, iris_client::ClientError> {
    eprintln!(
        "This account already has a primary device. On it, run:\n\n    iris devices approve {}\n",
        pending.link_code
    );
    if let Ok(qr) = qrcode::QrCode::new(format!("iris-link:{}", pending.link_code)) {
        eprintln!("{}", qr.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build());
    }
    eprintln!("(the code expires in {} s)", pending.expires_in_s);
    println!("{}", serde_json::json!({"link_code": pending.link_code, "expires_in_s": pending.expires_in_s}));
    if let Some(primary) = approve_with {
        let session = Session::open(primary, false)
            .await
            .map_err(|e| iris_client::ClientError::InvalidArgument(format!("{e:#}")))?;
        let approved = session.client.approve_link(&pending.link_code).await;
        let _ = session.close().await;
        approved?;
    }
    api.wait_for_link(pending, std::time::Duration::from_secs(1)).await
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

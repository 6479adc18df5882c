//! `iris push register|unregister|test`: this device's push target (the provider and the token
//! the app got from it) and a test wake-up, so an operator can check a provider's setup end to
//! end from a shell.

use std::path::PathBuf;

use iris_client::pb::PushProvider;
use serde_json::json;

use super::session::Session;

/// Push-notification subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PushCommand {
    /// Make (provider, token) this device's push target, replacing any earlier one.
    Register(RegisterArgs),
    /// Remove this device's push target.
    Unregister(ProfileArgs),
    /// Send one wake-up to this device's target now and print whether the provider took it.
    Test(ProfileArgs),
}

/// The profile flag every push subcommand takes.
#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
}

/// Flags of `iris push register`.
#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// `webhook` (UnifiedPush or any HTTPS receiver), `fcm` or `apns`.
    #[arg(long)]
    pub provider: String,
    /// The provider's token: the https:// URL for `webhook`, the registration token for `fcm`,
    /// the hex device token for `apns`.
    #[arg(long)]
    pub token: String,
}

/// The wire provider named on the command line (an unknown name is sent as UNSPECIFIED, which
/// the server refuses with PUSH_PROVIDER_UNAVAILABLE).
fn provider(name: &str) -> PushProvider {
    match name.to_ascii_lowercase().as_str() {
        "webhook" | "unifiedpush" => PushProvider::Webhook,
        "fcm" => PushProvider::Fcm,
        "apns" => PushProvider::Apns,
        _ => PushProvider::Unspecified,
    }
}

/// Runs one push subcommand; prints the server's answer as one JSON line
/// `{"provider","sent","badge"}`.
pub async fn run(command: PushCommand) -> anyhow::Result<()> {
    let profile = match &command {
        PushCommand::Register(a) => &a.profile,
        PushCommand::Unregister(a) | PushCommand::Test(a) => &a.profile,
    };
    let session = Session::open(profile, false).await?;
    let answer = match &command {
        PushCommand::Register(a) => session.client.push_register(provider(&a.provider), a.token.clone()).await,
        PushCommand::Unregister(_) => session.client.push_unregister().await,
        PushCommand::Test(_) => session.client.push_test().await,
    };
    session.close().await?;
    let answer = answer?;
    let line = json!({ "provider": answer.provider().as_str_name(), "sent": answer.sent, "badge": answer.badge });
    println!("{line}");
    Ok(())
}

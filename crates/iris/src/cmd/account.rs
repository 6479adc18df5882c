//! `iris account delete`: erase the profile's account on the server, re-verified with a
//! one-time code sent to its phone, then remove the profile and its key store.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use iris_client::HttpApi;

use super::login::{prompt_code, DEV_CODE};
use crate::profile::{key_store_path, Profile};

/// `iris account …`.
#[derive(clap::Subcommand, Debug)]
pub enum AccountCommand {
    /// Delete the account for good: devices, keys, inboxes, contacts, blocks, group memberships
    /// and everything else the server keeps of it. Others keep their copies of past messages;
    /// the phone number can register again as a new, empty account.
    Delete(DeleteArgs),
}

/// Flags of `iris account delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The profile of a device of the account (written by `iris login`).
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// The deletion code, when already received (from an earlier request): skips requesting a
    /// new one. Without it, a dev server's fixed code is used, or it is read from the terminal.
    #[arg(long)]
    pub code: Option<String>,
    /// Confirms the deletion (it cannot be undone).
    #[arg(long)]
    pub yes: bool,
}

/// Runs an `iris account` command.
pub async fn run(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Delete(args) => delete(args).await,
    }
}

/// Deletes the account and prints `{"deleted_account_id","phone"}`.
async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    if !args.yes {
        bail!("deleting an account cannot be undone; pass --yes to confirm");
    }
    let profile = Profile::load(&args.profile)?;
    let api = HttpApi::new(&profile.server)?;
    // A fresh access token (the saved one may have expired); the rotated refresh token is saved
    // at once, so an interruption leaves a usable profile.
    let credentials = api.refresh(&profile.credentials.refresh_token).await.context("refreshing the access token")?;
    Profile::update(&args.profile, |p| p.credentials = credentials.clone())?;
    let code = match args.code {
        Some(code) => code,
        None => {
            let info = api.server_info().await.context("asking the server for its info")?;
            api.request_deletion_code(&credentials.access_token).await.context("requesting a deletion code")?;
            if info.dev {
                DEV_CODE.to_owned()
            } else {
                prompt_code(&credentials.phone).await?
            }
        }
    };
    api.delete_account(&credentials.access_token, code.trim()).await.context("deleting the account")?;
    std::fs::remove_file(&args.profile).with_context(|| format!("removing {}", args.profile.display()))?;
    let _ = std::fs::remove_file(key_store_path(&args.profile));
    println!("{}", serde_json::json!({ "deleted_account_id": credentials.account_id, "phone": credentials.phone }));
    Ok(())
}

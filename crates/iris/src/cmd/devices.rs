//! `iris devices list | revoke | approve | refuse`, `iris pin set | clear` and
//! `iris profile set | show`: the account's devices, the links waiting for the primary's
//! approval, the registration PIN and profiles, each printed as JSON lines.

use std::path::PathBuf;

use iris_client::api::{ProfilePrivacy, ProfileUpdate, ProfileView};
use serde_json::json;

use super::one_shot::account_of;
use super::session::Session;

/// `iris devices …`.
#[derive(clap::Subcommand, Debug)]
pub enum DevicesCommand {
    /// The account's devices and, on the primary, the links waiting for approval.
    List(ProfileArg),
    /// Revoke a device: any other one from the primary, or this one.
    Revoke {
        #[command(flatten)]
        profile: ProfileArg,
        /// The device number (`iris devices list`).
        device_id: u32,
    },
    /// Approve the link code a new device shows (on the primary).
    Approve {
        #[command(flatten)]
        profile: ProfileArg,
        /// The code ("K7QF-M2XD"; case and dashes do not matter).
        code: String,
    },
    /// Refuse the link code a new device shows (on the primary).
    Refuse {
        #[command(flatten)]
        profile: ProfileArg,
        /// The code.
        code: String,
    },
}

/// `iris pin …`: the registration PIN, needed to register a new primary for this number.
#[derive(clap::Subcommand, Debug)]
pub enum PinCommand {
    /// Set (or replace) the PIN: 4 to 32 digits (on the primary).
    Set {
        #[command(flatten)]
        profile: ProfileArg,
        /// The PIN.
        pin: String,
    },
    /// Remove the PIN (on the primary).
    Clear(ProfileArg),
}

/// `iris profile …`.
#[derive(clap::Subcommand, Debug)]
pub enum ProfileCommand {
    /// Change my profile: only the fields given.
    Set {
        #[command(flatten)]
        profile: ProfileArg,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// About text.
        #[arg(long)]
        about: Option<String>,
        /// Media id of an uploaded image ("" removes the photo).
        #[arg(long)]
        photo: Option<String>,
        /// Who may see it: everyone, contacts or nobody.
        #[arg(long, value_parser = parse_privacy)]
        privacy: Option<ProfilePrivacy>,
    },
    /// Show my profile, or another account's as I may see it.
    Show {
        #[command(flatten)]
        profile: ProfileArg,
        /// Whose (E.164); mine without it.
        #[arg(long)]
        phone: Option<String>,
    },
}

/// The profile written by `iris login`.
#[derive(clap::Args, Debug)]
pub struct ProfileArg {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
}

fn parse_privacy(s: &str) -> Result<ProfilePrivacy, String> {
    match s {
        "everyone" => Ok(ProfilePrivacy::Everyone),
        "contacts" => Ok(ProfilePrivacy::Contacts),
        "nobody" => Ok(ProfilePrivacy::Nobody),
        other => Err(format!("{other:?}: expected everyone, contacts or nobody")),
    }
}

/// Runs `iris devices …`.
pub async fn devices(command: DevicesCommand) -> anyhow::Result<()> {
    let path = match &command {
        DevicesCommand::List(p) => &p.profile,
        DevicesCommand::Revoke { profile, .. }
        | DevicesCommand::Approve { profile, .. }
        | DevicesCommand::Refuse { profile, .. } => &profile.profile,
    };
    let session = Session::open(path, false).await?;
    let client = &session.client;
    let me = client.credentials().device_id;
    let result = async {
        match &command {
            DevicesCommand::List(_) => {
                let devices = client.devices().await?;
                let primary = devices.iter().any(|d| d.primary && d.device_id == me);
                for d in &devices {
                    let line = json!({"device_id": d.device_id, "name": d.name, "primary": d.primary,
                        "created_at_ms": d.created_at_ms, "this_device": d.device_id == me});
                    println!("{line}");
                }
                if primary {
                    for l in client.pending_links().await? {
                        let line = json!({"pending_link": l.link_code, "device_name": l.device_name,
                            "expires_at_ms": l.expires_at_ms});
                        println!("{line}");
                    }
                }
            }
            DevicesCommand::Revoke { device_id, .. } => {
                client.revoke_device(*device_id).await?;
                println!("{}", json!({"revoked": device_id}));
            }
            DevicesCommand::Approve { code, .. } => {
                let d = client.approve_link(code).await?;
                println!("{}", json!({"approved": d.device_id, "name": d.name}));
            }
            DevicesCommand::Refuse { code, .. } => {
                client.refuse_link(code).await?;
                println!("{}", json!({"refused": code}));
            }
        }
        anyhow::Ok(())
    }
    .await;
    session.close().await?;
    result
}

/// Runs `iris pin …`.
pub async fn pin(command: PinCommand) -> anyhow::Result<()> {
    let (path, pin) = match &command {
        PinCommand::Set { profile, pin } => (&profile.profile, Some(pin.as_str())),
        PinCommand::Clear(p) => (&p.profile, None),
    };
    let session = Session::open(path, false).await?;
    let result = session.client.set_pin(pin).await;
    session.close().await?;
    result?;
    println!("{}", json!({"pin": if pin.is_some() { "set" } else { "cleared" }}));
    Ok(())
}

fn view_json(v: &ProfileView, phone: &str) -> serde_json::Value {
    json!({"account_id": v.account_id, "phone": phone, "visible": v.visible, "display_name": v.display_name,
        "about": v.about, "photo_media_id": v.photo_media_id, "privacy": v.privacy,
        "updated_at_ms": v.updated_at_ms})
}

/// Runs `iris profile …`.
pub async fn profile(command: ProfileCommand) -> anyhow::Result<()> {
    let path = match &command {
        ProfileCommand::Set { profile, .. } | ProfileCommand::Show { profile, .. } => &profile.profile,
    };
    let session = Session::open(path, false).await?;
    let client = &session.client;
    let own = client.credentials();
    let result = async {
        let (view, phone) = match &command {
            ProfileCommand::Set { name, about, photo, privacy, .. } => {
                let update = ProfileUpdate {
                    display_name: name.clone(),
                    about: about.clone(),
                    photo_media_id: photo.clone(),
                    privacy: *privacy,
                };
                (client.set_profile(&update).await?, own.phone.clone())
            }
            ProfileCommand::Show { phone: Some(phone), .. } => {
                (client.profile(account_of(client, phone).await?).await?, phone.clone())
            }
            ProfileCommand::Show { phone: None, .. } => (client.profile(own.account_id).await?, own.phone.clone()),
        };
        println!("{}", view_json(&view, &phone));
        anyhow::Ok(())
    }
    .await;
    session.close().await?;
    result
}

//! A connected client opened from a profile file, keeping the file in step with it: refreshed
//! credentials are saved the moment the SDK gets them, the inbox cursor when the command ends.

use std::path::{Path, PathBuf};

use iris_client::{Client, ClientConfig, CredentialsHook, Events};

use crate::profile::Profile;

/// A client, its events, and the profile path it came from.
pub struct Session {
    /// The connected client.
    pub client: Client,
    /// Its event stream.
    pub events: Events,
    path: PathBuf,
}

impl Session {
    /// Connects with the profile at `path`, resuming after its saved cursor. `IRIS_SERVER`, when
    /// set, overrides the profile's server (any node of a cluster serves any device).
    pub async fn open(path: &Path, auto_ack: bool) -> anyhow::Result<Self> {
        let profile = Profile::load(path)?;
        let server = std::env::var("IRIS_SERVER").ok().filter(|s| !s.is_empty()).unwrap_or(profile.server.clone());
        let mut config = ClientConfig::new(server, profile.credentials.clone());
        config.resume_after_seq = profile.last_acked_seq;
        config.auto_ack = auto_ack;
        let hook_path = path.to_owned();
        config.on_credentials = Some(CredentialsHook::new(move |creds| {
            // The old refresh token is used up: losing the new one would lock the device out.
            if let Err(e) = Profile::update(&hook_path, |p| p.credentials = creds.clone()) {
                tracing::error!("could not save refreshed credentials to {}: {e:#}", hook_path.display());
            }
        }));
        let (client, events) = Client::connect(config).await?;
        Ok(Self { client, events, path: path.to_owned() })
    }

    /// Saves the inbox cursor and the current credentials to the profile.
    pub fn save(&self) -> anyhow::Result<()> {
        let acked = self.client.last_acked_seq();
        let credentials = self.client.credentials();
        Profile::update(&self.path, |p| {
            p.last_acked_seq = p.last_acked_seq.max(acked);
            p.credentials = credentials;
        })
    }

    /// Flushes acks, disconnects and saves the profile.
    pub async fn close(self) -> anyhow::Result<()> {
        self.client.close().await;
        self.save()
    }
}

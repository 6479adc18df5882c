//! A connected client opened from a profile file, keeping the file in step with it: refreshed
//! credentials are saved the moment the SDK gets them, the inbox cursor when the command ends.

use std::path::{Path, PathBuf};

use iris_client::{Client, ClientConfig, CredentialsHook, E2e, Events};

use crate::profile::{key_store_path, new_e2e_secret, Profile};

/// A client, its events, and the profile path it came from.
pub struct Session {
    /// The connected client.
    pub client: Client,
    /// Its event stream.
    pub events: Events,
    /// End-to-end encryption over `client`, unless the command runs `--plaintext`.
    pub e2e: Option<E2e>,
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
        Ok(Self { client, events, e2e: None, path: path.to_owned() })
    }

    /// [`open`](Self::open), with end-to-end encryption: the key store beside the profile
    /// (`<profile>.keys`, created with a new identity when missing) is opened and this device's
    /// keys published. A profile without a store secret gets one first.
    pub async fn open_encrypted(path: &Path, auto_ack: bool) -> anyhow::Result<Self> {
        let mut secret = Profile::load(path)?.e2e_secret;
        if secret.is_none() {
            let fresh = new_e2e_secret();
            Profile::update(path, |p| p.e2e_secret = Some(fresh.clone()))?;
            secret = Some(fresh);
        }
        let mut session = Self::open(path, auto_ack).await?;
        let secret = secret.expect("set above");
        let e2e = E2e::open(session.client.clone(), &key_store_path(path), secret.as_bytes()).await?;
        session.e2e = Some(e2e);
        Ok(session)
    }

    /// [`open_encrypted`](Self::open_encrypted), or plain [`open`](Self::open) with `plaintext`.
    pub async fn open_as(path: &Path, auto_ack: bool, plaintext: bool) -> anyhow::Result<Self> {
        if plaintext {
            Self::open(path, auto_ack).await
        } else {
            Self::open_encrypted(path, auto_ack).await
        }
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

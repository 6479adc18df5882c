//! The client commands' profile file: which server, this device's credentials, and the inbox
//! cursor. JSON, written atomically with mode 0600 because it holds tokens.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use iris_proto::http::Credentials;
use serde::{Deserialize, Serialize};

/// One logged-in device, as saved by `iris login` and updated by the other commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Base URL of the server's HTTP API.
    pub server: String,
    /// The device's credentials (rotated whenever the access token is refreshed).
    pub credentials: Credentials,
    /// Highest inbox sequence processed; the next connection resumes after it.
    #[serde(default)]
    pub last_acked_seq: u64,
    /// Secret (hex) from which the key of the end-to-end key store beside the profile is
    /// derived; made at login, or on first use by a profile from before end-to-end encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_secret: Option<String>,
}

/// A new random store secret (32 bytes, hex).
pub fn new_e2e_secret() -> String {
    rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the end-to-end key store of the profile at `path` lives: beside it, `.keys`.
pub fn key_store_path(path: &Path) -> PathBuf {
    path.with_extension("keys")
}

impl Profile {
    /// Reads the profile at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = fs::read_to_string(path).with_context(|| format!("reading profile {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing profile {}", path.display()))
    }

    /// Writes the profile to `path` through a temporary file and a rename, so a crash never
    /// leaves half a file (and a lost refresh token) behind.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        iris_client::files::write_private_atomically(path, &json)
            .with_context(|| format!("writing profile {}", path.display()))
    }

    /// Loads, changes and saves the profile at `path` (the file is the source of truth, so
    /// updates from the SDK's refresh callback and from the command do not overwrite each other).
    pub fn update(path: &Path, change: impl FnOnce(&mut Profile)) -> anyhow::Result<()> {
        let mut profile = Self::load(path)?;
        let before = profile.clone();
        change(&mut profile);
        if profile != before {
            profile.save(path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Profile {
        Profile {
            server: "http://127.0.0.1:7701".into(),
            credentials: Credentials {
                account_id: 3,
                device_id: 2,
                phone: "+14155550123".into(),
                access_token: "a".into(),
                access_expires_at_ms: 9,
                refresh_token: "r".into(),
            },
            last_acked_seq: 0,
            e2e_secret: None,
        }
    }

    #[test]
    fn profiles_round_trip_privately_and_update_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.json");
        sample().save(&path).expect("save");
        assert_eq!(Profile::load(&path).expect("load"), sample());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Profile::update(&path, |p| p.last_acked_seq = 42).expect("update");
        assert_eq!(Profile::load(&path).expect("load").last_acked_seq, 42);
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1, "no temporary file left behind");
    }
}

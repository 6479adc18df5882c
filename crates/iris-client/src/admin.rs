//! The operators' admin API (`[admin] listen` on a server) as typed calls, for `iris admin`.
//!
//! A separate client from [`crate::HttpApi`]: another listener, another credential (the admin
//! bearer token, never a device's). Error bodies become [`ClientError::Api`] as there.

use std::time::Duration;

use iris_proto::admin::{AdminAccount, AdminDeviceRevoked};

use crate::error::ClientError;
use crate::http::{check, parse};

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A client for one server's admin listener.
#[derive(Debug, Clone)]
pub struct AdminApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminApi {
    /// A client for the admin API at `base_url` (`http://127.0.0.1:7702`) with `token`.
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidArgument(format!(
                "admin URL must start with http:// or https://, got {base_url:?}"
            )));
        }
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { base, token: token.trim().to_owned(), http })
    }

    /// `GET /admin/v1/accounts/{account}`: an account by id or `+phone`, with its devices, where
    /// they are connected, their inbox depths and the rate limits it hit lately.
    pub async fn lookup(&self, account: &str) -> Result<AdminAccount, ClientError> {
        let url = format!("{}/admin/v1/accounts/{}", self.base, segment(account));
        let resp = check(self.http.get(url).bearer_auth(&self.token).send().await?).await?;
        parse(&resp.bytes().await?)
    }

    /// `POST /admin/v1/accounts/{account}/devices/{device}/revoke`: revokes one device.
    pub async fn revoke(&self, account: &str, device: u32) -> Result<AdminDeviceRevoked, ClientError> {
        let url = format!("{}/admin/v1/accounts/{}/devices/{device}/revoke", self.base, segment(account));
        let resp = check(self.http.post(url).bearer_auth(&self.token).send().await?).await?;
        parse(&resp.bytes().await?)
    }
}

/// An account id or phone as one path segment: letters and digits as they are, anything else
/// (the phone's `+`, which some proxies read as a space) percent-encoded, so the server judges
/// what was typed.
fn segment(account: &str) -> String {
    account
        .trim()
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

//! The operators' admin API (`[admin] listen` on a server) as typed calls, for `iris admin`.
//!
//! A separate client from [`crate::HttpApi`]: another listener, another credential (the admin
//! bearer token, never a device's). Error bodies become [`ClientError::Api`] as there.

use std::time::Duration;

use iris_proto::admin::{
    AdminAbuseChange, AdminAccount, AdminDeviceRevoked, AdminReports, AdminReviewCursor, AdminReviewQueue, AdminSuspend,
};

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
    /// A client for the admin API at `base_url` (`http://127.0.0.1:7702`) with `token`; an
    /// `https://` listener is checked against the system's CAs (or `SSL_CERT_FILE`'s).
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidArgument(format!(
                "admin URL must start with http:// or https://, got {base_url:?}"
            )));
        }
        let http = crate::tls::http_builder_for(&base, None)?.timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { base, token: token.trim().to_owned(), http })
    }

    /// `GET /admin/v1/accounts/{account}`: an account by id or `+phone`, with its devices, where
    /// they are connected, their inbox depths and the rate limits it hit lately.
    pub async fn lookup(&self, account: &str) -> Result<AdminAccount, ClientError> {
        let url = self.account_url(account);
        let resp = check(self.http.get(url).bearer_auth(&self.token).send().await?).await?;
        parse(&resp.bytes().await?)
    }

    /// `POST /admin/v1/accounts/{account}/devices/{device}/revoke`: revokes one device.
    pub async fn revoke(&self, account: &str, device: u32) -> Result<AdminDeviceRevoked, ClientError> {
        self.post(&format!("{}/devices/{device}/revoke", self.account_url(account)), None).await
    }

    /// `POST /admin/v1/accounts/{account}/suspend`: suspends the account pending review, with
    /// `reason` recorded for the next reviewer.
    pub async fn suspend(&self, account: &str, reason: &str) -> Result<AdminAbuseChange, ClientError> {
        let body = AdminSuspend { reason: reason.to_owned() };
        self.post(&format!("{}/suspend", self.account_url(account)), Some(&body)).await
    }

    /// `POST /admin/v1/accounts/{account}/unsuspend`: lifts a suspension after review.
    pub async fn unsuspend(&self, account: &str) -> Result<AdminAbuseChange, ClientError> {
        self.post(&format!("{}/unsuspend", self.account_url(account)), None).await
    }

    /// `POST /admin/v1/accounts/{account}/restrictions/{which}/lift`: ends the `sending`
    /// restriction or the `forwarding` limit now.
    pub async fn lift(&self, account: &str, which: &str) -> Result<AdminAbuseChange, ClientError> {
        self.post(&format!("{}/restrictions/{}/lift", self.account_url(account), segment(which)), None).await
    }

    /// `GET /admin/v1/accounts/{account}/reports?limit=N`: reports against the account, newest
    /// first, with what the reporters disclosed.
    pub async fn reports(&self, account: &str, limit: usize) -> Result<AdminReports, ClientError> {
        let url = format!("{}/reports?limit={limit}", self.account_url(account));
        let resp = check(self.http.get(url).bearer_auth(&self.token).send().await?).await?;
        parse(&resp.bytes().await?)
    }

    /// `GET /admin/v1/review?limit=N`: suspended and recently reported accounts, newest first;
    /// `before` (a previous page's `next`) continues below it.
    pub async fn review(
        &self,
        limit: usize,
        before: Option<AdminReviewCursor>,
    ) -> Result<AdminReviewQueue, ClientError> {
        let mut url = format!("{}/admin/v1/review?limit={limit}", self.base);
        if let Some(c) = before {
            url.push_str(&format!("&before_ms={}&before_account={}", c.before_ms, c.before_account));
        }
        let resp = check(self.http.get(url).bearer_auth(&self.token).send().await?).await?;
        parse(&resp.bytes().await?)
    }

    fn account_url(&self, account: &str) -> String {
        format!("{}/admin/v1/accounts/{}", self.base, segment(account))
    }

    /// A POST with the token and an optional JSON body, its answer parsed.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: Option<&AdminSuspend>,
    ) -> Result<T, ClientError> {
        let mut request = self.http.post(url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let resp = check(request.send().await?).await?;
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

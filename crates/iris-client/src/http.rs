//! The HTTP API (server info, login, token refresh, devices, account lookup and deletion) as
//! typed calls.
//!
//! Knows nothing of the TCP protocol; error bodies become [`ClientError::Api`] in one place.

use std::time::Duration;

use iris_proto::http::{
    AccountDeleteRequest, AccountInfo, ApiError, CodeRequest, CodeRequested, Credentials, DeviceInfo,
    LinkCollectRequest, LinkPending, PendingLinkInfo, PinRequest, ProfileUpdate, ProfileView, RefreshRequest,
    ServerInfo, VerifyRequest,
};
use iris_proto::pb::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::tls::TlsTrust;

/// How long one HTTP request may take before it fails with [`ClientError::Http`].
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A client for the Iris HTTP API at one base URL. Cheap to clone (shares one connection pool).
#[derive(Debug, Clone)]
pub struct HttpApi {
    base: String,
    http: reqwest::Client,
}

impl HttpApi {
    /// A client for the server at `base_url` (`http://127.0.0.1:7701`); fails on a URL that is not
    /// plain `http://` or `https://`. An `https://` server is checked against the system's CAs
    /// (or `SSL_CERT_FILE`'s, see [`TlsTrust::system`]).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_trust(base_url, None)
    }

    /// [`HttpApi::new`], trusting `trust` (when given) instead of the system's CAs.
    pub fn with_trust(base_url: &str, trust: Option<&TlsTrust>) -> Result<Self, ClientError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidArgument(format!(
                "server URL must start with http:// or https://, got {base_url:?}"
            )));
        }
        let http = crate::tls::http_builder_for(&base, trust)?.timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { base, http })
    }

    /// The base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v1/info`: where the framed TCP listener is and whether the server is in dev mode.
    pub async fn server_info(&self) -> Result<ServerInfo, ClientError> {
        self.call(self.http.get(self.url("/v1/info"))).await
    }

    /// `POST /v1/auth/request-code`: asks the server to send a one-time code to `phone`.
    pub async fn request_code(&self, phone: &str) -> Result<CodeRequested, ClientError> {
        let body = CodeRequest { phone: phone.to_owned() };
        self.call(self.http.post(self.url("/v1/auth/request-code")).json(&body)).await
    }

    /// `POST /v1/auth/verify`: exchanges a code for the credentials of a new device: the first
    /// of a new account. For an existing account it fails with [`ClientError::LinkPending`]: the
    /// device waits for the primary's approval (see [`verify_or_link`](Self::verify_or_link)).
    pub async fn verify(&self, phone: &str, code: &str, device_name: &str) -> Result<Credentials, ClientError> {
        match self.verify_or_link(phone, code, device_name).await? {
            Verified::Registered(creds) => Ok(creds),
            Verified::LinkPending(pending) => Err(ClientError::LinkPending(Box::new(pending))),
        }
    }

    /// `POST /v1/auth/verify`: credentials for a new account's primary, or a pending link of a
    /// companion (show its code, then [`wait_for_link`](Self::wait_for_link)).
    pub async fn verify_or_link(&self, phone: &str, code: &str, device_name: &str) -> Result<Verified, ClientError> {
        self.verify_with(VerifyRequest {
            phone: phone.to_owned(),
            code: code.to_owned(),
            device_name: device_name.to_owned(),
            new_primary: false,
            pin: None,
        })
        .await
    }

    /// `POST /v1/auth/verify` with `new_primary`: this device replaces every device of the
    /// account as its new primary (a new phone); `pin` is the registration PIN, if it has one.
    pub async fn register_primary(
        &self,
        phone: &str,
        code: &str,
        device_name: &str,
        pin: Option<&str>,
    ) -> Result<Credentials, ClientError> {
        let req = VerifyRequest {
            phone: phone.to_owned(),
            code: code.to_owned(),
            device_name: device_name.to_owned(),
            new_primary: true,
            pin: pin.map(str::to_owned),
        };
        match self.verify_with(req).await? {
            Verified::Registered(creds) => Ok(creds),
            Verified::LinkPending(_) => Err(ClientError::Protocol("a new primary got a pending link".into())),
        }
    }

    async fn verify_with(&self, body: VerifyRequest) -> Result<Verified, ClientError> {
        let resp = check(self.http.post(self.url("/v1/auth/verify")).json(&body).send().await?).await?;
        if resp.status().as_u16() == 202 {
            return Ok(Verified::LinkPending(parse(&resp.bytes().await?)?));
        }
        Ok(Verified::Registered(parse(&resp.bytes().await?)?))
    }

    /// `POST /v1/auth/link`: the credentials if the primary approved, `None` while it waits;
    /// `LINK_REFUSED` or `LINK_EXPIRED` otherwise.
    pub async fn collect_link(&self, pending: &LinkPending) -> Result<Option<Credentials>, ClientError> {
        let body = LinkCollectRequest {
            account_id: pending.account_id,
            link_code: pending.link_code.clone(),
            link_secret: pending.link_secret.clone(),
        };
        let resp = check(self.http.post(self.url("/v1/auth/link")).json(&body).send().await?).await?;
        if resp.status().as_u16() == 202 {
            return Ok(None);
        }
        Ok(Some(parse(&resp.bytes().await?)?))
    }

    /// Asks every `poll` until the primary approved (the credentials) or the link ended
    /// (`LINK_REFUSED`, `LINK_EXPIRED`).
    pub async fn wait_for_link(&self, pending: &LinkPending, poll: Duration) -> Result<Credentials, ClientError> {
        loop {
            if let Some(creds) = self.collect_link(pending).await? {
                return Ok(creds);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Links a companion in one go with the primary's access token: verify, approve, collect.
    /// For tests and tools that hold both devices; people approve on the primary instead.
    pub async fn link_approved_by(
        &self,
        phone: &str,
        code: &str,
        device_name: &str,
        primary_access_token: &str,
    ) -> Result<Credentials, ClientError> {
        match self.verify_or_link(phone, code, device_name).await? {
            Verified::Registered(creds) => Ok(creds),
            Verified::LinkPending(pending) => {
                self.approve_link(primary_access_token, &pending.link_code).await?;
                self.collect_link(&pending)
                    .await?
                    .ok_or_else(|| ClientError::Protocol("an approved link is still pending".into()))
            }
        }
    }

    /// `GET /v1/devices/links`: links waiting for this (primary) device's approval.
    pub async fn pending_links(&self, access_token: &str) -> Result<Vec<PendingLinkInfo>, ClientError> {
        self.call(self.http.get(self.url("/v1/devices/links")).bearer_auth(access_token)).await
    }

    /// `POST /v1/devices/links/{code}/approve`, from the primary.
    pub async fn approve_link(&self, access_token: &str, link_code: &str) -> Result<DeviceInfo, ClientError> {
        let path = format!("/v1/devices/links/{}/approve", path_segment(link_code));
        self.call(self.http.post(self.url(&path)).bearer_auth(access_token)).await
    }

    /// `POST /v1/devices/links/{code}/refuse`, from the primary.
    pub async fn refuse_link(&self, access_token: &str, link_code: &str) -> Result<(), ClientError> {
        let path = format!("/v1/devices/links/{}/refuse", path_segment(link_code));
        check(self.http.post(self.url(&path)).bearer_auth(access_token).send().await?).await.map(drop)
    }

    /// `PUT /v1/account/pin`, from the primary: registering a new primary will need it.
    pub async fn set_pin(&self, access_token: &str, pin: &str) -> Result<(), ClientError> {
        let body = PinRequest { pin: pin.to_owned() };
        let req = self.http.put(self.url("/v1/account/pin")).bearer_auth(access_token).json(&body);
        check(req.send().await?).await.map(drop)
    }

    /// `DELETE /v1/account/pin`, from the primary.
    pub async fn clear_pin(&self, access_token: &str) -> Result<(), ClientError> {
        check(self.http.delete(self.url("/v1/account/pin")).bearer_auth(access_token).send().await?).await.map(drop)
    }

    /// `PUT /v1/profile`: changes the fields given.
    pub async fn set_profile(&self, access_token: &str, update: &ProfileUpdate) -> Result<ProfileView, ClientError> {
        self.call(self.http.put(self.url("/v1/profile")).bearer_auth(access_token).json(update)).await
    }

    /// `GET /v1/profiles/{account_id}`: the profile as this account may see it.
    pub async fn profile(&self, access_token: &str, account_id: u64) -> Result<ProfileView, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/profiles/{account_id}"))).bearer_auth(access_token)).await
    }

    /// Requests a code and verifies the fixed dev-mode code `000000`: one call to get a device on
    /// a server started with `--dev` (tests, demos). Fails with `INVALID_CODE` elsewhere.
    pub async fn login_dev(&self, phone: &str, device_name: &str) -> Result<Credentials, ClientError> {
        self.request_code(phone).await?;
        self.verify(phone, "000000", device_name).await
    }

    /// `POST /v1/auth/refresh`: new credentials for a refresh token, which is used up by the call.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Credentials, ClientError> {
        let body = RefreshRequest { refresh_token: refresh_token.to_owned() };
        self.call(self.http.post(self.url("/v1/auth/refresh")).json(&body)).await
    }

    /// `GET /v1/devices`: the devices of the token's account.
    pub async fn devices(&self, access_token: &str) -> Result<Vec<DeviceInfo>, ClientError> {
        self.call(self.http.get(self.url("/v1/devices")).bearer_auth(access_token)).await
    }

    /// `DELETE /v1/devices/{device_id}`: unlinks a device; its connections are closed.
    pub async fn revoke_device(&self, access_token: &str, device_id: u32) -> Result<(), ClientError> {
        let req = self.http.delete(self.url(&format!("/v1/devices/{device_id}"))).bearer_auth(access_token);
        check(req.send().await?).await.map(drop)
    }

    /// `GET /v1/accounts/{phone}`: the account behind a phone number and its current devices.
    pub async fn account_info(&self, access_token: &str, phone: &str) -> Result<AccountInfo, ClientError> {
        let path = format!("/v1/accounts/{}", phone.trim().replace('+', "%2B"));
        self.call(self.http.get(self.url(&path)).bearer_auth(access_token)).await
    }

    /// `POST /v1/account/delete/request-code`: asks for a code (sent to the account's phone)
    /// that re-verifies a deletion of the token's account.
    pub async fn request_deletion_code(&self, access_token: &str) -> Result<CodeRequested, ClientError> {
        let req = self.http.post(self.url("/v1/account/delete/request-code")).bearer_auth(access_token);
        self.call(req).await
    }

    /// `POST /v1/account/delete`: deletes the token's account for good. Every device of it is
    /// closed with `ACCOUNT_DELETED`; the phone can register again as a new, empty account.
    pub async fn delete_account(&self, access_token: &str, code: &str) -> Result<(), ClientError> {
        let body = AccountDeleteRequest { code: code.to_owned() };
        let req = self.http.post(self.url("/v1/account/delete")).bearer_auth(access_token).json(&body);
        check(req.send().await?).await.map(drop)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = check(req.send().await?).await?;
        parse(&resp.bytes().await?)
    }
}

/// What a verified code gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A device that needed no approval.
    Registered(Credentials),
    /// A companion waiting for the primary's approval.
    LinkPending(LinkPending),
}

pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Protocol(format!("unexpected HTTP response body: {e}")))
}

/// A link code as a path segment (codes are letters, digits and dashes; anything else goes).
fn path_segment(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect()
}

/// Passes a 2xx response through; turns anything else into [`ClientError::Api`].
pub(crate) async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await.unwrap_or_default();
    Err(api_error(status.as_u16(), &body))
}

/// The error for a non-2xx response with `body`, which should be an [`ApiError`] but may be
/// anything (a proxy's HTML page); the status then decides the code.
pub(crate) fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => ClientError::Api {
            status,
            code: ErrorCode::from_str_name(&e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
            retry_after_ms: e.retry_after_ms,
        },
        Err(_) => ClientError::Api {
            status,
            code: code_for_status(status),
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
            retry_after_ms: None,
        },
    }
}

fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidArgument,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_map_to_typed_codes() {
        let body = br#"{"code":"ERROR_CODE_RATE_LIMITED","message":"slow down","retry_after_ms":1500}"#;
        let e = api_error(429, body);
        assert!(
            matches!(&e, ClientError::Api { status: 429, code: ErrorCode::RateLimited, retry_after_ms: Some(1500), message } if message == "slow down")
        );
        let e = api_error(404, br#"{"code":"ERROR_CODE_SOMETHING_NEW","message":"?"}"#);
        assert_eq!(e.code(), Some(ErrorCode::Unspecified));
        let e = api_error(401, b"<html>nope</html>");
        assert_eq!(e.code(), Some(ErrorCode::Unauthenticated));
    }

    #[test]
    fn base_url_must_be_http() {
        assert!(HttpApi::new("127.0.0.1:7701").is_err());
        assert_eq!(
            HttpApi::new("http://127.0.0.1:7701/").map(|a| a.base_url().to_owned()).ok().as_deref(),
            Some("http://127.0.0.1:7701")
        );
    }
}

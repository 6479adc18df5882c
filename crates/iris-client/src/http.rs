//! The HTTP API (server info, login, token refresh, devices, account lookup and deletion) as
//! typed calls.
//!
//! Knows nothing of the TCP protocol; error bodies become [`ClientError::Api`] in one place.

use std::time::Duration;

use iris_proto::http::{
    AccountDeleteRequest, AccountInfo, ApiError, CodeRequest, CodeRequested, Credentials, DeviceInfo, RefreshRequest,
    ServerInfo, VerifyRequest,
};
use iris_proto::pb::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ClientError;

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
    /// plain `http://` or `https://`.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidArgument(format!(
                "server URL must start with http:// or https://, got {base_url:?}"
            )));
        }
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
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

    /// `POST /v1/auth/verify`: exchanges a code for the credentials of a new device.
    pub async fn verify(&self, phone: &str, code: &str, device_name: &str) -> Result<Credentials, ClientError> {
        let body =
            VerifyRequest { phone: phone.to_owned(), code: code.to_owned(), device_name: device_name.to_owned() };
        self.call(self.http.post(self.url("/v1/auth/verify")).json(&body)).await
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
        let body = resp.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("unexpected HTTP response body: {e}")))
    }
}

/// Passes a 2xx response through; turns anything else into [`ClientError::Api`].
async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
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

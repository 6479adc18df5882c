//! JSON over HTTP to a [`TestServer`]: requests the way the apps send them (`reqwest`) and the
//! answer as a [`Reply`] with assertions on status, body and error code.

use bytes::Bytes;
use iris_proto::http::{ApiError, CodeRequest, Credentials, LinkCollectRequest, LinkPending, VerifyRequest};
use iris_proto::pb::ErrorCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::server::{TestServer, DEV_CODE};

impl TestServer {
    /// `GET path`, with a bearer token when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::from(req.send().await.expect("HTTP request")).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> Reply {
        Reply::from(self.http.post(self.url(path)).json(body).send().await.expect("HTTP request")).await
    }

    /// `POST path` with a bearer token when given, and a JSON body when given.
    pub async fn post_authorized<B: Serialize>(&self, path: &str, token: Option<&str>, body: Option<&B>) -> Reply {
        let mut req = self.http.post(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Reply::from(req.send().await.expect("HTTP request")).await
    }

    /// `POST path` with raw bytes labelled as JSON.
    pub async fn post_raw(&self, path: &str, body: &'static str) -> Reply {
        let req = self.http.post(self.url(path)).header("content-type", "application/json").body(body);
        Reply::from(req.send().await.expect("HTTP request")).await
    }

    /// `DELETE path` with a bearer token.
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        Reply::from(self.http.delete(self.url(path)).bearer_auth(token).send().await.expect("HTTP request")).await
    }

    /// `POST /v1/auth/request-code`.
    pub async fn request_code(&self, phone: &str) -> Reply {
        self.post("/v1/auth/request-code", &CodeRequest { phone: phone.to_owned() }).await
    }

    /// `POST /v1/auth/verify`.
    pub async fn verify(&self, phone: &str, code: &str, device_name: &str) -> Reply {
        let body = VerifyRequest {
            phone: phone.to_owned(),
            code: code.to_owned(),
            device_name: device_name.to_owned(),
            new_primary: false,
            pin: None,
        };
        self.post("/v1/auth/verify", &body).await
    }

    /// Registers a new device of `phone` (creating the account on first use) through HTTP. A
    /// companion of an existing account is approved at once with the primary's access token,
    /// which the kit remembers ([`crate::primaries`]), as the person would on the primary.
    pub async fn login(&self, phone: &str, device_name: &str) -> Credentials {
        self.request_code(phone).await.expect_status(200);
        let reply = self.verify(phone, DEV_CODE, device_name).await;
        if reply.status == 202 {
            let pending: LinkPending = reply.expect_json(202);
            let primary = crate::primaries::token(&self.url(""), phone)
                .unwrap_or_else(|| panic!("{phone} has an account whose primary this test kit did not log in"));
            self.approve_link(&primary, &pending.link_code).await.expect_status(200);
            return self.collect_link(&pending).await.expect_json(200);
        }
        let creds: Credentials = reply.expect_json(200);
        crate::primaries::remember(&self.url(""), &creds);
        creds
    }

    /// `POST path` with a bearer token and no body.
    pub async fn post_with_token(&self, path: &str, token: &str) -> Reply {
        Reply::from(self.http.post(self.url(path)).bearer_auth(token).send().await.expect("HTTP request")).await
    }

    /// `PUT path` with a bearer token and a JSON body.
    pub async fn put_with_token<B: Serialize>(&self, path: &str, token: &str, body: &B) -> Reply {
        let req = self.http.put(self.url(path)).bearer_auth(token).json(body);
        Reply::from(req.send().await.expect("HTTP request")).await
    }

    /// `POST /v1/devices/links/{code}/approve` with the primary's token.
    pub async fn approve_link(&self, token: &str, code: &str) -> Reply {
        let req = self.http.post(self.url(&format!("/v1/devices/links/{code}/approve"))).bearer_auth(token);
        Reply::from(req.send().await.expect("HTTP request")).await
    }

    /// `POST /v1/auth/link`: collects a link's credentials.
    pub async fn collect_link(&self, pending: &LinkPending) -> Reply {
        let body = LinkCollectRequest {
            account_id: pending.account_id,
            link_code: pending.link_code.clone(),
            link_secret: pending.link_secret.clone(),
        };
        self.post("/v1/auth/link", &body).await
    }

    // ---------------------------------------------------------------------------------------------
}

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The raw body.
    pub body: Bytes,
}

impl Reply {
    pub(crate) async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.bytes().await.expect("HTTP body");
        Self { status, retry_after, body }
    }

    /// Asserts the status.
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", String::from_utf8_lossy(&self.body));
        self
    }

    /// Asserts the status and parses the JSON body.
    pub fn expect_json<T: DeserializeOwned>(&self, status: u16) -> T {
        self.expect_status(status);
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not the expected JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the status and that the body is an `ApiError` with `code`; returns it.
    pub fn expect_error(&self, status: u16, code: ErrorCode) -> ApiError {
        let e: ApiError = self.expect_json(status);
        assert_eq!(e.code, code.as_str_name(), "unexpected error code: {e:?}");
        e
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

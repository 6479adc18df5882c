//! FCM HTTP v1: `POST {endpoint}/v1/projects/{project}/messages:send` with an OAuth2 access
//! token, which the service account gets by signing an RS256 JWT assertion and exchanging it at
//! its token URI (RFC 7523); the access token is cached until a minute before it expires.
//! A wake-up is a high-priority data message (`type`, `badge`), never content.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde::Deserialize;

use super::http::{call, HttpsClient};
use super::jwt::JwtKey;
use super::{Outcome, Provider, PushError, Wake};
use crate::clock::Clock;

/// The OAuth2 scope of FCM sends.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Lifetime asked for an assertion (Google's maximum).
const ASSERTION_TTL_S: u64 = 3600;
/// An access token is renewed this long before it expires.
const RENEW_BEFORE_S: u64 = 60;

/// The fields of a service account key file that matter here.
#[derive(Debug, Deserialize)]
pub struct ServiceAccount {
    /// The Firebase project.
    pub project_id: String,
    /// The account (`iss` of the assertion).
    pub client_email: String,
    /// PKCS#8 PEM of its RSA key.
    pub private_key: String,
    /// Its key id (`kid`), when given.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Where assertions are exchanged.
    #[serde(default)]
    pub token_uri: Option<String>,
}

/// Sends data messages through FCM HTTP v1.
pub struct Fcm {
    client: HttpsClient,
    endpoint: String,
    token_uri: String,
    account: ServiceAccount,
    key: JwtKey,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    /// The access token and when it expires (s); one refresh at a time.
    access: tokio::sync::Mutex<Option<(String, u64)>>,
}

impl Fcm {
    /// A provider for `account` (whose token URI `token_uri` overrides when set).
    pub fn new(
        client: HttpsClient,
        endpoint: String,
        token_uri: Option<String>,
        account: ServiceAccount,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<Self, PushError> {
        let key = JwtKey::rs256_pem(&account.private_key)?;
        let token_uri = token_uri
            .or_else(|| account.token_uri.clone())
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        Ok(Self { client, endpoint, token_uri, account, key, clock, timeout, access: tokio::sync::Mutex::new(None) })
    }

    /// A valid access token, exchanging a new assertion when needed.
    async fn access_token(&self) -> Result<String, Outcome> {
        let mut cached = self.access.lock().await;
        let now_s = self.clock.now_ms() / 1000;
        if let Some((token, expires_s)) = cached.as_ref() {
            if now_s + RENEW_BEFORE_S < *expires_s {
                return Ok(token.clone());
            }
        }
        let mut header = serde_json::json!({ "typ": "JWT" });
        if let Some(kid) = &self.account.private_key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": self.account.client_email, "scope": SCOPE, "aud": self.token_uri,
            "iat": now_s, "exp": now_s + ASSERTION_TTL_S,
        });
        let assertion = self.key.sign(header, &claims).map_err(|e| Outcome::Failed(e.to_string()))?;
        let form = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
        let req = Request::post(&self.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| Outcome::Failed(format!("bad token URI: {e}")))?;
        let answer = call(&self.client, req, self.timeout).await.map_err(Outcome::Retry)?;
        if answer.status != 200 {
            let why = format!("token exchange: HTTP {}", answer.status);
            return Err(if answer.status >= 500 || answer.status == 429 {
                Outcome::Retry(why)
            } else {
                Outcome::Failed(why)
            });
        }
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        let token: Token =
            serde_json::from_slice(&answer.body).map_err(|e| Outcome::Failed(format!("token exchange answer: {e}")))?;
        *cached = Some((token.access_token.clone(), now_s + token.expires_in));
        Ok(token.access_token)
    }

    async fn forget_access_token(&self) {
        *self.access.lock().await = None;
    }
}

/// FCM's `errorCode` (from `error.details[]`) or `error.status`.
fn error_code(body: &Bytes) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return String::new() };
    let error = &v["error"];
    let detail = error["details"].as_array().and_then(|d| d.iter().find_map(|x| x["errorCode"].as_str()));
    detail.or_else(|| error["status"].as_str()).unwrap_or_default().to_owned()
}

#[async_trait]
impl Provider for Fcm {
    fn name(&self) -> &'static str {
        "fcm"
    }

    fn check_token(&self, token: &str) -> Result<(), PushError> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PushError::Token("an FCM registration token is printable ASCII without spaces".into()));
        }
        Ok(())
    }

    async fn send(&self, token: &str, wake: &Wake) -> Outcome {
        let access = match self.access_token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let body = serde_json::json!({ "message": {
            "token": token,
            "data": { "type": "wake", "badge": wake.badge.to_string() },
            "android": { "priority": "high", "collapse_key": "iris-wake" },
        }});
        let url =
            format!("{}/v1/projects/{}/messages:send", self.endpoint.trim_end_matches('/'), self.account.project_id);
        let req = Request::post(url)
            .header("authorization", format!("Bearer {access}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("bad FCM endpoint: {e}")),
        };
        match call(&self.client, req, self.timeout).await {
            Err(why) => Outcome::Retry(why),
            Ok(a) if a.status == 200 => Outcome::Sent,
            Ok(a) => {
                let code = error_code(&a.body);
                match (a.status, code.as_str()) {
                    (404, _) | (_, "UNREGISTERED") => Outcome::InvalidToken(format!("HTTP {} {code}", a.status)),
                    (401, _) => {
                        self.forget_access_token().await;
                        Outcome::Retry("access token refused".into())
                    }
                    (429, _) | (500.., _) => Outcome::Retry(format!("HTTP {} {code}", a.status)),
                    _ => Outcome::Failed(format!("HTTP {} {code}", a.status)),
                }
            }
        }
    }
}

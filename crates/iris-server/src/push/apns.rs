//! APNs: HTTP/2 to `{endpoint}/3/device/{token}` with token-based auth: an ES256 JWT (`iss` the
//! team id, `kid` the key id) reused for 50 minutes (Apple refuses tokens older than an hour and
//! throttles ones renewed more often than every 20 minutes).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use super::http::{call, HttpsClient};
use super::jwt::JwtKey;
use super::{Outcome, Provider, PushError, Wake};
use crate::clock::Clock;

/// How long one provider token is used.
const TOKEN_REUSE_S: u64 = 50 * 60;

/// What APNs needs to know about the app and its key.
pub struct ApnsSettings {
    /// Base URL.
    pub endpoint: String,
    /// The bundle id (`apns-topic`).
    pub topic: String,
    /// `kid`.
    pub key_id: String,
    /// `iss`.
    pub team_id: String,
}

/// Sends alert pushes with a badge and a fixed localized text, never content.
pub struct Apns {
    client: HttpsClient,
    settings: ApnsSettings,
    key: JwtKey,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    /// The current provider token and when it was made (s).
    token: Mutex<Option<(String, u64)>>,
}

impl Apns {
    /// A provider signing with `key`, sending through the HTTP/2 `client`.
    pub fn new(
        client: HttpsClient,
        settings: ApnsSettings,
        key: JwtKey,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Self {
        Self { client, settings, key, clock, timeout, token: Mutex::new(None) }
    }

    fn provider_token(&self) -> Result<String, PushError> {
        let now_s = self.clock.now_ms() / 1000;
        let mut cached = self.token.lock().expect("apns token lock");
        if let Some((token, at)) = cached.as_ref() {
            if now_s < at + TOKEN_REUSE_S {
                return Ok(token.clone());
            }
        }
        let header = serde_json::json!({ "kid": self.settings.key_id });
        let token = self.key.sign(header, &serde_json::json!({ "iss": self.settings.team_id, "iat": now_s }))?;
        *cached = Some((token.clone(), now_s));
        Ok(token)
    }

    fn forget_token(&self) {
        *self.token.lock().expect("apns token lock") = None;
    }
}

/// APNs' `reason` of an error answer.
fn reason(body: &Bytes) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

#[async_trait]
impl Provider for Apns {
    fn name(&self) -> &'static str {
        "apns"
    }

    fn check_token(&self, token: &str) -> Result<(), PushError> {
        if token.len() < 64 || token.len() > 200 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PushError::Token("an APNs device token is 64 to 200 hex digits".into()));
        }
        Ok(())
    }

    async fn send(&self, token: &str, wake: &Wake) -> Outcome {
        let auth = match self.provider_token() {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let body = serde_json::json!({
            "aps": { "badge": wake.badge, "alert": { "loc-key": "IRIS_NEW_MESSAGES" }, "mutable-content": 1 }
        });
        let req = Request::post(format!("{}/3/device/{token}", self.settings.endpoint.trim_end_matches('/')))
            .header("authorization", format!("bearer {auth}"))
            .header("apns-topic", &self.settings.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-collapse-id", "iris-wake")
            .body(Full::new(Bytes::from(body.to_string())));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("bad request: {e}")),
        };
        match call(&self.client, req, self.timeout).await {
            Err(why) => Outcome::Retry(why),
            Ok(a) if a.status == 200 => Outcome::Sent,
            Ok(a) if a.status == 410 => Outcome::InvalidToken(format!("HTTP 410 {}", reason(&a.body))),
            Ok(a)
                if a.status == 400
                    && matches!(reason(&a.body).as_str(), "BadDeviceToken" | "DeviceTokenNotForTopic") =>
            {
                Outcome::InvalidToken(format!("HTTP 400 {}", reason(&a.body)))
            }
            Ok(a) if a.status == 403 && reason(&a.body) == "ExpiredProviderToken" => {
                self.forget_token();
                Outcome::Retry("provider token expired".into())
            }
            Ok(a) if a.status == 429 || a.status >= 500 => {
                Outcome::Retry(format!("HTTP {} {}", a.status, reason(&a.body)))
            }
            Ok(a) => Outcome::Failed(format!("HTTP {} {}", a.status, reason(&a.body))),
        }
    }
}

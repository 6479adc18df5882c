//! The generic webhook / UnifiedPush provider: the token is an `https://` URL (a UnifiedPush
//! distributor's endpoint, or any receiver of the operator's); a wake-up is one POST of a small
//! JSON body to it. UnifiedPush treats the body as opaque bytes for the app.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Uri};

use super::http::{call, HttpsClient};
use super::{Outcome, Provider, PushError, Wake};

/// POSTs wake-ups to the URL each device registered.
pub struct Webhook {
    client: HttpsClient,
    timeout: Duration,
    private_hosts_allowed: bool,
}

impl Webhook {
    /// A provider sending through `client`; `private_hosts_allowed` lets URLs name loopback and
    /// private addresses.
    pub fn new(client: HttpsClient, timeout: Duration, private_hosts_allowed: bool) -> Self {
        Self { client, timeout, private_hosts_allowed }
    }
}

/// Whether `host` names this machine or a private network (as a literal or `localhost`).
fn is_private(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

#[async_trait]
impl Provider for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn check_token(&self, token: &str) -> Result<(), PushError> {
        let bad = |why: &str| Err(PushError::Token(format!("webhook token must be an https:// URL: {why}")));
        let Ok(uri) = token.parse::<Uri>() else { return bad("not a URL") };
        if uri.scheme_str() != Some("https") {
            return bad("not https");
        }
        let Some(host) = uri.host() else { return bad("no host") };
        if !self.private_hosts_allowed && is_private(host) {
            return bad("a loopback or private host");
        }
        Ok(())
    }

    async fn send(&self, token: &str, wake: &Wake) -> Outcome {
        let body = serde_json::json!({ "type": "wake", "badge": wake.badge }).to_string();
        let req = Request::post(token)
            .header("content-type", "application/json")
            .header("ttl", "86400")
            .header("urgency", "high")
            .body(Full::new(Bytes::from(body)));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::InvalidToken(format!("unusable URL: {e}")),
        };
        match call(&self.client, req, self.timeout).await {
            Err(why) => Outcome::Retry(why),
            Ok(a) if (200..300).contains(&a.status) => Outcome::Sent,
            Ok(a) if a.status == 404 || a.status == 410 => Outcome::InvalidToken(format!("HTTP {}", a.status)),
            Ok(a) if a.status == 429 || a.status >= 500 => Outcome::Retry(format!("HTTP {}", a.status)),
            Ok(a) => Outcome::Failed(format!("HTTP {}", a.status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_private;

    #[test]
    fn private_hosts_are_recognised() {
        for host in ["localhost", "127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.1.1", "[::1]", "fd00::1", "0.0.0.0"]
        {
            assert!(is_private(host), "{host}");
        }
        for host in ["up.example.org", "8.8.8.8", "[2001:db8::1]"] {
            assert!(!is_private(host), "{host}");
        }
    }
}

//! The generic webhook / UnifiedPush provider: the token is an `https://` URL (a UnifiedPush
//! distributor's endpoint, or any receiver of the operator's); a wake-up is one POST of a small
//! JSON body to it. UnifiedPush treats the body as opaque bytes for the app.
//!
//! Clients choose these URLs, so unless `push.webhook_private_hosts_allowed` the server refuses
//! to post into its own network (SSRF): a URL whose host is a non-public IP literal, a
//! `*.localhost` name, or a name that resolves to a non-public address is refused at
//! registration (`PUSH_TARGET_FORBIDDEN`), and the client's resolver (`http.rs`) drops such
//! addresses again when it connects, so a name re-pointed inward later is not reached either.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Uri};

use super::http::{call, is_public, HttpsClient};
use super::{Outcome, Provider, PushError, Wake};

/// How long a registration waits for the resolution of a webhook host.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// POSTs wake-ups to the URL each device registered.
pub struct Webhook {
    client: HttpsClient,
    timeout: Duration,
    private_hosts_allowed: bool,
}

impl Webhook {
    /// A provider sending through `client`; `private_hosts_allowed` lets URLs name loopback and
    /// private addresses (the client must have been built with the same setting).
    pub fn new(client: HttpsClient, timeout: Duration, private_hosts_allowed: bool) -> Self {
        Self { client, timeout, private_hosts_allowed }
    }
}

/// Whether `host` (as in a URL) is a non-public IP literal or a `*.localhost` name (RFC 6761:
/// always loopback, whatever a resolver says).
fn is_inward_literal(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| !is_public(ip))
}

/// The URL of a well-formed token: https with a host.
fn parse(token: &str) -> Result<(Uri, String), PushError> {
    let bad = |why: &str| PushError::Token(format!("webhook token must be an https:// URL: {why}"));
    let uri = token.parse::<Uri>().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("not https"));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?.to_owned();
    Ok((uri, host))
}

/// Refuses a host that resolves to any non-public address. A name that does not resolve now is
/// let through: nothing can be posted to it, and the resolver checks again when it connects.
async fn check_resolved(host: &str, port: u16) -> Result<(), PushError> {
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let Ok(Ok(addrs)) = lookup else { return Ok(()) };
    match addrs.map(|a| a.ip()).find(|ip| !is_public(*ip)) {
        Some(ip) => Err(PushError::Forbidden(format!(
            "webhook host {host} resolves to {ip}, a loopback, private or link-local address"
        ))),
        None => Ok(()),
    }
}

#[async_trait]
impl Provider for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn check_token(&self, token: &str) -> Result<(), PushError> {
        let (_, host) = parse(token)?;
        if !self.private_hosts_allowed && is_inward_literal(&host) {
            return Err(PushError::Forbidden(format!(
                "webhook host {host} is a loopback, private or link-local address"
            )));
        }
        Ok(())
    }

    async fn check_target(&self, token: &str) -> Result<(), PushError> {
        let (uri, host) = parse(token)?;
        if self.private_hosts_allowed {
            return Ok(());
        }
        check_resolved(host.trim_start_matches('[').trim_end_matches(']'), uri.port_u16().unwrap_or(443)).await
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
    use super::{check_resolved, is_inward_literal};
    use crate::push::PushError;

    #[test]
    fn inward_literals_are_recognised() {
        for host in
            ["a.localhost", "127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.1.1", "[::1]", "fd00::1", "0.0.0.0"]
        {
            assert!(is_inward_literal(host), "{host}");
        }
        for host in ["up.example.org", "localhost", "8.8.8.8", "[2001:db8::1]"] {
            assert!(!is_inward_literal(host), "{host}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_inward_is_refused() {
        // `localhost` resolves through /etc/hosts on every machine; an unresolvable name passes
        // (the connect-time resolver guards it).
        assert!(matches!(check_resolved("localhost", 443).await, Err(PushError::Forbidden(_))));
        assert!(check_resolved("no-such-host.invalid", 443).await.is_ok());
    }
}

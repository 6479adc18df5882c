//! The HTTPS client of the push providers: hyper's pooled client over rustls (ring), trusting
//! the CAs of one PEM bundle (`push.ca_file`; tests point it at their own CA). HTTP/1.1 for the
//! webhook and FCM, HTTP/2 only for APNs, which speaks nothing else.
//!
//! Host names are resolved by [`Resolver`], which (for the webhook, whose URLs clients choose)
//! drops every address that is not public, so a name that resolves inward, now or after a DNS
//! change since its registration, is never connected to.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls::ClientConfig;
use tower_service::Service;

use super::PushError;
use crate::client_tls::{self, ClientTlsError};

/// Largest provider answer read (errors are small JSON documents).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// A pooled HTTPS client.
pub type HttpsClient = Client<HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>;

/// Whether `ip` is an address of the public internet: not loopback, private (RFC 1918, IPv6
/// unique local), link-local, shared (RFC 6598), unspecified, broadcast or multicast, nor an
/// IPv4-mapped IPv6 form of one of those.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The push client's name resolution: the system resolver, with every non-public address
/// removed unless `private_allowed` (the operator's own endpoints, or tests). A name left with
/// no address fails to connect (a retried failure, like any unreachable host).
#[derive(Clone)]
pub struct Resolver {
    system: GaiResolver,
    private_allowed: bool,
}

impl Resolver {
    /// A resolver keeping non-public addresses only when `private_allowed`.
    pub fn new(private_allowed: bool) -> Self {
        Self { system: GaiResolver::new(), private_allowed }
    }
}

impl Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        let lookup = self.system.call(name);
        let private_allowed = self.private_allowed;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = lookup.await?.filter(|a| private_allowed || is_public(a.ip())).collect();
            if addrs.is_empty() {
                return Err(io::Error::other(format!("{host} has no public address")));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// What a provider answered.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (at most 64 KiB of it).
    pub body: Bytes,
}

/// TLS settings trusting the certificates in `ca_file`.
pub fn tls_config(ca_file: &Path) -> Result<ClientConfig, PushError> {
    let bad = |e: ClientTlsError| PushError::Config(format!("push.ca_file: {e}"));
    client_tls::config(client_tls::roots(Some(ca_file)).map_err(bad)?).map_err(bad)
}

/// A client for HTTP/1.1 endpoints (`http2` false) or HTTP/2-only ones (APNs), connecting to
/// non-public addresses only when `private_allowed` (see [`Resolver`]; IP literals are checked
/// where the URL is accepted).
pub fn client(tls: ClientConfig, http2: bool, private_allowed: bool) -> HttpsClient {
    let mut http = HttpConnector::new_with_resolver(Resolver::new(private_allowed));
    http.enforce_http(false);
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls).https_only();
    let mut client = Client::builder(TokioExecutor::new());
    if http2 {
        client.http2_only(true);
        client.build(builder.enable_http2().wrap_connector(http))
    } else {
        client.build(builder.enable_http1().wrap_connector(http))
    }
}

/// Sends `req` and reads the answer, all within `timeout`. `Err` is a failure before an answer
/// (connect, TLS, timeout): worth a retry.
pub async fn call(client: &HttpsClient, req: Request<Full<Bytes>>, timeout: Duration) -> Result<Answer, String> {
    let exchange = async {
        let response = client.request(req).await.map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let limited = http_body_util::Limited::new(response.into_body(), ANSWER_BYTES_MAX);
        let body = limited.collect().await.map_err(|e| format!("reading the answer failed: {e}"))?.to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    #[test]
    fn public_addresses_are_told_from_inward_ones() {
        let inward = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ];
        for ip in inward {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_inward_addresses_unless_allowed() {
        // `localhost` resolves to loopback on every machine (/etc/hosts).
        let name = || Name::from_str("localhost").unwrap();
        let refused = Resolver::new(false).call(name()).await.expect_err("loopback only");
        assert!(refused.to_string().contains("no public address"), "{refused}");
        let allowed: Vec<SocketAddr> = Resolver::new(true).call(name()).await.unwrap().collect();
        assert!(allowed.iter().any(|a| a.ip().is_loopback()), "{allowed:?}");
    }
}

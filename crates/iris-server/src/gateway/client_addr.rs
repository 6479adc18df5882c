//! Who the client really is behind a load balancer: the networks whose word about a client's
//! address is believed (`[proxy] trusted_networks`), and the `Forwarded` / `X-Forwarded-For`
//! resolution of the HTTP listener. (The framed TCP listener learns the address from a PROXY
//! header, `proxy_protocol.rs`.)
//!
//! **Invariant:** a peer outside the trusted networks is its own client address: its headers
//! are ignored, so nobody can choose the address the per-IP limits count.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks of the load balancers and reverse proxies in front of this node.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts exactly `nets` (empty: nobody, every peer is its own client).
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether `ip` is one of the trusted proxies (IPv4-mapped IPv6 counts as IPv4).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address of an HTTP request that came from `peer`: `peer` itself unless it is
    /// trusted; else the `Forwarded` chain (or, without one, `X-Forwarded-For`) read from the
    /// right, skipping trusted hops, up to the first untrusted address. A hop that is not an
    /// address (`unknown`, an obfuscated name) stops the walk at the proxy that added it.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops = match headers.contains_key("forwarded") {
            true => forwarded_hops(headers),
            false => x_forwarded_for_hops(headers),
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop else { return client };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// The `for=` of every element of every `Forwarded` header, in order (RFC 7239).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(text) = value.to_str() else { return vec![None] };
        for element in text.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
            });
            // An element without `for=` names no client: treat it as opaque.
            hops.push(node.and_then(parse_node));
        }
    }
    hops
}

/// Every address of every `X-Forwarded-For` header, in order.
fn x_forwarded_for_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else { return vec![None] };
        hops.extend(text.split(',').map(|hop| parse_node(hop.trim())));
    }
    hops
}

/// `192.0.2.1`, `192.0.2.1:443`, `[2001:db8::1]`, `[2001:db8::1]:443` or a bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    let ip = if let Some(rest) = node.strip_prefix('[') {
        rest.split_once(']')?.0.parse().ok()?
    } else {
        node.parse::<IpAddr>().ok().or_else(|| node.parse::<SocketAddr>().ok().map(|a| a.ip()))?
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(trusted: &[&str], peer: &str, headers: &[(&'static str, &str)], want: &str) {
        let proxies = TrustedProxies::new(trusted.iter().map(|n| n.parse().unwrap()).collect());
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(axum::http::HeaderName::from_static(name), value.parse().unwrap());
        }
        let got = proxies.client_of(peer.parse().unwrap(), &map);
        assert_eq!(got, want.parse::<IpAddr>().unwrap(), "trusted {trusted:?}, peer {peer}, headers {headers:?}");
    }

    #[test]
    fn headers_count_only_from_trusted_proxies_and_only_up_to_the_first_untrusted_hop() {
        // Proves: untrusted peers cannot pick their address; trusted chains are read from the
        // right; a client cannot push a forged address past the trusted hops.
        let lb = ["10.0.0.0/8"];
        check(&[], "203.0.113.9", &[("x-forwarded-for", "1.1.1.1")], "203.0.113.9");
        check(&lb, "203.0.113.9", &[("x-forwarded-for", "1.1.1.1")], "203.0.113.9");
        check(&lb, "10.0.0.2", &[("x-forwarded-for", "198.51.100.4")], "198.51.100.4");
        check(&lb, "10.0.0.2", &[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.3")], "198.51.100.4");
        check(&lb, "10.0.0.2", &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.4")], "198.51.100.4");
        check(&lb, "10.0.0.2", &[("x-forwarded-for", "10.0.0.7")], "10.0.0.7");
        check(&lb, "10.0.0.2", &[], "10.0.0.2");
        check(&lb, "::ffff:10.0.0.2", &[("x-forwarded-for", "198.51.100.4:5555")], "198.51.100.4");
        check(&lb, "10.0.0.2", &[("x-forwarded-for", "6.6.6.6, garbage")], "10.0.0.2");
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_its_syntax_is_parsed() {
        // Proves: RFC 7239 elements, quoting, IPv6 brackets and ports; `unknown` stops the walk.
        let lb = ["10.0.0.0/8", "fd00::/8"];
        let xff = ("x-forwarded-for", "6.6.6.6");
        check(&lb, "10.0.0.2", &[("forwarded", "for=192.0.2.60;proto=https;by=10.0.0.2"), xff], "192.0.2.60");
        check(&lb, "10.0.0.2", &[("forwarded", r#"for="[2001:db8:cafe::17]:4711""#)], "2001:db8:cafe::17");
        check(&lb, "fd00::1", &[("forwarded", "for=6.6.6.6, For=192.0.2.1:80, for=10.1.1.1")], "192.0.2.1");
        check(&lb, "10.0.0.2", &[("forwarded", "for=6.6.6.6, for=unknown")], "10.0.0.2");
        check(&lb, "10.0.0.2", &[("forwarded", "proto=https")], "10.0.0.2");
    }
}

//! The PROXY protocol (HAProxy's, versions 1 and 2) on the framed TCP listener: a load balancer
//! that passes TCP through writes one header before the client's bytes, naming the client's
//! address. Parsing is pure ([`parse_v1`], [`parse_v2`]); [`read_header`] reads exactly the
//! header's bytes from a stream, never more, so what follows (TLS or frames) is untouched.
//!
//! Whether a header is expected at all is decided by the caller from the peer's address
//! ([`crate::gateway::client_addr::TrustedProxies`]): a header from an untrusted peer is never read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature: the first 12 bytes of every v2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the protocol's own bound).
const V1_LINE_BYTES_MAX: usize = 107;
/// The largest v2 address block read (the 16-bit length allows 64 KiB; TLVs beyond the
/// addresses are skipped, and no load balancer sends more than a few hundred bytes).
const V2_BODY_BYTES_MAX: usize = 4096;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// The connection does not start with a PROXY v1 or v2 header.
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// A header started but is malformed.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// The stream ended or failed inside the header.
    #[error("reading the PROXY protocol header: {0}")]
    Io(String),
}

/// Reads one PROXY header (v1 or v2) from the start of `stream`, consuming exactly its bytes.
/// `Ok(Some(addr))`: the client's address; `Ok(None)`: the proxy speaks for itself (v2 LOCAL,
/// v1 UNKNOWN, or an address family other than IP), so the peer's own address applies.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let io = |e: std::io::Error| ProxyHeaderError::Io(e.to_string());
    let mut start = [0u8; 16];
    stream.read_exact(&mut start[..5]).await.map_err(io)?;
    if &start[..5] == b"PROXY" {
        let mut line = start[..5].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_LINE_BYTES_MAX {
                return Err(ProxyHeaderError::Malformed("v1 line longer than 107 bytes"));
            }
            line.push(stream.read_u8().await.map_err(io)?);
        }
        return parse_v1(&line);
    }
    if start[..5] != V2_SIGNATURE[..5] {
        return Err(ProxyHeaderError::Missing);
    }
    stream.read_exact(&mut start[5..]).await.map_err(io)?;
    let body_len = usize::from(u16::from_be_bytes([start[14], start[15]]));
    if body_len > V2_BODY_BYTES_MAX {
        return Err(ProxyHeaderError::Malformed("v2 address block too long"));
    }
    let mut body = vec![0u8; body_len];
    stream.read_exact(&mut body).await.map_err(io)?;
    parse_v2(&start, &body)
}

/// Parses a v1 line (`PROXY TCP4 1.2.3.4 5.6.7.8 1234 443\r\n`), CRLF included.
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let bad = ProxyHeaderError::Malformed;
    let text = std::str::from_utf8(line).map_err(|_| bad("v1 line is not ASCII"))?;
    let text = text.strip_suffix("\r\n").ok_or(bad("v1 line does not end in CRLF"))?;
    let mut parts = text.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(ProxyHeaderError::Missing);
    }
    let family = parts.next().ok_or(bad("v1 line without a protocol"))?;
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let fields: Vec<&str> = parts.collect();
    let [src, _dst, src_port, _dst_port] = fields[..] else { return Err(bad("v1 line needs 4 address fields")) };
    let ip: IpAddr = match family {
        "TCP4" => src.parse::<Ipv4Addr>().map_err(|_| bad("v1 source is not an IPv4 address"))?.into(),
        "TCP6" => src.parse::<Ipv6Addr>().map_err(|_| bad("v1 source is not an IPv6 address"))?.into(),
        _ => return Err(bad("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let port = src_port.parse::<u16>().map_err(|_| bad("v1 source port is not a port"))?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Parses a v2 header: its fixed 16 bytes and the address block that follows.
pub fn parse_v2(head: &[u8; 16], body: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let bad = ProxyHeaderError::Malformed;
    if head[..12] != V2_SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    if head[12] >> 4 != 2 {
        return Err(bad("v2 version is not 2"));
    }
    match head[12] & 0x0f {
        0 => return Ok(None), // LOCAL: the proxy's own connection (health checks).
        1 => {}               // PROXY
        _ => return Err(bad("v2 command is neither LOCAL nor PROXY")),
    }
    let addr = match head[13] >> 4 {
        1 => {
            let b: &[u8; 12] = body.get(..12).and_then(|b| b.try_into().ok()).ok_or(bad("v2 IPv4 block too short"))?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            SocketAddr::new(ip.into(), u16::from_be_bytes([b[8], b[9]]))
        }
        2 => {
            let b: &[u8; 36] = body.get(..36).and_then(|b| b.try_into().ok()).ok_or(bad("v2 IPv6 block too short"))?;
            let ip: [u8; 16] = b[..16].try_into().expect("16 bytes");
            SocketAddr::new(Ipv6Addr::from(ip).into(), u16::from_be_bytes([b[32], b[33]]))
        }
        _ => return Ok(None), // UNSPEC or UNIX: no IP to take.
    };
    Ok(Some(canonical(addr)))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (so limits and trust lists see one
/// form).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let result = read_header(&mut cursor).await;
        let pos = cursor.position() as usize;
        (result, bytes[pos..].to_vec())
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_address_and_leave_the_rest_unread() {
        // Proves: both versions yield the source address, and exactly the header is consumed.
        let (addr, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7700\r\nHELLO").await;
        assert_eq!(addr, Ok(Some("203.0.113.7:40000".parse().unwrap())));
        assert_eq!(rest, b"HELLO");
        let (addr, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 5 6\r\n").await;
        assert_eq!(addr, Ok(Some("[2001:db8::1]:5".parse().unwrap())));
        assert_eq!(read(b"PROXY UNKNOWN\r\n").await.0, Ok(None));

        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1];
        body.extend_from_slice(&1234u16.to_be_bytes());
        body.extend_from_slice(&7700u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0, 1, 0xff]); // a TLV, skipped
        let mut bytes = v2(1, 0x11, &body);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (addr, rest) = read(&bytes).await;
        assert_eq!(addr, Ok(Some("198.51.100.9:1234".parse().unwrap())));
        assert_eq!(rest, b"\x16\x03\x01");

        let mut body6 = vec![0u8; 36];
        body6[..16].copy_from_slice(&"::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap().octets());
        body6[32..34].copy_from_slice(&99u16.to_be_bytes());
        assert_eq!(read(&v2(1, 0x21, &body6)).await.0, Ok(Some("192.0.2.1:99".parse().unwrap())));
        assert_eq!(read(&v2(0, 0x00, &[])).await.0, Ok(None), "LOCAL: the proxy's own connection");
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        // Proves: a missing, malformed, overlong or truncated header is an error, never an address.
        let check = |bytes: &'static [u8], want: ProxyHeaderError| async move {
            assert_eq!(read(bytes).await.0, Err(want), "{bytes:?}");
        };
        check(b"\x00\x00\x00\x10hello", ProxyHeaderError::Missing).await;
        check(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ProxyHeaderError::Malformed("v1 line needs 4 address fields")).await;
        check(b"PROXY TCP4 ::1 ::1 1 2\r\n", ProxyHeaderError::Malformed("v1 source is not an IPv4 address")).await;
        check(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n", ProxyHeaderError::Malformed("v1 source port is not a port"))
            .await;
        let long = [b"PROXY ".as_slice(), &[b'A'; 200]].concat();
        assert_eq!(read(&long).await.0, Err(ProxyHeaderError::Malformed("v1 line longer than 107 bytes")));
        assert!(matches!(read(b"PROXY TCP4 1.2").await.0, Err(ProxyHeaderError::Io(_))));
        assert_eq!(read(&v2(1, 0x11, &[1, 2, 3])).await.0, Err(ProxyHeaderError::Malformed("v2 IPv4 block too short")));
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert_eq!(read(&wrong_version).await.0, Err(ProxyHeaderError::Malformed("v2 version is not 2")));
    }
}

//! Opening an authenticated connection: find the TCP address, connect, `Hello` → `Welcome`, and
//! refresh the access token once when it expired. Decides whether a failure is worth retrying.

use std::time::Duration;

use iris_proto::http::Credentials;
use iris_proto::pb::{self, client_op, server_event, ErrorCode};
use iris_proto::{version, ErrorCodeExt};

use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::{local_error, ClientError};
use crate::shared::Shared;

/// Refresh the access token before connecting when it expires within this margin.
const EXPIRY_MARGIN_MS: u64 = 30_000;

/// Request id of the `Hello` op; ids of later ops start above it.
pub(crate) const HELLO_REQUEST_ID: u64 = 1;

/// A connection that completed the handshake.
pub(crate) struct Established {
    pub(crate) conn: Connection,
    pub(crate) welcome: pb::Welcome,
    /// Events that arrived in the same frame after the `Welcome` (early deliveries).
    pub(crate) rest: Vec<pb::ServerEvent>,
    /// The ack cursor sent in `Hello`; the server treats it as acked.
    pub(crate) resume_after_seq: u64,
}

/// Why no connection could be established.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Try again later (network down, server overloaded), not before `min_delay` if given.
    Transient { error: ClientError, min_delay: Option<Duration> },
    /// Trying again cannot help (refused credentials, revoked device, no common version).
    Fatal(pb::Error),
}

impl Failure {
    /// The error to show a caller of the first connect.
    pub(crate) fn into_error(self) -> ClientError {
        match self {
            Self::Transient { error, .. } => error,
            Self::Fatal(e) => ClientError::Fatal(e),
        }
    }

    fn transient(error: ClientError) -> Self {
        let min_delay = error.retry_after_ms().map(Duration::from_millis);
        Self::Transient { error, min_delay }
    }
}

/// Connects and authenticates, refreshing the access token first if it is about to expire, or
/// once after the server refused it.
pub(crate) async fn establish(config: &ClientConfig, shared: &Shared) -> Result<Established, Failure> {
    let mut refreshed = false;
    loop {
        let creds = shared.credentials();
        if !refreshed && expires_soon(&creds, now_ms()) {
            refresh(shared, &creds.access_token).await?;
            refreshed = true;
            continue;
        }
        let attempt = tokio::time::timeout(config.connect_timeout, handshake(config, shared, &creds)).await;
        match attempt {
            Err(_) => return Err(Failure::transient(ClientError::Timeout("connect and handshake"))),
            Ok(Ok(established)) => {
                shared.set_welcome(established.welcome.clone());
                return Ok(established);
            }
            Ok(Err(Refusal::Refused(err))) if err.error_code() == ErrorCode::Unauthenticated && !refreshed => {
                tracing::debug!("access token refused, refreshing");
                refresh(shared, &creds.access_token).await?;
                refreshed = true;
            }
            Ok(Err(Refusal::Refused(err))) => return Err(classify(err)),
            Ok(Err(Refusal::GoAway(after))) => {
                return Err(Failure::Transient {
                    error: ClientError::Protocol("server sent GoAway during the handshake".into()),
                    min_delay: Some(after),
                });
            }
            Ok(Err(Refusal::Failed(failure))) => return Err(failure),
        }
    }
}

/// How one handshake attempt ended without a `Welcome`.
enum Refusal {
    Refused(pb::Error),
    GoAway(Duration),
    Failed(Failure),
}

impl From<ClientError> for Refusal {
    fn from(e: ClientError) -> Self {
        Self::Failed(Failure::transient(e))
    }
}

async fn handshake(config: &ClientConfig, shared: &Shared, creds: &Credentials) -> Result<Established, Refusal> {
    let (addr, tls) = match &config.tcp_addr {
        Some(addr) => (addr.clone(), None),
        None => {
            let info = shared.http.server_info().await?;
            let tls = if info.tls { Some(tls_for(config).map_err(fatal)?) } else { None };
            (info.tcp_addr, tls)
        }
    };
    let mut conn = Connection::open(&addr, tls, config.max_server_frame_bytes).await?;
    let resume_after_seq = shared.acked_seq();
    let hello = pb::Hello {
        versions: version::supported(),
        token: creds.access_token.clone(),
        device_id: creds.device_id,
        capabilities: Vec::new(),
        resume_after_seq,
        receipts_unwanted: config.receipts_unwanted.iter().map(|&k| k as i32).collect(),
    };
    let op = pb::ClientOp { request_id: HELLO_REQUEST_ID, op: Some(client_op::Op::Hello(hello)) };
    conn.write(&pb::ClientFrame { ops: vec![op] }, config.connect_timeout).await?;
    loop {
        let Some(frame) = conn.next_frame().await else {
            return Err(ClientError::Protocol("server closed the connection during the handshake".into()).into());
        };
        let mut events = frame?.events.into_iter();
        while let Some(event) = events.next() {
            match event.event {
                Some(server_event::Event::Welcome(welcome)) => {
                    return Ok(Established { conn, welcome, rest: events.collect(), resume_after_seq });
                }
                Some(server_event::Event::Error(err)) => return Err(Refusal::Refused(err)),
                Some(server_event::Event::GoAway(g)) => {
                    return Err(Refusal::GoAway(Duration::from_millis(u64::from(g.reconnect_after_ms))));
                }
                _ => {}
            }
        }
    }
}

/// Refreshes through the shared, serialised path; a refresh the server refuses is fatal.
async fn refresh(shared: &Shared, stale_token: &str) -> Result<(), Failure> {
    match shared.refresh(stale_token).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_retryable() => Err(Failure::transient(e)),
        Err(e) => Err(Failure::Fatal(local_error(ErrorCode::Unauthenticated, format!("token refresh refused: {e}")))),
    }
}

/// Whether a handshake refusal can go away by itself.
fn classify(err: pb::Error) -> Failure {
    match err.error_code() {
        code if code.is_retryable() => Failure::transient(ClientError::Rejected(err)),
        ErrorCode::Internal | ErrorCode::Timeout | ErrorCode::HeartbeatTimeout | ErrorCode::Unspecified => {
            Failure::transient(ClientError::Rejected(err))
        }
        _ => Failure::Fatal(err),
    }
}

fn expires_soon(creds: &Credentials, now_ms: u64) -> bool {
    creds.access_expires_at_ms != 0 && now_ms.saturating_add(EXPIRY_MARGIN_MS) >= creds.access_expires_at_ms
}

/// Wall-clock time in ms since the Unix epoch (the unit of token expiry and pings).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How to speak TLS to the framed listener: the configured CAs (or the system's), checking the
/// name of the HTTP API's host.
fn tls_for(config: &ClientConfig) -> Result<crate::connection::Tls, ClientError> {
    let trust = crate::TlsTrust::chosen_or_system(config.tls.as_ref())?;
    Ok(crate::connection::Tls { connector: trust.connector(), name: crate::tls::server_name_of(&config.http_url)? })
}

/// A failure no retry mends (no CAs, no server name): the client ends with it.
fn fatal(e: ClientError) -> Refusal {
    Refusal::Failed(Failure::Fatal(local_error(ErrorCode::InvalidArgument, e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_shortly_before_they_expire() {
        let creds = |at| Credentials { access_expires_at_ms: at, ..sample() };
        assert!(!expires_soon(&creds(0), 1_000_000), "0 means no expiry known");
        assert!(!expires_soon(&creds(1_000_000 + EXPIRY_MARGIN_MS + 1), 1_000_000));
        assert!(expires_soon(&creds(1_000_000 + EXPIRY_MARGIN_MS), 1_000_000));
        assert!(expires_soon(&creds(5), 1_000_000));
    }

    #[test]
    fn only_transient_refusals_are_retried() {
        assert!(matches!(classify(pb::Error::new(ErrorCode::Overloaded, "")), Failure::Transient { .. }));
        assert!(matches!(classify(pb::Error::new(ErrorCode::Internal, "")), Failure::Transient { .. }));
        for code in [
            ErrorCode::Unauthenticated,
            ErrorCode::DeviceRevoked,
            ErrorCode::UnsupportedVersion,
            ErrorCode::SessionReplaced,
        ] {
            assert!(matches!(classify(pb::Error::new(code, "")), Failure::Fatal(_)), "{code:?}");
        }
    }

    fn sample() -> Credentials {
        Credentials {
            account_id: 1,
            device_id: 1,
            phone: "+14155550123".into(),
            access_token: "a".into(),
            access_expires_at_ms: 0,
            refresh_token: "r".into(),
        }
    }
}

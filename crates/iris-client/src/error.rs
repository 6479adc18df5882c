//! The SDK's one error type: who failed (server, network, this client) and whether a retry helps.

use iris_proto::pb::{self, ErrorCode};
use iris_proto::{ErrorCodeExt, FrameError};

/// Everything an SDK call can fail with. Variants carry what a caller needs to act: the server's
/// typed code, its message and, where it helps, when to retry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP API answered with an error body ([`iris_proto::http::ApiError`]).
    #[error("HTTP {status} {}: {message}", code.as_str_name())]
    Api {
        /// HTTP status code.
        status: u16,
        /// The typed code (`Unspecified` if the server sent a name this build does not know).
        code: ErrorCode,
        /// The server's human-readable explanation.
        message: String,
        /// When a retry can succeed (rate limits, overload).
        retry_after_ms: Option<u64>,
    },
    /// The login is a companion of an existing account: it waits for the primary's approval.
    /// Show the link code, then `HttpApi::wait_for_link`.
    #[error("waiting for the primary device's approval: link code {}", .0.link_code)]
    LinkPending(Box<iris_proto::http::LinkPending>),
    /// The HTTP request did not complete (connection refused, timeout, unreadable body).
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered one operation with an error; the connection stays up. For
    /// `STALE_DEVICES` the error lists the device mismatches.
    #[error("rejected: {0}")]
    Rejected(pb::Error),
    /// The connection ended for good: the handshake was refused, the device was revoked, another
    /// connection replaced this one, or reconnecting was given up.
    #[error("connection ended: {0}")]
    Fatal(pb::Error),
    /// Connecting or writing to the TCP endpoint failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent bytes that are not a valid frame.
    #[error("bad frame from server: {0}")]
    Frame(#[from] FrameError),
    /// The server broke the protocol (for example, no `Welcome` after `Hello`).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A connect or handshake did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The operation would not fit in one frame under the server's limit.
    #[error("operation of {bytes} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Encoded size of the operation.
        bytes: usize,
        /// The frame limit in force.
        max: usize,
    },
    /// An argument was rejected before anything was sent (bad URL, bad phone number).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client was closed (or its background task ended) before the operation completed.
    #[error("client closed")]
    Closed,
    /// End-to-end encryption could not do it (keys, store, a ciphertext).
    #[error("end-to-end encryption: {0}")]
    E2e(#[from] E2eError),
    /// A medium could not be encrypted, decrypted or checked (wrong key, altered blob, hash).
    #[error("media: {0}")]
    Media(String),
    /// TLS could not be set up: no usable CA certificates, or a server name that cannot be
    /// checked. (A failed handshake is [`ClientError::Io`], as the socket reports it.)
    #[error("TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// The server's typed error code, when the server produced this error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            Self::Rejected(e) | Self::Fatal(e) => Some(e.error_code()),
            _ => None,
        }
    }

    /// When the server said a retry can succeed, in milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::Api { retry_after_ms, .. } => *retry_after_ms,
            Self::Rejected(e) | Self::Fatal(e) if e.retry_after_ms > 0 => Some(u64::from(e.retry_after_ms)),
            _ => None,
        }
    }

    /// Whether the same call can succeed later without change (network trouble, overload).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Http(_) | Self::Io(_) | Self::Timeout(_) => true,
            Self::Api { code, status, .. } => code.is_retryable() || *status >= 500,
            Self::Rejected(e) => e.error_code().is_retryable(),
            _ => false,
        }
    }

    /// A stable name for logs and JSON output: the wire code name, or a client-side kind.
    pub fn code_name(&self) -> &'static str {
        match self {
            Self::Api { code, .. } => code.as_str_name(),
            Self::Rejected(e) | Self::Fatal(e) => e.error_code().as_str_name(),
            Self::Http(_) => "CLIENT_HTTP",
            Self::Io(_) => "CLIENT_IO",
            Self::Frame(_) | Self::Protocol(_) => "CLIENT_PROTOCOL",
            Self::Timeout(_) => "CLIENT_TIMEOUT",
            Self::TooLarge { .. } => "CLIENT_TOO_LARGE",
            Self::InvalidArgument(_) => "CLIENT_INVALID_ARGUMENT",
            Self::Closed => "CLIENT_CLOSED",
            Self::E2e(_) => "CLIENT_E2E",
            Self::Media(_) => "CLIENT_MEDIA",
            Self::LinkPending(_) => "CLIENT_LINK_PENDING",
            Self::Tls(_) => "CLIENT_TLS",
        }
    }
}

/// A wire error made up by the client, for terminal conditions the server did not name itself
/// (a refresh refused over HTTP, reconnecting given up).
pub(crate) fn local_error(code: ErrorCode, message: impl Into<String>) -> pb::Error {
    pb::Error { fatal: true, ..pb::Error::new(code, message) }
}

/// Why end-to-end encryption could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum E2eError {
    /// The local key store could not be read or written (or the secret is wrong).
    #[error("key store: {0}")]
    Store(String),
    /// A device's keys cannot be trusted: a bad signature, or keys other than those pinned.
    #[error("untrusted keys of device {account}.{device}: {why}")]
    UntrustedKey {
        /// The account.
        account: u64,
        /// The device.
        device: u32,
        /// What is wrong.
        why: String,
    },
    /// Encryption failed (no session could be made).
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// A ciphertext could not be decrypted or failed a check.
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// A message id whose conversation this device does not know (edits and reactions).
    #[error("message {0} is not one this device has seen; name its conversation")]
    UnknownMessage(u64),
    /// No device of the account published keys: nothing it could read can be sent encrypted.
    #[error("account {0} has no device with end-to-end keys (it can only be sent plaintext)")]
    NoKeys(u64),
}

/// A server answer of the wrong kind for the request it answers: the server broke the protocol.
pub(crate) fn unexpected(event: &iris_proto::pb::server_event::Event) -> ClientError {
    ClientError::Protocol(format!("unexpected answer: {event:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_retry_hints_come_from_the_server_error() {
        let e = ClientError::Rejected(pb::Error::new(ErrorCode::RateLimited, "slow down").with_retry_after(250));
        assert_eq!(e.code(), Some(ErrorCode::RateLimited));
        assert_eq!(e.retry_after_ms(), Some(250));
        assert!(e.is_retryable());
        assert_eq!(e.code_name(), "ERROR_CODE_RATE_LIMITED");
        let e = ClientError::Rejected(pb::Error::new(ErrorCode::UnknownRecipient, "no such account"));
        assert!(!e.is_retryable());
        assert_eq!(e.retry_after_ms(), None);
        assert_eq!(ClientError::Closed.code(), None);
    }
}

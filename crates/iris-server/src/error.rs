//! Every failure a client can be told about, and the single place that picks its wire code and
//! whether it ends the connection.
//!
//! [`ServiceError`] is what a request can fail with (answered, the connection stays);
//! [`SessionError`] is why a connection ends (sent as a fatal `Error`, then closed), either for a
//! reason only a session has (a bad frame, silence, a kick) or because a service failure ends it.
//! Sessions and the HTTP API name variants, never codes. Internal details (store messages) are
//! logged where they happen and never sent to clients.

use iris_proto::pb::{self, ErrorCode};
use iris_store::StoreError;

/// Why a request failed, from the client's point of view.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A field is missing or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The payload exceeds the limit.
    #[error("payload of {size} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Size sent.
        size: usize,
        /// Limit in force.
        max: u32,
    },
    /// No account with that id or phone.
    #[error("unknown recipient")]
    UnknownRecipient,
    /// Per-device payloads do not match the current devices.
    #[error("device list is stale")]
    StaleDevices(Vec<pb::DeviceMismatch>),
    /// A rate limit was hit.
    #[error("rate limit exceeded: {what}")]
    RateLimited {
        /// Which limit.
        what: &'static str,
        /// When a retry can succeed.
        retry_after_ms: u32,
    },
    /// The server is overloaded; nothing was stored.
    #[error("server overloaded")]
    Overloaded {
        /// When a retry can succeed.
        retry_after_ms: u32,
    },
    /// Storage failed; nothing was acknowledged.
    #[error("storage unavailable")]
    Unavailable,
    /// Bad, expired or missing credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The device was revoked.
    #[error("device revoked")]
    DeviceRevoked,
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Too many devices.
    #[error("account already has the maximum of {max} devices")]
    DeviceLimit {
        /// The limit.
        max: u32,
    },
    /// Wrong, expired or exhausted one-time code.
    #[error("{0}")]
    InvalidCode(String),
    /// The group already has the maximum number of members.
    #[error("the group already has the maximum of {max} members")]
    GroupFull {
        /// The limit.
        max: u32,
    },
    /// A cumulative `Ack` beyond the last seq this connection delivered.
    #[error("ack {up_to} is beyond the last delivered seq {delivered}")]
    AckBeyondDelivered {
        /// The seq acked.
        up_to: u64,
        /// The last seq delivered on this connection.
        delivered: u64,
    },
    /// `Hello.resume_after_seq` beyond the last seq this device's inbox ever held: no device can
    /// have processed it, and trusting it would delete (and fake receipts for) what waits.
    #[error("resume_after_seq {resume_after} is beyond the last seq {last} of this device's inbox")]
    ResumeBeyondInbox {
        /// The cursor sent.
        resume_after: u64,
        /// The last seq the inbox ever assigned.
        last: u64,
    },
    /// A bug; details are in the log.
    #[error("internal error")]
    Internal,
    /// An HTTP request body over `limits.http_body_bytes_max`.
    #[error("request body exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// HTTP request headers over `limits.http_header_bytes_max`.
    #[error("request headers exceed the limit of {max} bytes")]
    HeadersTooLarge {
        /// The limit.
        max: usize,
    },
    /// A WebSocket upgrade that offered no subprotocol this server speaks; says which it does.
    #[error("{0}")]
    UnsupportedSubprotocol(String),
    /// A published key's signature does not verify; says which.
    #[error("{0}")]
    InvalidSignature(String),
    /// The device already published other identity keys.
    #[error("this device already published other identity keys; a new identity needs a new device")]
    IdentityMismatch,
    /// A device's pool of one-time keys would exceed its bound.
    #[error("the pool of one-time keys would hold {would_hold}, more than {max}")]
    KeyPoolFull {
        /// The bound.
        max: u32,
        /// What it would have held.
        would_hold: u32,
    },
    /// A media upload larger than its kind allows, or a body past the declared size.
    #[error("{what} of {size} bytes exceeds the limit of {max} bytes")]
    MediaTooLarge {
        /// What was too large (`image`, `upload body`, …).
        what: &'static str,
        /// Size declared or reached.
        size: u64,
        /// Limit in force.
        max: u64,
    },
    /// The uploaded bytes do not have the declared SHA-256.
    #[error("the uploaded bytes have SHA-256 {actual}, not the declared {declared}")]
    MediaHashMismatch {
        /// Declared, hex.
        declared: String,
        /// Computed, hex.
        actual: String,
    },
    /// The bytes are not of the declared kind.
    #[error("the bytes are {found}, not {declared}")]
    MediaKindMismatch {
        /// The declared kind.
        declared: &'static str,
        /// What the bytes look like.
        found: String,
    },
    /// A chunk does not start where the upload stands.
    #[error("the upload stands at offset {offset}, not {sent}")]
    MediaOffsetMismatch {
        /// Where the upload stands.
        offset: u64,
        /// Where the chunk said it starts.
        sent: u64,
    },
    /// The account's hourly upload quota is used up.
    #[error("upload quota of {max_mb} MB per hour used up")]
    MediaQuotaExceeded {
        /// The quota.
        max_mb: u64,
        /// Until the next window.
        retry_after_ms: u32,
    },
    /// A plaintext image the server refuses to process.
    #[error("image refused: {0}")]
    MediaRejected(String),
    /// A download URL with a wrong signature or a past expiry.
    #[error("the download URL is expired or its signature is wrong")]
    MediaUrlExpired,
    /// The SMS gateway did not take a one-time code, after every retry.
    #[error("the one-time code could not be sent: {why}")]
    CodeDeliveryFailed {
        /// What the last attempt met (status or timeout), never the code.
        why: String,
        /// When asking again may succeed.
        retry_after_ms: u32,
    },
    /// A disappearing-messages timer not in the allowed set.
    #[error("timer of {seconds} s is not one of off, 24 h, 7 days, 90 days (0, 86400, 604800, 7776000)")]
    InvalidTimer {
        /// What was asked for.
        seconds: u32,
    },
    /// The push provider is unknown or not configured here; says which.
    #[error("{0}")]
    PushProviderUnavailable(String),
    /// A push token malformed for its provider; says why.
    #[error("{0}")]
    PushTokenInvalid(String),
    /// A test wake-up the provider refused or that failed; says why.
    #[error("{0}")]
    PushDeliveryFailed(String),
    /// A webhook URL that names or resolves to a non-public address (loopback, private,
    /// link-local): the server must not be made to post into its own network; says which.
    #[error("{0}")]
    PushTargetForbidden(String),
    /// No pending device link with this code: never issued, expired or already used.
    #[error("no pending device link with this code (it expired or was used); log in again for a new one")]
    LinkExpired,
    /// The primary refused the device link.
    #[error("the primary device refused this link")]
    LinkRefused,
    /// The account already has its maximum of links waiting for approval.
    #[error("the account already has {max} device links waiting for approval")]
    LinkLimit {
        /// The bound (`devices.pending_links_max`).
        max: u32,
    },
    /// Registering a new primary for a number with a registration PIN, without the right PIN.
    #[error("this number has a registration PIN: {0}")]
    PinRequired(String),
    /// Too many wrong registration PINs.
    #[error("too many wrong PINs; registration is locked")]
    PinLocked {
        /// When the lockout ends.
        retry_after_ms: u32,
    },
    /// A profile field over its bound, or a photo that is no stored image.
    #[error("{0}")]
    ProfileInvalid(String),
    /// No such call, or this device takes no part in it.
    #[error("call not found")]
    CallNotFound,
    /// An offer to more accounts than a call may have.
    #[error("a call has at most {max} participants, the caller included; this one would have {n}")]
    CallTooManyParticipants {
        /// Participants the offer would have.
        n: usize,
        /// The bound.
        max: usize,
    },
    /// The device, the account or the node is in as many calls as allowed.
    #[error("{what} is already in the maximum of {max} calls")]
    CallLimit {
        /// `this device`, `this account` or `the server`.
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// Another device of the account answered or declined the call first.
    #[error("the call was answered or declined on another device")]
    CallAnsweredElsewhere,
    /// The phone's account is being deleted; a login can succeed once that finished.
    #[error("the account of this phone is being deleted; retry in a moment")]
    AccountDeleting,
    /// No pending one-time code (expired, never requested, or its guesses used up).
    #[error("{0}")]
    CodeExpired(String),
    /// The account is suspended pending review (abuse rules or reports); only an operator
    /// lifts it.
    #[error("this account is suspended pending review")]
    AccountSuspended,
    /// Sending to accounts that are not contacts is restricted for a while.
    #[error("sending to accounts that are not your contacts is restricted for now")]
    SendingRestricted {
        /// When the restriction ends.
        retry_after_ms: u32,
    },
    /// Forwarding is limited for a while.
    #[error("forwarding is limited for now: a message was forwarded to too many chats")]
    ForwardingLimited {
        /// When the limit ends.
        retry_after_ms: u32,
    },
    /// A malformed report; says why.
    #[error("{0}")]
    ReportInvalid(String),
}

impl ServiceError {
    /// The wire code of this error: the only place that decides it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) | Self::AckBeyondDelivered { .. } | Self::ResumeBeyondInbox { .. } => {
                ErrorCode::InvalidArgument
            }
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::UnknownRecipient => ErrorCode::UnknownRecipient,
            Self::StaleDevices(_) => ErrorCode::StaleDevices,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::DeviceRevoked => ErrorCode::DeviceRevoked,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::DeviceLimit { .. } => ErrorCode::DeviceLimit,
            Self::InvalidCode(_) => ErrorCode::InvalidCode,
            Self::GroupFull { .. } => ErrorCode::GroupFull,
            Self::Internal => ErrorCode::Internal,
            Self::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Self::HeadersTooLarge { .. } => ErrorCode::HeadersTooLarge,
            Self::UnsupportedSubprotocol(_) => ErrorCode::UnsupportedSubprotocol,
            Self::InvalidSignature(_) => ErrorCode::InvalidSignature,
            Self::IdentityMismatch => ErrorCode::IdentityMismatch,
            Self::KeyPoolFull { .. } => ErrorCode::KeyPoolFull,
            Self::MediaTooLarge { .. } => ErrorCode::MediaTooLarge,
            Self::MediaHashMismatch { .. } => ErrorCode::MediaHashMismatch,
            Self::MediaKindMismatch { .. } => ErrorCode::MediaKindMismatch,
            Self::MediaOffsetMismatch { .. } => ErrorCode::MediaOffsetMismatch,
            Self::MediaQuotaExceeded { .. } => ErrorCode::MediaQuotaExceeded,
            Self::MediaRejected(_) => ErrorCode::MediaRejected,
            Self::MediaUrlExpired => ErrorCode::MediaUrlExpired,
            Self::CodeDeliveryFailed { .. } => ErrorCode::CodeDeliveryFailed,
            Self::InvalidTimer { .. } => ErrorCode::InvalidTimer,
            Self::PushProviderUnavailable(_) => ErrorCode::PushProviderUnavailable,
            Self::PushTokenInvalid(_) => ErrorCode::PushTokenInvalid,
            Self::PushDeliveryFailed(_) => ErrorCode::PushDeliveryFailed,
            Self::PushTargetForbidden(_) => ErrorCode::PushTargetForbidden,
            Self::LinkExpired => ErrorCode::LinkExpired,
            Self::LinkRefused => ErrorCode::LinkRefused,
            Self::LinkLimit { .. } => ErrorCode::LinkLimit,
            Self::PinRequired(_) => ErrorCode::PinRequired,
            Self::PinLocked { .. } => ErrorCode::PinLocked,
            Self::ProfileInvalid(_) => ErrorCode::ProfileInvalid,
            Self::CallNotFound => ErrorCode::CallNotFound,
            Self::CallTooManyParticipants { .. } => ErrorCode::CallTooManyParticipants,
            Self::CallLimit { .. } => ErrorCode::CallLimit,
            Self::CallAnsweredElsewhere => ErrorCode::CallAnsweredElsewhere,
            Self::AccountDeleting => ErrorCode::AccountDeleting,
            Self::CodeExpired(_) => ErrorCode::CodeExpired,
            Self::AccountSuspended => ErrorCode::AccountSuspended,
            Self::SendingRestricted { .. } => ErrorCode::SendingRestricted,
            Self::ForwardingLimited { .. } => ErrorCode::ForwardingLimited,
            Self::ReportInvalid(_) => ErrorCode::ReportInvalid,
        }
    }

    /// When a retry can succeed, for the retryable errors.
    pub fn retry_after_ms(&self) -> Option<u32> {
        match self {
            Self::RateLimited { retry_after_ms, .. }
            | Self::Overloaded { retry_after_ms }
            | Self::MediaQuotaExceeded { retry_after_ms, .. }
            | Self::CodeDeliveryFailed { retry_after_ms, .. }
            | Self::PinLocked { retry_after_ms }
            | Self::SendingRestricted { retry_after_ms }
            | Self::ForwardingLimited { retry_after_ms } => Some(*retry_after_ms),
            Self::Unavailable | Self::AccountDeleting => Some(1000),
            _ => None,
        }
    }

    /// The error as sent on the wire.
    pub fn to_wire(&self) -> pb::Error {
        let mut e = pb::Error::new(self.code(), self.to_string());
        e.retry_after_ms = self.retry_after_ms().unwrap_or(0);
        if let Self::StaleDevices(m) = self {
            e.device_mismatches = m.clone();
        }
        e
    }
}

/// Why a session ends: each is sent as a fatal `Error`, then the connection is closed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// No `Hello` within `session.handshake_timeout_ms`.
    #[error("no Hello in time")]
    HelloTimeout,
    /// The first operation was not `Hello`.
    #[error("the first operation must be Hello")]
    HelloMissing,
    /// A second `Hello` on an established connection.
    #[error("Hello was already received on this connection")]
    HelloRepeated,
    /// The client offered no version this server speaks.
    #[error("no common protocol version")]
    NoCommonVersion,
    /// `Hello.device_id` names another device than the token.
    #[error("device_id does not match the token")]
    DeviceMismatch,
    /// A frame carried more operations than `Limits.max_ops_per_frame`.
    #[error("too many operations in one frame")]
    TooManyOps,
    /// A frame's length prefix exceeds the frame limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A frame exceeded the size limit before its length was known (WebSocket).
    #[error("frame exceeds the size limit")]
    FrameOverLimit,
    /// The bytes were not a valid frame or message.
    #[error("{0}")]
    BadFrame(String),
    /// A frame was started but not completed within `session.frame_timeout_ms`.
    #[error("a frame was not completed in time")]
    FrameTimeout,
    /// Nothing received for twice the heartbeat interval.
    #[error("nothing received for twice the heartbeat interval")]
    HeartbeatTimeout,
    /// Another connection authenticated as the same device.
    #[error("another connection took over this device")]
    Replaced,
    /// The device was revoked while connected.
    #[error("this device was revoked")]
    Revoked,
    /// The device's account was deleted while connected.
    #[error("this account was deleted")]
    AccountDeleted,
    /// A service failure that ends the connection: the handshake's own checks (token, resume
    /// cursor), admission, or an inbox read failing with an error that is not retryable (an
    /// unavailable or overloaded store is read again later instead).
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl SessionError {
    /// The wire code of this error: the only place that decides it for sessions.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::HelloTimeout | Self::FrameTimeout => ErrorCode::Timeout,
            Self::HelloMissing | Self::HelloRepeated => ErrorCode::HandshakeRequired,
            Self::NoCommonVersion => ErrorCode::UnsupportedVersion,
            Self::DeviceMismatch => ErrorCode::Unauthenticated,
            Self::TooManyOps => ErrorCode::TooManyOps,
            Self::FrameTooLarge { .. } | Self::FrameOverLimit => ErrorCode::FrameTooLarge,
            Self::BadFrame(_) => ErrorCode::BadFrame,
            Self::HeartbeatTimeout => ErrorCode::HeartbeatTimeout,
            Self::Replaced => ErrorCode::SessionReplaced,
            Self::Revoked => ErrorCode::DeviceRevoked,
            Self::AccountDeleted => ErrorCode::AccountDeleted,
            Self::Service(e) => e.code(),
        }
    }

    /// The error as sent on the wire: always fatal, since the connection closes after it.
    pub fn to_wire(&self) -> pb::Error {
        let mut e = match self {
            Self::Service(e) => e.to_wire(),
            other => pb::Error::new(other.code(), other.to_string()),
        };
        if let Self::NoCommonVersion = self {
            e.supported_versions = iris_proto::version::supported();
        }
        e.fatal = true;
        e
    }
}

impl From<&crate::gateway::transport::TransportError> for SessionError {
    fn from(e: &crate::gateway::transport::TransportError) -> Self {
        use crate::gateway::transport::TransportError;
        match e {
            TransportError::Frame(iris_proto::FrameError::TooLarge { len, max }) => {
                Self::FrameTooLarge { len: *len, max: *max }
            }
            TransportError::TooLarge => Self::FrameOverLimit,
            other => Self::BadFrame(other.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DeviceLimit { max } => Self::DeviceLimit { max },
            StoreError::Overloaded { retry_after_ms } => Self::Overloaded { retry_after_ms },
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "store unavailable");
                Self::Unavailable
            }
            StoreError::Closed => Self::Unavailable,
            StoreError::PoolFull { max, would_hold } => Self::KeyPoolFull { max, would_hold },
            StoreError::AccountDeleting => Self::AccountDeleting,
            StoreError::Corrupt(why) => {
                tracing::error!(error = %why, "corrupt record in store");
                Self::Internal
            }
        }
    }
}

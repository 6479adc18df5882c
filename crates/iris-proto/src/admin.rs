//! The JSON types of the operators' admin API (`/admin/v1/…` on the admin listener, never on
//! the public port), shared by the server and `iris admin`. Errors use [`crate::http::ApiError`].
//!
//! Not part of the public OpenAPI document: clients never see these.

use serde::{Deserialize, Serialize};

/// `GET /admin/v1/accounts/{id or phone}`: what an operator needs to answer "what is going on
/// with this account".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAccount {
    /// Internal account id.
    pub account_id: u64,
    /// E.164 phone number.
    pub phone: String,
    /// Registration time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the account was last online, as far as the answering node knows (0: unknown, or
    /// online now).
    pub last_seen_ms: u64,
    /// Where `devices[].connected_node` comes from: `cluster registry` (Redis, every node),
    /// `this node` (single node), or `this node (registry unavailable)` (cluster mode with Redis
    /// down: devices connected to other nodes show as not connected).
    pub connections_from: String,
    /// The answering node's id.
    pub answered_by_node: u16,
    /// The account's active devices.
    pub devices: Vec<AdminDevice>,
    /// Rate limits that refused the account or its phone lately (on the answering node).
    pub limits_hit: Vec<AdminLimitHit>,
}

/// One active device of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDevice {
    /// Device number within the account.
    pub device_id: u32,
    /// Label given at login.
    pub name: String,
    /// The account's primary device.
    pub primary: bool,
    /// When it was linked, ms since the Unix epoch.
    pub linked_at_ms: u64,
    /// The node its open connection is on; `None`: not connected.
    pub connected_node: Option<u16>,
    /// When its last session on the answering node ended (`None`: not seen there since that
    /// node started).
    pub last_seen_ms: Option<u64>,
    /// Inbox entries not yet acked (the last sequence number assigned minus the acked cursor;
    /// entries expired since still count until the sweep).
    pub inbox_depth: u64,
}

/// A rate limit that refused an account (or its phone) lately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLimitHit {
    /// The limit's name (the `limit` label of `iris_rate_limited`).
    pub limit: String,
    /// `account` or `phone`: which key the limit counts.
    pub subject: String,
    /// Refusals between `first_at_ms` and `last_at_ms`.
    pub refusals: u64,
    /// First refusal kept, ms since the Unix epoch.
    pub first_at_ms: u64,
    /// Latest refusal, ms since the Unix epoch.
    pub last_at_ms: u64,
}

/// `POST /admin/v1/accounts/{id or phone}/devices/{device_id}/revoke`: the device revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDeviceRevoked {
    /// The account.
    pub account_id: u64,
    /// The revoked device.
    pub device_id: u32,
    /// Its label.
    pub name: String,
}

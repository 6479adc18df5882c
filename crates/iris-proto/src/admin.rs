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
    /// Suspension and restrictions (durable, the same on every node).
    pub abuse: AdminAbuse,
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

/// What the abuse rules (or an operator) decided about an account, as the lookup and the
/// suspension routes show it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AdminAbuse {
    /// Set while the account is suspended pending review.
    pub suspended: Option<AdminSuspension>,
    /// Sends to non-contacts are refused until then, ms since the Unix epoch (0 or past: not
    /// restricted).
    pub sending_restricted_until_ms: u64,
    /// Forwards are refused until then, ms since the Unix epoch (0 or past: not limited).
    pub forwarding_limited_until_ms: u64,
}

/// A suspension pending review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSuspension {
    /// When, ms since the Unix epoch.
    pub since_ms: u64,
    /// What suspended it: `message rate`, `reports`, or `operator: <reason>`.
    pub reason: String,
}

/// The body of `POST /admin/v1/accounts/{account}/suspend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSuspend {
    /// Why, for the next reviewer (at most 500 bytes; recorded as `operator: <reason>`).
    pub reason: String,
}

/// The answer of `suspend`, `unsuspend` and `restrictions/{which}/lift`: whether anything
/// changed, and the account's state after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAbuseChange {
    /// The account.
    pub account_id: u64,
    /// `suspend`: newly suspended (false: it already was, and the first suspension is kept);
    /// `unsuspend`: it was suspended; `lift`: it was restricted.
    pub changed: bool,
    /// The account's state after the change.
    pub abuse: AdminAbuse,
}

/// `GET /admin/v1/accounts/{account}/reports?limit=N`: the reports against an account, newest
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReports {
    /// The reported account.
    pub account_id: u64,
    /// Distinct accounts that reported it within the server's report window.
    pub distinct_reporters_in_window: u64,
    /// The reports, newest first (at most `limit`).
    pub reports: Vec<AdminReport>,
}

/// One user report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReport {
    /// The report's id.
    pub report_id: u64,
    /// The reporting account (0: since deleted).
    pub reporter_account_id: u64,
    /// The reporting device.
    pub reporter_device_id: u32,
    /// When, ms since the Unix epoch.
    pub reported_at_ms: u64,
    /// The reporter's words.
    pub reason: String,
    /// The messages the reporter chose to disclose.
    pub messages: Vec<AdminReportedMessage>,
}

/// A message a reporter disclosed, as their app showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReportedMessage {
    /// Its server id (0: not given).
    pub server_msg_id: u64,
    /// When it was sent, ms since the Unix epoch, as the reporter's app says.
    pub sent_at_ms: u64,
    /// Its content, standard base64 (the bytes may be any encoding the app chose).
    pub content_base64: String,
}

/// `GET /admin/v1/review?limit=N[&before_ms=T&before_account=A]`: the accounts an operator
/// should look at (suspended, or reported within the server's report window), newest first,
/// so a review starts without knowing an account id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReviewQueue {
    /// Reports count from this time on, ms since the Unix epoch (now minus `abuse.report_window_s`).
    pub reported_since_ms: u64,
    /// The accounts, newest first by `at_ms` then account id (at most `limit`).
    pub accounts: Vec<AdminReviewItem>,
    /// Where the next page starts (its `before_ms` and `before_account`); absent when this page
    /// was not full. A full last page is followed by an empty one.
    pub next: Option<AdminReviewCursor>,
}

/// One account in the review queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReviewItem {
    /// The account.
    pub account_id: u64,
    /// Its phone number ("" once the account was deleted).
    pub phone: String,
    /// Where it sorts: the later of its suspension and its latest recent report, ms.
    pub at_ms: u64,
    /// Its suspension, if suspended.
    pub suspended: Option<AdminSuspension>,
    /// Reports against it within the window.
    pub recent_reports: u64,
    /// When its latest report within the window was filed, ms (0: none).
    pub last_reported_at_ms: u64,
}

/// The position a page of the review queue continues from: the query's `before_ms` and
/// `before_account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReviewCursor {
    /// The last item's `at_ms`.
    pub before_ms: u64,
    /// The last item's `account_id`.
    pub before_account: u64,
}

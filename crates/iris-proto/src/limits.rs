//! Protocol limits and their defaults (DESIGN.md, "Wire protocol").
//!
//! The server announces its limits in `Welcome`; anything larger is rejected with a typed error
//! before it costs memory.

/// The limits one server enforces. Defaults follow DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, in bytes, excluding the 4-byte length prefix.
    pub max_frame_bytes: u32,
    /// Largest message payload (or each per-device payload), in bytes.
    pub max_payload_bytes: u32,
    /// Most inbox entries the server puts in one `Delivery`; also the offline-sync batch size.
    pub max_batch_deliveries: u32,
    /// Most operations in one `ClientFrame`.
    pub max_ops_per_frame: u32,
    /// Devices per account: one primary plus linked devices.
    pub max_devices_per_account: u32,
    /// Members per group.
    pub max_group_members: u32,
    /// Sends a connection may have waiting for commit; the server stops reading past this.
    pub max_inflight_sends: u32,
    /// Longest `client_msg_id`, in bytes.
    pub max_client_msg_id_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1024 * 1024,
            max_payload_bytes: 64 * 1024,
            max_batch_deliveries: 100,
            max_ops_per_frame: 256,
            max_devices_per_account: 5,
            max_group_members: 1024,
            max_inflight_sends: 1024,
            max_client_msg_id_bytes: 64,
        }
    }
}

impl From<Limits> for crate::pb::Limits {
    fn from(l: Limits) -> Self {
        Self {
            max_frame_bytes: l.max_frame_bytes,
            max_payload_bytes: l.max_payload_bytes,
            max_batch_deliveries: l.max_batch_deliveries,
            max_ops_per_frame: l.max_ops_per_frame,
            max_devices_per_account: l.max_devices_per_account,
            max_group_members: l.max_group_members,
            max_inflight_sends: l.max_inflight_sends,
            max_client_msg_id_bytes: l.max_client_msg_id_bytes,
        }
    }
}

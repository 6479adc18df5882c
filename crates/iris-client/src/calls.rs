//! Call signaling operations of [`Client`]: offer, answer, ICE candidates, hang-up, reject.
//! What comes back arrives as [`Event::Call`](crate::Event::Call) (ephemeral) and, for a call
//! nobody of this account answered, [`Event::MissedCall`](crate::Event::MissedCall) (an inbox
//! item). SDP and candidates are opaque bytes to the server: an app may encrypt them.

use bytes::Bytes;
use iris_proto::pb::{self, call_op, client_op, server_event};

use crate::client::Client;
use crate::error::unexpected;
use crate::error::ClientError;

/// Who a call goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallTarget {
    /// These accounts (one for a 1:1 call).
    Accounts(Vec<u64>),
    /// The other members of this group.
    Group(u64),
}

impl Client {
    /// Calls `to`: every device of each callee rings. Answers the `STARTED` event: the call's
    /// id, its participants and the TURN credentials for this device's account.
    pub async fn call_offer(&self, to: CallTarget, video: bool, sdp: Bytes) -> Result<pb::CallEvent, ClientError> {
        let (to_account_ids, group_id) = match to {
            CallTarget::Accounts(ids) => (ids, 0),
            CallTarget::Group(g) => (Vec::new(), g),
        };
        let offer = pb::CallOffer { to_account_ids, group_id, video, sdp };
        match self.op(call(call_op::Op::Offer(offer))).await? {
            server_event::Event::Call(started) => Ok(started),
            other => Err(unexpected(&other)),
        }
    }

    /// Takes a ringing call on this device with this SDP answer.
    pub async fn call_answer(&self, call_id: u64, sdp: Bytes) -> Result<(), ClientError> {
        self.call_done(call_op::Op::Answer(pb::CallAnswer { call_id, sdp })).await
    }

    /// Sends an ICE candidate (or any opaque signal) to one device of the call, or with `to`
    /// `None` to every other device taking part (and, from the caller, to the ringing ones).
    pub async fn call_ice(&self, call_id: u64, candidate: Bytes, to: Option<(u64, u32)>) -> Result<(), ClientError> {
        let (to_account_id, to_device_id) = to.unwrap_or_default();
        self.call_done(call_op::Op::Ice(pb::CallIce { call_id, candidate, to_account_id, to_device_id })).await
    }

    /// Leaves the call (cancels it when nobody answered yet; declines it on a ringing device).
    pub async fn call_hangup(&self, call_id: u64) -> Result<(), ClientError> {
        self.call_done(call_op::Op::Hangup(pb::CallHangup { call_id })).await
    }

    /// Declines a ringing call for the whole account.
    pub async fn call_reject(&self, call_id: u64) -> Result<(), ClientError> {
        self.call_done(call_op::Op::Reject(pb::CallReject { call_id })).await
    }

    async fn call_done(&self, op: call_op::Op) -> Result<(), ClientError> {
        match self.op(call(op)).await? {
            server_event::Event::Done(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

fn call(op: call_op::Op) -> client_op::Op {
    client_op::Op::Call(pb::CallOp { op: Some(op) })
}

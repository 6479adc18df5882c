//! Push-notification operations of [`Client`]: register this device's push target (provider +
//! token), remove it, and ask the server for one test wake-up.

use iris_proto::pb::{self, client_op, push_op, server_event, PushProvider};

use crate::client::Client;
use crate::error::unexpected;
use crate::error::ClientError;

impl Client {
    /// Makes (`provider`, `token`) this device's push target, replacing any earlier one.
    pub async fn push_register(&self, provider: PushProvider, token: String) -> Result<pb::PushResult, ClientError> {
        self.push_op(push_op::Op::Register(pb::PushRegister { provider: provider as i32, token })).await
    }

    /// Removes this device's push target.
    pub async fn push_unregister(&self) -> Result<pb::PushResult, ClientError> {
        self.push_op(push_op::Op::Unregister(pb::PushUnregister {})).await
    }

    /// Asks the server to send one wake-up to this device's target now; the answer says whether
    /// the provider accepted it and with which badge.
    pub async fn push_test(&self) -> Result<pb::PushResult, ClientError> {
        self.push_op(push_op::Op::Test(pb::PushTest {})).await
    }

    async fn push_op(&self, op: push_op::Op) -> Result<pb::PushResult, ClientError> {
        match self.op(client_op::Op::Push(pb::PushOp { op: Some(op) })).await? {
            server_event::Event::PushResult(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }
}

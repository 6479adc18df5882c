//! Key-directory operations of [`Client`]: publish this device's keys, count them, query other
//! accounts' identity keys and claim keys to start sessions. These are the plain protocol
//! operations; [`E2e`](crate::E2e) is what uses them to encrypt.

use iris_proto::pb::{self, client_op, keys_op, keys_result, server_event};

use crate::client::Client;
use crate::error::unexpected;
use crate::error::ClientError;

impl Client {
    /// Publishes keys (identity once, one-time keys, a fallback key); answers the counts after.
    pub async fn keys_upload(&self, upload: pb::KeysUpload) -> Result<pb::KeysCount, ClientError> {
        match self.keys_op(keys_op::Op::Upload(upload)).await? {
            keys_result::Result::Count(c) => Ok(c),
            other => Err(ClientError::Protocol(format!("unexpected keys answer: {other:?}"))),
        }
    }

    /// What this device has in the key directory.
    pub async fn keys_count(&self) -> Result<pb::KeysCount, ClientError> {
        match self.keys_op(keys_op::Op::Count(pb::KeysCountRequest {})).await? {
            keys_result::Result::Count(c) => Ok(c),
            other => Err(ClientError::Protocol(format!("unexpected keys answer: {other:?}"))),
        }
    }

    /// The active devices of these accounts (at most 32) and their identity keys.
    pub async fn keys_query(&self, account_ids: Vec<u64>) -> Result<Vec<pb::DeviceKeys>, ClientError> {
        match self.keys_op(keys_op::Op::Query(pb::KeysQuery { account_ids })).await? {
            keys_result::Result::Devices(d) => Ok(d.devices),
            other => Err(ClientError::Protocol(format!("unexpected keys answer: {other:?}"))),
        }
    }

    /// One key per device (each one-time key is handed out once) of every active device of
    /// `account_ids` and of the listed devices.
    pub async fn keys_claim(
        &self,
        account_ids: Vec<u64>,
        devices: Vec<pb::DeviceRef>,
    ) -> Result<Vec<pb::KeyBundle>, ClientError> {
        match self.keys_op(keys_op::Op::Claim(pb::KeysClaim { account_ids, devices })).await? {
            keys_result::Result::Bundles(b) => Ok(b.bundles),
            other => Err(ClientError::Protocol(format!("unexpected keys answer: {other:?}"))),
        }
    }

    async fn keys_op(&self, op: keys_op::Op) -> Result<keys_result::Result, ClientError> {
        match self.op(client_op::Op::Keys(pb::KeysOp { op: Some(op) })).await? {
            server_event::Event::KeysResult(pb::KeysResult { result: Some(r) }) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }
}

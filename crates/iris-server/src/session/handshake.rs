//! The handshake: the first frame's `Hello` (operation count, version, token, device) and the
//! `Welcome` that answers it.
//!
//! Knows the authenticator and the protocol's version rules; nothing of deliveries, services or
//! the store. Every failure here ends the connection ([`SessionError`]).

use iris_proto::pb::{self, client_op, server_event};
use iris_proto::version;
use iris_store::DeviceAddr;

use super::SessionDeps;
use crate::error::SessionError;
use crate::router::UnwantedReceipts;

/// What a valid `Hello` established.
#[derive(Debug)]
pub(super) struct Hello {
    /// The authenticated device.
    pub device: DeviceAddr,
    /// The negotiated version.
    pub version: pb::ProtocolVersion,
    /// The `Hello`'s request id, answered by the `Welcome`.
    pub request_id: u64,
    /// The client's resume cursor (checked against the inbox when the session starts).
    pub resume_after_seq: u64,
    /// The receipt kinds this connection declined.
    pub unwanted: UnwantedReceipts,
}

/// Checks the first frame: at most `max_ops_per_frame` operations, the first a `Hello` with a
/// common version, a valid token and the token's device. Returns it and the frame's other ops.
pub(super) async fn check_hello(
    deps: &SessionDeps,
    frame: pb::ClientFrame,
) -> Result<(Hello, Vec<pb::ClientOp>), SessionError> {
    if frame.ops.len() > deps.limits.max_ops_per_frame as usize {
        return Err(SessionError::TooManyOps);
    }
    let mut ops = frame.ops.into_iter();
    let Some(pb::ClientOp { request_id, op: Some(client_op::Op::Hello(hello)) }) = ops.next() else {
        return Err(SessionError::HelloMissing);
    };
    let version = version::negotiate(&hello.versions).ok_or(SessionError::NoCommonVersion)?;
    let device = deps.auth.authenticate(&hello.token).await?;
    if hello.device_id != device.device {
        return Err(SessionError::DeviceMismatch);
    }
    deps.abuse.check_login(device.account).await?;
    let unwanted = UnwantedReceipts::from_hello(&hello.receipts_unwanted);
    let hello = Hello { device, version, request_id, resume_after_seq: hello.resume_after_seq, unwanted };
    Ok((hello, ops.collect()))
}

/// The `Welcome` answering `hello`.
pub(super) fn welcome(deps: &SessionDeps, hello: &Hello) -> pb::ServerEvent {
    let welcome = pb::Welcome {
        version: Some(hello.version),
        heartbeat_interval_ms: deps.config.heartbeat_interval_ms,
        limits: Some(deps.limits.into()),
        server_time_ms: deps.clock.now_ms(),
        account_id: hello.device.account,
        device_id: hello.device.device,
        capabilities: vec![],
        node_id: deps.node_name.clone(),
    };
    pb::ServerEvent { request_id: hello.request_id, event: Some(server_event::Event::Welcome(welcome)) }
}

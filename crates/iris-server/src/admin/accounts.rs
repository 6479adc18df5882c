//! Account lookup and device revocation for operators.
//!
//! Lookup reads durable facts from the store (account, active devices, inbox cursors) and soft
//! facts from this node (presence's last-seen times, the rate limits' recent refusals) and, in
//! cluster mode, the session registry in Redis (which node holds each device). Revocation is the
//! same path as a user's (`auth::revoke_device`), on behalf of the server.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use iris_proto::admin::{AdminAbuse, AdminAccount, AdminDevice, AdminDeviceRevoked, AdminLimitHit, AdminSuspension};
use iris_store::{AbuseState, Account, AccountId, DeviceAddr, DeviceId};

use super::{AdminError, AdminState};
use crate::auth;
use crate::context::Ctx;
use crate::limit_log::{self, Subject};

/// `GET /admin/v1/accounts/{account}`: the account by id (digits) or phone (`+` and digits).
pub async fn lookup(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AdminAccount>, AdminError> {
    let Path(key) = path.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let ctx = &state.ctx;
    let account = find(ctx, &key).await?;
    Ok(Json(report(ctx, account).await?))
}

/// `POST /admin/v1/accounts/{account}/devices/{device_id}/revoke`: revokes the device as a user
/// revoking it would (connections closed, tokens rejected, inbox deleted, the account's other
/// devices told by a durable `DeviceChange` REMOVED with `by = 0`, the server). Any device,
/// the primary too (a stolen phone): the owner then registers a new primary.
pub async fn revoke(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AdminDeviceRevoked>, AdminError> {
    let Path((key, device)) = path.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let device: DeviceId =
        device.parse().map_err(|_| AdminError::InvalidArgument(format!("not a device number: {device:?}")))?;
    let ctx = &state.ctx;
    let account = find(ctx, &key).await?;
    let addr = DeviceAddr::new(account.id, device);
    let name = match auth::revoke_device(ctx, addr, 0).await {
        Ok(name) => name,
        Err(crate::error::ServiceError::NotFound(_)) => {
            return Err(AdminError::UnknownDevice { account: account.id, device });
        }
        Err(e) => return Err(e.into()),
    };
    ctx.metrics.admin_revocations.inc();
    tracing::warn!(device = %addr, "device revoked by an operator");
    Ok(Json(AdminDeviceRevoked { account_id: account.id, device_id: device, name }))
}

/// The account named by `key`: an id (digits) or an E.164 phone number.
pub(super) async fn find(ctx: &Ctx, key: &str) -> Result<Account, AdminError> {
    let found = if key.starts_with('+') {
        let phone = iris_proto::phone::validate(key).map_err(|e| AdminError::InvalidArgument(e.to_string()))?;
        ctx.store.account_by_phone(&phone).await?
    } else {
        let id: AccountId =
            key.parse().map_err(|_| AdminError::InvalidArgument(format!("not an account id or +phone: {key:?}")))?;
        ctx.store.account(id).await?
    };
    found.ok_or_else(|| AdminError::UnknownAccount(key.to_owned()))
}

/// The account's abuse state as the admin API shows it (in a lookup and after a change).
pub(super) fn abuse_view(state: AbuseState) -> AdminAbuse {
    AdminAbuse {
        suspended: state.suspended.map(|s| AdminSuspension { since_ms: s.since_ms, reason: s.reason }),
        sending_restricted_until_ms: state.sending_restricted_until_ms,
        forwarding_limited_until_ms: state.forwarding_limited_until_ms,
    }
}

/// Everything the lookup shows of `account`.
async fn report(ctx: &Ctx, account: Account) -> Result<AdminAccount, AdminError> {
    let devices = ctx.store.devices(account.id).await?;
    let addrs: Vec<DeviceAddr> = devices.iter().map(|d| d.addr).collect();
    let cursors = ctx.store.cursors(&addrs).await?;
    let (nodes, connections_from) = connected_nodes(ctx, &addrs).await;
    let (last_seen_ms, seen) = ctx.presence.seen(account.id);
    let devices = devices
        .iter()
        .zip(cursors)
        .zip(nodes)
        .map(|((d, cursor), node)| AdminDevice {
            device_id: d.addr.device,
            name: d.name.clone(),
            primary: d.primary,
            linked_at_ms: d.created_at_ms,
            connected_node: node,
            last_seen_ms: seen.get(&d.addr.device).copied(),
            inbox_depth: cursor.last.saturating_sub(cursor.acked),
        })
        .collect();
    let now = limit_log::now_ms();
    let log = &ctx.metrics.limit_log;
    let hits = |subject: Subject, name: &'static str| {
        log.hits(&subject, now).into_iter().map(move |h| AdminLimitHit {
            limit: h.limit.to_owned(),
            subject: name.to_owned(),
            refusals: h.refusals,
            first_at_ms: h.first_at_ms,
            last_at_ms: h.last_at_ms,
        })
    };
    let mut limits_hit: Vec<AdminLimitHit> = hits(Subject::Account(account.id), "account")
        .chain(hits(Subject::Phone(account.phone.clone()), "phone"))
        .collect();
    limits_hit.sort_by_key(|h| std::cmp::Reverse(h.last_at_ms));
    Ok(AdminAccount {
        account_id: account.id,
        phone: account.phone,
        created_at_ms: account.created_at_ms,
        last_seen_ms,
        connections_from: connections_from.to_owned(),
        answered_by_node: ctx.config.node_id,
        devices,
        limits_hit,
        abuse: abuse_view(ctx.sessions.abuse.state(account.id).await?),
    })
}

/// The node each device is connected to: the cluster registry in cluster mode (this node's
/// router when Redis does not answer), else this node's router.
async fn connected_nodes(ctx: &Ctx, addrs: &[DeviceAddr]) -> (Vec<Option<u16>>, &'static str) {
    let here = ctx.config.node_id;
    let local = || -> Vec<Option<u16>> { addrs.iter().map(|&a| ctx.router.is_connected(a).then_some(here)).collect() };
    let Some(cluster) = &ctx.cluster else { return (local(), "this node") };
    match cluster.bus.lookup_devices(addrs).await {
        Ok(nodes) if nodes.len() == addrs.len() => (nodes, "cluster registry"),
        Ok(_) => (local(), "this node (registry unavailable)"),
        Err(e) => {
            tracing::debug!(error = %e, "session registry lookup failed; this node's sessions only");
            (local(), "this node (registry unavailable)")
        }
    }
}

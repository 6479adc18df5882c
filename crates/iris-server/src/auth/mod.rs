//! Accounts and authentication: one-time codes, device credentials, revocation.
//!
//! Flow: `request_code(phone)` → the code goes out through a [`codes::CodeSender`] →
//! `verify(phone, code)` registers a device (the first is the primary, up to the device limit)
//! and returns an access token (signed, short-lived) and a refresh token (random, single-use,
//! stored hashed). Sessions and HTTP calls `authenticate` the access token, which also checks
//! that the device was not revoked.

pub mod access;
pub mod codes;
pub mod erasure;
pub mod housekeeping;
pub mod link;
pub mod pin;
pub mod revocation;
pub mod service;
pub mod shared_codes;
pub mod sms;
pub mod token;

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use iris_proto::http::{Credentials, LinkPending};
use iris_store::{Account, DeviceAddr, DeviceId, RefreshTokenRecord};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::context::Ctx;
use crate::error::ServiceError;
use crate::ratelimit;
use crate::router::Kick;
use codes::CodeError;
use token::TokenClaims;

/// What a client whose code could not be delivered is told to wait: long enough for a gateway
/// outage to pass, short enough for a person waiting on a screen.
const CODE_DELIVERY_RETRY_AFTER_MS: u32 = 30_000;

fn validate_phone(phone: &str) -> Result<String, ServiceError> {
    iris_proto::phone::validate(phone).map_err(|e| ServiceError::InvalidArgument(e.to_string()))
}

/// Issues a one-time code for `phone` and sends it. Returns its lifetime in seconds.
pub async fn request_code(ctx: &Ctx, phone: &str, ip: IpAddr) -> Result<u64, ServiceError> {
    let phone = validate_phone(phone)?;
    let auth = &ctx.auth;
    ratelimit::check_shared(&auth.code_per_ip, &ip).await?;
    ratelimit::check_shared(&auth.code_per_phone, &phone).await?;
    let now = ctx.clock.now_ms();
    let code = match &auth.shared_codes {
        Some(shared) => shared.issue(&phone, now).await?,
        None => auth.codes.issue(&phone, now).map_err(|_| ServiceError::Overloaded { retry_after_ms: 60_000 })?,
    };
    // The sender logs (without the code) and counts its own failures.
    auth.sender.send(&phone, &code).await.map_err(|e| ServiceError::CodeDeliveryFailed {
        why: e.to_string(),
        retry_after_ms: CODE_DELIVERY_RETRY_AFTER_MS,
    })?;
    Ok(auth.code_ttl_s)
}

/// What a verified code leads to.
pub enum Verified {
    /// A device that needs no approval: the first of a new account, or a new primary.
    Registered(Credentials),
    /// A companion of an existing account, waiting for the primary's approval.
    LinkPending(LinkPending),
}

/// A verify request, as the HTTP body carries it.
pub struct VerifyArgs<'a> {
    /// E.164, not yet validated.
    pub phone: &'a str,
    /// The one-time code.
    pub code: &'a str,
    /// The new device's label.
    pub device_name: &'a str,
    /// Register a new primary (re-registration) instead of linking a companion.
    pub new_primary: bool,
    /// The registration PIN, for a new primary.
    pub pin: Option<&'a str>,
}

/// Checks the code, then: a phone without an account gets a new account and its primary
/// (limited per IP per day); `new_primary` replaces every device of the account by a new
/// primary (after the registration PIN, if the account has one); otherwise a companion link
/// waits for the primary's approval (`link.rs`).
pub async fn verify(ctx: &Ctx, args: VerifyArgs<'_>, ip: IpAddr) -> Result<Verified, ServiceError> {
    let phone = validate_phone(args.phone)?;
    let device_name = args.device_name;
    if device_name.len() > 64 {
        return Err(ServiceError::InvalidArgument("device_name is longer than 64 bytes".into()));
    }
    ratelimit::check_shared(&ctx.auth.verify_per_ip, &ip).await?;
    let now = ctx.clock.now_ms();
    let checked = match &ctx.auth.shared_codes {
        Some(shared) => shared.check(&phone, args.code, now).await?,
        None => ctx.auth.codes.check(&phone, args.code, now),
    };
    checked.map_err(|e| match e {
        CodeError::BookFull => ServiceError::Overloaded { retry_after_ms: 60_000 },
        other => ServiceError::InvalidCode(other.to_string()),
    })?;
    let existing = ctx.store.account_by_phone(&phone).await?;
    let Some(account) = existing else {
        // Counted after the code checked out (wrong guesses have their own limits); a refused
        // registration uses the code up, but it would expire long before the limit's retry_after.
        ratelimit::check_shared(&ctx.auth.register_per_ip, &ip).await?;
        let max = ctx.limits.max_devices_per_account;
        let (account, device) = ctx.store.register_device(&phone, device_name, now, max).await?;
        ctx.account_changed(account.id);
        tracing::info!(device = %device.addr, primary = device.primary, "device registered");
        return Ok(Verified::Registered(issue_credentials(ctx, device.addr, &account.phone).await?));
    };
    // An account being deleted takes no device, linked or new primary (deletions in progress
    // are few: the list is short).
    if ctx.store.erasures_pending().await?.iter().any(|e| e.account == account.id) {
        return Err(ServiceError::AccountDeleting);
    }
    // A suspended account takes no device either: a new login would only meet the suspension
    // at its Hello.
    ctx.sessions.abuse.check_login(account.id).await?;
    let orphaned = ctx.store.devices(account.id).await?.is_empty();
    if args.new_primary || orphaned {
        return Ok(Verified::Registered(reregister(ctx, &account, device_name, args.pin).await?));
    }
    Ok(Verified::LinkPending(link::start(ctx, &account, device_name).await?))
}

/// A new primary for `account`: the PIN first, then every old device is revoked (connections
/// closed, inboxes deleted, keys withdrawn) and the new one registered, in one store step.
async fn reregister(
    ctx: &Ctx,
    account: &Account,
    device_name: &str,
    pin: Option<&str>,
) -> Result<Credentials, ServiceError> {
    pin::check(ctx, account.id, pin).await?;
    let now = ctx.clock.now_ms();
    let (account, device, revoked) =
        ctx.store.register_primary(&account.phone, device_name, now).await?.ok_or(ServiceError::Internal)?;
    ctx.account_changed(account.id);
    ctx.metrics.devices_reregistrations.inc();
    for old in &revoked {
        revocation::follow_up(ctx, old, None, Kick::Revoked).await?;
    }
    tracing::info!(device = %device.addr, revoked = revoked.len(), "new primary registered");
    issue_credentials(ctx, device.addr, &account.phone).await
}

/// Trades a refresh token (single use) for fresh credentials.
pub async fn refresh(ctx: &Ctx, refresh_token: &str) -> Result<Credentials, ServiceError> {
    let bad = || ServiceError::Unauthenticated("invalid or expired refresh token".into());
    let record = ctx.store.take_refresh_token(&hash_secret(refresh_token)).await?.ok_or_else(bad)?;
    if record.expires_at_ms <= ctx.clock.now_ms() {
        return Err(bad());
    }
    let view = ctx.directory.by_id(record.device.account).await?.ok_or_else(bad)?;
    if !view.devices.contains(&record.device.device) {
        return Err(ServiceError::DeviceRevoked);
    }
    issue_credentials(ctx, record.device, &view.phone).await
}

pub(crate) async fn issue_credentials(ctx: &Ctx, device: DeviceAddr, phone: &str) -> Result<Credentials, ServiceError> {
    let now = ctx.clock.now_ms();
    let access_expires_at_ms = now + ctx.auth.access_ttl_ms;
    let access_token = ctx.auth.signer.sign(TokenClaims { device, expires_at_ms: access_expires_at_ms });
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let refresh_token = B64.encode(secret);
    let record =
        RefreshTokenRecord { hash: hash_secret(&refresh_token), device, expires_at_ms: now + ctx.auth.refresh_ttl_ms };
    ctx.store.put_refresh_token(record).await?;
    Ok(Credentials {
        account_id: device.account,
        device_id: device.device,
        phone: phone.to_owned(),
        access_token,
        access_expires_at_ms,
        refresh_token,
    })
}

pub(crate) fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The device an access token belongs to, if the token is valid and the device still active.
pub async fn authenticate(ctx: &Ctx, token: &str) -> Result<DeviceAddr, ServiceError> {
    ctx.authenticator.authenticate(token).await
}

/// Revokes `target` of the actor's account. The primary may revoke any other device; a linked
/// device may revoke itself; the primary cannot revoke itself (the account would be left with
/// nobody able to manage its devices). Closes the device's connection and deletes its inbox.
pub async fn revoke(ctx: &Ctx, actor: DeviceAddr, target: DeviceId) -> Result<(), ServiceError> {
    let target_addr = DeviceAddr::new(actor.account, target);
    let me = ctx.store.device(actor).await?.ok_or(ServiceError::DeviceRevoked)?;
    if target != actor.device && !me.primary {
        return Err(ServiceError::PermissionDenied("only the primary device may revoke other devices".into()));
    }
    if target == actor.device && me.primary {
        return Err(ServiceError::PermissionDenied("the primary device cannot revoke itself".into()));
    }
    let by = if target == actor.device { 0 } else { actor.device };
    revoke_device(ctx, target_addr, by).await.map(drop)
}

/// Revokes the active device `target` on behalf of device `by` of its account (0: the device
/// itself, or the server: an operator through the admin API), with every consequence: tokens
/// rejected, connections closed (on any node), inbox, push target and keys deleted, and one
/// durable `DeviceChange` REMOVED for each of the account's other devices. The revocation is
/// durable first; a failure after it leaves the rest to [`revocation::resume`]. Checks no
/// permission: callers do. Returns the device's label; `NotFound` if it is not an active device.
pub async fn revoke_device(ctx: &Ctx, target: DeviceAddr, by: DeviceId) -> Result<String, ServiceError> {
    if !ctx.store.revoke_device(target, ctx.clock.now_ms(), Some(by)).await? {
        return Err(ServiceError::NotFound("device"));
    }
    tracing::info!(device = %target, by, "device revoked");
    let device = ctx.store.device(target).await?.ok_or(ServiceError::NotFound("device"))?;
    revocation::follow_up(ctx, &device, Some(by), Kick::Revoked).await?;
    Ok(device.name)
}

//! Device linking with the primary's approval (HTTP flows over `Ctx`).
//!
//! A verified login to an existing account does not create a device: it stores a pending link
//! (a short code to show, and a secret only the new device holds) that expires after
//! `devices.link_code_ttl_s`. The primary approves (the device is created, the account's other
//! devices get a durable `DeviceChange ADDED`) or refuses it; the new device collects its
//! credentials with the secret. Until then it has no device, so no inbox and no messages.
//! An approved link the new device never collects expires like any other; its device, which
//! nobody can ever sign in as, is then revoked ([`sweep`], run by `housekeeping`), so it stops
//! counting toward the device limit and the account's devices hear it removed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use iris_proto::http::{Credentials, DeviceInfo, LinkCollectRequest, LinkPending, PendingLinkInfo};
use iris_proto::pb::DeviceChangeType;
use iris_store::{Account, Device, DeviceAddr, DeviceId, LinkState, PendingLink};
use rand::{Rng, RngCore};

use super::{hash_secret, issue_credentials};
use crate::context::Ctx;
use crate::device_notices::DeviceChange;
use crate::error::ServiceError;

/// Link code letters: no 0/O, 1/I/L or U, so a code read aloud or typed is unambiguous.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
/// Characters of a link code (30^8 ≈ 6.6e11; a code only means something to its account's
/// primary, for a minute).
const CODE_CHARS: usize = 8;

fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_CHARS).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// "K7QF-M2XD": the code as shown.
pub fn display_code(code: &str) -> String {
    if code.len() == CODE_CHARS {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// The code as stored: upper case, without separators (people type "k7qf m2xd").
fn normalize(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

fn ttl_ms(ctx: &Ctx) -> u64 {
    ctx.config.devices.link_code_ttl_s * 1000
}

fn count(ctx: &Ctx, outcome: &'static str) {
    ctx.metrics.devices_links.get_or_create(&vec![("outcome", outcome)]).inc();
}

/// Starts a link of a new device named `device_name` to `account` (its code was verified).
pub(super) async fn start(ctx: &Ctx, account: &Account, device_name: &str) -> Result<LinkPending, ServiceError> {
    let max = ctx.limits.max_devices_per_account;
    if ctx.store.devices(account.id).await?.len() >= max as usize {
        return Err(ServiceError::DeviceLimit { max });
    }
    let now = ctx.clock.now_ms();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let link_secret = B64.encode(secret);
    let link = PendingLink {
        account: account.id,
        code: new_code(),
        secret_hash: hash_secret(&link_secret),
        device_name: device_name.to_owned(),
        expires_at_ms: now + ttl_ms(ctx),
        state: LinkState::Pending,
    };
    let bound = ctx.config.devices.pending_links_max;
    if !ctx.store.put_link(&link, now, bound).await? {
        count(ctx, "limit");
        return Err(ServiceError::LinkLimit { max: bound });
    }
    count(ctx, "requested");
    tracing::info!(account = account.id, "device link requested");
    Ok(LinkPending {
        account_id: account.id,
        link_code: display_code(&link.code),
        link_secret,
        expires_in_s: ctx.config.devices.link_code_ttl_s,
    })
}

/// Only the primary approves, refuses and lists links.
async fn require_primary(ctx: &Ctx, actor: DeviceAddr) -> Result<(), ServiceError> {
    let me = ctx.store.device(actor).await?.ok_or(ServiceError::DeviceRevoked)?;
    if !me.primary {
        return Err(ServiceError::PermissionDenied(
            "only the primary device may approve or refuse device links".into(),
        ));
    }
    Ok(())
}

/// Checks that `actor` is the primary and that its account's link `code` is pending and
/// unexpired; returns the code as stored. Whoever then changes the link still races others.
async fn check_pending(ctx: &Ctx, actor: DeviceAddr, code: &str) -> Result<String, ServiceError> {
    require_primary(ctx, actor).await?;
    let code = normalize(code);
    let now = ctx.clock.now_ms();
    match ctx.store.link(actor.account, &code).await? {
        Some(l) if l.is_waiting_at(now) => Ok(code),
        Some(l) if l.expires_at_ms <= now => {
            count(ctx, "expired");
            Err(ServiceError::LinkExpired)
        }
        _ => Err(ServiceError::LinkExpired),
    }
}

/// The primary approves link `code`: the device is created and announced; the new device
/// collects its credentials within another `link_code_ttl_s`. The device and the approved link
/// are one store step (`approve_link`), so no crash leaves a device nobody can collect; over the
/// device limit the link stays pending (revoke a device, then approve again).
pub async fn approve(ctx: &Ctx, actor: DeviceAddr, code: &str) -> Result<DeviceInfo, ServiceError> {
    let code = check_pending(ctx, actor, code).await?;
    let now = ctx.clock.now_ms();
    let max = ctx.limits.max_devices_per_account;
    let device = ctx
        .store
        .approve_link(actor.account, &code, now, now + ttl_ms(ctx), max)
        .await?
        .ok_or(ServiceError::LinkExpired)?;
    ctx.account_changed(actor.account);
    count(ctx, "approved");
    tracing::info!(device = %device.addr, by = %actor, "device link approved");
    // The device exists now, so the approval stands; a notice that fails here is sent when the
    // new device collects its credentials (deduplicated, so never twice).
    if let Err(e) = announce_added(ctx, &device, actor.device).await {
        tracing::warn!(device = %device.addr, error = %e, "device added; its notice waits for the collection");
    }
    Ok(DeviceInfo {
        device_id: device.addr.device,
        name: device.name,
        primary: false,
        created_at_ms: device.created_at_ms,
    })
}

/// The primary refuses link `code`: the new device is told `LINK_REFUSED`.
pub async fn refuse(ctx: &Ctx, actor: DeviceAddr, code: &str) -> Result<(), ServiceError> {
    let code = check_pending(ctx, actor, code).await?;
    // One store step, so of a refusal and an approval racing exactly one wins.
    if !ctx.store.refuse_link(actor.account, &code, ctx.clock.now_ms()).await? {
        return Err(ServiceError::LinkExpired);
    }
    count(ctx, "refused");
    Ok(())
}

/// Tells the account's other devices that `device` was added, approved by device `by`.
async fn announce_added(ctx: &Ctx, device: &Device, by: DeviceId) -> Result<(), ServiceError> {
    let change = DeviceChange { device: device.addr, name: device.name.clone(), kind: DeviceChangeType::Added, by };
    ctx.sessions.device_notices.announce(change).await
}

/// The links of `actor`'s account waiting for approval (primary only).
pub async fn pending(ctx: &Ctx, actor: DeviceAddr) -> Result<Vec<PendingLinkInfo>, ServiceError> {
    require_primary(ctx, actor).await?;
    let now = ctx.clock.now_ms();
    Ok(ctx
        .store
        .links(actor.account)
        .await?
        .into_iter()
        .filter(|l| l.is_waiting_at(now))
        .map(|l| PendingLinkInfo {
            link_code: display_code(&l.code),
            device_name: l.device_name,
            expires_at_ms: l.expires_at_ms,
        })
        .collect())
}

/// What collecting a link found.
pub enum Collected {
    /// Approved: the new device's credentials.
    Credentials(Credentials),
    /// Still waiting for the primary.
    Pending(LinkPending),
}

/// The new device asks whether its link was approved, with the secret only it holds.
pub async fn collect(ctx: &Ctx, req: &LinkCollectRequest) -> Result<Collected, ServiceError> {
    let code = normalize(&req.link_code);
    let now = ctx.clock.now_ms();
    let link = ctx.store.link(req.account_id, &code).await?.ok_or(ServiceError::LinkExpired)?;
    if link.secret_hash != hash_secret(&req.link_secret) {
        return Err(ServiceError::LinkExpired);
    }
    if link.expires_at_ms <= now {
        retire(ctx, &link).await?;
        return Err(ServiceError::LinkExpired);
    }
    match link.state {
        LinkState::Pending => Ok(Collected::Pending(LinkPending {
            account_id: req.account_id,
            link_code: display_code(&code),
            link_secret: req.link_secret.clone(),
            expires_in_s: (link.expires_at_ms - now).div_ceil(1000),
        })),
        LinkState::Refused => {
            ctx.store.take_link(req.account_id, &code).await?;
            Err(ServiceError::LinkRefused)
        }
        LinkState::Approved { device } => {
            let addr = DeviceAddr::new(req.account_id, device);
            let devices = ctx.store.devices(req.account_id).await?;
            let Some(added) = devices.iter().find(|d| d.addr == addr) else {
                ctx.store.take_link(req.account_id, &code).await?;
                return Err(ServiceError::DeviceRevoked);
            };
            // Again, in case the approval's notice was lost (a no-op when it was not); before
            // the link is taken, so a failure here leaves it to collect again.
            let by = devices.iter().find(|d| d.primary).map_or(0, |d| d.addr.device);
            announce_added(ctx, added, by).await?;
            ctx.store.take_link(req.account_id, &code).await?.ok_or(ServiceError::LinkExpired)?;
            let view = ctx.directory.by_id(req.account_id).await?.ok_or(ServiceError::LinkExpired)?;
            Ok(Collected::Credentials(issue_credentials(ctx, addr, &view.phone).await?))
        }
    }
}

/// How many expired links one pass of [`sweep`] handles (the next pass takes the rest).
pub(super) const SWEEP_BATCH: usize = 1000;

/// Drops the links that expired by `now_ms`, revoking the device of each approved one that was
/// never collected. Returns how many were dropped; run by the devices' housekeeping.
pub async fn sweep(ctx: &Ctx, now_ms: u64) -> Result<usize, ServiceError> {
    let expired = ctx.store.expired_links(now_ms, SWEEP_BATCH).await?;
    for link in &expired {
        retire(ctx, link).await?;
    }
    Ok(expired.len())
}

/// Drops expired `link`. An approved one's device is revoked first (by the server: `by` 0),
/// so a crash in between leaves the link for the next sweep, which finds the device gone and
/// takes the link; the other order could leave a device nobody can sign in as, for good.
async fn retire(ctx: &Ctx, link: &PendingLink) -> Result<(), ServiceError> {
    if let LinkState::Approved { device } = link.state {
        let addr = DeviceAddr::new(link.account, device);
        match super::revoke_device(ctx, addr, 0).await {
            Ok(_) => {
                count(ctx, "uncollected");
                tracing::info!(device = %addr, "revoked a linked device that never collected its credentials");
            }
            Err(ServiceError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if ctx.store.take_link(link.account, &link.code).await?.is_some() {
        count(ctx, "expired");
    }
    Ok(())
}

//! The registration PIN (HTTP flows over `Ctx`): optional, set by the primary, required when
//! the number registers a new primary. Stored as an Argon2id hash (the `argon2` crate's
//! defaults, a PHC string with its own salt); attempts are counted in the store before the hash
//! is checked, so guesses from many nodes at once share one bound, and
//! `devices.pin_attempts_max` wrong ones in a row lock it for `devices.pin_lockout_s`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use iris_store::{AccountId, DeviceAddr, PinAttempt};

use crate::context::Ctx;
use crate::error::ServiceError;

/// PINs are 4 to 32 digits.
fn validate(pin: &str) -> Result<(), ServiceError> {
    if !(4..=32).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServiceError::InvalidArgument("a PIN is 4 to 32 digits".into()));
    }
    Ok(())
}

async fn require_primary(ctx: &Ctx, actor: DeviceAddr) -> Result<(), ServiceError> {
    let me = ctx.store.device(actor).await?.ok_or(ServiceError::DeviceRevoked)?;
    if !me.primary {
        return Err(ServiceError::PermissionDenied("only the primary device may set or clear the PIN".into()));
    }
    Ok(())
}

/// Argon2 is deliberately slow: off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| ServiceError::Internal)
}

/// Sets (replaces) the account's PIN.
pub async fn set(ctx: &Ctx, actor: DeviceAddr, pin: &str) -> Result<(), ServiceError> {
    validate(pin)?;
    require_primary(ctx, actor).await?;
    let pin = pin.to_owned();
    let hash = blocking(move || {
        let mut salt_bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt_bytes);
        let salt = SaltString::encode_b64(&salt_bytes)?;
        Argon2::default().hash_password(pin.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(|e| {
        tracing::error!(error = %e, "argon2 hashing failed");
        ServiceError::Internal
    })?;
    ctx.store.set_pin(actor.account, Some(&hash)).await?;
    tracing::info!(account = actor.account, "registration PIN set");
    Ok(())
}

/// Removes the account's PIN.
pub async fn clear(ctx: &Ctx, actor: DeviceAddr) -> Result<(), ServiceError> {
    require_primary(ctx, actor).await?;
    ctx.store.set_pin(actor.account, None).await?;
    tracing::info!(account = actor.account, "registration PIN cleared");
    Ok(())
}

fn count(ctx: &Ctx, result: &'static str) {
    ctx.metrics.devices_pin_checks.get_or_create(&vec![("result", result)]).inc();
}

/// Passes when `account` has no PIN or `pin` is it; otherwise `PIN_REQUIRED` or `PIN_LOCKED`.
pub(super) async fn check(ctx: &Ctx, account: AccountId, pin: Option<&str>) -> Result<(), ServiceError> {
    let Some(record) = ctx.store.pin(account).await? else { return Ok(()) };
    let now = ctx.clock.now_ms();
    let locked = |until_ms: u64| ServiceError::PinLocked {
        retry_after_ms: u32::try_from(until_ms.saturating_sub(now)).unwrap_or(u32::MAX),
    };
    let Some(pin) = pin else {
        count(ctx, "missing");
        if record.locked_until_ms > now {
            return Err(locked(record.locked_until_ms));
        }
        return Err(ServiceError::PinRequired("send it as `pin`".into()));
    };
    let d = &ctx.config.devices;
    let (hash, attempts_left) =
        match ctx.store.count_pin_attempt(account, now, d.pin_attempts_max, d.pin_lockout_s * 1000).await? {
            PinAttempt::NoPin => return Ok(()),
            PinAttempt::Locked { until_ms } => {
                count(ctx, "locked");
                return Err(locked(until_ms));
            }
            PinAttempt::Counted { hash, attempts_left } => (hash, attempts_left),
        };
    let pin = pin.to_owned();
    let right = blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| Argon2::default().verify_password(pin.as_bytes(), &parsed).is_ok())
    })
    .await?;
    if right {
        count(ctx, "right");
        ctx.store.reset_pin_attempts(account).await?;
        return Ok(());
    }
    count(ctx, "wrong");
    if attempts_left == 0 {
        return Err(locked(now + d.pin_lockout_s * 1000));
    }
    Err(ServiceError::PinRequired(format!("wrong PIN; {attempts_left} attempts left")))
}

//! Checks an access token: its signature and expiry, and that its device is still active.
//!
//! What a session and the HTTP API ask before they serve a device. Knows the token signer, the
//! directory and the clock; nothing of codes, refresh tokens or the store's write path.

use std::sync::Arc;

use iris_store::DeviceAddr;

use super::token::{TokenError, TokenSigner};
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::ServiceError;

/// Authenticates access tokens.
pub struct Authenticator {
    signer: TokenSigner,
    directory: Arc<Directory>,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    /// Checks tokens signed by `signer` against active devices in `directory` at `clock`'s time.
    pub fn new(signer: TokenSigner, directory: Arc<Directory>, clock: Arc<dyn Clock>) -> Self {
        Self { signer, directory, clock }
    }

    /// The device an access token belongs to, if the token is valid and the device still active.
    pub async fn authenticate(&self, token: &str) -> Result<DeviceAddr, ServiceError> {
        let claims = self.signer.verify(token, self.clock.now_ms()).map_err(|e| match e {
            TokenError::Expired => ServiceError::Unauthenticated("access token expired; refresh it".into()),
            TokenError::Invalid => ServiceError::Unauthenticated("invalid access token".into()),
        })?;
        if !self.directory.is_active(claims.device).await? {
            return Err(ServiceError::DeviceRevoked);
        }
        Ok(claims.device)
    }
}

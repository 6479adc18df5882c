//! Media references of sends: a message naming blobs in `media_ids` holds a reference on each
//! (and on a plaintext image's server-made thumbnail), recorded before its append is queued, so
//! a blob is never collected while a message that names it may still be delivered. References
//! expire with the inbox TTL (the media sweep); a failed append leaves a reference that expires
//! the same way.
//!
//! Knows only the store's media records; nothing of uploads, blob bytes or sessions.

use std::sync::Arc;

use iris_store::{AccountId, MediaId, MediaStore};

use crate::error::ServiceError;

/// Most media one message may reference.
pub const MEDIA_PER_MESSAGE_MAX: usize = 10;

/// Records the media references of sends.
pub struct MediaRefs {
    store: Arc<dyn MediaStore>,
}

impl MediaRefs {
    /// References kept in `store`.
    pub fn new(store: Arc<dyn MediaStore>) -> Self {
        Self { store }
    }

    /// Checks the shape of `media_ids` (before anything else of a send is done).
    pub fn check(media_ids: &[String]) -> Result<(), ServiceError> {
        if media_ids.len() > MEDIA_PER_MESSAGE_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "a message references at most {MEDIA_PER_MESSAGE_MAX} media"
            )));
        }
        if let Some(bad) = media_ids.iter().find(|id| !iris_proto::media::is_media_id(id)) {
            return Err(ServiceError::InvalidArgument(format!("{bad:?} is not a media id (64 lowercase hex digits)")));
        }
        Ok(())
    }

    /// Records that message `server_msg_id` of `account` references `media_ids` and their
    /// thumbnails; `NOT_FOUND` if one is not stored (then nothing is recorded).
    pub async fn record(
        &self,
        server_msg_id: u64,
        account: AccountId,
        media_ids: &[String],
    ) -> Result<(), ServiceError> {
        if media_ids.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<MediaId> = Vec::with_capacity(media_ids.len() * 2);
        for id_hex in media_ids {
            let mut id = [0u8; 32];
            hex::decode_to_slice(id_hex, &mut id).map_err(|_| ServiceError::NotFound("media"))?;
            let blob = self.store.blob(id).await?.ok_or(ServiceError::NotFound("media"))?;
            ids.push(id);
            ids.extend(blob.thumbnail);
        }
        ids.sort_unstable();
        ids.dedup();
        let missing = self.store.add_media_refs(server_msg_id, account, &ids).await?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::NotFound("media"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_checked_for_shape_and_count() {
        let id = "ab".repeat(32);
        assert!(MediaRefs::check(&[]).is_ok());
        assert!(MediaRefs::check(&vec![id.clone(); MEDIA_PER_MESSAGE_MAX]).is_ok());
        let refused = |ids: &[String]| MediaRefs::check(ids).map_err(|e| e.code());
        assert_eq!(refused(&vec![id.clone(); 11]), Err(iris_proto::pb::ErrorCode::InvalidArgument));
        assert_eq!(refused(&["AB".repeat(32)]), Err(iris_proto::pb::ErrorCode::InvalidArgument));
        assert_eq!(refused(&["ab".into()]), Err(iris_proto::pb::ErrorCode::InvalidArgument));
    }
}

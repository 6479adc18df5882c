//! Media metadata on both engines: idempotent upload starts, offsets that survive a reopen,
//! hourly quotas, content-addressed blob records, message references with expiry and account
//! release, and collection of unreferenced blobs only after their grace period; profile photo
//! references that never expire and are removed one account at a time.

mod common;

use common::{Engine, Env};
use iris_store::{profile_photo_ref_id, BlobRecord, MediaId, UploadId, UploadRecord};

fn upload_id(account: u64, n: u8) -> UploadId {
    let mut id = [n; 16];
    id[..8].copy_from_slice(&account.to_be_bytes());
    id
}

fn upload(account: u64, n: u8, key: &str) -> UploadRecord {
    UploadRecord {
        id: upload_id(account, n),
        account,
        idempotency_key: key.into(),
        kind: 1,
        size_bytes: 1000,
        sha256: [7; 32],
        encrypted: false,
        mime: "image/png".into(),
        offset: 0,
        created_at_ms: 1_000,
        media: None,
    }
}

fn blob(id: u8, touched_at_ms: u64) -> BlobRecord {
    BlobRecord {
        id: [id; 32],
        size_bytes: 10,
        kind: 1,
        encrypted: true,
        mime: "application/octet-stream".into(),
        width: 3,
        height: 4,
        thumbnail: Some([id + 100; 32]),
        owner: 5,
        created_at_ms: touched_at_ms,
        touched_at_ms,
    }
}

async fn uploads_start_once_and_keep_their_offset(engine: Engine) {
    // Proves: a retried start (same account and idempotency key) returns the first upload; the
    // durable offset and the finished blob survive a reopen; stale uploads are listed.
    let env = Env::new(engine);
    {
        let store = env.open().await;
        let first = store.create_upload(upload(1, 1, "k")).await.unwrap();
        let retried = store.create_upload(upload(1, 2, "k")).await.unwrap();
        assert_eq!(retried.id, first.id);
        let other_account = store.create_upload(upload(2, 3, "k")).await.unwrap();
        assert_eq!(other_account.id, upload_id(2, 3));
        assert!(store.update_upload(first.id, 600, None).await.unwrap());
        assert!(!store.update_upload(upload_id(9, 9), 1, None).await.unwrap());
    }
    let store = env.open().await;
    let got = store.upload(upload_id(1, 1)).await.unwrap().unwrap();
    assert_eq!((got.offset, got.media, got.sha256), (600, None, [7; 32]));
    store.update_upload(got.id, 1000, Some([8; 32])).await.unwrap();
    assert_eq!(store.upload(got.id).await.unwrap().unwrap().media, Some([8; 32]));
    let stale = store.stale_uploads(2_000, 10).await.unwrap();
    assert_eq!(stale.len(), 2);
    store.delete_upload(got.id).await.unwrap();
    assert_eq!(store.upload(got.id).await.unwrap(), None);
    // The key is free again after the delete.
    assert_eq!(store.create_upload(upload(1, 4, "k")).await.unwrap().id, upload_id(1, 4));
}

async fn quota_is_per_account_and_window(engine: Engine) {
    // Proves: charges add up to the limit and the one that would pass it is refused (and not
    // counted); a new window starts from zero; accounts do not share a window.
    let env = Env::new(engine);
    let store = env.open().await;
    assert!(store.charge_quota(1, 3_600_000, 60, 100).await.unwrap());
    assert!(store.charge_quota(1, 3_600_000, 40, 100).await.unwrap());
    assert!(!store.charge_quota(1, 3_600_000, 1, 100).await.unwrap());
    assert!(store.charge_quota(2, 3_600_000, 100, 100).await.unwrap());
    assert!(store.charge_quota(1, 7_200_000, 100, 100).await.unwrap());
}

async fn a_blob_is_recorded_once_and_touched_again(engine: Engine) {
    // Proves content addressing at the record level: the second put of one id creates nothing
    // and only moves its touch time.
    let env = Env::new(engine);
    let store = env.open().await;
    assert!(store.put_blob(blob(1, 100)).await.unwrap());
    assert!(!store.put_blob(BlobRecord { owner: 6, mime: "x".into(), ..blob(1, 500) }).await.unwrap());
    let got = store.blob([1; 32]).await.unwrap().unwrap();
    assert_eq!((got.owner, got.mime.as_str(), got.touched_at_ms), (5, "application/octet-stream", 500));
    assert_eq!(got.thumbnail, Some([101; 32]));
    assert_eq!(store.blob([2; 32]).await.unwrap(), None);
}

async fn references_keep_blobs_until_they_expire_or_are_released(engine: Engine) {
    // Proves: a reference to a missing blob records nothing; referenced blobs are never
    // collectable; references expire by message id (time) and by account release; an
    // unreferenced blob is collected only once untouched for the grace period.
    let env = Env::new(engine);
    let store = env.open().await;
    let (a, b, c): (MediaId, MediaId, MediaId) = ([1; 32], [2; 32], [3; 32]);
    for id in [1, 2, 3] {
        store.put_blob(blob(id, 100)).await.unwrap();
    }
    assert_eq!(store.add_media_refs(10, 7, &[a, [9; 32]]).await.unwrap(), vec![[9; 32]]);
    assert_eq!(store.media_ref_count(a).await.unwrap(), 0, "nothing recorded for a send refused");
    assert!(store.add_media_refs(10, 7, &[a]).await.unwrap().is_empty());
    assert!(store.add_media_refs(20, 8, &[a, b]).await.unwrap().is_empty());
    assert_eq!(store.media_ref_count(a).await.unwrap(), 2);
    let collectable = |blobs: Vec<BlobRecord>| {
        let mut ids: Vec<MediaId> = blobs.into_iter().map(|b| b.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(collectable(store.collectable_blobs(200, 10).await.unwrap()), vec![c]);
    assert_eq!(collectable(store.collectable_blobs(50, 10).await.unwrap()), Vec::<MediaId>::new(), "grace");
    assert!(!store.delete_blob(a, 200).await.unwrap(), "referenced");
    assert!(!store.delete_blob(c, 50).await.unwrap(), "within the grace period");
    assert!(store.delete_blob(c, 200).await.unwrap());
    assert_eq!(store.blob(c).await.unwrap(), None);

    assert_eq!(store.expire_media_refs(15).await.unwrap(), 1);
    assert_eq!(store.media_ref_count(a).await.unwrap(), 1);
    assert_eq!(store.release_account_media(8).await.unwrap(), 2);
    assert_eq!(collectable(store.collectable_blobs(200, 10).await.unwrap()), vec![a, b]);
    assert!(store.delete_blob(a, 200).await.unwrap() && store.delete_blob(b, 200).await.unwrap());
    assert!(store.collectable_blobs(u64::MAX, 10).await.unwrap().is_empty());
}

async fn profile_photo_references_outlive_expiry_until_removed(engine: Engine) {
    // Proves: a profile photo's reference (profile_photo_ref_id) survives the expiry of every
    // message reference, so its blob is not collectable; two accounts with the same photo hold
    // one reference each; removing one account's leaves the other's (and never touches a
    // message's reference); once all are removed the blob is collectable.
    let env = Env::new(engine);
    let store = env.open().await;
    let (photo, thumb): (MediaId, MediaId) = ([4; 32], [5; 32]);
    store.put_blob(blob(4, 100)).await.unwrap();
    store.put_blob(blob(5, 100)).await.unwrap();
    for account in [7, 8] {
        assert!(store
            .add_media_refs(profile_photo_ref_id(account), account, &[photo, thumb])
            .await
            .unwrap()
            .is_empty());
    }
    store.add_media_refs(30, 7, &[photo]).await.unwrap();
    assert_eq!(store.media_ref_count(photo).await.unwrap(), 3);
    assert_eq!(store.expire_media_refs(u64::MAX >> 1).await.unwrap(), 1, "only the message's reference expires");
    assert!(store.collectable_blobs(200, 10).await.unwrap().is_empty());

    assert_eq!(store.remove_media_refs(profile_photo_ref_id(7), 7, &[photo, thumb, [9; 32]]).await.unwrap(), 2);
    assert_eq!(store.remove_media_refs(profile_photo_ref_id(7), 8, &[photo]).await.unwrap(), 0, "not 8's id");
    assert_eq!((store.media_ref_count(photo).await.unwrap(), store.media_ref_count(thumb).await.unwrap()), (1, 1));
    assert!(store.collectable_blobs(200, 10).await.unwrap().is_empty(), "account 8 still shows it");
    assert_eq!(store.remove_media_refs(profile_photo_ref_id(8), 8, &[photo, thumb]).await.unwrap(), 2);
    assert_eq!(store.collectable_blobs(200, 10).await.unwrap().len(), 2);
}

both_engines!(
    profile_photo_references_outlive_expiry_until_removed,
    uploads_start_once_and_keep_their_offset,
    quota_is_per_account_and_window,
    a_blob_is_recorded_once_and_touched_again,
    references_keep_blobs_until_they_expire_or_are_released,
);

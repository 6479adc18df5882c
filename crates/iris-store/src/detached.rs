//! [`Detached`]: runs every call of an engine on a task of its own.
//!
//! Why: an engine with a connection pool (PostgreSQL) lends a connection to a call until the
//! call's future is polled to the end. The server keeps many store futures in flight per session
//! (acks, receipts, group operations) and polls them only between other steps; when such a
//! step itself waits for a pooled connection, the connections lent to the futures it is not
//! polling never come back, and the pool starves (measured: 50 clients with 4 sends in flight
//! each fell from ~2,000 to 13 msgs/s with 8 connections per shard). On a task of its own a call
//! runs to completion and returns its connection whatever its caller does.
//!
//! `enqueue_append` is passed through (it only queues for the committer, holds no connection,
//! and must stay in call order without a task hop); every other call, and the pending half of a
//! group update, is spawned. Cost: one task per call, about a microsecond.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    AbuseReport, AbuseState, AbuseStore, Account, AccountId, AccountStore, AppendRequest, BlobRecord, BlockStore, Chat,
    ChatTimer, ClaimOutcome, CommitObserver, ContactStore, Device, DeviceAddr, DeviceIdentity, Group, GroupId,
    GroupReceiptRow, GroupStore, IdentityOutcome, InboxCursor, InboxStore, KeyCounts, KeyStore, MediaId, MediaStore,
    MessageIndexStore, MessageRef, PendingAppend, PendingLink, PinAttempt, PinRecord, Profile, ProfileStore, PushStore,
    PushTarget, ReceiptProgress, RefreshTokenRecord, Restriction, SignedKeyRecord, StoreError, StoreResult,
    StoredEntry, Suspension, TimerStore, UploadId, UploadRecord,
};

/// An engine whose calls each run on their own tokio task; see the module doc.
pub struct Detached<S> {
    inner: Arc<S>,
}

impl<S> Detached<S> {
    /// Wraps `engine`.
    pub fn new(engine: S) -> Self {
        Self { inner: Arc::new(engine) }
    }
}

/// Runs `f(engine)` on its own task and waits for it.
async fn detach<S, T, F, Fut>(inner: &Arc<S>, f: F) -> StoreResult<T>
where
    S: Send + Sync + 'static,
    T: Send + 'static,
    F: FnOnce(Arc<S>) -> Fut + Send + 'static,
    Fut: Future<Output = StoreResult<T>> + Send + 'static,
{
    let inner = inner.clone();
    tokio::spawn(async move { f(inner).await })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
}

#[async_trait]
impl<S: AccountStore> AccountStore for Detached<S> {
    async fn account_by_phone(&self, phone: &str) -> StoreResult<Option<Account>> {
        let phone = phone.to_owned();
        detach(&self.inner, move |s| async move { s.account_by_phone(&phone).await }).await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        detach(&self.inner, move |s| async move { s.account(id).await }).await
    }

    async fn register_device(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
        max_devices: u32,
    ) -> StoreResult<(Account, Device)> {
        let (phone, name) = (phone.to_owned(), device_name.to_owned());
        detach(&self.inner, move |s| async move { s.register_device(&phone, &name, now_ms, max_devices).await }).await
    }

    async fn register_primary(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
    ) -> StoreResult<Option<(Account, Device, Vec<Device>)>> {
        let (phone, name) = (phone.to_owned(), device_name.to_owned());
        detach(&self.inner, move |s| async move { s.register_primary(&phone, &name, now_ms).await }).await
    }

    async fn devices(&self, account: AccountId) -> StoreResult<Vec<Device>> {
        detach(&self.inner, move |s| async move { s.devices(account).await }).await
    }

    async fn device(&self, addr: DeviceAddr) -> StoreResult<Option<Device>> {
        detach(&self.inner, move |s| async move { s.device(addr).await }).await
    }

    async fn revoke_device(&self, addr: DeviceAddr, now_ms: u64) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.revoke_device(addr, now_ms).await }).await
    }

    async fn put_refresh_token(&self, token: RefreshTokenRecord) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.put_refresh_token(token).await }).await
    }

    async fn take_refresh_token(&self, hash: &[u8; 32]) -> StoreResult<Option<RefreshTokenRecord>> {
        let hash = *hash;
        detach(&self.inner, move |s| async move { s.take_refresh_token(&hash).await }).await
    }
}

#[async_trait]
impl<S: InboxStore> InboxStore for Detached<S> {
    async fn enqueue_append(&self, req: AppendRequest) -> StoreResult<PendingAppend> {
        self.inner.enqueue_append(req).await
    }

    async fn read(&self, device: DeviceAddr, after_seq: u64, limit: usize) -> StoreResult<Vec<StoredEntry>> {
        detach(&self.inner, move |s| async move { s.read(device, after_seq, limit).await }).await
    }

    async fn ack(&self, device: DeviceAddr, up_to_seq: u64) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.ack(device, up_to_seq).await }).await
    }

    async fn cursor(&self, device: DeviceAddr) -> StoreResult<InboxCursor> {
        detach(&self.inner, move |s| async move { s.cursor(device).await }).await
    }

    async fn cursors(&self, devices: &[DeviceAddr]) -> StoreResult<Vec<InboxCursor>> {
        let devices = devices.to_vec();
        detach(&self.inner, move |s| async move { s.cursors(&devices).await }).await
    }

    async fn purge(&self, device: DeviceAddr) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.purge(device).await }).await
    }

    async fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.expire(older_than_ms, dedup_older_than_ms).await }).await
    }

    async fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.expire_due(now_ms, limit).await }).await
    }

    fn set_commit_observer(&self, observer: Arc<dyn CommitObserver>) {
        self.inner.set_commit_observer(observer);
    }

    fn queue_depth(&self) -> usize {
        self.inner.queue_depth()
    }

    fn is_healthy(&self) -> bool {
        self.inner.is_healthy()
    }

    async fn close(&self) -> StoreResult<()> {
        detach(&self.inner, |s| async move { s.close().await }).await
    }
}

#[async_trait]
impl<S: GroupStore> GroupStore for Detached<S> {
    async fn hold_group_order(&self, group: GroupId) -> StoreResult<Option<crate::GroupOrderHold>> {
        detach(&self.inner, move |s| async move { s.hold_group_order(group).await }).await
    }

    async fn create_group(&self, group: Group) -> StoreResult<Group> {
        detach(&self.inner, move |s| async move { s.create_group(group).await }).await
    }

    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        detach(&self.inner, move |s| async move { s.group(id).await }).await
    }

    async fn update_group(&self, group: &Group) -> StoreResult<bool> {
        let group = group.clone();
        detach(&self.inner, move |s| async move { s.update_group(&group).await }).await
    }

    async fn enqueue_group_update(&self, group: &Group, events: AppendRequest) -> StoreResult<Option<PendingAppend>> {
        let group = group.clone();
        let pending = detach(&self.inner, move |s| async move { s.enqueue_group_update(&group, events).await }).await?;
        // The pending half may use a pooled connection too (cleaning up after the commit).
        Ok(pending.map(|p| -> PendingAppend {
            Box::pin(async move {
                tokio::spawn(p).await.map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
            })
        }))
    }

    async fn groups_of(&self, account: AccountId) -> StoreResult<Vec<GroupId>> {
        detach(&self.inner, move |s| async move { s.groups_of(account).await }).await
    }

    async fn group_by_invite(&self, token: &str) -> StoreResult<Option<GroupId>> {
        let token = token.to_owned();
        detach(&self.inner, move |s| async move { s.group_by_invite(&token).await }).await
    }

    async fn put_group_payload(&self, group: GroupId, server_msg_id: u64, payload: Bytes) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.put_group_payload(group, server_msg_id, payload).await }).await
    }

    async fn group_payload(&self, group: GroupId, server_msg_id: u64) -> StoreResult<Option<Bytes>> {
        detach(&self.inner, move |s| async move { s.group_payload(group, server_msg_id).await }).await
    }

    async fn start_group_receipts(
        &self,
        group: GroupId,
        server_msg_id: u64,
        sender: AccountId,
        recipients: &[AccountId],
    ) -> StoreResult<()> {
        let recipients = recipients.to_vec();
        detach(
            &self.inner,
            move |s| async move { s.start_group_receipts(group, server_msg_id, sender, &recipients).await },
        )
        .await
    }

    async fn mark_group_receipt(
        &self,
        group: GroupId,
        server_msg_id: u64,
        account: AccountId,
        read: bool,
        now_ms: u64,
    ) -> StoreResult<Option<ReceiptProgress>> {
        detach(
            &self.inner,
            move |s| async move { s.mark_group_receipt(group, server_msg_id, account, read, now_ms).await },
        )
        .await
    }

    async fn group_receipts(
        &self,
        group: GroupId,
        server_msg_id: u64,
    ) -> StoreResult<Option<(AccountId, Vec<GroupReceiptRow>)>> {
        detach(&self.inner, move |s| async move { s.group_receipts(group, server_msg_id).await }).await
    }

    async fn expire_group_messages(&self, before_msg_id: u64) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.expire_group_messages(before_msg_id).await }).await
    }
}

#[async_trait]
impl<S: BlockStore> BlockStore for Detached<S> {
    async fn set_blocked(&self, blocker: AccountId, blocked: AccountId, on: bool) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.set_blocked(blocker, blocked, on).await }).await
    }

    async fn is_blocked(&self, blocker: AccountId, blocked: AccountId) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.is_blocked(blocker, blocked).await }).await
    }

    async fn blocked_by(&self, blocker: AccountId) -> StoreResult<Vec<AccountId>> {
        detach(&self.inner, move |s| async move { s.blocked_by(blocker).await }).await
    }
}

#[async_trait]
impl<S: MessageIndexStore> MessageIndexStore for Detached<S> {
    async fn put_message_ref_with_append(&self, server_msg_id: u64, r: MessageRef) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.put_message_ref_with_append(server_msg_id, r).await }).await
    }

    fn message_id_is_near(&self, server_msg_id: u64, account: AccountId) -> bool {
        self.inner.message_id_is_near(server_msg_id, account)
    }

    async fn put_message_ref(&self, server_msg_id: u64, r: MessageRef) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.put_message_ref(server_msg_id, r).await }).await
    }

    async fn message_ref(&self, server_msg_id: u64) -> StoreResult<Option<MessageRef>> {
        detach(&self.inner, move |s| async move { s.message_ref(server_msg_id).await }).await
    }

    async fn expire_message_refs(&self, before_msg_id: u64) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.expire_message_refs(before_msg_id).await }).await
    }

    async fn expire_due_refs(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.expire_due_refs(now_ms, limit).await }).await
    }
}

#[async_trait]
impl<S: TimerStore> TimerStore for Detached<S> {
    async fn set_timer(&self, chat: Chat, timer: ChatTimer) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.set_timer(chat, timer).await }).await
    }

    async fn timer(&self, chat: Chat) -> StoreResult<ChatTimer> {
        detach(&self.inner, move |s| async move { s.timer(chat).await }).await
    }
}

#[async_trait]
impl<S: ContactStore> ContactStore for Detached<S> {
    async fn set_contacts(&self, owner: AccountId, contacts: &[AccountId], on: bool) -> StoreResult<()> {
        let contacts = contacts.to_vec();
        detach(&self.inner, move |s| async move { s.set_contacts(owner, &contacts, on).await }).await
    }

    async fn contacts(&self, owner: AccountId) -> StoreResult<Vec<AccountId>> {
        detach(&self.inner, move |s| async move { s.contacts(owner).await }).await
    }

    async fn is_contact(&self, owner: AccountId, contact: AccountId) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.is_contact(owner, contact).await }).await
    }

    async fn set_presence_privacy(&self, account: AccountId, code: u8) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.set_presence_privacy(account, code).await }).await
    }

    async fn presence_privacy(&self, account: AccountId) -> StoreResult<Option<u8>> {
        detach(&self.inner, move |s| async move { s.presence_privacy(account).await }).await
    }
}

#[async_trait]
impl<S: KeyStore> KeyStore for Detached<S> {
    async fn set_identity(&self, device: DeviceAddr, identity: DeviceIdentity) -> StoreResult<IdentityOutcome> {
        detach(&self.inner, move |s| async move { s.set_identity(device, identity).await }).await
    }

    async fn identities(&self, devices: &[DeviceAddr]) -> StoreResult<Vec<Option<DeviceIdentity>>> {
        let devices = devices.to_vec();
        detach(&self.inner, move |s| async move { s.identities(&devices).await }).await
    }

    async fn add_one_time_keys(
        &self,
        device: DeviceAddr,
        keys: &[SignedKeyRecord],
        pool_max: u32,
        low_watermark: u32,
    ) -> StoreResult<u32> {
        let keys = keys.to_vec();
        detach(&self.inner, move |s| async move { s.add_one_time_keys(device, &keys, pool_max, low_watermark).await })
            .await
    }

    async fn set_fallback_key(&self, device: DeviceAddr, key: SignedKeyRecord) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.set_fallback_key(device, key).await }).await
    }

    async fn key_counts(&self, device: DeviceAddr) -> StoreResult<KeyCounts> {
        detach(&self.inner, move |s| async move { s.key_counts(device).await }).await
    }

    async fn claim_key(&self, device: DeviceAddr, low_watermark: u32) -> StoreResult<ClaimOutcome> {
        detach(&self.inner, move |s| async move { s.claim_key(device, low_watermark).await }).await
    }

    async fn delete_keys(&self, device: DeviceAddr) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.delete_keys(device).await }).await
    }

    async fn record_key_peers(&self, account: AccountId, peers: &[AccountId], now_ms: u64) -> StoreResult<()> {
        let peers = peers.to_vec();
        detach(&self.inner, move |s| async move { s.record_key_peers(account, &peers, now_ms).await }).await
    }

    async fn key_peers(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>> {
        detach(&self.inner, move |s| async move { s.key_peers(account, since_ms).await }).await
    }
}

#[async_trait]
impl<S: MediaStore> MediaStore for Detached<S> {
    async fn create_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord> {
        detach(&self.inner, move |s| async move { s.create_upload(upload).await }).await
    }

    async fn upload(&self, id: UploadId) -> StoreResult<Option<UploadRecord>> {
        detach(&self.inner, move |s| async move { s.upload(id).await }).await
    }

    async fn update_upload(&self, id: UploadId, offset: u64, media: Option<MediaId>) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.update_upload(id, offset, media).await }).await
    }

    async fn delete_upload(&self, id: UploadId) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.delete_upload(id).await }).await
    }

    async fn stale_uploads(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<UploadRecord>> {
        detach(&self.inner, move |s| async move { s.stale_uploads(created_before_ms, limit).await }).await
    }

    async fn charge_quota(
        &self,
        account: AccountId,
        window_start_ms: u64,
        bytes: u64,
        max_bytes: u64,
    ) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.charge_quota(account, window_start_ms, bytes, max_bytes).await })
            .await
    }

    async fn put_blob(&self, blob: BlobRecord) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.put_blob(blob).await }).await
    }

    async fn blob(&self, id: MediaId) -> StoreResult<Option<BlobRecord>> {
        detach(&self.inner, move |s| async move { s.blob(id).await }).await
    }

    async fn add_media_refs(
        &self,
        server_msg_id: u64,
        account: AccountId,
        ids: &[MediaId],
    ) -> StoreResult<Vec<MediaId>> {
        let ids = ids.to_vec();
        detach(&self.inner, move |s| async move { s.add_media_refs(server_msg_id, account, &ids).await }).await
    }

    async fn media_ref_count(&self, id: MediaId) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.media_ref_count(id).await }).await
    }

    async fn expire_media_refs(&self, before_msg_id: u64) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.expire_media_refs(before_msg_id).await }).await
    }

    async fn release_account_media(&self, account: AccountId) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.release_account_media(account).await }).await
    }

    async fn collectable_blobs(&self, touched_before_ms: u64, limit: usize) -> StoreResult<Vec<BlobRecord>> {
        detach(&self.inner, move |s| async move { s.collectable_blobs(touched_before_ms, limit).await }).await
    }

    async fn delete_blob(&self, id: MediaId, touched_before_ms: u64) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.delete_blob(id, touched_before_ms).await }).await
    }
}

#[async_trait]
impl<S: PushStore> PushStore for Detached<S> {
    async fn set_push_target(&self, target: PushTarget) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.set_push_target(target).await }).await
    }

    async fn push_target(&self, device: DeviceAddr) -> StoreResult<Option<PushTarget>> {
        detach(&self.inner, move |s| async move { s.push_target(device).await }).await
    }

    async fn delete_push_target(&self, device: DeviceAddr, only_token: Option<&str>) -> StoreResult<bool> {
        let only_token = only_token.map(str::to_owned);
        detach(&self.inner, move |s| async move { s.delete_push_target(device, only_token.as_deref()).await }).await
    }

    async fn delete_account_push_targets(&self, account: AccountId) -> StoreResult<u64> {
        detach(&self.inner, move |s| async move { s.delete_account_push_targets(account).await }).await
    }
}

#[async_trait]
impl<S: crate::ErasureStore> crate::ErasureStore for Detached<S> {
    async fn begin_erasure(&self, account: &Account, now_ms: u64) -> StoreResult<()> {
        let account = account.clone();
        detach(&self.inner, move |s| async move { s.begin_erasure(&account, now_ms).await }).await
    }

    async fn erasures_pending(&self) -> StoreResult<Vec<crate::PendingErasure>> {
        detach(&self.inner, move |s| async move { s.erasures_pending().await }).await
    }

    async fn groups_pending_for(&self, account: AccountId) -> StoreResult<Vec<GroupId>> {
        detach(&self.inner, move |s| async move { s.groups_pending_for(account).await }).await
    }

    async fn delete_group(&self, group: GroupId) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.delete_group(group).await }).await
    }

    async fn erase_account(&self, erasure: &crate::PendingErasure) -> StoreResult<()> {
        let erasure = erasure.clone();
        detach(&self.inner, move |s| async move { s.erase_account(&erasure).await }).await
    }
}

#[async_trait]
impl<S: ProfileStore> ProfileStore for Detached<S> {
    async fn profile(&self, account: AccountId) -> StoreResult<Option<Profile>> {
        detach(&self.inner, move |s| async move { s.profile(account).await }).await
    }

    async fn set_profile(&self, account: AccountId, profile: &Profile) -> StoreResult<()> {
        let profile = profile.clone();
        detach(&self.inner, move |s| async move { s.set_profile(account, &profile).await }).await
    }

    async fn pin(&self, account: AccountId) -> StoreResult<Option<PinRecord>> {
        detach(&self.inner, move |s| async move { s.pin(account).await }).await
    }

    async fn set_pin(&self, account: AccountId, hash: Option<&str>) -> StoreResult<()> {
        let hash = hash.map(str::to_owned);
        detach(&self.inner, move |s| async move { s.set_pin(account, hash.as_deref()).await }).await
    }

    async fn count_pin_attempt(
        &self,
        account: AccountId,
        now_ms: u64,
        attempts_max: u32,
        lockout_ms: u64,
    ) -> StoreResult<PinAttempt> {
        detach(
            &self.inner,
            move |s| async move { s.count_pin_attempt(account, now_ms, attempts_max, lockout_ms).await },
        )
        .await
    }

    async fn reset_pin_attempts(&self, account: AccountId) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.reset_pin_attempts(account).await }).await
    }

    async fn put_link(&self, link: &PendingLink, now_ms: u64, max_pending: u32) -> StoreResult<bool> {
        let link = link.clone();
        detach(&self.inner, move |s| async move { s.put_link(&link, now_ms, max_pending).await }).await
    }

    async fn link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>> {
        let code = code.to_owned();
        detach(&self.inner, move |s| async move { s.link(account, &code).await }).await
    }

    async fn take_link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>> {
        let code = code.to_owned();
        detach(&self.inner, move |s| async move { s.take_link(account, &code).await }).await
    }

    async fn links(&self, account: AccountId) -> StoreResult<Vec<PendingLink>> {
        detach(&self.inner, move |s| async move { s.links(account).await }).await
    }

    async fn erase_profile_rows(&self, account: AccountId) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.erase_profile_rows(account).await }).await
    }
}

#[async_trait]
impl<S: AbuseStore> AbuseStore for Detached<S> {
    async fn abuse_state(&self, account: AccountId) -> StoreResult<AbuseState> {
        detach(&self.inner, move |s| async move { s.abuse_state(account).await }).await
    }

    async fn suspend(&self, account: AccountId, suspension: Suspension) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.suspend(account, suspension).await }).await
    }

    async fn unsuspend(&self, account: AccountId) -> StoreResult<bool> {
        detach(&self.inner, move |s| async move { s.unsuspend(account).await }).await
    }

    async fn set_restriction(&self, account: AccountId, restriction: Restriction, until_ms: u64) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.set_restriction(account, restriction, until_ms).await }).await
    }

    async fn add_report(&self, report: AbuseReport) -> StoreResult<()> {
        detach(&self.inner, move |s| async move { s.add_report(report).await }).await
    }

    async fn reports(&self, account: AccountId, limit: usize) -> StoreResult<Vec<AbuseReport>> {
        detach(&self.inner, move |s| async move { s.reports(account, limit).await }).await
    }

    async fn reporters_since(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>> {
        detach(&self.inner, move |s| async move { s.reporters_since(account, since_ms).await }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{FjallConfig, FjallStore};
    use crate::AppendOutcome;

    #[tokio::test]
    async fn calls_reach_the_engine_and_answers_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Detached::new(FjallStore::open(dir.path(), FjallConfig::default()).unwrap());
        let (account, device) = store.register_device("+15550001111", "d", 1, 5).await.unwrap();
        assert_eq!(store.account_by_phone("+15550001111").await.unwrap(), Some(account.clone()));
        let entry = crate::NewEntry { device: device.addr, item: Bytes::from_static(b"x") };
        let req =
            AppendRequest { expires_at_ms: None, dedup: None, server_msg_id: 1, server_ts_ms: 1, entries: vec![entry] };
        assert_eq!(store.append(req).await.unwrap(), AppendOutcome::Appended { seqs: vec![1] });
        assert_eq!(store.cursors(&[device.addr]).await.unwrap(), vec![InboxCursor { acked: 0, last: 1 }]);
        store.close().await.unwrap();
    }
}

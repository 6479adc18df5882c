//! A real store whose appends fail on demand ([`FaultyStore`]): the embedded engine in a
//! temporary directory, with a switch that makes `enqueue_append` fail the way a full disk or an
//! overloaded committer does, and a count of the failures it injected (so a test waits for the
//! fault to have happened instead of sleeping). Everything else is delegated unchanged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tempfile::TempDir;

/// What a [`FaultyStore`] does while its switch is on.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `enqueue_append` fails with `Overloaded { retry_after_ms }`: the committer queue stayed full.
    Overloaded {
        /// The wait the store suggests.
        retry_after_ms: u32,
    },
    /// `enqueue_append` fails with `Unavailable` and `is_healthy()` is false: disk full or an
    /// fsync error.
    Unavailable,
}

/// A real embedded store (fjall, in its own temporary directory) whose appends fail with a chosen
/// [`Fault`] while a shared switch is on. Everything else is delegated unchanged.
pub struct FaultyStore {
    inner: iris_store::embedded::FjallStore,
    fault: Fault,
    failing: Arc<AtomicBool>,
    /// Appends failed on purpose so far.
    injected: AtomicU64,
    /// Dropped after `inner` (fields drop in order).
    _dir: TempDir,
}

impl FaultyStore {
    /// Opens the wrapped store; the returned switch turns the fault on (`true`) and off.
    pub fn open(fault: Fault) -> (Arc<Self>, Arc<AtomicBool>) {
        let dir = tempfile::tempdir().expect("create a temporary store dir");
        let inner = iris_store::embedded::FjallStore::open(dir.path(), Default::default()).expect("open fjall");
        let failing = Arc::new(AtomicBool::new(false));
        let store = Self { inner, fault, failing: failing.clone(), injected: AtomicU64::new(0), _dir: dir };
        (Arc::new(store), failing)
    }

    /// How many appends failed on purpose so far: the event a test waits for when it needs the
    /// fault to have struck (an ack's receipts, say) before it turns the switch off.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }
}

/// Accounts are delegated unchanged.
#[async_trait::async_trait]
impl iris_store::AccountStore for FaultyStore {
    async fn account_by_phone(&self, phone: &str) -> iris_store::StoreResult<Option<iris_store::Account>> {
        self.inner.account_by_phone(phone).await
    }
    async fn account(&self, id: iris_store::AccountId) -> iris_store::StoreResult<Option<iris_store::Account>> {
        self.inner.account(id).await
    }
    async fn register_device(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
        max_devices: u32,
    ) -> iris_store::StoreResult<(iris_store::Account, iris_store::Device)> {
        self.inner.register_device(phone, device_name, now_ms, max_devices).await
    }
    async fn register_primary(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
    ) -> iris_store::StoreResult<Option<(iris_store::Account, iris_store::Device, Vec<iris_store::Device>)>> {
        self.inner.register_primary(phone, device_name, now_ms).await
    }
    async fn devices(&self, account: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::Device>> {
        self.inner.devices(account).await
    }
    async fn device(&self, addr: iris_store::DeviceAddr) -> iris_store::StoreResult<Option<iris_store::Device>> {
        self.inner.device(addr).await
    }
    async fn revoke_device(&self, addr: iris_store::DeviceAddr, now_ms: u64) -> iris_store::StoreResult<bool> {
        self.inner.revoke_device(addr, now_ms).await
    }
    async fn put_refresh_token(&self, token: iris_store::RefreshTokenRecord) -> iris_store::StoreResult<()> {
        self.inner.put_refresh_token(token).await
    }
    async fn take_refresh_token(
        &self,
        hash: &[u8; 32],
    ) -> iris_store::StoreResult<Option<iris_store::RefreshTokenRecord>> {
        self.inner.take_refresh_token(hash).await
    }
}

/// Appends fail while the switch is on (and so do an ack's receipts, which are appends);
/// everything else is delegated unchanged.
#[async_trait::async_trait]
impl iris_store::InboxStore for FaultyStore {
    async fn enqueue_append(
        &self,
        req: iris_store::AppendRequest,
    ) -> iris_store::StoreResult<iris_store::PendingAppend> {
        if self.failing() {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(match self.fault {
                Fault::Overloaded { retry_after_ms } => iris_store::StoreError::Overloaded { retry_after_ms },
                Fault::Unavailable => iris_store::StoreError::Unavailable("injected: no space left on device".into()),
            });
        }
        self.inner.enqueue_append(req).await
    }
    async fn read(
        &self,
        device: iris_store::DeviceAddr,
        after_seq: u64,
        limit: usize,
    ) -> iris_store::StoreResult<Vec<iris_store::StoredEntry>> {
        self.inner.read(device, after_seq, limit).await
    }
    async fn ack(&self, device: iris_store::DeviceAddr, up_to_seq: u64) -> iris_store::StoreResult<()> {
        self.inner.ack(device, up_to_seq).await
    }
    async fn cursor(&self, device: iris_store::DeviceAddr) -> iris_store::StoreResult<iris_store::InboxCursor> {
        self.inner.cursor(device).await
    }
    async fn purge(&self, device: iris_store::DeviceAddr) -> iris_store::StoreResult<()> {
        self.inner.purge(device).await
    }
    async fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> iris_store::StoreResult<u64> {
        self.inner.expire(older_than_ms, dedup_older_than_ms).await
    }
    async fn expire_due(&self, now_ms: u64, limit: usize) -> iris_store::StoreResult<u64> {
        self.inner.expire_due(now_ms, limit).await
    }
    fn set_commit_observer(&self, observer: Arc<dyn iris_store::CommitObserver>) {
        self.inner.set_commit_observer(observer);
    }
    fn queue_depth(&self) -> usize {
        self.inner.queue_depth()
    }
    fn is_healthy(&self) -> bool {
        let unavailable = matches!(self.fault, Fault::Unavailable) && self.failing();
        !unavailable && self.inner.is_healthy()
    }
    async fn close(&self) -> iris_store::StoreResult<()> {
        self.inner.close().await
    }
}

/// Groups are delegated unchanged (faults are injected on appends only).
#[async_trait::async_trait]
impl iris_store::GroupStore for FaultyStore {
    async fn hold_group_order(
        &self,
        group: iris_store::GroupId,
    ) -> iris_store::StoreResult<Option<iris_store::GroupOrderHold>> {
        self.inner.hold_group_order(group).await
    }
    async fn create_group(&self, group: iris_store::Group) -> iris_store::StoreResult<iris_store::Group> {
        self.inner.create_group(group).await
    }
    async fn group(&self, id: iris_store::GroupId) -> iris_store::StoreResult<Option<iris_store::Group>> {
        self.inner.group(id).await
    }
    async fn update_group(&self, group: &iris_store::Group) -> iris_store::StoreResult<bool> {
        self.inner.update_group(group).await
    }
    async fn enqueue_group_update(
        &self,
        group: &iris_store::Group,
        events: iris_store::AppendRequest,
    ) -> iris_store::StoreResult<Option<iris_store::PendingAppend>> {
        self.inner.enqueue_group_update(group, events).await
    }
    async fn groups_of(&self, account: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::GroupId>> {
        self.inner.groups_of(account).await
    }
    async fn group_by_invite(&self, token: &str) -> iris_store::StoreResult<Option<iris_store::GroupId>> {
        self.inner.group_by_invite(token).await
    }
    async fn put_group_payload(
        &self,
        group: iris_store::GroupId,
        msg: u64,
        payload: bytes::Bytes,
    ) -> iris_store::StoreResult<()> {
        self.inner.put_group_payload(group, msg, payload).await
    }
    async fn group_payload(
        &self,
        group: iris_store::GroupId,
        msg: u64,
    ) -> iris_store::StoreResult<Option<bytes::Bytes>> {
        self.inner.group_payload(group, msg).await
    }
    async fn start_group_receipts(
        &self,
        group: iris_store::GroupId,
        msg: u64,
        sender: iris_store::AccountId,
        recipients: &[iris_store::AccountId],
    ) -> iris_store::StoreResult<()> {
        self.inner.start_group_receipts(group, msg, sender, recipients).await
    }
    async fn mark_group_receipt(
        &self,
        group: iris_store::GroupId,
        msg: u64,
        account: iris_store::AccountId,
        read: bool,
        now_ms: u64,
    ) -> iris_store::StoreResult<Option<iris_store::ReceiptProgress>> {
        self.inner.mark_group_receipt(group, msg, account, read, now_ms).await
    }
    async fn group_receipts(
        &self,
        group: iris_store::GroupId,
        msg: u64,
    ) -> iris_store::StoreResult<Option<(iris_store::AccountId, Vec<iris_store::GroupReceiptRow>)>> {
        self.inner.group_receipts(group, msg).await
    }
    async fn expire_group_messages(&self, before_msg_id: u64) -> iris_store::StoreResult<u64> {
        self.inner.expire_group_messages(before_msg_id).await
    }
}

/// Blocks are delegated unchanged (faults are injected on appends only).
#[async_trait::async_trait]
impl iris_store::BlockStore for FaultyStore {
    async fn set_blocked(
        &self,
        blocker: iris_store::AccountId,
        blocked: iris_store::AccountId,
        on: bool,
    ) -> iris_store::StoreResult<()> {
        self.inner.set_blocked(blocker, blocked, on).await
    }
    async fn is_blocked(
        &self,
        blocker: iris_store::AccountId,
        blocked: iris_store::AccountId,
    ) -> iris_store::StoreResult<bool> {
        self.inner.is_blocked(blocker, blocked).await
    }
    async fn blocked_by(&self, blocker: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::AccountId>> {
        self.inner.blocked_by(blocker).await
    }
}

/// The message index is delegated unchanged.
#[async_trait::async_trait]
impl iris_store::MessageIndexStore for FaultyStore {
    async fn put_message_ref_with_append(
        &self,
        server_msg_id: u64,
        r: iris_store::MessageRef,
    ) -> iris_store::StoreResult<()> {
        self.inner.put_message_ref_with_append(server_msg_id, r).await
    }
    fn message_id_is_near(&self, server_msg_id: u64, account: iris_store::AccountId) -> bool {
        self.inner.message_id_is_near(server_msg_id, account)
    }
    async fn put_message_ref(&self, server_msg_id: u64, r: iris_store::MessageRef) -> iris_store::StoreResult<()> {
        self.inner.put_message_ref(server_msg_id, r).await
    }
    async fn message_ref(&self, server_msg_id: u64) -> iris_store::StoreResult<Option<iris_store::MessageRef>> {
        self.inner.message_ref(server_msg_id).await
    }
    async fn expire_message_refs(&self, before_msg_id: u64) -> iris_store::StoreResult<u64> {
        self.inner.expire_message_refs(before_msg_id).await
    }
    async fn expire_due_refs(&self, now_ms: u64, limit: usize) -> iris_store::StoreResult<u64> {
        self.inner.expire_due_refs(now_ms, limit).await
    }
}

/// Timers are delegated unchanged.
#[async_trait::async_trait]
impl iris_store::TimerStore for FaultyStore {
    async fn set_timer(&self, chat: iris_store::Chat, timer: iris_store::ChatTimer) -> iris_store::StoreResult<()> {
        self.inner.set_timer(chat, timer).await
    }
    async fn timer(&self, chat: iris_store::Chat) -> iris_store::StoreResult<iris_store::ChatTimer> {
        self.inner.timer(chat).await
    }
}

/// Contacts are delegated unchanged.
#[async_trait::async_trait]
impl iris_store::ContactStore for FaultyStore {
    async fn set_contacts(
        &self,
        owner: iris_store::AccountId,
        contacts: &[iris_store::AccountId],
        on: bool,
    ) -> iris_store::StoreResult<()> {
        self.inner.set_contacts(owner, contacts, on).await
    }
    async fn contacts(&self, owner: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::AccountId>> {
        self.inner.contacts(owner).await
    }
    async fn is_contact(
        &self,
        owner: iris_store::AccountId,
        contact: iris_store::AccountId,
    ) -> iris_store::StoreResult<bool> {
        self.inner.is_contact(owner, contact).await
    }
    async fn set_presence_privacy(&self, account: iris_store::AccountId, code: u8) -> iris_store::StoreResult<()> {
        self.inner.set_presence_privacy(account, code).await
    }
    async fn presence_privacy(&self, account: iris_store::AccountId) -> iris_store::StoreResult<Option<u8>> {
        self.inner.presence_privacy(account).await
    }
}
/// The key directory, delegated unchanged.
#[async_trait::async_trait]
impl iris_store::KeyStore for FaultyStore {
    async fn set_identity(
        &self,
        device: iris_store::DeviceAddr,
        identity: iris_store::DeviceIdentity,
    ) -> iris_store::StoreResult<iris_store::IdentityOutcome> {
        self.inner.set_identity(device, identity).await
    }
    async fn identities(
        &self,
        devices: &[iris_store::DeviceAddr],
    ) -> iris_store::StoreResult<Vec<Option<iris_store::DeviceIdentity>>> {
        self.inner.identities(devices).await
    }
    async fn add_one_time_keys(
        &self,
        device: iris_store::DeviceAddr,
        keys: &[iris_store::SignedKeyRecord],
        pool_max: u32,
        low_watermark: u32,
    ) -> iris_store::StoreResult<u32> {
        self.inner.add_one_time_keys(device, keys, pool_max, low_watermark).await
    }
    async fn set_fallback_key(
        &self,
        device: iris_store::DeviceAddr,
        key: iris_store::SignedKeyRecord,
    ) -> iris_store::StoreResult<()> {
        self.inner.set_fallback_key(device, key).await
    }
    async fn key_counts(&self, device: iris_store::DeviceAddr) -> iris_store::StoreResult<iris_store::KeyCounts> {
        self.inner.key_counts(device).await
    }
    async fn claim_key(
        &self,
        device: iris_store::DeviceAddr,
        low_watermark: u32,
    ) -> iris_store::StoreResult<iris_store::ClaimOutcome> {
        self.inner.claim_key(device, low_watermark).await
    }
    async fn delete_keys(&self, device: iris_store::DeviceAddr) -> iris_store::StoreResult<()> {
        self.inner.delete_keys(device).await
    }
    async fn record_key_peers(
        &self,
        account: iris_store::AccountId,
        peers: &[iris_store::AccountId],
        now_ms: u64,
    ) -> iris_store::StoreResult<()> {
        self.inner.record_key_peers(account, peers, now_ms).await
    }
    async fn key_peers(
        &self,
        account: iris_store::AccountId,
        since_ms: u64,
    ) -> iris_store::StoreResult<Vec<iris_store::AccountId>> {
        self.inner.key_peers(account, since_ms).await
    }
}

/// Media records are delegated unchanged.
#[async_trait::async_trait]
impl iris_store::MediaStore for FaultyStore {
    async fn create_upload(&self, u: iris_store::UploadRecord) -> iris_store::StoreResult<iris_store::UploadRecord> {
        self.inner.create_upload(u).await
    }
    async fn upload(&self, id: iris_store::UploadId) -> iris_store::StoreResult<Option<iris_store::UploadRecord>> {
        self.inner.upload(id).await
    }
    async fn update_upload(
        &self,
        id: iris_store::UploadId,
        offset: u64,
        media: Option<iris_store::MediaId>,
    ) -> iris_store::StoreResult<bool> {
        self.inner.update_upload(id, offset, media).await
    }
    async fn delete_upload(&self, id: iris_store::UploadId) -> iris_store::StoreResult<()> {
        self.inner.delete_upload(id).await
    }
    async fn stale_uploads(&self, before: u64, limit: usize) -> iris_store::StoreResult<Vec<iris_store::UploadRecord>> {
        self.inner.stale_uploads(before, limit).await
    }
    async fn charge_quota(&self, a: iris_store::AccountId, w: u64, b: u64, m: u64) -> iris_store::StoreResult<bool> {
        self.inner.charge_quota(a, w, b, m).await
    }
    async fn put_blob(&self, blob: iris_store::BlobRecord) -> iris_store::StoreResult<bool> {
        self.inner.put_blob(blob).await
    }
    async fn blob(&self, id: iris_store::MediaId) -> iris_store::StoreResult<Option<iris_store::BlobRecord>> {
        self.inner.blob(id).await
    }
    async fn add_media_refs(
        &self,
        msg: u64,
        account: iris_store::AccountId,
        ids: &[iris_store::MediaId],
    ) -> iris_store::StoreResult<Vec<iris_store::MediaId>> {
        self.inner.add_media_refs(msg, account, ids).await
    }
    async fn media_ref_count(&self, id: iris_store::MediaId) -> iris_store::StoreResult<u64> {
        self.inner.media_ref_count(id).await
    }
    async fn expire_media_refs(&self, before_msg_id: u64) -> iris_store::StoreResult<u64> {
        self.inner.expire_media_refs(before_msg_id).await
    }
    async fn release_account_media(&self, account: iris_store::AccountId) -> iris_store::StoreResult<u64> {
        self.inner.release_account_media(account).await
    }
    async fn collectable_blobs(
        &self,
        before: u64,
        limit: usize,
    ) -> iris_store::StoreResult<Vec<iris_store::BlobRecord>> {
        self.inner.collectable_blobs(before, limit).await
    }
    async fn delete_blob(&self, id: iris_store::MediaId, before: u64) -> iris_store::StoreResult<bool> {
        self.inner.delete_blob(id, before).await
    }
}

/// Push targets are delegated unchanged.
#[async_trait::async_trait]
impl iris_store::PushStore for FaultyStore {
    async fn set_push_target(&self, target: iris_store::PushTarget) -> iris_store::StoreResult<()> {
        self.inner.set_push_target(target).await
    }
    async fn push_target(
        &self,
        device: iris_store::DeviceAddr,
    ) -> iris_store::StoreResult<Option<iris_store::PushTarget>> {
        self.inner.push_target(device).await
    }
    async fn delete_push_target(
        &self,
        device: iris_store::DeviceAddr,
        only_token: Option<&str>,
    ) -> iris_store::StoreResult<bool> {
        self.inner.delete_push_target(device, only_token).await
    }
    async fn delete_account_push_targets(&self, account: iris_store::AccountId) -> iris_store::StoreResult<u64> {
        self.inner.delete_account_push_targets(account).await
    }
}

/// Profiles, PINs and pending links are delegated unchanged.
#[async_trait::async_trait]
impl iris_store::ProfileStore for FaultyStore {
    async fn profile(&self, account: iris_store::AccountId) -> iris_store::StoreResult<Option<iris_store::Profile>> {
        self.inner.profile(account).await
    }
    async fn set_profile(
        &self,
        account: iris_store::AccountId,
        p: &iris_store::Profile,
    ) -> iris_store::StoreResult<()> {
        self.inner.set_profile(account, p).await
    }
    async fn pin(&self, account: iris_store::AccountId) -> iris_store::StoreResult<Option<iris_store::PinRecord>> {
        self.inner.pin(account).await
    }
    async fn set_pin(&self, account: iris_store::AccountId, hash: Option<&str>) -> iris_store::StoreResult<()> {
        self.inner.set_pin(account, hash).await
    }
    async fn count_pin_attempt(
        &self,
        account: iris_store::AccountId,
        now_ms: u64,
        attempts_max: u32,
        lockout_ms: u64,
    ) -> iris_store::StoreResult<iris_store::PinAttempt> {
        self.inner.count_pin_attempt(account, now_ms, attempts_max, lockout_ms).await
    }
    async fn reset_pin_attempts(&self, account: iris_store::AccountId) -> iris_store::StoreResult<()> {
        self.inner.reset_pin_attempts(account).await
    }
    async fn put_link(&self, link: &iris_store::PendingLink, now_ms: u64, max: u32) -> iris_store::StoreResult<bool> {
        self.inner.put_link(link, now_ms, max).await
    }
    async fn link(
        &self,
        account: iris_store::AccountId,
        code: &str,
    ) -> iris_store::StoreResult<Option<iris_store::PendingLink>> {
        self.inner.link(account, code).await
    }
    async fn take_link(
        &self,
        account: iris_store::AccountId,
        code: &str,
    ) -> iris_store::StoreResult<Option<iris_store::PendingLink>> {
        self.inner.take_link(account, code).await
    }
    async fn links(&self, account: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::PendingLink>> {
        self.inner.links(account).await
    }
    async fn erase_profile_rows(&self, account: iris_store::AccountId) -> iris_store::StoreResult<()> {
        self.inner.erase_profile_rows(account).await
    }
}

/// Account erasure is delegated unchanged.
#[async_trait::async_trait]
impl iris_store::ErasureStore for FaultyStore {
    async fn begin_erasure(&self, account: &iris_store::Account, now_ms: u64) -> iris_store::StoreResult<()> {
        self.inner.begin_erasure(account, now_ms).await
    }
    async fn erasures_pending(&self) -> iris_store::StoreResult<Vec<iris_store::PendingErasure>> {
        self.inner.erasures_pending().await
    }
    async fn groups_pending_for(&self, a: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::GroupId>> {
        self.inner.groups_pending_for(a).await
    }
    async fn delete_group(&self, group: iris_store::GroupId) -> iris_store::StoreResult<()> {
        self.inner.delete_group(group).await
    }
    async fn erase_account(&self, e: &iris_store::PendingErasure) -> iris_store::StoreResult<()> {
        self.inner.erase_account(e).await
    }
}
/// Abuse state and reports, delegated unchanged.
#[async_trait::async_trait]
impl iris_store::AbuseStore for FaultyStore {
    async fn abuse_state(&self, account: iris_store::AccountId) -> iris_store::StoreResult<iris_store::AbuseState> {
        self.inner.abuse_state(account).await
    }
    async fn suspend(
        &self,
        account: iris_store::AccountId,
        suspension: iris_store::Suspension,
    ) -> iris_store::StoreResult<bool> {
        self.inner.suspend(account, suspension).await
    }
    async fn unsuspend(&self, account: iris_store::AccountId) -> iris_store::StoreResult<bool> {
        self.inner.unsuspend(account).await
    }
    async fn set_restriction(
        &self,
        account: iris_store::AccountId,
        restriction: iris_store::Restriction,
        until_ms: u64,
    ) -> iris_store::StoreResult<()> {
        self.inner.set_restriction(account, restriction, until_ms).await
    }
    async fn add_report(&self, report: iris_store::AbuseReport) -> iris_store::StoreResult<()> {
        self.inner.add_report(report).await
    }
    async fn reports(
        &self,
        account: iris_store::AccountId,
        limit: usize,
    ) -> iris_store::StoreResult<Vec<iris_store::AbuseReport>> {
        self.inner.reports(account, limit).await
    }
    async fn reporters_since(
        &self,
        account: iris_store::AccountId,
        since_ms: u64,
    ) -> iris_store::StoreResult<Vec<iris_store::AccountId>> {
        self.inner.reporters_since(account, since_ms).await
    }
}

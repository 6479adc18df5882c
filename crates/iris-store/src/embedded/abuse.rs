//! [`AbuseStore`] on fjall: one state record per account and the reports against it, keyed by
//! the reported account first (its review reads one prefix), written with fdatasync. A mutex
//! serialises the state's read-modify-writes. The review queue scans both keyspaces: states
//! exist only for accounts a rule or an operator touched and reports are rare, and a single
//! node's store is small enough for an operator's occasional read.

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{unavailable, FjallStore};
use std::collections::BTreeMap;

use crate::abuse::{decode_messages, encode_messages, review_page};
use crate::{
    AbuseReport, AbuseState, AbuseStore, AccountId, DeviceAddr, Restriction, ReviewCursor, ReviewItem, StoreError,
    StoreResult, Suspension,
};

/// Layout version of both records.
const VERSION: u8 = 1;

/// Abuse-side state of [`FjallStore`].
pub(super) struct Abuse {
    db: Database,
    /// Account (u64 BE) → version ‖ suspended (u8) ‖ since_ms ‖ sending_until_ms ‖
    /// forwarding_until_ms (u64 BE each) ‖ reason.
    states: Keyspace,
    /// Reported account (u64 BE) ‖ report id (u64 BE) → version ‖ reporter account (u64 BE) ‖
    /// reporter device (u32 BE) ‖ reported_at_ms (u64 BE) ‖ reason length (u16 BE) ‖ reason ‖
    /// disclosed messages (`abuse::encode_messages`).
    reports: Keyspace,
    /// Serialises read-modify-writes of a state.
    lock: std::sync::Mutex<()>,
}

impl Abuse {
    pub(super) fn open(db: &Database) -> StoreResult<Self> {
        let states = db.keyspace("abuse_states", KeyspaceCreateOptions::default).map_err(unavailable)?;
        let reports = db.keyspace("abuse_reports", KeyspaceCreateOptions::default).map_err(unavailable)?;
        Ok(Self { db: db.clone(), states, reports, lock: std::sync::Mutex::new(()) })
    }

    fn state(&self, account: AccountId) -> StoreResult<AbuseState> {
        match self.states.get(account.to_be_bytes()).map_err(unavailable)? {
            Some(v) => decode_state(account, &v),
            None => Ok(AbuseState::default()),
        }
    }

    /// Reads, changes and durably writes one state under the lock; `change` says whether it
    /// changed anything (nothing is written otherwise).
    fn update(&self, account: AccountId, change: impl FnOnce(&mut AbuseState) -> bool) -> StoreResult<bool> {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = self.state(account)?;
        if !change(&mut state) {
            return Ok(false);
        }
        let mut batch = self.db.batch();
        batch.insert(&self.states, account.to_be_bytes(), encode_state(&state));
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)?;
        Ok(true)
    }

    /// Every report of `account`, oldest first.
    fn all_reports(&self, account: AccountId) -> StoreResult<Vec<AbuseReport>> {
        let mut out = Vec::new();
        for guard in self.reports.prefix(account.to_be_bytes()) {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            out.push(decode_report(account, &k, &v)?);
        }
        Ok(out)
    }

    /// Every suspended account and every account reported at or after `since_ms`, in no
    /// order (see the module doc for the scan).
    fn review_items(&self, since_ms: u64) -> StoreResult<Vec<ReviewItem>> {
        let mut items: BTreeMap<AccountId, ReviewItem> = BTreeMap::new();
        let item = |account| ReviewItem { account, suspended: None, n_recent_reports: 0, last_reported_at_ms: 0 };
        for guard in self.states.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let account = account_of_key(&k, "abuse state")?;
            if let Some(s) = decode_state(account, &v)?.suspended {
                items.entry(account).or_insert_with(|| item(account)).suspended = Some(s);
            }
        }
        for guard in self.reports.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let account = account_of_key(&k, "abuse report")?;
            let at_ms = v
                .get(13..21)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt(format!("abuse report of account {account}")))?;
            if at_ms >= since_ms {
                let entry = items.entry(account).or_insert_with(|| item(account));
                entry.n_recent_reports += 1;
                entry.last_reported_at_ms = entry.last_reported_at_ms.max(at_ms);
            }
        }
        Ok(items.into_values().collect())
    }

    /// Clears `account` as reporter from every report it filed (account deletion): the
    /// reports stay for their review. Blocking.
    pub(super) fn forget_reporter(&self, account: AccountId) -> StoreResult<()> {
        let mut batch = self.db.batch();
        let mut n = 0;
        for guard in self.reports.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            if v.get(1..9) == Some(&account.to_be_bytes()[..]) {
                let mut v = v.to_vec();
                v[1..13].fill(0);
                batch.insert(&self.reports, k.to_vec(), v);
                n += 1;
            }
        }
        if n > 0 {
            batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)?;
        }
        Ok(())
    }
}

fn encode_state(s: &AbuseState) -> Vec<u8> {
    let mut v = Vec::with_capacity(26);
    v.push(VERSION);
    v.push(u8::from(s.suspended.is_some()));
    v.extend_from_slice(&s.suspended.as_ref().map_or(0, |x| x.since_ms).to_be_bytes());
    v.extend_from_slice(&s.sending_restricted_until_ms.to_be_bytes());
    v.extend_from_slice(&s.forwarding_limited_until_ms.to_be_bytes());
    if let Some(x) = &s.suspended {
        v.extend_from_slice(x.reason.as_bytes());
    }
    v
}

fn decode_state(account: AccountId, v: &[u8]) -> StoreResult<AbuseState> {
    let bad = || StoreError::Corrupt(format!("abuse state of account {account}"));
    if v.first() != Some(&VERSION) || v.len() < 26 {
        return Err(bad());
    }
    let u64_at = |i: usize| v[i..i + 8].try_into().map(u64::from_be_bytes).map_err(|_| bad());
    let suspended = match v[1] {
        0 => None,
        _ => Some(Suspension { since_ms: u64_at(2)?, reason: String::from_utf8(v[26..].to_vec()).map_err(|_| bad())? }),
    };
    Ok(AbuseState { suspended, sending_restricted_until_ms: u64_at(10)?, forwarding_limited_until_ms: u64_at(18)? })
}

/// The account a state's or a report's key starts with.
fn account_of_key(k: &[u8], what: &str) -> StoreResult<AccountId> {
    k.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("{what} key of {} bytes", k.len())))
}

fn report_key(account: AccountId, id: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&account.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

fn encode_report(r: &AbuseReport) -> StoreResult<Vec<u8>> {
    let reason_len = u16::try_from(r.reason.len())
        .map_err(|_| StoreError::Corrupt(format!("report reason of {} bytes", r.reason.len())))?;
    let mut v = Vec::with_capacity(23 + r.reason.len());
    v.push(VERSION);
    v.extend_from_slice(&r.reporter.account.to_be_bytes());
    v.extend_from_slice(&r.reporter.device.to_be_bytes());
    v.extend_from_slice(&r.reported_at_ms.to_be_bytes());
    v.extend_from_slice(&reason_len.to_be_bytes());
    v.extend_from_slice(r.reason.as_bytes());
    v.extend_from_slice(&encode_messages(&r.messages));
    Ok(v)
}

fn decode_report(account: AccountId, k: &[u8], v: &[u8]) -> StoreResult<AbuseReport> {
    let bad = || StoreError::Corrupt(format!("abuse report of account {account}"));
    if v.first() != Some(&VERSION) || v.len() < 23 || k.len() != 16 {
        return Err(bad());
    }
    let id = u64::from_be_bytes(k[8..].try_into().map_err(|_| bad())?);
    let reporter_account = u64::from_be_bytes(v[1..9].try_into().map_err(|_| bad())?);
    let reporter_device = u32::from_be_bytes(v[9..13].try_into().map_err(|_| bad())?);
    let reported_at_ms = u64::from_be_bytes(v[13..21].try_into().map_err(|_| bad())?);
    let n = usize::from(u16::from_be_bytes(v[21..23].try_into().map_err(|_| bad())?));
    let reason = String::from_utf8(v.get(23..23 + n).ok_or_else(bad)?.to_vec()).map_err(|_| bad())?;
    Ok(AbuseReport {
        id,
        reported: account,
        reporter: DeviceAddr::new(reporter_account, reporter_device),
        reported_at_ms,
        reason,
        messages: decode_messages(&v[23 + n..])?,
    })
}

#[async_trait]
impl AbuseStore for FjallStore {
    async fn abuse_state(&self, account: AccountId) -> StoreResult<AbuseState> {
        self.abuse.state(account)
    }

    async fn suspend(&self, account: AccountId, suspension: Suspension) -> StoreResult<bool> {
        self.abuse.update(account, |s| s.suspended.is_none() && s.suspended.replace(suspension).is_none())
    }

    async fn unsuspend(&self, account: AccountId) -> StoreResult<bool> {
        self.abuse.update(account, |s| s.suspended.take().is_some())
    }

    async fn set_restriction(&self, account: AccountId, restriction: Restriction, until_ms: u64) -> StoreResult<()> {
        self.abuse.update(account, |s| {
            let field = match restriction {
                Restriction::Sending => &mut s.sending_restricted_until_ms,
                Restriction::Forwarding => &mut s.forwarding_limited_until_ms,
            };
            *field = until_ms;
            true
        })?;
        Ok(())
    }

    async fn add_report(&self, report: AbuseReport) -> StoreResult<()> {
        let a = &self.abuse;
        let value = encode_report(&report)?;
        let mut batch = a.db.batch();
        batch.insert(&a.reports, report_key(report.reported, report.id), value);
        batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable)
    }

    async fn reports(&self, account: AccountId, limit: usize) -> StoreResult<Vec<AbuseReport>> {
        let mut out = Vec::new();
        for guard in self.abuse.reports.prefix(account.to_be_bytes()).rev().take(limit) {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            out.push(decode_report(account, &k, &v)?);
        }
        Ok(out)
    }

    async fn reporters_since(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>> {
        let mut out: Vec<AccountId> = self
            .abuse
            .all_reports(account)?
            .into_iter()
            .filter(|r| r.reported_at_ms >= since_ms)
            .map(|r| r.reporter.account)
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    async fn review_queue(
        &self,
        reported_since_ms: u64,
        before: Option<ReviewCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ReviewItem>> {
        Ok(review_page(self.abuse.review_items(reported_since_ms)?, before, limit))
    }
}

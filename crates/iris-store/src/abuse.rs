//! Abuse state and user reports: whether an account is suspended pending review, until when
//! its sending to non-contacts or its forwarding is restricted, and the reports other accounts
//! filed against it (with the messages they chose to disclose).
//!
//! The store keeps these records durably and answers the questions the rules ask (which
//! distinct accounts reported this one since a time); it does not count message rates (soft
//! state, the server's) nor decide when a rule fires.

use async_trait::async_trait;

use crate::{AccountId, DeviceAddr, StoreError, StoreResult};

/// Why an account is suspended, as the server recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    /// When it was suspended, ms since the Unix epoch.
    pub since_ms: u64,
    /// Who or what suspended it (`message rate`, `reports`, `operator: …`), for the reviewer.
    pub reason: String,
}

/// Everything the abuse rules decided about one account. The default is a clean account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AbuseState {
    /// Set while the account is suspended pending review.
    pub suspended: Option<Suspension>,
    /// Sends to accounts that are not contacts are refused until then, ms since the Unix epoch
    /// (0 or past: not restricted).
    pub sending_restricted_until_ms: u64,
    /// Forwards are refused until then, ms since the Unix epoch (0 or past: not limited).
    pub forwarding_limited_until_ms: u64,
}

/// A restriction with an end, as opposed to a suspension (which only an operator lifts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    /// Sends to accounts that are not contacts.
    Sending,
    /// Forwards.
    Forwarding,
}

/// One message a reporter disclosed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedMessage {
    /// Its server id as the reporter received it (0: unknown).
    pub server_msg_id: u64,
    /// When it was sent, ms since the Unix epoch (0: unknown).
    pub sent_at_ms: u64,
    /// Its content as the reporter read it; not interpreted.
    pub content: Vec<u8>,
}

/// A report of one account by another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseReport {
    /// The report's id (chosen by the server, unique, growing with time).
    pub id: u64,
    /// The account reported.
    pub reported: AccountId,
    /// The device that reported (its account 0 once the reporter's account was deleted).
    pub reporter: DeviceAddr,
    /// When, ms since the Unix epoch.
    pub reported_at_ms: u64,
    /// The reporter's words.
    pub reason: String,
    /// What the reporter disclosed.
    pub messages: Vec<ReportedMessage>,
}

/// Where a page of the review list ends: the list is ordered newest first by
/// (`at_ms`, `account`), and the next page starts strictly below this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReviewCursor {
    /// The item's time: the later of its suspension and its latest recent report.
    pub at_ms: u64,
    /// The item's account (orders items of the same millisecond).
    pub account: AccountId,
}

/// One account an operator should review: suspended, reported recently, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewItem {
    /// The account.
    pub account: AccountId,
    /// Its suspension, if it is suspended.
    pub suspended: Option<Suspension>,
    /// Reports against it at or after the window's start (0: none recent).
    pub n_recent_reports: u64,
    /// When its latest recent report was filed, ms since the Unix epoch (0: none recent).
    pub last_reported_at_ms: u64,
}

impl ReviewItem {
    /// Where the item sorts: the later of its suspension and its latest recent report.
    pub fn cursor(&self) -> ReviewCursor {
        let suspended_ms = self.suspended.as_ref().map_or(0, |s| s.since_ms);
        ReviewCursor { at_ms: suspended_ms.max(self.last_reported_at_ms), account: self.account }
    }
}

/// Abuse state and reports: durable, low-rate (rule hits, reports), read on sends through the
/// server's cache.
#[async_trait]
pub trait AbuseStore: Send + Sync + 'static {
    /// The account's state (the default when nothing was ever recorded).
    async fn abuse_state(&self, account: AccountId) -> StoreResult<AbuseState>;

    /// Suspends the account unless it already is (the first suspension is kept, so a reviewer
    /// sees what fired first). Whether it was newly suspended. Durable when it returns.
    async fn suspend(&self, account: AccountId, suspension: Suspension) -> StoreResult<bool>;

    /// Lifts the account's suspension; whether it was suspended. Restrictions stay. Durable
    /// when it returns.
    async fn unsuspend(&self, account: AccountId) -> StoreResult<bool>;

    /// Sets when `restriction` ends for the account (0 lifts it). Durable when it returns.
    async fn set_restriction(&self, account: AccountId, restriction: Restriction, until_ms: u64) -> StoreResult<()>;

    /// Stores a report. Durable when it returns.
    async fn add_report(&self, report: AbuseReport) -> StoreResult<()>;

    /// Up to `limit` reports against `account`, newest first.
    async fn reports(&self, account: AccountId, limit: usize) -> StoreResult<Vec<AbuseReport>>;

    /// The distinct accounts that reported `account` at or after `since_ms`, in no order.
    async fn reporters_since(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>>;

    /// What operators should review, so they need not know account ids beforehand: up to
    /// `limit` accounts that are suspended or were reported at or after `reported_since_ms`,
    /// each once, newest first by [`ReviewItem::cursor`], strictly below `before` when given
    /// (the last item of the previous page).
    async fn review_queue(
        &self,
        reported_since_ms: u64,
        before: Option<ReviewCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ReviewItem>>;
}

/// The newest `limit` of `items` strictly below `before`, newest first: the common end of both
/// engines' [`AbuseStore::review_queue`] (PostgreSQL merges its shards' pages with it).
pub(crate) fn review_page(
    items: impl IntoIterator<Item = ReviewItem>,
    before: Option<ReviewCursor>,
    limit: usize,
) -> Vec<ReviewItem> {
    let mut page: Vec<ReviewItem> = items.into_iter().filter(|i| before.is_none_or(|b| i.cursor() < b)).collect();
    page.sort_unstable_by_key(|i| std::cmp::Reverse(i.cursor()));
    page.truncate(limit);
    page
}

/// Layout version of [`encode_messages`].
const MESSAGES_VERSION: u8 = 1;

/// Disclosed messages as one byte string (both engines store them so): version, then per
/// message its id, time (u64 BE each), content length (u32 BE) and content.
pub(crate) fn encode_messages(messages: &[ReportedMessage]) -> Vec<u8> {
    let mut out = vec![MESSAGES_VERSION];
    for m in messages {
        out.extend_from_slice(&m.server_msg_id.to_be_bytes());
        out.extend_from_slice(&m.sent_at_ms.to_be_bytes());
        out.extend_from_slice(&(m.content.len() as u32).to_be_bytes());
        out.extend_from_slice(&m.content);
    }
    out
}

/// The inverse of [`encode_messages`].
pub(crate) fn decode_messages(mut v: &[u8]) -> StoreResult<Vec<ReportedMessage>> {
    let bad = || StoreError::Corrupt("reported messages".into());
    let (&version, rest) = v.split_first().ok_or_else(bad)?;
    if version != MESSAGES_VERSION {
        return Err(bad());
    }
    v = rest;
    let mut out = Vec::new();
    while !v.is_empty() {
        let head = v.get(..20).ok_or_else(bad)?;
        let server_msg_id = u64::from_be_bytes(head[..8].try_into().map_err(|_| bad())?);
        let sent_at_ms = u64::from_be_bytes(head[8..16].try_into().map_err(|_| bad())?);
        let n = u32::from_be_bytes(head[16..20].try_into().map_err(|_| bad())?) as usize;
        let content = v.get(20..20 + n).ok_or_else(bad)?.to_vec();
        out.push(ReportedMessage { server_msg_id, sent_at_ms, content });
        v = &v[20 + n..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disclosed_messages_round_trip() {
        let messages = vec![
            ReportedMessage { server_msg_id: 7, sent_at_ms: 9, content: b"spam".to_vec() },
            ReportedMessage { server_msg_id: 0, sent_at_ms: 0, content: Vec::new() },
        ];
        assert_eq!(decode_messages(&encode_messages(&messages)).unwrap(), messages);
        assert_eq!(decode_messages(&encode_messages(&[])).unwrap(), Vec::new());
        assert!(decode_messages(&[MESSAGES_VERSION, 1, 2]).is_err());
    }
}

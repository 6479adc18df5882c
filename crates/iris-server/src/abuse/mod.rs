//! Abuse rules, user reports and suspension (issue 18 part 4; seed 001 "Rate Limiting",
//! "Automated Ban Triggers", "User Reports").
//!
//! The server cannot read contents (they may be end-to-end encrypted), so every rule uses
//! metadata: how many messages an account sends per hour, to how many recipients outside its
//! contacts per day, to how many chats it forwards one message per day, and how many distinct
//! accounts reported it per 24 h. The soft counts are [`counters::Counters`] (Redis in cluster
//! mode); what the rules decide (suspended, restricted until) is durable ([`AbuseStore`](iris_store::AbuseStore)) and
//! cached here for at most `abuse.state_cache_ms`.
//!
//! The operator side ([`Abuse::state`], [`Abuse::suspend`], [`Abuse::unsuspend`],
//! [`Abuse::lift_restriction`], [`Abuse::reports`]) is plain async methods on `Ctx.abuse`, for
//! an admin API or CLI to call. Knows the store traits, the directory and the bus; nothing of
//! sessions, HTTP or the wire beyond the `Report` operation it answers.

pub mod counters;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Maps keyed by ids on the send path hash with foldhash, not SipHash (server-assigned keys).
use foldhash::{HashMap, HashSet};
use iris_proto::pb;
use iris_store::{
    AbuseReport, AbuseState, AccountId, DeviceAddr, GroupId, ReportedMessage, Restriction, ReviewCursor, ReviewItem,
    Store, Suspension,
};

use crate::clock::Clock;
use crate::config::AbuseConfig;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::ids::IdGenerator;
use crate::metrics::Metrics;
use crate::ratelimit::KeyedLimit;
use counters::Counters;

/// An hour, in ms: the message-rate window.
pub const HOUR_MS: u64 = 3_600_000;
/// A day, in ms: the new-recipient and forward windows.
pub const DAY_MS: u64 = 86_400_000;
/// Bytes of a report's reason at most.
pub const REPORT_REASON_BYTES_MAX: usize = 500;
/// Cached states at most; beyond it the cache starts over (it is only a cache).
const CACHE_LEN_MAX: usize = 1 << 20;
/// (sender, recipient) pairs remembered as checked today at most; beyond it the memo starts
/// over (the next send to each pair reads the contact lists again).
const CHECKED_PAIRS_MAX: usize = 1 << 20;

/// Why an account was suspended, as recorded (and shown to reviewers).
pub mod reasons {
    /// The message-rate rule.
    pub const MESSAGE_RATE: &str = "message rate";
    /// Reports from enough distinct accounts.
    pub const REPORTS: &str = "reports";
}

/// The parts [`Abuse`] needs.
pub struct AbuseDeps {
    /// Abuse state, reports, contacts.
    pub store: Arc<dyn Store>,
    /// Whether a reported account exists.
    pub directory: Arc<Directory>,
    /// Report ids.
    pub ids: Arc<IdGenerator>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Rule hits, refusals, reports.
    pub metrics: Arc<Metrics>,
    /// Thresholds and durations.
    pub config: AbuseConfig,
    /// Cluster mode: where the counts are shared.
    pub bus: Option<crate::cluster::bus::Bus>,
}

/// The abuse service: rules on the send path, reports, and the operator's calls.
pub struct Abuse {
    d: AbuseDeps,
    counters: Counters,
    /// Reports per reporting account per day (shared in cluster mode).
    report_limit: Option<KeyedLimit<AccountId>>,
    /// Account → its state as last read, and when.
    cache: Mutex<HashMap<AccountId, (AbuseState, Instant)>>,
    /// Recipients already checked today, so a conversation reads no contact list per message.
    checked: Mutex<CheckedPairs>,
}

/// The (sender, recipient) pairs that passed the new-recipient rule this UTC day: a contact, or
/// a non-contact already counted. A later send between them needs neither the two contact reads
/// nor a count (counting the same recipient twice changes nothing). Only an unrestricted sender
/// uses it: a restricted one must be refused for every non-contact. A contact removed during
/// the day is therefore not counted until the next day.
#[derive(Default)]
struct CheckedPairs {
    day: u64,
    pairs: HashSet<(AccountId, AccountId)>,
}

impl CheckedPairs {
    /// The pairs of `day`: a new day forgets the old ones, and a full memo starts over.
    fn of(&mut self, day: u64) -> &mut HashSet<(AccountId, AccountId)> {
        if self.day != day || self.pairs.len() >= CHECKED_PAIRS_MAX {
            self.day = day;
            self.pairs.clear();
        }
        &mut self.pairs
    }
}

/// A send as the rules see it.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A 1:1 message to this account.
    Direct(AccountId),
    /// A 1:1 message to the account of this phone (E.164; unknown: the send itself fails).
    DirectByPhone(String),
    /// A group message.
    Group,
    /// An edit, a deletion for everyone or a reaction: only a suspension refuses it.
    Action,
}

fn retry_after(until_ms: u64, now_ms: u64) -> u32 {
    u32::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(u32::MAX).max(1)
}

impl Abuse {
    /// The service over `deps`.
    pub fn new(deps: AbuseDeps) -> Self {
        let report_limit = KeyedLimit::new_shared(
            "reports per account",
            deps.config.reports_per_account_per_day,
            Duration::from_millis(DAY_MS),
            &deps.metrics,
            deps.bus.as_ref(),
        );
        let counters = Counters::new(deps.bus.clone());
        Self { d: deps, counters, report_limit, cache: Mutex::default(), checked: Mutex::default() }
    }

    fn refused(&self, e: ServiceError) -> ServiceError {
        self.d.metrics.abuse_refusals.get_or_create(&vec![("code", e.code().as_str_name())]).inc();
        e
    }

    fn hit(&self, rule: &'static str) {
        self.d.metrics.abuse_rule_hits.get_or_create(&vec![("rule", rule)]).inc();
    }

    /// The account's state, from the cache when read within `state_cache_ms`.
    async fn cached(&self, account: AccountId) -> Result<AbuseState, ServiceError> {
        let max_age = Duration::from_millis(self.d.config.state_cache_ms);
        {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((state, at)) = cache.get(&account) {
                if at.elapsed() < max_age {
                    return Ok(state.clone());
                }
            }
        }
        let state = self.d.store.abuse_state(account).await?;
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_LEN_MAX {
            cache.clear();
        }
        cache.insert(account, (state.clone(), Instant::now()));
        Ok(state)
    }

    fn forget(&self, account: AccountId) {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&account);
    }

    /// Suspends `account` with `reason` (the first suspension is kept). Whether it was newly
    /// suspended.
    async fn suspend_for(&self, account: AccountId, reason: &str) -> Result<bool, ServiceError> {
        let suspension = Suspension { since_ms: self.d.clock.now_ms(), reason: reason.to_owned() };
        let new = self.d.store.suspend(account, suspension).await?;
        self.forget(account);
        if new {
            tracing::warn!(account, reason, "account suspended pending review");
        }
        Ok(new)
    }

    /// Refuses a login or a `Hello` of a suspended account (read from the store, not the
    /// cache: logins are rare and must see an operator's lift at once).
    pub async fn check_login(&self, account: AccountId) -> Result<(), ServiceError> {
        let state = self.d.store.abuse_state(account).await?;
        if state.suspended.is_some() {
            return Err(self.refused(ServiceError::AccountSuspended));
        }
        Ok(())
    }

    /// The rules a send obeys, before it is validated and stored: a suspended account sends
    /// nothing; a 1:1 send to an account that is not a contact (in either's list) is refused
    /// while sending is restricted, and counts toward the new-recipient rule; every message
    /// counts toward the message-rate rule. The send that reaches a threshold is refused, and
    /// the rule's decision is stored.
    pub async fn check_send(&self, sender: AccountId, outgoing: Outgoing) -> Result<(), ServiceError> {
        let state = self.cached(sender).await?;
        if state.suspended.is_some() {
            return Err(self.refused(ServiceError::AccountSuspended));
        }
        match outgoing {
            Outgoing::Action => return Ok(()),
            Outgoing::Direct(to) => self.check_recipient(sender, &state, to).await?,
            Outgoing::DirectByPhone(phone) => {
                if let Some(to) = self.d.directory.by_phone(&phone).await? {
                    self.check_recipient(sender, &state, to.id).await?;
                }
            }
            Outgoing::Group => {}
        }
        self.count_messages(sender, 1).await
    }

    /// The rules a forward obeys: those of a send for each chat (each copy is a message, each
    /// account a recipient), and forwarding limits: while limited, forwards are refused; the
    /// same message (`message_key`: its forwarded-from id, or its bytes' digest) reaching more
    /// than `forward_chats_per_message_per_day` chats limits forwarding.
    pub async fn check_forward(
        &self,
        sender: AccountId,
        accounts: &[AccountId],
        groups: &[GroupId],
        message_key: Option<&str>,
    ) -> Result<(), ServiceError> {
        let state = self.cached(sender).await?;
        if state.suspended.is_some() {
            return Err(self.refused(ServiceError::AccountSuspended));
        }
        let now = self.d.clock.now_ms();
        if state.forwarding_limited_until_ms > now {
            let retry_after_ms = retry_after(state.forwarding_limited_until_ms, now);
            return Err(self.refused(ServiceError::ForwardingLimited { retry_after_ms }));
        }
        let threshold = self.d.config.forward_chats_per_message_per_day;
        if let (Some(key), 1..) = (message_key, threshold) {
            let chats = accounts.iter().copied().chain(groups.iter().map(|g| g | (1 << 63)));
            let set = format!("fwd:{sender}:{key}");
            // Fires when a chat not counted before takes the message past the threshold (a
            // retry to the same chats, or a forward after an operator's lift to chats already
            // counted, does not).
            let mut over = false;
            for chat in chats {
                let m = self.counters.add_member(&set, chat, threshold + 1, now, DAY_MS).await;
                over |= !m.was_member && m.members > u64::from(threshold);
            }
            if over {
                let why = "forwarding limited: one message forwarded to too many chats";
                return Err(self.restrict(sender, Restriction::Forwarding, "forwards", why).await);
            }
        }
        for &to in accounts {
            self.check_recipient(sender, &state, to).await?;
        }
        self.count_messages(sender, accounts.len() + groups.len()).await
    }

    /// The new-recipient rule for one 1:1 recipient.
    async fn check_recipient(&self, sender: AccountId, state: &AbuseState, to: AccountId) -> Result<(), ServiceError> {
        let threshold = self.d.config.new_recipients_per_day;
        let now = self.d.clock.now_ms();
        let restricted = state.sending_restricted_until_ms > now;
        if to == sender || to == 0 || (threshold == 0 && !restricted) {
            return Ok(());
        }
        let (day, pair) = (now / DAY_MS, (sender, to));
        if !restricted && self.checked().of(day).contains(&pair) {
            return Ok(());
        }
        if self.d.store.is_contact(sender, to).await? || self.d.store.is_contact(to, sender).await? {
            self.checked().of(day).insert(pair);
            return Ok(());
        }
        if restricted {
            let retry_after_ms = retry_after(state.sending_restricted_until_ms, now);
            return Err(self.refused(ServiceError::SendingRestricted { retry_after_ms }));
        }
        // The send to the threshold-th distinct non-contact of the day fires (and, once the set
        // is full, a send to any other one); recipients already counted pass after a lift.
        let m = self.counters.add_member(&format!("rcpt:{sender}"), to, threshold, now, DAY_MS).await;
        if !m.was_member && m.members >= u64::from(threshold) {
            let why = "sending to non-contacts restricted: too many new recipients";
            return Err(self.restrict(sender, Restriction::Sending, "new_recipients", why).await);
        }
        self.checked().of(day).insert(pair);
        Ok(())
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, CheckedPairs> {
        self.checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `rule` fired: stores `restriction` for its configured length, drops the cached state and
    /// returns the refusal of the operation that fired it (or the store's error).
    async fn restrict(
        &self,
        sender: AccountId,
        restriction: Restriction,
        rule: &'static str,
        why: &str,
    ) -> ServiceError {
        self.hit(rule);
        let now = self.d.clock.now_ms();
        let length_s = match restriction {
            Restriction::Sending => self.d.config.sending_restriction_s,
            Restriction::Forwarding => self.d.config.forwarding_limit_s,
        };
        let until = now + length_s * 1000;
        if let Err(e) = self.d.store.set_restriction(sender, restriction, until).await {
            return e.into();
        }
        self.forget(sender);
        tracing::info!(account = sender, "{why}");
        let retry_after_ms = retry_after(until, now);
        self.refused(match restriction {
            Restriction::Sending => ServiceError::SendingRestricted { retry_after_ms },
            Restriction::Forwarding => ServiceError::ForwardingLimited { retry_after_ms },
        })
    }

    /// The message-rate rule: `n` more messages this hour.
    async fn count_messages(&self, sender: AccountId, n: usize) -> Result<(), ServiceError> {
        let threshold = self.d.config.messages_per_account_per_hour;
        if threshold == 0 || n == 0 {
            return Ok(());
        }
        // Shared counts go to Redis in batches: at most a sixteenth of the threshold (<= 32)
        // held back per node, so a busy sender costs a round trip per batch, not per message.
        let batch = u64::from(threshold / 16).clamp(1, 32);
        let now = self.d.clock.now_ms();
        let key = format!("msgs:{sender}");
        let mut total = 0;
        for _ in 0..n {
            total = self.counters.add(&key, now, HOUR_MS, batch).await;
        }
        if total >= u64::from(threshold) {
            self.hit("message_rate");
            self.suspend_for(sender, reasons::MESSAGE_RATE).await?;
            return Err(self.refused(ServiceError::AccountSuspended));
        }
        Ok(())
    }

    /// Files `reporter`'s report: checked (an existing other account, bounded reason and
    /// disclosure), limited per reporter per day, stored; then, if this reporter had not
    /// reported the account within `report_window_s`, the distinct reporters in the window are
    /// counted and `reports_to_suspend` of them suspend the account.
    pub async fn report(&self, reporter: DeviceAddr, r: pb::Report) -> Result<pb::ReportResult, ServiceError> {
        let c = &self.d.config;
        let invalid = |m: String| Err(ServiceError::ReportInvalid(m));
        if r.account_id == 0 || r.account_id == reporter.account {
            return invalid("name another account to report".into());
        }
        if r.reason.len() > REPORT_REASON_BYTES_MAX {
            return invalid(format!("reason is longer than {REPORT_REASON_BYTES_MAX} bytes"));
        }
        if r.messages.len() > c.report_messages_max {
            return invalid(format!("a report discloses at most {} messages", c.report_messages_max));
        }
        let bytes: usize = r.messages.iter().map(|m| m.content.len()).sum();
        if bytes > c.report_bytes_max {
            return invalid(format!("disclosed messages exceed {} bytes", c.report_bytes_max));
        }
        if self.d.directory.by_id(r.account_id).await?.is_none() {
            return invalid("no such account".into());
        }
        crate::ratelimit::check_shared(&self.report_limit, &reporter.account).await?;
        let now = self.d.clock.now_ms();
        let since = now.saturating_sub(c.report_window_s * 1000);
        let before = self.d.store.reporters_since(r.account_id, since).await?;
        let repeated = before.contains(&reporter.account);
        let report = AbuseReport {
            id: self.d.ids.next(now),
            reported: r.account_id,
            reporter,
            reported_at_ms: now,
            reason: r.reason,
            messages: r
                .messages
                .into_iter()
                .map(|m| ReportedMessage {
                    server_msg_id: m.server_msg_id,
                    sent_at_ms: m.sent_at_ms,
                    content: m.content.to_vec(),
                })
                .collect(),
        };
        let id = report.id;
        self.d.store.add_report(report).await?;
        let label = if repeated { "repeated" } else { "first" };
        self.d.metrics.abuse_reports.get_or_create(&vec![("report", label)]).inc();
        tracing::info!(reported = r.account_id, report_id = id, repeated, "account reported");
        if !repeated && c.reports_to_suspend > 0 {
            // Counted again after the write: concurrent reports on other nodes are seen too.
            let distinct = self.d.store.reporters_since(r.account_id, since).await?.len();
            if distinct >= c.reports_to_suspend as usize && self.suspend_for(r.account_id, reasons::REPORTS).await? {
                self.hit("reports");
            }
        }
        Ok(pb::ReportResult { report_id: id, repeated })
    }

    /// Operator: the account's abuse state, read from the store.
    pub async fn state(&self, account: AccountId) -> Result<AbuseState, ServiceError> {
        Ok(self.d.store.abuse_state(account).await?)
    }

    /// Operator: suspends the account pending review (`reason` is recorded as `operator:
    /// <reason>`). Whether it was newly suspended. Other nodes see it within
    /// `abuse.state_cache_ms`.
    pub async fn suspend(&self, account: AccountId, reason: &str) -> Result<bool, ServiceError> {
        self.d.metrics.abuse_operator_actions.get_or_create(&vec![("action", "suspend")]).inc();
        self.suspend_for(account, &format!("operator: {reason}")).await
    }

    /// Operator: lifts the account's suspension after review. Whether it was suspended.
    /// Restrictions stay (see [`Abuse::lift_restriction`]).
    pub async fn unsuspend(&self, account: AccountId) -> Result<bool, ServiceError> {
        self.d.metrics.abuse_operator_actions.get_or_create(&vec![("action", "unsuspend")]).inc();
        let lifted = self.d.store.unsuspend(account).await?;
        self.forget(account);
        if lifted {
            tracing::info!(account, "suspension lifted");
        }
        Ok(lifted)
    }

    /// Operator: ends a sending restriction or a forwarding limit now.
    pub async fn lift_restriction(&self, account: AccountId, restriction: Restriction) -> Result<(), ServiceError> {
        self.d.store.set_restriction(account, restriction, 0).await?;
        self.forget(account);
        Ok(())
    }

    /// Operator: up to `limit` reports against the account, newest first, with what the
    /// reporters disclosed.
    pub async fn reports(&self, account: AccountId, limit: usize) -> Result<Vec<AbuseReport>, ServiceError> {
        Ok(self.d.store.reports(account, limit).await?)
    }

    /// Operator: how many distinct accounts reported `account` within `report_window_s`.
    pub async fn distinct_reporters(&self, account: AccountId) -> Result<usize, ServiceError> {
        let since = self.d.clock.now_ms().saturating_sub(self.d.config.report_window_s * 1000);
        Ok(self.d.store.reporters_since(account, since).await?.len())
    }

    /// Operator: up to `limit` accounts to review (suspended, or reported within
    /// `report_window_s`), newest first, strictly below `before`; with the window's start.
    pub async fn review_queue(
        &self,
        before: Option<ReviewCursor>,
        limit: usize,
    ) -> Result<(u64, Vec<ReviewItem>), ServiceError> {
        let since = self.d.clock.now_ms().saturating_sub(self.d.config.report_window_s * 1000);
        Ok((since, self.d.store.review_queue(since, before, limit).await?))
    }

    /// Forgets ended count windows, stale cached states and idle report buckets; called
    /// periodically.
    pub fn sweep(&self) {
        self.counters.sweep(self.d.clock.now_ms());
        let max_age = Duration::from_millis(self.d.config.state_cache_ms);
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, (_, at)| at.elapsed() < max_age);
        if let Some(l) = &self.report_limit {
            l.sweep();
        }
        // Taking today's memo forgets yesterday's pairs.
        self.checked().of(self.d.clock.now_ms() / DAY_MS);
    }
}

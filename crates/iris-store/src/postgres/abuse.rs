//! [`AbuseStore`] on PostgreSQL: `abuse_states` and `abuse_reports` on the shard of the
//! account they are about (`0008_abuse.sql`), written with synced commits. Each state change
//! is one upsert touching only its columns, so concurrent rule hits on several nodes cannot
//! undo each other. The review queue asks every shard for its newest page
//! (`0009_abuse_review.sql` indexes both sides by time) and merges them.

use async_trait::async_trait;

use super::shards::{sql, sql_msg, unsql, unsql_msg};
use super::{query, PgStore};
use crate::abuse::{decode_messages, encode_messages, review_page};
use crate::{
    AbuseReport, AbuseState, AbuseStore, AccountId, DeviceAddr, Restriction, ReviewCursor, ReviewItem, StoreResult,
    Suspension,
};

/// One shard's newest page of the review queue: suspended accounts and accounts with recent
/// reports joined, ordered by the later of the two times, then the account (both descending).
/// `$1` the window's start, `$2`/`$3` the cursor (everything below it), `$4` the page size.
const REVIEW_PAGE: &str = "
    SELECT account, suspended_at_ms, suspended_reason, n_recent, last_at_ms
    FROM (
        SELECT coalesce(s.account, r.reported) AS account, s.suspended_at_ms, s.suspended_reason,
               coalesce(r.n_recent, 0) AS n_recent, coalesce(r.last_at_ms, 0) AS last_at_ms,
               greatest(coalesce(s.suspended_at_ms, 0), coalesce(r.last_at_ms, 0)) AS at_ms
        FROM (SELECT account, suspended_at_ms, suspended_reason FROM abuse_states WHERE suspended) s
        FULL OUTER JOIN (
            SELECT reported, count(*) AS n_recent, max(reported_at_ms) AS last_at_ms
            FROM abuse_reports WHERE reported_at_ms >= $1 GROUP BY reported
        ) r ON s.account = r.reported
    ) q
    WHERE (at_ms, account) < ($2, $3)
    ORDER BY at_ms DESC, account DESC
    LIMIT $4";

#[async_trait]
impl AbuseStore for PgStore {
    async fn abuse_state(&self, account: AccountId) -> StoreResult<AbuseState> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "SELECT suspended, suspended_at_ms, suspended_reason, sending_restricted_until_ms,
                        forwarding_limited_until_ms
                 FROM abuse_states WHERE account = $1",
                &[&sql(account)],
            )
            .await?;
            Ok(rows.first().map_or_else(AbuseState::default, |r| AbuseState {
                suspended: r.get::<_, bool>(0).then(|| Suspension { since_ms: unsql(r.get(1)), reason: r.get(2) }),
                sending_restricted_until_ms: unsql(r.get(3)),
                forwarding_limited_until_ms: unsql(r.get(4)),
            }))
        })
        .await
    }

    async fn suspend(&self, account: AccountId, s: Suspension) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            // The first suspension is kept: the update only applies to a row not suspended.
            let rows = query(
                this.account_shard(account),
                "INSERT INTO abuse_states (account, suspended, suspended_at_ms, suspended_reason)
                 VALUES ($1, true, $2, $3)
                 ON CONFLICT (account) DO UPDATE
                 SET suspended = true, suspended_at_ms = excluded.suspended_at_ms,
                     suspended_reason = excluded.suspended_reason
                 WHERE NOT abuse_states.suspended
                 RETURNING 1",
                &[&sql(account), &sql(s.since_ms), &s.reason],
            )
            .await?;
            Ok(!rows.is_empty())
        })
        .await
    }

    async fn unsuspend(&self, account: AccountId) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "UPDATE abuse_states SET suspended = false, suspended_at_ms = 0, suspended_reason = ''
                 WHERE account = $1 AND suspended RETURNING 1",
                &[&sql(account)],
            )
            .await?;
            Ok(!rows.is_empty())
        })
        .await
    }

    async fn set_restriction(&self, account: AccountId, restriction: Restriction, until_ms: u64) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let statement = match restriction {
                Restriction::Sending => {
                    "INSERT INTO abuse_states (account, sending_restricted_until_ms) VALUES ($1, $2)
                     ON CONFLICT (account) DO UPDATE SET sending_restricted_until_ms = excluded.sending_restricted_until_ms"
                }
                Restriction::Forwarding => {
                    "INSERT INTO abuse_states (account, forwarding_limited_until_ms) VALUES ($1, $2)
                     ON CONFLICT (account) DO UPDATE SET forwarding_limited_until_ms = excluded.forwarding_limited_until_ms"
                }
            };
            query(this.account_shard(account), statement, &[&sql(account), &sql(until_ms)]).await?;
            Ok(())
        })
        .await
    }

    async fn add_report(&self, r: AbuseReport) -> StoreResult<()> {
        self.on_task(move |this| async move {
            query(
                this.account_shard(r.reported),
                "INSERT INTO abuse_reports
                     (reported, id, reporter_account, reporter_device, reported_at_ms, reason, messages)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &sql(r.reported),
                    &sql_msg(r.id),
                    &sql(r.reporter.account),
                    &(r.reporter.device as i32),
                    &sql(r.reported_at_ms),
                    &r.reason,
                    &encode_messages(&r.messages),
                ],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn reports(&self, account: AccountId, limit: usize) -> StoreResult<Vec<AbuseReport>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "SELECT id, reporter_account, reporter_device, reported_at_ms, reason, messages
                 FROM abuse_reports WHERE reported = $1 ORDER BY id DESC LIMIT $2",
                &[&sql(account), &(limit.min(i64::MAX as usize) as i64)],
            )
            .await?;
            rows.iter()
                .map(|r| {
                    let messages: Vec<u8> = r.get(5);
                    Ok(AbuseReport {
                        id: unsql_msg(r.get(0)),
                        reported: account,
                        reporter: DeviceAddr::new(unsql(r.get(1)), r.get::<_, i32>(2) as u32),
                        reported_at_ms: unsql(r.get(3)),
                        reason: r.get(4),
                        messages: decode_messages(&messages)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn reporters_since(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "SELECT DISTINCT reporter_account FROM abuse_reports WHERE reported = $1 AND reported_at_ms >= $2",
                &[&sql(account), &sql(since_ms)],
            )
            .await?;
            Ok(rows.iter().map(|r| unsql(r.get(0))).collect())
        })
        .await
    }

    async fn review_queue(
        &self,
        reported_since_ms: u64,
        before: Option<ReviewCursor>,
        limit: usize,
    ) -> StoreResult<Vec<ReviewItem>> {
        self.on_task(move |this| async move {
            // Times and accounts stay below 2^63, so bigint's order is theirs; no cursor: above all.
            let (at, account) = before.map_or((i64::MAX, i64::MAX), |c| (sql(c.at_ms), sql(c.account)));
            let page_len = limit.min(i64::MAX as usize) as i64;
            let mut items = Vec::new();
            for shard in &this.inner.shards {
                let rows = query(shard, REVIEW_PAGE, &[&sql(reported_since_ms), &at, &account, &page_len]).await?;
                items.extend(rows.iter().map(|r| ReviewItem {
                    account: unsql(r.get(0)),
                    suspended:
                        r.get::<_, Option<i64>>(1).map(|since| Suspension { since_ms: unsql(since), reason: r.get(2) }),
                    n_recent_reports: unsql(r.get(3)),
                    last_reported_at_ms: unsql(r.get(4)),
                }));
            }
            Ok(review_page(items, before, limit))
        })
        .await
    }
}

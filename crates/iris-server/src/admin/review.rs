//! The review queue for operators: which accounts to look at (suspended, or reported within
//! the report window), newest first, page by page, so a review starts without an account id.
//! Each account's details are then `GET /admin/v1/accounts/{id}` and `…/reports`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use iris_proto::admin::{AdminReviewCursor, AdminReviewItem, AdminReviewQueue, AdminSuspension};
use iris_store::ReviewCursor;

use super::{AdminError, AdminState};

/// Accounts one `GET /admin/v1/review` returns at most (and by default): one store read per
/// shard and one directory read per account, bounded.
pub const REVIEW_LIMIT_MAX: usize = 100;

/// The query of `GET /admin/v1/review`.
#[derive(Debug, serde::Deserialize)]
pub struct ReviewQuery {
    /// Accounts at most (1 to [`REVIEW_LIMIT_MAX`], default the maximum).
    limit: Option<usize>,
    /// With `before_account`: continue below this item (the previous page's `next`).
    before_ms: Option<u64>,
    /// With `before_ms`.
    before_account: Option<u64>,
}

/// `GET /admin/v1/review?limit=N[&before_ms=T&before_account=A]`: suspended and recently
/// reported accounts, newest first (the later of suspension and latest report), with the
/// cursor of the next page when this one is full.
pub async fn queue(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<ReviewQuery>, QueryRejection>,
) -> Result<Json<AdminReviewQueue>, AdminError> {
    let Query(query) = query.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let limit = query.limit.unwrap_or(REVIEW_LIMIT_MAX);
    if !(1..=REVIEW_LIMIT_MAX).contains(&limit) {
        return Err(AdminError::InvalidArgument(format!("limit must be 1 to {REVIEW_LIMIT_MAX}")));
    }
    let before = match (query.before_ms, query.before_account) {
        (Some(at_ms), Some(account)) => Some(ReviewCursor { at_ms, account }),
        (None, None) => None,
        _ => return Err(AdminError::InvalidArgument("give both before_ms and before_account, or neither".into())),
    };
    let ctx = &state.ctx;
    let (reported_since_ms, items) = ctx.sessions.abuse.review_queue(before, limit).await?;
    let next = (items.len() == limit).then(|| items.last().map(|i| i.cursor())).flatten();
    let mut accounts = Vec::with_capacity(items.len());
    for item in items {
        let phone = ctx.directory.by_id(item.account).await?.map(|v| v.phone.clone()).unwrap_or_default();
        accounts.push(AdminReviewItem {
            account_id: item.account,
            phone,
            at_ms: item.cursor().at_ms,
            suspended: item.suspended.map(|s| AdminSuspension { since_ms: s.since_ms, reason: s.reason }),
            recent_reports: item.n_recent_reports,
            last_reported_at_ms: item.last_reported_at_ms,
        });
    }
    let next = next.map(|c| AdminReviewCursor { before_ms: c.at_ms, before_account: c.account });
    Ok(Json(AdminReviewQueue { reported_since_ms, accounts, next }))
}

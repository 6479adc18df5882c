//! Suspension, restrictions and user reports for operators (issue 18 part 4): the review side
//! of `crate::abuse`. Suspending and lifting go through the same service calls the rules use,
//! so every node sees the change within `abuse.state_cache_ms`.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use base64::Engine as _;
use iris_proto::admin::{AdminAbuseChange, AdminReport, AdminReportedMessage, AdminReports, AdminSuspend};
use iris_store::Restriction;

use super::accounts::{abuse_view, find};
use super::{AdminError, AdminState};
use crate::abuse::REPORT_REASON_BYTES_MAX;

/// Reports one `GET …/reports` returns at most (and by default).
pub const REPORTS_LIMIT_MAX: usize = 100;

/// `POST /admin/v1/accounts/{account}/suspend` with `{"reason": "…"}`: suspends the account
/// pending review (its sends, Hellos and logins are refused `ACCOUNT_SUSPENDED`). An account
/// already suspended keeps its first suspension (`changed: false`).
pub async fn suspend(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<AdminSuspend>, JsonRejection>,
) -> Result<Json<AdminAbuseChange>, AdminError> {
    let Path(key) = path.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let Json(body) = body.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > REPORT_REASON_BYTES_MAX {
        return Err(AdminError::InvalidArgument(format!("reason must be 1 to {REPORT_REASON_BYTES_MAX} bytes")));
    }
    let ctx = &state.ctx;
    let account = find(ctx, &key).await?;
    let changed = ctx.sessions.abuse.suspend(account.id, reason).await?;
    tracing::warn!(account = account.id, reason, changed, "account suspended by an operator");
    change(&state, account.id, changed).await
}

/// `POST /admin/v1/accounts/{account}/unsuspend`: lifts a suspension after review
/// (`changed: false` when it was not suspended). Restrictions stay; lift them apart.
pub async fn unsuspend(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AdminAbuseChange>, AdminError> {
    let Path(key) = path.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let account = find(&state.ctx, &key).await?;
    let changed = state.ctx.sessions.abuse.unsuspend(account.id).await?;
    change(&state, account.id, changed).await
}

/// `POST /admin/v1/accounts/{account}/restrictions/{sending|forwarding}/lift`: ends a sending
/// restriction or a forwarding limit now (`changed: false` when none was in force).
pub async fn lift(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AdminAbuseChange>, AdminError> {
    let Path((key, which)) = path.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let restriction = match which.as_str() {
        "sending" => Restriction::Sending,
        "forwarding" => Restriction::Forwarding,
        _ => return Err(AdminError::InvalidArgument(format!("no restriction {which:?}: sending or forwarding"))),
    };
    let ctx = &state.ctx;
    let account = find(ctx, &key).await?;
    let before = ctx.sessions.abuse.state(account.id).await?;
    let until = match restriction {
        Restriction::Sending => before.sending_restricted_until_ms,
        Restriction::Forwarding => before.forwarding_limited_until_ms,
    };
    let changed = until > ctx.clock.now_ms();
    ctx.sessions.abuse.lift_restriction(account.id, restriction).await?;
    tracing::info!(account = account.id, restriction = which, changed, "restriction lifted by an operator");
    change(&state, account.id, changed).await
}

/// The answer of a change: the account's state read back from the store.
async fn change(state: &AdminState, account_id: u64, changed: bool) -> Result<Json<AdminAbuseChange>, AdminError> {
    let abuse = abuse_view(state.ctx.sessions.abuse.state(account_id).await?);
    Ok(Json(AdminAbuseChange { account_id, changed, abuse }))
}

/// The query of `GET …/reports`.
#[derive(Debug, serde::Deserialize)]
pub struct ReportsQuery {
    /// Reports at most (1 to [`REPORTS_LIMIT_MAX`], default the maximum).
    limit: Option<usize>,
}

/// `GET /admin/v1/accounts/{account}/reports?limit=N`: the reports against an account, newest
/// first, with what each reporter disclosed and how many distinct accounts reported it within
/// the window that suspends.
pub async fn reports(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ReportsQuery>, QueryRejection>,
) -> Result<Json<AdminReports>, AdminError> {
    let Path(key) = path.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let Query(query) = query.map_err(|e| AdminError::InvalidArgument(e.body_text()))?;
    let limit = query.limit.unwrap_or(REPORTS_LIMIT_MAX);
    if !(1..=REPORTS_LIMIT_MAX).contains(&limit) {
        return Err(AdminError::InvalidArgument(format!("limit must be 1 to {REPORTS_LIMIT_MAX}")));
    }
    let ctx = &state.ctx;
    let account = find(ctx, &key).await?;
    let found = ctx.sessions.abuse.reports(account.id, limit).await?;
    let distinct = ctx.sessions.abuse.distinct_reporters(account.id).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let reports = found
        .into_iter()
        .map(|r| AdminReport {
            report_id: r.id,
            reporter_account_id: r.reporter.account,
            reporter_device_id: r.reporter.device,
            reported_at_ms: r.reported_at_ms,
            reason: r.reason,
            messages: r
                .messages
                .into_iter()
                .map(|m| AdminReportedMessage {
                    server_msg_id: m.server_msg_id,
                    sent_at_ms: m.sent_at_ms,
                    content_base64: b64.encode(&m.content),
                })
                .collect(),
        })
        .collect();
    Ok(Json(AdminReports { account_id: account.id, distinct_reporters_in_window: distinct as u64, reports }))
}

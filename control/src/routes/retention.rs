//! Retention: `GET|PUT /retention` (the global policy, admin), `GET /retention/preview` (what
//! the pruner would delete now, admin) and `PATCH /runs/{id}` with `{"keep": true}` (pin a run,
//! operators). A task's own policy is its `retention` field. The scheduler leader prunes; nothing
//! here deletes.

use axum::response::Response;
use axum::routing::{get, patch};
use axum::Router;
use serde::{Deserialize, Serialize};

use antcode_core::model::Role;
use antcode_core::retention::{cutoff, expiries, RetentionPolicy};
use antcode_core::time::now_ms;

use super::{ok, LateJson, P};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/retention", get(show).put(set))
        .route("/retention/preview", get(preview))
        .route("/runs/{id}", patch(pin))
}

async fn show(ctx: Ctx) -> ApiResult<Response> {
    ctx.require(Role::Admin, "retention.read", "").await?;
    Ok(ok(ctx.state.store.retention_policy().await?))
}

async fn set(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "retention.update", "").await?;
    let policy: RetentionPolicy = raw.parse()?;
    policy.validate().map_err(Problem::bad_request)?;
    let before = ctx.state.store.retention_policy().await?;
    ctx.state
        .store
        .set_retention_policy(&policy, now_ms())
        .await?;
    audit::record(
        &ctx,
        "retention.update",
        "",
        to_value(&before),
        to_value(&policy),
        "ok",
    )
    .await;
    Ok(ok(policy))
}

/// What `GET /retention/preview` answers.
#[derive(Serialize)]
struct Preview {
    policy: RetentionPolicy,
    /// Runs the policies expire now. A run expired by two rules (its age and its task's
    /// `keep_last`) counts in both, so this is an upper bound.
    runs: u64,
    /// Audit entries older than `audit_days`.
    audit: u64,
    /// Each slice: the task it applies to (every task without its own age limit when absent)
    /// and how many runs it expires.
    slices: Vec<Slice>,
}

#[derive(Serialize)]
struct Slice {
    task_id: Option<String>,
    #[serde(with = "antcode_core::time::rfc3339")]
    ended_before: i64,
    runs: u64,
}

async fn preview(ctx: Ctx) -> ApiResult<Response> {
    ctx.require(Role::Admin, "retention.read", "").await?;
    let store = ctx.state.store.as_ref();
    let now = now_ms();
    let policy = store.retention_policy().await?;
    let mut slices = vec![];
    for e in expiries(store, &policy, now).await? {
        let runs = store
            .count_prunable(e.task_id.as_deref(), &e.except, &e.before)
            .await?;
        slices.push(Slice {
            task_id: e.task_id,
            ended_before: e.before.closed_at,
            runs,
        });
    }
    let audit = match policy.audit_days {
        Some(days) => store.count_old_audit(cutoff(now, days)).await?,
        None => 0,
    };
    Ok(ok(Preview {
        policy,
        runs: slices.iter().map(|s| s.runs).sum(),
        audit,
        slices,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunPatch {
    keep: bool,
}

async fn pin(ctx: Ctx, P(id): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Operator, "run.keep", &id).await?;
    let body: RunPatch = raw.parse()?;
    check_id(&id, "run")?;
    let before = ctx.state.store.run(&id).await.map_err(named("run", &id))?;
    let run = ctx.state.store.set_run_pinned(&id, body.keep).await?;
    audit::record(
        &ctx,
        "run.keep",
        &id,
        to_value(&before.keep),
        to_value(&run.keep),
        "ok",
    )
    .await;
    Ok(ok(run))
}

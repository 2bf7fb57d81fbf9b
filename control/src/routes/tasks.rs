//! Tasks: `POST /tasks`, `GET /tasks`, `GET|PATCH|DELETE /tasks/{id}`,
//! `POST /tasks/{id}/pause|resume|trigger|invoke` (trigger and invoke take an optional
//! `{"params": {…}}`, checked against the task's `params` schema), `GET /tasks/{id}/stats`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use antcode_core::model::{Role, Schedule};
use antcode_core::time::now_ms;

use super::{created, no_content, ok, JsonBody, LateJson, PageQuery, P, Q};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::{ApiResult, Problem};
use crate::service::runs;
use crate::service::tasks::{self, load, TaskBody};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(list).post(create))
        .route("/tasks/{id}", get(show).patch(update).delete(remove))
        .route("/tasks/{id}/pause", post(pause))
        .route("/tasks/{id}/resume", post(resume))
        .route("/tasks/{id}/trigger", post(trigger))
        .route("/tasks/{id}/invoke", post(invoke))
        .route("/tasks/{id}/stats", get(stats))
        .route("/tasks/{id}/preview", get(preview))
        .route("/schedules/validate", post(validate_schedule))
}

async fn create(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.create", "").await?;
    let body: TaskBody = raw.parse()?;
    let valid = tasks::validate(&ctx.state, body).await?;
    let task = tasks::create(&ctx.state, valid, now_ms()).await?;
    audit::record(&ctx, "task.create", &task.id, None, to_value(&task), "ok").await;
    Ok(created(task))
}

async fn list(ctx: Ctx, Q(page): Q<PageQuery>) -> ApiResult<Response> {
    let mut page = ctx
        .state
        .store
        .list_tasks(page.limit()?, page.cursor()?)
        .await?;
    page.items = page
        .items
        .into_iter()
        .map(|t| tasks::visible(ctx.who.role, t))
        .collect();
    Ok(ok(page))
}

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let task = load(&ctx.state, &id).await?;
    Ok(ok(tasks::visible(ctx.who.role, task)))
}

async fn update(
    ctx: Ctx,
    P(id): P<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.update", &id).await?;
    let before = load(&ctx.state, &id).await?;
    let body = tasks::merge_patch(&before, patch)?;
    let valid = tasks::validate(&ctx.state, body).await?;
    let task = tasks::update(&ctx.state, &before, valid, now_ms()).await?;
    audit::record(
        &ctx,
        "task.update",
        &id,
        to_value(&before),
        to_value(&task),
        "ok",
    )
    .await;
    Ok(ok(task))
}

async fn remove(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.delete", &id).await?;
    let before = load(&ctx.state, &id).await?;
    ctx.state.store.delete_task(&id).await?;
    audit::record(&ctx, "task.delete", &id, to_value(&before), None, "ok").await;
    Ok(no_content())
}

async fn set_paused(ctx: Ctx, id: String, paused: bool) -> ApiResult<Response> {
    let action = if paused { "task.pause" } else { "task.resume" };
    ctx.require(Role::Operator, action, &id).await?;
    let (before, task) = tasks::set_paused(&ctx.state, &id, paused, now_ms()).await?;
    audit::record(&ctx, action, &id, to_value(&before), to_value(&task), "ok").await;
    Ok(ok(task))
}

async fn pause(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    set_paused(ctx, id, true).await
}

async fn resume(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    set_paused(ctx, id, false).await
}

async fn trigger(ctx: Ctx, P(id): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.trigger", &id).await?;
    let input = runs::RunInput::parse(&raw.0)?;
    let run = runs::trigger(&ctx.state, &id, "manual", input).await?;
    audit::record(&ctx, "task.trigger", &id, None, to_value(&run), "ok").await;
    Ok(created(run))
}

#[derive(Deserialize)]
struct InvokeQuery {
    wait_s: Option<u64>,
}

/// Most bytes of a run's log an `invoke` answer carries as `output`; the whole log is at
/// `GET /runs/{id}/logs`.
pub const MAX_INVOKE_OUTPUT: u64 = 1024 * 1024;

/// Serverless-style call: trigger, wait up to `wait_s` (default 30, at most 300) for the run to
/// end, then answer 200 with the run, its `result` and its log as `output` (its first
/// [`MAX_INVOKE_OUTPUT`] bytes, `output_truncated` saying whether it was cut); else 202 with the
/// run.
async fn invoke(
    ctx: Ctx,
    P(id): P<String>,
    Q(q): Q<InvokeQuery>,
    raw: LateJson,
) -> ApiResult<Response> {
    ctx.require(Role::Operator, "task.invoke", &id).await?;
    let wait = runs::check_wait(q.wait_s.unwrap_or(30))?;
    let input = runs::RunInput::parse(&raw.0)?;
    // Watch before the run exists, so no announcement of it can be missed.
    let changes = ctx.state.broker.watch_changes();
    let run = runs::trigger(&ctx.state, &id, "invoke", input).await?;
    audit::record(&ctx, "task.invoke", &id, None, to_value(&run), "ok").await;
    let run = runs::wait_for_end(&ctx.state, run, changes, wait).await?;
    if !run.state.is_terminal() {
        return Ok((StatusCode::ACCEPTED, Json(run)).into_response());
    }
    let (output, cut) = runs::log_text(&ctx.state, &run, MAX_INVOKE_OUTPUT).await?;
    let mut body = serde_json::to_value(&run).map_err(Problem::internal)?;
    body["output"] = json!(output);
    body["output_truncated"] = json!(cut);
    Ok(ok(body))
}

/// Counts by state and duration percentiles over the task's latest 1000 runs.
async fn stats(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    load(&ctx.state, &id).await?;
    let latest = tasks::latest_runs(&ctx.state, &id).await?;
    Ok(ok(tasks::stats(&id, &latest)))
}

/// The next five fire times of the task's schedule (empty without one), and the schedule in
/// words (null without one).
async fn preview(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let task = load(&ctx.state, &id).await?;
    let (next, description) = tasks::preview(&task)?;
    Ok(ok(
        json!({"task_id": id, "paused": task.paused, "description": description,
        "next": next}),
    ))
}

#[derive(Deserialize)]
struct ValidateQuery {
    /// When an interval starts counting (RFC 3339): a task's creation when editing it; now when
    /// absent or empty.
    anchor: Option<String>,
}

/// `POST /schedules/validate[?anchor=RFC3339]`: 200 with the next five fire times from now and
/// the schedule in words (`description`), or 400 naming the offending field. The UI's schedule builder calls it as you type.
async fn validate_schedule(
    ctx: Ctx,
    Q(q): Q<ValidateQuery>,
    JsonBody(schedule): JsonBody<Schedule>,
) -> ApiResult<Response> {
    ctx.require(Role::Viewer, "schedule.validate", "").await?;
    let (next, description) = tasks::try_schedule(&schedule, q.anchor.as_deref(), now_ms())?;
    Ok(ok(
        json!({"valid": true, "schedule": schedule, "description": description,
        "next": next}),
    ))
}

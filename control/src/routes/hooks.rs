//! Webhooks: `GET|POST /tasks/{id}/hooks`, `POST /tasks/{id}/hooks/{hook_id}/rotate`,
//! `DELETE /tasks/{id}/hooks/{hook_id}` (operators; listing: viewers), and the call itself,
//! `POST /hooks/{hook_id}`, which has no session: the hook's secret is its credential (see
//! `service::hooks`).
//!
//! A call takes the body of `trigger` and starts a run with trigger `webhook` (202), or with
//! `?wait_s=N` waits like `invoke` and answers 200 with the result once the run ended. With an
//! `Idempotency-Key` the store writes the key with the run, so a repeat within a day, however
//! concurrent, answers with the first call's run instead of starting another.

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use antcode_core::hooks::{Hook, RunKey, KEY_WINDOW_MS};
use antcode_core::ids::new_id;
use antcode_core::model::{Role, Run};
use antcode_core::store::StoreError;
use antcode_core::time::now_ms;

use super::tasks::MAX_INVOKE_OUTPUT;
use super::{created, no_content, ok, LateJson, List, P, Q};
use crate::audit::{self, to_value};
use crate::auth::{Client, Ctx};
use crate::metrics;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::service::hooks as check;
use crate::service::{runs, tasks};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tasks/{id}/hooks", get(list).post(create))
        .route("/tasks/{id}/hooks/{hook_id}", delete(remove))
        .route("/tasks/{id}/hooks/{hook_id}/rotate", post(rotate))
        .route("/hooks/{hook_id}", post(call))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HookBody {
    name: String,
    auth: Option<String>,
    rate_per_min: Option<i64>,
}

/// The base of a hook's URL: the configured public URL, else the request's host.
pub(crate) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8000");
    format!("http://{host}")
}

/// What a hook's creation and rotation answer: the hook, its secret (shown only here) and the
/// URL to call.
fn with_secret(state: &AppState, headers: &HeaderMap, hook: &Hook, secret: String) -> Value {
    json!({
        "hook": hook,
        "secret": secret,
        "url": format!("{}/api/v1/hooks/{}", public_base(state, headers), hook.id),
    })
}

/// Hook `hook_id` of task `task_id`: 404 when either is unknown or the hook is another task's.
async fn load(state: &AppState, task_id: &str, hook_id: &str) -> ApiResult<Hook> {
    check_id(task_id, "task")?;
    check_id(hook_id, "hook")?;
    let hook = state
        .store
        .hook(hook_id)
        .await
        .map_err(named("hook", hook_id))?;
    if hook.task_id != task_id {
        return Err(Problem::not_found(format!(
            "task {task_id} has no hook {hook_id}"
        )));
    }
    Ok(hook)
}

async fn create(
    ctx: Ctx,
    P(task_id): P<String>,
    headers: HeaderMap,
    raw: LateJson,
) -> ApiResult<Response> {
    ctx.require(Role::Operator, "hook.create", &task_id).await?;
    let body: HookBody = raw.parse()?;
    let valid = check::validate(&body.name, body.auth.as_deref(), body.rate_per_min)?;
    let task = tasks::load(&ctx.state, &task_id).await?;
    let id = new_id();
    let (secret, kept) = check::mint_secret(&ctx.state, &id, valid.auth)?;
    let hook = Hook {
        id,
        task_id: task.id,
        name: valid.name,
        auth: valid.auth,
        rate_per_min: valid.rate_per_min,
        secret: kept,
        created_at: now_ms(),
        rotated_at: None,
        last_used_at: None,
    };
    ctx.state.store.create_hook(&hook).await?;
    audit::record(&ctx, "hook.create", &hook.id, None, to_value(&hook), "ok").await;
    Ok(created(with_secret(&ctx.state, &headers, &hook, secret)))
}

async fn list(ctx: Ctx, P(task_id): P<String>) -> ApiResult<Response> {
    tasks::load(&ctx.state, &task_id).await?;
    Ok(ok(List::all(ctx.state.store.task_hooks(&task_id).await?)))
}

async fn rotate(
    ctx: Ctx,
    P((task_id, hook_id)): P<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    ctx.require(Role::Operator, "hook.rotate", &hook_id).await?;
    let before = load(&ctx.state, &task_id, &hook_id).await?;
    let (secret, kept) = check::mint_secret(&ctx.state, &hook_id, before.auth)?;
    let hook = ctx
        .state
        .store
        .rotate_hook(&hook_id, &kept, now_ms())
        .await
        .map_err(named("hook", &hook_id))?;
    audit::record(
        &ctx,
        "hook.rotate",
        &hook_id,
        to_value(&before),
        to_value(&hook),
        "ok",
    )
    .await;
    Ok(ok(with_secret(&ctx.state, &headers, &hook, secret)))
}

async fn remove(ctx: Ctx, P((task_id, hook_id)): P<(String, String)>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "hook.delete", &hook_id).await?;
    let before = load(&ctx.state, &task_id, &hook_id).await?;
    ctx.state
        .store
        .delete_hook(&hook_id)
        .await
        .map_err(named("hook", &hook_id))?;
    audit::record(&ctx, "hook.delete", &hook_id, to_value(&before), None, "ok").await;
    Ok(no_content())
}

#[derive(Deserialize)]
struct CallQuery {
    wait_s: Option<u64>,
}

/// Refused calls of one hook audited per minute, at most (see [`answer`]).
const DENIALS_AUDITED_PER_MIN: u32 = 60;

/// `last_used_at` is written at most this often per hook, not on every call.
const TOUCH_EVERY_MS: i64 = 60_000;

/// `POST /hooks/{hook_id}`: see the module doc.
async fn call(
    State(state): State<AppState>,
    client: Client,
    P(hook_id): P<String>,
    Q(q): Q<CallQuery>,
    headers: HeaderMap,
    raw: LateJson,
) -> Response {
    let outcome = answer(&state, &client, &hook_id, q, &headers, &raw.0).await;
    metrics::hook_call(match &outcome {
        Ok((_, replayed)) if *replayed => "replayed",
        Ok(_) => "accepted",
        Err(p) => match p.status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::TOO_MANY_REQUESTS => "limited",
            s if s.is_server_error() => "failed",
            _ => "refused",
        },
    });
    match outcome {
        Ok((resp, replayed)) => {
            let mut resp = resp;
            if replayed {
                resp.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            resp
        }
        Err(p) => p.into_response(),
    }
}

/// The answer to a call, and whether it repeats an earlier call's.
async fn answer(
    state: &AppState,
    client: &Client,
    hook_id: &str,
    q: CallQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<(Response, bool)> {
    let now = now_ms();
    let hook = match check::verify(state, hook_id, headers, body, now / 1000).await? {
        Ok(hook) => hook,
        Err(known) => {
            // Refusals of a hook that exists are audited, up to DENIALS_AUDITED_PER_MIN of
            // them; unknown ids and a flood past that are only counted, so nobody can fill the
            // audit trail by calling with a bad secret.
            let audited = known.filter(|h| {
                let at = Instant::now();
                state
                    .hook_denials
                    .take(&h.id, DENIALS_AUDITED_PER_MIN, at)
                    .is_ok()
            });
            if let Some(h) = audited {
                let actor = format!("hook:{}", h.id);
                audit::record_as(
                    state,
                    &actor,
                    client,
                    "hook.call",
                    &h.task_id,
                    None,
                    None,
                    "denied",
                )
                .await;
            }
            return Err(check::refused());
        }
    };
    if let Err(wait) = state
        .hook_buckets
        .take(&hook.id, hook.rate_per_min, Instant::now())
    {
        return Err(check::over_rate(&hook, wait));
    }
    let wait = q.wait_s.map(runs::check_wait).transpose()?;
    let key = check::idempotency_key(headers)?.map(|key| RunKey {
        hook_id: hook.id.clone(),
        key,
    });
    // Watch before the run exists, so no announcement of it can be missed.
    let changes = state.broker.watch_changes();
    let since = now - KEY_WINDOW_MS;
    let first = match &key {
        Some(k) => state.store.keyed_run(k, since).await?,
        None => None,
    };
    let (run, replayed) = match first {
        Some(id) => (replay(state, &id).await?, true),
        None => {
            let input = runs::RunInput::parse(body)?;
            let (task, version) = tasks::load_for_run(state, &hook.task_id).await?;
            runs::admit(state, &task)?;
            let input = runs::check_input(&task, input)?;
            match runs::start_run(state, &task, version, "webhook", input, key.clone()).await {
                Ok(run) => {
                    let actor = format!("hook:{}", hook.id);
                    audit::record_as(
                        state,
                        &actor,
                        client,
                        "hook.call",
                        &task.id,
                        None,
                        to_value(&run),
                        "ok",
                    )
                    .await;
                    (run, false)
                }
                // Another call with this key won the race: answer with its run.
                Err(p) if p.status == StatusCode::CONFLICT && key.is_some() => {
                    let first = match &key {
                        Some(k) => state.store.keyed_run(k, since).await?,
                        None => None,
                    };
                    let id = first
                        .ok_or_else(|| Problem::conflict("the Idempotency-Key's run is gone"))?;
                    (replay(state, &id).await?, true)
                }
                Err(p) => return Err(p),
            }
        }
    };
    if hook
        .last_used_at
        .is_none_or(|at| at + TOUCH_EVERY_MS <= now)
    {
        if let Err(e) = state.store.touch_hook(&hook.id, now).await {
            tracing::warn!(error = %e, hook_id = %hook.id, "could not record the hook's last use");
        }
    }
    let Some(wait) = wait else {
        return Ok((accepted(&run), replayed));
    };
    let run = runs::wait_for_end(state, run, changes, wait).await?;
    if !run.state.is_terminal() {
        return Ok((accepted(&run), replayed));
    }
    let (output, cut) = runs::log_text(state, &run, MAX_INVOKE_OUTPUT).await?;
    let body = json!({
        "run_id": run.id,
        "state": run.state,
        "exit_code": run.exit_code,
        "result": run.result,
        "output": output,
        "output_truncated": cut,
    });
    Ok((ok(body), replayed))
}

/// The run an earlier call with the same key started.
async fn replay(state: &AppState, run_id: &str) -> ApiResult<Run> {
    match state.store.run(run_id).await {
        Ok(run) => Ok(run),
        Err(StoreError::NotFound) => Err(Problem::conflict(
            "the run this Idempotency-Key started was deleted by retention",
        )),
        Err(e) => Err(e.into()),
    }
}

fn accepted(run: &Run) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"run_id": run.id, "run": run})),
    )
        .into_response()
}

//! Alerts: channels (admin), rules and the delivery history.
//!
//! * `GET|POST /notifications/channels`, `GET|PATCH|DELETE /notifications/channels/{id}`,
//!   `POST /notifications/channels/{id}/test` — admin. A channel's `config` (its kind and
//!   credentials, `antcode_notify::ChannelConfig`) is sealed whole before it reaches the store
//!   and never returned: a channel shows its `summary` (where it sends, whether a secret is set).
//!   A test is a delivery queued like any other (202), sent by the scheduler leader.
//! * `GET|POST /notifications/rules`, `GET|PATCH|DELETE /notifications/rules/{id}` — operators
//!   for rules of one task, admins for global rules (`task_id` absent).
//! * `GET /notifications/deliveries` (filters `channel_id`, `rule_id`, `state`) and
//!   `GET /notifications/deliveries/{id}` — operators.
//!
//! Nothing here sends: control writes the outbox, the scheduler leader delivers it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use antcode_core::alerting::*;
use antcode_core::ids::new_id;
use antcode_core::model::Role;
use antcode_core::store::StoreError;
use antcode_core::time::now_ms;
use antcode_notify::{ChannelConfig, Event, Template};

use super::{created, no_content, ok, LateJson, List, PageQuery, P, Q};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::service::{merge_patch, name_taken};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/notifications/channels",
            get(list_channels).post(create_channel),
        )
        .route(
            "/notifications/channels/{id}",
            get(show_channel)
                .patch(update_channel)
                .delete(delete_channel),
        )
        .route("/notifications/channels/{id}/test", post(test_channel))
        .route("/notifications/rules", get(list_rules).post(create_rule))
        .route(
            "/notifications/rules/{id}",
            get(show_rule).patch(update_rule).delete(delete_rule),
        )
        .route("/notifications/deliveries", get(list_deliveries))
        .route("/notifications/deliveries/{id}", get(show_delivery))
}

/// The body of `POST /notifications/channels` (and, merged over the channel, of `PATCH`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelBody {
    name: String,
    #[serde(default = "yes")]
    enabled: bool,
    /// Absent only in a `PATCH` that keeps the configuration.
    config: Option<ChannelConfig>,
}

fn yes() -> bool {
    true
}

fn check_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Problem::bad_request(format!(
            "name: must be 1-{MAX_NAME_LEN} printable characters"
        )));
    }
    Ok(name.to_string())
}

/// Seals `config` for channel `id`.
fn seal(state: &AppState, id: &str, config: &ChannelConfig) -> ApiResult<String> {
    config
        .validate()
        .map_err(|e| Problem::bad_request(format!("config.{e}")))?;
    let secrets = crate::service::sealer(state, "alert channels are")?;
    let text = serde_json::to_string(config).map_err(Problem::internal)?;
    secrets
        .seal(&seal_name(id), &text)
        .map_err(Problem::internal)
}

async fn list_channels(ctx: Ctx) -> ApiResult<Response> {
    ctx.require(Role::Admin, "alert.channel.read", "").await?;
    Ok(ok(List::all(ctx.state.store.list_channels().await?)))
}

async fn show_channel(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "alert.channel.read", &id).await?;
    Ok(ok(load_channel(&ctx.state, &id).await?))
}

async fn load_channel(state: &AppState, id: &str) -> ApiResult<AlertChannel> {
    check_id(id, "channel")?;
    state.store.channel(id).await.map_err(named("channel", id))
}

async fn create_channel(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "alert.channel.create", "").await?;
    let body: ChannelBody = raw.parse()?;
    let name = check_name(&body.name)?;
    let config = body
        .config
        .ok_or_else(|| Problem::bad_request("config: missing (an object with a kind)"))?;
    let id = new_id();
    let now = now_ms();
    let channel = AlertChannel {
        sealed: seal(&ctx.state, &id, &config)?,
        id,
        name,
        kind: config.kind().into(),
        summary: config.redacted(),
        enabled: body.enabled,
        created_at: now,
        updated_at: now,
    };
    ctx.state
        .store
        .create_channel(&channel)
        .await
        .map_err(name_taken("channel", &channel.name))?;
    audit::record(
        &ctx,
        "alert.channel.create",
        &channel.id,
        None,
        to_value(&channel),
        "ok",
    )
    .await;
    Ok(created(channel))
}

async fn update_channel(ctx: Ctx, P(id): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Admin, "alert.channel.update", &id)
        .await?;
    let before = load_channel(&ctx.state, &id).await?;
    let current = serde_json::json!({"name": before.name, "enabled": before.enabled});
    let body: ChannelBody = merge_patch(current, raw.parse()?, &[])?;
    let mut channel = before.clone();
    channel.name = check_name(&body.name)?;
    channel.enabled = body.enabled;
    if let Some(config) = &body.config {
        channel.sealed = seal(&ctx.state, &id, config)?;
        channel.kind = config.kind().into();
        channel.summary = config.redacted();
    }
    channel.updated_at = now_ms();
    ctx.state
        .store
        .update_channel(&channel)
        .await
        .map_err(name_taken("channel", &channel.name))?;
    audit::record(
        &ctx,
        "alert.channel.update",
        &id,
        to_value(&before),
        to_value(&channel),
        "ok",
    )
    .await;
    Ok(ok(channel))
}

async fn delete_channel(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "alert.channel.delete", &id)
        .await?;
    let before = load_channel(&ctx.state, &id).await?;
    let users: Vec<String> = ctx
        .state
        .store
        .list_rules()
        .await?
        .into_iter()
        .filter(|r| r.spec.channels.contains(&id))
        .map(|r| r.name)
        .collect();
    if !users.is_empty() {
        return Err(Problem::conflict(format!(
            "channel {} is used by rules {}; remove it from them first",
            before.name,
            users.join(", ")
        )));
    }
    ctx.state.store.delete_channel(&id).await?;
    audit::record(
        &ctx,
        "alert.channel.delete",
        &id,
        to_value(&before),
        None,
        "ok",
    )
    .await;
    Ok(no_content())
}

/// Queues a test alert to the channel: 202 with the delivery to poll.
async fn test_channel(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "alert.channel.test", &id).await?;
    let channel = load_channel(&ctx.state, &id).await?;
    let now = now_ms();
    let event = Event {
        kind: "test".into(),
        summary: format!(
            "test alert to channel {}, sent by {}",
            channel.name,
            ctx.username()
        ),
        occurred_at: now,
        count: 1,
        ..Default::default()
    };
    let key = format!("test:{}", new_id());
    let event = serde_json::to_value(&event).map_err(Problem::internal)?;
    let d = Delivery::pending(None, &id, &key, &key, event, now);
    ctx.state
        .store
        .enqueue_deliveries(std::slice::from_ref(&d))
        .await?;
    audit::record(&ctx, "alert.channel.test", &id, None, to_value(&d), "ok").await;
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}

/// The body of `POST /notifications/rules` (and, merged over the rule, of `PATCH`).
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct RuleBody {
    name: String,
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(flatten)]
    spec: RuleSpec,
}

/// Longest time a rule may name (a week), for `long_running_s` and `throttle_s`.
pub(crate) const MAX_RULE_SECONDS: u64 = 7 * 24 * 3600;

async fn check_rule(state: &AppState, b: &RuleBody) -> ApiResult<()> {
    let s = &b.spec;
    if s.on.is_empty() {
        return Err(Problem::bad_request("on: name at least one event"));
    }
    if s.channels.is_empty() || s.channels.len() > MAX_RULE_CHANNELS {
        return Err(Problem::bad_request(format!(
            "channels: between 1 and {MAX_RULE_CHANNELS} channel ids"
        )));
    }
    if !(1..=100).contains(&s.consecutive) {
        return Err(Problem::bad_request("consecutive: between 1 and 100"));
    }
    if s.throttle_s > MAX_RULE_SECONDS {
        return Err(Problem::bad_request(format!(
            "throttle_s: at most {MAX_RULE_SECONDS}"
        )));
    }
    match s.long_running_s {
        None if s.on.contains(&AlertOn::LongRunning) => {
            return Err(Problem::bad_request(
                "long_running_s: required by on long_running",
            ))
        }
        Some(n) if n == 0 || n > MAX_RULE_SECONDS => {
            return Err(Problem::bad_request(format!(
                "long_running_s: between 1 and {MAX_RULE_SECONDS}"
            )))
        }
        _ => {}
    }
    if s.backlog.is_none() && s.on.contains(&AlertOn::QueueBacklog) {
        return Err(Problem::bad_request(
            "backlog: required by on queue_backlog",
        ));
    }
    if let Some(q) = &s.queue {
        crate::bounds::check_len("queue", q, crate::bounds::NAME_CHARS)?;
    }
    for (field, tpl) in [("title", &s.title), ("body", &s.body)] {
        if let Some(t) = tpl {
            Template::parse(t).map_err(|e| Problem::bad_request(format!("{field}: {e}")))?;
        }
    }
    for c in &s.channels {
        let missing = || Problem::bad_request(format!("channels: channel {c:?} not found"));
        check_id(c, "channel").map_err(|_| missing())?;
        state.store.channel(c).await.map_err(or_else(missing))?;
    }
    if let Some(t) = &b.task_id {
        let missing = || Problem::bad_request(format!("task_id: task {t:?} not found"));
        check_id(t, "task").map_err(|_| missing())?;
        state.store.task(t).await.map_err(or_else(missing))?;
    }
    Ok(())
}

/// `NotFound` as `missing()`, any other store error as itself.
fn or_else(missing: impl FnOnce() -> Problem) -> impl FnOnce(StoreError) -> Problem {
    move |e| match e {
        StoreError::NotFound => missing(),
        e => e.into(),
    }
}

/// Global rules are an admin's; a task's rules an operator's.
async fn require_for(ctx: &Ctx, task_id: &Option<String>, action: &str, id: &str) -> ApiResult<()> {
    let role = if task_id.is_some() {
        Role::Operator
    } else {
        Role::Admin
    };
    ctx.require(role, action, id).await
}

async fn list_rules(ctx: Ctx) -> ApiResult<Response> {
    ctx.require(Role::Viewer, "alert.rule.read", "").await?;
    Ok(ok(List::all(ctx.state.store.list_rules().await?)))
}

async fn load_rule(state: &AppState, id: &str) -> ApiResult<AlertRule> {
    check_id(id, "rule")?;
    state.store.rule(id).await.map_err(named("rule", id))
}

async fn show_rule(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Viewer, "alert.rule.read", &id).await?;
    Ok(ok(load_rule(&ctx.state, &id).await?))
}

async fn create_rule(ctx: Ctx, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Operator, "alert.rule.create", "").await?;
    let body: RuleBody = raw.parse()?;
    require_for(&ctx, &body.task_id, "alert.rule.create", "").await?;
    check_rule(&ctx.state, &body).await?;
    let now = now_ms();
    let rule = AlertRule {
        id: new_id(),
        name: check_name(&body.name)?,
        task_id: body.task_id,
        spec: body.spec,
        enabled: body.enabled,
        created_at: now,
        updated_at: now,
    };
    ctx.state
        .store
        .create_rule(&rule)
        .await
        .map_err(name_taken("rule", &rule.name))?;
    audit::record(
        &ctx,
        "alert.rule.create",
        &rule.id,
        None,
        to_value(&rule),
        "ok",
    )
    .await;
    Ok(created(rule))
}

async fn update_rule(ctx: Ctx, P(id): P<String>, raw: LateJson) -> ApiResult<Response> {
    ctx.require(Role::Operator, "alert.rule.update", &id)
        .await?;
    let before = load_rule(&ctx.state, &id).await?;
    require_for(&ctx, &before.task_id, "alert.rule.update", &id).await?;
    let current = serde_json::to_value(&before).map_err(Problem::internal)?;
    let body: RuleBody = merge_patch(current, raw.parse()?, &[])?;
    require_for(&ctx, &body.task_id, "alert.rule.update", &id).await?;
    check_rule(&ctx.state, &body).await?;
    let rule = AlertRule {
        id: id.clone(),
        name: check_name(&body.name)?,
        task_id: body.task_id,
        spec: body.spec,
        enabled: body.enabled,
        created_at: before.created_at,
        updated_at: now_ms(),
    };
    ctx.state
        .store
        .update_rule(&rule)
        .await
        .map_err(name_taken("rule", &rule.name))?;
    audit::record(
        &ctx,
        "alert.rule.update",
        &id,
        to_value(&before),
        to_value(&rule),
        "ok",
    )
    .await;
    Ok(ok(rule))
}

async fn delete_rule(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "alert.rule.delete", &id)
        .await?;
    let before = load_rule(&ctx.state, &id).await?;
    require_for(&ctx, &before.task_id, "alert.rule.delete", &id).await?;
    ctx.state.store.delete_rule(&id).await?;
    audit::record(
        &ctx,
        "alert.rule.delete",
        &id,
        to_value(&before),
        None,
        "ok",
    )
    .await;
    Ok(no_content())
}

#[derive(Deserialize)]
struct DeliveryQuery {
    channel_id: Option<String>,
    rule_id: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list_deliveries(ctx: Ctx, Q(q): Q<DeliveryQuery>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "alert.delivery.read", "")
        .await?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    for (what, id) in [("channel", &q.channel_id), ("rule", &q.rule_id)] {
        if let Some(id) = id {
            check_id(id, what)?;
        }
    }
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
            Problem::bad_request(format!("state: {s:?} is not pending, sent or failed"))
        })?),
    };
    let filter = DeliveryFilter {
        channel_id: q.channel_id,
        rule_id: q.rule_id,
        state,
    };
    Ok(ok(ctx
        .state
        .store
        .list_deliveries(&filter, page.limit()?, page.cursor()?)
        .await?))
}

async fn show_delivery(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "alert.delivery.read", &id)
        .await?;
    check_id(&id, "delivery")?;
    Ok(ok(ctx
        .state
        .store
        .delivery(&id)
        .await
        .map_err(named("delivery", &id))?))
}

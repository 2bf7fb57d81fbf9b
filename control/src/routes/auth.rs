//! `POST /auth/login`, `POST /auth/logout`, `GET /auth/me`.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use antcode_core::ids;
use antcode_core::model::ApiToken;
use antcode_core::store::StoreError;
use antcode_core::time::{now_ms, to_rfc3339};

use super::{no_content, ok, LateJson};
use crate::audit;
use crate::auth::{self, Client, Ctx, CSRF_COOKIE, SESSION_COOKIE};
use crate::metrics;
use crate::problem::{ApiResult, Problem};
use crate::AppState;

/// How long a login session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

/// `POST /auth/login`. Only JSON is accepted (415 otherwise): a cross-site HTML form can send
/// `text/plain` or a form encoding without a preflight, never `application/json`, so no other
/// site can log a browser in to an account of its choosing. The attempt is counted by the
/// throttle before the password is checked; an unknown user is checked against a decoy hash.
async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    client: Client,
    headers: HeaderMap,
    raw: LateJson,
) -> ApiResult<Response> {
    require_json(&headers)?;
    let body: LoginBody = raw.parse()?;
    let username: String = body.username.chars().take(128).collect();
    let attempt = match state.throttle.admit(&username, &client.address) {
        Ok(a) => a,
        Err(wait) => {
            metrics::login("throttled");
            return Err(Problem::too_many(wait));
        }
    };
    let user = match state.store.user_by_name(&username).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => {
            attempt.withdraw();
            return Err(e.into());
        }
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = match auth::verify_password(&state, body.password, hash).await {
        Ok(v) => v,
        Err(busy) => {
            attempt.withdraw();
            metrics::login("busy");
            return Err(busy);
        }
    };
    let user = match user {
        Some(u) if verified && !u.disabled => u,
        _ => {
            attempt.failed();
            metrics::login("failure");
            audit::record_as(
                &state,
                &username,
                &client,
                "auth.login",
                "",
                None,
                None,
                "failed",
            )
            .await;
            return Err(Problem::unauthorized("invalid username or password"));
        }
    };
    attempt.succeeded();
    let token = ids::new_token("acs");
    let now = now_ms();
    let session = ApiToken {
        id: ids::new_id(),
        user_id: user.id.clone(),
        name: "login".into(),
        kind: "session".into(),
        scopes: vec!["*".into()],
        created_at: now,
        expires_at: now + SESSION_TTL_MS,
        token_hash: ids::token_hash(&token),
        // The generation the password was checked under: a change of the user since then
        // (a new password, a demotion) leaves this session dead.
        generation: user.generation,
    };
    state.store.create_token(&session).await?;
    metrics::login("success");
    audit::record_as(
        &state,
        &user.username,
        &client,
        "auth.login",
        &user.id,
        None,
        None,
        "ok",
    )
    .await;
    let mut resp = ok(json!({
        "token": token,
        "expires_at": to_rfc3339(session.expires_at),
        "user": user,
    }));
    // The web UI uses the cookie; API clients use the token. The CSRF cookie holds the token
    // bound to this session, which the UI echoes in a header.
    let secure = if state.dev { "" } else { "; Secure" };
    let max_age = SESSION_TTL_MS / 1000;
    let cookies = [
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"),
        format!(
            "{CSRF_COOKIE}={}; Path=/; SameSite=Strict; Max-Age={max_age}{secure}",
            auth::csrf_token(&token)
        ),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

async fn logout(ctx: Ctx) -> ApiResult<Response> {
    match ctx.state.store.delete_token(&ctx.who.token_id).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    ctx.state.principals.forget_all();
    audit::record(&ctx, "auth.logout", &ctx.who.user.id, None, None, "ok").await;
    let mut resp = no_content();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0")) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// 415 unless the body is declared JSON (`application/json` or `application/*+json`).
fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "log in with a JSON body (Content-Type: application/json)",
        ))
    }
}

async fn me(ctx: Ctx) -> ApiResult<Response> {
    Ok(ok(json!({
        "user": ctx.who.user,
        "role": ctx.who.role,
        "credential": ctx.who.token_kind,
    })))
}

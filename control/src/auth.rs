//! Authentication and authorisation.
//!
//! * Passwords are argon2id hashes (verified on the blocking pool: the KDF is deliberately slow).
//! * Credentials are opaque bearer tokens (`acs_…` for login sessions, `act_…` for API tokens),
//!   stored as their SHA-256. A request presents one as `Authorization: Bearer …`, or as the
//!   `antcode_session` cookie set at login; cookie-authenticated mutations must echo the
//!   `antcode_csrf` cookie in an `X-CSRF-Token` header (double-submit), so a cross-site form post
//!   cannot ride on the cookie.
//! * [`Ctx`] is the extractor every API handler takes: the caller, its effective role and where
//!   the request came from. An API token's scopes can only narrow its owner's role.
//! * Failed logins are throttled in memory, per username and per client address.
//! * A credential's principal is remembered for [`PRINCIPAL_TTL`] ([`Principals`]), so a busy
//!   client's calls do not each read its token and user.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};

use antcode_core::ids;
use antcode_core::model::{Role, User};
use antcode_core::store::{Store, StoreError};
use antcode_core::time::now_ms;

use crate::problem::{ApiResult, Problem};
use crate::{AppState, ControlError};

pub const SESSION_COOKIE: &str = "antcode_session";
pub const CSRF_COOKIE: &str = "antcode_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn rank(role: Role) -> u8 {
    match role {
        Role::Viewer => 0,
        Role::Operator => 1,
        Role::Admin => 2,
    }
}

/// The most an API token's scopes allow: `admin` (or `*`) keeps the owner's role, `write` caps it
/// at operator, anything else (`read`) at viewer.
pub fn scope_cap(scopes: &[String]) -> Role {
    if scopes.iter().any(|s| s == "*" || s == "admin") {
        Role::Admin
    } else if scopes.iter().any(|s| s == "write") {
        Role::Operator
    } else {
        Role::Viewer
    }
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_sync(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash nobody's password matches, verified for unknown usernames so that a wrong username
/// costs the same time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&ids::new_token("decoy")).unwrap_or_default())
}

/// Verifies a password on the blocking pool. `hash = None` verifies against the decoy.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let ok = tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| decoy_hash().to_string());
        verify_sync(&password, &hash)
    })
    .await
    .unwrap_or(false);
    ok && known
}

/// Creates `admin` when there are no users at all (first start).
pub async fn ensure_admin(store: &dyn Store, password: &str) -> Result<(), ControlError> {
    if !store.list_users().await?.is_empty() {
        return Ok(());
    }
    let pw = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| ControlError::Password(e.to_string()))?
        .map_err(ControlError::Password)?;
    let admin = User {
        id: ids::new_id(),
        username: "admin".into(),
        role: Role::Admin,
        disabled: false,
        created_at: now_ms(),
        password_hash: hash,
    };
    match store.create_user(&admin).await {
        // Another control instance created it first.
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// In-memory failed-login counter with a sliding window.
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    pub max_failures: usize,
    pub window: Duration,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            failures: Mutex::new(HashMap::new()),
            max_failures: 10,
            window: Duration::from_secs(300),
        }
    }
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds to wait if any of `keys` is over the limit.
    pub fn check(&self, keys: &[String]) -> Option<u64> {
        let mut map = self.lock();
        let now = Instant::now();
        let mut wait = None;
        for key in keys {
            if let Some(q) = map.get_mut(key) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                if q.len() >= self.max_failures {
                    let oldest = q.front().copied().unwrap_or(now);
                    let left = self.window.saturating_sub(now.duration_since(oldest));
                    let secs = left.as_secs().max(1);
                    wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
                }
            }
        }
        wait
    }

    pub fn fail(&self, keys: &[String]) {
        let mut map = self.lock();
        // Bound memory under a spray of usernames: forget everyone when the map gets huge.
        if map.len() > 100_000 {
            map.clear();
        }
        let now = Instant::now();
        for key in keys {
            let q = map.entry(key.clone()).or_default();
            q.push_back(now);
            while q.len() > self.max_failures {
                q.pop_front();
            }
        }
    }

    pub fn clear(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Where a request came from, for audit and throttling.
#[derive(Debug, Clone)]
pub struct Client {
    pub address: String,
    pub user_agent: String,
}

impl Client {
    /// The peer address; `X-Forwarded-For` is believed only from a loopback peer (the edge or a
    /// local reverse proxy), otherwise anyone could pick their own throttle key.
    pub fn from_parts(parts: &Parts) -> Client {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && v.len() <= 64);
        let address = match (peer, forwarded) {
            (Some(ip), Some(fwd)) if ip.is_loopback() => fwd,
            (Some(ip), _) => ip.to_string(),
            (None, _) => "unknown".to_string(),
        };
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        Client {
            address,
            user_agent,
        }
    }
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    /// The user's role narrowed by the token's scopes.
    pub role: Role,
    pub token_id: String,
    pub token_kind: String,
}

/// What every API handler takes: state, caller and client.
#[derive(Clone)]
pub struct Ctx {
    pub state: AppState,
    pub who: Principal,
    pub client: Client,
}

impl Ctx {
    /// Refuses callers below `role`; a refused mutation is audited as `denied`.
    pub async fn require(&self, role: Role, action: &str, resource: &str) -> ApiResult<()> {
        if rank(self.who.role) >= rank(role) {
            return Ok(());
        }
        crate::audit::record(self, action, resource, None, None, "denied").await;
        Err(Problem::forbidden(format!(
            "{action} needs the {} role; you have {}",
            role.as_str(),
            self.who.role.as_str()
        )))
    }

    pub fn username(&self) -> &str {
        &self.who.user.username
    }
}

pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Resolves a presented token to its principal; any failure is the same 401.
pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<Principal> {
    let denied = || Problem::unauthorized("missing, invalid or expired credentials");
    if token.is_empty() || token.len() > 200 {
        return Err(denied());
    }
    let hash = ids::token_hash(token);
    if let Some(who) = state.principals.get(&hash) {
        return Ok(who);
    }
    let stored = match state.store.token_by_hash(&hash).await {
        Ok(t) => t,
        Err(StoreError::NotFound) => return Err(denied()),
        Err(e) => return Err(e.into()),
    };
    let left_ms = stored.expires_at - now_ms();
    if left_ms <= 0 {
        return Err(denied());
    }
    let user = match state.store.user(&stored.user_id).await {
        Ok(u) if !u.disabled => u,
        Ok(_) | Err(StoreError::NotFound) => return Err(denied()),
        Err(e) => return Err(e.into()),
    };
    let cap = if stored.kind == "session" {
        Role::Admin
    } else {
        scope_cap(&stored.scopes)
    };
    let role = if rank(cap) < rank(user.role) {
        cap
    } else {
        user.role
    };
    let who = Principal {
        user,
        role,
        token_id: stored.id,
        token_kind: stored.kind,
    };
    let ttl = PRINCIPAL_TTL.min(Duration::from_millis(left_ms as u64));
    state.principals.put(hash, who.clone(), ttl);
    Ok(who)
}

/// How long a credential's principal is remembered. A change made through this process (logout,
/// a revoked token, a changed or deleted user) forgets every one at once; one made elsewhere
/// (another control replica, the CLI on the database) takes effect within this.
pub const PRINCIPAL_TTL: Duration = Duration::from_secs(1);
/// At most this many are remembered; past it the expired ones go, then all.
const PRINCIPALS_MAX: usize = 10_000;

/// Recently authenticated credentials (by token hash) and their principals.
#[derive(Default)]
pub struct Principals {
    known: Mutex<HashMap<String, (Instant, Principal)>>,
}

impl Principals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Principal)>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, hash: &str) -> Option<Principal> {
        let known = self.lock();
        let (until, who) = known.get(hash)?;
        (Instant::now() < *until).then(|| who.clone())
    }

    fn put(&self, hash: String, who: Principal, ttl: Duration) {
        let mut known = self.lock();
        if known.len() >= PRINCIPALS_MAX {
            let now = Instant::now();
            known.retain(|_, (until, _)| now < *until);
            if known.len() >= PRINCIPALS_MAX {
                known.clear();
            }
        }
        known.insert(hash, (Instant::now() + ttl, who));
    }

    /// Forgets every principal: call after any change to users or tokens.
    pub fn forget_all(&self) {
        self.lock().clear();
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ctx, Problem> {
        let client = Client::from_parts(parts);
        let who = if let Some(token) = bearer(parts) {
            authenticate(state, token).await?
        } else if let Some(token) = cookie(parts, SESSION_COOKIE) {
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe {
                let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                let expected = cookie(parts, CSRF_COOKIE);
                if sent.is_none() || sent != expected {
                    return Err(Problem::forbidden(
                        "cookie-authenticated requests that change state need the X-CSRF-Token header",
                    ));
                }
            }
            authenticate(state, token).await?
        } else {
            return Err(Problem::unauthorized(
                "missing, invalid or expired credentials",
            ));
        };
        Ok(Ctx {
            state: state.clone(),
            who,
            client,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Client, Self::Rejection> {
        Ok(Client::from_parts(parts))
    }
}

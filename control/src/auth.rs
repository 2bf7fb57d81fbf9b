//! Authentication and authorisation.
//!
//! * Passwords are argon2id hashes, hashed and verified on a few threads of their own
//!   ([`crate::kdf`]): the KDF is deliberately slow and holds 19 MiB per call.
//! * Credentials are opaque bearer tokens (`acs_…` for login sessions, `act_…` for API tokens),
//!   stored as their SHA-256. A request presents one as `Authorization: Bearer …`, or as the
//!   `antcode_session` cookie set at login; cookie-authenticated mutations must send the
//!   session's CSRF token (the `antcode_csrf` cookie, [`csrf_token`]: a hash of that session's
//!   token, so one session's CSRF token is worthless with another's cookie) in an
//!   `X-CSRF-Token` header, so a cross-site form post cannot ride on the cookie.
//! * [`Ctx`] is the extractor every API handler takes: the caller, its effective role and where
//!   the request came from. An API token's scopes can only narrow its owner's role, and a
//!   `read` token changes nothing, its own account included ([`Ctx::require_write`]).
//! * A token is valid only while its generation is its owner's: a change of password, role or
//!   disabled flag moves the user's generation and deletes their tokens (in the store).
//! * Failed logins are throttled in memory ([`Throttle`]): an attempt is counted before its
//!   password is checked, per client address (10 per 5 minutes) and per username (50 per 5
//!   minutes, so it takes five addresses or more to lock an owner out).
//! * A credential's principal is remembered for [`PRINCIPAL_TTL`] ([`Principals`]), so a busy
//!   client's calls do not each read its token and user. Live streams re-check their
//!   credential ([`Ctx::revoked`]) and end once it is no longer valid.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use antcode_core::ids;
use antcode_core::model::{Role, User};
use antcode_core::store::{Store, StoreError};
use antcode_core::time::now_ms;

pub use crate::client::Client;
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

/// The largest argon2 memory a stored hash may ask for (in 1 KiB blocks): 64 MiB. A hash
/// asking for more is treated as not matching rather than allocated.
const MAX_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// The argon2 working memory of this thread, kept between calls. Allocating it per call
    /// (what `PasswordHasher` does) left each call's 19 MiB resident: RSS grew by that much per
    /// login, without bound.
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs argon2 `argon` into `out` on this thread's kept working memory.
fn argon2_into(argon: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    let blocks = argon.params().block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    BLOCKS.with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() < blocks {
            kept.resize(blocks, Block::default());
        }
        argon
            .hash_password_into_with_memory(password, salt, out, &mut kept[..blocks])
            .is_ok()
    })
}

/// An argon2id PHC string of `password` with a fresh salt and the default parameters.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::default();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(|e| e.to_string())?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    if !argon2_into(&argon, password.as_bytes(), salt_bytes, &mut out) {
        return Err("argon2 failed".into());
    }
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(hash.to_string())
}

fn verify_sync(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    argon2_into(&argon, password.as_bytes(), salt, &mut out)
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// A hash nobody's password matches, verified for unknown usernames so that a wrong username
/// costs the same time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&ids::new_token("decoy")).unwrap_or_default())
}

/// Verifies a password on the password threads ([`crate::kdf`]). `hash = None` verifies
/// against the decoy, so an unknown user costs what a wrong password does.
pub async fn verify_password(
    state: &AppState,
    password: String,
    hash: Option<String>,
) -> ApiResult<bool> {
    state
        .kdf
        .run(move || match hash {
            Some(hash) => verify_sync(&password, &hash),
            None => {
                verify_sync(&password, decoy_hash());
                false
            }
        })
        .await
}

/// Hashes a new password on the password threads.
pub async fn hash_new_password(state: &AppState, password: String) -> ApiResult<String> {
    state
        .kdf
        .run(move || hash_password(&password))
        .await?
        .map_err(Problem::internal)
}

/// [`hash_password`] on tokio's blocking pool, for the one-off hashes outside requests (the first
/// admin, host recovery), which need no password threads.
pub async fn hash_on_blocking_pool(password: &str) -> Result<String, String> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| e.to_string())?
}

/// Creates `admin` when there are no users at all (first start).
pub async fn ensure_admin(store: &dyn Store, password: &str) -> Result<(), ControlError> {
    if !store.list_users().await?.is_empty() {
        return Ok(());
    }
    let hash = hash_on_blocking_pool(password)
        .await
        .map_err(ControlError::Password)?;
    let admin = User {
        id: ids::new_id(),
        username: "admin".into(),
        role: Role::Admin,
        disabled: false,
        created_at: now_ms(),
        password_hash: hash,
        generation: 0,
    };
    match store.create_user(&admin).await {
        // Another control instance created it first.
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Failed-login counters over a sliding window, per key (`a:ADDRESS`, `u:USERNAME`).
///
/// [`Throttle::admit`] checks and counts an attempt in one step, before its password is
/// checked: of 64 concurrent wrong passwords only the limit's worth are checked at all, the
/// rest are refused. A successful attempt takes its count back ([`Attempt::succeeded`]).
/// Limits are per address first (10), so one address cannot use up a username's larger
/// allowance (50) and lock its owner out everywhere.
pub struct Throttle {
    failures: Mutex<ThrottleMap>,
    pub per_address: usize,
    pub per_user: usize,
    pub window: Duration,
}

#[derive(Default)]
struct ThrottleMap {
    by_key: HashMap<String, VecDeque<(Instant, u64)>>,
    next_id: u64,
}

/// At most this many keys are remembered; past it, expired ones go, then all.
const THROTTLE_KEYS_MAX: usize = 100_000;

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            failures: Mutex::new(ThrottleMap::default()),
            per_address: 10,
            per_user: 50,
            window: Duration::from_secs(300),
        }
    }
}

/// A login attempt, counted as a failure unless it [`succeeded`](Attempt::succeeded) or is
/// [`withdrawn`](Attempt::withdraw).
#[must_use]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    keys: [String; 2],
    id: u64,
}

impl Attempt<'_> {
    /// The password was right: this attempt does not count.
    pub fn succeeded(self) {
        self.throttle.take_back(&self.keys, self.id);
    }

    /// The password was never checked (the server was busy): this attempt does not count.
    pub fn withdraw(self) {
        self.throttle.take_back(&self.keys, self.id);
    }

    /// The password was wrong: this attempt stays counted.
    pub fn failed(self) {}
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, ThrottleMap> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an attempt by `username` from `address`, or says how many seconds to wait when
    /// either is at its limit (then nothing is counted).
    pub fn admit(&self, username: &str, address: &str) -> Result<Attempt<'_>, u64> {
        let keys = [format!("a:{address}"), format!("u:{username}")];
        let limits = [self.per_address, self.per_user];
        let mut map = self.lock();
        let now = Instant::now();
        let mut wait = None;
        for (key, limit) in keys.iter().zip(limits) {
            let Some(q) = map.by_key.get_mut(key) else {
                continue;
            };
            while q
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) >= self.window)
            {
                q.pop_front();
            }
            if q.len() >= limit {
                let oldest = q.front().map_or(now, |(t, _)| *t);
                let left = self.window.saturating_sub(now.duration_since(oldest));
                let secs = left.as_secs().max(1);
                wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
            }
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        if map.by_key.len() + 2 > THROTTLE_KEYS_MAX {
            let window = self.window;
            map.by_key.retain(|_, q| {
                q.back()
                    .is_some_and(|(t, _)| now.duration_since(*t) < window)
            });
            if map.by_key.len() + 2 > THROTTLE_KEYS_MAX {
                map.by_key.clear();
            }
        }
        map.next_id += 1;
        let id = map.next_id;
        for key in &keys {
            map.by_key
                .entry(key.clone())
                .or_default()
                .push_back((now, id));
        }
        Ok(Attempt {
            throttle: self,
            keys,
            id,
        })
    }

    fn take_back(&self, keys: &[String], id: u64) {
        let mut map = self.lock();
        for key in keys {
            if let Some(q) = map.by_key.get_mut(key) {
                q.retain(|(_, i)| *i != id);
                if q.is_empty() {
                    map.by_key.remove(key);
                }
            }
        }
    }
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    /// The user's role narrowed by the token's scopes.
    pub role: Role,
    /// The most the credential's scopes allow (admin for a login session): a token capped
    /// below operator (`read`) changes nothing, not even its own account.
    pub cap: Role,
    pub token_id: String,
    pub token_kind: String,
    /// SHA-256 of the presented credential, to check it again later ([`Ctx::revoked`]).
    pub token_hash: String,
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

    /// Refuses read-only credentials: what changes the caller's own account (password, API
    /// tokens) needs a login session or a `write` or `admin` token, like any other change.
    pub async fn require_write(&self, action: &str, resource: &str) -> ApiResult<()> {
        if rank(self.who.cap) >= rank(Role::Operator) {
            return Ok(());
        }
        crate::audit::record(self, action, resource, None, None, "denied").await;
        Err(Problem::forbidden(format!(
            "{action} needs a login session or a token with the write scope; this token is read-only"
        )))
    }

    pub fn username(&self) -> &str {
        &self.who.user.username
    }

    /// Resolves once this request's credential is no longer valid (logged out, revoked, its
    /// user changed, disabled or deleted): live streams end on it. A change made through this
    /// process wakes it at once; one made elsewhere is seen within [`PRINCIPAL_TTL`] plus
    /// [`RECHECK`].
    pub fn revoked(&self) -> impl Future<Output = ()> + Send + 'static {
        let state = self.state.clone();
        let hash = self.who.token_hash.clone();
        async move {
            let mut changes = state.principals.changes.subscribe();
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() {
                        tokio::time::sleep(RECHECK).await;
                    },
                    _ = tokio::time::sleep(RECHECK) => {}
                }
                if let Err(p) = authenticate_hash(&state, &hash).await {
                    if p.status == StatusCode::UNAUTHORIZED {
                        return;
                    }
                }
            }
        }
    }
}

/// How often a live stream re-checks its credential.
pub const RECHECK: Duration = Duration::from_millis(500);

/// The CSRF token of the login session whose token is `session`: a hash keyed by it, so it is
/// bound to that one session and unguessable without its token (an HttpOnly cookie).
pub fn csrf_token(session: &str) -> String {
    let digest = ids::sha256_hex(format!("antcode-csrf\0{session}").as_bytes());
    format!("csrf_{digest}")
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
    if token.is_empty() || token.len() > 200 {
        return Err(denied());
    }
    authenticate_hash(state, &ids::token_hash(token)).await
}

fn denied() -> Problem {
    Problem::unauthorized("missing, invalid or expired credentials")
}

/// [`authenticate`] by the credential's hash.
async fn authenticate_hash(state: &AppState, hash: &str) -> ApiResult<Principal> {
    if let Some(who) = state.principals.get(hash) {
        return Ok(who);
    }
    let stored = match state.store.token_by_hash(hash).await {
        Ok(t) => t,
        Err(StoreError::NotFound) => return Err(denied()),
        Err(e) => return Err(e.into()),
    };
    let left_ms = stored.expires_at - now_ms();
    if left_ms <= 0 {
        return Err(denied());
    }
    let user = match state.store.user(&stored.user_id).await {
        // A token minted before its user's last change of password, role or disabled flag is
        // dead even if its row was not deleted (a login that raced the change).
        Ok(u) if !u.disabled && u.generation == stored.generation => u,
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
        cap,
        token_id: stored.id,
        token_kind: stored.kind,
        token_hash: hash.to_string(),
    };
    let ttl = PRINCIPAL_TTL.min(Duration::from_millis(left_ms as u64));
    state.principals.put(hash.to_string(), who.clone(), ttl);
    Ok(who)
}

/// How long a credential's principal is remembered. A change made through this process (logout,
/// a revoked token, a changed or deleted user) forgets every one at once; one made elsewhere
/// (another control replica, the CLI on the database) takes effect within this.
pub const PRINCIPAL_TTL: Duration = Duration::from_secs(1);
/// At most this many are remembered; past it the expired ones go, then all.
const PRINCIPALS_MAX: usize = 10_000;

/// Recently authenticated credentials (by token hash) and their principals.
pub struct Principals {
    known: Mutex<HashMap<String, (Instant, Principal)>>,
    /// Bumped by [`Principals::forget_all`]: wakes live streams to re-check their credential.
    changes: watch::Sender<u64>,
}

impl Default for Principals {
    fn default() -> Self {
        Principals {
            known: Mutex::default(),
            changes: watch::Sender::new(0),
        }
    }
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

    /// Forgets every principal and wakes live streams: call after any change to users or
    /// tokens.
    pub fn forget_all(&self) {
        self.lock().clear();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ctx, Problem> {
        let client = Client::from_parts(parts, state);
        let who = if let Some(token) = bearer(parts) {
            authenticate(state, token).await?
        } else if let Some(token) = cookie(parts, SESSION_COOKIE) {
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe {
                let sent = parts
                    .headers
                    .get(CSRF_HEADER)
                    .map_or(&b""[..], |v| v.as_bytes());
                let expected = csrf_token(token);
                if !bool::from(sent.ct_eq(expected.as_bytes())) {
                    return Err(Problem::forbidden(
                        "cookie-authenticated requests that change state need the X-CSRF-Token header of their session",
                    ));
                }
            }
            authenticate(state, token).await?
        } else {
            return Err(denied());
        };
        Ok(Ctx {
            state: state.clone(),
            who,
            client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_before_they_are_checked() {
        let t = Throttle::default();
        let held: Vec<_> = (0..10)
            .map(|_| t.admit("alice", "1.1.1.1").unwrap())
            .collect();
        // The eleventh is refused while the first ten are still being checked.
        assert!(t.admit("alice", "1.1.1.1").is_err());
        assert!(
            t.admit("bob", "1.1.1.1").is_err(),
            "the address is at its limit"
        );
        // From another address alice's owner still gets in: one address spends only 10 of 50.
        let other = t.admit("alice", "2.2.2.2").unwrap();
        other.succeeded();
        let mut held = held.into_iter();
        held.next().unwrap().succeeded();
        held.next().unwrap().withdraw();
        // Two places came back.
        t.admit("alice", "1.1.1.1").unwrap().failed();
        t.admit("alice", "1.1.1.1").unwrap().failed();
        assert!(t.admit("alice", "1.1.1.1").is_err());
        held.for_each(Attempt::failed);
    }

    #[test]
    fn many_addresses_reach_the_user_limit() {
        let t = Throttle::default();
        for a in 0..5 {
            for _ in 0..10 {
                t.admit("alice", &format!("10.0.0.{a}")).unwrap().failed();
            }
        }
        let wait = t.admit("alice", "10.0.0.99").err().unwrap();
        assert!(wait >= 1);
        t.admit("bob", "10.0.0.99").unwrap().failed();
    }

    #[test]
    fn hashes_verify_both_ways_with_the_crate_s_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_password("correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &salt)
            .unwrap()
            .to_string();
        assert!(verify_sync("battery staple", &theirs));
        assert!(!verify_sync("battery stapler", &theirs));
        assert!(verify_sync("correct horse", &ours));
        assert!(!verify_sync("correct horse ", &ours));
        assert!(!verify_sync("x", "not a hash"));
        // A hash asking for 1 GiB of memory is refused, not computed.
        let huge = theirs.replace("m=19456", "m=1048576");
        assert!(!verify_sync("battery staple", &huge));
    }

    #[test]
    fn csrf_tokens_are_per_session() {
        assert_eq!(csrf_token("acs_a"), csrf_token("acs_a"));
        assert_ne!(csrf_token("acs_a"), csrf_token("acs_b"));
    }
}

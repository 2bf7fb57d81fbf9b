//! Webhooks (`antcode_core::hooks`): what a valid hook is, minting and keeping its secret, and
//! checking a call's credentials and rate.
//!
//! A call is checked by [`verify`], which answers every failure (unknown or deleted hook, a
//! secret of the other kind, a bad token, a bad or stale signature) with the same 401, and does
//! the same work for an unknown id as for a known one: a hash compared with a decoy, or a
//! decoy secret opened and a MAC computed. So neither the answer nor its time tells which ids
//! exist.
//!
//! The rate limit is a token bucket per hook of `rate_per_min` ([`crate::ratelimit`]), applied
//! after the credentials, so a caller without the secret cannot spend a hook's rate.

use std::sync::OnceLock;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use antcode_core::hooks::{self, Hook, HookAuth, MAX_KEY_LEN, MAX_NAME_LEN, RATE_PER_MIN};
use antcode_core::ids;
use antcode_core::store::StoreError;

use crate::problem::{ApiResult, Problem};
use crate::AppState;

/// How far a signature's `t` may be from now, either way, in seconds: a captured call cannot
/// be replayed after this.
pub const SIGNATURE_WINDOW_S: i64 = 300;
/// The header an `hmac` hook's caller signs with.
pub const SIGNATURE_HEADER: &str = "x-antcode-signature";
/// The header that makes a call idempotent.
pub const KEY_HEADER: &str = "idempotency-key";

/// The checked fields of `POST /tasks/{id}/hooks`.
pub struct Valid {
    pub name: String,
    pub auth: HookAuth,
    pub rate_per_min: u32,
}

/// Checks a new hook's fields; `auth` defaults to `token`, `rate_per_min` to 60.
pub fn validate(name: &str, auth: Option<&str>, rate_per_min: Option<i64>) -> ApiResult<Valid> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(Problem::bad_request(format!(
            "name: must be 1-{MAX_NAME_LEN} printable characters"
        )));
    }
    let auth = match auth {
        None => HookAuth::Token,
        Some(a) => HookAuth::parse(a).ok_or_else(|| {
            Problem::bad_request(format!("auth: {a:?} is not one of token, hmac"))
        })?,
    };
    let (least, most) = RATE_PER_MIN;
    let rate_per_min = match rate_per_min {
        None => 60,
        Some(r) if (least as i64..=most as i64).contains(&r) => r as u32,
        Some(r) => {
            return Err(Problem::bad_request(format!(
                "rate_per_min: must be between {least} and {most}, got {r}"
            )))
        }
    };
    Ok(Valid {
        name: name.to_string(),
        auth,
        rate_per_min,
    })
}

/// A new secret for hook `id` of kind `auth`: the secret to show once, and what the store
/// keeps of it (its hash, or the secret sealed). An `hmac` hook needs the secret key.
pub fn mint_secret(state: &AppState, id: &str, auth: HookAuth) -> ApiResult<(String, String)> {
    let secret = ids::new_token("ach");
    let kept = match auth {
        HookAuth::Token => ids::token_hash(&secret),
        HookAuth::Hmac => sealer(state)?
            .seal(&hooks::seal_name(id), &secret)
            .map_err(Problem::internal)?,
    };
    Ok((secret, kept))
}

fn sealer(state: &AppState) -> ApiResult<&antcode_core::secrets::SecretBox> {
    super::sealer(state, "hmac hooks keep their secret")
}

/// The one answer to a call whose credentials do not check out.
pub fn refused() -> Problem {
    Problem::unauthorized("missing or invalid hook credentials")
}

/// The hook `id` names if the request carries its credentials, else `Err` with the 401 of
/// [`refused`] and, when the hook exists, the hook (so its refusal can be audited).
pub async fn verify(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_s: i64,
) -> ApiResult<Result<Hook, Option<Hook>>> {
    let hook = if ids::is_valid_id(id) {
        match state.store.hook(id).await {
            Ok(h) => Some(h),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let ok = if let Some(token) = bearer(headers) {
        let stored = match &hook {
            Some(h) if h.auth == HookAuth::Token => h.secret.as_str(),
            _ => decoy_hash(),
        };
        let presented = ids::token_hash(token);
        let same: bool = presented.as_bytes().ct_eq(stored.as_bytes()).into();
        same && hook.as_ref().is_some_and(|h| h.auth == HookAuth::Token)
    } else if let Some(signature) = headers.get(SIGNATURE_HEADER) {
        let secret = match (&hook, state.secrets.as_deref()) {
            (Some(h), Some(sealer)) if h.auth == HookAuth::Hmac => {
                sealer.open(&hooks::seal_name(&h.id), &h.secret).ok()
            }
            (_, Some(sealer)) => {
                // The same opening work as for a real hmac hook; its result is never used.
                let _ = sealer.open(&hooks::seal_name("decoy"), decoy_sealed(sealer));
                None
            }
            (_, None) => None,
        };
        let signed = signature
            .to_str()
            .ok()
            .and_then(parse_signature)
            .is_some_and(|(t, mac)| {
                let key = secret.as_deref().unwrap_or("decoy");
                let valid = signature_matches(key.as_bytes(), t, body, &mac);
                valid && (now_s - t).abs() <= SIGNATURE_WINDOW_S
            });
        signed && secret.is_some()
    } else {
        false
    };
    Ok(match (ok, hook) {
        (true, Some(h)) => Ok(h),
        (_, h) => Err(h),
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 200)
        .then_some(token)
}

/// A hash no token has, compared against when the hook is unknown.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| ids::token_hash(&ids::new_token("decoy")))
}

/// A sealed secret opened when the hook is unknown, as a real hmac hook's is.
fn decoy_sealed(sealer: &antcode_core::secrets::SecretBox) -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        sealer
            .seal(&hooks::seal_name("decoy"), &ids::new_token("ach"))
            .unwrap_or_default()
    })
}

/// `t=<unix seconds>,v1=<hex>` as its time and MAC bytes.
fn parse_signature(header: &str) -> Option<(i64, Vec<u8>)> {
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) if value.len() <= 12 => t = value.parse::<i64>().ok(),
            Some(("v1", value)) if value.len() == 64 => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    Some((t?, v1?))
}

/// Whether `mac` is HMAC-SHA256 under `key` of `"<t>.<body>"`, compared in constant time.
fn signature_matches(key: &[u8], t: i64, body: &[u8], mac: &[u8]) -> bool {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(mac).is_ok()
}

/// The `Idempotency-Key` of a call, if it has one: at most [`MAX_KEY_LEN`] printable ASCII
/// characters.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(KEY_HEADER) else {
        return Ok(None);
    };
    let key = value.as_bytes();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(Problem::bad_request(format!(
            "Idempotency-Key: must be 1-{MAX_KEY_LEN} printable ASCII characters"
        )));
    }
    Ok(Some(String::from_utf8_lossy(key).into_owned()))
}

/// The 429 of a hook over its rate, retry in `wait_s`.
pub fn over_rate(hook: &Hook, wait_s: u64) -> Problem {
    Problem::rate_limited(
        format!(
            "hook {} accepts {} calls a minute; retry in {wait_s} s",
            hook.id, hook.rate_per_min
        ),
        wait_s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_over_time_and_body() {
        let key = b"ach_secret";
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(b"1700000000.{\"a\":1}");
        let mac = hex::encode(m.finalize().into_bytes());
        let (t, bytes) = parse_signature(&format!("t=1700000000, v1={mac}")).unwrap();
        assert!(signature_matches(key, t, b"{\"a\":1}", &bytes));
        assert!(!signature_matches(key, t + 1, b"{\"a\":1}", &bytes));
        assert!(!signature_matches(key, t, b"{\"a\":2}", &bytes));
        assert!(!signature_matches(b"other", t, b"{\"a\":1}", &bytes));
        assert!(parse_signature("t=1700000000").is_none());
        assert!(parse_signature(&format!("v1={mac}")).is_none());
        assert!(parse_signature("t=1,v1=zz").is_none());
    }

    #[test]
    fn hook_fields_are_bounded() {
        assert!(validate("ci", None, None).is_ok());
        assert_eq!(
            validate("ci", Some("hmac"), Some(6000))
                .unwrap()
                .rate_per_min,
            6000
        );
        assert!(validate(&"x".repeat(101), None, None).is_err());
        assert!(validate("", None, None).is_err());
        assert!(validate("ci", Some("basic"), None).is_err());
        assert!(validate("ci", None, Some(0)).is_err());
        assert!(validate("ci", None, Some(6001)).is_err());
    }
}

//! The operations the routes share, and the validation of what users send.
//!
//! A handler in [`crate::routes`] extracts the request, checks the caller's role, calls one
//! function here, records the audit entry and maps the result to a response. Everything in
//! between lives here: what a valid task, project, secret or worker key is, how a run starts,
//! what a delete must not break. Functions take the [`AppState`](crate::AppState) (the seams)
//! and plain values, never a request, and fail with a [`Problem`](crate::problem::Problem) so
//! that every error is the problem+json the API documents. Authorisation and the audit trail
//! stay with the handlers: they know the caller.

pub mod files;
pub mod git;
pub mod hooks;
pub mod projects;
pub mod runs;
pub mod secrets;
pub mod stats;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod workers;

use serde_json::Value;

use crate::problem::{parse_json, ApiResult, Problem};

/// The body a `PATCH` stands for: the fields of `patch` (a JSON object) over `base`, the body of
/// a `POST` as the resource is now. Fields named in `nested` merge field by field when both
/// sides are objects; the others are replaced whole. Parsed as a `POST` body would be, so a
/// `PATCH` is held to the same checks.
pub fn merge_patch<T: serde::de::DeserializeOwned>(
    mut base: Value,
    patch: Value,
    nested: &[&str],
) -> ApiResult<T> {
    let Value::Object(patch) = patch else {
        return Err(Problem::bad_request(
            "the body must be a JSON object of fields to change",
        ));
    };
    for (k, v) in patch {
        match (&mut base[k.as_str()], v) {
            (Value::Object(cur), Value::Object(new)) if nested.contains(&k.as_str()) => {
                cur.extend(new)
            }
            (_, v) => base[k.as_str()] = v,
        }
    }
    let raw = serde_json::to_vec(&base).map_err(Problem::internal)?;
    parse_json(&raw)
}

/// The secret key's box, or a 503 saying that `what` (e.g. "hmac hooks keep their secret")
/// needs one.
pub fn sealer<'a>(
    state: &'a crate::AppState,
    what: &str,
) -> ApiResult<&'a antcode_core::secrets::SecretBox> {
    state.secrets.as_deref().ok_or_else(|| {
        Problem::unavailable(format!(
            "{what} sealed with the secret key; start control with ANTCODE_SECRET_KEY"
        ))
    })
}

/// A 400 whose detail starts with the offending field.
pub fn bad(field: &str, why: impl std::fmt::Display) -> Problem {
    Problem::bad_request(format!("{field}: {why}"))
}

/// The store's `Conflict` on a unique name as a 409 naming the `what` and the name.
pub fn name_taken(
    what: &str,
    name: &str,
) -> impl FnOnce(antcode_core::store::StoreError) -> Problem {
    let msg = format!("a {what} named {name:?} already exists");
    move |e| match e {
        antcode_core::store::StoreError::Conflict(_) => Problem::conflict(msg),
        other => other.into(),
    }
}

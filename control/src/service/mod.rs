//! The operations the routes share, and the validation of what users send.
//!
//! A handler in [`crate::routes`] extracts the request, checks the caller's role, calls one
//! function here, records the audit entry and maps the result to a response. Everything in
//! between lives here: what a valid task, project, secret or worker key is, how a run starts,
//! what a delete must not break. Functions take the [`AppState`](crate::AppState) (the seams)
//! and plain values, never a request, and fail with a [`Problem`](crate::problem::Problem) so
//! that every error is the problem+json the API documents. Authorisation and the audit trail
//! stay with the handlers: they know the caller.

pub mod projects;
pub mod runs;
pub mod secrets;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod workers;

use crate::problem::Problem;

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

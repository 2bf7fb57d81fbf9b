//! Bounds on every field a user sends, in one place: the handlers check them, and the OpenAPI
//! document states them (`maxLength`, `maxItems`, `maxProperties`) from the same constants.
//!
//! Lengths count characters, as JSON Schema's `maxLength` does. A field past its bound is a 422
//! problem naming the field, checked before anything is written. What a task carries is echoed
//! in every list of tasks, so its bounds keep a page of tasks small too.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::problem::{ApiResult, Problem};

/// Project and task names.
pub const NAME_CHARS: usize = 100;
/// A project's description.
pub const DESCRIPTION_CHARS: usize = 4096;
/// Arguments of a task, and characters of each.
pub const ARGS: usize = 256;
pub const ARG_CHARS: usize = 4096;
/// Environment variables of a task, characters of each name and each value.
pub const ENV_VARS: usize = 256;
pub const ENV_NAME_CHARS: usize = 128;
pub const ENV_VALUE_CHARS: usize = 4096;
/// Secrets a task declares (names are bounded by `core::secrets::MAX_NAME_LEN`).
pub const SECRETS: usize = 100;
/// Labels of a task, characters of each key and each value.
pub const LABELS: usize = 64;
pub const LABEL_KEY_CHARS: usize = 64;
pub const LABEL_VALUE_CHARS: usize = 256;
/// A queue name.
pub const QUEUE_CHARS: usize = 64;
/// An entry point: a path inside the bundle. A version's entrypoint column holds 255
/// characters on PostgreSQL and MySQL (`VARCHAR(255)`), so a longer one could not be stored.
pub const ENTRYPOINT_CHARS: usize = antcode_core::git::MAX_ENTRYPOINT_CHARS;
/// Requirement lines sent with a single-file project.
pub const REQUIREMENTS_CHARS: usize = 256 * 1024;
/// Projects named in one `PUT /secrets/{name}/grants`.
pub const GRANTS: usize = 1000;
/// A cron expression and a time zone name.
pub const CRON_CHARS: usize = 256;
pub const TIMEZONE_CHARS: usize = 64;
/// An RFC 3339 time.
pub const TIME_CHARS: usize = 64;
/// A user name (letters, digits and `._@-`, so characters are bytes).
pub const USERNAME_CHARS: usize = 64;
/// A password: at least this many characters, at most [`PASSWORD_BYTES`] bytes.
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_BYTES: usize = 1024;

/// The 422 for a field past its bound.
pub fn too_large(field: &str, why: impl std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "field-too-large",
        format!("{field}: {why}"),
    )
}

/// Refuses `value` longer than `max` characters.
pub fn check_len(field: &str, value: &str, max: usize) -> ApiResult<()> {
    // Bytes bound characters from above: most values are decided without counting.
    if value.len() > max && value.chars().count() > max {
        return Err(too_large(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// Refuses more than `max` items.
pub fn check_count(field: &str, n: usize, max: usize, what: &str) -> ApiResult<()> {
    if n > max {
        return Err(too_large(field, format!("at most {max} {what}, got {n}")));
    }
    Ok(())
}

/// A string schema of at most `max` characters.
pub fn string(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}

/// An array schema of at most `max` strings of at most `chars` characters.
pub fn strings(max: usize, chars: usize) -> Value {
    json!({"type": "array", "maxItems": max, "items": string(chars)})
}

/// An object schema of at most `max` string values.
pub fn string_map(max: usize, key_chars: usize, value_chars: usize) -> Value {
    json!({"type": "object", "maxProperties": max,
        "propertyNames": {"maxLength": key_chars},
        "additionalProperties": string(value_chars)})
}

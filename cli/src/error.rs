//! What can go wrong, each said in one line: the binary prints it after `error: ` and exits 1.

use std::path::Path;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input, a missing setting, something refused before any request.
    #[error("{0}")]
    Usage(String),
    /// The server answered with an error status: `401 Unauthorized: …`.
    #[error("{status}: {detail}")]
    Api { status: Status, detail: String },
    /// No answer: connection refused, TLS failure, timeout.
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// An HTTP status with its reason phrase, shown as `404 Not Found`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = reqwest::StatusCode::from_u16(self.0)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        write!(f, "{} {reason}", self.0)
    }
}

impl Error {
    pub fn usage(text: impl Into<String>) -> Error {
        Error::Usage(text.into())
    }

    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// A failed write to standard output (a closed pipe, a full disk).
    pub fn stdout(source: std::io::Error) -> Error {
        Error::Io {
            path: "standard output".into(),
            source,
        }
    }

    /// The status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(status.0),
            _ => None,
        }
    }

    /// Worth asking again after a pause: no answer, or the server (or a proxy before it) is
    /// restarting or overloaded.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Api { status, .. } => matches!(status.0, 429 | 502 | 503 | 504),
            _ => false,
        }
    }
}

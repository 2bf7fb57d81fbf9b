//! Opening the seams from configuration URLs, and `seam_of!`, which declares a seam's trait as
//! the sum of its sub-traits.
//!
//! `antcode up` opens each one once and hands the same handles to every plane it runs, which is
//! what lets the in-process broker serve them all.

use std::sync::Arc;

use crate::blob::{local::LocalBlobStore, BlobStore};
use crate::broker::{memory::MemoryBroker, Broker};
use crate::store::{sql::SqlStore, Store};

/// Declares a seam's trait (`Store`, `Broker`) as the sum of the sub-traits it is given, with the
/// trait's docs written before its name; implements it for every type that implements them all;
/// and re-exports the sub-traits in a `prelude` module beside it: the list is written once.
macro_rules! seam_of {
    ($(#[$doc:meta])* $seam:ident: $($sub:ident),+ $(,)?) => {
        $(#[$doc])*
        pub trait $seam: $($sub +)+ Send + Sync + 'static {}

        impl<T> $seam for T where T: $($sub +)+ Send + Sync + 'static {}

        #[doc = concat!(
            "The sub-traits, for callers that call the seam's methods on a concrete type or a ",
            "generic `T: ", stringify!($seam), "` (on `dyn ", stringify!($seam),
            "` they need no import)."
        )]
        pub mod prelude {
            pub use super::{$($sub),+};
        }
    };
}
pub(crate) use seam_of;

#[derive(Debug, thiserror::Error)]
pub enum SeamError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("blob store: {0}")]
    Blob(#[from] crate::blob::BlobError),
    #[error("broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    #[error("unsupported {what} url {url:?}: {hint}")]
    Unsupported {
        what: &'static str,
        url: String,
        hint: &'static str,
    },
}

/// The URL with a relative local path (`file://DIR` or a bare path for blobs, `sqlite://FILE`)
/// made absolute against the working directory; any other URL is returned as it is. Processes
/// resolve their URLs once at start with it, so a later change of directory (a run's own) cannot
/// change what a setting points at.
pub fn absolute_url(url: &str) -> String {
    let absolute = |path: &str| {
        std::path::absolute(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.to_string())
    };
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let (path, query) = rest
            .split_once('?')
            .map_or((rest, None), |(p, q)| (p, Some(q)));
        if path.is_empty() || path.starts_with(':') || path.starts_with('/') {
            return url.to_string();
        }
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        return format!("sqlite://{}{query}", absolute(path));
    }
    if let Some(path) = url.strip_prefix("file://") {
        return format!("file://{}", absolute(path));
    }
    if url.is_empty() || url.contains("://") {
        return url.to_string();
    }
    absolute(url)
}

pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, SeamError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

/// `memory://` is the in-process broker; `redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME]` or
/// `rediss://…` (TLS) is Redis Streams with every key under `{NAME}:` (default `antcode`).
/// Opening Redis checks that the server answers, so a bad setting fails at start.
pub async fn open_broker(url: &str) -> Result<Arc<dyn Broker>, SeamError> {
    if url == "memory://" || url.is_empty() {
        return Ok(Arc::new(MemoryBroker::new()));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(Arc::new(
            crate::broker::redis::RedisBroker::open(url).await?,
        ));
    }
    Err(SeamError::Unsupported {
        what: "broker",
        url: url.into(),
        hint: "use memory:// (in-process), redis://HOST[:PORT] or rediss://HOST[:PORT]",
    })
}

/// `file://PATH` (or a plain path) is a local directory; `s3://BUCKET[/prefix]` is S3, with the
/// endpoint, region and credentials from `ANTCODE_S3_*` (see [`crate::blob::s3::S3Config`]).
/// Opening S3 checks that the bucket is reachable, so a bad setting fails at start.
pub async fn open_blobs(url: &str) -> Result<Arc<dyn BlobStore>, SeamError> {
    if url.starts_with("s3://") {
        let config = crate::blob::s3::S3Config::from_url(url)?;
        return Ok(Arc::new(
            crate::blob::s3::S3BlobStore::connect(config).await?,
        ));
    }
    if let Some(path) =
        url.strip_prefix("file://")
            .or(if url.contains("://") { None } else { Some(url) })
    {
        return Ok(Arc::new(LocalBlobStore::new(path)?));
    }
    Err(SeamError::Unsupported {
        what: "blob store",
        url: url.into(),
        hint: "use file://DIR or s3://BUCKET[/prefix]",
    })
}

#[cfg(test)]
mod tests {
    use super::absolute_url;

    #[test]
    fn relative_local_paths_become_absolute_and_others_stay() {
        let cwd = std::env::current_dir().unwrap().display().to_string();
        assert_eq!(absolute_url("file://blobs"), format!("file://{cwd}/blobs"));
        assert_eq!(absolute_url("./blobs"), format!("{cwd}/blobs"));
        assert_eq!(
            absolute_url("sqlite://a.db?synchronous=normal"),
            format!("sqlite://{cwd}/a.db?synchronous=normal")
        );
        for same in [
            "sqlite:///abs/a.db",
            "sqlite://:memory:",
            "file:///abs",
            "s3://bucket/prefix",
            "postgres://u@h/db",
            "redis://h:6379/0",
            "",
        ] {
            assert_eq!(absolute_url(same), same);
        }
    }
}

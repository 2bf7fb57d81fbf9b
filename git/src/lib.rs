//! Fetches one commit of a Git repository and turns its tree into a project bundle.
//!
//! [`check_url`] says whether a URL may be fetched at all (scheme, no embedded password, no private
//! address). [`resolve`] asks the server which commit a branch or tag names, without fetching.
//! [`fetch`] downloads just that commit (depth 1) into a private temporary repository and packs the
//! files of its tree, or of one folder of it, into a deterministic `.tar.gz`. On request, the
//! submodules of that folder are fetched too, each at its recorded commit, and bundled under
//! their paths.
//!
//! Everything is bounded: time, bytes downloaded, bytes and files in the bundle, for a repository
//! and its submodules together; a submodule's URL is checked like the repository's, and a
//! credential is only sent back to the host it was given for. Nothing of the machine's Git setup
//! is used: no config files, no credential helpers, no `GIT_*` variables, no shell. The functions
//! block; an async caller runs them in `spawn_blocking`.
//!
//! A host is resolved once, and every connection goes to the addresses that passed the check, by
//! every transport: HTTP(S) through a client whose DNS is pinned to them (TLS still checks the
//! URL's host name), git:// through a socket we open to them, SSH by giving `ssh` the address
//! and checking the host key under the URL's host name. A DNS server that answers differently
//! when the fetch connects (DNS rebinding) can't lead it inside the platform's network.

mod bundle;
mod pin;
mod remote;
mod ssh;
mod submodule;
mod url;
mod watch;

/// The loopback Git servers of the testkit, for unit tests (see tests/fetch.rs).
#[cfg(test)]
#[path = "../../testkit/src/git.rs"]
mod servers;

use std::time::Duration;

pub use url::check_url;

/// Where to fetch from, and what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// `https://`, `http://`, `ssh://`, `git://` or scp-like `user@host:path`.
    pub url: String,
    /// A branch, a tag, or a full 40-hex commit id; `""` means the remote's HEAD.
    pub reference: String,
    /// The folder of the repository that is the project; `""` is the root.
    pub subdir: String,
    /// Whether submodules belong to the project. When true, each submodule inside `subdir` is
    /// fetched at the commit the tree records, from the URL `.gitmodules` gives (relative URLs
    /// are resolved against `url`), under the same URL checks and within the same limits; its
    /// files go under its path. Submodules of submodules are followed one level further. When
    /// false, submodules are left out.
    pub submodules: bool,
}

/// How to authenticate to the server. Never printed: `Debug` hides the secrets.
#[derive(Clone, Default)]
pub enum Credential {
    #[default]
    None,
    /// HTTP Basic authentication with a token as the password.
    Token {
        /// `""` means `x-access-token`, which GitHub and most forges accept.
        username: String,
        token: String,
    },
    /// An SSH key, and the server's host keys to check it against.
    SshKey {
        /// The private key in OpenSSH PEM form.
        private_key: String,
        /// `known_hosts` lines for the server; required, as an unknown server is refused.
        known_hosts: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::Token { username, .. } => {
                write!(f, "Token {{ username: {username:?}, .. }}")
            }
            Credential::SshKey { .. } => f.write_str("SshKey { .. }"),
        }
    }
}

/// Limits of one fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Whether hosts on loopback or private networks may be fetched from (tests, on-premise forges).
    pub allow_private: bool,
    /// Bytes the server may send (the packed objects).
    pub max_fetch_bytes: u64,
    /// Bytes of all files of the bundle, uncompressed.
    pub max_tree_bytes: u64,
    /// Files in the bundle.
    pub max_files: usize,
    /// Time for the whole call, from connecting to the finished bundle.
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_private: false,
            max_fetch_bytes: 100 << 20,
            max_tree_bytes: 200 << 20,
            max_files: 20_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// One commit, bundled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The full hex id of the commit.
    pub commit: String,
    /// `Name <email>` of the commit's author.
    pub author: String,
    /// The first line of the commit message, at most 500 characters.
    pub message: String,
    /// The committer's time, unix milliseconds.
    pub committed_at: i64,
    /// The files, as a deterministic `.tar.gz`: the same tree gives the same bytes.
    pub tar_gz: Vec<u8>,
    /// The paths in `tar_gz`, sorted, relative to the subdir; a submodule's files are under its
    /// path.
    pub files: Vec<String>,
    /// The hex id of the subdir's tree: equal ids mean equal files. It records the commit of each
    /// submodule, so it changes when one of them moves.
    pub tree: String,
}

/// Why a fetch failed. Messages are one line and never hold a token or a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The caller's request can't be served: a bad or private URL, an unknown ref or subdir, a
    /// repository over a limit, contents a bundle can't hold (LFS, symbolic links).
    #[error("{0}")]
    Refused(String),
    /// The server rejected the credentials, or its SSH host key is not the one given.
    #[error("{0}")]
    Auth(String),
    /// The server could not be reached or spoke badly.
    #[error("{0}")]
    Remote(String),
    /// The policy's time ran out.
    #[error("the fetch did not finish in time")]
    Timeout,
}

/// Returns the commit `source.reference` names on the server, asking it only for its refs.
///
/// A full 40-hex id is returned as it is, without contacting the server. Cheap enough for a sync
/// to call each time and skip the fetch when the commit has not changed.
pub fn resolve(source: &Source, cred: &Credential, policy: &Policy) -> Result<String, Error> {
    let wanted = remote::Wanted::parse(&source.reference);
    if let Ok(remote::Wanted::Commit(id)) = &wanted {
        check_url(&source.url, policy)?;
        return Ok(id.clone());
    }
    let target = url::vet(&source.url, policy)?;
    let wanted = wanted?;
    let (cred, allow_private) = (cred.clone(), policy.allow_private);
    watch::run(policy, None, move |job| {
        remote::resolve(&target, &wanted, &cred, allow_private, job)
    })
}

/// Fetches the commit `source.reference` names (depth 1) and bundles its tree, or `source.subdir`.
pub fn fetch(source: &Source, cred: &Credential, policy: &Policy) -> Result<Snapshot, Error> {
    let target = url::vet(&source.url, policy)?;
    let wanted = remote::Wanted::parse(&source.reference)?;
    let subdir = bundle::clean_subdir(&source.subdir)?;
    let (source, cred, limits) = (source.clone(), cred.clone(), policy.clone());
    let dir = tempfile::Builder::new()
        .prefix("antcode-git-")
        .tempdir()
        .map_err(|e| Error::Remote(format!("cannot create a temporary directory: {e}")))?;
    let watched = dir.path().to_path_buf();
    watch::run(policy, Some(watched), move |job| {
        // The directory moves into the job so that a job abandoned on timeout still removes it.
        // The superproject and each submodule get a repository of their own inside it, so that
        // the watcher's size of it is the total downloaded.
        let top = dir.path().join("superproject");
        std::fs::create_dir(&top)
            .map_err(|e| Error::Remote(format!("cannot create a temporary directory: {e}")))?;
        let fetched = remote::fetch(&top, &target, &wanted, &cred, limits.allow_private, job)?;
        let fetcher = submodule::Fetcher {
            dir: dir.path(),
            job,
            policy: &limits,
            url: &source.url,
            cred: &cred,
        };
        bundle::snapshot(fetched, &subdir, &source, &limits, &fetcher)
    })
}

//! Projects whose source is a Git repository: where to fetch from, what each version was taken
//! from, how the last sync went, and the sealed credentials fetches use.
//!
//! Fetching itself is `antcode_git`'s job and runs in the control plane; these are the types the
//! store keeps and the API shows. A credential's secret part is sealed with the cluster's
//! [`crate::secrets::SecretBox`] under the name `git:<name>` and is never serialised.

use serde::{Deserialize, Serialize};

use crate::time::rfc3339;

/// Longest Git URL accepted.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest entrypoint of any project version, uploaded or synced: the versions' entrypoint
/// column holds 255 characters on PostgreSQL and MySQL.
pub const MAX_ENTRYPOINT_CHARS: usize = 255;
/// Longest ref, subdirectory or file path inside the repository.
pub const MAX_PATH_CHARS: usize = 512;
/// Shortest and longest interval between automatic syncs, in seconds.
pub const INTERVAL_S: (u64, u64) = (60, 7 * 24 * 3600);
/// Longest stored commit message (its first line).
pub const MAX_MESSAGE_CHARS: usize = 500;

/// Where a project's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GitSource {
    /// `https://`, `http://`, `ssh://`, `user@host:path` or `git://`.
    pub url: String,
    /// A branch, a tag or a full commit id; empty follows the remote's default branch.
    #[serde(rename = "ref", default)]
    pub reference: String,
    /// The project's directory inside the repository; empty is its root.
    #[serde(default)]
    pub subdir: String,
    /// The script to run, relative to `subdir`; found as uploads find it when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// The requirements file, relative to `subdir`; a missing file means no requirements.
    #[serde(default = "default_requirements")]
    pub requirements: String,
    /// The Python its runs need, `major.minor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// The name of the Git credential to fetch with; none for a public repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Sync automatically this often, in seconds (60 to 604800); none syncs only on demand
    /// and on a push webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u64>,
    /// Fetch submodules too, under the same rules.
    #[serde(default)]
    pub submodules: bool,
}

fn default_requirements() -> String {
    "requirements.txt".into()
}

/// The commit a version was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GitOrigin {
    pub url: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub commit: String,
    /// `Name <email>` of the commit's author.
    pub author: String,
    /// The first line of the commit message.
    pub message: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub committed_at: i64,
    /// The id of the tree the bundle holds (the subdirectory's): equal trees, equal files.
    pub tree: String,
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncOutcome {
    /// A new version was made and became current.
    Created,
    /// The files were those of the latest version already.
    Unchanged,
    /// The fetch or the bundle was refused or failed; `error` says why.
    Failed,
}

/// The last sync of a Git project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncStatus {
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    pub outcome: SyncOutcome,
    /// The commit the ref resolved to, when it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The version made, or the latest one when unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What started it: `create`, `api`, `interval` or `webhook`.
    pub trigger: String,
}

/// What kind of secret a Git credential holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GitCredentialKind {
    /// An HTTPS token (or password), sent with `username` by Basic authentication.
    Token,
    /// An SSH private key, used only against hosts whose keys `known_hosts` lists.
    SshKey,
}

impl GitCredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GitCredentialKind::Token => "token",
            GitCredentialKind::SshKey => "ssh_key",
        }
    }

    pub fn parse(s: &str) -> Option<GitCredentialKind> {
        match s {
            "token" => Some(GitCredentialKind::Token),
            "ssh_key" => Some(GitCredentialKind::SshKey),
            _ => None,
        }
    }
}

/// A Git credential as the API shows it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GitCredentialMeta {
    pub name: String,
    pub kind: GitCredentialKind,
    /// The HTTPS user name (a token's); empty for SSH keys.
    pub username: String,
    /// For SSH keys: the `known_hosts` lines the server's key must match.
    pub known_hosts: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    pub updated_by: String,
}

/// A Git credential as the store keeps it: the token or private key sealed.
#[derive(Clone)]
pub struct SealedGitCredential {
    pub meta: GitCredentialMeta,
    pub sealed: String,
}

impl std::fmt::Debug for SealedGitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedGitCredential")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// The name a credential's secret is sealed under, so a sealed value cannot be moved between
/// a task secret and a Git credential of the same name.
pub fn seal_name(name: &str) -> String {
    format!("git:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_takes_defaults_and_refuses_unknown_fields() {
        let s: GitSource = serde_json::from_str(r#"{"url":"https://example.com/a.git"}"#).unwrap();
        assert_eq!(s.requirements, "requirements.txt");
        assert_eq!(s.reference, "");
        assert!(serde_json::from_str::<GitSource>(r#"{"url":"x","branch":"main"}"#).is_err());
    }
}

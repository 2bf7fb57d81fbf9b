//! Profiles: a server URL and its API token, kept in `$XDG_CONFIG_HOME/antcode/config.toml`
//! (else `~/.config/antcode/config.toml`), written with mode 0600 in a 0700 directory.
//!
//! `ANTCODE_URL`, `ANTCODE_TOKEN`, `ANTCODE_CA` and `ANTCODE_PROFILE` override the file. A
//! profile's token is sent only to the profile's own URL: pointing `--url` elsewhere never
//! carries it along.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::args::Conn;
use crate::error::{Error, Result};

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

#[derive(Debug, Default, Serialize, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// One server and what this client keeps for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// What a command talks to: the URL, the token (if any) and the CA to trust.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub token: Option<String>,
    pub ca: Option<PathBuf>,
}

/// The config file's path.
pub fn path() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::usage("neither XDG_CONFIG_HOME nor HOME is set"))?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("antcode").join("config.toml"))
}

fn read(path: &Path) -> Result<ConfigFile> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(Error::usage(format!(
            "{} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    toml::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "{}: {}",
            path.display(),
            e.message().replace('\n', " ")
        ))
    })
}

/// The profile's name: `--profile`, else `ANTCODE_PROFILE` (both through clap), else `default`.
pub fn profile_name(conn: &Conn) -> &str {
    conn.profile.as_deref().unwrap_or(DEFAULT_PROFILE)
}

/// A URL as profiles keep it: no trailing slash, no `/api/v1` suffix.
pub fn normalize_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix("/api/v1").unwrap_or(url);
    url.trim_end_matches('/').to_string()
}

/// What `conn` and the environment say to talk to, filled in from the profile.
pub fn target(conn: &Conn) -> Result<Target> {
    let name = profile_name(conn);
    let profile = read(&path()?)?.profiles.remove(name);
    let url = match (&conn.url, &profile) {
        (Some(url), _) => normalize_url(url),
        (None, Some(p)) => normalize_url(&p.url),
        (None, None) => {
            return Err(Error::usage(format!(
                "no server: run `antcode login` (profile {name}) or set ANTCODE_URL"
            )))
        }
    };
    // The profile's token belongs to the profile's server only.
    let own = profile.filter(|p| normalize_url(&p.url) == url);
    let token = std::env::var("ANTCODE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| own.as_ref().and_then(|p| p.token.clone()));
    let ca = conn.ca.clone().or_else(|| own.and_then(|p| p.ca));
    Ok(Target { url, token, ca })
}

/// Stores `profile` under `name`, keeping the other profiles: written to a new file of mode
/// 0600 and renamed over the old one, so a crash leaves either file whole.
pub fn save(name: &str, profile: Profile) -> Result<PathBuf> {
    let path = path()?;
    let dir = path.parent().expect("the config path has a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    let mut file = read(&path)?;
    file.profiles.insert(name.to_string(), profile);
    let text = toml::to_string(&file).map_err(|e| Error::usage(e.to_string()))?;
    let tmp = dir.join(format!(".config.toml.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A file that existed already keeps its mode through `open`: set it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&path, e)
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_kept_without_the_api_suffix() {
        assert_eq!(normalize_url("http://h:8000/"), "http://h:8000");
        assert_eq!(normalize_url("http://h:8000/api/v1/"), "http://h:8000");
        assert_eq!(normalize_url(" https://e:50051 "), "https://e:50051");
    }
}

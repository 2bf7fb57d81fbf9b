//! Submodules, when the caller asks for them: each gitlink of the bundled folder is fetched by its
//! exact commit from the URL `.gitmodules` gives it, and its files join the bundle under the
//! gitlink's path.
//!
//! The rules are the superproject's: the URL passes [`check_url`](crate::check_url) with the same policy and is
//! fetched from the addresses that check approved, it is fetched into its own repository inside the same watched directory and on the same job, so the
//! time and download budgets cover the superproject and all its submodules together, and the
//! files count against the same bundle limits. A credential only goes back to the host it was
//! given for. Submodules of submodules are followed to [`MAX_DEPTH`], and never in a cycle.

use std::path::Path;

use gix::bstr::ByteSlice;
use gix::ObjectId;

use crate::bundle::{Gitlink, Walk};
#[cfg(test)]
use crate::check_url;
use crate::remote::{self, Wanted};
use crate::url::{self, Vetted};
use crate::watch::{self, Job};
use crate::{Credential, Error, Policy};

/// How deep submodules are followed: 1 is the superproject's own, 2 their submodules.
const MAX_DEPTH: usize = 2;

/// What fetching a submodule needs, shared by all of them.
pub(crate) struct Fetcher<'a> {
    /// The watched directory: every submodule's repository goes in it, so that its size is the
    /// total downloaded.
    pub dir: &'a Path,
    pub job: &'a Job,
    pub policy: &'a Policy,
    /// The superproject's URL and credential, which belong together.
    pub url: &'a str,
    pub cred: &'a Credential,
}

/// A repository of the bundle whose gitlinks are being followed.
struct Parent {
    /// Its index in `Walk::repos`.
    repo: usize,
    commit: ObjectId,
    url: String,
    /// 0 for the superproject.
    depth: usize,
    /// The identities of its URL and its ancestors' URLs, to spot cycles.
    chain: Vec<String>,
}

/// Fetches the superproject's gitlinks `links`, and theirs, adding their files to `walk`.
pub(crate) fn include(
    walk: &mut Walk<'_>,
    fetcher: &Fetcher<'_>,
    commit: ObjectId,
    links: Vec<Gitlink>,
) -> Result<(), Error> {
    let top = Parent {
        repo: 0,
        commit,
        url: fetcher.url.to_string(),
        depth: 0,
        chain: vec![identity(fetcher.url)],
    };
    follow(walk, fetcher, &top, links)
}

fn follow(
    walk: &mut Walk<'_>,
    fetcher: &Fetcher<'_>,
    parent: &Parent,
    links: Vec<Gitlink>,
) -> Result<(), Error> {
    if links.is_empty() {
        return Ok(());
    }
    let modules = gitmodules(walk.repo(parent.repo), parent.commit, &parent.url)?;
    for link in links {
        let target = url_of(modules.as_ref(), &link, parent, fetcher.policy)?;
        let url = target.url.clone();
        let id = identity(&url);
        if parent.chain.contains(&id) {
            return Err(Error::Refused(format!(
                "submodule {} ({url}) is in a cycle: it contains itself",
                link.bundle_path
            )));
        }
        if parent.depth + 1 > MAX_DEPTH {
            return Err(Error::Refused(format!(
                "submodule {} ({url}) is nested deeper than {MAX_DEPTH} levels",
                link.bundle_path
            )));
        }
        let (child, tree) = fetch_one(walk, fetcher, parent, &link, &target, id)?;
        let mut inner = Vec::new();
        let prefix = format!("{}/", link.bundle_path);
        walk.tree(child.repo, tree, &prefix, "", &mut inner)?;
        follow(walk, fetcher, &child, inner)?;
    }
    Ok(())
}

/// Fetches the commit of `link` into a repository of its own in the watched directory, and
/// returns it with the id of its root tree.
fn fetch_one(
    walk: &mut Walk<'_>,
    fetcher: &Fetcher<'_>,
    parent: &Parent,
    link: &Gitlink,
    target: &Vetted,
    id: String,
) -> Result<(Parent, ObjectId), Error> {
    let url = target.url.clone();
    let within = |e: Error| about(&link.bundle_path, e);
    let dir = fetcher.dir.join(format!("submodule-{}", walk.repo_count()));
    std::fs::create_dir(&dir)
        .map_err(|e| Error::Remote(format!("cannot create a temporary directory: {e}")))?;
    let cred = credential_for(fetcher.cred, fetcher.url, &url);
    let wanted = Wanted::Commit(link.commit.to_string());
    let fetched = remote::fetch(
        &dir,
        target,
        &wanted,
        &cred,
        fetcher.policy.allow_private,
        fetcher.job,
    )
    .map_err(within)?;
    watch::within_download_cap(fetcher.dir, fetcher.policy)?;
    let tree = fetched
        .repo
        .find_commit(fetched.commit)
        .ok()
        .and_then(|c| c.tree_id().ok())
        .map(|t| t.detach())
        .ok_or_else(|| {
            within(Error::Remote(format!(
                "commit {} of {url} is unreadable",
                link.commit
            )))
        })?;
    let repo = walk.add(fetched.repo, url.clone());
    let mut chain = parent.chain.clone();
    chain.push(id);
    let child = Parent {
        repo,
        commit: link.commit,
        url,
        depth: parent.depth + 1,
        chain,
    };
    Ok((child, tree))
}

/// Puts the submodule's path in front of an error of its fetch, keeping the kind of error.
fn about(path: &str, err: Error) -> Error {
    match err {
        Error::Refused(m) => Error::Refused(format!("submodule {path}: {m}")),
        Error::Auth(m) => Error::Auth(format!("submodule {path}: {m}")),
        Error::Remote(m) => Error::Remote(format!("submodule {path}: {m}")),
        Error::Timeout => Error::Timeout,
    }
}

/// The `.gitmodules` of `commit`'s root tree, where git reads it even when a subdir is bundled;
/// `None` when there is none.
fn gitmodules(
    repo: &gix::Repository,
    commit: ObjectId,
    url: &str,
) -> Result<Option<gix::submodule::File>, Error> {
    let broken = |e: &dyn std::fmt::Display| {
        Error::Remote(format!(
            ".gitmodules of commit {commit} of {url} is unreadable: {e}"
        ))
    };
    let commit = repo.find_commit(commit).map_err(|e| broken(&e))?;
    let root = commit.tree().map_err(|e| broken(&e))?;
    let entry = root
        .lookup_entry_by_path(".gitmodules")
        .map_err(|e| broken(&e))?;
    // git ignores a .gitmodules that is not a regular file (a symbolic link, say).
    let Some(entry) = entry.filter(|e| e.mode().is_blob()) else {
        return Ok(None);
    };
    let blob = repo.find_blob(entry.object_id()).map_err(|e| broken(&e))?;
    let parsed = gix::submodule::File::from_bytes(&blob.data, None, &Default::default())
        .map_err(|e| Error::Refused(format!(".gitmodules of {url} can't be parsed: {e}")))?;
    Ok(Some(parsed))
}

/// The URL of `link` per `.gitmodules`, made absolute and checked like the superproject's, with
/// the addresses to fetch it from.
fn url_of(
    modules: Option<&gix::submodule::File>,
    link: &Gitlink,
    parent: &Parent,
    policy: &Policy,
) -> Result<Vetted, Error> {
    let path = &link.bundle_path;
    let missing = || {
        Error::Refused(format!(
            "{path} is a submodule without a URL in .gitmodules of {}",
            parent.url
        ))
    };
    let modules = modules.ok_or_else(missing)?;
    let name = modules
        .name_by_path(link.repo_path.as_bytes().as_bstr())
        .ok_or_else(missing)?;
    // The raw value: gix's own `url()` would turn a relative URL into a local path.
    let raw = modules
        .config()
        .string(format!("submodule.{name}.url").as_str())
        .ok_or_else(missing)?;
    let raw = raw
        .to_str()
        .map_err(|_| Error::Refused(format!("the URL of submodule {path} is not UTF-8")))?;
    let url = relative_url(&parent.url, raw).map_err(|e| about(path, e))?;
    url::vet(&url, policy).map_err(|e| about(path, e))
}

/// Resolves a submodule URL as git does: `./x` and `../x` are relative to the parent's URL, each
/// `../` dropping one component of its path (for `user@host:path`, the last one goes with the
/// colon); any other URL is taken as it is, for `check_url` to judge.
///
/// Unlike git, `../` may not climb out of the path into the host: `https://h/a` with `../../x`
/// would otherwise become `https://x`, another server.
pub(crate) fn relative_url(base: &str, url: &str) -> Result<String, Error> {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return Ok(url.to_string());
    }
    let climbs = || {
        Error::Refused(format!(
            "the relative URL {url:?} climbs above the host of {base}"
        ))
    };
    let mut base = base.strip_suffix('/').unwrap_or(base).to_string();
    let mut rest = url;
    let mut colon = false;
    loop {
        if let Some(after) = rest.strip_prefix("../") {
            rest = after;
            let floor = path_start(&base).ok_or_else(climbs)?;
            match base[floor..].rfind('/') {
                Some(slash) => base.truncate(floor + slash),
                // `user@host:repo`: the path's only component goes, and the colon joins next.
                None if !colon && floor > 0 && base.len() > floor && !base.contains("://") => {
                    base.truncate(floor - 1);
                    colon = true;
                }
                None => return Err(climbs()),
            }
        } else if let Some(after) = rest.strip_prefix("./") {
            rest = after;
        } else {
            break;
        }
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(base);
    }
    Ok(format!("{base}{}{rest}", if colon { ":" } else { "/" }))
}

/// Where the path of `url` starts: after `scheme://host[:port]`, or after the colon of
/// `user@host:path`.
fn path_start(url: &str) -> Option<usize> {
    match url.find("://") {
        Some(i) => Some(url[i + 3..].find('/').map_or(url.len(), |j| i + 3 + j)),
        None => url.find(':').map(|i| i + 1),
    }
}

/// The credential for a submodule at `url`: the superproject's when it is on the same host and
/// port, over the same kind of transport; no credential otherwise, so a token never reaches
/// another server.
fn credential_for(cred: &Credential, super_url: &str, url: &str) -> Credential {
    match (host_of(super_url), host_of(url)) {
        (Some(a), Some(b)) if a == b => cred.clone(),
        _ => Credential::None,
    }
}

/// The transport family, host and port of `url`.
fn host_of(url: &str) -> Option<(&'static str, String, u16)> {
    let parsed = url::parse(url).ok()?;
    let family = match parsed.scheme {
        gix::url::Scheme::Https | gix::url::Scheme::Http => "http",
        gix::url::Scheme::Ssh => "ssh",
        _ => "other",
    };
    let host = parsed.host()?.to_ascii_lowercase();
    Some((family, host, parsed.port_or_default()?))
}

/// What names one repository whatever the URL's spelling: host, port and path, without a
/// trailing `/` or `.git`.
fn identity(url: &str) -> String {
    let Ok(parsed) = url::parse(url) else {
        return url.to_string();
    };
    let path = parsed.path.to_str_lossy();
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!(
        "{}:{}/{path}",
        parsed.host().unwrap_or_default().to_ascii_lowercase(),
        parsed.port_or_default().unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_resolve_as_git_does() {
        let cases = [
            (
                "https://h.com/org/app.git",
                "../lib.git",
                "https://h.com/org/lib.git",
            ),
            (
                "https://h.com/org/app.git/",
                "../lib.git",
                "https://h.com/org/lib.git",
            ),
            (
                "https://h.com/org/app.git",
                "./sub",
                "https://h.com/org/app.git/sub",
            ),
            (
                "https://h.com/org/app",
                "../../other/lib",
                "https://h.com/other/lib",
            ),
            (
                "http://127.0.0.1:8080/app.git",
                "../lib.git",
                "http://127.0.0.1:8080/lib.git",
            ),
            (
                "ssh://git@h.com:22/org/app.git",
                "../lib.git",
                "ssh://git@h.com:22/org/lib.git",
            ),
            (
                "git@h.com:org/app.git",
                "../lib.git",
                "git@h.com:org/lib.git",
            ),
            (
                "git@h.com:org/app.git",
                "../../lib.git",
                "git@h.com:lib.git",
            ),
            ("git@h.com:app.git", "../lib.git", "git@h.com:lib.git"),
            (
                "https://h.com/app.git",
                "https://x.org/y.git",
                "https://x.org/y.git",
            ),
            ("https://h.com/app.git", "/tmp/x", "/tmp/x"),
        ];
        for (base, url, want) in cases {
            assert_eq!(relative_url(base, url).unwrap(), want, "{base} + {url}");
        }
        for (base, url) in [
            ("https://h.com/org/app.git", "../../../evil.com/x"),
            ("git@h.com:app.git", "../../x"),
            ("git@h.com:org/app.git", "../../../x"),
        ] {
            assert!(
                matches!(relative_url(base, url), Err(Error::Refused(m)) if m.contains("climbs")),
                "{base} + {url}"
            );
        }
    }

    #[test]
    fn resolved_urls_still_pass_check_url() {
        let strict = Policy::default();
        let url = relative_url("http://127.0.0.1:8080/org/app.git", "../lib.git").unwrap();
        assert!(
            matches!(check_url(&url, &strict), Err(Error::Refused(m)) if m.contains("127.0.0.1"))
        );
        for raw in ["file:///etc", "/tmp/x", "ext::sh -c id", "./x"] {
            let url = relative_url("/srv/app.git", raw).unwrap_or_default();
            assert!(
                matches!(check_url(&url, &strict), Err(Error::Refused(_))),
                "{raw}"
            );
        }
    }

    #[test]
    fn credentials_stay_on_their_host() {
        let token = Credential::Token {
            username: String::new(),
            token: "t".into(),
        };
        let kept =
            |a: &str, b: &str| matches!(credential_for(&token, a, b), Credential::Token { .. });
        assert!(kept("https://h.com/a.git", "https://H.com/b.git"));
        assert!(kept("https://h.com/a.git", "https://h.com:443/b.git"));
        assert!(!kept("https://h.com/a.git", "https://evil.com/b.git"));
        assert!(!kept("https://h.com/a.git", "https://h.com:8443/b.git"));
        assert!(!kept(
            "http://127.0.0.1:1/a.git",
            "http://127.0.0.1:2/b.git"
        ));
        assert!(!kept("https://h.com/a.git", "git@h.com:b.git"));
        assert!(!kept("https://h.com/a.git", "git://h.com/b.git"));
    }

    #[test]
    fn identities_ignore_spelling() {
        assert_eq!(
            identity("https://H.com/org/app.git/"),
            identity("https://h.com/org/app")
        );
        assert_ne!(
            identity("https://h.com/org/app"),
            identity("https://h.com/org/lib")
        );
    }
}

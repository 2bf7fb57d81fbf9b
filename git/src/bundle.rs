//! Turning a fetched commit's tree into a bundle, straight from the object database: no checkout,
//! so no file of the repository ever lands on disk.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use gix::bstr::ByteSlice;
use gix::object::tree::EntryKind;
use gix::ObjectId;

use crate::submodule::{self, Fetcher};
use crate::watch::human;
use crate::{remote, Error, Policy, Snapshot, Source};

/// How every LFS pointer file starts.
const LFS_POINTER: &[u8] = b"version https://git-lfs.github.com/spec/v1";

/// A regular file of the bundle.
struct File {
    /// Its path in the bundle.
    path: String,
    id: ObjectId,
    executable: bool,
    /// The repository holding it: an index into `Walk::repos`.
    repo: usize,
}

/// A submodule's commit recorded in a tree.
pub(crate) struct Gitlink {
    /// Its path from the root of the repository recording it, as `.gitmodules` names it.
    pub repo_path: String,
    /// Its path in the bundle, where its files go.
    pub bundle_path: String,
    pub commit: ObjectId,
}

/// Normalises `subdir` to `a/b` (or `""`), refusing absolute paths and `..`.
pub(crate) fn clean_subdir(subdir: &str) -> Result<String, Error> {
    let refuse = |why: &str| Err(Error::Refused(format!("subdir {subdir:?} {why}")));
    if subdir.starts_with('/') || subdir.starts_with('\\') {
        return refuse("must be relative to the repository's root");
    }
    let mut parts = Vec::new();
    for part in subdir.split('/') {
        match part {
            "" | "." => {}
            ".." => return refuse("must not contain '..'"),
            _ if part.contains('\\') || part.chars().any(char::is_control) => {
                return refuse("holds a backslash or a control character")
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// Bundles `subdir` of the fetched commit, with its submodules when `source.submodules`.
pub(crate) fn snapshot(
    top: remote::Fetched,
    subdir: &str,
    source: &Source,
    policy: &Policy,
    fetcher: &Fetcher<'_>,
) -> Result<Snapshot, Error> {
    let (repo, commit) = (&top.repo, top.commit);
    let broken = |e: &dyn std::fmt::Display| {
        Error::Remote(format!(
            "commit {commit} of {} is unreadable: {e}",
            source.url
        ))
    };
    let object = repo.find_commit(commit).map_err(|e| broken(&e))?;
    let author = object.author().map_err(|e| broken(&e))?;
    let author = format!(
        "{} <{}>",
        author.name.trim().to_str_lossy(),
        author.email.trim().to_str_lossy()
    );
    let message = first_line(&object.message_raw_sloppy().to_str_lossy());
    let seconds = object.time().map_err(|e| broken(&e))?.seconds;
    // The subdir's tree records each submodule's commit id, so this id changes when one moves.
    let tree = subdir_tree(&object, subdir, source)?;
    // It borrows the repository, which the walk takes over.
    drop(object);

    let mut walk = Walk::new(policy);
    walk.add(top.repo, source.url.clone());
    collect(&mut walk, tree, subdir, commit, source, fetcher)?;
    let mut files = std::mem::take(&mut walk.files);
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let tar_gz = write_tar(&walk.repos, &files, seconds.max(0) as u64)?;
    Ok(Snapshot {
        commit: commit.to_string(),
        author,
        message,
        committed_at: seconds * 1000,
        tar_gz,
        files: files.into_iter().map(|f| f.path).collect(),
        tree: tree.to_string(),
    })
}

/// Collects the files of `tree`, the superproject's subdir, and of its submodules if asked for.
fn collect(
    walk: &mut Walk<'_>,
    tree: ObjectId,
    subdir: &str,
    commit: ObjectId,
    source: &Source,
    fetcher: &Fetcher<'_>,
) -> Result<(), Error> {
    let mut links = Vec::new();
    let in_repo = if subdir.is_empty() {
        String::new()
    } else {
        format!("{subdir}/")
    };
    walk.tree(0, tree, "", &in_repo, &mut links)?;
    // Without `submodules`, gitlinks are left out of the bundle.
    if source.submodules {
        submodule::include(walk, fetcher, commit, links)?;
    }
    Ok(())
}

/// The id of the tree at `subdir` of `commit`.
fn subdir_tree(commit: &gix::Commit<'_>, subdir: &str, source: &Source) -> Result<ObjectId, Error> {
    let broken = |e: &dyn std::fmt::Display| {
        Error::Remote(format!(
            "commit {} of {} is unreadable: {e}",
            commit.id, source.url
        ))
    };
    let root = commit.tree().map_err(|e| broken(&e))?;
    if subdir.is_empty() {
        return Ok(root.id);
    }
    let entry = root.lookup_entry_by_path(subdir).map_err(|e| broken(&e))?;
    match entry {
        Some(entry) if entry.mode().is_tree() => Ok(entry.object_id()),
        _ => Err(Error::Refused(format!(
            "subdir {subdir:?} is not a folder of commit {} of {}",
            commit.id, source.url
        ))),
    }
}

/// Collects the regular files of the bundle's repositories, counting them against the policy as
/// it goes: the limits hold for the superproject and its submodules together.
pub(crate) struct Walk<'a> {
    policy: &'a Policy,
    /// The repositories the files come from, with their URLs: the superproject first.
    repos: Vec<(gix::Repository, String)>,
    bytes: u64,
    files: Vec<File>,
}

impl<'a> Walk<'a> {
    fn new(policy: &'a Policy) -> Self {
        Walk {
            policy,
            repos: Vec::new(),
            bytes: 0,
            files: Vec::new(),
        }
    }

    /// Adds a repository whose files go into the bundle, and returns its index.
    pub fn add(&mut self, repo: gix::Repository, url: String) -> usize {
        self.repos.push((repo, url));
        self.repos.len() - 1
    }

    pub fn repo(&self, index: usize) -> &gix::Repository {
        &self.repos[index].0
    }

    pub fn repo_count(&self) -> usize {
        self.repos.len()
    }

    /// Collects the files under tree `id` of repository `repo`, their paths in the bundle starting
    /// with `prefix`, and pushes its gitlinks onto `links`. `in_repo` is the tree's own path from
    /// the repository's root, which `.gitmodules` needs.
    pub fn tree(
        &mut self,
        repo: usize,
        id: ObjectId,
        prefix: &str,
        in_repo: &str,
        links: &mut Vec<Gitlink>,
    ) -> Result<(), Error> {
        for (kind, name, id) in self.entries(repo, id)? {
            let path = format!("{prefix}{name}");
            match kind {
                EntryKind::Tree => {
                    let inner = format!("{in_repo}{name}/");
                    self.tree(repo, id, &format!("{path}/"), &inner, links)?
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    self.file(repo, path, id, kind == EntryKind::BlobExecutable)?
                }
                EntryKind::Link => {
                    return Err(Error::Refused(format!(
                        "{path} is a symbolic link; bundles hold regular files only"
                    )))
                }
                EntryKind::Commit => links.push(Gitlink {
                    repo_path: format!("{in_repo}{name}"),
                    bundle_path: path,
                    commit: id,
                }),
            }
        }
        Ok(())
    }

    /// The entries of tree `id`: kind, name and object id.
    fn entries(
        &self,
        repo: usize,
        id: ObjectId,
    ) -> Result<Vec<(EntryKind, String, ObjectId)>, Error> {
        let (repo, url) = &self.repos[repo];
        let broken = |e: &dyn std::fmt::Display| {
            Error::Remote(format!("tree {id} of {url} is unreadable: {e}"))
        };
        let tree = repo.find_tree(id).map_err(|e| broken(&e))?;
        let entries = tree
            .decode()
            .map_err(|e| broken(&e))?
            .entries
            .iter()
            .map(|e| {
                (
                    e.mode.kind(),
                    e.filename.to_str_lossy().into_owned(),
                    e.oid.to_owned(),
                )
            })
            .collect();
        Ok(entries)
    }

    fn file(
        &mut self,
        repo: usize,
        path: String,
        id: ObjectId,
        executable: bool,
    ) -> Result<(), Error> {
        if self.files.len() >= self.policy.max_files {
            return Err(Error::Refused(format!(
                "the project has more than {} files; the limit is {}",
                self.policy.max_files, self.policy.max_files
            )));
        }
        let (git, url) = &self.repos[repo];
        let header = git
            .find_header(id)
            .map_err(|e| Error::Remote(format!("{path} of {url} is unreadable: {e}")))?;
        self.bytes += header.size();
        if self.bytes > self.policy.max_tree_bytes {
            return Err(Error::Refused(format!(
                "the project's files add up to more than the {} limit",
                human(self.policy.max_tree_bytes)
            )));
        }
        self.files.push(File {
            path,
            id,
            executable,
            repo,
        });
        Ok(())
    }
}

/// Writes `files` as a deterministic `.tar.gz`: sorted paths, one mtime, no owners.
fn write_tar(
    repos: &[(gix::Repository, String)],
    files: &[File],
    mtime: u64,
) -> Result<Vec<u8>, Error> {
    let io = |e: std::io::Error| Error::Remote(format!("cannot write the bundle: {e}"));
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for file in files {
        let (repo, url) = &repos[file.repo];
        let blob = repo
            .find_blob(file.id)
            .map_err(|e| Error::Remote(format!("{} of {url} is unreadable: {e}", file.path)))?;
        refuse_lfs(&file.path, &blob.data, url)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(blob.data.len() as u64);
        header.set_mode(if file.executable { 0o755 } else { 0o644 });
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, &file.path, blob.data.as_slice())
            .map_err(io)?;
    }
    let mut gz = tar.into_inner().map_err(io)?;
    gz.flush().map_err(io)?;
    gz.finish().map_err(io)
}

/// Refuses LFS pointers and `.gitattributes` that send files to LFS: the bundle would hold
/// pointers instead of the files.
fn refuse_lfs(path: &str, data: &[u8], url: &str) -> Result<(), Error> {
    let is_attributes = path == ".gitattributes" || path.ends_with("/.gitattributes");
    let routes_to_lfs = is_attributes && data.find(b"filter=lfs").is_some();
    if routes_to_lfs || data.starts_with(LFS_POINTER) {
        return Err(Error::Refused(format!(
            "{url} uses Git LFS ({path}); LFS objects are not fetched — store the files in the repository"
        )));
    }
    Ok(())
}

/// The first line of `message`, at most 500 characters.
fn first_line(message: &str) -> String {
    let line = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    line.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdirs_are_normalised_or_refused() {
        assert_eq!(clean_subdir("").unwrap(), "");
        assert_eq!(clean_subdir("./app//api/").unwrap(), "app/api");
        assert!(matches!(clean_subdir("../x"), Err(Error::Refused(m)) if m.contains("..")));
        assert!(matches!(clean_subdir("a/../../x"), Err(Error::Refused(_))));
        assert!(matches!(clean_subdir("/etc"), Err(Error::Refused(_))));
    }

    #[test]
    fn first_line_is_trimmed_and_bounded() {
        assert_eq!(first_line("\n  fix: thing  \n\nbody"), "fix: thing");
        assert_eq!(first_line(&"é".repeat(600)).chars().count(), 500);
    }
}

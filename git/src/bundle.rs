//! Turning a fetched commit's tree into a bundle, straight from the object database: no checkout,
//! so no file of the repository ever lands on disk.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use gix::bstr::ByteSlice;
use gix::object::tree::EntryKind;
use gix::ObjectId;

use crate::watch::human;
use crate::{Error, Policy, Snapshot, Source};

/// How every LFS pointer file starts.
const LFS_POINTER: &[u8] = b"version https://git-lfs.github.com/spec/v1";

/// A regular file of the tree.
struct File {
    path: String,
    id: ObjectId,
    executable: bool,
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

/// Bundles `subdir` of `commit`.
pub(crate) fn snapshot(
    repo: &gix::Repository,
    commit: ObjectId,
    subdir: &str,
    source: &Source,
    policy: &Policy,
) -> Result<Snapshot, Error> {
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
    let tree = subdir_tree(repo, &object, subdir, source)?;

    let mut files = Vec::new();
    let mut walk = Walk {
        repo,
        policy,
        source,
        bytes: 0,
        files: &mut files,
    };
    walk.tree(tree, "")?;
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let tar_gz = write_tar(repo, &files, seconds.max(0) as u64, source)?;
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

/// The id of the tree at `subdir` of `commit`.
fn subdir_tree(
    repo: &gix::Repository,
    commit: &gix::Commit<'_>,
    subdir: &str,
    source: &Source,
) -> Result<ObjectId, Error> {
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
        _ => {
            let _ = repo;
            Err(Error::Refused(format!(
                "subdir {subdir:?} is not a folder of commit {} of {}",
                commit.id, source.url
            )))
        }
    }
}

/// Collects the regular files under a tree, counting them against the policy as it goes.
struct Walk<'a> {
    repo: &'a gix::Repository,
    policy: &'a Policy,
    source: &'a Source,
    bytes: u64,
    files: &'a mut Vec<File>,
}

impl Walk<'_> {
    fn tree(&mut self, id: ObjectId, prefix: &str) -> Result<(), Error> {
        let broken = |e: &dyn std::fmt::Display| {
            Error::Remote(format!(
                "tree {id} of {} is unreadable: {e}",
                self.source.url
            ))
        };
        let tree = self.repo.find_tree(id).map_err(|e| broken(&e))?;
        let entries: Vec<(EntryKind, String, ObjectId)> = tree
            .decode()
            .map_err(|e| broken(&e))?
            .entries
            .iter()
            .map(|e| {
                (
                    e.mode.kind(),
                    format!("{prefix}{}", e.filename.to_str_lossy()),
                    e.oid.to_owned(),
                )
            })
            .collect();
        for (kind, path, id) in entries {
            match kind {
                EntryKind::Tree => self.tree(id, &format!("{path}/"))?,
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    self.file(path, id, kind == EntryKind::BlobExecutable)?
                }
                EntryKind::Link => {
                    return Err(Error::Refused(format!(
                        "{path} is a symbolic link; bundles hold regular files only"
                    )))
                }
                EntryKind::Commit if self.source.submodules => {
                    return Err(Error::Refused(format!(
                        "{path} is a submodule, and submodules are not supported yet"
                    )))
                }
                // A submodule the caller left out.
                EntryKind::Commit => {}
            }
        }
        Ok(())
    }

    fn file(&mut self, path: String, id: ObjectId, executable: bool) -> Result<(), Error> {
        if self.files.len() >= self.policy.max_files {
            return Err(Error::Refused(format!(
                "the project has more than {} files; the limit is {}",
                self.policy.max_files, self.policy.max_files
            )));
        }
        let header = self.repo.find_header(id).map_err(|e| {
            Error::Remote(format!("{path} of {} is unreadable: {e}", self.source.url))
        })?;
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
        });
        Ok(())
    }
}

/// Writes `files` as a deterministic `.tar.gz`: sorted paths, one mtime, no owners.
fn write_tar(
    repo: &gix::Repository,
    files: &[File],
    mtime: u64,
    source: &Source,
) -> Result<Vec<u8>, Error> {
    let io = |e: std::io::Error| Error::Remote(format!("cannot write the bundle: {e}"));
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for file in files {
        let blob = repo.find_blob(file.id).map_err(|e| {
            Error::Remote(format!(
                "{} of {} is unreadable: {e}",
                file.path, source.url
            ))
        })?;
        refuse_lfs(&file.path, &blob.data, source)?;
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
fn refuse_lfs(path: &str, data: &[u8], source: &Source) -> Result<(), Error> {
    let is_attributes = path == ".gitattributes" || path.ends_with("/.gitattributes");
    let routes_to_lfs = is_attributes && data.find(b"filter=lfs").is_some();
    if routes_to_lfs || data.starts_with(LFS_POINTER) {
        return Err(Error::Refused(format!(
            "{} uses Git LFS ({path}); LFS objects are not fetched — store the files in the repository",
            source.url
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

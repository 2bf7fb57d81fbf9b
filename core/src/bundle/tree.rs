//! The archive's entries as seen so far, so each symlink is resolved against the links that came
//! before it, as the file system would resolve it once unpacked.
//!
//! Checking a link's target lexically is not enough: with `a/b/c/d/up → ../../../..` already in
//! the archive, `esc → a/b/c/d/up/../../../../X` looks four levels deep but resolves above the
//! root. Here a target is walked component by component from the link's directory, following
//! every link already seen; leaving the root anywhere on the way refuses it. A link may also
//! not take the place of a directory an earlier link's target went through (that would change
//! what the earlier link resolves to), and no entry may replace or go through a link.
//!
//! Paths are interned as nodes (parent, name), so memory grows with the number of distinct
//! names, which [`Tree::new`] bounds, and never with path length times depth.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use super::BundleError;

const ROOT: u32 = 0;
/// Most links followed while resolving one target (the kernel's own limit).
const MAX_HOPS: u32 = 40;
/// Most path components walked while resolving one target, links followed included.
const MAX_STEPS: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Named by a path only: an implied parent, or a name a link's target walked through.
    Unseen,
    Dir,
    File,
    Link,
}

struct Node {
    parent: u32,
    kind: Kind,
    /// A link's target went through this node as a directory.
    traversed: bool,
    target: Option<PathBuf>,
}

pub(super) struct Tree {
    nodes: Vec<Node>,
    children: HashMap<(u32, OsString), u32>,
    max_nodes: usize,
}

impl Tree {
    /// A tree of at most `max_nodes` distinct paths (entries, their parents and the names link
    /// targets walk through).
    pub(super) fn new(max_nodes: usize) -> Tree {
        Tree {
            nodes: vec![Node {
                parent: ROOT,
                kind: Kind::Dir,
                traversed: false,
                target: None,
            }],
            children: HashMap::new(),
            max_nodes,
        }
    }

    fn child(&mut self, parent: u32, name: &OsStr) -> Result<u32, BundleError> {
        if let Some(&id) = self.children.get(&(parent, name.to_os_string())) {
            return Ok(id);
        }
        if self.nodes.len() >= self.max_nodes {
            return Err(BundleError::TooManyEntries(self.max_nodes));
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            parent,
            kind: Kind::Unseen,
            traversed: false,
            target: None,
        });
        self.children.insert((parent, name.to_os_string()), id);
        Ok(id)
    }

    /// Records the entry at `path` (already a plain relative path) of kind `kind`, refusing it
    /// if it would write through or over a link, or if it is a link that resolves outside.
    pub(super) fn admit(
        &mut self,
        path: &Path,
        kind: Kind,
        target: Option<&Path>,
    ) -> Result<(), BundleError> {
        let unsafe_entry = |why| BundleError::Unsafe(path.display().to_string(), why);
        let names: Vec<&OsStr> = path.iter().collect();
        let Some((last, parents)) = names.split_last() else {
            return Err(unsafe_entry("empty path"));
        };
        let mut at = ROOT;
        for name in parents {
            at = self.child(at, name)?;
            match self.nodes[at as usize].kind {
                Kind::Link => return Err(unsafe_entry("written through a symlink")),
                Kind::File => return Err(unsafe_entry("below a regular file")),
                Kind::Unseen | Kind::Dir => self.nodes[at as usize].kind = Kind::Dir,
            }
        }
        let dir = at;
        let node = self.child(dir, last)?;
        let was = self.nodes[node as usize].kind;
        match (kind, was) {
            (_, Kind::Link) => return Err(unsafe_entry("replaces a symlink")),
            (Kind::File, Kind::Dir) => return Err(unsafe_entry("a file replacing a directory")),
            (Kind::Dir, Kind::File) => return Err(unsafe_entry("a directory replacing a file")),
            (Kind::Link, Kind::Dir | Kind::File) => {
                return Err(unsafe_entry("a symlink replacing an entry"))
            }
            _ => {}
        }
        if kind == Kind::Link {
            let target = target.ok_or_else(|| unsafe_entry("symlink without a target"))?;
            let mut steps = MAX_STEPS;
            let mut hops = 0;
            self.resolve(dir, target, &mut steps, &mut hops)
                .map_err(unsafe_entry)?;
            if self.nodes[node as usize].traversed {
                return Err(unsafe_entry(
                    "a symlink where an earlier symlink goes through a directory",
                ));
            }
            self.nodes[node as usize].target = Some(target.to_path_buf());
        }
        self.nodes[node as usize].kind = kind;
        Ok(())
    }

    /// The node `target` names, walked from the directory `from`, following the links seen so
    /// far. Marks every node walked through as a directory.
    fn resolve(
        &mut self,
        from: u32,
        target: &Path,
        steps: &mut u32,
        hops: &mut u32,
    ) -> Result<u32, &'static str> {
        let components: Vec<Component<'_>> = target.components().collect();
        let mut at = from;
        for (i, c) in components.iter().enumerate() {
            *steps = steps
                .checked_sub(1)
                .ok_or("symlink target too long to resolve")?;
            match c {
                Component::RootDir | Component::Prefix(_) => {
                    return Err("symlink to an absolute path")
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    if at == ROOT {
                        return Err("symlink pointing outside the bundle");
                    }
                    at = self.nodes[at as usize].parent;
                }
                Component::Normal(name) => {
                    let next = self
                        .child(at, name)
                        .map_err(|_| "too many distinct paths in the archive")?;
                    at = match self.nodes[next as usize].kind {
                        Kind::Link => {
                            *hops += 1;
                            if *hops > MAX_HOPS {
                                return Err("too many levels of symlinks");
                            }
                            let link = self.nodes[next as usize].target.clone().unwrap_or_default();
                            let parent = self.nodes[next as usize].parent;
                            self.resolve(parent, &link, steps, hops)?
                        }
                        _ => next,
                    };
                }
            }
            if i + 1 < components.len() {
                self.nodes[at as usize].traversed = true;
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(t: &mut Tree, at: &str, to: &str) -> Result<(), BundleError> {
        t.admit(Path::new(at), Kind::Link, Some(Path::new(to)))
    }

    #[test]
    fn a_chain_through_an_earlier_link_is_refused() {
        let mut t = Tree::new(1000);
        link(&mut t, "a/b/c/d/up", "../../../..").unwrap();
        let err = link(&mut t, "esc", "a/b/c/d/up/../../../../X").unwrap_err();
        assert!(matches!(
            err,
            BundleError::Unsafe(_, "symlink pointing outside the bundle")
        ));
        // Written through or over a link: refused too.
        assert!(t
            .admit(Path::new("a/b/c/d/up/x"), Kind::File, None)
            .is_err());
        assert!(t.admit(Path::new("a/b/c/d/up"), Kind::File, None).is_err());
    }

    #[test]
    fn links_inside_resolve_through_each_other() {
        let mut t = Tree::new(1000);
        t.admit(Path::new("pkg/real.py"), Kind::File, None).unwrap();
        link(&mut t, "lib", "pkg").unwrap();
        link(&mut t, "deep/x/alias.py", "../../lib/real.py").unwrap();
        link(&mut t, "same", "lib/../lib/./real.py").unwrap();
        link(&mut t, "b", "c").unwrap();
        link(&mut t, "c", "pkg").unwrap();
    }

    #[test]
    fn a_later_link_cannot_redirect_an_earlier_one() {
        let mut t = Tree::new(1000);
        link(&mut t, "l", "s/../x").unwrap();
        // `s → .` would make `l` resolve to `../x`.
        assert!(link(&mut t, "s", ".").is_err());
    }

    #[test]
    fn loops_and_huge_trees_end() {
        let mut t = Tree::new(1000);
        link(&mut t, "a", "b/x").unwrap();
        link(&mut t, "b", "a").unwrap_err();
        let mut small = Tree::new(5);
        assert!(matches!(
            small.admit(Path::new("a/b/c/d/e/f"), Kind::File, None),
            Err(BundleError::TooManyEntries(5))
        ));
    }
}

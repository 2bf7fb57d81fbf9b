//! Fuzzing the bundle inspector and extractor: random archives built from a few names, `..`,
//! `.` and absolute paths, with files, directories and symlinks in any order (tar.gz and zip),
//! plus random and mutated bytes. Whatever arrives: no panic; inspect and extract agree; an
//! extraction never creates anything outside its destination; and every link an accepted
//! archive leaves resolves inside it.
//!
//! Cases come from a seeded RNG (`ANTCODE_FUZZ_SEED` replays a failure; every assertion names
//! the seed), a few hundred per run, so the file takes a few seconds.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use antcode_core::bundle::{extract, inspect, Limits};
use antcode_core::model::BundleFormat;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seed() -> u64 {
    std::env::var("ANTCODE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen())
}

#[derive(Debug, Clone)]
enum Entry {
    File(String),
    Dir(String),
    Link(String, String),
}

fn random_path(rng: &mut StdRng, link_target: bool) -> String {
    const PARTS: &[&str] = &["a", "b", "c", "up", "esc", "X", "..", ".", "main.py"];
    let depth = rng.gen_range(1..=5);
    let mut parts: Vec<&str> = (0..depth)
        .map(|_| {
            // Entry paths with `..` are refused early; keep most of them plain so the links
            // get exercised.
            if !link_target && rng.gen_bool(0.9) {
                PARTS[rng.gen_range(0..6)]
            } else {
                PARTS[rng.gen_range(0..PARTS.len())]
            }
        })
        .collect();
    if link_target && rng.gen_ratio(1, 20) {
        parts.insert(0, "");
    }
    parts.join("/")
}

fn random_entries(rng: &mut StdRng) -> Vec<Entry> {
    (0..rng.gen_range(1..12))
        .map(|_| {
            let path = random_path(rng, false);
            match rng.gen_range(0..3) {
                0 => Entry::File(path),
                1 => Entry::Dir(path),
                _ => Entry::Link(path, random_path(rng, true)),
            }
        })
        .collect()
}

fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, kind, link) = match e {
            Entry::File(p) => (p, tar::EntryType::Regular, None),
            Entry::Dir(p) => (p, tar::EntryType::Directory, None),
            Entry::Link(p, t) => (p, tar::EntryType::Symlink, Some(t)),
        };
        // Raw bytes: the tar crate's setters refuse `..`, which is what is being tested.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(t) = link {
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        let data: &[u8] = if kind == tar::EntryType::Regular {
            b"owned\n"
        } else {
            b""
        };
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for e in entries {
        // A name the writer refuses (a duplicate, say) is left out: the rest is still a zip.
        let _ = match e {
            Entry::File(p) => w
                .start_file(p.as_str(), opts)
                .and_then(|_| w.write_all(b"owned\n").map_err(Into::into)),
            Entry::Dir(p) => w.add_directory(p.as_str(), opts),
            Entry::Link(p, t) => w.add_symlink(p.as_str(), t.as_str(), opts),
        };
    }
    w.finish().unwrap().into_inner()
}

/// Every path under `dir`, relative to it (links not followed).
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out
}

/// Inspects and extracts `data`; panics (naming `what`) if they disagree, if anything appears
/// outside the destination, or if an extracted link resolves outside it.
fn check(format: BundleFormat, data: &[u8], what: &str) -> bool {
    let limits = Limits {
        max_entries: 100,
        max_unpacked_bytes: 1 << 20,
    };
    let top = tempfile::tempdir().unwrap();
    let dest = top.path().join("1/2/3/4/run");
    std::fs::create_dir_all(&dest).unwrap();
    let before = tree(top.path());
    let inspected = inspect(format, data, limits);
    let extracted = extract(format, data, None, &dest, limits);
    assert_eq!(
        inspected.is_ok(),
        extracted.is_ok(),
        "{what}: inspect {inspected:?} but extract {extracted:?}"
    );
    let outside: BTreeSet<PathBuf> = tree(top.path())
        .into_iter()
        .filter(|p| !p.starts_with("1/2/3/4/run") || p == Path::new("1/2/3/4/run"))
        .collect();
    assert_eq!(outside, before, "{what}: written outside the destination");
    if extracted.is_ok() {
        let root = dest.canonicalize().unwrap();
        for p in tree(&dest) {
            let full = dest.join(&p);
            if full.is_symlink() {
                if let Ok(real) = full.canonicalize() {
                    assert!(
                        real.starts_with(&root),
                        "{what}: {p:?} resolves to {real:?}"
                    );
                }
            }
        }
    }
    extracted.is_ok()
}

#[test]
fn random_archives_with_links_never_escape() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..400 {
        let entries = random_entries(&mut rng);
        let (format, data) = if n % 2 == 0 {
            (BundleFormat::TarGz, tar_gz(&entries))
        } else {
            (BundleFormat::Zip, zip(&entries))
        };
        let what = format!("case {n} {format:?} {entries:?} (seed {seed})");
        if check(format, &data, &what) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Both outcomes, or the generator is not reaching the checks.
    assert!(
        accepted > 20 && refused > 20,
        "{accepted} accepted, {refused} refused (seed {seed})"
    );
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let valid = [
        (
            BundleFormat::TarGz,
            tar_gz(&[
                Entry::File("main.py".into()),
                Entry::Link("l".into(), "main.py".into()),
            ]),
        ),
        (
            BundleFormat::Zip,
            zip(&[
                Entry::File("main.py".into()),
                Entry::Link("l".into(), "main.py".into()),
            ]),
        ),
    ];
    for n in 0..300 {
        let (format, mut data) = valid[n % 2].clone();
        if rng.gen_bool(0.2) {
            data = (0..rng.gen_range(0..600)).map(|_| rng.gen()).collect();
        } else {
            for _ in 0..rng.gen_range(1..8) {
                if data.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..data.len());
                match rng.gen_range(0..3) {
                    0 => data[at] = rng.gen(),
                    1 => data.truncate(at),
                    _ => data.insert(at, rng.gen()),
                }
            }
        }
        check(
            format,
            &data,
            &format!("mutated case {n} {format:?} (seed {seed})"),
        );
    }
}

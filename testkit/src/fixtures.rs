//! Inputs tests build: archives (zip and tar.gz, unsafe entry names included), a runner job, and
//! a project to hang tasks on.

use std::collections::BTreeMap;

use antcode_core::model::{BundleFormat, BundleRef, Job, Project, ProjectVersion};

/// A zip of `entries` (name, contents).
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A tar.gz whose entry names (and link targets) are written raw, so unsafe ones can be built.
pub fn tar_gz_of(entries: &[(&str, &[u8])], symlinks: &[(&str, &str)]) -> Vec<u8> {
    let files = entries.iter().map(|(name, data)| (*name, None, *data));
    let links = symlinks
        .iter()
        .map(|(name, target)| (*name, Some(*target), &b""[..]));
    tar_gz_in_order(&files.chain(links).collect::<Vec<_>>())
}

/// [`tar_gz_of`] with entries in the given order: `(name, Some(link target), _)` is a symlink,
/// `(name, None, data)` a regular file.
pub fn tar_gz_in_order(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, target, data) in entries {
        let mut h = tar::Header::new_old();
        raw_name(&mut h, name);
        h.set_size(data.len() as u64);
        match target {
            None => {
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
            }
            Some(target) => {
                let t = target.as_bytes();
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
                h.set_mode(0o777);
                h.set_entry_type(tar::EntryType::Symlink);
            }
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

fn raw_name(h: &mut tar::Header, name: &str) {
    let n = name.as_bytes();
    h.as_old_mut().name[..n.len()].copy_from_slice(n);
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, data).unwrap();
    gz.finish().unwrap()
}

/// A first attempt of a fresh run on the `default` queue, running `entrypoint` of `bundle` with
/// no arguments, environment, requirements or secrets, cold, with a 120 s timeout.
pub fn job(bundle: BundleRef, entrypoint: &str) -> Job {
    Job {
        prefer: None,
        trace: None,
        run_id: antcode_core::ids::new_id(),
        attempt: 1,
        queue: "default".into(),
        task_id: "task".into(),
        project_id: "project".into(),
        project_version: 1,
        bundle,
        entrypoint: entrypoint.into(),
        requirements: String::new(),
        python_version: None,
        args: vec![],
        env: BTreeMap::new(),
        timeout_s: 120,
        secrets: vec![],
        secret_env: Default::default(),
        warm: false,
        limits: Default::default(),
        network: Default::default(),
        params: None,
        labels: BTreeMap::new(),
        gates: BTreeMap::new(),
    }
}

/// A project called `name` with one version as of `now`, whose bundle (a `main.py`) is never
/// fetched: what store-level tests and benches create tasks under.
pub fn project(name: &str, now: i64) -> (Project, ProjectVersion) {
    let project = Project {
        id: antcode_core::ids::new_id(),
        name: name.into(),
        description: String::new(),
        current_version: 1,
        created_at: now,
        updated_at: now,
        source: None,
        sync: None,
    };
    let version = ProjectVersion {
        project_id: project.id.clone(),
        version: 1,
        bundle: BundleRef {
            key: "bundles/x.py".into(),
            sha256: "0".repeat(64),
            format: BundleFormat::Py,
            size_bytes: 1,
            file_name: Some("main.py".into()),
        },
        entrypoint: "main.py".into(),
        requirements: String::new(),
        python_version: None,
        files: vec!["main.py".into()],
        created_at: now,
        origin: None,
    };
    (project, version)
}

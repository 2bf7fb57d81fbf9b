//! The sandbox itself: what the kernel grants on this machine, and what a process started in it
//! is left with.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use antcode_runner::process::Limits;
use antcode_runner::sandbox::{self, RunSpec, Sandbox};

#[test]
fn a_sandboxed_process_has_no_privileges_and_sees_only_its_view() {
    let dir = tempfile::tempdir().unwrap();
    let report = sandbox::probe(dir.path());
    // CI machines grant every mechanism; a kernel that does not must say which.
    assert_eq!(report.summary(), "full", "{report:#?}");
    let sb = Sandbox::new(dir.path(), &report).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(dir.path().join("secret.key"), "key").unwrap();
    sb.hand_over(&work).unwrap();
    let script = "grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
                  ls /; ls ..; echo written > mine; cat ../secret.key || echo no-key";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (out, ended) = rt.block_on(async {
        let s = sb
            .spawn(&RunSpec {
                program: Path::new("/bin/sh"),
                args: &["-c".into(), script.into()],
                cwd: &work,
                env: &BTreeMap::new(),
                limits: &Limits::default(),
                venv: &work,
                work_dir: &work,
                tmp_bytes: 1 << 20,
                net: Default::default(),
                before_start: None,
                tool: None,
            })
            .unwrap();
        let mut out = String::new();
        let mut stdout = s.stdout;
        stdout.read_to_string(&mut out).unwrap();
        (out, s.wait.await.unwrap())
    });
    assert_eq!(ended.code, Some(0), "{out}");
    let (uid, _) = sb.task_ids();
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    assert_eq!(field("Uid"), uid.to_string());
    assert_eq!(field("CapEff"), "0000000000000000");
    assert_eq!(field("CapBnd"), "0000000000000000");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");
    assert!(out.contains("no-key"), "{out}");
    // The data dir holds only what the run was given.
    assert!(!out.contains("secret.key"), "{out}");
    assert_eq!(
        std::fs::read_to_string(work.join("mine")).unwrap(),
        "written\n"
    );
}

//! Real Git servers on loopback for tests: `git http-backend` behind a small HTTP/1.1 server,
//! `git daemon` for git://, `sshd` with a generated host key, and a working repository that
//! pushes to them.
//!
//! Depends on std and `tempfile` only, so that any test can include it with
//! `#[path = "…/testkit/src/git.rs"] mod servers;` without building the rest of the testkit.
//! Every `git` runs without system or user configuration (`GIT_CONFIG_NOSYSTEM`, a temporary
//! `HOME`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// `git http-backend` served over HTTP on 127.0.0.1, optionally behind Basic authentication.
pub struct GitHttp {
    root: TempDir,
    addr: SocketAddr,
    /// The `Authorization` header of each request, `""` when it had none.
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl GitHttp {
    /// Starts the server; with `auth`, every request needs `Authorization: Basic user:password`.
    pub fn start(auth: Option<(&str, &str)>) -> GitHttp {
        GitHttp::start_at("127.0.0.1:0", auth)
    }

    /// Starts the server listening on `addr` (`127.0.0.2:0`, say: any loopback address, and
    /// port 0 for a free one).
    pub fn start_at(addr: &str, auth: Option<(&str, &str)>) -> GitHttp {
        let root = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let expected = auth.map(|(user, password)| {
            format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
        });
        let shared = Arc::new((root.path().to_path_buf(), expected));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let seen = authorizations.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (shared, seen) = (shared.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared.0, shared.1.as_deref(), &seen);
                });
            }
        });
        GitHttp {
            root,
            addr,
            authorizations,
        }
    }

    /// The `Authorization` header of every request so far (`""` for none), in arrival order.
    pub fn authorizations(&self) -> Vec<String> {
        self.authorizations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The URL of the repository `name`, a bare repository directly under `root()`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The folder of the served repositories.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// `git daemon` serving every repository under a temporary folder over git://.
pub struct GitDaemon {
    root: TempDir,
    home: TempDir,
    addr: SocketAddr,
    child: Child,
}

impl GitDaemon {
    /// Starts `git daemon` on 127.0.0.1 and a free port.
    pub fn start() -> GitDaemon {
        GitDaemon::start_at("127.0.0.1", free_port())
    }

    /// Starts `git daemon` listening on `ip` (a loopback address) and `port`.
    pub fn start_at(ip: &str, port: u16) -> GitDaemon {
        let root = tempfile::tempdir().expect("temp dir");
        let home = tempfile::tempdir().expect("temp dir");
        let child = Command::new("git")
            .arg("daemon")
            .arg("--export-all")
            .arg(format!("--base-path={}", root.path().display()))
            .arg(format!("--port={port}"))
            .arg("--reuseaddr")
            .arg(format!("--listen={ip}"))
            .arg("--informative-errors")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("an IP address");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on {addr} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        GitDaemon {
            root,
            home,
            addr,
            child,
        }
    }

    /// `git://IP:PORT/<name>`, the bare repository `name` under `root()`.
    pub fn url(&self, name: &str) -> String {
        format!("git://{}/{name}", self.addr)
    }

    /// The address the daemon listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The folder of the served repositories.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Answers one request (the connection closes after it).
fn serve(
    stream: TcpStream,
    root: &Path,
    auth: Option<&str>,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(headers.get("authorization").cloned().unwrap_or_default());
    let mut out = stream;
    if let Some(expected) = auth {
        if headers.get("authorization").map(String::as_str) != Some(expected) {
            let body = "authentication required\n";
            write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                 Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
    }
    let body = read_body(&mut reader, &headers)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", &method)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(kind) = headers.get("content-type") {
        cgi.env("CONTENT_TYPE", kind);
    }
    if let Some(encoding) = headers.get("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(protocol) = headers.get("git-protocol") {
        cgi.env("GIT_PROTOCOL", protocol);
    }
    if auth.is_some() {
        cgi.env("REMOTE_USER", "tester");
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || stdin.write_all(&body));
    let mut output = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut output)?;
    let _ = feeder.join();
    child.wait()?;

    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let split = split.or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head_len, gap) = split.unwrap_or((0, 0));
    let head = String::from_utf8_lossy(&output[..head_len]).to_string();
    let content = &output[head_len + gap..];
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for header in head.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match header.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                status = value.trim().to_string()
            }
            _ => response.push_str(&format!("{header}\r\n")),
        }
    }
    write!(
        out,
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    )?;
    out.write_all(content)?;
    out.flush()
}

/// Reads a request body sent with `Content-Length` or chunked.
fn read_body(
    reader: &mut impl BufRead,
    headers: &HashMap<String, String>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            if size == 0 {
                // The trailer's closing CRLF.
                let mut end = String::new();
                reader.read_line(&mut end)?;
                break;
            }
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(body)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `sshd` on 127.0.0.1 that lets in one key as root, which then runs `git-upload-pack`.
pub struct GitSsh {
    dir: TempDir,
    root: TempDir,
    port: u16,
    child: Child,
}

impl GitSsh {
    /// Starts `/usr/sbin/sshd`, letting in `authorized_key_pub` (an OpenSSH public key line).
    pub fn start(authorized_key_pub: &str) -> GitSsh {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: the SSH tests need it (apt-get install -y openssh-server)"
        );
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::tempdir().expect("temp dir");
        let root = tempfile::tempdir().expect("temp dir");
        let host_key = dir.path().join("host_key");
        keygen(&host_key);
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, format!("{}\n", authorized_key_pub.trim()))
            .expect("write authorized_keys");
        let port = free_port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nPidFile {}\nAcceptEnv GIT_PROTOCOL\n",
                host_key.display(),
                authorized.display(),
                dir.path().join("sshd.pid").display()
            ),
        )
        .expect("write sshd_config");
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        GitSsh {
            dir,
            root,
            port,
            child,
        }
    }

    /// `ssh://root@127.0.0.1:PORT/<absolute path of the bare repository name under root()>`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "ssh://root@127.0.0.1:{}{}",
            self.port,
            self.root.path().join(name).display()
        )
    }

    /// The folder of the served repositories.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The known_hosts line of this server.
    pub fn known_hosts(&self) -> String {
        let public =
            std::fs::read_to_string(self.dir.path().join("host_key.pub")).expect("read host key");
        let mut fields = public.split_whitespace();
        let (kind, key) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        format!("[127.0.0.1]:{} {kind} {key}\n", self.port)
    }
}

impl Drop for GitSsh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new ed25519 key pair: (private key in OpenSSH PEM, public key line).
pub fn ssh_keypair() -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("key");
    keygen(&path);
    let private = std::fs::read_to_string(&path).expect("read key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("read public key");
    (private, public)
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A working repository whose `origin` is the bare repository `name` under a server's root.
pub struct Repo {
    work: TempDir,
    home: TempDir,
    bare: PathBuf,
}

impl Repo {
    /// Creates the bare repository `root/name` and an empty working repository on branch `main`.
    pub fn create(root: &Path, name: &str) -> Repo {
        let home = tempfile::tempdir().expect("temp dir");
        let work = tempfile::tempdir().expect("temp dir");
        let bare = root.join(name);
        let repo = Repo { work, home, bare };
        repo.git_in(root, &["init", "-q", "--bare", "-b", "main", name]);
        repo.git(&["init", "-q", "-b", "main", "."]);
        repo.git(&["remote", "add", "origin", &repo.bare.display().to_string()]);
        repo
    }

    /// The working tree.
    pub fn path(&self) -> &Path {
        self.work.path()
    }

    /// The bare repository the pushes go to.
    pub fn bare(&self) -> &Path {
        &self.bare
    }

    /// Writes a file (creating folders) and stages it.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        let full = self.work.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("create dirs");
        std::fs::write(&full, contents).expect("write file");
        self.git(&["add", "--", path]);
        self
    }

    /// Writes an executable file and stages it.
    pub fn write_executable(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        self.write(path, contents);
        let full = self.work.path().join(path);
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self.git(&["add", "--", path]);
        self
    }

    /// Creates a symbolic link and stages it.
    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let full = self.work.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("create dirs");
        std::os::unix::fs::symlink(target, &full).expect("symlink");
        self.git(&["add", "--", path]);
        self
    }

    /// Stages a gitlink at `path` to `commit` with no `.gitmodules` entry, as a submodule whose
    /// URL was lost.
    pub fn gitlink(&self, path: &str, commit: &str) -> &Self {
        self.git(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{commit},{path}"),
        ]);
        self
    }

    /// Stages a submodule: a gitlink at `path` to `commit`, and its `url` in `.gitmodules`. Nothing
    /// is fetched, so `url` may be anything, relative or unsafe.
    pub fn submodule(&self, path: &str, url: &str, commit: &str) -> &Self {
        self.gitlink(path, commit);
        for (key, value) in [("path", path), ("url", url)] {
            self.git(&[
                "config",
                "-f",
                ".gitmodules",
                &format!("submodule.{path}.{key}"),
                value,
            ]);
        }
        self.git(&["add", "--", ".gitmodules"]);
        self
    }

    /// Removes a file and stages that.
    pub fn remove(&self, path: &str) -> &Self {
        self.git(&["rm", "-q", "--", path]);
        self
    }

    /// Commits what is staged and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&[
            "-c",
            "user.name=Ada Lovelace",
            "-c",
            "user.email=ada@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
        ]);
        self.head()
    }

    /// The id of HEAD.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Pushes `branch` to origin.
    pub fn push(&self, branch: &str) {
        self.git(&[
            "push",
            "-q",
            "origin",
            &format!("{branch}:refs/heads/{branch}"),
        ]);
    }

    /// Force-pushes `branch` to origin.
    pub fn force_push(&self, branch: &str) {
        self.git(&[
            "push",
            "-q",
            "--force",
            "origin",
            &format!("{branch}:refs/heads/{branch}"),
        ]);
    }

    /// Creates `branch` at HEAD and switches to it.
    pub fn branch(&self, branch: &str) {
        self.git(&["checkout", "-q", "-b", branch]);
    }

    /// Switches to a new branch with no history and an empty index.
    pub fn orphan(&self, branch: &str) {
        self.git(&["checkout", "-q", "--orphan", branch]);
        self.git(&["rm", "-r", "-q", "--cached", "--ignore-unmatch", "."]);
        self.git(&["clean", "-f", "-d", "-q"]);
    }

    /// Tags HEAD (annotated when `message` is given) and pushes the tag.
    pub fn tag(&self, name: &str, message: Option<&str>) {
        match message {
            Some(message) => self.git(&[
                "-c",
                "user.name=Ada Lovelace",
                "-c",
                "user.email=ada@example.com",
                "tag",
                "-a",
                name,
                "-m",
                message,
            ]),
            None => self.git(&["tag", name]),
        };
        self.git(&["push", "-q", "origin", &format!("refs/tags/{name}")]);
    }

    /// Sets a configuration value of the bare repository (e.g. `uploadpack.allowAnySHA1InWant`).
    pub fn config_bare(&self, key: &str, value: &str) {
        self.git(&[
            "--git-dir",
            &self.bare.display().to_string(),
            "config",
            key,
            value,
        ]);
    }

    /// Runs `git args…` in the working tree and returns its stdout; panics when it fails.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(self.work.path(), args)
    }

    fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.home.path())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .expect("run git");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

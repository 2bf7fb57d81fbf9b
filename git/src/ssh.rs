//! SSH, with our own `ssh` process.
//!
//! gix would start `ssh` itself, but its only knobs are the program (`core.sshCommand`,
//! `GIT_SSH_COMMAND`) and its variant: extra arguments can only be given inside `core.sshCommand`,
//! which gix (through `gix_command`) then runs with `sh -c`, and with the shell disallowed the
//! whole string is taken as the program's name. So we start `ssh` ourselves, without a shell, with
//! the key, the known hosts and a fixed set of options, ask it to run `git-upload-pack` on the
//! server, and give its pipes to gix's `git::Connection`, which speaks the protocol over them
//! just as gix does over the `ssh` it starts.
//!
//! `ssh` connects to the vetted address, not to the name, which it would resolve again: the
//! destination is the IP address, and `HostKeyAlias` makes it look up and check the host key
//! under the URL's host name (`[host]:port` off port 22, as known_hosts writes it), with
//! `CheckHostIP=no` so that the address itself needs no known_hosts line.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use gix::protocol::transport::client::blocking_io::Transport;
use gix::protocol::transport::client::git::{blocking_io::Connection, ConnectMode};
use gix::protocol::transport::Protocol;

use crate::url::Vetted;
use crate::watch::Job;
use crate::Error;

/// Where to connect and with what.
pub(crate) struct Target<'a> {
    /// The URL and the addresses to connect to.
    pub server: &'a Vetted,
    pub private_key: &'a str,
    pub known_hosts: &'a str,
    /// A private directory for the key and known_hosts files.
    pub dir: &'a Path,
}

/// Starts `ssh … git-upload-pack '<path>'` and returns a transport over its pipes.
///
/// The process is parked in `job` so that the watcher can kill it; its stderr is collected into
/// `stderr` for error messages by the returned thread, which ends when `ssh` does.
pub(crate) fn connect(
    target: &Target<'_>,
    job: &Job,
    stderr: Arc<Mutex<String>>,
) -> Result<(Box<dyn Transport + Send>, JoinHandle<()>), Error> {
    if target.known_hosts.trim().is_empty() {
        return Err(Error::Refused(
            "an SSH key needs known_hosts lines for the server; unknown servers are refused".into(),
        ));
    }
    let (key, known_hosts) = write_secrets(target)?;
    let url = &target.server.parsed;
    let path = gix::url::expand_path::for_shell(url.path.clone());
    if path.is_empty() || path.starts_with(b"-") || path.contains(&b'\n') || path.contains(&0) {
        return Err(Error::Refused(format!(
            "{} has no usable repository path",
            url.to_bstring()
        )));
    }
    let remote_command = format!("git-upload-pack {}", quote(&String::from_utf8_lossy(&path)));
    let mut command = ssh_command(target, &key, &known_hosts);
    command.arg(remote_command);

    let mut child = command
        .spawn()
        .map_err(|e| Error::Remote(format!("cannot run ssh: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stdin = child.stdin.take().expect("stdin is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    *job.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
            let mut text = stderr.lock().unwrap_or_else(|e| e.into_inner());
            // A few KiB explain any failure; a chatty server can't fill memory.
            if text.len() < 8192 {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });

    let connection = Connection::new(
        stdout,
        stdin,
        Protocol::V2,
        path,
        None::<(&str, Option<u16>)>,
        ConnectMode::Process,
        false,
    )
    .custom_url(Some(url.to_bstring()));
    Ok((Box::new(connection), reader))
}

/// The `ssh` command line: only our key, only the given host keys, checked under the URL's host
/// name, no config file, no agent, no prompt, an environment of our own, and the first vetted
/// address as the destination.
fn ssh_command(target: &Target<'_>, key: &Path, known_hosts: &Path) -> Command {
    let mut command = Command::new("ssh");
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", target.dir)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        // The server runs protocol v2 when its sshd accepts this variable, v1 otherwise.
        .env("GIT_PROTOCOL", "version=2")
        .arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["-o", "ConnectTimeout=30", "-o", "SendEnv=GIT_PROTOCOL"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let server = target.server;
    command
        .arg("-o")
        .arg(format!(
            "HostKeyAlias={}",
            // ssh lowercases a destination name; an alias it takes as it is.
            host_key_alias(&server.host.to_ascii_lowercase(), server.port)
        ))
        .args(["-o", "CheckHostIP=no"])
        .arg("-p")
        .arg(server.port.to_string());
    // `url::vet` never returns an empty list.
    let ip = server
        .addrs
        .first()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let destination = match server.parsed.user() {
        Some(user) => format!("{user}@{ip}"),
        None => ip,
    };
    // `--` ends ssh's options: whatever the URL holds, it is a destination, not an option.
    command.arg("--").arg(destination);
    command
}

/// The name `ssh` looks the host key up under: with `HostKeyAlias` it adds no port itself, so
/// off port 22 the alias is `[host]:port`, the form known_hosts lines use there.
fn host_key_alias(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Writes the key (mode 0600, as ssh demands) and the known hosts into the private directory.
fn write_secrets(target: &Target<'_>) -> Result<(PathBuf, PathBuf), Error> {
    let key = target.dir.join("ssh-key");
    let known_hosts = target.dir.join("known-hosts");
    let mut key_text = target.private_key.trim().to_string();
    key_text.push('\n');
    let mut hosts_text = target.known_hosts.trim().to_string();
    hosts_text.push('\n');
    for (path, text) in [(&key, key_text), (&known_hosts, hosts_text)] {
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()));
        written.map_err(|e| Error::Remote(format!("cannot write the SSH key file: {e}")))?;
    }
    Ok((key, known_hosts))
}

/// Quotes `text` for the server's shell, as git does: `'…'`, with `'` and `!` escaped.
fn quote(text: &str) -> String {
    let mut quoted = String::from("'");
    for c in text.chars() {
        match c {
            '\'' | '!' => {
                quoted.push('\'');
                quoted.push('\\');
                quoted.push(c);
                quoted.push('\'');
            }
            _ => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_key_aliases_are_known_hosts_names() {
        assert_eq!(super::host_key_alias("git.example", 22), "git.example");
        assert_eq!(super::host_key_alias("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(super::host_key_alias("::1", 2222), "[::1]:2222");
    }

    #[test]
    fn quote_escapes_quotes() {
        assert_eq!(super::quote("/srv/a'b!.git"), r"'/srv/a'\''b'\!'.git'");
    }
}

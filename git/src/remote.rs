//! Talking to the server with gix: listing refs and fetching one commit into a fresh bare
//! repository that sees no configuration but ours.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use gix::bstr::ByteSlice;
use gix::credentials::helper::Action;
use gix::credentials::protocol::Outcome;
use gix::protocol::handshake::Ref;
use gix::protocol::transport::client::blocking_io::Transport;
use gix::remote::fetch::refmap::{Source as RemoteSource, SpecIndex};
use gix::remote::fetch::{RefMap, Shallow, Tags};
use gix::remote::Direction;
use gix::ObjectId;

use crate::url::Vetted;
use crate::watch::Job;
use crate::{pin, ssh, Credential, Error};

/// Configuration of the temporary repository, on top of nothing: it is opened isolated, so no
/// system, global or `GIT_*` configuration is read.
const CONFIG: &[&str] = &[
    // A public URL must not bounce to a private one after check_url approved it. Our HTTP
    // client (pin.rs) follows no redirect whatever this says; it is set for clarity.
    "http.followRedirects=false",
    "protocol.version=2",
    // Only the transports check_url allows.
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.ssh.allow=always",
    "protocol.git.allow=always",
];

/// What the caller's `reference` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The remote's HEAD.
    Head,
    /// A branch or a tag.
    Name(String),
    /// A full commit id, in lower-case hex.
    Commit(String),
}

impl Wanted {
    pub fn parse(reference: &str) -> Result<Wanted, Error> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Ok(Wanted::Head);
        }
        if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Wanted::Commit(reference.to_ascii_lowercase()));
        }
        let name = reference
            .strip_prefix("refs/heads/")
            .or_else(|| reference.strip_prefix("refs/tags/"))
            .unwrap_or(reference);
        let full = format!("refs/heads/{name}");
        let glob = name.contains(['*', '?', '[', ':']);
        if glob
            || name.starts_with('-')
            || gix::validate::reference::name(full.as_bytes().as_bstr()).is_err()
        {
            return Err(Error::Refused(format!(
                "{reference:?} is not a valid branch or tag name"
            )));
        }
        Ok(Wanted::Name(name.to_string()))
    }

    /// The fetch refspecs that find it: the branch comes first, so it wins over a same-named tag.
    fn refspecs(&self) -> Vec<String> {
        match self {
            Wanted::Head => vec!["HEAD".into()],
            Wanted::Name(name) => vec![format!("refs/heads/{name}"), format!("refs/tags/{name}")],
            Wanted::Commit(id) => vec![id.clone()],
        }
    }
}

/// A fetched commit, and the repository holding it.
pub(crate) struct Fetched {
    pub repo: gix::Repository,
    pub commit: ObjectId,
}

/// Lists the server's refs and returns the commit `wanted` names (not a full id: see `resolve`).
pub(crate) fn resolve(
    target: &Vetted,
    wanted: &Wanted,
    cred: &Credential,
    allow_private: bool,
    job: &Job,
) -> Result<String, Error> {
    let dir = tempfile::Builder::new()
        .prefix("antcode-git-")
        .tempdir()
        .map_err(|e| Error::Remote(format!("cannot create a temporary directory: {e}")))?;
    let repo = init(dir.path())?;
    let link = Link::new(target, cred, dir.path(), job, allow_private)?;
    let remote = link.remote(&repo, &wanted.refspecs())?;
    let connection = link.connect(&remote, job)?;
    let (ref_map, _) = connection
        .ref_map(gix::progress::Discard, Default::default())
        .map_err(|e| link.fail(&e))?;
    Ok(pick(&ref_map, wanted, &target.url)?.to_string())
}

/// Fetches the commit `wanted` names, depth 1, into a new bare repository at `dir`, from the
/// addresses of `target` only.
pub(crate) fn fetch(
    dir: &Path,
    target: &Vetted,
    wanted: &Wanted,
    cred: &Credential,
    allow_private: bool,
    job: &Job,
) -> Result<Fetched, Error> {
    let repo = init(dir)?;
    let link = Link::new(target, cred, dir, job, allow_private)?;
    let commit = match wanted {
        Wanted::Commit(id) => fetch_commit(&repo, &link, id, job)?,
        _ => fetch_ref(&repo, &link, wanted, job)?,
    };
    let found = repo.find_object(commit).ok().map(|o| o.kind);
    if found != Some(gix::object::Kind::Commit) {
        return Err(Error::Refused(format!(
            "{} does not name a commit of {}",
            describe(wanted),
            target.url
        )));
    }
    Ok(Fetched { repo, commit })
}

/// Fetches a branch, a tag or HEAD: one connection lists the refs and then fetches the commit.
fn fetch_ref(
    repo: &gix::Repository,
    link: &Link,
    wanted: &Wanted,
    job: &Job,
) -> Result<ObjectId, Error> {
    let remote = link.remote(repo, &wanted.refspecs())?;
    let prepare = link
        .connect(&remote, job)?
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| link.fail(&e))?;
    let commit = pick(prepare.ref_map(), wanted, &link.url)?;
    prepare
        .with_shallow(depth_one())
        .receive(gix::progress::Discard, &job.interrupt)
        .map_err(|e| link.fail(&e))?;
    Ok(commit)
}

/// Fetches a commit by id. Servers that refuse ids they don't advertise (git before protocol v2
/// without `uploadpack.allowReachableSHA1InWant`) get a second, full fetch of all branches and
/// tags, still under the size cap, where the commit is looked up.
fn fetch_commit(
    repo: &gix::Repository,
    link: &Link,
    id: &str,
    job: &Job,
) -> Result<ObjectId, Error> {
    let commit = ObjectId::from_hex(id.as_bytes())
        .map_err(|_| Error::Refused(format!("{id:?} is not a commit id")))?;
    let remote = link.remote(repo, &[id.to_string()])?;
    let direct = link
        .connect(&remote, job)?
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| link.fail(&e))
        .and_then(|prepare| {
            prepare
                .with_shallow(depth_one())
                .receive(gix::progress::Discard, &job.interrupt)
                .map_err(|e| link.fail(&e))
        });
    match direct {
        Ok(_) => return Ok(commit),
        // Timeouts, size caps and rejected credentials won't change with another request.
        Err(Error::Remote(_)) if !job.interrupted() => {}
        Err(e) => return Err(e),
    }
    job.reap_child();
    let all = [
        "+refs/heads/*:refs/heads/*".to_string(),
        "+refs/tags/*:refs/tags/*".to_string(),
    ];
    let remote = link.remote(repo, &all)?;
    link.connect(&remote, job)?
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| link.fail(&e))?
        .receive(gix::progress::Discard, &job.interrupt)
        .map_err(|e| link.fail(&e))?;
    if !repo.has_object(commit) {
        return Err(Error::Refused(format!(
            "commit {id} is not in any branch or tag of {}",
            link.url
        )));
    }
    Ok(commit)
}

fn depth_one() -> Shallow {
    Shallow::DepthAtRemote(NonZeroU32::MIN)
}

/// The commit `wanted` names among the refs the server listed.
fn pick(ref_map: &RefMap, wanted: &Wanted, url: &str) -> Result<ObjectId, Error> {
    let mut found: Vec<(usize, &Ref)> = ref_map
        .mappings
        .iter()
        .filter_map(|m| match (&m.remote, m.spec_index) {
            (RemoteSource::Ref(r), SpecIndex::ExplicitInRemote(i)) => Some((i, r)),
            _ => None,
        })
        .collect();
    found.sort_by_key(|(i, _)| *i);
    let Some((_, found)) = found.first() else {
        return Err(Error::Refused(match wanted {
            Wanted::Name(name) => format!("ref {name:?} is neither a branch nor a tag of {url}"),
            _ => format!("{url} has no HEAD branch"),
        }));
    };
    match found {
        Ref::Direct { object, .. } | Ref::Peeled { object, .. } | Ref::Symbolic { object, .. } => {
            Ok(*object)
        }
        Ref::Unborn { .. } => Err(Error::Refused(format!("{url} has no commits yet"))),
    }
}

fn describe(wanted: &Wanted) -> String {
    match wanted {
        Wanted::Head => "HEAD".into(),
        Wanted::Name(name) => format!("ref {name:?}"),
        Wanted::Commit(id) => id.clone(),
    }
}

/// Creates the private bare repository, configured by `CONFIG` only.
fn init(dir: &Path) -> Result<gix::Repository, Error> {
    let open = gix::open::Options::isolated()
        .config_overrides(CONFIG.iter().copied())
        .strict_config(true);
    let repo = gix::ThreadSafeRepository::init_opts(
        dir,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        open,
    )
    .map_err(|e| Error::Remote(format!("cannot create the temporary repository: {e}")))?;
    Ok(repo.to_thread_local())
}

/// How to reach one server: its URL and vetted addresses, the credential, and what error text
/// must not show.
struct Link {
    url: String,
    target: Vetted,
    cred: Credential,
    /// The private directory where an SSH key and known_hosts are written.
    scratch: std::path::PathBuf,
    /// What the `ssh` process printed on stderr, for error messages.
    ssh_stderr: Arc<Mutex<String>>,
    /// The thread that collects it.
    ssh_reader: Mutex<Option<JoinHandle<()>>>,
    job: Job,
}

impl Link {
    fn new(
        target: &Vetted,
        cred: &Credential,
        scratch: &Path,
        job: &Job,
        allow_private: bool,
    ) -> Result<Link, Error> {
        let parsed = &target.parsed;
        let is_ssh = parsed.scheme == gix::url::Scheme::Ssh;
        let is_http = matches!(
            parsed.scheme,
            gix::url::Scheme::Https | gix::url::Scheme::Http
        );
        match cred {
            Credential::Token { .. } if !is_http => {
                return Err(Error::Refused(format!(
                    "a token works with https:// URLs only, not {}",
                    target.url
                )))
            }
            Credential::SshKey { .. } if !is_ssh => {
                return Err(Error::Refused(format!(
                    "an SSH key works with ssh:// or user@host:path URLs only, not {}",
                    target.url
                )))
            }
            Credential::Token { .. }
                if parsed.scheme == gix::url::Scheme::Http && !allow_private =>
            {
                return Err(Error::Refused(format!(
                    "a token is sent over https:// only, not in clear text to {}",
                    target.url
                )))
            }
            Credential::None if is_ssh => {
                return Err(Error::Auth(format!(
                    "{} needs an SSH key credential",
                    target.url
                )))
            }
            _ => {}
        }
        Ok(Link {
            url: target.url.clone(),
            target: target.clone(),
            cred: cred.clone(),
            scratch: scratch.to_path_buf(),
            ssh_stderr: Arc::default(),
            ssh_reader: Mutex::default(),
            job: job.clone(),
        })
    }

    /// A remote that fetches `refspecs` and nothing else: no tags follow along.
    fn remote<'repo>(
        &self,
        repo: &'repo gix::Repository,
        refspecs: &[String],
    ) -> Result<gix::Remote<'repo>, Error> {
        let remote = repo
            .remote_at_without_url_rewrite(self.target.parsed.clone())
            .map_err(|e| self.fail(&e))?;
        let remote = remote
            .with_refspecs(refspecs.iter().map(String::as_str), Direction::Fetch)
            .map_err(|e| Error::Refused(format!("{refspecs:?} can't be fetched: {e}")))?;
        Ok(remote.with_fetch_tags(Tags::None))
    }

    /// Opens a connection to the vetted addresses, with a transport of ours that gix speaks the
    /// protocol over: see `pin` for HTTP(S) and git://, `ssh` for SSH.
    // The credential closure's error type is gix's, as its signature demands.
    #[allow(clippy::result_large_err)]
    fn connect<'r, 'repo>(
        &self,
        remote: &'r gix::Remote<'repo>,
        job: &Job,
    ) -> Result<gix::remote::Connection<'r, 'static, 'repo, Box<dyn Transport + Send>>, Error> {
        let transport = match &self.cred {
            Credential::SshKey {
                private_key,
                known_hosts,
            } => {
                let target = ssh::Target {
                    server: &self.target,
                    private_key,
                    known_hosts,
                    dir: &self.scratch,
                };
                let (transport, reader) = ssh::connect(&target, job, self.ssh_stderr.clone())?;
                *self.ssh_reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
                transport
            }
            _ if self.target.parsed.scheme == gix::url::Scheme::Git => {
                pin::git(&self.target, job.remaining())?
            }
            _ => pin::http(&self.target, job.remaining())?,
        };
        let connection = remote.to_connection_with_transport(transport);
        let account = match &self.cred {
            Credential::Token { username, token } => Some(gix::sec::identity::Account {
                username: if username.is_empty() {
                    "x-access-token".into()
                } else {
                    username.clone()
                },
                password: token.clone(),
                oauth_refresh_token: None,
            }),
            _ => None,
        };
        // Only this closure answers for credentials: no helper program, no prompt.
        Ok(
            connection.with_credentials(move |action| match (action, &account) {
                (Action::Get(context), Some(account)) => Ok(Some(Outcome {
                    identity: account.clone(),
                    next: context.into(),
                })),
                _ => Ok(None),
            }),
        )
    }

    /// Turns a gix error into ours: one line, sorted by whose fault it is, without secrets.
    fn fail(&self, err: &(dyn std::error::Error + 'static)) -> Error {
        let text = scrub(&chain(err), &self.cred);
        // ssh explains itself on stderr ("Host key verification failed."): let it finish.
        let reader = self
            .ssh_reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(reader) = reader {
            self.job.reap_child();
            let _ = reader.join();
        }
        let stderr = self
            .ssh_stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let ssh_said = scrub(
            stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or_default(),
            &self.cred,
        );
        let url = &self.url;
        if ssh_said.contains("Host key verification failed") {
            return Error::Auth(format!(
                "the SSH host key of {url} does not match the known_hosts given"
            ));
        }
        if ssh_said.contains("Permission denied") {
            return Error::Auth(format!("{url} rejected the SSH key ({ssh_said})"));
        }
        if text.contains("No credentials were returned") {
            return Error::Auth(format!("{url} requires credentials, and none were given"));
        }
        if text.contains("were not accepted")
            || text.contains("HTTP status 401")
            || text.contains("HTTP status 403")
        {
            return Error::Auth(format!("{url} rejected the credentials"));
        }
        if ssh_said.is_empty() {
            Error::Remote(format!("fetching from {url} failed: {text}"))
        } else {
            Error::Remote(format!(
                "fetching from {url} failed: {text} (ssh: {ssh_said})"
            ))
        }
    }
}

impl Job {
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupt.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The messages of `err` and its sources on one line, repeats dropped.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let message = e.to_string().replace(['\n', '\r'], " ");
        if !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Removes the secret of `cred` from `text`.
pub(crate) fn scrub(text: &str, cred: &Credential) -> String {
    let secrets: Vec<&str> = match cred {
        Credential::Token { token, .. } => vec![token.as_str()],
        Credential::SshKey { private_key, .. } => {
            private_key.lines().filter(|l| l.len() >= 16).collect()
        }
        Credential::None => Vec::new(),
    };
    let mut text = text.to_string();
    for secret in secrets.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    text
}

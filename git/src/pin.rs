//! Connections to the addresses [`url::vet`](crate::url::vet) approved, and to no other.
//!
//! gix would resolve the host again when it connects, and a DNS server may answer differently
//! the second time (DNS rebinding): a name that showed a public address to the check could then
//! lead the fetch to a private one. So we build the transports ourselves and hand them to gix,
//! as `ssh.rs` does for SSH:
//!
//! - HTTP(S): [`PinnedHttp`] implements gix's `Http` trait over a `reqwest` client whose DNS
//!   knows only the vetted addresses of the URL's host (and refuses every other name), with no
//!   proxy, no redirects and bounded time. TLS still checks the certificate against the URL's host
//!   name. gix's own reqwest client offers no such hook.
//! - git://: a `TcpStream` we open to a vetted address, with read and write timeouts, under gix's
//!   git-protocol connection.

use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gix::protocol::transport::client::blocking_io::http::{
    self, GetResponse, Http, PostBodyDataKind, PostResponse,
};
use gix::protocol::transport::client::blocking_io::Transport;
use gix::protocol::transport::client::git::{blocking_io::Connection, ConnectMode};
use gix::protocol::transport::Protocol;
use reqwest_gix as reqwest;

use crate::url::Vetted;
use crate::Error;

/// The longest wait for a TCP connection, within the time left.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// An HTTP(S) transport to `target`, connecting to its vetted addresses only; `timeout` bounds
/// each request, from connecting to the end of its response.
pub(crate) fn http(target: &Vetted, timeout: Duration) -> Result<Box<dyn Transport + Send>, Error> {
    let http = PinnedHttp::new(target, timeout)?;
    Ok(Box::new(http::Transport::new_http(
        http,
        target.parsed.clone(),
        Protocol::V2,
        false,
    )))
}

/// A git:// transport over a socket to the first vetted address of `target` that accepts;
/// reads and writes that stall longer than `timeout` fail.
pub(crate) fn git(target: &Vetted, timeout: Duration) -> Result<Box<dyn Transport + Send>, Error> {
    let url = &target.parsed;
    if url.user().is_some() {
        return Err(Error::Refused(format!(
            "{} names a user, which git:// can't send",
            target.url
        )));
    }
    let failed = |e: io::Error| Error::Remote(format!("fetching from {} failed: {e}", target.url));
    let read = connect(&target.addrs, timeout).map_err(failed)?;
    read.set_read_timeout(Some(timeout)).map_err(failed)?;
    read.set_write_timeout(Some(timeout)).map_err(failed)?;
    let write = read.try_clone().map_err(failed)?;
    let connection = Connection::new(
        read,
        write,
        Protocol::V2,
        url.path.clone(),
        Some((url.host().unwrap_or_default().to_string(), url.port)),
        ConnectMode::Daemon,
        false,
    )
    .custom_url(Some(url.to_bstring()));
    Ok(Box::new(connection))
}

/// A TCP connection to the first of `addrs` that accepts one.
fn connect(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT.min(timeout)) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(last)
}

/// gix's `Http` over a `reqwest` client pinned to the vetted addresses.
///
/// A request is sent when its response is first read: gix writes the body of a POST first, and
/// the trait hands out the writer and the readers together. Bodies are small (a fetch's wants
/// and haves), so a POST's is collected in memory and sent with a length.
pub(crate) struct PinnedHttp {
    client: reqwest::blocking::Client,
}

impl PinnedHttp {
    pub(crate) fn new(target: &Vetted, timeout: Duration) -> Result<PinnedHttp, Error> {
        install_crypto_provider();
        let mut builder = reqwest::blocking::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .dns_resolver(Arc::new(NoDns));
        // An IP address in the URL is connected to as it is: no resolver is asked.
        if target.host.parse::<IpAddr>().is_err() {
            // The name as reqwest will look it up: its URL parser lowercases (and punycodes) it.
            let name = reqwest::Url::parse(&target.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| target.host.to_ascii_lowercase());
            builder = builder.resolve_to_addrs(&name, &target.addrs);
        }
        let client = builder.build().map_err(|e| {
            Error::Remote(format!(
                "cannot create the HTTP client for {}: {e}",
                target.url
            ))
        })?;
        Ok(PinnedHttp { client })
    }

    fn exchange(
        &self,
        request: reqwest::blocking::RequestBuilder,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        upload: Option<Arc<Mutex<Vec<u8>>>>,
    ) -> Shared {
        let mut map = reqwest::header::HeaderMap::new();
        for line in headers {
            let Some((name, value)) = line.as_ref().split_once(':') else {
                continue;
            };
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_str(name),
                reqwest::header::HeaderValue::try_from(value.trim()),
            ) {
                map.append(name, value);
            }
        }
        Arc::new(Mutex::new(Exchange {
            request: Some(request.headers(map)),
            upload,
            headers: None,
            body: None,
        }))
    }
}

/// A DNS resolver that resolves nothing: only the pinned name, answered before it is asked, can
/// be connected to.
struct NoDns;

impl reqwest::dns::Resolve for NoDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let refused = format!("{} is not the vetted host of this fetch", name.as_str());
        Box::pin(std::future::ready(Err(refused.into())))
    }
}

impl Http for PinnedHttp {
    type Headers = Headers;
    type ResponseBody = Body;
    type PostBody = Upload;

    fn get(
        &mut self,
        url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<GetResponse<Headers, Body>, http::Error> {
        let exchange = self.exchange(self.client.get(url), headers, None);
        Ok(GetResponse {
            headers: Headers::new(exchange.clone()),
            body: Body::new(exchange),
        })
    }

    fn post(
        &mut self,
        url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        _body: PostBodyDataKind,
    ) -> Result<PostResponse<Headers, Body, Upload>, http::Error> {
        let upload = Arc::new(Mutex::new(Vec::new()));
        let exchange = self.exchange(self.client.post(url), headers, Some(upload.clone()));
        Ok(PostResponse {
            post_body: Upload(upload),
            headers: Headers::new(exchange.clone()),
            body: Body::new(exchange),
        })
    }

    /// gix passes the repository's `http.*` settings; ours are fixed (and the repository has
    /// none but `http.followRedirects=false`).
    fn configure(
        &mut self,
        _config: &dyn std::any::Any,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(())
    }
}

type Shared = Arc<Mutex<Exchange>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request and its response, shared by the readers of its headers and body.
struct Exchange {
    /// Until it is sent.
    request: Option<reqwest::blocking::RequestBuilder>,
    /// A POST's body, as gix wrote it.
    upload: Option<Arc<Mutex<Vec<u8>>>>,
    /// Once sent: the response's header lines, or why there is no usable response.
    headers: Option<io::Result<Vec<u8>>>,
    /// Once sent: a successful response, its body still to read.
    body: Option<reqwest::blocking::Response>,
}

impl Exchange {
    /// Sends the request unless it was sent already. As gix's `Http` contract asks, a 401 is a
    /// `PermissionDenied` error (gix then asks for credentials), any other failure status an error
    /// too; a redirect is a failure, as it is not followed.
    fn send(&mut self) {
        let Some(mut request) = self.request.take() else {
            return;
        };
        if let Some(upload) = &self.upload {
            request = request.body(std::mem::take(&mut *lock(upload)));
        }
        let response = match request.send() {
            Ok(response) => response,
            Err(e) => {
                self.headers = Some(Err(io::Error::other(e)));
                return;
            }
        };
        let status = response.status();
        if !status.is_success() {
            let kind = if status == reqwest::StatusCode::UNAUTHORIZED {
                io::ErrorKind::PermissionDenied
            } else if status.is_server_error() {
                io::ErrorKind::ConnectionAborted
            } else {
                io::ErrorKind::Other
            };
            let why = if status.is_redirection() {
                " (redirects are not followed)"
            } else {
                ""
            };
            let message = format!("Received HTTP status {}{why}", status.as_str());
            self.headers = Some(Err(io::Error::new(kind, message)));
            return;
        }
        let mut lines = Vec::new();
        for (name, value) in response.headers() {
            lines.extend_from_slice(name.as_str().as_bytes());
            lines.push(b':');
            lines.extend_from_slice(value.as_bytes());
            lines.push(b'\n');
        }
        self.headers = Some(Ok(lines));
        self.body = Some(response);
    }
}

/// The writer of a POST's body.
pub(crate) struct Upload(Arc<Mutex<Vec<u8>>>);

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The response's headers, `name:value` a line; reading them sends the request.
pub(crate) struct Headers {
    exchange: Shared,
    lines: Option<Cursor<Vec<u8>>>,
}

impl Headers {
    fn new(exchange: Shared) -> Headers {
        Headers {
            exchange,
            lines: None,
        }
    }

    fn lines(&mut self) -> io::Result<&mut Cursor<Vec<u8>>> {
        if self.lines.is_none() {
            let got = {
                let mut exchange = lock(&self.exchange);
                exchange.send();
                exchange.headers.take().unwrap_or_else(|| Ok(Vec::new()))
            };
            self.lines = Some(Cursor::new(got?));
        }
        Ok(self.lines.get_or_insert_with(Cursor::default))
    }
}

impl Read for Headers {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lines()?.read(buf)
    }
}

impl BufRead for Headers {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.lines()?.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Some(lines) = &mut self.lines {
            lines.consume(amount);
        }
    }
}

/// The response's body; empty when the request failed (its headers carry the error). Reading
/// it sends the request if the headers were not read first.
pub(crate) struct Body {
    exchange: Option<Shared>,
    response: Option<BufReader<reqwest::blocking::Response>>,
}

impl Body {
    fn new(exchange: Shared) -> Body {
        Body {
            exchange: Some(exchange),
            response: None,
        }
    }

    fn response(&mut self) -> Option<&mut BufReader<reqwest::blocking::Response>> {
        if let Some(exchange) = self.exchange.take() {
            let mut exchange = lock(&exchange);
            exchange.send();
            self.response = exchange.body.take().map(BufReader::new);
        }
        self.response.as_mut()
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.response() {
            Some(response) => response.read(buf),
            None => Ok(0),
        }
    }
}

impl BufRead for Body {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self.response() {
            Some(response) => response.fill_buf(),
            None => Ok(&[]),
        }
    }

    fn consume(&mut self, amount: usize) {
        if let Some(response) = &mut self.response {
            response.consume(amount);
        }
    }
}

/// Makes ring the process's rustls provider unless the application chose one already: reqwest
/// is built with rustls but without a provider of its own (see Cargo.toml).
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use gix::protocol::transport::client::blocking_io::Transport;
    use gix::protocol::transport::Service;

    use super::*;
    use crate::servers::{GitDaemon, GitHttp, Repo};
    use crate::{url, Policy};

    const TIMEOUT: Duration = Duration::from_secs(20);

    /// `url` as vetted, but with `addrs` instead of what its host resolves to.
    fn pinned(url: &str, addrs: &[SocketAddr]) -> Vetted {
        let allow = Policy {
            allow_private: true,
            ..Policy::default()
        };
        Vetted {
            addrs: addrs.to_vec(),
            ..url::vet(url, &allow).unwrap()
        }
    }

    fn pushed(root: &std::path::Path) {
        let repo = Repo::create(root, "app.git");
        repo.write("a.txt", "a\n");
        repo.commit("First");
        repo.push("main");
    }

    #[test]
    fn http_goes_to_the_vetted_address_not_where_the_name_points() {
        // Two servers on the same port: `localhost` points at the first (127.0.0.1), the
        // vetted address is the second's (127.0.0.2). Only the second has the repository.
        let vetted = GitHttp::start_at("127.0.0.2:0", None);
        pushed(vetted.root());
        let port = vetted.addr().port();
        let named = GitHttp::start_at(&format!("127.0.0.1:{port}"), None);
        let url = format!("http://localhost:{port}/app.git");

        let target = pinned(&url, &[vetted.addr()]);
        let mut transport = http(&target, TIMEOUT).unwrap();
        transport
            .handshake(Service::UploadPack, &[])
            .expect("the vetted server has the repository");
        assert!(!vetted.authorizations().is_empty());
        assert!(named.authorizations().is_empty(), "the name was resolved");

        // Pinned to the other address, the same URL reaches the other server (which has no
        // such repository): the address decides, not the name.
        let target = pinned(&url, &[named.addr()]);
        let mut transport = http(&target, TIMEOUT).unwrap();
        assert!(transport.handshake(Service::UploadPack, &[]).is_err());
        assert_eq!(named.authorizations().len(), 1);
    }

    #[test]
    fn http_resolves_no_other_name() {
        let server = GitHttp::start(None);
        let port = server.addr().port();
        let target = pinned(&format!("http://localhost:{port}/"), &[server.addr()]);
        let mut client = PinnedHttp::new(&target, TIMEOUT).unwrap();
        let other = format!("http://vm:{port}/app.git/info/refs");
        let response = client.get(&other, &other, ["Accept: */*"]).unwrap();
        let err = std::io::read_to_string(response.headers).unwrap_err();
        assert!(
            format!("{:?}", err).contains("not the vetted host"),
            "{err:?}"
        );
        assert!(server.authorizations().is_empty());
    }

    #[test]
    fn git_protocol_goes_to_the_vetted_address_not_where_the_name_points() {
        let vetted = GitDaemon::start_at("127.0.0.2", free_port("127.0.0.2"));
        pushed(vetted.root());
        let port = vetted.addr().port();
        let _named = GitDaemon::start_at("127.0.0.1", port);
        let url = format!("git://localhost:{port}/app.git");

        let target = pinned(&url, &[vetted.addr()]);
        let mut transport = git(&target, TIMEOUT).unwrap();
        transport
            .handshake(Service::UploadPack, &[])
            .expect("the vetted daemon has the repository");

        let target = pinned(&url, &[SocketAddr::from(([127, 0, 0, 1], port))]);
        let mut transport = git(&target, TIMEOUT).unwrap();
        assert!(transport.handshake(Service::UploadPack, &[]).is_err());
    }

    #[test]
    fn git_protocol_tries_each_vetted_address() {
        let daemon = GitDaemon::start();
        pushed(daemon.root());
        let closed = SocketAddr::from(([127, 0, 0, 3], free_port("127.0.0.3")));
        let target = pinned(&daemon.url("app.git"), &[closed, daemon.addr()]);
        let mut transport = git(&target, TIMEOUT).unwrap();
        transport.handshake(Service::UploadPack, &[]).unwrap();
    }

    fn free_port(ip: &str) -> u16 {
        std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

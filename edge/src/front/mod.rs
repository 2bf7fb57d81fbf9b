//! The Pingora front: terminates TLS on the edge's port, admits requests ([`gate`]: identity,
//! rate limits, request-size bound), answers `Lease` itself ([`server`], [`inline`]), and
//! proxies the other worker calls to the internal worker service (h2c on loopback) and `/api/*`
//! to control ([`proxy`]).
//!
//! It runs on a thread of its own with its own tokio runtime, and Pingora's listening service is
//! driven directly (not through `pingora::server::Server`): that lets it take the listener the
//! caller already bound (through Pingora's table of inherited listening fds) and stop within a
//! bound we choose, where `Server` sleeps whole-second grace periods and `run_forever` ends the
//! process. The thread stops when [`Front::stop`] is awaited or when the [`Front`] is dropped
//! (say, by a test that panicked), so it never outlives its owner by more than the grace period.

mod gate;
mod inline;
mod proxy;
mod reply;
mod server;
mod tls;

use std::os::fd::IntoRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::Fds;
use pingora::services::listening::Service as Listening;
use pingora::services::Service as _;
use tokio::sync::{oneshot, watch};

pub use proxy::{FrontApp, FRONT_HEADER, PEER_HEADER};
pub use tls::settings as tls_settings;
pub use tls::TlsError;

/// Worker threads of the front's runtime.
const THREADS: usize = 2;
/// Pingora's buffers under TLS on each connection: none. The read buffer's default, 64 KiB, and
/// the write buffer's, 1,460 bytes, are held for the connection's life, and most connections are
/// idle long-polls; rustls buffers both ways anyway (as under tonic). bench-edge: 77 → 68 KB per
/// idle runner with a 16 KiB read buffer, 60 KB with none, leases/s unchanged within noise.
const L4_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: Some(0),
};
/// How long the runtime may take to drop what is left after the grace period.
const HARD_STOP: Duration = Duration::from_millis(250);

/// A running front. Dropping it stops it too (without waiting).
pub struct Front {
    stop: watch::Sender<bool>,
    exited: Option<oneshot::Receiver<()>>,
    grace: Duration,
}

impl Front {
    /// Starts serving on `listener` (already bound) on a thread of its own.
    pub fn start(
        listener: std::net::TcpListener,
        tls: pingora::listeners::tls::TlsSettings,
        app: FrontApp,
        grace: Duration,
    ) -> std::io::Result<Front> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let conf = Arc::new(ServerConf {
            threads: THREADS,
            ..ServerConf::default()
        });
        let server = server::Counted::new(server::FrontServer::new(&conf, app));
        let in_flight = server.in_flight();
        let open = server.open();
        let mut service = Listening::new("antcode-edge".to_string(), server);
        service.add_listener(
            ListenerConfig::tcp(addr.clone())
                .tls(tls)
                .l4_buffer(L4_BUFFERS),
        );
        // Pingora looks listening sockets up by address in this table before binding itself.
        let mut fds = Fds::new();
        fds.add(addr, listener.into_raw_fd());
        let fds = Arc::new(parking_lot::Mutex::new(fds));

        let (stop, stopped) = watch::channel(false);
        let (exit_tx, exited) = oneshot::channel();
        std::thread::Builder::new()
            .name("edge-front".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(THREADS)
                    .thread_name("edge-front")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "edge front: cannot start its runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Returns once the stop signal closed the listener.
                    service.start_service(Some(fds), stopped, 1).await;
                    // Answers already on their way (long-polls the service is answering
                    // empty) get until the grace period ends, and so do the connections that
                    // still have to write them out.
                    let deadline = Instant::now() + grace;
                    let busy = || {
                        in_flight.load(Ordering::Acquire) > 0 || open.load(Ordering::Acquire) > 0
                    };
                    while busy() && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
                // Whatever is still open (idle connections, calls past the grace) is dropped.
                runtime.shutdown_timeout(HARD_STOP);
                let _ = exit_tx.send(());
            })?;
        Ok(Front {
            stop,
            exited: Some(exited),
            grace,
        })
    }

    /// Resolves if the front's thread ended by itself (it failed).
    pub async fn failed(&mut self) {
        match self.exited.as_mut() {
            Some(exited) => {
                let _ = exited.await;
                self.exited = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Stops accepting, lets calls in flight finish within the grace period, closes the rest;
    /// returns when the front's thread is done (bounded).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(exited) = self.exited.take() {
            let bound = self.grace + HARD_STOP + Duration::from_secs(2);
            if tokio::time::timeout(bound, exited).await.is_err() {
                tracing::warn!("edge front: still stopping after {bound:?}; leaving it behind");
            }
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

//! The shutdown signal every plane's `run(config, shutdown)` watches.
//!
//! A plain `CancellationToken`: cloning it is cheap, child tokens let `antcode up` stop one
//! plane without the others, and `cancelled().await` composes with `tokio::select!`.
//! [`Signals`] adds the second stop: the first SIGINT/SIGTERM asks for a graceful stop (a
//! runner drains), the second cuts the grace period short.

pub type Shutdown = tokio_util::sync::CancellationToken;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, whichever comes first.
pub async fn os_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A process's two stop requests: `stop` (stop gracefully, within the grace period) and
/// `hurry` (end the grace period now).
#[derive(Debug, Clone, Default)]
pub struct Signals {
    pub stop: Shutdown,
    pub hurry: Shutdown,
}

impl Signals {
    /// Tokens nothing cancels but the caller (tests, embedders).
    pub fn new() -> Signals {
        Signals::default()
    }

    /// Tokens driven by the process's signals: the first SIGINT or SIGTERM cancels `stop`, the
    /// second `hurry`. Must be called inside a Tokio runtime.
    pub fn from_os() -> Signals {
        let signals = Signals::new();
        let s = signals.clone();
        tokio::spawn(async move {
            os_signal().await;
            tracing::info!("signal received: stopping gracefully (a second signal stops at once)");
            s.stop.cancel();
            os_signal().await;
            tracing::info!("second signal received: ending the grace period now");
            s.hurry.cancel();
        });
        signals
    }
}

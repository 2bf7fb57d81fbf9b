//! The shutdown signal every plane's `run(config, shutdown)` watches.
//!
//! A plain `CancellationToken`: cloning it is cheap, child tokens let `antcode up` stop one
//! plane without the others, and `cancelled().await` composes with `tokio::select!`.

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

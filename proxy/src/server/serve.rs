//! The accept loop. `axum::serve` would do, except that it gives no way to
//! bound how long a client may take to send its request headers (hyper's
//! `header_read_timeout` needs a timer it does not set), so a client trickling
//! a header a byte at a time could hold a connection forever.
//!
//! Shutdown works as in `axum::serve`: once `shutdown` resolves the listener
//! is closed (new connections are refused), every open connection finishes
//! the request it is serving and closes, and `serve` returns when the last one
//! has.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Limits applied to every client connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// From the connection's start (or the end of its previous request) to the
    /// end of the next request's headers.
    pub header_read_timeout: Duration,
}

pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    // Dropping the sender tells every connection to shut down gracefully;
    // each connection holds a clone of `open`, so `closed()` on its sender
    // resolves once the last connection is done.
    let (stop, stopping) = watch::channel(());
    let (open_tx, open) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        // axum's `Listener` waits out failed accepts (a client that went away,
        // or the process out of file descriptors) instead of returning them.
        let (tcp, _remote) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let connection = serve_connection(tcp, app.clone(), limits, stopping.clone());
        let open = open.clone();
        tokio::spawn(async move {
            connection.await;
            drop(open);
        });
    }
    drop(listener);
    drop(stop);
    drop(open);
    open_tx.closed().await;
}

async fn serve_connection(
    tcp: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<()>,
) {
    // Without TCP_NODELAY, Nagle's algorithm holds back the small trailing
    // writes of a stream (the last SSE events) for tens of milliseconds.
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::warn!("cannot set TCP_NODELAY on a client connection: {err}");
    }
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let service = TowerToHyperService::new(app);
    let mut connection = pin!(builder.serve_connection_with_upgrades(TokioIo::new(tcp), service));
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(err) = served {
                tracing::debug!("client connection ended with an error: {err}");
            }
            return;
        }
        // An error means the sender is gone: that is the shutdown signal too.
        _ = stopping.changed() => connection.as_mut().graceful_shutdown(),
    }
    if let Err(err) = connection.await {
        tracing::debug!("client connection ended with an error: {err}");
    }
}

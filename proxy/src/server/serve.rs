//! The accept loop. `axum::serve` would do, except that it gives no way to
//! bound how long a client may take to send its request headers (hyper's
//! `header_read_timeout` needs a timer it does not set), so a client trickling
//! a header a byte at a time could hold a connection forever.
//!
//! Shutdown is hyper-util's `GracefulShutdown`: once `shutdown` resolves the
//! listener is closed (new connections are refused), every open connection
//! finishes the request it is serving and closes, and `serve` returns when the
//! last one has. The caller bounds that wait with the grace period; requests
//! still running when it ends are dropped with their connections, and their
//! outcomes record the client as gone (499).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

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
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // axum's `Listener` waits out failed accepts (a client that went away,
        // or the process out of file descriptors) instead of returning them.
        let (tcp, _remote) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, Nagle's algorithm holds back the small trailing
        // writes of a stream (the last SSE events) for tens of milliseconds.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY on a client connection: {err}");
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("client connection ended with an error: {err}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

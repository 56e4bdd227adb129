//! The accept loop. `axum::serve` would do, except that it gives no way to
//! bound how long a client may take to send its request headers (hyper's
//! `header_read_timeout` needs a timer it does not set), nor how many
//! connections may be open at once.
//!
//! The header timeout covers a connection from its first moment: with HTTP/1
//! only (the default) hyper's HTTP/1 connection is served at once, and its
//! header timer starts when it first waits for a request head, before any byte
//! arrived. A client that connects and sends nothing, or one byte, or trickles
//! a header a byte at a time, is closed when the timeout ends. With `http2`
//! on, the builder first reads the opening bytes to tell HTTP/2's preface from
//! HTTP/1; those bytes must arrive within the header timeout too
//! ([`PrefaceDeadline`]). After the preface, an HTTP/2 connection has no
//! header timeout: hyper offers none for HTTP/2, which is why it is off unless
//! configured.
//!
//! At most `max_connections` connections are open at once. Beyond that the
//! loop stops accepting: new connections wait in the kernel's listen backlog
//! (and are refused by the kernel once that is full) until an open one closes.
//! Waiting costs the proxy nothing, neither a task nor a file descriptor.
//!
//! Shutdown is hyper-util's `GracefulShutdown`: once `shutdown` resolves the
//! listener is closed (new connections are refused), every open connection
//! finishes the request it is serving and closes, and `serve` returns when the
//! last one has. The caller bounds that wait with the grace period; requests
//! still running when it ends are dropped with their connections, and their
//! outcomes record the client as gone (499).

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Limits applied to every client connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// From the connection's start (or the end of its previous request) to the
    /// end of the next request's headers.
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Whether cleartext HTTP/2 (h2c) is served besides HTTP/1.
    pub http2: bool,
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
    if !limits.http2 {
        builder = builder.http1_only();
    }
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // A permit first, then a connection: at the cap the loop waits here,
        // without accepting, until a connection closes and returns its permit.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
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
        if limits.http2 {
            let io = PrefaceDeadline::new(tcp, limits.header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            spawn_connection(graceful.watch(connection.into_owned()), permit);
        } else {
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            spawn_connection(graceful.watch(connection.into_owned()), permit);
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Runs a connection to its end, holding its place under the cap meanwhile.
fn spawn_connection<E: std::fmt::Display>(
    connection: impl Future<Output = Result<(), E>> + Send + 'static,
    permit: OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!("client connection ended with an error: {err}");
        }
        drop(permit);
    });
}

/// HTTP/2's connection preface: the builder reads up to this much to choose a
/// protocol, and stops at the first byte that differs.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection whose opening bytes must arrive before a deadline, up to the
/// point where the builder can tell HTTP/1 from HTTP/2 (the whole preface, or
/// its first differing byte); reading fails with `TimedOut` after it. From
/// then on it is the plain stream: HTTP/1's own header timer takes over.
/// Only the HTTP/2-enabled builder sniffs the protocol, so only it needs this.
struct PrefaceDeadline<I> {
    inner: I,
    /// `None` once the protocol is decided.
    deadline: Option<Pin<Box<Sleep>>>,
    received: usize,
}

impl<I> PrefaceDeadline<I> {
    fn new(inner: I, timeout: Duration) -> Self {
        PrefaceDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep_until(Instant::now() + timeout))),
            received: 0,
        }
    }

    /// Follows the bytes just read; true once the protocol is decided.
    fn decided_by(&mut self, read: &[u8]) -> bool {
        let expected = &H2_PREFACE[self.received.min(H2_PREFACE.len())..];
        let compared = read.len().min(expected.len());
        self.received += read.len();
        read[..compared] != expected[..compared] || self.received >= H2_PREFACE.len()
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.deadline.is_none() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if read.is_empty() || this.decided_by(read) {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent no request in time",
                ))),
                _ => Poll::Pending,
            },
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Long enough for any event a test waits for, on a loaded machine.
    const PATIENCE: Duration = Duration::from_secs(20);
    const REQUEST: &[u8] = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n";

    async fn start(
        limits: ConnectionLimits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/ok", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    fn limits(
        header_read_timeout_ms: u64,
        max_connections: usize,
        http2: bool,
    ) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_millis(header_read_timeout_ms),
            max_connections,
            http2,
        }
    }

    /// Reads until the server closes the connection; what it sent meanwhile.
    async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut received = Vec::new();
        let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received)).await;
        assert!(
            read.is_ok(),
            "the connection was not closed: got {received:?}"
        );
        received
    }

    async fn answered(stream: &mut TcpStream) -> bool {
        stream.write_all(REQUEST).await.unwrap();
        let mut head = [0u8; 12];
        match tokio::time::timeout(PATIENCE, stream.read_exact(&mut head)).await {
            Ok(Ok(_)) => &head == b"HTTP/1.1 200",
            _ => false,
        }
    }

    #[tokio::test]
    async fn silent_and_stalled_clients_are_closed_after_the_header_timeout() {
        // (what the client sends, then stops), with HTTP/2 off and on.
        let openings: [&[u8]; 4] = [b"", b"G", b"GET /ok HTTP/1.1\r\nHo", b"PRI * HTTP/2.0\r\n"];
        for http2 in [false, true] {
            let (address, _stop) = start(limits(200, 100, http2)).await;
            for opening in openings {
                let mut stream = TcpStream::connect(address).await.unwrap();
                stream.write_all(opening).await.unwrap();
                let received = until_closed(&mut stream).await;
                // Nothing, or HTTP/1's 408 (or 400 for HTTP/2's preface
                // when HTTP/2 is off), never a served request.
                assert!(
                    received.is_empty()
                        || received.starts_with(b"HTTP/1.1 408")
                        || received.starts_with(b"HTTP/1.1 400"),
                    "http2={http2}, {opening:?}: {:?}",
                    String::from_utf8_lossy(&received)
                );
            }
            // The server still serves.
            let mut stream = TcpStream::connect(address).await.unwrap();
            assert!(answered(&mut stream).await, "http2={http2}");
        }
    }

    #[tokio::test]
    async fn h2c_is_served_only_when_configured() {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        for http2 in [false, true] {
            let (address, _stop) = start(limits(5_000, 100, http2)).await;
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(PREFACE).await.unwrap();
            // An empty SETTINGS frame of the client's own.
            stream
                .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            let mut first = [0u8; 9];
            let read = tokio::time::timeout(PATIENCE, stream.read_exact(&mut first)).await;
            // HTTP/2's answer opens with the server's SETTINGS frame (type 4);
            // HTTP/1 answers a request it cannot parse with a 400, or closes.
            let settings =
                matches!(read, Ok(Ok(_))) && first[3] == 4 && !first.starts_with(b"HTTP");
            assert_eq!(settings, http2, "http2={http2}: {first:?}");
        }
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_until_one_closes() {
        let (address, _stop) = start(limits(60_000, 1, false)).await;
        let mut holder = TcpStream::connect(address).await.unwrap();
        assert!(
            answered(&mut holder).await,
            "the first connection is served"
        );
        let mut waiting = TcpStream::connect(address).await.unwrap();
        waiting.write_all(REQUEST).await.unwrap();
        let mut head = [0u8; 12];
        let early =
            tokio::time::timeout(Duration::from_millis(500), waiting.read_exact(&mut head)).await;
        assert!(early.is_err(), "a connection beyond the cap was served");
        drop(holder);
        let read = tokio::time::timeout(PATIENCE, waiting.read_exact(&mut head)).await;
        assert!(
            matches!(read, Ok(Ok(_))) && &head == b"HTTP/1.1 200",
            "{head:?}"
        );
    }

    #[test]
    fn the_preface_deadline_ends_once_the_protocol_is_decided() {
        let cases: [(&[&[u8]], bool); 5] = [
            (&[b"PRI * HTTP/2.0\r\n"], false),
            (&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"], true),
            (&[b"P", b"R", b"I"], false),
            (&[b"G"], true),
            (&[b"PRI", b" * HTTP/1.1"], true),
        ];
        for (reads, decided) in cases {
            let mut io = PrefaceDeadline {
                inner: (),
                deadline: None,
                received: 0,
            };
            let result = reads.iter().any(|read| io.decided_by(read));
            assert_eq!(result, decided, "{reads:?}");
        }
    }
}

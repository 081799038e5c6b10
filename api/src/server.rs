//! Serving connections: poem's listener (plain TCP or rustls) accepts, hyper speaks HTTP/1.1
//! and HTTP/2, and every connection has bounded time.
//!
//! poem's own `Server` gives no header-read timeout (hyper's needs a timer poem does not set)
//! and only an inactivity timeout that a client defeats by sending one byte a second. Here:
//! - **Headers** must be complete within `HTTP_HEADER_TIMEOUT_SECONDS` of the connection being
//!   ready for a request (just accepted, or after the previous response), so a silent or
//!   byte-a-second client is dropped, and an idle kept-alive connection is closed as well.
//! - **Bodies** are read by the request middleware under `HTTP_BODY_TIMEOUT_SECONDS`, before a
//!   request takes an admission slot (api/src/middleware.rs).
//! - **Inactivity**: a connection on which no byte moved either way for `HTTP_IDLE_TIMEOUT_SECONDS`
//!   (a client that stopped reading our response, a stalled TLS handshake, an idle HTTP/2
//!   connection) is closed hard.
//!
//! Shutdown stops accepting, asks every connection to finish its in-flight requests, and
//! waits up to a grace period.

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use poem::{
    Endpoint, Response, http,
    listener::{Acceptor, BoxAcceptor},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::watch,
    task::JoinSet,
    time::Instant,
};

/// Time limits of every connection (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `HTTP_HEADER_TIMEOUT_SECONDS`.
    pub header_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_SECONDS`.
    pub idle_timeout: Duration,
}

/// Concurrent HTTP/2 streams per connection (hyper's default is unbounded for servers).
const H2_MAX_STREAMS: u32 = 128;
/// A failed `accept` (out of file descriptors, say) is retried after this pause, not at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `ep` on `acceptor` until `shutdown` resolves, then gives in-flight requests up to
/// `grace` to finish.
pub async fn serve<E>(
    mut acceptor: BoxAcceptor,
    ep: E,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let ep = Arc::new(ep);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = acceptor.accept() => match accepted {
                Ok((io, local, remote, scheme)) => {
                    let ep = ep.clone();
                    let stop = stop_rx.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            let ep = ep.clone();
                            let req = poem::Request::from((req, local.clone(), remote.clone(), scheme.clone()));
                            async move {
                                let resp: hyper::Response<BoxBody<Bytes, io::Error>> =
                                    ep.get_response(req).await.into();
                                Ok::<_, Infallible>(resp)
                            }
                        });
                        serve_connection(io, service, limits, stop).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(acceptor);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
        connections.abort_all();
    }
    Ok(())
}

async fn serve_connection<Io, S>(
    io: Io,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    Io: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = hyper::Response<BoxBody<Bytes, io::Error>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = Watched {
        inner: io,
        started,
        last_activity_ms: activity.clone(),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        let idle_deadline = deadline(started, &activity, limits);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.wait_for(|s| *s), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = tokio::time::sleep_until(idle_deadline) => {
                if deadline(started, &activity, limits) <= Instant::now() {
                    tracing::debug!("closing an idle connection");
                    return; // dropping the connection closes the socket
                }
            }
        }
    }
}

/// When the connection is to be closed unless bytes move before: the header timeout after
/// accepting while nothing has arrived yet (hyper's own header timer starts only once the
/// protocol is known, which takes a first byte), the idle timeout after the last byte since.
fn deadline(started: Instant, activity: &AtomicU64, limits: ConnectionLimits) -> Instant {
    match activity.load(Ordering::Relaxed) {
        0 => started + limits.header_timeout,
        ms => started + Duration::from_millis(ms) + limits.idle_timeout,
    }
}

/// An IO stream that records when bytes last moved (milliseconds since accepting, plus one so
/// that zero means "never"), for the timeouts of [`deadline`].
struct Watched<Io> {
    inner: Io,
    started: Instant,
    last_activity_ms: Arc<AtomicU64>,
}

impl<Io> Watched<Io> {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Watched<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Watched<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! Connections: the accept loop, with hyper's HTTP/1.1 connection settings,
//! and shutdown.
//!
//! `axum::serve` sets no timeouts, so the loop here hands each connection to
//! hyper itself, with:
//!
//! - a header read timeout (`--header-timeout-s`): request headers must
//!   arrive within it, and an idle kept-alive connection is closed after it;
//! - headers of at most [`MAX_HEADER_BYTES`];
//! - at most `--max-connections` open connections: one more is closed at
//!   once, so trickling clients cannot hold unbounded memory.
//!
//! Shutdown lets the connections open at the signal finish their requests
//! (hyper-util's graceful shutdown closes idle ones at once), and after
//! `--shutdown-timeout-s` gives up on those still open. Meanwhile the
//! server keeps accepting, one request per connection, so that load
//! balancers and probes still reach it: `/readyz` says 503 `draining`, and
//! the routes that do work answer 503 at once (see `admission`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Largest request head (request line and headers) read, in bytes: hyper's
/// read buffer for a connection (its default is ~400 KiB).
pub(crate) const MAX_HEADER_BYTES: usize = 64 << 10;

/// How long to wait, after the shutdown timeout cancelled the requests
/// still in flight, for their (503) answers to go out.
const LAST_ANSWERS: Duration = Duration::from_secs(2);

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) header_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// Open connections, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    pub(crate) open: AtomicUsize,
    pub(crate) refused: AtomicUsize,
}

/// How the server stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// Every connection finished within the shutdown timeout.
    Drained,
    /// Some were still open at the timeout; their requests were cancelled.
    TimedOut,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see
/// the module docs): `on_shutdown` runs at the signal, and
/// `cancel_in_flight` when the timeout passes with requests still open.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
    shutdown_timeout: Duration,
    on_shutdown: impl FnOnce(),
    cancel_in_flight: impl FnOnce(),
) -> Stopped {
    let accept = Accept {
        listener,
        router,
        limits,
        connections,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
    };
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = accept.listener.accept() => {
                if let Some((connection, open)) = accept.connection(accepted, true).await {
                    let watched = graceful.watch(connection);
                    tokio::spawn(async move {
                        // Errors are the client's: a reset, a header
                        // timeout, bad HTTP.
                        let _ = watched.await;
                        drop(open);
                    });
                }
            }
            () = &mut shutdown => break,
        }
    }
    on_shutdown();
    let mut drained = std::pin::pin!(graceful.shutdown());
    let until = tokio::time::Instant::now() + shutdown_timeout;
    if accept.until(drained.as_mut(), until).await {
        return Stopped::Drained;
    }
    cancel_in_flight();
    let _ = accept
        .until(drained.as_mut(), tokio::time::Instant::now() + LAST_ANSWERS)
        .await;
    Stopped::TimedOut
}

/// One HTTP/1.1 connection to the service.
type Connection = http1::Connection<TokioIo<TcpStream>, TowerToHyperService<Router>>;

/// A connection's place among the open ones; given back when dropped.
struct Open {
    connections: Arc<Connections>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The accepting side of [`serve`].
struct Accept {
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    connections: Arc<Connections>,
    slots: Arc<Semaphore>,
}

impl Accept {
    /// The connection to serve for `accepted`, if it is let in, and its
    /// place among the open ones.
    async fn connection(
        &self,
        accepted: std::io::Result<(TcpStream, std::net::SocketAddr)>,
        keep_alive: bool,
    ) -> Option<(Connection, Open)> {
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return None;
            }
        };
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.connections.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(MAX_HEADER_BYTES)
            .keep_alive(keep_alive)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(self.router.clone()),
            );
        self.connections.open.fetch_add(1, Ordering::Relaxed);
        let open = Open {
            connections: Arc::clone(&self.connections),
            _slot: slot,
        };
        Some((connection, open))
    }

    /// Accepts connections, one request each, until `drained` resolves
    /// (true) or `until` passes (false).
    async fn until(
        &self,
        mut drained: std::pin::Pin<&mut impl Future<Output = ()>>,
        until: tokio::time::Instant,
    ) -> bool {
        loop {
            tokio::select! {
                () = drained.as_mut() => return true,
                () = tokio::time::sleep_until(until) => return false,
                accepted = self.listener.accept() => {
                    if let Some((connection, open)) = self.connection(accepted, false).await {
                        tokio::spawn(async move {
                            let _ = connection.await;
                            drop(open);
                        });
                    }
                }
            }
        }
    }
}

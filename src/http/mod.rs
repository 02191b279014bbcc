//! The HTTP server (hyper 1.x over tokio).
//!
//! Each connection is served by hyper's HTTP/1 machinery; each request
//! gets an id (a client's `X-Request-Id` when well-formed, else a new
//! one), echoed in the response, and one span carrying route, status and
//! latency. The same routes are served on TCP and, when configured, on a
//! Unix socket; `/metrics` may have a TCP listener of its own. Shutdown
//! stops accepting on every listener, then lets in-flight requests on all
//! of them finish within the grace period.

mod integrations;
pub mod metrics;
mod request_id;
pub mod response;
mod routes;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tracing::Instrument;

use crate::config::IdentityHeaders;
use crate::store::Store;
use crate::verify::{self, Verifier};
use response::Body;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request handler can reach.
pub struct App {
    pub verifier: Verifier,
    pub store: Arc<dyn Store>,
    pub headers: IdentityHeaders,
    pub challenge: HeaderValue,
    pub store_timeout: Duration,
    /// Whether `/metrics` is answered with the other routes (else it has
    /// a listener of its own and the main listeners answer 404).
    pub metrics_on_main: bool,
    /// The self-service pages and token API.
    pub web: crate::web::Web,
}

/// Every socket one server accepts connections on.
pub struct Listeners {
    pub tcp: TcpListener,
    pub unix: Option<UnixListener>,
    pub metrics: Option<TcpListener>,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The verification routes (TCP and Unix socket alike).
    Main,
    /// `/metrics` only.
    Metrics,
}

/// Serve until `shutdown` completes, then drain for at most `grace`.
pub async fn serve(
    listeners: Listeners,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let Listeners { tcp, unix, metrics } = &listeners;
    let on = |role, accepted| on_accept(&graceful, &app, role, accepted);
    loop {
        tokio::select! {
            accepted = accept_tcp(Some(tcp)) => on(Role::Main, accepted.map(Conn::Tcp)).await,
            accepted = accept_unix(unix.as_ref()) => {
                on(Role::Main, accepted.map(Conn::Unix)).await
            }
            accepted = accept_tcp(metrics.as_ref()) => {
                on(Role::Metrics, accepted.map(Conn::Tcp)).await
            }
            () = &mut shutdown => break,
        }
    }
    drop(listeners);
    tracing::info!(grace_secs = grace.as_secs(), "draining connections");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

/// An accepted connection, from either kind of listener.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The next connection; a listener that is not configured never yields.
async fn accept_tcp(listener: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(stream, _peer)| stream),
        None => std::future::pending().await,
    }
}

async fn accept_unix(listener: Option<&UnixListener>) -> std::io::Result<UnixStream> {
    match listener {
        Some(l) => l.accept().await.map(|(stream, _peer)| stream),
        None => std::future::pending().await,
    }
}

async fn on_accept(
    graceful: &GracefulShutdown,
    app: &Arc<App>,
    role: Role,
    accepted: std::io::Result<Conn>,
) {
    match accepted {
        Ok(Conn::Tcp(stream)) => connect(graceful, app, role, stream),
        Ok(Conn::Unix(stream)) => connect(graceful, app, role, stream),
        Err(e) => {
            // Typically out of file descriptors: back off briefly.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Serve one connection on its own task, watched by `graceful`.
fn connect<S>(graceful: &GracefulShutdown, app: &Arc<App>, role: Role, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = Arc::clone(app);
    let service = service_fn(move |req| handle(Arc::clone(&app), role, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let watched = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = watched.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

async fn handle(
    app: Arc<App>,
    role: Role,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    match role {
        Role::Main => Ok(handle_main(&app, request).await),
        Role::Metrics => Ok(metrics::dedicated(
            &app,
            request.method(),
            request.uri().path(),
        )),
    }
}

async fn handle_main(app: &App, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let id = request_id::of(&request);
    let path = request.uri().path().to_owned();
    let route = routes::route_name(&path);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        route,
        method = %request.method(),
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let answered = verify::observe(routes::dispatch(app, request, &id));
    let (mut response, verdict) = answered.instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    let latency = started.elapsed();
    metrics::record(route, &path, response.status(), verdict);
    metrics::record_latency(route, latency);
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::debug!("request finished"));
    response
}

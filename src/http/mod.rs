//! The HTTP server (hyper 1.x over tokio).
//!
//! Each connection is served by hyper's HTTP/1 machinery; each request
//! gets an id (a client's `X-Request-Id` when well-formed, else a new
//! one), echoed in the response, and one span carrying route, status and
//! latency. Shutdown stops accepting, then lets in-flight requests finish
//! within the grace period.

mod integrations;
mod metrics;
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
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::config::IdentityHeaders;
use crate::store::Store;
use crate::verify::Verifier;
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
}

/// Serve until `shutdown` completes, then drain for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let app = Arc::clone(&app);
                    let service = service_fn(move |req| handle(Arc::clone(&app), req));
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
                Err(e) => {
                    // Typically out of file descriptors: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(grace_secs = grace.as_secs(), "draining connections");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

async fn handle(app: Arc<App>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let id = request_id::of(&request);
    let route = routes::route_name(request.uri().path());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        route,
        method = %request.method(),
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let mut response = routes::dispatch(&app, request, &id)
        .instrument(span.clone())
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    let latency = started.elapsed().as_secs_f64() * 1000.0;
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency);
    span.in_scope(|| tracing::debug!("request finished"));
    Ok(response)
}

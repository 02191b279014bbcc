//! Prometheus metrics: the process-wide recorder, what the HTTP layer
//! counts, and the `/metrics` answer in the text exposition format.
//!
//! The `metrics` facade takes one recorder per process, so the first
//! server to start installs it and every later one (tests start several
//! in one process) renders from the same handle. Label values are bounded
//! sets: routes are fixed names, statuses are codes, and services are
//! taken from the path only when short and plain, and only the first
//! [`MAX_SERVICES`] of them; a client cannot grow the label space.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::App;
use super::response::{self, Body};
use crate::verify::{self, Verdict};

const VERIFICATIONS: &str = "devicepass_verifications_total";
const HTTP_REQUESTS: &str = "devicepass_http_requests_total";
const HTTP_SECONDS: &str = "devicepass_http_request_seconds";
const QUEUE_DEPTH: &str = "devicepass_hash_queue_depth";
const HASH_WORKERS: &str = "devicepass_hash_workers";
const BUILD_INFO: &str = "devicepass_build_info";

/// Upper bounds of histogram buckets, in seconds: from a cache hit (well
/// under a millisecond) to a store timeout (seconds).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Distinct service labels kept; later names are counted as "other".
const MAX_SERVICES: usize = 64;
const MAX_SERVICE_LEN: usize = 32;

/// How often histogram samples are folded in when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder handle, installing the recorder on first use.
/// `None` when another recorder was installed first: metrics are then
/// recorded there and `/metrics` answers 404.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(build).as_ref()
}

fn build() -> Option<PrometheusHandle> {
    let builder = match PrometheusBuilder::new().set_buckets(BUCKETS) {
        Ok(builder) => builder,
        Err(e) => {
            tracing::error!(error = %e, "metrics buckets rejected; metrics off");
            return None;
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if ::metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("another metrics recorder is installed; /metrics is off");
        return None;
    }
    describe();
    verify::describe_metrics();
    ::metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Some(handle)
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(VERIFICATIONS, "Verifications by result and service");
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route and status");
    describe_histogram!(HTTP_SECONDS, "Time to answer an HTTP request, by route");
    describe_gauge!(
        QUEUE_DEPTH,
        "Hash checks running or waiting on the hashing pool"
    );
    describe_gauge!(HASH_WORKERS, "Threads of the hashing pool");
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label names the running build"
    );
}

/// Fold histogram samples into their buckets now and then, so memory
/// stays bounded between scrapes (the exporter leaves this to its user).
pub async fn upkeep() {
    let Some(handle) = install() else { return };
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

/// `/metrics` on the main listener: 404 when it has a listener of its own.
pub fn render(app: &App) -> Response<Body> {
    if !app.metrics_on_main {
        return response::text(StatusCode::NOT_FOUND, "not found");
    }
    scrape(app)
}

/// Every request to the dedicated metrics listener.
pub fn dedicated(app: &App, method: &Method, path: &str) -> Response<Body> {
    match (path, method) {
        ("/metrics", &Method::GET | &Method::HEAD) => scrape(app),
        ("/metrics", _) => response::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => response::text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn scrape(app: &App) -> Response<Body> {
    let Some(handle) = install() else {
        return response::text(StatusCode::NOT_FOUND, "not found");
    };
    // Read at scrape time: exact, and nothing to update per job.
    ::metrics::gauge!(QUEUE_DEPTH).set(app.verifier.queue_depth() as f64);
    ::metrics::gauge!(HASH_WORKERS).set(app.verifier.workers() as f64);
    let mut answer = response::text(StatusCode::OK, handle.render().trim_end());
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
    answer
}

/// Count one answered request; `verdict` is what the verifier decided
/// while answering it, if it was asked.
pub fn record(route: &'static str, path: &str, status: StatusCode, verdict: Option<Verdict>) {
    let code = status.as_u16().to_string();
    ::metrics::counter!(HTTP_REQUESTS, "route" => route, "status" => code).increment(1);
    if let Some(verdict) = verdict.or_else(|| refused_unasked(route, status)) {
        let service = service_label(path);
        ::metrics::counter!(VERIFICATIONS, "result" => verdict.label(), "service" => service)
            .increment(1);
    }
}

pub fn record_latency(route: &'static str, latency: Duration) {
    ::metrics::histogram!(HTTP_SECONDS, "route" => route).record(latency);
}

/// Malformed credentials are refused before the verifier is asked; they
/// are denials all the same.
fn refused_unasked(route: &str, status: StatusCode) -> Option<Verdict> {
    let verifying = matches!(route, "/auth" | "/auth/{service}" | "/verify");
    (verifying && status == StatusCode::UNAUTHORIZED).then_some(Verdict::Denied)
}

/// The consumer named in the path: the first segment after `/auth/` or
/// `/integrations/` (Envoy appends the original path after it).
fn service_label(path: &str) -> String {
    let rest = path
        .strip_prefix("/auth/")
        .or_else(|| path.strip_prefix("/integrations/"));
    let name = rest.and_then(|r| r.split('/').next()).unwrap_or_default();
    if name.is_empty() {
        return "none".into();
    }
    if plain(name) && admitted(name) {
        name.into()
    } else {
        "other".into()
    }
}

fn plain(name: &str) -> bool {
    name.len() <= MAX_SERVICE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn admitted(name: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Mutex::default);
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    if seen.contains(name) {
        return true;
    }
    if seen.len() >= MAX_SERVICES {
        return false;
    }
    seen.insert(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_come_from_the_first_path_segment() {
        assert_eq!(service_label("/auth"), "none");
        assert_eq!(service_label("/auth/"), "none");
        assert_eq!(service_label("/verify"), "none");
        assert_eq!(service_label("/auth/webdav"), "webdav");
        assert_eq!(service_label("/auth/envoy/original/path"), "envoy");
        assert_eq!(service_label("/integrations/rabbitmq/user"), "rabbitmq");
    }

    #[test]
    fn odd_service_names_are_other() {
        assert_eq!(service_label("/auth/%3Cscript%3E"), "other");
        assert_eq!(service_label(&format!("/auth/{}", "x".repeat(33))), "other");
    }

    #[test]
    fn malformed_credentials_count_as_denied() {
        let denied = Some(Verdict::Denied);
        assert_eq!(refused_unasked("/auth", StatusCode::UNAUTHORIZED), denied);
        assert_eq!(refused_unasked("/verify", StatusCode::UNAUTHORIZED), denied);
        assert_eq!(
            refused_unasked("/verify", StatusCode::PAYLOAD_TOO_LARGE),
            None
        );
        assert_eq!(
            refused_unasked("/readyz", StatusCode::SERVICE_UNAVAILABLE),
            None
        );
    }
}

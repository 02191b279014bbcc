//! Routing and the handlers of the verification contract.
//!
//! `/auth` and `/auth/<service>` (any method) read Basic credentials for
//! forward-auth proxies; `POST /verify` reads JSON for everything else;
//! `/healthz` and `/readyz` are probes. The self-service pages and the
//! token API are answered by [`crate::web`]. Any other path is 404: no
//! route answers 2xx by accident.

use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use super::App;
use super::response::{self, Body, Failure, Style};
use crate::verify::Outcome;
use crate::verify::credentials::{self, Credentials};

/// Largest `/verify` body read.
const MAX_BODY: usize = 16 * 1024;

/// Route names for logs: a fixed set, so a client cannot fill the logs
/// with arbitrary path strings.
pub fn route_name(path: &str) -> &'static str {
    match path {
        "/auth" => "/auth",
        p if p.starts_with("/auth/") => "/auth/{service}",
        "/verify" => "/verify",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        p if p.starts_with("/integrations/") => "/integrations/{consumer}",
        p => crate::web::route_name(p).unwrap_or("unknown"),
    }
}

pub async fn dispatch(app: &App, request: Request<Incoming>, request_id: &str) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let fail = |f, style| response::failure(f, style, &app.challenge, request_id);
    match (route_name(&path), request.method()) {
        ("/auth", _) => auth(app, &request, "", request_id).await,
        ("/auth/{service}", _) => {
            let service = path.trim_start_matches("/auth/");
            auth(app, &request, service, request_id).await
        }
        ("/verify", &Method::POST) => verify_json(app, request, request_id).await,
        ("/verify", _) => fail(Failure::MethodNotAllowed("POST"), Style::Json),
        ("/healthz", &Method::GET | &Method::HEAD) => response::text(StatusCode::OK, "ok"),
        ("/readyz", &Method::GET | &Method::HEAD) => ready(app, request_id).await,
        ("/metrics", &Method::GET | &Method::HEAD) => super::metrics::render(app),
        ("/metrics", _) => fail(Failure::MethodNotAllowed("GET, HEAD"), Style::Plain),
        ("/integrations/{consumer}", _) => {
            super::integrations::dispatch(app, request, request_id).await
        }
        ("/healthz" | "/readyz", _) => fail(Failure::MethodNotAllowed("GET, HEAD"), Style::Plain),
        ("unknown", _) => fail(Failure::NotFound, Style::Plain),
        (route, _) => crate::web::dispatch(&app.web, route, request, request_id).await,
    }
}

async fn auth(
    app: &App,
    request: &Request<Incoming>,
    service: &str,
    request_id: &str,
) -> Response<Body> {
    let headers = request.headers();
    let value = headers
        .get(AUTHORIZATION)
        .or_else(|| headers.get(PROXY_AUTHORIZATION));
    let parsed = match value {
        Some(v) => credentials::parse_basic(v.as_bytes()),
        None => Err(credentials::CredentialsError::Missing),
    };
    let outcome = decide(app, parsed, service).await;
    match outcome {
        Ok(Outcome::Granted(identity)) => response::granted_headers(&identity, &app.headers),
        Ok(Outcome::Denied) => response::failure(
            Failure::Unauthorized,
            Style::Plain,
            &app.challenge,
            request_id,
        ),
        Err(f) => response::failure(f, Style::Plain, &app.challenge, request_id),
    }
}

#[derive(Deserialize)]
struct VerifyRequest {
    username: String,
    password: String,
    #[serde(default)]
    service: Option<String>,
}

async fn verify_json(app: &App, request: Request<Incoming>, request_id: &str) -> Response<Body> {
    let fail = |f| response::failure(f, Style::Json, &app.challenge, request_id);
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return fail(Failure::PayloadTooLarge);
        }
        Err(_) => return fail(Failure::Unauthorized),
    };
    let (parsed, service) = match serde_json::from_slice::<VerifyRequest>(&body) {
        Ok(r) => (
            credentials::check_fields(&r.username, &r.password),
            r.service.unwrap_or_default(),
        ),
        Err(_) => (Err(credentials::CredentialsError::NotJson), String::new()),
    };
    match decide(app, parsed, &service).await {
        Ok(Outcome::Granted(identity)) => response::granted_json(&identity),
        Ok(Outcome::Denied) => fail(Failure::Unauthorized),
        Err(f) => fail(f),
    }
}

/// Verify, and log the outcome. Malformed credentials are refused without
/// a lookup; they carry no username to look up.
pub(super) async fn decide<E: std::fmt::Display>(
    app: &App,
    parsed: Result<Credentials, E>,
    service: &str,
) -> Result<Outcome, Failure> {
    let credentials = match parsed {
        Ok(c) => c,
        Err(reason) => {
            tracing::info!(service, %reason, "access denied: malformed credentials");
            return Ok(Outcome::Denied);
        }
    };
    match app.verifier.verify(&credentials).await {
        Ok(Outcome::Granted(identity)) => {
            tracing::info!(service, login = %identity.login, "access granted");
            Ok(Outcome::Granted(identity))
        }
        Ok(Outcome::Denied) => {
            tracing::info!(service, "access denied");
            Ok(Outcome::Denied)
        }
        Err(e) => {
            tracing::warn!(service, error = %e, "cannot decide");
            Err(Failure::Unavailable(e))
        }
    }
}

async fn ready(app: &App, request_id: &str) -> Response<Body> {
    let ping = tokio::time::timeout(app.store_timeout, app.store.ping()).await;
    match ping {
        Ok(Ok(())) => response::text(StatusCode::OK, "ready"),
        _ => {
            tracing::warn!("readiness check failed: database unavailable");
            let f = Failure::Unavailable(crate::verify::VerifyError::Unavailable);
            response::failure(f, Style::Plain, &app.challenge, request_id)
        }
    }
}

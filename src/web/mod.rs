//! The self-service side: the page where users sign in with the identity
//! provider and manage their device passwords, the token API, and the
//! logout endpoints the provider calls.
//!
//! Routes (paths of the Python devicepasswords project where it had them):
//! - `/` the page; `/login` starts sign-in and is the redirect URI;
//!   `POST /logout`; `POST /tokens`, `POST /tokens/{id}/delete` (forms);
//! - `/api/tokens` (the Python project's form API), `/api/v1/tokens` and
//!   `/api/v1/tokens/{id}` (JSON), `/api/openapi.json`, `/api/ping`;
//! - `POST /api/logout-backchannel`, `GET /api/logout-frontchannel`;
//! - `/static/app.css`, `/static/app.js`.
//!
//! Pages and the session API need a session cookie plus a CSRF token on
//! every state-changing request; the API also accepts a bearer access
//! token from the provider instead.

mod api;
mod html;
mod pages;
mod session;

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::clock::Clock;
use crate::config::{Config, UiConfig, WebConfig};
use crate::http::response::Body;
use crate::oidc::Oidc;
use crate::store::{Store, User};
use crate::tokens::TokenMaker;
pub use html::Problem;
use session::{CookieNames, cookie_names};

/// Largest form or JSON body read.
const MAX_BODY: usize = 16 * 1024;

/// Longest a self-service request may take (database and provider calls
/// included) before it is answered 503.
const REQUEST_BUDGET: Duration = Duration::from_secs(30);

/// What the self-service handlers reach.
pub struct Web {
    pub oidc: Option<Oidc>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub maker: TokenMaker,
    pub settings: WebConfig,
    pub ui: UiConfig,
    pub max_expiration_days: Option<u32>,
    names: CookieNames,
    /// Path prefix of the public URL, ending in `/`.
    base: String,
    /// The public URL without a trailing slash, for absolute redirects.
    public_url: Option<String>,
}

impl Web {
    pub fn new(
        config: &Config,
        oidc: Option<Oidc>,
        store: Arc<dyn Store>,
        maker: TokenMaker,
    ) -> Web {
        let public_url = config.web.public_url.clone();
        let base = public_url.as_ref().map_or_else(
            || "/".to_string(),
            |u| format!("{}/", u.path().trim_end_matches('/')),
        );
        Web {
            oidc,
            clock: Arc::clone(&maker.clock),
            store,
            maker,
            settings: config.web.clone(),
            ui: config.ui.clone(),
            max_expiration_days: config.max_expiration_days,
            names: cookie_names(config.web.cookie_secure),
            base,
            public_url: public_url.map(|u| u.as_str().trim_end_matches('/').to_string()),
        }
    }

    /// An absolute URL (when the public URL is known) for a page path.
    fn url(&self, path: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{base}/{path}"),
            None => format!("/{path}"),
        }
    }
}

/// Route names for logs and metrics: a fixed set.
pub fn route_name(path: &str) -> Option<&'static str> {
    Some(match path {
        "/" => "/",
        "/login" => "/login",
        "/logout" => "/logout",
        "/tokens" => "/tokens",
        p if p.starts_with("/tokens/") => "/tokens/{id}/delete",
        "/static/app.css" | "/static/app.js" => "/static/{file}",
        "/api/tokens" => "/api/tokens",
        "/api/v1/tokens" => "/api/v1/tokens",
        p if p.starts_with("/api/v1/tokens/") => "/api/v1/tokens/{id}",
        "/api/openapi.json" => "/api/openapi.json",
        "/api/ping" => "/api/ping",
        "/api/logout-backchannel" => "/api/logout-backchannel",
        "/api/logout-frontchannel" => "/api/logout-frontchannel",
        // Answered 404 in JSON, like the rest of the API.
        p if p.starts_with("/api/") => "/api/{unknown}",
        _ => return None,
    })
}

/// Answer a self-service route (one `route_name` knows).
pub async fn dispatch(
    web: &Web,
    route: &'static str,
    request: Request<Incoming>,
    request_id: &str,
) -> Response<Body> {
    let api = route.starts_with("/api/");
    let answer = tokio::time::timeout(
        REQUEST_BUDGET,
        route_request(web, route, request, request_id),
    );
    match answer.await {
        Ok(Ok(response)) => response,
        Ok(Err(problem)) if api => web.problem_json(&problem, request_id),
        Ok(Err(problem)) => web.problem_page(&problem, request_id),
        Err(_) => {
            tracing::warn!(route, "self-service request timed out");
            if api {
                web.problem_json(&Problem::Unavailable, request_id)
            } else {
                web.problem_page(&Problem::Unavailable, request_id)
            }
        }
    }
}

async fn route_request(
    web: &Web,
    route: &'static str,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, Problem> {
    use http::Method;
    let method = request.method().clone();
    match (route, &method) {
        ("/static/{file}", &Method::GET | &Method::HEAD) => Ok(pages::asset(request.uri().path())),
        ("/static/{file}", _) => Err(Problem::MethodNotAllowed("GET, HEAD")),
        ("/api/openapi.json", &Method::GET | &Method::HEAD) => Ok(api::openapi(web)),
        ("/api/openapi.json", _) => Err(Problem::MethodNotAllowed("GET, HEAD")),
        ("/api/logout-backchannel", &Method::POST) => api::backchannel(web, request).await,
        ("/api/logout-backchannel", _) => Err(Problem::MethodNotAllowed("POST")),
        ("/api/logout-frontchannel", &Method::GET) => api::frontchannel(web, request).await,
        ("/api/logout-frontchannel", _) => Err(Problem::MethodNotAllowed("GET")),
        _ if web.oidc.is_none() => Err(Problem::SignInNotConfigured),
        ("/", &Method::GET | &Method::HEAD) => pages::index(web, request.headers()).await,
        ("/", _) => Err(Problem::MethodNotAllowed("GET, HEAD")),
        ("/login", &Method::GET) => pages::login(web, &request, request_id).await,
        ("/login", _) => Err(Problem::MethodNotAllowed("GET")),
        ("/logout", &Method::POST) => pages::logout(web, request).await,
        ("/logout", _) => Err(Problem::MethodNotAllowed("POST")),
        ("/tokens", &Method::POST) => pages::create(web, request).await,
        ("/tokens", _) => Err(Problem::MethodNotAllowed("POST")),
        ("/tokens/{id}/delete", &Method::POST) => pages::delete(web, request).await,
        ("/tokens/{id}/delete", _) => Err(Problem::MethodNotAllowed("POST")),
        ("/api/ping", &Method::GET) => api::ping(web, request.headers()).await,
        ("/api/ping", _) => Err(Problem::MethodNotAllowed("GET")),
        ("/api/tokens", _) => api::legacy(web, request).await,
        ("/api/v1/tokens", &Method::GET | &Method::POST) => api::tokens(web, request).await,
        ("/api/v1/tokens", _) => Err(Problem::MethodNotAllowed("GET, POST")),
        ("/api/v1/tokens/{id}", &Method::DELETE) => api::delete(web, request).await,
        ("/api/v1/tokens/{id}", _) => Err(Problem::MethodNotAllowed("DELETE")),
        _ => Err(Problem::NotFound),
    }
}

/// The request body, at most [`MAX_BODY`] bytes.
async fn read_body(request: Request<Incoming>) -> Result<bytes::Bytes, Problem> {
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Problem::PayloadTooLarge),
        Err(_) => Err(Problem::BadRequest(
            "The request body could not be read.".into(),
        )),
    }
}

/// Form fields (`application/x-www-form-urlencoded`); the first value of
/// a repeated field wins.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Who a self-service request acts for.
pub struct Principal {
    pub user: User,
    pub is_admin: bool,
}

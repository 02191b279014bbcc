//! Rendering pages: the templates' data, security headers, and the
//! single mapping from a [`Problem`] to a page or a JSON answer.

use askama::Template;
use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::Web;
use super::session::random_token;
use crate::config::UiConfig;
use crate::http::response::Body;
use crate::store::User;

/// What every page's frame needs.
pub struct Layout {
    pub heading: String,
    /// The path prefix pages are served under, ending in `/`.
    pub base: String,
    /// The CSP nonce of this response's script.
    pub nonce: String,
}

#[derive(Template)]
#[template(path = "index.html")]
pub struct IndexPage<'a> {
    pub l: Layout,
    pub ui: &'a UiConfig,
    pub csrf: &'a str,
    pub user: &'a User,
    pub is_admin: bool,
    pub tokens: Vec<TokenRow>,
    pub created: Option<CreatedView>,
    pub error: Option<String>,
    pub form_name: String,
    pub min_date: String,
    pub max_date: Option<String>,
}

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub login: String,
    pub expires: String,
    pub last_used: String,
}

/// A password just created, shown once.
pub struct CreatedView {
    pub name: String,
    pub login: String,
    pub password: String,
    pub expires: Option<String>,
}

#[derive(Template)]
#[template(path = "landing.html")]
pub struct LandingPage {
    pub l: Layout,
    pub sub_heading: String,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub l: Layout,
    pub title: &'static str,
    pub reason: String,
    /// A relative path and its text.
    pub link: Option<(&'static str, &'static str)>,
    pub request_id: String,
}

/// Why a page or API request did not succeed. The texts are for users:
/// they never carry driver errors, tokens or claim values.
#[derive(Debug)]
pub enum Problem {
    BadRequest(String),
    /// No session or bearer token, or an invalid one.
    Unauthorized,
    /// A state-changing request without the right CSRF token.
    Csrf,
    /// The identity provider signed the user in, but a rule refuses them.
    Refused(String),
    /// Something about the sign-in went wrong.
    SignInFailed(String),
    /// The identity provider cannot be reached.
    SignInUnavailable,
    /// Sign-in is not configured (verification-only mode).
    SignInNotConfigured,
    NotFound,
    MethodNotAllowed(&'static str),
    PayloadTooLarge,
    UnsupportedMediaType,
    /// The database did not answer.
    Unavailable,
}

impl Problem {
    fn status(&self) -> StatusCode {
        match self {
            Problem::BadRequest(_) => StatusCode::BAD_REQUEST,
            Problem::Unauthorized => StatusCode::UNAUTHORIZED,
            Problem::Csrf | Problem::Refused(_) => StatusCode::FORBIDDEN,
            Problem::SignInFailed(_) => StatusCode::BAD_REQUEST,
            Problem::SignInUnavailable | Problem::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Problem::SignInNotConfigured | Problem::NotFound => StatusCode::NOT_FOUND,
            Problem::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Problem::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// Title, explanation, and where to go next.
    fn text(&self) -> (&'static str, String, Option<(&'static str, &'static str)>) {
        let again = Some(("login", "Sign in again"));
        let home = Some(("", "Back to the start"));
        match self {
            Problem::BadRequest(why) => ("Bad request", why.clone(), home),
            Problem::Unauthorized => (
                "Signed out",
                "You are not signed in, or your session has ended.".into(),
                again,
            ),
            Problem::Csrf => (
                "Request refused",
                "The form was not sent from this page, or the page is out of date. \
                 Reload the page and try again."
                    .into(),
                home,
            ),
            Problem::Refused(why) => (
                "Access refused",
                format!("You cannot use this service: {why}."),
                None,
            ),
            Problem::SignInFailed(why) => ("Sign-in failed", why.clone(), again),
            Problem::SignInUnavailable => (
                "Sign-in unavailable",
                "The identity provider cannot be reached right now, so signing in is not \
                 possible. Existing device passwords keep working. Try again in a few minutes."
                    .into(),
                None,
            ),
            Problem::SignInNotConfigured => (
                "Sign-in is not configured",
                "This devicepass runs in verification-only mode: device passwords are \
                 managed by an administrator with the devicepass command."
                    .into(),
                None,
            ),
            Problem::NotFound => (
                "Not found",
                "There is nothing at this address.".into(),
                home,
            ),
            Problem::MethodNotAllowed(_) => (
                "Method not allowed",
                "This address does not accept that kind of request.".into(),
                home,
            ),
            Problem::PayloadTooLarge => (
                "Request too large",
                "The request body is too large.".into(),
                home,
            ),
            Problem::UnsupportedMediaType => (
                "Unsupported content type",
                "Send the body in the content type this endpoint documents \
                 (see /api/openapi.json)."
                    .into(),
                home,
            ),
            Problem::Unavailable => (
                "Temporarily unavailable",
                "The database cannot be reached right now. Try again in a moment.".into(),
                home,
            ),
        }
    }

    /// A short machine-readable code for API answers.
    fn code(&self) -> &'static str {
        match self {
            Problem::BadRequest(_) => "bad_request",
            Problem::Unauthorized => "unauthorized",
            Problem::Csrf => "csrf",
            Problem::Refused(_) => "forbidden",
            Problem::SignInFailed(_) => "sign_in_failed",
            Problem::SignInUnavailable => "provider_unavailable",
            Problem::SignInNotConfigured => "not_configured",
            Problem::NotFound => "not_found",
            Problem::MethodNotAllowed(_) => "method_not_allowed",
            Problem::PayloadTooLarge => "payload_too_large",
            Problem::UnsupportedMediaType => "unsupported_media_type",
            Problem::Unavailable => "unavailable",
        }
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Problem {
        tracing::warn!(error = %e, "self-service request failed at the database");
        Problem::Unavailable
    }
}

impl Web {
    pub fn layout(&self) -> Layout {
        Layout {
            heading: self.ui.heading.clone(),
            base: self.base.clone(),
            nonce: random_token(),
        }
    }

    /// A rendered page with the security headers for its nonce.
    pub fn page(
        &self,
        status: StatusCode,
        nonce: &str,
        rendered: Result<String, askama::Error>,
    ) -> Response<Body> {
        let (status, body) = match rendered {
            Ok(body) => (status, body),
            Err(e) => {
                tracing::error!(error = %e, "a page template failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>The page cannot be shown.".to_string(),
                )
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        self.security_headers(&mut response, Some(nonce));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }

    /// Headers every page and API answer carries.
    pub fn security_headers(&self, response: &mut Response<Body>, nonce: Option<&str>) {
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            "cross-origin-opener-policy",
            HeaderValue::from_static("same-origin"),
        );
        if let Some(max_age) = self.settings.hsts
            && let Ok(v) = HeaderValue::from_str(&format!("max-age={}", max_age.as_secs()))
        {
            headers.insert(STRICT_TRANSPORT_SECURITY, v);
        }
        let script = match nonce {
            Some(n) => format!("'nonce-{n}'"),
            None => "'none'".to_string(),
        };
        let mut form_action = String::from("'self'");
        for origin in self.oidc.as_ref().map(|o| o.origins()).unwrap_or_default() {
            form_action.push(' ');
            form_action.push_str(&origin);
        }
        let csp = format!(
            "default-src 'none'; script-src {script}; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            headers.insert(CONTENT_SECURITY_POLICY, v);
        }
    }

    /// A page explaining `problem`, with the request id.
    pub fn problem_page(&self, problem: &Problem, request_id: &str) -> Response<Body> {
        let (title, reason, link) = problem.text();
        let layout = self.layout();
        let nonce = layout.nonce.clone();
        let page = MessagePage {
            l: layout,
            title,
            reason,
            link,
            request_id: request_id.to_string(),
        };
        let mut response = self.page(problem.status(), &nonce, page.render());
        allow_header(&mut response, problem);
        response
    }

    /// `{"error": code, "message": text, "request_id": id}`.
    pub fn problem_json(&self, problem: &Problem, request_id: &str) -> Response<Body> {
        let (_, message, _) = problem.text();
        let body = serde_json::json!({
            "error": problem.code(),
            "message": message,
            "request_id": request_id,
        });
        let mut response = self.json(problem.status(), &body);
        if matches!(problem, Problem::Unauthorized) {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        allow_header(&mut response, problem);
        response
    }

    pub fn json(&self, status: StatusCode, value: &serde_json::Value) -> Response<Body> {
        let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
        *response.status_mut() = status;
        self.security_headers(&mut response, None);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    /// 303 to `path` under the page's base, setting the given cookies.
    pub fn see_other(&self, location: &str, cookies: &[String]) -> Response<Body> {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SEE_OTHER;
        self.security_headers(&mut response, None);
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(location) {
            headers.insert(LOCATION, v);
        }
        for cookie in cookies {
            if let Ok(v) = HeaderValue::from_str(cookie) {
                headers.append(SET_COOKIE, v);
            }
        }
        response
    }
}

fn allow_header(response: &mut Response<Body>, problem: &Problem) {
    if let Problem::MethodNotAllowed(allow) = problem {
        response
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    }
}

/// Append a Set-Cookie header.
pub fn set_cookie(response: &mut Response<Body>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, v);
    }
}

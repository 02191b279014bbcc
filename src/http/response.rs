//! The one place where outcomes and errors become HTTP responses.
//!
//! Bodies of failures are fixed texts plus the request id: no error
//! detail, driver text or credential ever reaches a client. Unknown user,
//! expired token and wrong password all become the same 401.

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::config::IdentityHeaders;
use crate::verify::{Identity, VerifyError};

pub type Body = Full<Bytes>;

/// How a failed request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Missing, malformed or wrong credentials.
    Unauthorized,
    /// The verifier could not decide (database down, queue full).
    Unavailable(VerifyError),
    NotFound,
    MethodNotAllowed(&'static str),
    PayloadTooLarge,
}

/// Whether the endpoint speaks JSON or plain text/empty bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Json,
}

pub fn failure(
    f: Failure,
    style: Style,
    challenge: &HeaderValue,
    request_id: &str,
) -> Response<Body> {
    let (status, text) = match f {
        Failure::Unauthorized => (StatusCode::UNAUTHORIZED, ""),
        Failure::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Failure::NotFound => (StatusCode::NOT_FOUND, "not found"),
        Failure::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        Failure::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let body = match (style, f) {
        (Style::Json, _) => json_failure(text, request_id),
        (Style::Plain, Failure::Unauthorized) => String::new(),
        (Style::Plain, _) => format!("{text} (request id {request_id})\n"),
    };
    let mut response = with_body(status, style, body);
    let headers = response.headers_mut();
    match f {
        Failure::Unauthorized => {
            headers.insert(WWW_AUTHENTICATE, challenge.clone());
        }
        Failure::Unavailable(_) => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Failure::MethodNotAllowed(allow) => {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        _ => {}
    }
    response
}

fn json_failure(error: &str, request_id: &str) -> String {
    let mut body = serde_json::json!({ "ok": false });
    if !error.is_empty() {
        body["error"] = error.into();
        body["request_id"] = request_id.into();
    }
    body.to_string()
}

/// The `WWW-Authenticate` challenge for a realm (validated as printable
/// ASCII without quotes by the configuration).
pub fn challenge(realm: &str) -> HeaderValue {
    let text = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Basic"))
}

/// 200 with an empty body and the identity headers.
pub fn granted_headers(identity: &Identity, names: &IdentityHeaders) -> Response<Body> {
    let mut response = with_body(StatusCode::OK, Style::Plain, String::new());
    let headers = response.headers_mut();
    headers.insert(names.user.clone(), identity_value(&identity.username));
    headers.insert(names.email.clone(), identity_value(&identity.email));
    headers.insert(names.sub.clone(), identity_value(&identity.sub));
    headers.insert(names.login.clone(), identity_value(&identity.login));
    headers.insert(
        names.token_name.clone(),
        identity_value(&identity.token_name),
    );
    response
}

/// 200 with `{"ok":true,"user":{…}}`.
pub fn granted_json(identity: &Identity) -> Response<Body> {
    let body = serde_json::json!({
        "ok": true,
        "user": {
            "username": identity.username,
            "email": identity.email,
            "sub": identity.sub,
            "login": identity.login,
            "token_name": identity.token_name,
        }
    });
    with_body(StatusCode::OK, Style::Json, body.to_string())
}

pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    with_body(status, Style::Plain, format!("{body}\n"))
}

fn with_body(status: StatusCode, style: Style, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let kind = match style {
        Style::Plain => "text/plain; charset=utf-8",
        Style::Json => "application/json",
    };
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Identity values go out as UTF-8 bytes. They are never empty (a proxy
/// copying them must overwrite a client's forged header), and bytes a
/// header cannot carry are percent-encoded rather than dropped.
fn identity_value(value: &str) -> HeaderValue {
    if value.is_empty() {
        return HeaderValue::from_static("-");
    }
    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| {
        let mut encoded = Vec::with_capacity(value.len() * 3);
        for b in value.bytes() {
            match b {
                b'%' | 0x00..=0x1f | 0x7f => {
                    encoded.extend_from_slice(format!("%{b:02X}").as_bytes())
                }
                _ => encoded.push(b),
            }
        }
        HeaderValue::from_bytes(&encoded).unwrap_or_else(|_| HeaderValue::from_static("-"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_values_are_never_empty_and_keep_utf8() {
        assert_eq!(identity_value(""), "-");
        assert_eq!(identity_value("dörte").as_bytes(), "dörte".as_bytes());
        assert_eq!(identity_value("a\r\nb"), "a%0D%0Ab");
    }

    #[test]
    fn unauthorized_carries_the_challenge_and_no_body() {
        let challenge = challenge("mail");
        let r = failure(Failure::Unauthorized, Style::Plain, &challenge, "rid");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Basic realm=\"mail\", charset=\"UTF-8\""
        );
    }
}

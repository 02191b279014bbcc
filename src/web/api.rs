//! The token API and the endpoints the identity provider calls.
//!
//! `/api/v1/tokens` speaks JSON; `/api/tokens` keeps the Python
//! devicepasswords project's form fields and answers, so its scripts keep
//! working. Both accept a session cookie with a CSRF token (header
//! `X-CSRF-Token`, or the form field `state` where forms are read) or a
//! bearer access token from the provider.

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, TimeDelta};
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::html::Problem;
use super::pages::{expiry_date, token_problem};
use super::session::csrf_matches;
use super::{Principal, Web, field, form_fields, read_body};
use crate::http::response::Body;
use crate::oidc::OidcError;
use crate::store::{StoreError, TokenInfo, TokenRef, User};
use crate::tokens::check_username;

const OPENAPI: &str = include_str!("openapi.json");

pub fn openapi(web: &Web) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
    web.security_headers(&mut response, None);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// The caller: a bearer token when one is sent, else the session cookie.
/// `csrf` is the token presented with a state-changing session request
/// (`None` for reads).
async fn principal(
    web: &Web,
    headers: &HeaderMap,
    csrf: Option<Option<&str>>,
) -> Result<Principal, Problem> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Problem::Unauthorized)?;
        return bearer(web, token).await;
    }
    let session = web.session(headers).await?.ok_or(Problem::Unauthorized)?;
    if let Some(presented) = csrf
        && !csrf_matches(&session, presented)
    {
        tracing::info!(sub = %session.identity.sub, "API request refused: CSRF token missing or wrong");
        return Err(Problem::Csrf);
    }
    let identity = &session.identity;
    let user = User {
        sub: identity.sub.clone(),
        username: identity.username.clone(),
        email: identity.email.clone(),
    };
    Ok(Principal {
        user,
        is_admin: identity.is_admin,
    })
}

async fn bearer(web: &Web, token: &str) -> Result<Principal, Problem> {
    let oidc = web.oidc.as_ref().ok_or(Problem::Unauthorized)?;
    let who = match oidc.bearer(token).await {
        Ok(who) => who,
        Err(OidcError::Invalid(reason)) => {
            tracing::info!(%reason, "bearer token refused");
            return Err(Problem::Unauthorized);
        }
        Err(OidcError::Refused(why)) => return Err(Problem::Refused(why.to_string())),
        Err(OidcError::Unavailable) => return Err(Problem::SignInUnavailable),
    };
    let known = web
        .store
        .find_user(&who.sub)
        .await?
        .filter(|u| u.sub == who.sub);
    let user = match (known, who.username, who.email) {
        (Some(user), _, _) => user,
        (None, Some(username), Some(email)) if check_username(&username).is_ok() => {
            let user = User {
                sub: who.sub.clone(),
                username,
                email,
            };
            match web.store.upsert_user(&user).await {
                Ok(()) => user,
                Err(StoreError::Conflict(what)) => {
                    return Err(Problem::Refused(format!(
                        "another account already uses the same {what}"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        _ => {
            return Err(Problem::Refused(
                "sign in to the page once before using the API with this token".into(),
            ));
        }
    };
    Ok(Principal {
        user,
        is_admin: who.is_admin,
    })
}

fn csrf_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn token_json(info: &TokenInfo) -> serde_json::Value {
    json!({
        "id": info.token.id.to_string(),
        "name": info.token.name,
        "login": info.token.login,
        "expires": info.token.expires.map(rfc3339),
        "last_used": info.last_used.map(rfc3339),
        "sub": info.token.sub,
        "username": info.username,
    })
}

/// The tokens `who` may act on: their own, or everyone's for an admin
/// who asks for all.
async fn visible_tokens(web: &Web, who: &Principal, all: bool) -> Result<Vec<TokenInfo>, Problem> {
    if all && !who.is_admin {
        return Err(Problem::Refused(
            "only administrators can see everyone's device passwords".into(),
        ));
    }
    let sub = (!all).then_some(who.user.sub.as_str());
    Ok(web.store.list_tokens(sub).await?)
}

fn query_flag(request: &Request<Incoming>, name: &str) -> bool {
    request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .any(|(k, v)| k == name && matches!(&*v, "true" | "1" | "yes"))
        })
        .unwrap_or(false)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenRequest {
    name: String,
    #[serde(default)]
    expires: Option<String>,
}

/// An expiry given as a date (`2027-01-31`, start of that day UTC) or an
/// RFC 3339 time.
fn api_expiry(text: &str) -> Result<Option<NaiveDateTime>, Problem> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.naive_utc()));
    }
    expiry_date(text).map_err(|_| {
        Problem::BadRequest("expires must be a date (2027-01-31) or an RFC 3339 time".into())
    })
}

/// `GET`/`POST /api/v1/tokens`.
pub async fn tokens(web: &Web, request: Request<Incoming>) -> Result<Response<Body>, Problem> {
    if request.method() == Method::GET {
        let who = principal(web, request.headers(), None).await?;
        let all = query_flag(&request, "all");
        let list = visible_tokens(web, &who, all).await?;
        let tokens: Vec<_> = list.iter().map(token_json).collect();
        return Ok(web.json(StatusCode::OK, &json!({ "tokens": tokens })));
    }
    let csrf = csrf_header(request.headers());
    let who = principal(web, request.headers(), Some(csrf.as_deref())).await?;
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(Problem::UnsupportedMediaType);
    }
    let body = read_body(request).await?;
    let asked: NewTokenRequest = serde_json::from_slice(&body).map_err(|_| {
        Problem::BadRequest("send a JSON object {\"name\": \"…\", \"expires\": \"2027-01-31\"}; expires is optional".into())
    })?;
    let expires = match asked.expires.as_deref() {
        None | Some("") => None,
        Some(text) => api_expiry(text)?,
    };
    let created = match web.maker.create(&who.user, &asked.name, expires).await {
        Ok(created) => created,
        Err(e) => return Err(token_problem(e).map_or_else(|p| p, Problem::BadRequest)),
    };
    tracing::info!(sub = %who.user.sub, login = %created.token.login, "device password created through the API");
    let body = json!({
        "id": created.token.id.to_string(),
        "name": created.token.name,
        "login": created.token.login,
        "expires": created.token.expires.map(rfc3339),
        "password": created.password.expose(),
    });
    Ok(web.json(StatusCode::CREATED, &body))
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn delete(web: &Web, request: Request<Incoming>) -> Result<Response<Body>, Problem> {
    let csrf = csrf_header(request.headers());
    let who = principal(web, request.headers(), Some(csrf.as_deref())).await?;
    let id = request
        .uri()
        .path()
        .strip_prefix("/api/v1/tokens/")
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or(Problem::NotFound)?;
    delete_visible(web, &who, id).await?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    web.security_headers(&mut response, None);
    Ok(response)
}

/// Delete a token the caller owns (or any, for an admin); 404 otherwise,
/// so other users' token ids are not confirmed.
async fn delete_visible(web: &Web, who: &Principal, id: Uuid) -> Result<TokenInfo, Problem> {
    let list = visible_tokens(web, who, who.is_admin).await?;
    let info = list
        .into_iter()
        .find(|t| t.token.id == id)
        .ok_or(Problem::NotFound)?;
    if !web.store.delete_token(&TokenRef::Id(id)).await? {
        return Err(Problem::NotFound);
    }
    tracing::info!(by = %who.user.sub, owner = %info.token.sub, token = %id, "device password deleted through the API");
    Ok(info)
}

/// `/api/tokens`: the Python project's API. GET lists `{id, name,
/// expires}`; POST takes the form fields `name`, `expire` (a date) and
/// `state` (the CSRF token) and answers `{status, login, name, secret}`;
/// DELETE takes `id` and answers `{id, name}`. As there, an expiry past
/// `DP_MAX_EXPIRATION_DAYS` (or none) is set to the limit.
pub async fn legacy(web: &Web, request: Request<Incoming>) -> Result<Response<Body>, Problem> {
    let method = request.method().clone();
    if method == Method::GET {
        let who = principal(web, request.headers(), None).await?;
        let list = visible_tokens(web, &who, false).await?;
        let body: Vec<_> = list
            .iter()
            .map(|t| {
                json!({
                    "id": t.token.id.to_string(),
                    "name": t.token.name,
                    "expires": t.token.expires.map(http_date),
                })
            })
            .collect();
        return Ok(web.json(StatusCode::OK, &serde_json::Value::Array(body)));
    }
    if method != Method::POST && method != Method::DELETE {
        return Err(Problem::MethodNotAllowed("GET, POST, DELETE"));
    }
    let headers = request.headers().clone();
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(Problem::UnsupportedMediaType);
    }
    let fields = form_fields(&read_body(request).await?);
    let presented = field(&fields, "state")
        .map(str::to_string)
        .or_else(|| csrf_header(&headers));
    let who = principal(web, &headers, Some(presented.as_deref())).await?;
    if method == Method::DELETE {
        let id = field(&fields, "id")
            .and_then(|id| Uuid::try_parse(id).ok())
            .ok_or_else(|| Problem::BadRequest("id must be a token id".into()))?;
        let own = Principal {
            user: who.user.clone(),
            is_admin: false,
        };
        let info = delete_visible(web, &own, id).await?;
        let body = json!({ "id": info.token.id.to_string(), "name": info.token.name });
        return Ok(web.json(StatusCode::OK, &body));
    }
    let name = field(&fields, "name").unwrap_or_default();
    if name.trim().is_empty() {
        return Err(Problem::BadRequest("name is required".into()));
    }
    let asked =
        expiry_date(field(&fields, "expire").unwrap_or_default()).map_err(Problem::BadRequest)?;
    let expires = match web.max_expiration_days {
        Some(days) => {
            let limit = (web.clock.now() + TimeDelta::days(i64::from(days)))
                .date()
                .and_time(chrono::NaiveTime::MIN);
            Some(asked.map_or(limit, |at| at.min(limit)))
        }
        None => asked,
    };
    let created = match web.maker.create(&who.user, name, expires).await {
        Ok(created) => created,
        Err(e) => return Err(token_problem(e).map_or_else(|p| p, Problem::BadRequest)),
    };
    tracing::info!(sub = %who.user.sub, login = %created.token.login, "device password created through the API");
    let body = json!({
        "status": "ok",
        "login": created.token.login,
        "name": created.token.name,
        "secret": created.password.expose(),
    });
    Ok(web.json(StatusCode::OK, &body))
}

/// Dates as Flask writes them: `Thu, 31 Dec 2026 00:00:00 GMT`.
fn http_date(at: NaiveDateTime) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `GET /api/ping`: `{"pong": true}` while the session is valid.
pub async fn ping(web: &Web, headers: &HeaderMap) -> Result<Response<Body>, Problem> {
    let valid = web.session(headers).await?.is_some();
    Ok(web.json(StatusCode::OK, &json!({ "pong": valid })))
}

/// `POST /api/logout-backchannel` with form field `logout_token`: the
/// provider ends a session (OpenID Connect Back-Channel Logout 1.0).
pub async fn backchannel(web: &Web, request: Request<Incoming>) -> Result<Response<Body>, Problem> {
    let oidc = web.oidc.as_ref().ok_or(Problem::SignInNotConfigured)?;
    let fields = form_fields(&read_body(request).await?);
    let token = field(&fields, "logout_token")
        .ok_or_else(|| Problem::BadRequest("logout_token is required".into()))?;
    let asked = match oidc.logout_token(token).await {
        Ok(asked) => asked,
        Err(OidcError::Unavailable) => return Err(Problem::SignInUnavailable),
        Err(e) => {
            tracing::warn!(reason = %e, "back-channel logout refused");
            return Err(Problem::BadRequest("the logout token is not valid".into()));
        }
    };
    let ended = web
        .store
        .end_idp_session(asked.sid.as_deref(), asked.sub.as_deref())
        .await?;
    tracing::info!(sid = asked.sid.is_some(), sub = ?asked.sub, ended, "back-channel logout");
    Ok(empty_ok())
}

/// `GET /api/logout-frontchannel?iss=…&sid=…`: the provider's page ends
/// a session through the browser (OpenID Connect Front-Channel Logout).
pub async fn frontchannel(
    web: &Web,
    request: Request<Incoming>,
) -> Result<Response<Body>, Problem> {
    let oidc = web.oidc.as_ref().ok_or(Problem::SignInNotConfigured)?;
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    // Anyone can send this request: act only for a provider that uses
    // front-channel logout, and only with its issuer and a session id.
    if !oidc.frontchannel_logout_supported() {
        return Err(Problem::BadRequest(
            "the identity provider does not use front-channel logout".into(),
        ));
    }
    let (Some(iss), Some(sid)) = (field(&query, "iss"), field(&query, "sid")) else {
        return Err(Problem::BadRequest("iss and sid are required".into()));
    };
    if oidc.issuer().as_deref() != Some(iss) {
        return Err(Problem::BadRequest(
            "iss is not this service's identity provider".into(),
        ));
    }
    let ended = web.store.end_idp_session(Some(sid), None).await?;
    tracing::info!(ended, "front-channel logout");
    Ok(empty_ok())
}

/// 200 with no body and no caching (what the logout specifications ask).
fn empty_ok() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

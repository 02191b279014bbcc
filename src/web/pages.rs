//! The HTML pages: sign-in, the device-password list, create and delete.
//! Every page works without JavaScript; forms post back and the server
//! renders the result.

use askama::Template;
use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use uuid::Uuid;

use super::html::{CreatedView, IndexPage, LandingPage, Problem, TokenRow, set_cookie};
use super::session::{Session, csrf_matches};
use super::{Web, field, form_fields, read_body};
use crate::http::response::Body;
use crate::oidc::{Identity, OidcError};
use crate::store::{StoreError, TokenInfo, TokenRef, User};
use crate::tokens::{TokenError, check_username};

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");

pub fn asset(path: &str) -> Response<Body> {
    let (body, kind) = match path {
        "/static/app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => (CSS, "text/css; charset=utf-8"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn user_of(identity: &Identity) -> User {
    User {
        sub: identity.sub.clone(),
        username: identity.username.clone(),
        email: identity.email.clone(),
    }
}

/// `/`: the list for a signed-in user, else a page with a sign-in link.
pub async fn index(web: &Web, headers: &HeaderMap) -> Result<Response<Body>, Problem> {
    match web.session(headers).await? {
        Some(session) => render(web, &session, Form::default(), StatusCode::OK).await,
        None => landing(web),
    }
}

fn landing(web: &Web) -> Result<Response<Body>, Problem> {
    if !web.oidc.as_ref().is_some_and(|o| o.ready()) {
        return Err(Problem::SignInUnavailable);
    }
    let l = web.layout();
    let nonce = l.nonce.clone();
    let page = LandingPage {
        l,
        sub_heading: web.ui.heading_sub.clone(),
    };
    Ok(web.page(StatusCode::OK, &nonce, page.render()))
}

/// What the create form shows besides the list.
#[derive(Default)]
struct Form {
    created: Option<CreatedView>,
    error: Option<String>,
    name: String,
}

async fn render(
    web: &Web,
    session: &Session,
    form: Form,
    status: StatusCode,
) -> Result<Response<Body>, Problem> {
    let user = user_of(&session.identity);
    let mut tokens = web.store.list_tokens(Some(&user.sub)).await?;
    tokens.sort_by_key(|t| t.token.name.to_lowercase());
    let now = web.clock.now();
    let l = web.layout();
    let nonce = l.nonce.clone();
    let page = IndexPage {
        l,
        ui: &web.ui,
        csrf: &session.csrf,
        user: &user,
        is_admin: session.identity.is_admin,
        tokens: tokens.iter().map(|t| row(t, now)).collect(),
        created: form.created,
        error: form.error,
        form_name: form.name,
        min_date: (now.date() + TimeDelta::days(1)).to_string(),
        max_date: web
            .max_expiration_days
            .map(|d| (now + TimeDelta::days(i64::from(d))).date().to_string()),
    };
    Ok(web.page(status, &nonce, page.render()))
}

fn row(info: &TokenInfo, now: NaiveDateTime) -> TokenRow {
    let expires = match info.token.expires {
        None => "never".to_string(),
        Some(at) if at <= now => format!("{} (expired)", when(at)),
        Some(at) => when(at),
    };
    TokenRow {
        id: info.token.id.to_string(),
        name: info.token.name.clone(),
        login: info.token.login.clone(),
        expires,
        last_used: info.last_used.map_or_else(|| "never".to_string(), when),
    }
}

/// A date, with the time when it is not midnight (UTC).
pub fn when(at: NaiveDateTime) -> String {
    if at.time() == chrono::NaiveTime::MIN {
        at.date().to_string()
    } else {
        format!("{} UTC", at.format("%Y-%m-%d %H:%M"))
    }
}

/// `/login`: without a code, start signing in; with one, finish.
pub async fn login(
    web: &Web,
    request: &Request<Incoming>,
    request_id: &str,
) -> Result<Response<Body>, Problem> {
    let Some(oidc) = &web.oidc else {
        return Err(Problem::SignInNotConfigured);
    };
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if let Some(error) = field(&query, "error") {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        tracing::info!(%error, "the identity provider answered with an error");
        let mut response = web.problem_page(
            &Problem::SignInFailed(format!(
                "The identity provider did not sign you in ({error})."
            )),
            request_id,
        );
        if let Some(state) = field(&query, "state") {
            set_cookie(&mut response, &web.clear_cookie(&web.login_cookie(state)));
        }
        return Ok(response);
    }
    let Some(code) = field(&query, "code") else {
        if !oidc.ready() {
            return Err(Problem::SignInUnavailable);
        }
        let (url, pending) = oidc.begin_login().map_err(sign_in_problem)?;
        let cookie = web.save_pending(&pending).await?;
        return Ok(web.see_other(url.as_str(), &[cookie]));
    };
    let stale = || {
        Problem::SignInFailed(
            "This sign-in was started in another browser or window, or took longer than \
             10 minutes. Start again."
                .into(),
        )
    };
    let state = field(&query, "state").unwrap_or_default();
    let pending = web
        .take_pending(request.headers(), state)
        .await?
        .ok_or_else(stale)?;
    if !constant_time_eq(state, &pending.state) {
        tracing::info!("sign-in refused: state does not match");
        return Err(stale());
    }
    let identity = oidc
        .finish_login(code, &pending)
        .await
        .map_err(sign_in_problem)?;
    if let Err(e) = check_username(&identity.username) {
        tracing::info!(sub = %identity.sub, reason = %e, "sign-in refused: unusable username");
        return Err(Problem::Refused(e.to_string()));
    }
    match web.store.upsert_user(&user_of(&identity)).await {
        Ok(()) => {}
        Err(StoreError::Conflict(what)) => {
            tracing::warn!(sub = %identity.sub, what, "sign-in refused: another user has the same value");
            return Err(Problem::Refused(format!(
                "another account already uses the same {what}; ask your administrator"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(sub = %identity.sub, username = %identity.username, "signed in");
    web.forget_session(request.headers()).await?;
    let cookie = web.create_session(identity).await?;
    let done = web.clear_cookie(&web.login_cookie(state));
    Ok(web.see_other(&web.url(""), &[cookie, done]))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn sign_in_problem(e: OidcError) -> Problem {
    match e {
        OidcError::Unavailable => Problem::SignInUnavailable,
        OidcError::Refused(why) => {
            tracing::info!(reason = %why, "sign-in refused by an access rule");
            Problem::Refused(why.to_string())
        }
        OidcError::Invalid(reason) if reason.contains("invalid_client") => {
            tracing::error!(%reason, "sign-in failed: the provider refuses the client credentials");
            Problem::SignInFailed(
                "The identity provider does not accept this service's client id or secret. \
                 Tell your administrator."
                    .into(),
            )
        }
        OidcError::Invalid(reason) => {
            tracing::warn!(%reason, "sign-in failed: the provider's answer is not valid");
            Problem::SignInFailed(
                "The identity provider's answer could not be verified. Start again; if this \
                 keeps happening, tell your administrator."
                    .into(),
            )
        }
    }
}

/// A signed-in session and the fields of a form posted with its CSRF
/// token (field `state`, as in the Python project, or `X-CSRF-Token`).
async fn form_session(
    web: &Web,
    request: Request<Incoming>,
) -> Result<(Session, Vec<(String, String)>), Problem> {
    let session = web
        .session(request.headers())
        .await?
        .ok_or(Problem::Unauthorized)?;
    let header = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fields = form_fields(&read_body(request).await?);
    let presented = field(&fields, "state").map(str::to_string).or(header);
    if !csrf_matches(&session, presented.as_deref()) {
        tracing::info!(sub = %session.identity.sub, "form refused: CSRF token missing or wrong");
        return Err(Problem::Csrf);
    }
    Ok((session, fields))
}

/// `POST /logout`: end the session here, then at the provider.
pub async fn logout(web: &Web, request: Request<Incoming>) -> Result<Response<Body>, Problem> {
    if web.session(request.headers()).await?.is_none() {
        return Ok(web.see_other(&web.url(""), &[web.clear_cookie(web.names.session)]));
    }
    let (session, _) = form_session(web, request).await?;
    web.end_session(&session).await?;
    tracing::info!(sub = %session.identity.sub, "signed out");
    let target = web
        .oidc
        .as_ref()
        .and_then(|o| o.logout_url(&session.identity))
        .map_or_else(|| web.url(""), |u| u.to_string());
    Ok(web.see_other(&target, &[web.clear_cookie(web.names.session)]))
}

/// A date field (`YYYY-MM-DD`) as the start of that day, UTC: a token
/// "expires on" that day, as in the Python project.
pub fn expiry_date(text: &str) -> Result<Option<NaiveDateTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| Some(d.and_time(chrono::NaiveTime::MIN)))
        .map_err(|_| "The expiry date must be a date such as 2027-01-31.".to_string())
}

/// `POST /tokens`: create a device password and show it once.
pub async fn create(web: &Web, request: Request<Incoming>) -> Result<Response<Body>, Problem> {
    let (session, fields) = form_session(web, request).await?;
    let name = field(&fields, "name").unwrap_or_default().to_string();
    let expires = match expiry_date(field(&fields, "expires").unwrap_or_default()) {
        Ok(e) => e,
        Err(error) => return form_error(web, &session, name, error).await,
    };
    let user = user_of(&session.identity);
    match web.maker.create(&user, &name, expires).await {
        Ok(created) => {
            tracing::info!(sub = %user.sub, login = %created.token.login, "device password created");
            // The token's own login always works; a username login
            // tries only the most recently used few of a user's tokens.
            let login = created.token.login.clone();
            let view = CreatedView {
                name: created.token.name.clone(),
                login,
                password: created.password.expose().clone(),
                expires: created.token.expires.map(when),
            };
            let form = Form {
                created: Some(view),
                ..Form::default()
            };
            render(web, &session, form, StatusCode::OK).await
        }
        Err(e) => match token_problem(e) {
            Ok(message) => form_error(web, &session, name, message).await,
            Err(problem) => Err(problem),
        },
    }
}

/// A user-fixable creation error as text, or the problem to answer.
pub fn token_problem(e: TokenError) -> Result<String, Problem> {
    match e {
        TokenError::BadName => {
            Ok("Give the device a name of 1 to 200 characters, without line breaks.".into())
        }
        TokenError::ExpiryInPast => Ok("The expiry date must be in the future.".into()),
        TokenError::ExpiryTooFar(days) => Ok(format!(
            "Device passwords may live at most {days} days; choose an earlier date."
        )),
        TokenError::NoFreeLogin => Ok(
            "No free login name is left for your account; delete an old device password.".into(),
        ),
        TokenError::Store(e) => Err(e.into()),
        TokenError::Hash(e) => {
            tracing::error!(error = %e, "cannot hash a new password");
            Err(Problem::Unavailable)
        }
    }
}

async fn form_error(
    web: &Web,
    session: &Session,
    name: String,
    error: String,
) -> Result<Response<Body>, Problem> {
    let form = Form {
        error: Some(error),
        name,
        ..Form::default()
    };
    render(web, session, form, StatusCode::BAD_REQUEST).await
}

/// `POST /tokens/{id}/delete`: delete one of the user's own tokens.
pub async fn delete(web: &Web, request: Request<Incoming>) -> Result<Response<Body>, Problem> {
    let id = request
        .uri()
        .path()
        .strip_prefix("/tokens/")
        .and_then(|rest| rest.strip_suffix("/delete"))
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or(Problem::NotFound)?;
    let (session, _) = form_session(web, request).await?;
    let sub = &session.identity.sub;
    let owned = web.store.list_tokens(Some(sub)).await?;
    if !owned.iter().any(|t| t.token.id == id) {
        return Err(Problem::NotFound);
    }
    web.store.delete_token(&TokenRef::Id(id)).await?;
    tracing::info!(%sub, token = %id, "device password deleted");
    Ok(web.see_other(&web.url(""), &[]))
}

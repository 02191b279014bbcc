//! Endpoints in the dialects of consumers that cannot use `/auth` or
//! `/verify` as they are: FreeRADIUS `rlm_rest`, RabbitMQ's HTTP auth
//! backend, EMQX 5 HTTP authentication and mosquitto-go-auth.
//!
//! | path | consumer | answer |
//! |---|---|---|
//! | `/integrations/radius` | FreeRADIUS `rlm_rest`, `auth = basic` | 204 valid; 401 empty body |
//! | `/integrations/rabbitmq/user` | RabbitMQ `user_path` | 200 `allow` / 200 `deny` |
//! | `/integrations/rabbitmq/{vhost,resource,topic}` | RabbitMQ authz | 200 `allow` (policy) |
//! | `/integrations/emqx` | EMQX 5 `password_based:http` | 200 `{"result":"allow"}` / `"deny"` |
//! | `/integrations/mosquitto/user` | go-auth `http_getuser_uri` | 200 `{"ok":true}` / 401 |
//! | `/integrations/mosquitto/superuser` | go-auth `http_superuser_uri` | always 401 |
//! | `/integrations/mosquitto/acl` | go-auth `http_aclcheck_uri` | 200 (policy) |
//!
//! Every endpoint answers 503 when devicepass cannot decide (database
//! down, hashing queue full): RabbitMQ and mosquitto-go-auth log it as an
//! error, EMQX ignores the answer, `rlm_rest` returns `fail`. None of
//! them ever reads that as a yes.
//!
//! The password checks are those of `/verify`: unknown user, expired token
//! and wrong password get the same answer after the same work. Broker
//! fields come from the body when its `Content-Type` is JSON or a form,
//! otherwise from the query string; bodies over 16 KiB are refused (413).
//! Allowed methods are GET, POST and PUT; RADIUS accepts any method and
//! reads only the Basic credentials `rlm_rest` sends.
//!
//! Authorization without a password follows two fixed policies:
//!
//! - RabbitMQ vhost/resource/topic and mosquitto ACL checks allow any
//!   well-formed, non-empty username. Both brokers ask only about a client
//!   that already logged in, and with this backend configured for both
//!   authentication and authorization that login was ours. Looking the
//!   name up would add nothing a password had not already proved, would
//!   cost a query per check, and would tell anyone who can reach this
//!   port which usernames exist. Device passwords therefore grant full
//!   use of the broker's data plane; per-topic rules need another
//!   authorizer. Never pair these paths with a different authentication
//!   backend: they would then allow whoever that backend let in.
//! - mosquitto superuser: always denied. RabbitMQ logins get no tags, so
//!   a device password never opens the management UI or API. EMQX gets
//!   `"is_superuser": false`.
//!
//! Example configurations are in `deploy/freeradius`, `deploy/rabbitmq`,
//! `deploy/emqx` and `deploy/mosquitto`.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PROXY_AUTHORIZATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::App;
use super::response::{self, Body, Failure, Style};
use crate::secret::Secret;
use crate::verify::Outcome;
use crate::verify::credentials::{self, Credentials, CredentialsError};

/// Largest body read, as for `/verify`.
const MAX_BODY: usize = 16 * 1024;

/// Methods the broker endpoints accept (go-auth may use PUT).
const METHODS: &str = "GET, POST, PUT";

/// Who is asking; decides the answer's dialect and the log's service name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consumer {
    Radius,
    Rabbitmq,
    Emqx,
    Mosquitto,
}

/// A question asked without a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Allowed for any well-formed, non-empty username.
    NamedUser,
    /// Never allowed.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Check a username and password.
    Login(Consumer),
    /// Answer an authorization question by policy.
    Grant(Consumer, Policy),
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        use Consumer::*;
        let endpoint = match path.strip_prefix("/integrations/")? {
            "radius" => Endpoint::Login(Radius),
            "rabbitmq/user" => Endpoint::Login(Rabbitmq),
            "rabbitmq/vhost" | "rabbitmq/resource" | "rabbitmq/topic" => {
                Endpoint::Grant(Rabbitmq, Policy::NamedUser)
            }
            "emqx" => Endpoint::Login(Emqx),
            "mosquitto/user" => Endpoint::Login(Mosquitto),
            "mosquitto/superuser" => Endpoint::Grant(Mosquitto, Policy::Never),
            "mosquitto/acl" => Endpoint::Grant(Mosquitto, Policy::NamedUser),
            _ => return None,
        };
        Some(endpoint)
    }
}

pub async fn dispatch(app: &App, request: Request<Incoming>, id: &str) -> Response<Body> {
    match Endpoint::from_path(request.uri().path()) {
        Some(Endpoint::Login(Consumer::Radius)) => radius(app, request.headers(), id).await,
        Some(Endpoint::Login(consumer)) => login(app, request, consumer, id).await,
        Some(Endpoint::Grant(consumer, policy)) => grant(app, request, consumer, policy, id).await,
        None => response::failure(Failure::NotFound, Style::Plain, &app.challenge, id),
    }
}

/// `rlm_rest` sends User-Name:User-Password as Basic credentials.
async fn radius(app: &App, headers: &HeaderMap, request_id: &str) -> Response<Body> {
    let value = headers
        .get(AUTHORIZATION)
        .or_else(|| headers.get(PROXY_AUTHORIZATION));
    let parsed = match value {
        Some(v) => credentials::parse_basic(v.as_bytes()).map_err(Malformed::from),
        None => Err(Malformed::from(CredentialsError::Missing)),
    };
    let granted = decide(app, parsed, Consumer::Radius.service()).await;
    Consumer::Radius.answer(app, granted, request_id)
}

async fn login(
    app: &App,
    request: Request<Incoming>,
    consumer: Consumer,
    request_id: &str,
) -> Response<Body> {
    let sent = match Sent::read(request).await {
        Ok(sent) => sent,
        Err(f) => return response::failure(f, consumer.style(), &app.challenge, request_id),
    };
    let parsed = sent.fields().and_then(Fields::credentials);
    let granted = decide(app, parsed, consumer.service()).await;
    consumer.answer(app, granted, request_id)
}

async fn grant(
    app: &App,
    request: Request<Incoming>,
    consumer: Consumer,
    policy: Policy,
    request_id: &str,
) -> Response<Body> {
    let sent = match Sent::read(request).await {
        Ok(sent) => sent,
        Err(f) => return response::failure(f, consumer.style(), &app.challenge, request_id),
    };
    let allowed = match policy {
        Policy::NamedUser => sent.fields().is_ok_and(|f| f.names_someone()),
        Policy::Never => false,
    };
    let service = consumer.service();
    tracing::debug!(
        service,
        ?policy,
        allowed,
        "authorization answered by policy"
    );
    consumer.answer(app, Ok(allowed), request_id)
}

impl Consumer {
    fn service(self) -> &'static str {
        match self {
            Consumer::Radius => "radius",
            Consumer::Rabbitmq => "rabbitmq",
            Consumer::Emqx => "emqx",
            Consumer::Mosquitto => "mosquitto",
        }
    }

    /// Style of failure bodies: JSON where the consumer parses JSON.
    fn style(self) -> Style {
        match self {
            Consumer::Radius | Consumer::Rabbitmq => Style::Plain,
            Consumer::Emqx | Consumer::Mosquitto => Style::Json,
        }
    }

    /// The answer in this consumer's dialect: its "yes", its "no", or the
    /// shared failure response (5xx, 413, 405, or a plain 401 "no").
    fn answer(self, app: &App, granted: Result<bool, Failure>, id: &str) -> Response<Body> {
        let failure = match granted {
            Ok(true) => return self.allow(),
            Ok(false) => match self.deny_with_200() {
                Some(no) => return no,
                None => Failure::Unauthorized,
            },
            Err(f) => f,
        };
        // 401 bodies are empty (RADIUS) or `{"ok":false}`: never HTML.
        response::failure(failure, self.style(), &app.challenge, id)
    }

    fn allow(self) -> Response<Body> {
        match self {
            // rlm_rest: 204 is "ok" without a body to decode.
            Consumer::Radius => reply(StatusCode::NO_CONTENT, None, ""),
            // RabbitMQ strips spaces only: no trailing newline.
            Consumer::Rabbitmq => reply(StatusCode::OK, TEXT, "allow"),
            Consumer::Emqx => reply(StatusCode::OK, JSON, EMQX_ALLOW),
            // A JSON body serves go-auth's "status" and "json" modes alike.
            Consumer::Mosquitto => reply(StatusCode::OK, JSON, r#"{"ok":true,"error":""}"#),
        }
    }

    /// Consumers that read any non-200 status as an error or as "ignore"
    /// must hear "no" as a 200.
    fn deny_with_200(self) -> Option<Response<Body>> {
        match self {
            Consumer::Rabbitmq => Some(reply(StatusCode::OK, TEXT, "deny")),
            Consumer::Emqx => Some(reply(StatusCode::OK, JSON, r#"{"result":"deny"}"#)),
            Consumer::Radius | Consumer::Mosquitto => None,
        }
    }
}

const JSON: Option<&str> = Some("application/json");
const TEXT: Option<&str> = Some("text/plain; charset=utf-8");
const EMQX_ALLOW: &str = r#"{"result":"allow","is_superuser":false}"#;

/// A yes or no in a consumer's own format. Failures (5xx, 413, 405 and
/// 401) go through `response::failure`; only these fixed verdict bodies,
/// which its helpers cannot shape (`text` adds a newline that RabbitMQ
/// would reject), are built here.
fn reply(status: StatusCode, kind: Option<&'static str>, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(kind) = kind {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why a request carried no usable credentials. Never holds a value.
#[derive(Debug, thiserror::Error)]
enum Malformed {
    #[error("request body is not a JSON object")]
    Json,
    #[error("request body could not be read")]
    Unreadable,
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

/// `Ok(true)` when the password is valid; the shared verification path.
async fn decide(
    app: &App,
    parsed: Result<Credentials, Malformed>,
    service: &'static str,
) -> Result<bool, Failure> {
    let outcome = super::routes::decide(app, parsed, service).await?;
    Ok(matches!(outcome, Outcome::Granted(_)))
}

/// How the fields of a broker request are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
    Query,
}

/// A broker request as received: where its fields are, and their bytes
/// (`None` when the body broke off).
struct Sent {
    encoding: Encoding,
    bytes: Option<Bytes>,
}

impl Sent {
    async fn read(request: Request<Incoming>) -> Result<Sent, Failure> {
        if ![Method::GET, Method::POST, Method::PUT].contains(request.method()) {
            return Err(Failure::MethodNotAllowed(METHODS));
        }
        let encoding = encoding_of(request.headers());
        if encoding == Encoding::Query {
            let query = request.uri().query().unwrap_or_default();
            let bytes = Some(Bytes::copy_from_slice(query.as_bytes()));
            return Ok(Sent { encoding, bytes });
        }
        let bytes = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => Some(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::PayloadTooLarge);
            }
            Err(_) => None,
        };
        Ok(Sent { encoding, bytes })
    }

    fn fields(&self) -> Result<Fields, Malformed> {
        let bytes = self.bytes.as_ref().ok_or(Malformed::Unreadable)?;
        match self.encoding {
            Encoding::Json => Fields::from_json(bytes),
            Encoding::Form | Encoding::Query => Ok(Fields::from_form(bytes)),
        }
    }
}

/// JSON or a form by media type; anything else (or none) means the
/// fields are in the query string, as RabbitMQ's GET sends them.
fn encoding_of(headers: &HeaderMap) -> Encoding {
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media == "application/json" || media.ends_with("+json") {
        Encoding::Json
    } else if media == "application/x-www-form-urlencoded" {
        Encoding::Form
    } else {
        Encoding::Query
    }
}

/// The fields devicepass reads; everything else a broker sends is ignored.
#[derive(Default)]
struct Fields {
    username: Option<String>,
    password: Option<Secret<String>>,
}

impl Fields {
    fn from_json(bytes: &[u8]) -> Result<Fields, Malformed> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|_| Malformed::Json)?;
        let text = |key: &str| map.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(Fields {
            username: text("username"),
            password: text("password").map(Secret::new),
        })
    }

    /// The first of repeated fields wins. Invalid UTF-8 is decoded lossily;
    /// such a password cannot match a stored one.
    fn from_form(bytes: &[u8]) -> Fields {
        let mut fields = Fields::default();
        for (key, value) in url::form_urlencoded::parse(bytes) {
            match key.as_ref() {
                "username" if fields.username.is_none() => {
                    fields.username = Some(value.into_owned());
                }
                "password" if fields.password.is_none() => {
                    fields.password = Some(Secret::new(value.into_owned()));
                }
                _ => {}
            }
        }
        fields
    }

    /// A missing field counts as empty: refused after a dummy hash.
    fn credentials(self) -> Result<Credentials, Malformed> {
        let username = self.username.unwrap_or_default();
        let password = self.password.map(Secret::into_inner).unwrap_or_default();
        Ok(credentials::check_fields(&username, &password)?)
    }

    fn names_someone(&self) -> bool {
        self.username
            .as_deref()
            .is_some_and(|u| !u.is_empty() && !u.chars().any(char::is_control))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> (String, String) {
        let f = Fields::from_form(text.as_bytes());
        let password = f.password.map(Secret::into_inner).unwrap_or_default();
        (f.username.unwrap_or_default(), password)
    }

    #[test]
    fn form_fields_are_decoded_and_the_first_wins() {
        let got = form("username=alice%23042&password=a+b%3Ac&username=eve");
        assert_eq!(got, ("alice#042".into(), "a b:c".into()));
    }

    #[test]
    fn json_fields_must_be_strings_in_an_object() {
        let f = Fields::from_json(br#"{"username":7,"password":"pw","acc":1}"#);
        assert!(f.is_ok_and(|f| f.username.is_none() && f.password.is_some()));
        assert!(Fields::from_json(b"[1,2]").is_err());
        assert!(Fields::from_json(b"username=a").is_err());
    }

    #[test]
    fn encoding_follows_the_media_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(encoding_of(&headers), Encoding::Query);
        let json = HeaderValue::from_static("Application/JSON; charset=utf-8");
        headers.insert(CONTENT_TYPE, json);
        assert_eq!(encoding_of(&headers), Encoding::Json);
        let form = HeaderValue::from_static("application/x-www-form-urlencoded");
        headers.insert(CONTENT_TYPE, form);
        assert_eq!(encoding_of(&headers), Encoding::Form);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(encoding_of(&headers), Encoding::Query);
    }

    #[test]
    fn policy_needs_a_clean_nonempty_username() {
        let named = |u: Option<&str>| {
            let fields = Fields {
                username: u.map(str::to_owned),
                password: None,
            };
            fields.names_someone()
        };
        assert!(named(Some("alice#042")));
        assert!(!named(Some("")));
        assert!(!named(Some("al\nice")));
        assert!(!named(None));
    }

    #[test]
    fn only_known_paths_are_endpoints() {
        let radius = Endpoint::from_path("/integrations/radius");
        assert_eq!(radius, Some(Endpoint::Login(Consumer::Radius)));
        let superuser = Endpoint::from_path("/integrations/mosquitto/superuser");
        assert_eq!(
            superuser,
            Some(Endpoint::Grant(Consumer::Mosquitto, Policy::Never))
        );
        for path in [
            "/integrations/",
            "/integrations/rabbitmq",
            "/integrations/emqx/",
        ] {
            assert_eq!(Endpoint::from_path(path), None, "{path}");
        }
    }
}

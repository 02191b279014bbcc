//! Every setting: its TOML name, its environment names, its default and
//! how it is parsed. This table is the reference the README documents.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;

use super::sources::{Raw, Sources, error};
use super::{Config, ConfigError, ConfigErrors, IdentityHeaders, LogFormat};
use super::{OidcConfig, UiConfig, WebConfig};
use crate::hash::Scheme;
use crate::store::DatabaseUrl;

/// One setting. `env` lists its variables, the preferred name first;
/// `secret` settings also accept `<VAR>_FILE` naming a file to read.
pub struct Key {
    pub name: &'static str,
    pub env: &'static [&'static str],
    pub secret: bool,
    pub default: &'static str,
    pub help: &'static str,
}

const fn key(
    name: &'static str,
    env: &'static [&'static str],
    default: &'static str,
    help: &'static str,
) -> Key {
    Key {
        name,
        env,
        secret: false,
        default,
        help,
    }
}

pub const KEYS: &[Key] = &[
    Key {
        name: "database_url",
        env: &["DP_DATABASE_URL", "DP_SQLALCHEMY_DATABASE_URI"],
        secret: true,
        default: "sqlite:///devicepass.db",
        help: "database URL (SQLAlchemy forms accepted)",
    },
    key(
        "database_pool_size",
        &["DP_DATABASE_POOL_SIZE"],
        "4",
        "database connections per process",
    ),
    key(
        "database_connect_timeout",
        &["DP_DATABASE_CONNECT_TIMEOUT"],
        "5s",
        "longest wait for a database connection",
    ),
    key(
        "auto_migrate",
        &["DP_AUTO_MIGRATE"],
        "true",
        "create or update the schema when serving starts",
    ),
    key(
        "store_timeout",
        &["DP_STORE_TIMEOUT"],
        "5s",
        "longest wait for a database answer before 503",
    ),
    key(
        "listen",
        &["DP_LISTEN"],
        "127.0.0.1:8080",
        "address and port to serve HTTP on",
    ),
    key(
        "metrics_listen",
        &["DP_METRICS_LISTEN"],
        "",
        "separate address for /metrics (empty: served on listen)",
    ),
    key(
        "unix_socket",
        &["DP_UNIX_SOCKET"],
        "",
        "Unix socket path to serve on as well (empty: none)",
    ),
    key(
        "unix_socket_mode",
        &["DP_UNIX_SOCKET_MODE"],
        "660",
        "permissions of the Unix socket, in octal",
    ),
    key(
        "realm",
        &["DP_REALM"],
        "devicepass",
        "realm in the WWW-Authenticate challenge",
    ),
    key(
        "header_user",
        &["DP_HEADER_USER"],
        "X-Auth-User",
        "identity header: username",
    ),
    key(
        "header_email",
        &["DP_HEADER_EMAIL"],
        "X-Auth-Email",
        "identity header: email",
    ),
    key(
        "header_sub",
        &["DP_HEADER_SUB"],
        "X-Auth-Sub",
        "identity header: subject",
    ),
    key(
        "header_login",
        &["DP_HEADER_LOGIN"],
        "X-Auth-Login",
        "identity header: token login",
    ),
    key(
        "header_token_name",
        &["DP_HEADER_TOKEN_NAME"],
        "X-Auth-Token-Name",
        "identity header: token name",
    ),
    key(
        "password_hash",
        &["DP_PASSWORD_HASH"],
        "argon2",
        "scheme for new passwords and prefix-less stored values",
    ),
    key(
        "max_expiration_days",
        &["DP_MAX_EXPIRATION_DAYS"],
        "0",
        "longest token lifetime in days (0: no limit)",
    ),
    key(
        "wordlist",
        &["DP_WORDLIST"],
        "",
        "word list file for generated passwords (empty: built-in EFF list)",
    ),
    key(
        "cache_size",
        &["DP_CACHE_SIZE"],
        "10000",
        "verified-hash cache entries (0 disables)",
    ),
    key(
        "cache_ttl",
        &["DP_CACHE_TTL"],
        "5m",
        "how long a verified hash stays cached",
    ),
    key(
        "hash_workers",
        &["DP_HASH_WORKERS"],
        "",
        "threads for slow hashing (empty: one per core)",
    ),
    key(
        "hash_queue",
        &["DP_HASH_QUEUE"],
        "64",
        "hash checks that may wait before requests get 503",
    ),
    key(
        "max_candidates",
        &["DP_MAX_CANDIDATES"],
        "5",
        "tokens tried when logging in with a username or email",
    ),
    key(
        "use_flush_interval",
        &["DP_USE_FLUSH_INTERVAL"],
        "10s",
        "how often token uses are written",
    ),
    key(
        "shutdown_grace",
        &["DP_SHUTDOWN_GRACE"],
        "30s",
        "time in-flight requests get on shutdown",
    ),
    key(
        "public_url",
        &["DP_PUBLIC_URL"],
        "",
        "address users open the page at, such as https://devicepass.example.org",
    ),
    key(
        "oidc_discovery_url",
        &["DP_OIDC_DISCOVERY_URL"],
        "",
        "identity provider's discovery URL (empty: verification only)",
    ),
    key(
        "oidc_client_id",
        &["DP_OIDC_CLIENT_ID"],
        "",
        "client id registered at the identity provider",
    ),
    Key {
        name: "oidc_client_secret",
        env: &["DP_OIDC_CLIENT_SECRET"],
        secret: true,
        default: "",
        help: "client secret (empty: a public client using PKCE only)",
    },
    key(
        "oidc_scope",
        &["DP_OIDC_SCOPE"],
        "openid email profile",
        "scopes to request, space-separated; must include openid",
    ),
    key(
        "oidc_claim_email",
        &["DP_OIDC_CLAIM_EMAIL"],
        "email",
        "claim holding the email address",
    ),
    key(
        "oidc_claim_email_verified",
        &["DP_OIDC_CLAIM_EMAIL_VERIFIED"],
        "email_verified",
        "claim that must be true (empty: accept unverified addresses)",
    ),
    key(
        "oidc_claim_username",
        &["DP_OIDC_CLAIM_USERNAME"],
        "preferred_username",
        "claim holding the username",
    ),
    key(
        "oidc_claims_from_profile",
        &["DP_OIDC_CLAIMS_FROM_PROFILE"],
        "false",
        "read claims missing from the ID token from the userinfo endpoint",
    ),
    key(
        "oidc_required_claim",
        &["DP_OIDC_REQUIRED_CLAIM"],
        "",
        "claim a user must have to sign in (empty: none)",
    ),
    key(
        "oidc_required_claim_value",
        &["DP_OIDC_REQUIRED_CLAIM_VALUE"],
        "",
        "value the required claim must have (empty: any)",
    ),
    key(
        "oidc_group_membership",
        &["DP_OIDC_GROUP_MEMBERSHIP"],
        "",
        "group a user must be in to sign in (empty: none)",
    ),
    key(
        "oidc_group_claim",
        &["DP_OIDC_GROUP_CLAIM"],
        "groups",
        "claim holding the user's groups (a JSON array)",
    ),
    key(
        "admin_group",
        &["DP_ADMIN_GROUP"],
        "",
        "group whose members may list and delete everyone's tokens",
    ),
    key(
        "oidc_api_audience",
        &["DP_OIDC_API_AUDIENCE"],
        "",
        "audience bearer access tokens must carry (empty: the client id)",
    ),
    key(
        "oidc_algorithms",
        &["DP_OIDC_ALGORITHMS"],
        "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA",
        "signature algorithms accepted on tokens from the provider",
    ),
    key(
        "session_lifetime",
        &["DP_SESSION_LIFETIME"],
        "12h",
        "longest a page session lasts, refreshes included",
    ),
    key(
        "cookie_secure",
        &["DP_COOKIE_SECURE"],
        "true",
        "mark cookies Secure (turn off only for plain-http local use)",
    ),
    key(
        "hsts",
        &["DP_HSTS"],
        "",
        "Strict-Transport-Security max-age for pages, such as 365d (empty: not sent)",
    ),
    key(
        "ui_heading",
        &["DP_UI_HEADING"],
        "Device passwords",
        "page heading",
    ),
    key(
        "ui_heading_sub",
        &["DP_UI_HEADING_SUB"],
        "",
        "text after the heading (empty: none)",
    ),
    key(
        "ui_show_subject",
        &["DP_UI_SHOW_SUBJECT"],
        "true",
        "show the user's subject identifier below the heading",
    ),
    key(
        "ui_show_last_used",
        &["DP_UI_SHOW_LAST_USED"],
        "true",
        "show when each device password was last used",
    ),
    key(
        "ui_logins",
        &["DP_UI_LOGINS"],
        "false",
        "show each device password's own login name",
    ),
    key("log_format", &["DP_LOG_FORMAT"], "text", "text or json"),
    key(
        "log_level",
        &["DP_LOG_LEVEL"],
        "info",
        "level or filter (error, warn, info, debug, trace)",
    ),
];

/// Reads each setting once, collecting every error instead of stopping.
struct Reader<'a> {
    values: &'a HashMap<&'static str, Raw>,
    /// File values overridden by the environment: checked all the same,
    /// so a bad config file is reported even while it is overridden.
    shadowed: &'a [(&'static str, Raw)],
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    /// The name a setting was given under, for error messages.
    fn origin(&self, name: &str) -> String {
        self.values
            .get(name)
            .map_or_else(|| format!("default of {name}"), |raw| raw.origin.clone())
    }

    /// Where a required setting should be given: its origin when it was
    /// given, else its preferred variable.
    fn origin_or_variable(&self, name: &str) -> String {
        match self.values.get(name) {
            Some(raw) => raw.origin.clone(),
            None => KEYS
                .iter()
                .find(|k| k.name == name)
                .and_then(|k| k.env.first())
                .map_or_else(|| name.to_string(), |v| (*v).to_string()),
        }
    }

    fn get<T>(&mut self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let (value, origin) = match self.values.get(name) {
            Some(raw) => (raw.value.as_str(), raw.origin.clone()),
            None => (default_of(name), format!("default of {name}")),
        };
        for (_, raw) in self.shadowed.iter().filter(|(key, _)| *key == name) {
            if let Err(reason) = parse(raw.value.trim()) {
                self.errors.push(error(&raw.origin, reason));
            }
        }
        match parse(value.trim()) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.errors.push(error(&origin, reason));
                None
            }
        }
    }
}

impl Reader<'_> {
    /// `/metrics` on its own listener needs an address of its own; port 0
    /// (any free port) never clashes.
    fn check_distinct(&mut self, name: &str, main: SocketAddr, other: SocketAddr) {
        if other == main && other.port() != 0 {
            let origin = self
                .values
                .get(name)
                .map_or(name, |raw| raw.origin.as_str());
            let reason = "must differ from listen".to_string();
            self.errors.push(error(origin, reason));
        }
    }
}

fn default_of(name: &str) -> &'static str {
    KEYS.iter()
        .find(|k| k.name == name)
        .map_or("", |k| k.default)
}

pub(super) fn build(sources: &Sources, errors: Vec<ConfigError>) -> Result<Config, ConfigErrors> {
    let mut r = Reader {
        values: &sources.values,
        shadowed: &sources.shadowed,
        errors,
    };
    let database_url = r.get("database_url", |v| {
        DatabaseUrl::parse(v).map_err(|e| e.to_string())
    });
    let database_pool_size = r.get("database_pool_size", count(1, 1024));
    let database_connect_timeout = r.get("database_connect_timeout", positive_duration);
    let auto_migrate = r.get("auto_migrate", boolean);
    let store_timeout = r.get("store_timeout", positive_duration);
    let listen = r.get("listen", socket_addr);
    let metrics_listen = r.get("metrics_listen", optional(socket_addr));
    let unix_socket = r.get("unix_socket", optional(socket_path));
    let unix_socket_mode = r.get("unix_socket_mode", file_mode);
    if let (Some(main), Some(Some(metrics))) = (listen, metrics_listen) {
        r.check_distinct("metrics_listen", main, metrics);
    }
    let realm = r.get("realm", realm);
    let headers = identity_headers(&mut r);
    let password_hash = r.get("password_hash", |v| {
        Scheme::from_str(v).map_err(|e| e.to_string())
    });
    let max_expiration_days = r.get("max_expiration_days", |v| {
        count(0, 36_500)(v).map(|d| (d > 0).then_some(d as u32))
    });
    let wordlist = r.get("wordlist", wordlist);
    let cache_size = r.get("cache_size", |v| count(0, 100_000_000)(v).map(|n| n as u64));
    let cache_ttl = r.get("cache_ttl", duration);
    let hash_workers = r.get("hash_workers", |v| match v {
        "" => Ok(std::thread::available_parallelism().map_or(2, |n| n.get())),
        v => count(1, 1024)(v),
    });
    let hash_queue = r.get("hash_queue", count(0, 1_000_000));
    let max_candidates = r.get("max_candidates", count(1, 100));
    let use_flush_interval = r.get("use_flush_interval", positive_duration);
    let shutdown_grace = r.get("shutdown_grace", duration);
    let log_format = r.get("log_format", |v| match v.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("must be text or json".into()),
    });
    let log_level = r.get("log_level", log_filter);
    let web = web_settings(&mut r);
    let oidc = oidc_settings(&mut r, web.as_ref().and_then(|w| w.public_url.clone()));
    let ui = ui_settings(&mut r);
    if !r.errors.is_empty() {
        return Err(ConfigErrors(r.errors));
    }
    // Every `get` above returned Some when no error was recorded.
    let missing = || ConfigErrors(vec![error("configuration", "incomplete".into())]);
    Ok(Config {
        database_url: database_url.ok_or_else(missing)?,
        database_pool_size: database_pool_size.ok_or_else(missing)?,
        database_connect_timeout: database_connect_timeout.ok_or_else(missing)?,
        auto_migrate: auto_migrate.ok_or_else(missing)?,
        store_timeout: store_timeout.ok_or_else(missing)?,
        listen: listen.ok_or_else(missing)?,
        metrics_listen: metrics_listen.ok_or_else(missing)?,
        unix_socket: unix_socket.ok_or_else(missing)?,
        unix_socket_mode: unix_socket_mode.ok_or_else(missing)?,
        realm: realm.ok_or_else(missing)?,
        headers: headers.ok_or_else(missing)?,
        password_hash: password_hash.ok_or_else(missing)?,
        max_expiration_days: max_expiration_days.ok_or_else(missing)?,
        wordlist: wordlist.ok_or_else(missing)?,
        cache_size: cache_size.ok_or_else(missing)?,
        cache_ttl: cache_ttl.ok_or_else(missing)?,
        hash_workers: hash_workers.ok_or_else(missing)?,
        hash_queue: hash_queue.ok_or_else(missing)?,
        max_candidates: max_candidates.ok_or_else(missing)?,
        use_flush_interval: use_flush_interval.ok_or_else(missing)?,
        shutdown_grace: shutdown_grace.ok_or_else(missing)?,
        log_format: log_format.ok_or_else(missing)?,
        log_level: log_level.ok_or_else(missing)?,
        web: web.ok_or_else(missing)?,
        oidc: oidc.ok_or_else(missing)?,
        ui: ui.ok_or_else(missing)?,
    })
}

fn identity_headers(r: &mut Reader<'_>) -> Option<IdentityHeaders> {
    let user = r.get("header_user", header_name);
    let email = r.get("header_email", header_name);
    let sub = r.get("header_sub", header_name);
    let login = r.get("header_login", header_name);
    let token_name = r.get("header_token_name", header_name);
    let named = [
        ("header_user", &user),
        ("header_email", &email),
        ("header_sub", &sub),
        ("header_login", &login),
        ("header_token_name", &token_name),
    ];
    for (i, (key, name)) in named.iter().enumerate() {
        let earlier = named[..i]
            .iter()
            .find(|(_, other)| name.is_some() && other == name);
        if let Some((first, _)) = earlier {
            let origin = r.origin(key);
            r.errors
                .push(error(&origin, format!("names the same header as {first}")));
        }
    }
    Some(IdentityHeaders {
        user: user?,
        email: email?,
        sub: sub?,
        login: login?,
        token_name: token_name?,
    })
}

fn count(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> {
    move |v| match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

/// Whole seconds (`30`) or a humantime duration (`30s`, `5m`, `1h 30m`).
fn duration(v: &str) -> Result<Duration, String> {
    let parsed = match v.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(v).map_err(|_| ()),
    };
    match parsed {
        Ok(d) if d <= Duration::from_secs(86_400 * 365) => Ok(d),
        _ => Err("must be a duration such as 30s, 5m or 1h (at most a year)".into()),
    }
}

fn socket_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| "must be an IP address and port, such as 127.0.0.1:8080 or [::1]:8080".into())
}

/// An empty value turns the setting off.
fn optional<T>(
    parse: impl Fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<Option<T>, String> {
    move |v| match v {
        "" => Ok(None),
        v => parse(v).map(Some),
    }
}

/// Longest Unix socket path: `sun_path` holds 108 bytes with the NUL.
const MAX_SOCKET_PATH: usize = 107;

fn socket_path(v: &str) -> Result<PathBuf, String> {
    if v.len() > MAX_SOCKET_PATH || v.contains('\0') || v.ends_with('/') {
        return Err(format!(
            "must be a file path of at most {MAX_SOCKET_PATH} bytes"
        ));
    }
    Ok(PathBuf::from(v))
}

/// Permission bits in octal (`660`, `0660` or `0o660`).
fn file_mode(v: &str) -> Result<u32, String> {
    let digits = v.strip_prefix("0o").unwrap_or(v);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && mode <= 0o777 => Ok(mode),
        _ => Err("must be octal permission bits such as 660 or 600".into()),
    }
}

fn realm(v: &str) -> Result<String, String> {
    let printable = v
        .chars()
        .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\');
    if v.is_empty() || !printable {
        return Err("must be non-empty printable ASCII without quotes or backslashes".into());
    }
    Ok(v.to_string())
}

/// Headers an identity header must not replace: framing, caching and
/// the challenge would break, and a proxy would not copy them.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "host",
    "te",
    "trailer",
    "cache-control",
    "www-authenticate",
    "retry-after",
    "allow",
    "x-request-id",
    "authorization",
    "proxy-authorization",
    "set-cookie",
    "date",
];

fn header_name(v: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(v.as_bytes())
        .map_err(|_| "is not a valid HTTP header name".to_string())?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err("is a header devicepass or HTTP itself sets; choose another".into());
    }
    Ok(name)
}

fn positive_duration(v: &str) -> Result<Duration, String> {
    duration(v).and_then(|d| {
        if d.is_zero() {
            Err("must be longer than zero".into())
        } else {
            Ok(d)
        }
    })
}

fn wordlist(v: &str) -> Result<Option<PathBuf>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(v);
    crate::passgen::Wordlist::load(Some(&path)).map_err(|e| e.to_string())?;
    Ok(Some(path))
}

/// A level, or `tracing` directives such as `info,devicepass=debug`. A
/// bare word that is not a level would be taken as a target name and
/// silently turn logging off, so it is refused.
fn log_filter(v: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bare_word_ok = v
        .split(',')
        .all(|d| d.contains('=') || LEVELS.contains(&d.trim().to_ascii_lowercase().as_str()));
    match tracing_subscriber::EnvFilter::try_new(v) {
        Ok(_) if bare_word_ok => Ok(v.to_string()),
        _ => Err("must be a level (error, warn, info, debug, trace) or a filter".into()),
    }
}

fn web_settings(r: &mut Reader<'_>) -> Option<WebConfig> {
    let public_url = r.get("public_url", optional(public_url));
    let cookie_secure = r.get("cookie_secure", boolean);
    let hsts = r.get("hsts", optional(positive_duration));
    let session_lifetime = r.get("session_lifetime", positive_duration);
    if let (Some(Some(url)), Some(true)) = (&public_url, cookie_secure)
        && url.scheme() == "http"
        && !is_loopback(url)
    {
        let origin = r.origin("public_url");
        r.errors.push(error(
            &origin,
            "is plain http, where browsers drop Secure cookies; use https, \
             or set DP_COOKIE_SECURE=false for local use"
                .into(),
        ));
    }
    Some(WebConfig {
        public_url: public_url?,
        cookie_secure: cookie_secure?,
        hsts: hsts?,
        session_lifetime: session_lifetime?,
    })
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `None` inside when sign-in is not configured (verification only).
fn oidc_settings(r: &mut Reader<'_>, public_url: Option<url::Url>) -> Option<Option<OidcConfig>> {
    let discovery_url = r.get("oidc_discovery_url", optional(http_url));
    let client_id = r.get("oidc_client_id", |v| Ok(v.to_string()));
    let client_secret = r.get("oidc_client_secret", |v| Ok(v.to_string()));
    let scope = r.get("oidc_scope", scope);
    let claim_email = r.get("oidc_claim_email", claim_name);
    let claim_email_verified = r.get("oidc_claim_email_verified", optional(claim_name));
    let claim_username = r.get("oidc_claim_username", claim_name);
    let claims_from_profile = r.get("oidc_claims_from_profile", boolean);
    let required_claim = r.get("oidc_required_claim", optional(claim_name));
    let required_claim_value = r.get("oidc_required_claim_value", |v| {
        Ok((!v.is_empty()).then(|| v.to_string()))
    });
    let group_membership = r.get("oidc_group_membership", |v| {
        Ok((!v.is_empty()).then(|| v.to_string()))
    });
    let group_claim = r.get("oidc_group_claim", claim_name);
    let admin_group = r.get(
        "admin_group",
        |v| Ok((!v.is_empty()).then(|| v.to_string())),
    );
    let api_audience = r.get("oidc_api_audience", |v| Ok(v.to_string()));
    let algorithms = r.get("oidc_algorithms", algorithms);
    let Some(discovery_url) = discovery_url? else {
        return Some(None);
    };
    if client_id.as_deref().is_some_and(str::is_empty) {
        let origin = r.origin_or_variable("oidc_client_id");
        r.errors.push(error(
            &origin,
            "is required when DP_OIDC_DISCOVERY_URL is set".into(),
        ));
    }
    let Some(public_url) = public_url else {
        if r.values.contains_key("public_url") {
            return None; // given but invalid: reported already
        }
        let origin = r.origin_or_variable("public_url");
        r.errors.push(error(
            &origin,
            "is required when DP_OIDC_DISCOVERY_URL is set".into(),
        ));
        return None;
    };
    let client_id = client_id?;
    let client_secret = client_secret?;
    let api_audience = api_audience?;
    Some(Some(OidcConfig {
        discovery_url,
        api_audience: if api_audience.is_empty() {
            client_id.clone()
        } else {
            api_audience
        },
        client_id,
        client_secret: (!client_secret.is_empty())
            .then(|| crate::secret::Secret::new(client_secret)),
        public_url,
        scope: scope?,
        claim_email: claim_email?,
        claim_email_verified: claim_email_verified?,
        claim_username: claim_username?,
        claims_from_profile: claims_from_profile?,
        required_claim: required_claim?,
        required_claim_value: required_claim_value?,
        group_membership: group_membership?,
        group_claim: group_claim?,
        admin_group: admin_group?,
        algorithms: algorithms?,
    }))
}

fn ui_settings(r: &mut Reader<'_>) -> Option<UiConfig> {
    let text = |v: &str| Ok::<_, String>(v.to_string());
    let heading = r.get("ui_heading", text);
    let heading_sub = r.get("ui_heading_sub", text);
    let show_subject = r.get("ui_show_subject", boolean);
    let show_last_used = r.get("ui_show_last_used", boolean);
    let logins = r.get("ui_logins", boolean);
    Some(UiConfig {
        heading: heading?,
        heading_sub: heading_sub?,
        show_subject: show_subject?,
        show_last_used: show_last_used?,
        logins: logins?,
    })
}

fn http_url(v: &str) -> Result<url::Url, String> {
    let url =
        url::Url::parse(v).map_err(|_| "must be an absolute http or https URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an absolute http or https URL".into());
    }
    Ok(url)
}

/// The page's own address: no query or fragment; a trailing slash is
/// dropped so paths can be appended.
fn public_url(v: &str) -> Result<url::Url, String> {
    let mut url = http_url(v)?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must be a plain http or https URL without query, fragment or user".into());
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

fn scope(v: &str) -> Result<Vec<String>, String> {
    let scopes: Vec<String> = v.split_whitespace().map(str::to_string).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err("must include openid".into());
    }
    Ok(scopes)
}

fn claim_name(v: &str) -> Result<String, String> {
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err("must be a claim name without spaces".into());
    }
    Ok(v.to_string())
}

/// JWS algorithm names; `none` and the shared-secret HS* family are refused.
fn algorithms(v: &str) -> Result<Vec<String>, String> {
    const KNOWN: &[&str] = &[
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
    let names: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    match names.iter().find(|n| !KNOWN.contains(&n.as_str())) {
        _ if names.is_empty() => Err(format!("must list some of {}", KNOWN.join(", "))),
        Some(bad) => Err(format!(
            "names {bad}, which is not one of {}",
            KNOWN.join(", ")
        )),
        None => Ok(names),
    }
}

#[cfg(test)]
mod tests;

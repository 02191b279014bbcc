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

#[cfg(test)]
mod tests;

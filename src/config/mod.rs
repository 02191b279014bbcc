//! Configuration: one typed, validated [`Config`], loaded in one place.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file
//! (`--config`), then `DP_*` environment variables. Secrets may come from
//! a file named by the variable's `_FILE` form. Every invalid value is
//! reported by the name it was given under (never with its value), all at
//! once, before anything binds. Nothing else in the program reads the
//! environment.

mod keys;
mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use crate::hash::Scheme;
use crate::store::DatabaseUrl;
pub use keys::KEYS;
pub use sources::{Raw, Sources};

/// Names of the identity headers sent with a successful `/auth` answer.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: HeaderName,
    pub email: HeaderName,
    pub sub: HeaderName,
    pub login: HeaderName,
    pub token_name: HeaderName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration. Deliberately not `Debug`: it holds the
/// database URL, which may contain a password.
#[derive(Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub database_pool_size: usize,
    pub database_connect_timeout: Duration,
    pub auto_migrate: bool,
    pub store_timeout: Duration,
    pub listen: SocketAddr,
    /// Where `/metrics` is served when not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// A Unix socket serving the same routes as `listen`.
    pub unix_socket: Option<PathBuf>,
    /// Permission bits given to `unix_socket`.
    pub unix_socket_mode: u32,
    pub realm: String,
    pub headers: IdentityHeaders,
    pub password_hash: Scheme,
    /// Longest a token may live, in days; `None` for no limit.
    pub max_expiration_days: Option<u32>,
    pub wordlist: Option<PathBuf>,
    pub cache_size: u64,
    pub cache_ttl: Duration,
    pub hash_workers: usize,
    pub hash_queue: usize,
    pub max_candidates: usize,
    pub use_flush_interval: Duration,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub web: WebConfig,
    /// Sign-in settings; `None` runs verification only.
    pub oidc: Option<OidcConfig>,
    pub ui: UiConfig,
}

/// How the self-service pages are served.
#[derive(Clone)]
pub struct WebConfig {
    /// Where users open the page (no trailing slash).
    pub public_url: Option<url::Url>,
    pub cookie_secure: bool,
    /// `Strict-Transport-Security` max-age; `None` sends none.
    pub hsts: Option<Duration>,
    /// Longest a session lasts, refreshes included.
    pub session_lifetime: Duration,
}

/// The identity provider and how its claims are read.
#[derive(Clone)]
pub struct OidcConfig {
    pub discovery_url: url::Url,
    pub client_id: String,
    pub client_secret: Option<crate::secret::Secret<String>>,
    /// Where users open the page (no trailing slash); `/login` is the
    /// redirect URI.
    pub public_url: url::Url,
    pub scope: Vec<String>,
    pub claim_email: String,
    /// A claim that must be `true`; `None` accepts unverified addresses.
    pub claim_email_verified: Option<String>,
    pub claim_username: String,
    pub claims_from_profile: bool,
    pub required_claim: Option<String>,
    pub required_claim_value: Option<String>,
    pub group_membership: Option<String>,
    pub group_claim: String,
    pub admin_group: Option<String>,
    /// Audience required of bearer access tokens.
    pub api_audience: String,
    /// JWS algorithms accepted on ID, logout and access tokens.
    pub algorithms: Vec<String>,
}

/// Page text and what it shows.
#[derive(Debug, Clone)]
pub struct UiConfig {
    pub heading: String,
    pub heading_sub: String,
    pub show_subject: bool,
    pub show_last_used: bool,
    pub logins: bool,
}

/// One bad setting: the name it was given under, and why it is bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

/// Every bad setting found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for e in &self.0 {
            writeln!(f, "  {}: {}", e.name, e.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A loaded configuration and the warnings to log once logging is up.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Pool settings for the store.
    pub fn pool_options(&self) -> crate::store::PoolOptions {
        crate::store::PoolOptions {
            size: self.database_pool_size,
            connect_timeout: self.database_connect_timeout,
        }
    }

    /// Load from the process environment and an optional TOML file.
    pub fn load(file: Option<&std::path::Path>) -> Result<Loaded, ConfigErrors> {
        Self::load_from(file, std::env::vars_os())
    }

    /// Load from the given variables instead of the process environment.
    pub fn load_from<I, K, V>(
        file: Option<&std::path::Path>,
        vars: I,
    ) -> Result<Loaded, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<std::ffi::OsString>,
        V: Into<std::ffi::OsString>,
    {
        let (sources, errors) = Sources::gather(file, vars);
        let warnings = sources.warnings.clone();
        let config = keys::build(&sources, errors)?;
        Ok(Loaded { config, warnings })
    }
}

//! Database URLs in the SQLAlchemy forms existing deployments use.
//!
//! SQLite: `sqlite:///relative.db` is relative to the working directory,
//! `sqlite:////abs/path.db` absolute (the fourth slash is the root), and
//! `sqlite:///:memory:` an in-memory database.
//! Servers: `postgresql://`, `postgresql+psycopg2://`, `postgres://`;
//! `mysql://`, `mysql+pymysql://`, `mariadb://`; `mssql://`,
//! `mssql+pymssql://` — each `user:password@host:port/database?options`.
//! Errors name the part that is wrong, never its value.

use std::fmt;
use std::path::PathBuf;

use crate::secret::Secret;

/// Which engine a URL selects, with what it needs to connect.
#[derive(Clone, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file; `None` for an in-memory database.
    Sqlite(Option<PathBuf>),
    Postgres(ServerUrl),
    Mysql(ServerUrl),
    Mssql(ServerUrl),
}

/// The parts of a server database URL, decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub host: String,
    pub port: Option<u16>,
    pub user: String,
    pub password: Option<Secret<String>>,
    pub database: String,
    /// Query options (`sslmode=require`, …), names as given.
    pub options: Vec<(String, String)>,
}

impl ServerUrl {
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed database URL. The original text may hold a password, so it
/// is kept as a secret; [`DatabaseUrl::redacted`] is safe to log.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: Secret<String>,
    engine: Engine,
}

/// Why a URL was refused. Messages name the part, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("missing \"scheme://\" (for example sqlite:///devicepass.db)")]
    NoScheme,
    #[error(
        "unsupported scheme; supported: sqlite, postgresql, postgresql+psycopg2, \
         postgres, mysql, mysql+pymysql, mariadb, mssql, mssql+pymssql"
    )]
    UnknownScheme,
    #[error("a sqlite URL has no host: use sqlite:///relative.db or sqlite:////abs/path.db")]
    SqliteHost,
    #[error("a sqlite URL needs a file (sqlite:///devicepass.db) or sqlite:///:memory:")]
    SqliteNoPath,
    #[error("query options are not supported for sqlite URLs")]
    SqliteQuery,
    #[error("the URL is malformed ({0})")]
    Malformed(&'static str),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL names no database (…/database)")]
    NoDatabase,
    #[error("the user name or password is not valid percent-encoded UTF-8")]
    BadCredentials,
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<DatabaseUrl, UrlError> {
        let (scheme, rest) = text.split_once("://").ok_or(UrlError::NoScheme)?;
        let engine = match scheme.to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite+pysqlite" => parse_sqlite(rest)?,
            "postgresql" | "postgresql+psycopg2" | "postgresql+psycopg" | "postgres" => {
                Engine::Postgres(parse_server(text)?)
            }
            "mysql" | "mysql+pymysql" | "mysql+mysqldb" | "mariadb" | "mariadb+pymysql" => {
                Engine::Mysql(parse_server(text)?)
            }
            "mssql" | "mssql+pymssql" | "mssql+pyodbc" => Engine::Mssql(parse_server(text)?),
            _ => return Err(UrlError::UnknownScheme),
        };
        let raw = Secret::new(text.to_owned());
        Ok(DatabaseUrl { raw, engine })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The URL with any password replaced, for logs.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.raw.expose()) {
            Ok(mut parsed) if parsed.password().is_some() => {
                // Setting a password only fails for URLs without a host,
                // which never parse as server URLs.
                let _ = parsed.set_password(Some("***"));
                parsed.to_string()
            }
            _ => self.raw.expose().clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn parse_sqlite(rest: &str) -> Result<Engine, UrlError> {
    if rest.contains('?') {
        return Err(UrlError::SqliteQuery);
    }
    let path = rest.strip_prefix('/').ok_or(UrlError::SqliteHost)?;
    if path == ":memory:" {
        return Ok(Engine::Sqlite(None));
    }
    if path.is_empty() {
        // SQLAlchemy reads this as in-memory; for a service that would
        // quietly lose every token at restart, so it must be explicit.
        return Err(UrlError::SqliteNoPath);
    }
    Ok(Engine::Sqlite(Some(PathBuf::from(path))))
}

fn parse_server(text: &str) -> Result<ServerUrl, UrlError> {
    let parsed = url::Url::parse(text).map_err(|e| UrlError::Malformed(url_reason(e)))?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(UrlError::NoHost)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let database = parsed.path().trim_start_matches('/');
    if database.is_empty() || database.contains('/') {
        return Err(UrlError::NoDatabase);
    }
    let decode = |s: &str| percent_decode(s).ok_or(UrlError::BadCredentials);
    let password = parsed.password().map(decode).transpose()?.map(Secret::new);
    Ok(ServerUrl {
        host,
        port: parsed.port(),
        user: decode(parsed.username())?,
        password,
        database: decode(database)?,
        options: parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    })
}

fn percent_decode(text: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

fn url_reason(e: url::ParseError) -> &'static str {
    match e {
        url::ParseError::InvalidPort => "invalid port",
        url::ParseError::EmptyHost => "empty host",
        url::ParseError::InvalidIpv4Address | url::ParseError::InvalidIpv6Address => {
            "invalid IP address"
        }
        url::ParseError::InvalidDomainCharacter => "invalid character in host",
        _ => "cannot be parsed as a URL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(url: &str) -> Engine {
        match DatabaseUrl::parse(url) {
            Ok(u) => u.engine().clone(),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn sqlite(url: &str) -> Option<PathBuf> {
        match engine(url) {
            Engine::Sqlite(p) => p,
            _ => panic!("{url} is not sqlite"),
        }
    }

    #[test]
    fn sqlalchemy_sqlite_forms() {
        assert_eq!(
            sqlite("sqlite:///devicepass.db"),
            Some("devicepass.db".into())
        );
        assert_eq!(
            sqlite("sqlite:////var/lib/dp.db"),
            Some("/var/lib/dp.db".into())
        );
        assert_eq!(sqlite("sqlite:///:memory:"), None);
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("sqlite:///").is_err());
    }

    #[test]
    fn server_forms() {
        let Engine::Postgres(pg) =
            engine("postgresql+psycopg2://dp:p%40ss@db:5433/devicepass?sslmode=require")
        else {
            panic!("not postgres")
        };
        assert_eq!(
            (pg.host.as_str(), pg.port, pg.user.as_str()),
            ("db", Some(5433), "dp")
        );
        assert_eq!(
            pg.password.as_ref().map(|p| p.expose().as_str()),
            Some("p@ss")
        );
        assert_eq!(pg.database, "devicepass");
        assert_eq!(pg.option("sslmode"), Some("require"));
        assert!(matches!(engine("postgres://u@h/d"), Engine::Postgres(_)));
        assert!(matches!(
            engine("mysql+pymysql://u:p@h/d?charset=utf8mb4"),
            Engine::Mysql(_)
        ));
        assert!(matches!(
            engine("mariadb://u:p@[::1]:3306/d"),
            Engine::Mysql(_)
        ));
        assert!(matches!(
            engine("mssql+pymssql://sa:p@h:1433/d"),
            Engine::Mssql(_)
        ));
    }

    #[test]
    fn bad_urls_name_the_problem() {
        let err = |u| DatabaseUrl::parse(u).err();
        assert_eq!(err("devicepass.db"), Some(UrlError::NoScheme));
        assert_eq!(err("redis://x"), Some(UrlError::UnknownScheme));
        assert_eq!(err("sqlite://host/x.db"), Some(UrlError::SqliteHost));
        assert_eq!(err("sqlite:///x.db?mode=ro"), Some(UrlError::SqliteQuery));
        assert_eq!(err("postgresql://u:p@h"), Some(UrlError::NoDatabase));
        assert_eq!(
            err("postgresql://u:p@h:99999/d"),
            Some(UrlError::Malformed("invalid port"))
        );
    }

    #[test]
    fn redaction_hides_only_the_password() {
        let url =
            DatabaseUrl::parse("postgresql://dp:hunter2@db/devicepass").map_err(|e| e.to_string());
        let url = url.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.redacted(), "postgresql://dp:***@db/devicepass");
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}

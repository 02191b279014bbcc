//! The MySQL / MariaDB store (mysql_async).
//!
//! The Python project's alembic migrations cannot run on MySQL (their
//! `VARCHAR` columns have no length), so there is no older MySQL schema to
//! accept: devicepass creates its own, with the upstream tables and
//! columns. Encodings match the other stores: UUIDs as `CHAR(32)`
//! lower-case hex without dashes (what SQLAlchemy's `Uuid` type writes on
//! MySQL, and what the SQLite store writes), datetimes as `DATETIME(6)`
//! in UTC, so microseconds round-trip.
//!
//! Every text column is `utf8mb4` with a binary collation, so lookups are
//! exact as in SQLite and PostgreSQL: `ß` is not `ss`, `a` is not `A`. A
//! no-pad binary collation is used where the server has one (MariaDB's
//! `utf8mb4_nopad_bin`, MySQL 8's `utf8mb4_0900_bin`), so that trailing
//! spaces count too; plain `utf8mb4_bin` ignores them.
//!
//! The pool connects lazily (the service starts while the database is
//! down), waits at most the connect timeout for a connection, and checks
//! an idle connection before handing it out, dropping it if the server
//! closed it (after a restart, say).
//!
//! TLS follows MySQL's `ssl-mode` URL option (`ssl_mode` also works, any
//! case): `DISABLED`; `PREFERRED` (the default) tries TLS without checking
//! the certificate and, once a server is seen to offer no TLS, continues
//! unencrypted until restart (protection against passive listeners only,
//! as with MySQL's own clients); `REQUIRED` encrypts without checking the
//! certificate; `VERIFY_CA` checks it against `ssl-ca` (a PEM file) or the
//! built-in web roots; `VERIFY_IDENTITY` also checks the host name. As with
//! MySQL's clients, `ssl-ca` without a mode, or with `REQUIRED`, means
//! `VERIFY_CA`. Caveat: mysql_async 0.37.1 ignores its "skip the host
//! name" flag with rustls (blackbeam/mysql_async#404, fixed upstream but
//! not yet released), so `VERIFY_CA` checks the host name too for now:
//! stricter, never weaker.
//!
//! Browser sessions are in the [`sessions`] submodule.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{
    Conn, IsolationLevel, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, SslOpts, Transaction,
    TxOpts,
};
use uuid::Uuid;

use super::{
    Candidate, NewToken, PoolOptions, ServerUrl, SessionRecord, Store, StoreError, Token,
    TokenInfo, TokenRef, User,
};
use crate::secret::Secret;

const DEFAULT_PORT: u16 = 3306;

/// Run on every new connection. The handshake already asks for utf8mb4;
/// `SET NAMES` also covers servers that ignore it. A fixed `sql_mode`
/// makes overlong values an error instead of silently truncated, and
/// forbids falling back from InnoDB, whatever the server's default is.
const SESSION_SETUP: &str =
    "SET NAMES utf8mb4, SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'";

/// How long a connection beyond the first may stay idle in the pool.
const IDLE_TTL: Duration = Duration::from_secs(300);

/// The schema version this build creates, recorded in `devicepass_schema`
/// (one row per version): 1 the upstream tables, 2 `dp_sessions`.
const SCHEMA_VERSION: u32 = 2;

/// The revision the Python project's alembic migrations end at; written
/// into `alembic_version` so that project sees an up-to-date schema.
const UPSTREAM_REVISION: &str = "dd50cf0133d0";

/// Longest wait for another replica's migration to finish.
const MIGRATE_LOCK_WAIT_SECS: u32 = 60;

/// The migration lock, one per database (GET_LOCK names are server-wide;
/// at most 64 characters).
const MIGRATE_LOCK: &str = "LEFT(CONCAT('devicepass_migrate:', DATABASE()), 64)";

/// Binary collations by preference: no-pad ones first (MySQL 8, MariaDB).
const BINARY_COLLATIONS: [&str; 3] = ["utf8mb4_0900_bin", "utf8mb4_nopad_bin", "utf8mb4_bin"];

/// Use records written per statement (two parameters each).
const USES_PER_STATEMENT: usize = 500;

/// Tries of a transaction the server aborted as a deadlock victim.
const TX_ATTEMPTS: u32 = 3;

const ER_DUP_ENTRY: u16 = 1062;
const ER_LOCK_DEADLOCK: u16 = 1213;
const ER_NO_REFERENCED_ROW: u16 = 1216;
const ER_NO_REFERENCED_ROW_2: u16 = 1452;

const CANDIDATE_SELECT: &str = "SELECT t.id, t.sub, t.login, t.name, t.expires, \
     u.username, u.email, t.token FROM tokens t JOIN users u ON u.sub = t.sub";

const LAST_USED: &str = "(SELECT MAX(l.date) FROM logs l WHERE l.`tokenId` = t.id)";

const ACTIVE: &str = "(t.expires IS NULL OR t.expires > ?)";

/// The columns the queries use, checked after migrating, so that tables
/// of the same names made by something else are not used blindly.
const REQUIRED_COLUMNS: [(&str, &str); 18] = [
    ("users", "sub"),
    ("users", "username"),
    ("users", "email"),
    ("tokens", "id"),
    ("tokens", "sub"),
    ("tokens", "name"),
    ("tokens", "token"),
    ("tokens", "expires"),
    ("tokens", "login"),
    ("logs", "id"),
    ("logs", "date"),
    ("logs", "tokenId"),
    ("revoked", "sid"),
    ("dp_sessions", "id"),
    ("dp_sessions", "sub"),
    ("dp_sessions", "sid"),
    ("dp_sessions", "data"),
    ("dp_sessions", "expires"),
];

/// MySQL or MariaDB behind a connection pool.
pub struct MysqlStore {
    pools: Pools,
    connect_timeout: Duration,
}

impl MysqlStore {
    /// A store for `server`; nothing is connected until first use.
    pub fn open(server: &ServerUrl, options: &PoolOptions) -> Result<Self, StoreError> {
        let settings = UrlOptions::read(&server.options)?;
        let mode = settings.effective_mode();
        let ca = settings.ca_for(mode);
        if let Some(path) = &ca
            && let Err(e) = std::fs::metadata(path)
        {
            tracing::error!(option = "ssl-ca", error = %e, "cannot read the CA file");
            return Err(StoreError::BadOption("ssl-ca"));
        }
        let base = base_opts(server, options.size);
        let main = Pool::new(base.clone().ssl_opts(ssl_opts(mode, ca)));
        let plain = (mode == SslMode::Preferred).then(|| Pool::new(base));
        Ok(MysqlStore {
            pools: Pools {
                main,
                plain,
                fell_back: AtomicBool::new(false),
            },
            connect_timeout: options.connect_timeout,
        })
    }

    /// A pooled connection, within the connect timeout.
    async fn conn(&self) -> Result<Conn, StoreError> {
        match tokio::time::timeout(self.connect_timeout, self.pools.get_conn()).await {
            Ok(conn) => conn.map_err(db_error),
            Err(_) => {
                tracing::error!(
                    timeout = ?self.connect_timeout,
                    "no database connection within the connect timeout"
                );
                Err(StoreError::Unavailable)
            }
        }
    }
}

/// Connection settings shared by the TLS and the plaintext pool.
fn base_opts(server: &ServerUrl, size: usize) -> OptsBuilder {
    let constraints = PoolConstraints::new(1, size.max(1)).unwrap_or_default();
    // Idle connections are kept up to the pool size (without an idle TTL
    // mysql_async keeps only `min`), and shrink to one when unused.
    // No reset when a connection returns to the pool: it would cost a
    // round trip and the prepared statements each time, and sessions keep
    // no state (mysql_async rolls back an unfinished transaction itself).
    let pool = PoolOpts::default()
        .with_constraints(constraints)
        .with_inactive_connection_ttl(IDLE_TTL)
        .with_reset_connection(false);
    let user = Some(server.user.clone()).filter(|u| !u.is_empty());
    OptsBuilder::default()
        .ip_or_hostname(server.host.clone())
        .tcp_port(server.port.unwrap_or(DEFAULT_PORT))
        .user(user)
        .pass(server.password.as_ref().map(|p| p.expose().clone()))
        .db_name(Some(server.database.clone()))
        .setup(vec![SESSION_SETUP])
        // Notices a peer gone without closing the connection.
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .pool_opts(pool)
}

/// The pool for the configured TLS mode, and for `PREFERRED` a plaintext
/// one to fall back to when the server offers no TLS.
struct Pools {
    main: Pool,
    plain: Option<Pool>,
    fell_back: AtomicBool,
}

impl Pools {
    async fn get_conn(&self) -> mysql_async::Result<Conn> {
        if let Some(plain) = &self.plain
            && self.fell_back.load(Ordering::Relaxed)
        {
            return plain.get_conn().await;
        }
        match (self.main.get_conn().await, &self.plain) {
            (Err(e), Some(plain)) if offers_no_tls(&e) => {
                if !self.fell_back.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the database server offers no TLS; \
                         ssl-mode PREFERRED continues unencrypted"
                    );
                }
                plain.get_conn().await
            }
            (result, _) => result,
        }
    }
}

fn offers_no_tls(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
    )
}

/// How the connection is encrypted, as MySQL's `--ssl-mode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        match value.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "DISABLED" => Some(SslMode::Disabled),
            "PREFERRED" => Some(SslMode::Preferred),
            "REQUIRED" => Some(SslMode::Required),
            "VERIFY_CA" => Some(SslMode::VerifyCa),
            "VERIFY_IDENTITY" => Some(SslMode::VerifyIdentity),
            _ => None,
        }
    }
}

/// The URL options this store reads.
#[derive(Debug, Default, PartialEq, Eq)]
struct UrlOptions {
    ssl_mode: Option<SslMode>,
    ssl_ca: Option<PathBuf>,
}

impl UrlOptions {
    /// Read the options; a bad `ssl-mode` is an error (its value is not
    /// logged), unknown options are ignored with a warning.
    fn read(options: &[(String, String)]) -> Result<UrlOptions, StoreError> {
        let mut out = UrlOptions::default();
        for (name, value) in options {
            match name.to_ascii_lowercase().replace('-', "_").as_str() {
                "ssl_mode" => out.ssl_mode = Some(parse_mode(value)?),
                "ssl_ca" => out.ssl_ca = Some(PathBuf::from(value)).filter(|p| p != ""),
                "charset" if value.eq_ignore_ascii_case("utf8mb4") => {}
                "charset" => tracing::warn!(option = %name, "ignored: always utf8mb4"),
                _ => tracing::warn!(option = %name, "unknown database URL option ignored"),
            }
        }
        Ok(out)
    }

    /// The mode in force: a CA file asks for verification, as in MySQL.
    fn effective_mode(&self) -> SslMode {
        match (self.ssl_mode, &self.ssl_ca) {
            (None | Some(SslMode::Required), Some(_)) => SslMode::VerifyCa,
            (None, None) => SslMode::Preferred,
            (Some(mode), _) => mode,
        }
    }

    /// The CA file, if `mode` verifies certificates.
    fn ca_for(&self, mode: SslMode) -> Option<PathBuf> {
        let verifies = matches!(mode, SslMode::VerifyCa | SslMode::VerifyIdentity);
        if self.ssl_ca.is_some() && !verifies {
            tracing::warn!(
                option = "ssl-ca",
                "ignored: the ssl-mode checks no certificate"
            );
        }
        self.ssl_ca.clone().filter(|_| verifies)
    }
}

fn parse_mode(value: &str) -> Result<SslMode, StoreError> {
    SslMode::parse(value).ok_or_else(|| {
        tracing::error!(
            option = "ssl-mode",
            "unknown value; use DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
        );
        StoreError::BadOption("ssl-mode")
    })
}

/// The TLS settings for `mode`; `None` for no TLS. (With mysql_async
/// 0.37.1, skipping the host name check has no effect; see the module
/// documentation.)
fn ssl_opts(mode: SslMode, ca: Option<PathBuf>) -> Option<SslOpts> {
    let opts = match ca {
        Some(ca) => SslOpts::default()
            .with_root_certs(vec![ca.into()])
            .with_disable_built_in_roots(true),
        None => SslOpts::default(),
    };
    match mode {
        SslMode::Disabled => None,
        SslMode::Preferred | SslMode::Required => Some(
            opts.with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        SslMode::VerifyCa => Some(opts.with_danger_skip_domain_validation(true)),
        SslMode::VerifyIdentity => Some(opts),
    }
}

/// The one converter from driver errors: detail to the log, an opaque
/// error (or the name of a taken unique value) to the caller.
fn db_error(e: mysql_async::Error) -> StoreError {
    if let Some(err) = constraint_error(&e) {
        return err;
    }
    tracing::error!(error = %e, "mysql error");
    StoreError::Unavailable
}

fn constraint_error(e: &mysql_async::Error) -> Option<StoreError> {
    let mysql_async::Error::Server(server) = e else {
        return None;
    };
    match server.code {
        ER_DUP_ENTRY => match duplicate_key(&server.message)? {
            "login_unique" => Some(StoreError::Conflict("login")),
            "username_unique" => Some(StoreError::Conflict("username")),
            "email_unique" => Some(StoreError::Conflict("email")),
            _ => None,
        },
        ER_NO_REFERENCED_ROW | ER_NO_REFERENCED_ROW_2 => {
            if server.message.contains("`logs_token_fk`") {
                Some(StoreError::Missing("token"))
            } else {
                Some(StoreError::Missing("user"))
            }
        }
        _ => None,
    }
}

/// The key named by a duplicate-entry message: MariaDB says
/// `… for key 'login_unique'`, MySQL 8 `… for key 'tokens.login_unique'`.
fn duplicate_key(message: &str) -> Option<&str> {
    let (_, rest) = message.rsplit_once("for key '")?;
    let key = rest.strip_suffix('\'')?;
    key.rsplit('.').next()
}

fn is_duplicate_primary(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s)
        if s.code == ER_DUP_ENTRY && duplicate_key(&s.message) == Some("PRIMARY"))
}

/// Whether running a transaction again may succeed: the server chose it
/// as a deadlock victim, or (in `upsert_user`) a concurrent insert of the
/// same sub won, so the next try updates instead.
fn worth_retrying(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == ER_LOCK_DEADLOCK)
        || is_duplicate_primary(e)
}

/// Evaluate a transaction future again while it fails retryably.
macro_rules! retrying {
    ($attempt:expr) => {{
        let mut tries = 1;
        loop {
            match $attempt.await {
                Err(e) if tries < TX_ATTEMPTS && worth_retrying(&e) => tries += 1,
                result => break result,
            }
        }
    }};
}

fn uuid_text(id: Uuid) -> String {
    id.simple().to_string()
}

/// Column `index` of `row`; a NULL or unconvertible value is corrupt.
fn take<T: FromValue>(row: &mut Row, index: usize, what: &'static str) -> Result<T, StoreError> {
    match row.take_opt(index) {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => {
            tracing::error!(error = %e, column = index, "unreadable value from mysql");
            Err(StoreError::Corrupt(what))
        }
        None => Err(StoreError::Corrupt(what)),
    }
}

fn read_uuid(row: &mut Row, index: usize) -> Result<Uuid, StoreError> {
    let text: String = take(row, index, "token id")?;
    Uuid::try_parse(&text).map_err(|_| StoreError::Corrupt("token id"))
}

fn read_token(row: &mut Row) -> Result<Token, StoreError> {
    Ok(Token {
        id: read_uuid(row, 0)?,
        sub: take(row, 1, "sub")?,
        login: take(row, 2, "login")?,
        name: take(row, 3, "token name")?,
        expires: take(row, 4, "datetime")?,
    })
}

fn read_candidate(mut row: Row) -> Result<Candidate, StoreError> {
    let token = read_token(&mut row)?;
    let user = User {
        sub: token.sub.clone(),
        username: take(&mut row, 5, "username")?,
        email: take(&mut row, 6, "email")?,
    };
    let hash = Secret::new(take::<String>(&mut row, 7, "token")?);
    Ok(Candidate { token, user, hash })
}

fn read_token_info(mut row: Row) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        token: read_token(&mut row)?,
        username: take(&mut row, 5, "username")?,
        last_used: take(&mut row, 6, "datetime")?,
    })
}

fn read_user(mut row: Row) -> Result<User, StoreError> {
    Ok(User {
        sub: take(&mut row, 0, "sub")?,
        username: take(&mut row, 1, "username")?,
        email: take(&mut row, 2, "email")?,
    })
}

/// How a text column is declared. `collation` is one of
/// [`BINARY_COLLATIONS`], never user input.
fn text_type(collation: &str) -> String {
    format!("CHARACTER SET utf8mb4 COLLATE {collation}")
}

/// The options every table is created with.
fn table_options(collation: &str) -> String {
    format!("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}")
}

/// The tables of schema version 1, devicepass's own design of the
/// upstream ones.
fn schema(collation: &str) -> [String; 6] {
    let text = text_type(collation);
    let table = table_options(collation);
    // UUIDs are hex: ASCII keeps the id indexes at 32 bytes per entry.
    let uuid = "CHAR(32) CHARACTER SET ascii COLLATE ascii_bin";
    [
        format!(
            "CREATE TABLE IF NOT EXISTS alembic_version (\
             version_num VARCHAR(32) {text} NOT NULL, \
             CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS revoked (\
             sid VARCHAR(255) {text} NOT NULL, PRIMARY KEY (sid)) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS sessions (\
             id INT NOT NULL AUTO_INCREMENT, session_id VARCHAR(255) {text}, \
             data BLOB, expiry DATETIME(6), PRIMARY KEY (id), \
             UNIQUE KEY session_id_unique (session_id)) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS users (\
             sub VARCHAR(255) {text} NOT NULL, \
             username VARCHAR(255) {text} NOT NULL, \
             email VARCHAR(255) {text} NOT NULL, \
             PRIMARY KEY (sub), \
             UNIQUE KEY username_unique (username), \
             UNIQUE KEY email_unique (email)) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS tokens (\
             id {uuid} NOT NULL, sub VARCHAR(255) {text} NOT NULL, \
             name VARCHAR(255) {text} NOT NULL, token TEXT {text} NOT NULL, \
             expires DATETIME(6) NULL, login VARCHAR(300) {text} NOT NULL, \
             PRIMARY KEY (id), UNIQUE KEY login_unique (login), \
             KEY ix_devicepass_tokens_sub (sub), \
             CONSTRAINT tokens_sub_fk FOREIGN KEY (sub) REFERENCES users (sub)) {table}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS logs (\
             id BIGINT NOT NULL AUTO_INCREMENT, date DATETIME(6) NOT NULL, \
             `tokenId` {uuid} NOT NULL, PRIMARY KEY (id), \
             KEY ix_devicepass_logs_token (`tokenId`, date), \
             CONSTRAINT logs_token_fk FOREIGN KEY (`tokenId`) REFERENCES tokens (id)) \
             {table}"
        ),
    ]
}

/// Take the per-database migration lock, migrate, release the lock.
async fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    let got: Option<Option<i64>> = conn
        .exec_first(
            format!("SELECT GET_LOCK({MIGRATE_LOCK}, ?)"),
            (MIGRATE_LOCK_WAIT_SECS,),
        )
        .await
        .map_err(db_error)?;
    if got.flatten() != Some(1) {
        tracing::error!("another process held the schema migration lock for too long");
        return Err(StoreError::Unavailable);
    }
    let result = migrate_locked(conn).await;
    let released = conn
        .query_drop(format!("DO RELEASE_LOCK({MIGRATE_LOCK})"))
        .await
        .map_err(db_error);
    result.and(released)
}

async fn migrate_locked(conn: &mut Conn) -> Result<(), StoreError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS devicepass_schema (\
         version INT NOT NULL PRIMARY KEY, applied DATETIME(6) NOT NULL) ENGINE=InnoDB",
    )
    .await
    .map_err(db_error)?;
    let current: Option<Option<u32>> = conn
        .query_first("SELECT MAX(version) FROM devicepass_schema")
        .await
        .map_err(db_error)?;
    let current = current.flatten().unwrap_or(0);
    if current < SCHEMA_VERSION {
        check_columns(conn, true).await?;
        let collation = binary_collation(conn).await?;
        if current < 1 {
            create_schema(conn, collation).await?;
        }
        if current < 2 {
            conn.query_drop(sessions::schema(collation))
                .await
                .map_err(db_error)?;
            record_version(conn, 2, collation).await?;
        }
    }
    check_columns(conn, false).await
}

/// Create the tables (safe after a half-finished earlier try: each is
/// `IF NOT EXISTS`), then record version 1.
async fn create_schema(conn: &mut Conn, collation: &str) -> Result<(), StoreError> {
    for statement in schema(collation) {
        conn.query_drop(statement).await.map_err(db_error)?;
    }
    conn.exec_drop(
        "INSERT INTO alembic_version (version_num) SELECT ? FROM DUAL \
         WHERE NOT EXISTS (SELECT 1 FROM alembic_version)",
        (UPSTREAM_REVISION,),
    )
    .await
    .map_err(db_error)?;
    record_version(conn, 1, collation).await
}

async fn record_version(conn: &mut Conn, version: u32, collation: &str) -> Result<(), StoreError> {
    conn.exec_drop(
        "INSERT INTO devicepass_schema (version, applied) VALUES (?, UTC_TIMESTAMP(6))",
        (version,),
    )
    .await
    .map_err(db_error)?;
    tracing::info!(version, collation, "mysql schema migrated");
    Ok(())
}

/// The most exact binary collation this server has.
async fn binary_collation(conn: &mut Conn) -> Result<&'static str, StoreError> {
    let known: Vec<String> = conn
        .exec(
            "SELECT COLLATION_NAME FROM information_schema.COLLATIONS \
             WHERE COLLATION_NAME IN (?, ?)",
            (BINARY_COLLATIONS[0], BINARY_COLLATIONS[1]),
        )
        .await
        .map_err(db_error)?;
    let best = BINARY_COLLATIONS
        .into_iter()
        .find(|c| known.iter().any(|k| k == c))
        .unwrap_or(BINARY_COLLATIONS[2]);
    if best == BINARY_COLLATIONS[2] {
        tracing::warn!("no no-pad binary collation: trailing spaces in names are ignored");
    }
    Ok(best)
}

/// Refuse tables of our names that lack a column the queries use: with
/// `existing_only`, among the tables there are (before creating the
/// missing ones), else among all.
async fn check_columns(conn: &mut Conn, existing_only: bool) -> Result<(), StoreError> {
    let rows: Vec<Row> = conn
        .query(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE()",
        )
        .await
        .map_err(db_error)?;
    let mut present = HashSet::with_capacity(rows.len());
    for mut row in rows {
        let table: String = take(&mut row, 0, "schema")?;
        let column: String = take(&mut row, 1, "schema")?;
        present.insert((table.to_ascii_lowercase(), column.to_ascii_lowercase()));
    }
    let has_table = |name: &str| present.iter().any(|(table, _)| table == name);
    let missing = REQUIRED_COLUMNS.iter().find(|(table, column)| {
        let column = (table.to_string(), column.to_ascii_lowercase());
        (!existing_only || has_table(table)) && !present.contains(&column)
    });
    match missing {
        None => Ok(()),
        Some((table, column)) => {
            tracing::error!(
                table,
                column,
                "the database has no such column; not our schema?"
            );
            Err(StoreError::Corrupt("schema"))
        }
    }
}

fn read_committed() -> TxOpts {
    let mut opts = TxOpts::default();
    // No gap locks: two first logins of one new user would otherwise
    // deadlock; with this, one insert fails as a duplicate and is retried.
    opts.with_isolation_level(IsolationLevel::ReadCommitted);
    opts
}

/// Update the user by sub, or create it, in one transaction: a bare
/// `ON DUPLICATE KEY UPDATE` would also fire on another user's username
/// or email, which must be a conflict instead.
async fn upsert_once(conn: &mut Conn, user: &User) -> mysql_async::Result<()> {
    let mut tx = conn.start_transaction(read_committed()).await?;
    let found: Option<Row> = tx
        .exec_first("SELECT 1 FROM users WHERE sub = ? FOR UPDATE", (&user.sub,))
        .await?;
    if found.is_some() {
        tx.exec_drop(
            "UPDATE users SET username = ?, email = ? WHERE sub = ?",
            (&user.username, &user.email, &user.sub),
        )
        .await?;
    } else {
        tx.exec_drop(
            "INSERT INTO users (sub, username, email) VALUES (?, ?, ?)",
            (&user.sub, &user.username, &user.email),
        )
        .await?;
    }
    tx.commit().await
}

/// Lock the token row first, so a concurrent `record_uses` either writes
/// before the delete (and its rows are deleted too) or finds no token.
async fn delete_once(conn: &mut Conn, which: &TokenRef) -> mysql_async::Result<bool> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let id: Option<Row> = match which {
        TokenRef::Id(id) => {
            tx.exec_first(
                "SELECT id FROM tokens WHERE id = ? FOR UPDATE",
                (uuid_text(*id),),
            )
            .await?
        }
        TokenRef::Login(login) => {
            tx.exec_first("SELECT id FROM tokens WHERE login = ? FOR UPDATE", (login,))
                .await?
        }
    };
    let Some(mut row) = id else {
        tx.rollback().await?;
        return Ok(false);
    };
    let id: mysql_async::Value = row.take(0).unwrap_or(mysql_async::Value::NULL);
    tx.exec_drop("DELETE FROM logs WHERE `tokenId` = ?", (&id,))
        .await?;
    tx.exec_drop("DELETE FROM tokens WHERE id = ?", (&id,))
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// A use to record: when, and the token id as stored.
type UseRow = (NaiveDateTime, String);

/// Write the uses of tokens that still exist, in chunks: MariaDB cannot
/// batch `INSERT … SELECT`, and one row per round trip is slow for the
/// many uses kept through an outage. The share locks on the token rows
/// keep a concurrent `delete_token` from removing one before commit.
async fn record_once(conn: &mut Conn, uses: &[UseRow]) -> mysql_async::Result<()> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    for chunk in uses.chunks(USES_PER_STATEMENT) {
        let live = live_tokens(&mut tx, chunk).await?;
        let values: Vec<mysql_async::Value> = chunk
            .iter()
            .filter(|(_, id)| live.contains(id))
            .flat_map(|(at, id)| [(*at).into(), id.as_str().into()])
            .collect();
        if !values.is_empty() {
            let rows = placeholders("(?, ?)", values.len() / 2);
            let sql = format!("INSERT INTO logs (date, `tokenId`) VALUES {rows}");
            tx.exec_drop(sql, values).await?;
        }
    }
    tx.commit().await
}

/// Which of the chunk's tokens exist, share-locked until commit. The
/// primary key is forced: through the covering `sub` index, the share
/// locks would miss the row lock `delete_token` holds, and the two would
/// deadlock when it deletes the row.
async fn live_tokens(
    tx: &mut Transaction<'_>,
    chunk: &[UseRow],
) -> mysql_async::Result<HashSet<String>> {
    let ids: Vec<&str> = chunk.iter().map(|(_, id)| id.as_str()).collect();
    let sql = format!(
        "SELECT id FROM tokens FORCE INDEX (PRIMARY) WHERE id IN ({}) LOCK IN SHARE MODE",
        placeholders("?", ids.len())
    );
    let live: Vec<String> = tx.exec(sql, ids).await?;
    Ok(live.into_iter().collect())
}

/// `count` copies of `one`, comma-separated.
fn placeholders(one: &str, count: usize) -> String {
    vec![one; count].join(", ")
}

fn collect<T>(
    rows: Vec<Row>,
    read: impl Fn(Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(read).collect()
}

#[async_trait]
impl Store for MysqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        // If this future is dropped midway, the reset when the connection
        // returns to the pool releases the lock.
        conn.reset_connection(true);
        migrate(&mut conn).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Reading the tokens table also tells a missing schema (the
        // service started with auto_migrate off) from a healthy database.
        let mut conn = self.conn().await?;
        conn.query_drop("SELECT 1 FROM tokens WHERE 1 = 0")
            .await
            .map_err(db_error)
    }

    async fn candidate_by_login(
        &self,
        login: &str,
        now: NaiveDateTime,
    ) -> Result<Option<Candidate>, StoreError> {
        let sql = format!("{CANDIDATE_SELECT} WHERE t.login = ? AND {ACTIVE}");
        let row: Option<Row> = self
            .conn()
            .await?
            .exec_first(sql, (login, now))
            .await
            .map_err(db_error)?;
        row.map(read_candidate).transpose()
    }

    async fn candidates_by_user(
        &self,
        name: &str,
        now: NaiveDateTime,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        // MySQL sorts NULL lowest, so never-used tokens come last.
        let sql = format!(
            "{CANDIDATE_SELECT} WHERE (u.username = ? OR u.email = ?) AND {ACTIVE} \
             ORDER BY {LAST_USED} DESC LIMIT ?"
        );
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let rows: Vec<Row> = self
            .conn()
            .await?
            .exec(sql, (name, name, now, limit))
            .await
            .map_err(db_error)?;
        collect(rows, read_candidate)
    }

    async fn upsert_user(&self, user: &User) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        retrying!(upsert_once(&mut conn, user)).map_err(db_error)
    }

    async fn find_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row: Option<Row> = self
            .conn()
            .await?
            .exec_first(
                "SELECT sub, username, email FROM users \
                 WHERE sub = ? OR username = ? OR email = ? \
                 ORDER BY sub = ? DESC, username = ? DESC LIMIT 1",
                (name, name, name, name, name),
            )
            .await
            .map_err(db_error)?;
        row.map(read_user).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<Row> = self
            .conn()
            .await?
            .query("SELECT sub, username, email FROM users ORDER BY username")
            .await
            .map_err(db_error)?;
        collect(rows, read_user)
    }

    async fn insert_token(&self, new: &NewToken) -> Result<(), StoreError> {
        let t = &new.token;
        self.conn()
            .await?
            .exec_drop(
                "INSERT INTO tokens (id, sub, name, token, expires, login) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                (
                    uuid_text(t.id),
                    &t.sub,
                    &t.name,
                    new.hash.expose(),
                    t.expires,
                    &t.login,
                ),
            )
            .await
            .map_err(|e| {
                if is_duplicate_primary(&e) {
                    StoreError::Conflict("token id")
                } else {
                    db_error(e)
                }
            })
    }

    async fn list_tokens(&self, sub: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let mut conn = self.conn().await?;
        let select = format!(
            "SELECT t.id, t.sub, t.login, t.name, t.expires, u.username, {LAST_USED} \
             FROM tokens t JOIN users u ON u.sub = t.sub"
        );
        let order = "ORDER BY u.username, t.login";
        let rows: Vec<Row> = match sub {
            Some(sub) => {
                let sql = format!("{select} WHERE t.sub = ? {order}");
                conn.exec(sql, (sub,)).await
            }
            None => conn.query(format!("{select} {order}")).await,
        }
        .map_err(db_error)?;
        collect(rows, read_token_info)
    }

    async fn delete_token(&self, which: &TokenRef) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        retrying!(delete_once(&mut conn, which)).map_err(db_error)
    }

    async fn record_uses(&self, uses: &[(Uuid, NaiveDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let uses: Vec<UseRow> = uses.iter().map(|(id, at)| (*at, uuid_text(*id))).collect();
        let mut conn = self.conn().await?;
        retrying!(record_once(&mut conn, &uses)).map_err(db_error)
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        sessions::put(self, session).await
    }

    async fn session(
        &self,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sessions::find(self, id, now).await
    }

    async fn take_session(
        &self,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sessions::take(self, id, now).await
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        sessions::delete(self, id).await
    }

    async fn end_idp_session(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<u64, StoreError> {
        sessions::end_idp(self, sid, sub).await
    }

    async fn is_revoked(&self, sid: &str) -> Result<bool, StoreError> {
        sessions::is_revoked(self, sid).await
    }

    async fn purge_sessions(&self, now: NaiveDateTime) -> Result<u64, StoreError> {
        sessions::purge(self, now).await
    }
}

// After `retrying!`, which it uses.
mod sessions;

#[cfg(test)]
mod tests;

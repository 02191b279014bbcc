//! The SQL Server store (tiberius).
//!
//! The Python project's SQL Server DDL cannot be applied (its unique
//! constraint on a `VARCHAR(max)` column fails), so no deployment has that
//! schema: devicepass creates its own, with the same tables and columns.
//! Text is `NVARCHAR` (full Unicode); keys use a binary collation, and
//! lookups also compare lengths, so they are exact as on PostgreSQL (SQL
//! Server otherwise ignores trailing spaces). Datetimes are naive UTC in
//! `DATETIME2(6)`; ids are `UNIQUEIDENTIFIER`.
//!
//! Connections are made on first use, so the store opens while the server
//! is down. A connection whose state is unknown after an error (or after a
//! cancelled call) is closed, not reused; the next call makes a new one.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use tiberius::error::Error;
use tiberius::{AuthMethod, Config, EncryptionLevel, Query, Row, ToSql};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{Instant, timeout_at};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use uuid::Uuid;

use super::{
    Candidate, NewToken, PoolOptions, ServerUrl, Store, StoreError, Token, TokenInfo, TokenRef,
    User,
};
use crate::secret::Secret;

type Conn = tiberius::Client<Compat<TcpStream>>;

const DEFAULT_PORT: u16 = 1433;

/// Pooled connections idle this long are closed rather than reused: NAT
/// gateways and load balancers (Azure's after 4 minutes) silently drop
/// idle flows, and the first query on such a connection would fail.
const MAX_IDLE: Duration = Duration::from_secs(120);

/// Uses written per INSERT: two parameters each, well under SQL Server's
/// limit of 2100 parameters per request.
const USES_PER_STATEMENT: usize = 500;
const _: () = assert!(2 * USES_PER_STATEMENT <= 2100);

/// Run on every new connection. XACT_ABORT makes any error roll back the
/// open transaction and end the batch, so a failed multi-statement write
/// never half-commits. English messages keep constraint names where
/// [`classify`] looks for them.
const SESSION_SETUP: &str = "SET XACT_ABORT ON; SET LANGUAGE us_english;";

/// Run before a connection that reported an error goes back to the pool.
const ROLLBACK_IF_OPEN: &str = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;";

const BEGIN: &str = "BEGIN TRANSACTION;";
const COMMIT: &str = "COMMIT TRANSACTION;";

/// A SQL text whose parameters are `@P1..@PN`. `N` is checked against the
/// text by the unit tests and against each call's arguments by the
/// compiler; the doc comment of each statement gives the binding order.
struct Statement<const N: usize> {
    sql: &'static str,
}

// ---------------------------------------------------------------- schema

/// Serialises migrations (across processes too) and reads the current
/// schema version; the caller commits after applying what is missing.
/// The lock times out before tiberius' 30 s command timeout.
const MIGRATION_LOCK: &str = "
SET XACT_ABORT ON;
BEGIN TRANSACTION;
DECLARE @granted INT;
EXEC @granted = sp_getapplock @Resource = N'devicepass_schema',
    @LockMode = N'Exclusive', @LockOwner = N'Transaction', @LockTimeout = 20000;
IF @granted < 0
    THROW 50000, N'devicepass: the schema lock was not granted', 1;
IF OBJECT_ID(N'devicepass_schema', N'U') IS NULL
    CREATE TABLE devicepass_schema (
        version INT NOT NULL CONSTRAINT devicepass_schema_pk PRIMARY KEY,
        applied DATETIME2(6) NOT NULL
            CONSTRAINT devicepass_schema_applied DEFAULT SYSUTCDATETIME()
    );
SELECT COALESCE(MAX(version), 0) AS version FROM devicepass_schema;
";

/// @P1 version.
const RECORD_VERSION: Statement<1> = Statement {
    sql: "INSERT INTO devicepass_schema (version) VALUES (@P1)",
};

const CREATE_USERS: &str = "
CREATE TABLE users (
    sub NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NOT NULL,
    username NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NOT NULL,
    email NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NOT NULL,
    CONSTRAINT users_pk PRIMARY KEY (sub),
    CONSTRAINT users_username_unique UNIQUE (username),
    CONSTRAINT users_email_unique UNIQUE (email)
)";

// NVARCHAR lengths count UTF-16 units: the 200 characters devicepass
// allows in a token name need up to 400 (an emoji takes two).
const CREATE_TOKENS: &str = "
CREATE TABLE tokens (
    id UNIQUEIDENTIFIER NOT NULL,
    sub NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NOT NULL,
    name NVARCHAR(400) NOT NULL,
    token NVARCHAR(1024) NOT NULL,
    expires DATETIME2(6) NULL,
    login NVARCHAR(300) COLLATE Latin1_General_100_BIN2 NOT NULL,
    CONSTRAINT tokens_pk PRIMARY KEY (id),
    CONSTRAINT tokens_sub_fk FOREIGN KEY (sub) REFERENCES users (sub),
    CONSTRAINT login_unique UNIQUE (login)
)";

const CREATE_TOKENS_SUB_INDEX: &str = "
CREATE INDEX ix_devicepass_tokens_sub ON tokens (sub)";

// ON DELETE CASCADE: a use recorded while its token is being deleted goes
// with the token instead of failing the delete.
const CREATE_LOGS: &str = "
CREATE TABLE logs (
    id BIGINT IDENTITY(1, 1) NOT NULL,
    [date] DATETIME2(6) NOT NULL,
    [tokenId] UNIQUEIDENTIFIER NOT NULL,
    CONSTRAINT logs_pk PRIMARY KEY (id),
    CONSTRAINT logs_token_fk FOREIGN KEY ([tokenId]) REFERENCES tokens (id)
        ON DELETE CASCADE
)";

const CREATE_LOGS_INDEX: &str = "
CREATE INDEX ix_devicepass_logs_token ON logs ([tokenId], [date])";

const CREATE_REVOKED: &str = "
CREATE TABLE revoked (
    sid NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NOT NULL,
    CONSTRAINT revoked_pk PRIMARY KEY (sid)
)";

const CREATE_SESSIONS: &str = "
CREATE TABLE sessions (
    id INT IDENTITY(1, 1) NOT NULL,
    session_id NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NULL,
    data VARBINARY(MAX) NULL,
    expiry DATETIME2(6) NULL,
    CONSTRAINT sessions_pk PRIMARY KEY (id),
    CONSTRAINT sessions_session_id_unique UNIQUE (session_id)
)";

/// Schema versions in order, each a list of statements sent one by one
/// (so a later statement may use what an earlier one created). Additive
/// changes only: append a version, never edit an applied one.
const MIGRATIONS: &[(i32, &[&str])] = &[(
    1,
    &[
        CREATE_USERS,
        CREATE_TOKENS,
        CREATE_TOKENS_SUB_INDEX,
        CREATE_LOGS,
        CREATE_LOGS_INDEX,
        CREATE_REVOKED,
        CREATE_SESSIONS,
    ],
)];

/// Unique constraints, and the value a violation means is taken.
const UNIQUE_KEYS: [(&str, &str); 5] = [
    ("login_unique", "login"),
    ("users_username_unique", "username"),
    ("users_email_unique", "email"),
    ("tokens_pk", "token id"),
    ("users_pk", "subject"),
];

/// Foreign keys, and what a violation means is missing.
const FOREIGN_KEYS: [(&str, &str); 2] = [("tokens_sub_fk", "user"), ("logs_token_fk", "token")];

// ---------------------------------------------------------------- queries

/// Reads the tokens table, so a missing schema fails readiness too.
const PING: Statement<0> = Statement {
    sql: "SELECT TOP (0) 1 FROM tokens",
};

/// @P1 login, @P2 now. Columns as [`read_candidate`] reads them.
const CANDIDATE_BY_LOGIN: Statement<2> = Statement {
    sql: "
SELECT t.id, t.sub, t.login, t.name, t.expires, u.username, u.email, t.token
FROM tokens t JOIN users u ON u.sub = t.sub
WHERE t.login = @P1 AND DATALENGTH(t.login) = DATALENGTH(@P1)
  AND (t.expires IS NULL OR t.expires > @P2)",
};

/// @P1 username or email, @P2 now, @P3 limit.
const CANDIDATES_BY_USER: Statement<3> = Statement {
    sql: "
SELECT TOP (@P3) t.id, t.sub, t.login, t.name, t.expires, u.username, u.email, t.token
FROM users u
JOIN tokens t ON t.sub = u.sub
OUTER APPLY (SELECT MAX(l.[date]) AS last_used FROM logs l WHERE l.[tokenId] = t.id) used
WHERE ((u.username = @P1 AND DATALENGTH(u.username) = DATALENGTH(@P1))
    OR (u.email = @P1 AND DATALENGTH(u.email) = DATALENGTH(@P1)))
  AND (t.expires IS NULL OR t.expires > @P2)
ORDER BY CASE WHEN used.last_used IS NULL THEN 1 ELSE 0 END, used.last_used DESC, t.login",
};

/// @P1 sub, @P2 username, @P3 email. The range lock makes two upserts of
/// one new sub wait for each other instead of both inserting; a username
/// or email another sub holds fails the statement as a unique violation.
const UPSERT_USER: Statement<3> = Statement {
    sql: "
SET XACT_ABORT ON;
BEGIN TRANSACTION;
UPDATE users WITH (UPDLOCK, SERIALIZABLE)
SET username = @P2, email = @P3
WHERE sub = @P1 AND DATALENGTH(sub) = DATALENGTH(@P1);
IF @@ROWCOUNT = 0
    INSERT INTO users (sub, username, email) VALUES (@P1, @P2, @P3);
COMMIT TRANSACTION;",
};

/// @P1 sub, username or email. A sub match wins, then a username match.
const FIND_USER: Statement<1> = Statement {
    sql: "
SELECT TOP (1) sub, username, email FROM users
WHERE (sub = @P1 AND DATALENGTH(sub) = DATALENGTH(@P1))
   OR (username = @P1 AND DATALENGTH(username) = DATALENGTH(@P1))
   OR (email = @P1 AND DATALENGTH(email) = DATALENGTH(@P1))
ORDER BY CASE WHEN sub = @P1 THEN 0 WHEN username = @P1 THEN 1 ELSE 2 END",
};

const LIST_USERS: Statement<0> = Statement {
    sql: "SELECT sub, username, email FROM users ORDER BY username",
};

/// @P1 id, @P2 sub, @P3 name, @P4 token (the hash), @P5 expires, @P6 login.
const INSERT_TOKEN: Statement<6> = Statement {
    sql: "
INSERT INTO tokens (id, sub, name, token, expires, login)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6)",
};

/// @P1 sub, or NULL for every token. Columns as [`read_token_info`] reads.
const LIST_TOKENS: Statement<1> = Statement {
    sql: "
SELECT t.id, t.sub, t.login, t.name, t.expires, u.username,
    (SELECT MAX(l.[date]) FROM logs l WHERE l.[tokenId] = t.id) AS last_used
FROM tokens t JOIN users u ON u.sub = t.sub
WHERE @P1 IS NULL OR (t.sub = @P1 AND DATALENGTH(t.sub) = DATALENGTH(@P1))
ORDER BY u.username, t.login",
};

/// @P1 id. Returns the deleted id: no row if there was no such token.
const DELETE_TOKEN_BY_ID: Statement<1> = Statement {
    sql: "
SET XACT_ABORT ON;
BEGIN TRANSACTION;
DECLARE @id UNIQUEIDENTIFIER = @P1;
DELETE FROM logs WHERE [tokenId] = @id;
DELETE FROM tokens OUTPUT deleted.id WHERE id = @id;
COMMIT TRANSACTION;",
};

/// @P1 login. Returns the deleted id: no row if there was no such token.
const DELETE_TOKEN_BY_LOGIN: Statement<1> = Statement {
    sql: "
SET XACT_ABORT ON;
BEGIN TRANSACTION;
DECLARE @id UNIQUEIDENTIFIER = (SELECT id FROM tokens
    WHERE login = @P1 AND DATALENGTH(login) = DATALENGTH(@P1));
DELETE FROM logs WHERE [tokenId] = @id;
DELETE FROM tokens OUTPUT deleted.id WHERE id = @id;
COMMIT TRANSACTION;",
};

/// The INSERT for uses, around `(@P1, @P2), (@P3, @P4), …` (date, token
/// id per use). A token deleted since its use is skipped, not an error.
const RECORD_USES_HEAD: &str =
    "INSERT INTO logs ([date], [tokenId]) SELECT v.used, v.token FROM (VALUES ";
const RECORD_USES_TAIL: &str = ") AS v (used, token) \
     WHERE EXISTS (SELECT 1 FROM tokens t WHERE t.id = v.token)";

/// The INSERT for `rows` uses; the same text for every full chunk, so the
/// server reuses its plan.
fn record_uses_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| format!("(@P{}, @P{})", 2 * i + 1, 2 * i + 2))
        .collect();
    format!("{RECORD_USES_HEAD}{}{RECORD_USES_TAIL}", values.join(", "))
}

/// The migrations a database at `current` still needs.
fn pending(current: i32) -> impl Iterator<Item = &'static (i32, &'static [&'static str])> {
    MIGRATIONS
        .iter()
        .filter(move |(version, _)| *version > current)
}

// ---------------------------------------------------------------- settings

/// A URL option with a value devicepass does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the database URL option {option} must be {expected}")]
struct OptionError {
    option: &'static str,
    expected: &'static str,
}

/// How the connection is secured, from the URL's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tls {
    encryption: EncryptionLevel,
    trust_server_certificate: bool,
}

const ENCRYPT: &str = "encrypt";
const TRUST_CERT: &str = "trustServerCertificate";

/// `encrypt` (default on, as in tiberius and ADO.NET) and
/// `trustServerCertificate` (default off); other options are ignored
/// with a warning, as SQLAlchemy URLs often carry driver-specific ones.
fn tls_options(server: &ServerUrl) -> Result<Tls, OptionError> {
    for (name, _) in &server.options {
        let known = [ENCRYPT, TRUST_CERT]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(name));
        if !known {
            tracing::warn!(option = %name, "SQL Server URL option ignored");
        }
    }
    let encryption = match server.option(ENCRYPT) {
        None => EncryptionLevel::Required,
        Some(value) => parse_encrypt(value)?,
    };
    let trust_server_certificate = match server.option(TRUST_CERT) {
        None => false,
        Some(value) => parse_flag(TRUST_CERT, value)?,
    };
    Ok(Tls {
        encryption,
        trust_server_certificate,
    })
}

fn parse_encrypt(value: &str) -> Result<EncryptionLevel, OptionError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "mandatory" | "required" => Ok(EncryptionLevel::Required),
        // Off still encrypts the login packet, as SQL Server requires.
        "false" | "no" | "0" | "optional" => Ok(EncryptionLevel::Off),
        "strict" => Ok(EncryptionLevel::Strict),
        _ => Err(OptionError {
            option: ENCRYPT,
            expected: "true, false or strict",
        }),
    }
}

fn parse_flag(option: &'static str, value: &str) -> Result<bool, OptionError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(OptionError {
            option,
            expected: "true or false",
        }),
    }
}

/// Where and how to connect.
struct Target {
    config: Config,
    host: String,
    port: u16,
}

impl Target {
    fn new(server: &ServerUrl, connect_timeout: Duration) -> Result<Target, OptionError> {
        let tls = tls_options(server)?;
        let port = server.port.unwrap_or(DEFAULT_PORT);
        let password = server.password.as_ref().map(Secret::expose);
        let mut config = Config::new();
        config.host(&server.host);
        config.port(port);
        config.database(&server.database);
        config.application_name("devicepass");
        config.authentication(AuthMethod::sql_server(
            &server.user,
            password.map_or("", String::as_str),
        ));
        config.encryption(tls.encryption);
        if tls.trust_server_certificate {
            config.trust_cert();
        }
        config.handshake_timeout(Some(connect_timeout));
        Ok(Target {
            config,
            host: server.host.clone(),
            port,
        })
    }

    async fn connect(&self) -> Result<Conn, Error> {
        match open_connection(self.config.clone(), &self.host, self.port).await {
            // Azure SQL's gateway redirects to the node holding the database.
            Err(Error::Routing { host, port }) => {
                let mut config = self.config.clone();
                config.host(&host);
                config.port(port);
                open_connection(config, &host, port).await
            }
            other => other,
        }
    }
}

/// Connects with the (host, port) pair rather than tiberius' `get_addr`
/// string, which does not bracket IPv6 addresses.
async fn open_connection(config: Config, host: &str, port: u16) -> Result<Conn, Error> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let mut client = tiberius::Client::connect(config, tcp.compat_write()).await?;
    batch(&mut client, SESSION_SETUP).await?;
    Ok(client)
}

// ---------------------------------------------------------------- pool

struct Idle {
    conn: Conn,
    since: Instant,
}

/// At most `size` connections, made on demand and kept while healthy.
struct Pool {
    target: Target,
    idle: Mutex<Vec<Idle>>,
    permits: Semaphore,
    wait: Duration,
}

/// A connection in use. Dropping it closes the connection (the server
/// then rolls back anything open); only [`Lease::release`] keeps it, so a
/// call cancelled mid-query never leaves a half-read connection behind.
struct Lease<'a> {
    conn: Conn,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn release(self) {
        self.pool.put_idle(self.conn);
    }

    /// After a server error the connection is in step, but a transaction
    /// may still be open; roll it back before reuse, or close it.
    async fn recycle(mut self) {
        match batch(&mut self.conn, ROLLBACK_IF_OPEN).await {
            Ok(_) => self.release(),
            Err(e) => tracing::warn!(error = %e, "SQL Server connection closed after an error"),
        }
    }
}

impl Pool {
    fn new(target: Target, options: &PoolOptions) -> Pool {
        Pool {
            target,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.size.max(1)),
            wait: options.connect_timeout,
        }
    }

    /// A connection, waiting at most `wait` for a free slot and a login.
    async fn get(&self) -> Result<Lease<'_>, StoreError> {
        let deadline = Instant::now() + self.wait;
        let Ok(Ok(permit)) = timeout_at(deadline, self.permits.acquire()).await else {
            tracing::error!(wait = ?self.wait, "no SQL Server connection became free in time");
            return Err(StoreError::Unavailable);
        };
        let conn = match self.take_idle() {
            Some(conn) => conn,
            None => match timeout_at(deadline, self.target.connect()).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot connect to SQL Server");
                    return Err(StoreError::Unavailable);
                }
                Err(_) => {
                    tracing::error!(wait = ?self.wait, "connecting to SQL Server timed out");
                    return Err(StoreError::Unavailable);
                }
            },
        };
        Ok(Lease {
            conn,
            pool: self,
            _permit: permit,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used connection that is not too old.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle();
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < MAX_IDLE {
                return Some(entry.conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: Conn) {
        let since = Instant::now();
        self.idle().push(Idle { conn, since });
    }

    /// Close every idle connection: after a broken one (the server
    /// restarted, the network failed) the others are likely broken too.
    fn clear_idle(&self) {
        let stale = std::mem::take(&mut *self.idle());
        drop(stale);
    }
}

// ---------------------------------------------------------------- errors

/// What a server error means to callers, from its number and message:
/// a taken unique value (2627 constraint, 2601 index) or a missing
/// referenced row (547), named by the constraint in the message.
fn classify(code: u32, message: &str) -> Option<StoreError> {
    // Only the part before the duplicate value: a value could look like
    // a constraint name.
    let head = message
        .split("The duplicate key value is")
        .next()
        .unwrap_or(message);
    let names =
        |name: &str| head.contains(&format!("'{name}'")) || head.contains(&format!("\"{name}\""));
    let keys: &[(&str, &'static str)] = match code {
        2627 | 2601 => &UNIQUE_KEYS,
        547 => &FOREIGN_KEYS,
        _ => return None,
    };
    let (_, what) = keys.iter().find(|(name, _)| names(name))?;
    if code == 547 {
        Some(StoreError::Missing(what))
    } else {
        Some(StoreError::Conflict(what))
    }
}

/// Messages that quote the value written, which may be a password hash
/// (or a plaintext password): "String or binary data would be truncated".
fn quotes_the_value(code: u32) -> bool {
    matches!(code, 2628 | 8152)
}

/// The one converter from tiberius errors: detail to the log (never a
/// written value), an opaque error or a taken/missing name to the caller.
fn db_error(what: &'static str, e: &Error) -> StoreError {
    if let Error::Server(token) = e {
        if let Some(err) = classify(token.code(), token.message()) {
            return err;
        }
        if quotes_the_value(token.code()) {
            tracing::error!(operation = what, code = token.code(), "a value is too long");
            return StoreError::Unavailable;
        }
    }
    tracing::error!(operation = what, error = %e, "SQL Server error");
    StoreError::Unavailable
}

// ---------------------------------------------------------------- rows

fn text(row: &Row, index: usize, what: &'static str) -> Result<String, StoreError> {
    match row.try_get::<&str, _>(index) {
        Ok(Some(value)) => Ok(value.to_owned()),
        _ => Err(StoreError::Corrupt(what)),
    }
}

fn uuid(row: &Row, index: usize) -> Result<Uuid, StoreError> {
    match row.try_get::<Uuid, _>(index) {
        Ok(Some(id)) => Ok(id),
        _ => Err(StoreError::Corrupt("token id")),
    }
}

fn datetime(row: &Row, index: usize) -> Result<Option<NaiveDateTime>, StoreError> {
    row.try_get::<NaiveDateTime, _>(index)
        .map_err(|_| StoreError::Corrupt("datetime"))
}

/// id, sub, login, name, expires in columns 0–4.
fn read_token(row: &Row) -> Result<Token, StoreError> {
    Ok(Token {
        id: uuid(row, 0)?,
        sub: text(row, 1, "token")?,
        login: text(row, 2, "token")?,
        name: text(row, 3, "token")?,
        expires: datetime(row, 4)?,
    })
}

/// A token, then username, email and the stored hash.
fn read_candidate(row: &Row) -> Result<Candidate, StoreError> {
    let token = read_token(row)?;
    let user = User {
        sub: token.sub.clone(),
        username: text(row, 5, "user")?,
        email: text(row, 6, "user")?,
    };
    let hash = Secret::new(text(row, 7, "token")?);
    Ok(Candidate { token, user, hash })
}

/// A token, then its owner's username and the last use.
fn read_token_info(row: &Row) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        token: read_token(row)?,
        username: text(row, 5, "user")?,
        last_used: datetime(row, 6)?,
    })
}

fn read_user(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        sub: text(row, 0, "user")?,
        username: text(row, 1, "user")?,
        email: text(row, 2, "user")?,
    })
}

fn read_version(results: &[Vec<Row>]) -> Result<i32, Error> {
    results
        .first()
        .and_then(|rows| rows.first())
        .and_then(|row| row.try_get::<i32, _>(0).ok().flatten())
        .ok_or(Error::Conversion(
            "the schema version cannot be read".into(),
        ))
}

fn read_all<T>(
    rows: &[Row],
    read: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(read).collect()
}

// ---------------------------------------------------------------- wire

/// Run a batch without parameters (fixed text only), all results read.
async fn batch(conn: &mut Conn, sql: &str) -> Result<Vec<Vec<Row>>, Error> {
    conn.simple_query(sql).await?.into_results().await
}

async fn fetch_rows<const N: usize>(
    conn: &mut Conn,
    statement: &Statement<N>,
    args: [&dyn ToSql; N],
) -> Result<Vec<Row>, Error> {
    conn.query(statement.sql, &args)
        .await?
        .into_first_result()
        .await
}

async fn execute<const N: usize>(
    conn: &mut Conn,
    statement: &Statement<N>,
    args: [&dyn ToSql; N],
) -> Result<(), Error> {
    conn.execute(statement.sql, &args).await.map(drop)
}

async fn run_migrations(conn: &mut Conn) -> Result<(), Error> {
    let current = read_version(&batch(conn, MIGRATION_LOCK).await?)?;
    for (version, statements) in pending(current) {
        for sql in *statements {
            batch(conn, sql).await?;
        }
        execute(conn, &RECORD_VERSION, [version]).await?;
        tracing::info!(version, "SQL Server schema migrated");
    }
    batch(conn, COMMIT).await.map(drop)
}

async fn write_uses(conn: &mut Conn, uses: &[(Uuid, NaiveDateTime)]) -> Result<(), Error> {
    batch(conn, BEGIN).await?;
    for chunk in uses.chunks(USES_PER_STATEMENT) {
        let mut query = Query::new(record_uses_sql(chunk.len()));
        for (id, at) in chunk {
            query.bind(*at);
            query.bind(*id);
        }
        query.execute(conn).await?;
    }
    batch(conn, COMMIT).await.map(drop)
}

// ---------------------------------------------------------------- store

/// SQL Server behind a small pool of connections.
pub struct MssqlStore {
    pool: Pool,
}

impl MssqlStore {
    /// Check the settings; connect nothing yet.
    pub fn open(server: &ServerUrl, options: &PoolOptions) -> Result<Self, StoreError> {
        let target = Target::new(server, options.connect_timeout).map_err(|e| {
            tracing::error!(option = e.option, "{e}");
            StoreError::BadOption(e.option)
        })?;
        Ok(MssqlStore {
            pool: Pool::new(target, options),
        })
    }

    /// Keep the connection after success or a server error (the stream is
    /// in step); close it, and the idle ones, after anything else.
    async fn finish<T>(
        &self,
        lease: Lease<'_>,
        what: &'static str,
        result: Result<T, Error>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                lease.release();
                Ok(value)
            }
            Err(e) => {
                let err = db_error(what, &e);
                if matches!(e, Error::Server(_)) {
                    lease.recycle().await;
                } else {
                    drop(lease);
                    self.pool.clear_idle();
                }
                Err(err)
            }
        }
    }

    async fn fetch<const N: usize>(
        &self,
        what: &'static str,
        statement: &Statement<N>,
        args: [&dyn ToSql; N],
    ) -> Result<Vec<Row>, StoreError> {
        let mut lease = self.pool.get().await?;
        let result = fetch_rows(&mut lease.conn, statement, args).await;
        self.finish(lease, what, result).await
    }

    async fn execute<const N: usize>(
        &self,
        what: &'static str,
        statement: &Statement<N>,
        args: [&dyn ToSql; N],
    ) -> Result<(), StoreError> {
        let mut lease = self.pool.get().await?;
        let result = execute(&mut lease.conn, statement, args).await;
        self.finish(lease, what, result).await
    }
}

#[async_trait]
impl Store for MssqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut lease = self.pool.get().await?;
        let result = run_migrations(&mut lease.conn).await;
        self.finish(lease, "migrate", result).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.fetch("ping", &PING, []).await.map(drop)
    }

    async fn candidate_by_login(
        &self,
        login: &str,
        now: NaiveDateTime,
    ) -> Result<Option<Candidate>, StoreError> {
        let rows = self
            .fetch("candidate_by_login", &CANDIDATE_BY_LOGIN, [&login, &now])
            .await?;
        rows.first().map(read_candidate).transpose()
    }

    async fn candidates_by_user(
        &self,
        name: &str,
        now: NaiveDateTime,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let args: [&dyn ToSql; 3] = [&name, &now, &limit];
        let rows = self
            .fetch("candidates_by_user", &CANDIDATES_BY_USER, args)
            .await?;
        read_all(&rows, read_candidate)
    }

    async fn upsert_user(&self, user: &User) -> Result<(), StoreError> {
        let args: [&dyn ToSql; 3] = [&user.sub, &user.username, &user.email];
        self.execute("upsert_user", &UPSERT_USER, args).await
    }

    async fn find_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let rows = self.fetch("find_user", &FIND_USER, [&name]).await?;
        rows.first().map(read_user).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = self.fetch("list_users", &LIST_USERS, []).await?;
        read_all(&rows, read_user)
    }

    async fn insert_token(&self, new: &NewToken) -> Result<(), StoreError> {
        let t = &new.token;
        let args: [&dyn ToSql; 6] = [
            &t.id,
            &t.sub,
            &t.name,
            new.hash.expose(),
            &t.expires,
            &t.login,
        ];
        self.execute("insert_token", &INSERT_TOKEN, args).await
    }

    async fn list_tokens(&self, sub: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = self.fetch("list_tokens", &LIST_TOKENS, [&sub]).await?;
        read_all(&rows, read_token_info)
    }

    async fn delete_token(&self, which: &TokenRef) -> Result<bool, StoreError> {
        let rows = match which {
            TokenRef::Id(id) => {
                self.fetch("delete_token", &DELETE_TOKEN_BY_ID, [id])
                    .await?
            }
            TokenRef::Login(login) => {
                let statement = &DELETE_TOKEN_BY_LOGIN;
                self.fetch("delete_token", statement, [login]).await?
            }
        };
        Ok(!rows.is_empty())
    }

    async fn record_uses(&self, uses: &[(Uuid, NaiveDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut lease = self.pool.get().await?;
        let result = write_uses(&mut lease.conn, uses).await;
        self.finish(lease, "record_uses", result).await
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use chrono::{NaiveDate, SubsecRound, TimeDelta, Utc};
    use tiberius::time::{Date, DateTime2, Time};
    use tiberius::{ColumnData, ColumnType, FromSql};

    use super::*;
    use crate::store::{DatabaseUrl, Engine};

    fn server(url: &str) -> ServerUrl {
        match DatabaseUrl::parse(url).map(|u| u.engine().clone()) {
            Ok(Engine::Mssql(server)) => server,
            _ => panic!("{url} is not an mssql URL"),
        }
    }

    fn target(url: &str) -> Result<Target, OptionError> {
        Target::new(&server(url), Duration::from_millis(1500))
    }

    fn tls(url: &str) -> Result<Tls, OptionError> {
        tls_options(&server(url))
    }

    /// The numbers of the `@P` placeholders, in order of appearance.
    fn placeholders(sql: &str) -> Vec<usize> {
        sql.split("@P")
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    /// Every parameter from @P1 to @PN is used, and no other.
    fn assert_params<const N: usize>(name: &str, statement: &Statement<N>) {
        let mut used = placeholders(statement.sql);
        used.sort_unstable();
        used.dedup();
        assert_eq!(used, (1..=N).collect::<Vec<_>>(), "{name}");
        assert!(!statement.sql.contains('?'), "{name}: only @P placeholders");
    }

    #[test]
    fn config_defaults_to_port_1433_and_encryption() {
        let t = target("mssql://sa:hunter2@db.example/devicepass").expect("target");
        assert_eq!((t.host.as_str(), t.port), ("db.example", 1433));
        assert_eq!(t.config.get_addr(), "db.example:1433");
        assert_eq!(
            t.config.get_handshake_timeout(),
            Some(Duration::from_millis(1500))
        );
        let shown = format!("{:?}", t.config);
        assert!(shown.contains("devicepass"), "database set: {shown}");
        assert!(!shown.contains("hunter2"), "password never shown");
        let expected = Tls {
            encryption: EncryptionLevel::Required,
            trust_server_certificate: false,
        };
        assert_eq!(tls("mssql://sa:p@h/d"), Ok(expected));
    }

    #[test]
    fn config_takes_port_ipv6_host_and_pymssql_scheme() {
        let t = target("mssql+pymssql://u:p@db:14330/dp").expect("target");
        assert_eq!((t.host.as_str(), t.port), ("db", 14330));
        let t = target("mssql://u:p@[::1]/dp").expect("target");
        assert_eq!((t.host.as_str(), t.port), ("::1", 1433));
        assert!(
            target("mssql://u@h/dp").is_ok(),
            "no password is an empty one"
        );
    }

    #[test]
    fn encrypt_and_trust_options() {
        let level = |url| tls(url).map(|t| t.encryption);
        assert_eq!(
            level("mssql://u:p@h/d?encrypt=true"),
            Ok(EncryptionLevel::Required)
        );
        assert_eq!(
            level("mssql://u:p@h/d?Encrypt=yes"),
            Ok(EncryptionLevel::Required)
        );
        assert_eq!(
            level("mssql://u:p@h/d?encrypt=false"),
            Ok(EncryptionLevel::Off)
        );
        assert_eq!(
            level("mssql://u:p@h/d?encrypt=no"),
            Ok(EncryptionLevel::Off)
        );
        assert_eq!(
            level("mssql://u:p@h/d?encrypt=strict"),
            Ok(EncryptionLevel::Strict)
        );
        let trust = |url| tls(url).map(|t| t.trust_server_certificate);
        assert_eq!(
            trust("mssql://u:p@h/d?trustServerCertificate=true"),
            Ok(true)
        );
        assert_eq!(
            trust("mssql://u:p@h/d?TrustServerCertificate=yes"),
            Ok(true)
        );
        assert_eq!(
            trust("mssql://u:p@h/d?trustServerCertificate=false"),
            Ok(false)
        );
        assert_eq!(
            trust("mssql://u:p@h/d?charset=utf8"),
            Ok(false),
            "unknown is ignored"
        );

        let url = "mssql://u:p@h/d?encrypt=false&trustServerCertificate=true";
        let shown = format!("{:?}", target(url).expect("target").config);
        assert!(shown.contains("encryption: Off"), "{shown}");
        assert!(shown.contains("bypass: true"), "{shown}");
    }

    #[test]
    fn bad_option_values_are_refused_by_name() {
        let err = tls("mssql://u:p@h/d?encrypt=maybe").expect_err("refused");
        assert_eq!(err.option, "encrypt");
        assert!(err.to_string().contains("encrypt"), "{err}");
        assert!(
            !err.to_string().contains("maybe"),
            "the value is not echoed"
        );
        let err = tls("mssql://u:p@h/d?trustServerCertificate=sure").expect_err("refused");
        assert_eq!(err.option, "trustServerCertificate");
    }

    /// A writer for the log lines of one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(work: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, work);
        let bytes = captured.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn open_logs_the_bad_option_and_fails() {
        let log = logged(|| {
            let url = server("mssql://sa:hunter2@h/d?trustServerCertificate=maybe");
            let opened = MssqlStore::open(&url, &PoolOptions::default());
            assert!(matches!(
                opened,
                Err(StoreError::BadOption("trustServerCertificate"))
            ));
        });
        assert!(log.contains("ERROR"), "{log}");
        assert!(log.contains("trustServerCertificate"), "{log}");
        assert!(!log.contains("hunter2"), "{log}");
    }

    #[test]
    fn every_statement_binds_exactly_its_parameters() {
        assert_params("ping", &PING);
        assert_params("record_version", &RECORD_VERSION);
        assert_params("candidate_by_login", &CANDIDATE_BY_LOGIN);
        assert_params("candidates_by_user", &CANDIDATES_BY_USER);
        assert_params("upsert_user", &UPSERT_USER);
        assert_params("find_user", &FIND_USER);
        assert_params("list_users", &LIST_USERS);
        assert_params("insert_token", &INSERT_TOKEN);
        assert_params("list_tokens", &LIST_TOKENS);
        assert_params("delete_token_by_id", &DELETE_TOKEN_BY_ID);
        assert_params("delete_token_by_login", &DELETE_TOKEN_BY_LOGIN);
        // Bound in the order the text first names them.
        assert_eq!(placeholders(INSERT_TOKEN.sql), [1, 2, 3, 4, 5, 6]);
        assert_eq!(placeholders(CANDIDATE_BY_LOGIN.sql), [1, 1, 2]);
        for fixed in [
            SESSION_SETUP,
            ROLLBACK_IF_OPEN,
            BEGIN,
            COMMIT,
            MIGRATION_LOCK,
        ] {
            assert!(placeholders(fixed).is_empty(), "{fixed}");
        }
    }

    #[test]
    fn record_uses_binds_date_then_token_per_row() {
        let sql = record_uses_sql(3);
        assert_eq!(placeholders(&sql), [1, 2, 3, 4, 5, 6]);
        assert!(sql.contains("(@P1, @P2), (@P3, @P4), (@P5, @P6)"), "{sql}");
        assert!(sql.contains("([date], [tokenId])"), "{sql}");
        assert!(sql.contains("WHERE EXISTS"), "deleted tokens are skipped");
        let full = record_uses_sql(USES_PER_STATEMENT);
        assert_eq!(placeholders(&full).len(), 2 * USES_PER_STATEMENT);
    }

    fn ddl() -> String {
        MIGRATIONS
            .iter()
            .flat_map(|(_, statements)| statements.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(";\n")
    }

    #[test]
    fn schema_uses_unicode_exact_keys_and_microseconds() {
        let ddl = ddl();
        let bin = "COLLATE Latin1_General_100_BIN2 NOT NULL";
        for column in [
            format!("sub NVARCHAR(255) {bin}"),
            format!("username NVARCHAR(255) {bin}"),
            format!("email NVARCHAR(255) {bin}"),
            format!("login NVARCHAR(300) {bin}"),
            "name NVARCHAR(400) NOT NULL".into(),
            "token NVARCHAR(1024) NOT NULL".into(),
            "id UNIQUEIDENTIFIER NOT NULL".into(),
            "expires DATETIME2(6) NULL".into(),
            "[date] DATETIME2(6) NOT NULL".into(),
            "[tokenId] UNIQUEIDENTIFIER NOT NULL".into(),
            "id BIGINT IDENTITY(1, 1) NOT NULL".into(),
            format!("sid NVARCHAR(255) {bin}"),
            "data VARBINARY(MAX) NULL".into(),
            "expiry DATETIME2(6) NULL".into(),
        ] {
            assert!(ddl.contains(&column), "{column}");
        }
        for table in ["users", "tokens", "logs", "revoked", "sessions"] {
            assert!(ddl.contains(&format!("CREATE TABLE {table} (")), "{table}");
        }
        assert!(ddl.contains("ON logs ([tokenId], [date])"));
        let plain = ddl.replace("NVARCHAR", "").replace("DATETIME2", "");
        assert!(
            !plain.contains("VARCHAR") && !plain.contains("DATETIME"),
            "{plain}"
        );
    }

    #[test]
    fn every_mapped_constraint_exists_in_the_schema() {
        let ddl = ddl();
        for (name, _) in UNIQUE_KEYS.iter().chain(FOREIGN_KEYS.iter()) {
            assert!(ddl.contains(&format!("CONSTRAINT {name} ")), "{name}");
        }
        assert!(ddl.contains("CONSTRAINT login_unique UNIQUE (login)"));
        assert!(MIGRATION_LOCK.contains("sp_getapplock"));
        assert!(MIGRATION_LOCK.contains("@LockOwner = N'Transaction'"));
        assert!(MIGRATION_LOCK.contains("devicepass_schema"));
    }

    #[test]
    fn migrations_run_once_in_order() {
        let all: Vec<i32> = pending(0).map(|(v, _)| *v).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(all, sorted, "ascending, no duplicates");
        let latest = all.last().copied().unwrap_or_default();
        assert_eq!(pending(latest).count(), 0);
        assert_eq!(
            pending(latest + 5).count(),
            0,
            "a newer schema is left alone"
        );
    }

    /// The value `to_sql` sends, detached from the borrowed original (as
    /// `FromSql` takes values that live as long as a row).
    fn sent(data: ColumnData<'_>) -> ColumnData<'static> {
        match data {
            ColumnData::Guid(v) => ColumnData::Guid(v),
            ColumnData::DateTime2(v) => ColumnData::DateTime2(v),
            other => panic!("unexpected SQL type {other:?}"),
        }
    }

    #[test]
    fn uuid_round_trips_through_uniqueidentifier() {
        let id = Uuid::new_v4();
        let data = sent(id.to_sql());
        assert!(matches!(data, ColumnData::Guid(Some(_))));
        assert_eq!(Uuid::from_sql(&data).expect("decode"), Some(id));
    }

    fn micros(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("datetime")
    }

    #[test]
    fn datetimes_round_trip_to_the_microsecond() {
        for at in [
            micros("2024-02-29 23:59:59.999999"),
            micros("1970-01-01 00:00:00.000001"),
            micros("9999-12-31 23:59:59.999999"),
        ] {
            let data = sent(at.to_sql());
            assert!(
                matches!(data, ColumnData::DateTime2(Some(_))),
                "sent as DATETIME2"
            );
            assert_eq!(NaiveDateTime::from_sql(&data).expect("decode"), Some(at));
        }
        let none: Option<NaiveDateTime> = None;
        assert_eq!(none.to_sql(), ColumnData::DateTime2(None));
    }

    /// A DATETIME2(6) value as the server sends it: scale 6.
    fn datetime2_6(at: NaiveDateTime) -> ColumnData<'static> {
        let epoch = NaiveDate::from_ymd_opt(1, 1, 1).expect("epoch");
        let days = u32::try_from((at.date() - epoch).num_days()).expect("days");
        let since_midnight = at - at.date().and_hms_opt(0, 0, 0).expect("midnight");
        let increments = u64::try_from(since_midnight.num_microseconds().expect("µs"));
        let time = Time::new(increments.expect("positive"), 6);
        ColumnData::DateTime2(Some(DateTime2::new(Date::new(days), time)))
    }

    #[test]
    fn datetime2_6_from_the_server_keeps_microseconds() {
        let at = micros("2025-06-30 12:34:56.789012");
        assert_eq!(
            NaiveDateTime::from_sql(&datetime2_6(at)).expect("decode"),
            Some(at)
        );
    }

    fn string(value: &str) -> ColumnData<'static> {
        ColumnData::String(Some(Cow::Owned(value.to_owned())))
    }

    fn candidate_row(id: Uuid, expires: Option<NaiveDateTime>) -> Row {
        let expires = expires.map_or(ColumnData::DateTime2(None), datetime2_6);
        Row::builder()
            .column("id", ColumnType::Guid, ColumnData::Guid(Some(id)))
            .column("sub", ColumnType::NVarchar, string("sub-ö"))
            .column("login", ColumnType::NVarchar, string("dörte#042"))
            .column("name", ColumnType::NVarchar, string("Handy 📱"))
            .column("expires", ColumnType::Datetime2, expires)
            .column("username", ColumnType::NVarchar, string("dörte"))
            .column("email", ColumnType::NVarchar, string("d@exämple.org"))
            .column("token", ColumnType::NVarchar, string("{plaintext}pässwörd"))
            .build()
    }

    #[test]
    fn rows_become_candidates() {
        let id = Uuid::new_v4();
        let expires = micros("2030-01-02 03:04:05.000006");
        let c = read_candidate(&candidate_row(id, Some(expires))).expect("candidate");
        let token = Token {
            id,
            sub: "sub-ö".into(),
            login: "dörte#042".into(),
            name: "Handy 📱".into(),
            expires: Some(expires),
        };
        assert_eq!(c.token, token);
        assert_eq!(c.user.sub, "sub-ö");
        assert_eq!(
            (c.user.username.as_str(), c.user.email.as_str()),
            ("dörte", "d@exämple.org")
        );
        assert_eq!(c.hash.expose(), "{plaintext}pässwörd");
        let never = read_candidate(&candidate_row(id, None)).expect("candidate");
        assert_eq!(never.token.expires, None);
    }

    #[test]
    fn rows_become_token_infos_and_users() {
        let id = Uuid::new_v4();
        let used = micros("2025-01-01 00:00:00.5");
        let row = Row::builder()
            .column("id", ColumnType::Guid, ColumnData::Guid(Some(id)))
            .column("sub", ColumnType::NVarchar, string("s"))
            .column("login", ColumnType::NVarchar, string("l#001"))
            .column("name", ColumnType::NVarchar, string("n"))
            .column(
                "expires",
                ColumnType::Datetime2,
                ColumnData::DateTime2(None),
            )
            .column("username", ColumnType::NVarchar, string("u"))
            .column("last_used", ColumnType::Datetime2, datetime2_6(used))
            .build();
        let info = read_token_info(&row).expect("info");
        assert_eq!((info.token.id, info.username.as_str()), (id, "u"));
        assert_eq!(info.last_used, Some(used));

        let row = Row::builder()
            .column("sub", ColumnType::NVarchar, string("s"))
            .column("username", ColumnType::NVarchar, string("u"))
            .column("email", ColumnType::NVarchar, string("e"))
            .build();
        let user = User {
            sub: "s".into(),
            username: "u".into(),
            email: "e".into(),
        };
        assert_eq!(read_user(&row).expect("user"), user);
    }

    #[test]
    fn unexpected_values_are_corrupt_not_panics() {
        let row = Row::builder()
            .column("id", ColumnType::NVarchar, string("not a guid"))
            .build();
        assert!(matches!(
            read_token(&row),
            Err(StoreError::Corrupt("token id"))
        ));
        let row = Row::builder()
            .column("sub", ColumnType::NVarchar, ColumnData::String(None))
            .build();
        assert!(matches!(read_user(&row), Err(StoreError::Corrupt("user"))));
        let version = Row::builder()
            .column("version", ColumnType::Int4, ColumnData::I32(Some(1)))
            .build();
        assert_eq!(read_version(&[vec![version]]), Ok(1));
        assert!(read_version(&[]).is_err());
    }

    #[test]
    fn unique_violations_name_the_taken_value() {
        let unique = |name: &str, value: &str| {
            format!(
                "Violation of UNIQUE KEY constraint '{name}'. Cannot insert duplicate key \
                 in object 'dbo.t'. The duplicate key value is ({value})."
            )
        };
        for (name, what) in UNIQUE_KEYS {
            let mapped = classify(2627, &unique(name, "x"));
            assert!(
                matches!(mapped, Some(StoreError::Conflict(w)) if w == what),
                "{name}"
            );
        }
        let pk = "Violation of PRIMARY KEY constraint 'tokens_pk'. Cannot insert duplicate \
                  key in object 'dbo.tokens'. The duplicate key value is (1).";
        assert!(matches!(
            classify(2627, pk),
            Some(StoreError::Conflict("token id"))
        ));
        let index = "Cannot insert duplicate key row in object 'dbo.tokens' with unique \
                     index 'login_unique'. The duplicate key value is (a#001).";
        assert!(matches!(
            classify(2601, index),
            Some(StoreError::Conflict("login"))
        ));
        // A value that looks like another constraint's name changes nothing.
        let sneaky = unique("users_email_unique", "'login_unique'");
        assert!(matches!(
            classify(2627, &sneaky),
            Some(StoreError::Conflict("email"))
        ));
        assert!(classify(2627, &unique("someone_elses", "x")).is_none());
    }

    #[test]
    fn foreign_key_violations_name_what_is_missing() {
        let fk = |name: &str| {
            format!(
                "The INSERT statement conflicted with the FOREIGN KEY constraint \"{name}\". \
                 The conflict occurred in database \"dp\", table \"dbo.users\", column 'sub'."
            )
        };
        assert!(matches!(
            classify(547, &fk("tokens_sub_fk")),
            Some(StoreError::Missing("user"))
        ));
        assert!(matches!(
            classify(547, &fk("logs_token_fk")),
            Some(StoreError::Missing("token"))
        ));
        assert!(classify(547, &fk("other_fk")).is_none());
    }

    #[test]
    fn other_errors_are_unavailable_and_logged() {
        assert!(classify(1205, "deadlock victim 'login_unique'").is_none());
        assert!(classify(18456, "Login failed for user 'sa'.").is_none());
        assert!(quotes_the_value(2628) && quotes_the_value(8152));
        let log = logged(|| {
            let io = Error::Io {
                kind: std::io::ErrorKind::ConnectionReset,
                message: "connection reset by peer".into(),
            };
            assert!(matches!(db_error("ping", &io), StoreError::Unavailable));
            let odd = Error::Protocol("unexpected token".into());
            assert!(matches!(db_error("migrate", &odd), StoreError::Unavailable));
        });
        assert!(
            log.contains("connection reset by peer") && log.contains("ping"),
            "{log}"
        );
        assert!(
            log.contains("unexpected token") && log.contains("migrate"),
            "{log}"
        );
    }

    #[tokio::test]
    async fn open_connects_nothing_and_a_dead_server_is_unavailable() {
        // A port nothing listens on: bound, then released.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let url = server(&format!("mssql://sa:p@127.0.0.1:{port}/dp"));
        let options = PoolOptions {
            size: 2,
            connect_timeout: Duration::from_secs(2),
        };
        let store = MssqlStore::open(&url, &options).expect("opens while the server is down");
        assert!(matches!(store.ping().await, Err(StoreError::Unavailable)));
        let now = Utc::now().naive_utc().trunc_subsecs(6);
        let found = store.candidate_by_login("x#001", now).await;
        assert!(matches!(found, Err(StoreError::Unavailable)));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // Accepts the TCP connection, then never answers the prelogin.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                kept.push(socket);
            }
        });
        let url = server(&format!("mssql://sa:p@127.0.0.1:{port}/dp"));
        let options = PoolOptions {
            size: 1,
            connect_timeout: Duration::from_millis(300),
        };
        let store = MssqlStore::open(&url, &options).expect("opens");
        let started = std::time::Instant::now();
        assert!(matches!(
            store.migrate().await,
            Err(StoreError::Unavailable)
        ));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by the connect timeout"
        );
        let uses = [(
            Uuid::new_v4(),
            micros("2025-01-01 00:00:00") + TimeDelta::seconds(1),
        )];
        assert!(matches!(
            store.record_uses(&uses).await,
            Err(StoreError::Unavailable)
        ));
        assert!(
            store.record_uses(&[]).await.is_ok(),
            "nothing to write needs no server"
        );
        held.abort();
    }
}

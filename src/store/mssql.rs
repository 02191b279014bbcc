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
//!
//! Browser sessions are in the [`sessions`] submodule.

mod sessions;

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
    Candidate, NewToken, PoolOptions, ServerUrl, SessionRecord, Store, StoreError, Token,
    TokenInfo, TokenRef, User,
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
const MIGRATIONS: &[(i32, &[&str])] = &[
    (
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
    ),
    (
        2,
        &[
            sessions::CREATE_SESSIONS,
            sessions::CREATE_SUB_INDEX,
            sessions::CREATE_SID_INDEX,
            sessions::CREATE_EXPIRES_INDEX,
        ],
    ),
];

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

#[cfg(test)]
mod tests;

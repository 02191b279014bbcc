//! The embedded SQLite store (rusqlite).
//!
//! Encodings follow what SQLAlchemy wrote for the Python project: UUIDs as
//! 32 lower-case hex digits without dashes, datetimes as text
//! `YYYY-MM-DD HH:MM:SS.ffffff` in UTC. The database runs in WAL mode, so
//! readers on the small connection pool never block each other; each
//! query runs on tokio's blocking threads, never on the reactor. Browser
//! sessions are in the [`sessions`] submodule.

mod sessions;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{
    Candidate, NewToken, SessionRecord, Store, StoreError, Token, TokenInfo, TokenRef, User,
};
use crate::secret::Secret;

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The revision the Python project's alembic migrations end at; written
/// into a new database so that project can run against it unchanged.
const UPSTREAM_REVISION: &str = "dd50cf0133d0";

/// The schema the Python project's migrations leave in SQLite, verbatim.
const UPSTREAM_SCHEMA: &str = r#"
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE revoked (
	sid VARCHAR NOT NULL,
	PRIMARY KEY (sid)
);
CREATE TABLE sessions (
	id INTEGER NOT NULL,
	session_id VARCHAR(255),
	data BLOB,
	expiry DATETIME,
	PRIMARY KEY (id),
	UNIQUE (session_id)
);
CREATE TABLE users (
	sub VARCHAR NOT NULL,
	username VARCHAR NOT NULL,
	email VARCHAR NOT NULL,
	PRIMARY KEY (sub),
	UNIQUE (email),
	UNIQUE (username)
);
CREATE TABLE "tokens" (
	id CHAR(32) NOT NULL,
	sub VARCHAR NOT NULL,
	name VARCHAR NOT NULL,
	token VARCHAR NOT NULL,
	expires DATETIME,
	login VARCHAR NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT login_unique UNIQUE (login),
	FOREIGN KEY(sub) REFERENCES users (sub)
);
CREATE TABLE logs (
	id INTEGER NOT NULL,
	date DATETIME NOT NULL,
	"tokenId" CHAR(32) NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY("tokenId") REFERENCES tokens (id)
);
"#;

/// devicepass's own indexes on upstream tables (its own table is in
/// [`sessions::SCHEMA`]); nothing the old project would trip over.
const ADDITIONS: &str = r#"
CREATE INDEX IF NOT EXISTS ix_devicepass_tokens_sub ON tokens (sub);
CREATE INDEX IF NOT EXISTS ix_devicepass_logs_token ON logs ("tokenId", date);
"#;

const CANDIDATE_SELECT: &str = "SELECT t.id, t.sub, t.login, t.name, t.expires, \
     u.username, u.email, t.token FROM tokens t JOIN users u ON u.sub = t.sub";

const LAST_USED: &str = "(SELECT max(l.date) FROM logs l WHERE l.\"tokenId\" = t.id)";

/// SQLite behind a small pool of connections.
pub struct SqliteStore {
    path: Option<PathBuf>,
    /// Device and inode of the file when opened: a file deleted or
    /// replaced under a running service must not go unnoticed, or the
    /// service and the command line would work on different databases.
    identity: Option<(u64, u64)>,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, or an in-memory
    /// one for `None` (then with a single connection, as each in-memory
    /// connection is a database of its own).
    pub fn open(path: &Option<PathBuf>, pool_size: usize) -> Result<Self, StoreError> {
        let first = connect(path.as_deref())?;
        let size = if path.is_some() { pool_size.max(1) } else { 1 };
        let identity = match path {
            Some(path) => Some(file_identity(path).ok_or(StoreError::Unavailable)?),
            None => None,
        };
        Ok(SqliteStore {
            path: path.clone(),
            identity,
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(size),
        })
    }

    /// Run `work` on a pooled connection on a blocking thread.
    async fn run<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.check_file()?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable)?;
        let conn = self.take_idle();
        let path = self.path.clone();
        let joined = off_reactor(move || {
            let mut conn = match conn {
                Some(conn) => conn,
                None => connect(path.as_deref())?,
            };
            let result = work(&mut conn);
            Ok::<_, StoreError>((conn, result))
        })
        .await;
        match joined {
            Some(Ok((conn, result))) => {
                self.put_idle(conn);
                result
            }
            Some(Err(e)) => Err(e),
            None => {
                tracing::error!("sqlite worker failed");
                Err(StoreError::Unavailable)
            }
        }
    }

    fn check_file(&self) -> Result<(), StoreError> {
        let (Some(path), Some(opened)) = (&self.path, self.identity) else {
            return Ok(());
        };
        if file_identity(path) == Some(opened) {
            return Ok(());
        }
        tracing::error!(
            path = %path.display(),
            "the database file was removed or replaced; restore it or restart devicepass"
        );
        Err(StoreError::Unavailable)
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_idle(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }
}

/// Run blocking database work without stalling the async reactor.
///
/// On the multi-threaded runtime the work runs right here, with
/// `block_in_place` handing this thread's other tasks to another thread;
/// that saves the two cross-thread wake-ups of a trip through the
/// blocking pool (a cached verification went from 88 to 73 µs in
/// `benches/verify.rs`). Elsewhere (a current-thread runtime) it goes to
/// the blocking pool. `None` when the work panicked.
async fn off_reactor<R, F>(work: F) -> Option<R>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if multi {
        let guarded = std::panic::AssertUnwindSafe(work);
        tokio::task::block_in_place(move || std::panic::catch_unwind(guarded).ok())
    } else {
        tokio::task::spawn_blocking(work).await.ok()
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn connect(path: Option<&Path>) -> Result<Connection, StoreError> {
    let conn = match path {
        Some(path) => Connection::open(path),
        None => Connection::open_in_memory(),
    }
    .map_err(db_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
    if path.is_some() {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_error)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db_error)?;
    Ok(conn)
}

/// The one converter from rusqlite errors: detail to the log, an opaque
/// error (or the name of a taken unique value) to the caller.
fn db_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &e
        && failure.code == ErrorCode::ConstraintViolation
        && let Some(err) = constraint_error(message)
    {
        return err;
    }
    tracing::error!(error = %e, "sqlite error");
    StoreError::Unavailable
}

fn constraint_error(message: &str) -> Option<StoreError> {
    let taken = |column| message.contains("UNIQUE") && message.contains(column);
    if taken("tokens.login") {
        Some(StoreError::Conflict("login"))
    } else if taken("users.username") {
        Some(StoreError::Conflict("username"))
    } else if taken("users.email") {
        Some(StoreError::Conflict("email"))
    } else if taken("tokens.id") {
        Some(StoreError::Conflict("token id"))
    } else if message.contains("FOREIGN KEY") {
        Some(StoreError::Missing("user"))
    } else {
        None
    }
}

/// SQLAlchemy's SQLite text form of a datetime.
pub(crate) fn format_datetime(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Read SQLAlchemy's form, and the variants other writers produce.
pub(crate) fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text.trim(), f).ok())
}

fn uuid_text(id: Uuid) -> String {
    id.simple().to_string()
}

fn read_uuid(row: &Row<'_>, index: usize) -> Result<Uuid, StoreError> {
    let text: String = row.get(index).map_err(db_error)?;
    Uuid::try_parse(&text).map_err(|_| StoreError::Corrupt("token id"))
}

fn read_time(row: &Row<'_>, index: usize) -> Result<Option<NaiveDateTime>, StoreError> {
    let text: Option<String> = row.get(index).map_err(db_error)?;
    match text {
        None => Ok(None),
        Some(text) => parse_datetime(&text)
            .map(Some)
            .ok_or(StoreError::Corrupt("datetime")),
    }
}

fn read_token(row: &Row<'_>) -> Result<Token, StoreError> {
    Ok(Token {
        id: read_uuid(row, 0)?,
        sub: row.get(1).map_err(db_error)?,
        login: row.get(2).map_err(db_error)?,
        name: row.get(3).map_err(db_error)?,
        expires: read_time(row, 4)?,
    })
}

fn read_candidate(row: &Row<'_>) -> Result<Candidate, StoreError> {
    let token = read_token(row)?;
    let user = User {
        sub: token.sub.clone(),
        username: row.get(5).map_err(db_error)?,
        email: row.get(6).map_err(db_error)?,
    };
    let hash = Secret::new(row.get::<_, String>(7).map_err(db_error)?);
    Ok(Candidate { token, user, hash })
}

fn read_user(row: &Row<'_>) -> Result<User, StoreError> {
    Ok(User {
        sub: row.get(0).map_err(db_error)?,
        username: row.get(1).map_err(db_error)?,
        email: row.get(2).map_err(db_error)?,
    })
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_error)?;
    let has_tokens: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'tokens'",
            [],
            |r| r.get(0),
        )
        .map_err(db_error)?;
    if has_tokens {
        check_upstream_columns(&tx)?;
    } else {
        tx.execute_batch(UPSTREAM_SCHEMA).map_err(db_error)?;
        tx.execute(
            "INSERT INTO alembic_version (version_num) VALUES (?1)",
            [UPSTREAM_REVISION],
        )
        .map_err(db_error)?;
    }
    tx.execute_batch(ADDITIONS).map_err(db_error)?;
    tx.execute_batch(sessions::SCHEMA).map_err(db_error)?;
    tx.commit().map_err(db_error)
}

/// A database from before the Python project's `login` column cannot be
/// used: its tokens have no login to select them by.
fn check_upstream_columns(conn: &Connection) -> Result<(), StoreError> {
    let has_login: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('tokens') WHERE name = 'login'",
            [],
            |r| r.get(0),
        )
        .map_err(db_error)?;
    if has_login {
        Ok(())
    } else {
        tracing::error!("tokens table has no login column; upgrade devicepasswords first");
        Err(StoreError::Corrupt("schema"))
    }
}

fn collect<T>(
    rows: rusqlite::Rows<'_>,
    read: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = rows;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        out.push(read(row)?);
    }
    Ok(out)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.run(migrate).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Reading the tokens table also tells a missing schema (the
        // service started with auto_migrate off) from a healthy database.
        self.run(|c| {
            c.query_row("SELECT count(*) FROM tokens WHERE 0", [], |_| Ok(()))
                .map_err(db_error)
        })
        .await
    }

    async fn candidate_by_login(
        &self,
        login: &str,
        now: NaiveDateTime,
    ) -> Result<Option<Candidate>, StoreError> {
        let login = login.to_owned();
        let now = format_datetime(now);
        self.run(move |c| {
            let sql = format!(
                "{CANDIDATE_SELECT} WHERE t.login = ?1 \
                 AND (t.expires IS NULL OR t.expires > ?2)"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(db_error)?;
            let rows = stmt.query(params![login, now]).map_err(db_error)?;
            Ok(collect(rows, read_candidate)?.into_iter().next())
        })
        .await
    }

    async fn candidates_by_user(
        &self,
        name: &str,
        now: NaiveDateTime,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        let name = name.to_owned();
        let now = format_datetime(now);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let sql = format!(
                "{CANDIDATE_SELECT} WHERE (u.username = ?1 OR u.email = ?1) \
                 AND (t.expires IS NULL OR t.expires > ?2) \
                 ORDER BY {LAST_USED} IS NULL, {LAST_USED} DESC LIMIT ?3"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(db_error)?;
            let rows = stmt.query(params![name, now, limit]).map_err(db_error)?;
            collect(rows, read_candidate)
        })
        .await
    }

    async fn upsert_user(&self, user: &User) -> Result<(), StoreError> {
        let user = user.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO users (sub, username, email) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (sub) DO UPDATE SET \
                 username = excluded.username, email = excluded.email",
                params![user.sub, user.username, user.email],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn find_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let name = name.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT sub, username, email FROM users \
                 WHERE sub = ?1 OR username = ?1 OR email = ?1 \
                 ORDER BY sub = ?1 DESC, username = ?1 DESC LIMIT 1",
                [name],
                |row| Ok(read_user(row)),
            )
            .optional()
            .map_err(db_error)?
            .transpose()
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.run(|c| {
            let mut stmt = c
                .prepare_cached("SELECT sub, username, email FROM users ORDER BY username")
                .map_err(db_error)?;
            let rows = stmt.query([]).map_err(db_error)?;
            collect(rows, read_user)
        })
        .await
    }

    async fn insert_token(&self, new: &NewToken) -> Result<(), StoreError> {
        let t = new.token.clone();
        let hash = new.hash.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO tokens (id, sub, name, token, expires, login) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    uuid_text(t.id),
                    t.sub,
                    t.name,
                    hash.expose(),
                    t.expires.map(format_datetime),
                    t.login
                ],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn list_tokens(&self, sub: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let sub = sub.map(str::to_owned);
        self.run(move |c| {
            let sql = format!(
                "SELECT t.id, t.sub, t.login, t.name, t.expires, u.username, \
                 {LAST_USED} FROM tokens t JOIN users u ON u.sub = t.sub \
                 WHERE ?1 IS NULL OR t.sub = ?1 ORDER BY u.username, t.login"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(db_error)?;
            let rows = stmt.query([sub]).map_err(db_error)?;
            collect(rows, |row| {
                Ok(TokenInfo {
                    token: read_token(row)?,
                    username: row.get(5).map_err(db_error)?,
                    last_used: read_time(row, 6)?,
                })
            })
        })
        .await
    }

    async fn delete_token(&self, which: &TokenRef) -> Result<bool, StoreError> {
        let which = which.clone();
        self.run(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            let id: Option<String> = match &which {
                TokenRef::Id(id) => tx.query_row(
                    "SELECT id FROM tokens WHERE id = ?1",
                    [uuid_text(*id)],
                    |r| r.get(0),
                ),
                TokenRef::Login(login) => {
                    tx.query_row("SELECT id FROM tokens WHERE login = ?1", [login], |r| {
                        r.get(0)
                    })
                }
            }
            .optional()
            .map_err(db_error)?;
            let Some(id) = id else { return Ok(false) };
            tx.execute("DELETE FROM logs WHERE \"tokenId\" = ?1", [&id])
                .map_err(db_error)?;
            tx.execute("DELETE FROM tokens WHERE id = ?1", [&id])
                .map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            Ok(true)
        })
        .await
    }

    async fn record_uses(&self, uses: &[(Uuid, NaiveDateTime)]) -> Result<(), StoreError> {
        let uses: Vec<(String, String)> = uses
            .iter()
            .map(|(id, at)| (uuid_text(*id), format_datetime(*at)))
            .collect();
        self.run(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            {
                // A token deleted since its use is skipped, not an error.
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO logs (date, \"tokenId\") SELECT ?1, ?2 \
                         WHERE EXISTS (SELECT 1 FROM tokens WHERE id = ?2)",
                    )
                    .map_err(db_error)?;
                for (id, at) in &uses {
                    stmt.execute(params![at, id]).map_err(db_error)?;
                }
            }
            tx.commit().map_err(db_error)
        })
        .await
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

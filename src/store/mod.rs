//! Persistent data behind one [`Store`] trait.
//!
//! The data model is the Python devicepasswords project's (`users`,
//! `tokens`, `logs`, `revoked`), so an existing deployment's database is
//! used as it is. Each database engine lives in its own module; no driver
//! type appears outside it. Driver errors are logged in detail by the
//! engine module and surface here only as an opaque [`StoreError`].

mod mssql;
mod mysql;
mod postgres;
mod sqlite;
pub mod url;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use uuid::Uuid;

use crate::secret::Secret;

pub use mssql::MssqlStore;
pub use mysql::MysqlStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use url::{DatabaseUrl, Engine, ServerUrl};

/// A person, keyed by the identity provider's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub sub: String,
    pub username: String,
    pub email: String,
}

/// A device password's public part: everything but the stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: Uuid,
    pub sub: String,
    pub login: String,
    pub name: String,
    pub expires: Option<NaiveDateTime>,
}

/// A token listed for people: with its owner and when it was last used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub token: Token,
    pub username: String,
    pub last_used: Option<NaiveDateTime>,
}

/// A token that may match a presented password, with its owner.
pub struct Candidate {
    pub token: Token,
    pub user: User,
    /// The stored value (a hash, or plaintext for some schemes).
    pub hash: Secret<String>,
}

/// A token to be written.
pub struct NewToken {
    pub token: Token,
    pub hash: Secret<String>,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not answer; details are in the log.
    #[error("the database is unavailable")]
    Unavailable,
    /// A unique value is taken (login, username, email or subject).
    #[error("{0} is already taken")]
    Conflict(&'static str),
    /// A row refers to something that does not exist.
    #[error("{0} does not exist")]
    Missing(&'static str),
    /// A database URL option has a value that cannot be used; the log
    /// line before says why (never with the value).
    #[error("the database URL option {0} is not valid")]
    BadOption(&'static str),
    /// A stored value cannot be read (a row not written as expected).
    #[error("a stored {0} cannot be read")]
    Corrupt(&'static str),
}

/// A server-side browser session, or a sign-in still in progress.
///
/// The store keeps these rows opaque: `data` is JSON written and read by
/// the web layer. `id` is a digest of the cookie value, never the cookie
/// itself, so a database reader cannot take over a session. Rows live in
/// devicepass's own `dp_sessions` table, which the Python project ignores.
///
/// `Debug` shows neither `id` nor `data` (which holds tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the cookie value (64 characters).
    pub id: String,
    /// The signed-in user; `None` while a sign-in is in progress.
    pub sub: Option<String>,
    /// The identity provider's session id (`sid` claim), if it sent one.
    pub sid: Option<String>,
    /// JSON, at most a few kilobytes.
    pub data: String,
    /// When the row stops being valid (UTC).
    pub expires: NaiveDateTime,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &"<redacted>")
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("expires", &self.expires)
            .finish()
    }
}

/// What a token is selected by when it is deleted.
#[derive(Debug, Clone)]
pub enum TokenRef {
    Id(Uuid),
    Login(String),
}

impl TokenRef {
    /// A UUID (with or without dashes) selects by id, anything else by login.
    pub fn parse(text: &str) -> TokenRef {
        match Uuid::try_parse(text) {
            Ok(id) => TokenRef::Id(id),
            Err(_) => TokenRef::Login(text.to_owned()),
        }
    }
}

/// Storage operations, the same for every database engine.
#[async_trait]
pub trait Store: Send + Sync {
    /// Create the schema, or bring an existing one up to date (additive
    /// changes only). Safe to run twice and from two processes at once.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The token whose login is `login`, unless it expired by `now`.
    async fn candidate_by_login(
        &self,
        login: &str,
        now: NaiveDateTime,
    ) -> Result<Option<Candidate>, StoreError>;

    /// The active tokens of the user whose username or email is `name`,
    /// most recently used first, at most `limit`.
    async fn candidates_by_user(
        &self,
        name: &str,
        now: NaiveDateTime,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError>;

    /// Create the user, or update username and email of an existing sub.
    async fn upsert_user(&self, user: &User) -> Result<(), StoreError>;

    /// The user whose sub, username or email is `name`.
    async fn find_user(&self, name: &str) -> Result<Option<User>, StoreError>;

    async fn list_users(&self) -> Result<Vec<User>, StoreError>;

    /// Write a new token; `Conflict("login")` when the login is taken.
    async fn insert_token(&self, token: &NewToken) -> Result<(), StoreError>;

    /// Tokens of one user (by sub), or of everyone.
    async fn list_tokens(&self, sub: Option<&str>) -> Result<Vec<TokenInfo>, StoreError>;

    /// Delete a token and its use records; `false` if there was none.
    async fn delete_token(&self, which: &TokenRef) -> Result<bool, StoreError>;

    /// Record uses of tokens (one row each) in one transaction.
    async fn record_uses(&self, uses: &[(Uuid, NaiveDateTime)]) -> Result<(), StoreError>;

    /// Write a session row, replacing one with the same id.
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// The session with this id, unless it expired by `now` (a row whose
    /// `expires <= now` is never returned).
    async fn session(
        &self,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Delete the session and return it, unless it expired by `now` (an
    /// expired row is left for [`Store::purge_sessions`]). Of concurrent
    /// calls for one id, at most one gets the row.
    async fn take_session(
        &self,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Delete one session; deleting a missing one is not an error.
    async fn delete_session(&self, id: &str) -> Result<(), StoreError>;

    /// End an identity-provider session, in one transaction. With a
    /// `sid`: record it in `revoked` (once, however often it is sent) and
    /// delete the sessions carrying it; `sub` is then not used. With only
    /// a `sub`: delete every session of that user. With neither: nothing.
    /// Returns how many sessions were deleted.
    async fn end_idp_session(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<u64, StoreError>;

    /// Whether `sid` is in `revoked` (the Python project writes it too).
    async fn is_revoked(&self, sid: &str) -> Result<bool, StoreError>;

    /// Delete the sessions that expired by `now` (`expires <= now`);
    /// returns how many.
    async fn purge_sessions(&self, now: NaiveDateTime) -> Result<u64, StoreError>;
}

/// Connection pool settings for the server databases.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Connections kept at most.
    pub size: usize,
    /// Longest wait for a new connection (or a free one from the pool).
    pub connect_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            size: 4,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Open the store a database URL names. Server stores connect lazily, so
/// this succeeds while the database is down; `migrate` and `ping` tell.
pub fn open(url: &DatabaseUrl, options: &PoolOptions) -> Result<Arc<dyn Store>, StoreError> {
    match url.engine() {
        Engine::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path, options.size)?)),
        Engine::Postgres(server) => Ok(Arc::new(PostgresStore::open(server, options)?)),
        Engine::Mysql(server) => Ok(Arc::new(MysqlStore::open(server, options)?)),
        Engine::Mssql(server) => Ok(Arc::new(MssqlStore::open(server, options)?)),
    }
}

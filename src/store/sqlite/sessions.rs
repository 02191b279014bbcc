//! Server-side browser sessions in SQLite: devicepass's own `dp_sessions`
//! table, beside the upstream ones, and the upstream `revoked` table.
//!
//! `expires` is text in SQLAlchemy's form, as `tokens.expires` is; all
//! rows are written by [`format_datetime`], so comparing the text
//! compares the times.

use chrono::NaiveDateTime;
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::{SqliteStore, db_error, format_datetime, read_time};
use crate::store::{SessionRecord, StoreError};

/// The table and its indexes; run by every migration (the old project
/// never reads the table, so it keeps running on a migrated database).
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS dp_sessions (
	id VARCHAR(64) NOT NULL,
	sub VARCHAR,
	sid VARCHAR,
	data TEXT NOT NULL,
	expires DATETIME NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_dp_sessions_sub ON dp_sessions (sub);
CREATE INDEX IF NOT EXISTS ix_dp_sessions_sid ON dp_sessions (sid);
CREATE INDEX IF NOT EXISTS ix_dp_sessions_expires ON dp_sessions (expires);
"#;

const PUT: &str = "INSERT INTO dp_sessions (id, sub, sid, data, expires) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO UPDATE SET \
     sub = excluded.sub, sid = excluded.sid, data = excluded.data, \
     expires = excluded.expires";

const GET: &str = "SELECT id, sub, sid, data, expires FROM dp_sessions \
     WHERE id = ?1 AND expires > ?2";

/// One statement, so of two takers only one deletes (and gets) the row.
const TAKE: &str = "DELETE FROM dp_sessions WHERE id = ?1 AND expires > ?2 \
     RETURNING id, sub, sid, data, expires";

const REVOKE: &str = "INSERT INTO revoked (sid) VALUES (?1) ON CONFLICT (sid) DO NOTHING";

fn read_session(row: &Row<'_>) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.get(0).map_err(db_error)?,
        sub: row.get(1).map_err(db_error)?,
        sid: row.get(2).map_err(db_error)?,
        data: row.get(3).map_err(db_error)?,
        expires: read_time(row, 4)?.ok_or(StoreError::Corrupt("session"))?,
    })
}

/// The one row `sql` selects (or returns) for an id at a time.
async fn one(
    store: &SqliteStore,
    sql: &'static str,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    let id = id.to_owned();
    let now = format_datetime(now);
    store
        .run(move |c| {
            let mut stmt = c.prepare_cached(sql).map_err(db_error)?;
            stmt.query_row(params![id, now], |row| Ok(read_session(row)))
                .optional()
                .map_err(db_error)?
                .transpose()
        })
        .await
}

/// Run one write and return how many rows it changed.
async fn write(store: &SqliteStore, sql: &'static str, value: String) -> Result<u64, StoreError> {
    store
        .run(move |c| {
            let mut stmt = c.prepare_cached(sql).map_err(db_error)?;
            let changed = stmt.execute([value]).map_err(db_error)?;
            Ok(changed as u64)
        })
        .await
}

pub(super) async fn put(store: &SqliteStore, session: &SessionRecord) -> Result<(), StoreError> {
    let s = session.clone();
    store
        .run(move |c| {
            let expires = format_datetime(s.expires);
            let mut stmt = c.prepare_cached(PUT).map_err(db_error)?;
            stmt.execute(params![s.id, s.sub, s.sid, s.data, expires])
                .map_err(db_error)?;
            Ok(())
        })
        .await
}

pub(super) async fn find(
    store: &SqliteStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    one(store, GET, id, now).await
}

pub(super) async fn take(
    store: &SqliteStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    one(store, TAKE, id, now).await
}

pub(super) async fn delete(store: &SqliteStore, id: &str) -> Result<(), StoreError> {
    let sql = "DELETE FROM dp_sessions WHERE id = ?1";
    write(store, sql, id.to_owned()).await.map(drop)
}

pub(super) async fn end_idp(
    store: &SqliteStore,
    sid: Option<&str>,
    sub: Option<&str>,
) -> Result<u64, StoreError> {
    match (sid, sub) {
        (Some(sid), _) => revoke(store, sid.to_owned()).await,
        (None, Some(sub)) => {
            let sql = "DELETE FROM dp_sessions WHERE sub = ?1";
            write(store, sql, sub.to_owned()).await
        }
        (None, None) => Ok(0),
    }
}

/// Record `sid` as revoked and delete its sessions, in one transaction.
async fn revoke(store: &SqliteStore, sid: String) -> Result<u64, StoreError> {
    store
        .run(move |c| {
            // Immediate: take the write lock first, so the busy timeout
            // applies instead of a read lock failing to upgrade.
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error)?;
            tx.execute(REVOKE, [&sid]).map_err(db_error)?;
            let deleted = tx
                .execute("DELETE FROM dp_sessions WHERE sid = ?1", [&sid])
                .map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            Ok(deleted as u64)
        })
        .await
}

pub(super) async fn is_revoked(store: &SqliteStore, sid: &str) -> Result<bool, StoreError> {
    let sid = sid.to_owned();
    store
        .run(move |c| {
            let sql = "SELECT EXISTS (SELECT 1 FROM revoked WHERE sid = ?1)";
            let mut stmt = c.prepare_cached(sql).map_err(db_error)?;
            stmt.query_row([sid], |r| r.get(0)).map_err(db_error)
        })
        .await
}

pub(super) async fn purge(store: &SqliteStore, now: NaiveDateTime) -> Result<u64, StoreError> {
    let sql = "DELETE FROM dp_sessions WHERE expires <= ?1";
    write(store, sql, format_datetime(now)).await
}

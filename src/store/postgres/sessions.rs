//! Server-side browser sessions in PostgreSQL: devicepass's own
//! `dp_sessions` table, beside the upstream ones, and the upstream
//! `revoked` table.

use chrono::NaiveDateTime;
use tokio_postgres::Row;

use super::{Param, PostgresStore, db_error, get};
use crate::store::{SessionRecord, StoreError};

/// The table and its indexes, created under the migration lock. Types
/// follow the upstream tables (`VARCHAR` like `revoked.sid`, naive UTC
/// `TIMESTAMP` like `tokens.expires`); the old project never reads the
/// table, so it keeps running on a migrated database.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS dp_sessions (
    id VARCHAR(64) NOT NULL,
    sub VARCHAR,
    sid VARCHAR,
    data TEXT NOT NULL,
    expires TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_dp_sessions_sub ON dp_sessions (sub);
CREATE INDEX IF NOT EXISTS ix_dp_sessions_sid ON dp_sessions (sid);
CREATE INDEX IF NOT EXISTS ix_dp_sessions_expires ON dp_sessions (expires);
"#;

const PUT: &str = "INSERT INTO dp_sessions (id, sub, sid, data, expires) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
     sub = EXCLUDED.sub, sid = EXCLUDED.sid, data = EXCLUDED.data, \
     expires = EXCLUDED.expires";

const GET: &str = "SELECT id, sub, sid, data, expires FROM dp_sessions \
     WHERE id = $1 AND expires > $2";

/// A second concurrent DELETE waits for the first's row lock, then finds
/// the row gone: only one taker gets it.
const TAKE: &str = "DELETE FROM dp_sessions WHERE id = $1 AND expires > $2 \
     RETURNING id, sub, sid, data, expires";

const REVOKE: &str = "INSERT INTO revoked (sid) VALUES ($1) ON CONFLICT (sid) DO NOTHING";

fn read_session(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: get(row, 0, "session")?,
        sub: get(row, 1, "session")?,
        sid: get(row, 2, "session")?,
        data: get(row, 3, "session")?,
        expires: get(row, 4, "datetime")?,
    })
}

/// The one row `sql` selects (or returns) for an id at a time.
async fn one(
    store: &PostgresStore,
    sql: &str,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    let rows = store.query(sql, &[&id, &now]).await?;
    rows.first().map(read_session).transpose()
}

pub(super) async fn put(store: &PostgresStore, s: &SessionRecord) -> Result<(), StoreError> {
    let params: [Param<'_>; 5] = [&s.id, &s.sub, &s.sid, &s.data, &s.expires];
    store.execute(PUT, &params).await.map(drop)
}

pub(super) async fn find(
    store: &PostgresStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    one(store, GET, id, now).await
}

pub(super) async fn take(
    store: &PostgresStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    one(store, TAKE, id, now).await
}

pub(super) async fn delete(store: &PostgresStore, id: &str) -> Result<(), StoreError> {
    let sql = "DELETE FROM dp_sessions WHERE id = $1";
    store.execute(sql, &[&id]).await.map(drop)
}

pub(super) async fn end_idp(
    store: &PostgresStore,
    sid: Option<&str>,
    sub: Option<&str>,
) -> Result<u64, StoreError> {
    match (sid, sub) {
        (Some(sid), _) => revoke(store, sid).await,
        (None, Some(sub)) => {
            let sql = "DELETE FROM dp_sessions WHERE sub = $1";
            store.execute(sql, &[&sub]).await
        }
        (None, None) => Ok(0),
    }
}

/// Record `sid` as revoked and delete its sessions, in one transaction.
async fn revoke(store: &PostgresStore, sid: &str) -> Result<u64, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(db_error)?;
    let revoke = tx.prepare_cached(REVOKE).await.map_err(db_error)?;
    tx.execute(&revoke, &[&sid]).await.map_err(db_error)?;
    let delete = tx
        .prepare_cached("DELETE FROM dp_sessions WHERE sid = $1")
        .await
        .map_err(db_error)?;
    let deleted = tx.execute(&delete, &[&sid]).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(deleted)
}

pub(super) async fn is_revoked(store: &PostgresStore, sid: &str) -> Result<bool, StoreError> {
    let sql = "SELECT EXISTS (SELECT 1 FROM revoked WHERE sid = $1)";
    let rows = store.query(sql, &[&sid]).await?;
    match rows.first() {
        Some(row) => get(row, 0, "revoked"),
        None => Err(StoreError::Corrupt("revoked")),
    }
}

pub(super) async fn purge(store: &PostgresStore, now: NaiveDateTime) -> Result<u64, StoreError> {
    let sql = "DELETE FROM dp_sessions WHERE expires <= $1";
    store.execute(sql, &[&now]).await
}

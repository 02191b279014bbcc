//! Server-side browser sessions in MySQL / MariaDB: devicepass's own
//! `dp_sessions` table (schema version 2) and the `revoked` table.
//!
//! MySQL has no `DELETE … RETURNING`, so taking a session reads it with a
//! row lock and deletes it in one transaction: a second taker waits for
//! the lock and then finds no row.

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::take as column;
use super::{
    MysqlStore, TX_ATTEMPTS, db_error, read_committed, table_options, text_type, worth_retrying,
};
use crate::store::{SessionRecord, StoreError};

/// The table, in the same text encoding as the others. `data` is
/// `LONGTEXT`: the store sets no limit of its own on the JSON.
pub(super) fn schema(collation: &str) -> String {
    let text = text_type(collation);
    let table = table_options(collation);
    format!(
        "CREATE TABLE IF NOT EXISTS dp_sessions (\
         id VARCHAR(64) {text} NOT NULL, \
         sub VARCHAR(255) {text} NULL, sid VARCHAR(255) {text} NULL, \
         data LONGTEXT {text} NOT NULL, expires DATETIME(6) NOT NULL, \
         PRIMARY KEY (id), KEY ix_dp_sessions_sub (sub), \
         KEY ix_dp_sessions_sid (sid), KEY ix_dp_sessions_expires (expires)) \
         {table}"
    )
}

/// `VALUES()` rather than MySQL 8's row alias, which MariaDB lacks.
const PUT: &str = "INSERT INTO dp_sessions (id, sub, sid, data, expires) \
     VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE sub = VALUES(sub), \
     sid = VALUES(sid), data = VALUES(data), expires = VALUES(expires)";

const COLUMNS: &str = "SELECT id, sub, sid, data, expires FROM dp_sessions";

/// Writes the sid once; a repeat changes nothing (and is no error).
const REVOKE: &str = "INSERT INTO revoked (sid) VALUES (?) ON DUPLICATE KEY UPDATE sid = sid";

fn read_session(mut row: Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: column(&mut row, 0, "session")?,
        sub: column(&mut row, 1, "session")?,
        sid: column(&mut row, 2, "session")?,
        data: column(&mut row, 3, "session")?,
        expires: column(&mut row, 4, "datetime")?,
    })
}

async fn take_once(
    conn: &mut Conn,
    id: &str,
    now: NaiveDateTime,
) -> mysql_async::Result<Option<Row>> {
    let mut tx = conn.start_transaction(read_committed()).await?;
    let sql = format!("{COLUMNS} WHERE id = ? AND expires > ? FOR UPDATE");
    let row: Option<Row> = tx.exec_first(sql, (id, now)).await?;
    if row.is_some() {
        tx.exec_drop("DELETE FROM dp_sessions WHERE id = ?", (id,))
            .await?;
    }
    tx.commit().await?;
    Ok(row)
}

async fn revoke_once(conn: &mut Conn, sid: &str) -> mysql_async::Result<u64> {
    let mut tx = conn.start_transaction(read_committed()).await?;
    tx.exec_drop(REVOKE, (sid,)).await?;
    tx.exec_drop("DELETE FROM dp_sessions WHERE sid = ?", (sid,))
        .await?;
    let deleted = tx.affected_rows();
    tx.commit().await?;
    Ok(deleted)
}

/// Run one statement and return how many rows it changed.
async fn write(
    store: &MysqlStore,
    sql: &str,
    value: impl Into<mysql_async::Value>,
) -> Result<u64, StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(sql, (value.into(),))
        .await
        .map_err(db_error)?;
    Ok(conn.affected_rows())
}

pub(super) async fn put(store: &MysqlStore, s: &SessionRecord) -> Result<(), StoreError> {
    let mut conn = store.conn().await?;
    let params = || (&s.id, &s.sub, &s.sid, &s.data, s.expires);
    // Concurrent upserts of one new key can deadlock in InnoDB.
    retrying!(conn.exec_drop(PUT, params())).map_err(db_error)
}

pub(super) async fn find(
    store: &MysqlStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    let sql = format!("{COLUMNS} WHERE id = ? AND expires > ?");
    let row: Option<Row> = store
        .conn()
        .await?
        .exec_first(sql, (id, now))
        .await
        .map_err(db_error)?;
    row.map(read_session).transpose()
}

pub(super) async fn take(
    store: &MysqlStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    let mut conn = store.conn().await?;
    let row = retrying!(take_once(&mut conn, id, now)).map_err(db_error)?;
    row.map(read_session).transpose()
}

pub(super) async fn delete(store: &MysqlStore, id: &str) -> Result<(), StoreError> {
    write(store, "DELETE FROM dp_sessions WHERE id = ?", id)
        .await
        .map(drop)
}

pub(super) async fn end_idp(
    store: &MysqlStore,
    sid: Option<&str>,
    sub: Option<&str>,
) -> Result<u64, StoreError> {
    match (sid, sub) {
        (Some(sid), _) => {
            let mut conn = store.conn().await?;
            retrying!(revoke_once(&mut conn, sid)).map_err(db_error)
        }
        (None, Some(sub)) => write(store, "DELETE FROM dp_sessions WHERE sub = ?", sub).await,
        (None, None) => Ok(0),
    }
}

pub(super) async fn is_revoked(store: &MysqlStore, sid: &str) -> Result<bool, StoreError> {
    let found: Option<Row> = store
        .conn()
        .await?
        .exec_first("SELECT 1 FROM revoked WHERE sid = ? LIMIT 1", (sid,))
        .await
        .map_err(db_error)?;
    Ok(found.is_some())
}

pub(super) async fn purge(store: &MysqlStore, now: NaiveDateTime) -> Result<u64, StoreError> {
    write(store, "DELETE FROM dp_sessions WHERE expires <= ?", now).await
}

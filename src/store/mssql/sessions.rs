//! Server-side browser sessions in SQL Server: devicepass's own
//! `dp_sessions` table (schema version 2) and the `revoked` table.
//!
//! Session ids are hex digests, so SQL Server's habit of ignoring
//! trailing spaces cannot matter for them; `sid` and `sub` come from the
//! identity provider and are compared with their lengths, as names are.

use chrono::NaiveDateTime;
use tiberius::{Row, ToSql};

use super::{MssqlStore, Statement, datetime, text};
use crate::store::{SessionRecord, StoreError};

pub(super) const CREATE_SESSIONS: &str = "
CREATE TABLE dp_sessions (
    id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    sub NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NULL,
    sid NVARCHAR(255) COLLATE Latin1_General_100_BIN2 NULL,
    data NVARCHAR(MAX) NOT NULL,
    expires DATETIME2(6) NOT NULL,
    CONSTRAINT dp_sessions_pk PRIMARY KEY (id)
)";

pub(super) const CREATE_SUB_INDEX: &str = "
CREATE INDEX ix_dp_sessions_sub ON dp_sessions (sub)";

pub(super) const CREATE_SID_INDEX: &str = "
CREATE INDEX ix_dp_sessions_sid ON dp_sessions (sid)";

pub(super) const CREATE_EXPIRES_INDEX: &str = "
CREATE INDEX ix_dp_sessions_expires ON dp_sessions (expires)";

/// @P1 id, @P2 sub, @P3 sid, @P4 data, @P5 expires. The range lock makes
/// two writes of one new id wait for each other instead of both inserting.
pub(super) const PUT_SESSION: Statement<5> = Statement {
    sql: "
SET XACT_ABORT ON;
BEGIN TRANSACTION;
UPDATE dp_sessions WITH (UPDLOCK, SERIALIZABLE)
SET sub = @P2, sid = @P3, data = @P4, expires = @P5
WHERE id = @P1;
IF @@ROWCOUNT = 0
    INSERT INTO dp_sessions (id, sub, sid, data, expires)
    VALUES (@P1, @P2, @P3, @P4, @P5);
COMMIT TRANSACTION;",
};

/// @P1 id, @P2 now. Columns as [`read_session`] reads them.
pub(super) const GET_SESSION: Statement<2> = Statement {
    sql: "
SELECT id, sub, sid, data, expires FROM dp_sessions
WHERE id = @P1 AND expires > @P2",
};

/// @P1 id, @P2 now. One statement: a second taker waits for the first's
/// row lock, then finds nothing to delete.
pub(super) const TAKE_SESSION: Statement<2> = Statement {
    sql: "
DELETE FROM dp_sessions
OUTPUT deleted.id, deleted.sub, deleted.sid, deleted.data, deleted.expires
WHERE id = @P1 AND expires > @P2",
};

/// @P1 id.
pub(super) const DELETE_SESSION: Statement<1> = Statement {
    sql: "DELETE FROM dp_sessions WHERE id = @P1",
};

/// @P1 sid. Records the sid unless the key already holds it (compared as
/// the primary key compares, so the insert never violates it), deletes
/// its sessions, and returns how many.
pub(super) const END_BY_SID: Statement<1> = Statement {
    sql: "
SET XACT_ABORT ON;
DECLARE @deleted BIGINT;
BEGIN TRANSACTION;
IF NOT EXISTS (SELECT 1 FROM revoked WITH (UPDLOCK, HOLDLOCK) WHERE sid = @P1)
    INSERT INTO revoked (sid) VALUES (@P1);
DELETE FROM dp_sessions WHERE sid = @P1 AND DATALENGTH(sid) = DATALENGTH(@P1);
SET @deleted = @@ROWCOUNT;
COMMIT TRANSACTION;
SELECT @deleted AS deleted;",
};

/// @P1 sub.
pub(super) const END_BY_SUB: Statement<1> = Statement {
    sql: "DELETE FROM dp_sessions WHERE sub = @P1 AND DATALENGTH(sub) = DATALENGTH(@P1)",
};

/// @P1 sid.
pub(super) const IS_REVOKED: Statement<1> = Statement {
    sql: "
SELECT TOP (1) 1 AS revoked FROM revoked
WHERE sid = @P1 AND DATALENGTH(sid) = DATALENGTH(@P1)",
};

/// @P1 now.
pub(super) const PURGE_SESSIONS: Statement<1> = Statement {
    sql: "DELETE FROM dp_sessions WHERE expires <= @P1",
};

fn optional_text(row: &Row, index: usize) -> Result<Option<String>, StoreError> {
    row.try_get::<&str, _>(index)
        .map(|value| value.map(str::to_owned))
        .map_err(|_| StoreError::Corrupt("session"))
}

/// id, sub, sid, data, expires.
pub(super) fn read_session(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: text(row, 0, "session")?,
        sub: optional_text(row, 1)?,
        sid: optional_text(row, 2)?,
        data: text(row, 3, "session")?,
        expires: datetime(row, 4)?.ok_or(StoreError::Corrupt("datetime"))?,
    })
}

/// The count a batch ends with (`SELECT @deleted`).
pub(super) fn read_count(rows: &[Row]) -> Result<u64, StoreError> {
    rows.first()
        .and_then(|row| row.try_get::<i64, _>(0).ok().flatten())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or(StoreError::Corrupt("count"))
}

/// Run one statement and return how many rows it changed.
async fn count<const N: usize>(
    store: &MssqlStore,
    what: &'static str,
    statement: &Statement<N>,
    args: [&dyn ToSql; N],
) -> Result<u64, StoreError> {
    let mut lease = store.pool.get().await?;
    let result = lease.conn.execute(statement.sql, &args).await;
    let result = result.map(|done| done.total());
    store.finish(lease, what, result).await
}

async fn one(
    store: &MssqlStore,
    what: &'static str,
    statement: &Statement<2>,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    let rows = store.fetch(what, statement, [&id, &now]).await?;
    rows.first().map(read_session).transpose()
}

pub(super) async fn put(store: &MssqlStore, s: &SessionRecord) -> Result<(), StoreError> {
    let args: [&dyn ToSql; 5] = [&s.id, &s.sub, &s.sid, &s.data, &s.expires];
    store.execute("put_session", &PUT_SESSION, args).await
}

pub(super) async fn find(
    store: &MssqlStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    one(store, "session", &GET_SESSION, id, now).await
}

pub(super) async fn take(
    store: &MssqlStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<SessionRecord>, StoreError> {
    one(store, "take_session", &TAKE_SESSION, id, now).await
}

pub(super) async fn delete(store: &MssqlStore, id: &str) -> Result<(), StoreError> {
    count(store, "delete_session", &DELETE_SESSION, [&id])
        .await
        .map(drop)
}

pub(super) async fn end_idp(
    store: &MssqlStore,
    sid: Option<&str>,
    sub: Option<&str>,
) -> Result<u64, StoreError> {
    let what = "end_idp_session";
    match (sid, sub) {
        (Some(sid), _) => read_count(&store.fetch(what, &END_BY_SID, [&sid]).await?),
        (None, Some(sub)) => count(store, what, &END_BY_SUB, [&sub]).await,
        (None, None) => Ok(0),
    }
}

pub(super) async fn is_revoked(store: &MssqlStore, sid: &str) -> Result<bool, StoreError> {
    let rows = store.fetch("is_revoked", &IS_REVOKED, [&sid]).await?;
    Ok(!rows.is_empty())
}

pub(super) async fn purge(store: &MssqlStore, now: NaiveDateTime) -> Result<u64, StoreError> {
    count(store, "purge_sessions", &PURGE_SESSIONS, [&now]).await
}

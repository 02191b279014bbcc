//! MariaDB / MySQL-only checks on a real server: the schema devicepass
//! creates (utf8mb4 with binary collations, DATETIME(6), the indexes and
//! foreign keys), migrations run twice and from two replicas at once,
//! exact name matching, concurrent writers, TLS modes, and a pool that
//! survives the server dropping its connections.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, SubsecRound, TimeDelta, Utc};
use devicepass::store::{self, DatabaseUrl, NewToken, PoolOptions, Store, StoreError};
use devicepass::store::{SessionRecord, TokenRef, User};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use uuid::Uuid;

use crate::engines::{Engine, TestDb, UPSTREAM_TABLES as TABLES, create_mysql, fresh};

async fn connect(url: &str) -> Conn {
    Conn::from_url(url)
        .await
        .expect("connect to the test MariaDB")
}

fn open_store(url: &str) -> Arc<dyn Store> {
    let url = DatabaseUrl::parse(url).expect("URL parses");
    store::open(&url, &PoolOptions::default()).expect("store opens")
}

/// `(column, value…)` rows of a query whose columns are all text.
async fn texts(conn: &mut Conn, sql: &str) -> Vec<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.get_opt::<Option<String>, _>(i)
                        .and_then(Result::ok)
                        .flatten()
                })
                .map(Option::unwrap_or_default)
                .collect()
        })
        .collect()
}

async fn count(conn: &mut Conn, sql: &str) -> u64 {
    conn.query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
}

async fn fresh_mysql() -> Option<TestDb> {
    Engine::Mysql.admin_url()?;
    fresh(Engine::Mysql).await
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

fn user(sub: &str, username: &str, email: &str) -> User {
    User {
        sub: sub.into(),
        username: username.into(),
        email: email.into(),
    }
}

fn new_token(owner: &User, login: &str) -> NewToken {
    crate::conformance::token(owner, login, Some(now() + TimeDelta::days(1)))
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_is_utf8mb4_binary_with_microsecond_datetimes() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    let mut conn = connect(&db.url).await;
    let engines = texts(
        &mut conn,
        "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1",
    )
    .await;
    for table in TABLES {
        assert!(
            engines.contains(&vec![table.to_string(), "InnoDB".into()]),
            "{table}: {engines:?}"
        );
    }

    let no_pad = count(
        &mut conn,
        "SELECT COUNT(*) FROM information_schema.COLLATIONS \
         WHERE COLLATION_NAME IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')",
    )
    .await;
    let columns = texts(
        &mut conn,
        "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME), COLUMN_TYPE, \
         CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE()",
    )
    .await;
    let column = |name: &str| {
        columns
            .iter()
            .find(|c| c[0] == name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .clone()
    };
    for name in [
        "users.sub",
        "users.username",
        "users.email",
        "tokens.login",
        "tokens.sub",
    ] {
        let c = column(name);
        assert_eq!(c[2], "utf8mb4", "{name}");
        assert!(
            c[3].starts_with("utf8mb4_") && c[3].ends_with("_bin"),
            "{name}: {}",
            c[3]
        );
        if no_pad > 0 {
            assert_ne!(c[3], "utf8mb4_bin", "{name}: a no-pad collation exists");
        }
    }
    assert_eq!(column("tokens.name")[2], "utf8mb4");
    assert_eq!(column("tokens.token")[2], "utf8mb4");
    let datetimes = [
        "tokens.expires",
        "logs.date",
        "sessions.expiry",
        "dp_sessions.expires",
    ];
    for name in datetimes {
        assert_eq!(column(name)[1], "datetime(6)", "{name}");
    }
    for name in ["tokens.id", "logs.tokenId"] {
        assert_eq!(
            column(name)[1..3],
            ["char(32)".to_string(), "ascii".into()],
            "{name}"
        );
    }
    assert_eq!(column("users.username")[1], "varchar(255)");
    assert_eq!(column("tokens.login")[1], "varchar(300)");
    assert_eq!(column("dp_sessions.id")[1], "varchar(64)");
    assert_eq!(column("dp_sessions.sid")[1..3], ["varchar(255)", "utf8mb4"]);
    assert_eq!(column("dp_sessions.data")[1..3], ["longtext", "utf8mb4"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn values_are_stored_as_documented() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    let s = &db.store;
    let owner = user("sub-ida", "ida", "ida@example.org");
    s.upsert_user(&owner).await.expect("user");
    let mut t = new_token(&owner, "ida#001");
    t.token.expires = Some(now() + TimeDelta::microseconds(123_457));
    s.insert_token(&t).await.expect("token");

    let mut conn = connect(&db.url).await;
    let row: (String, NaiveDateTime) = conn
        .query_first("SELECT id, expires FROM tokens")
        .await
        .expect("select")
        .expect("a token");
    assert_eq!(
        row.0,
        t.token.id.simple().to_string(),
        "32 lower-case hex digits"
    );
    assert_eq!(Some(row.1), t.token.expires, "microseconds kept");
    let found = s
        .candidate_by_login("ida#001", now())
        .await
        .expect("q")
        .expect("found");
    assert_eq!(found.token, t.token);
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_has_unique_keys_lookup_indexes_and_foreign_keys() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    let mut conn = connect(&db.url).await;
    let indexes = texts(
        &mut conn,
        "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, \
         GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = DATABASE() GROUP BY TABLE_NAME, INDEX_NAME, NON_UNIQUE",
    )
    .await;
    let expected = [
        ["users", "PRIMARY", "0", "sub"],
        ["users", "username_unique", "0", "username"],
        ["users", "email_unique", "0", "email"],
        ["tokens", "PRIMARY", "0", "id"],
        ["tokens", "login_unique", "0", "login"],
        ["tokens", "ix_devicepass_tokens_sub", "1", "sub"],
        ["logs", "ix_devicepass_logs_token", "1", "tokenId,date"],
        ["revoked", "PRIMARY", "0", "sid"],
        ["sessions", "session_id_unique", "0", "session_id"],
        ["dp_sessions", "PRIMARY", "0", "id"],
        ["dp_sessions", "ix_dp_sessions_sub", "1", "sub"],
        ["dp_sessions", "ix_dp_sessions_sid", "1", "sid"],
        ["dp_sessions", "ix_dp_sessions_expires", "1", "expires"],
    ];
    for index in expected {
        let index: Vec<String> = index.iter().map(|s| s.to_string()).collect();
        assert!(indexes.contains(&index), "{index:?} not in {indexes:?}");
    }
    let foreign = texts(
        &mut conn,
        "SELECT CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_NAME \
         FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = DATABASE() ORDER BY 1",
    )
    .await;
    assert_eq!(
        foreign,
        vec![
            vec!["logs_token_fk".to_string(), "logs".into(), "tokens".into()],
            vec!["tokens_sub_fk".to_string(), "tokens".into(), "users".into()],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrating_twice_and_concurrently_records_each_version_once() {
    let Some(admin) = Engine::Mysql.admin_url() else {
        return;
    };
    // A blank database, migrated by two replicas at once, then again.
    let url = create_mysql(&admin).await;
    let (one, two) = (open_store(&url), open_store(&url));
    let (a, b) = tokio::join!(one.migrate(), two.migrate());
    a.expect("replica one");
    b.expect("replica two");
    one.migrate().await.expect("again");
    let (a, b) = tokio::join!(one.migrate(), two.migrate());
    a.expect("replica one, again");
    b.expect("replica two, again");

    let mut conn = connect(&url).await;
    let sql = "SELECT version FROM devicepass_schema ORDER BY version";
    let versions = texts(&mut conn, sql).await;
    assert_eq!(versions, vec![vec!["1".to_string()], vec!["2".to_string()]]);
    let alembic = texts(&mut conn, "SELECT version_num FROM alembic_version").await;
    assert_eq!(
        alembic,
        vec![vec!["dd50cf0133d0".to_string()]],
        "the Python project's head"
    );
    let locks = count(
        &mut conn,
        "SELECT IS_USED_LOCK(LEFT(CONCAT('devicepass_migrate:', DATABASE()), 64)) IS NOT NULL",
    )
    .await;
    assert_eq!(locks, 0, "the migration lock is released");
}

/// A database the previous build made (schema version 1, no sessions
/// table) gains `dp_sessions` and keeps its rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_1_database_gains_the_sessions_table() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    let owner = user("sub-jo", "jo", "jo@example.org");
    db.store.upsert_user(&owner).await.expect("user");
    db.store
        .insert_token(&new_token(&owner, "jo#001"))
        .await
        .expect("token");
    let mut conn = connect(&db.url).await;
    for sql in [
        "DROP TABLE dp_sessions",
        "DELETE FROM devicepass_schema WHERE version = 2",
    ] {
        conn.query_drop(sql).await.expect("back to version 1");
    }

    let (one, two) = (open_store(&db.url), open_store(&db.url));
    let (a, b) = tokio::join!(one.migrate(), two.migrate());
    a.expect("replica one");
    b.expect("replica two");
    let sql = "SELECT version FROM devicepass_schema ORDER BY version";
    let versions = texts(&mut conn, sql).await;
    assert_eq!(versions, vec![vec!["1".to_string()], vec!["2".to_string()]]);
    let found = one.candidate_by_login("jo#001", now()).await.expect("q");
    assert!(found.is_some(), "rows kept");
    let session = SessionRecord {
        id: "cd".repeat(32),
        sub: Some(owner.sub.clone()),
        sid: None,
        data: "{}".into(),
        expires: now() + TimeDelta::hours(1),
    };
    one.put_session(&session)
        .await
        .expect("the new table works");
    let taken = two.take_session(&session.id, now()).await.expect("take");
    assert_eq!(taken, Some(session));
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_refuses_tables_that_are_not_ours() {
    let Some(admin) = Engine::Mysql.admin_url() else {
        return;
    };
    let url = create_mysql(&admin).await;
    let mut conn = connect(&url).await;
    conn.query_drop(
        "CREATE TABLE tokens (id CHAR(32) PRIMARY KEY, sub VARCHAR(255)) ENGINE=InnoDB",
    )
    .await
    .expect("foreign table");
    let store = open_store(&url);
    assert!(matches!(
        store.migrate().await,
        Err(StoreError::Corrupt("schema"))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn names_match_exactly_under_the_binary_collation() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    let s = &db.store;
    let pairs = [
        ("ß", "ss"),
        ("a", "A"),
        ("😀", "😁"),
        ("e\u{301}", "é"),
        ("x", "x "),
    ];
    let mut users = Vec::new();
    for (i, (left, right)) in pairs.iter().enumerate() {
        for (j, name) in [left, right].into_iter().enumerate() {
            let u = user(
                &format!("sub-{i}-{j}"),
                name,
                &format!("{name}@example.org"),
            );
            s.upsert_user(&u)
                .await
                .unwrap_or_else(|e| panic!("{name:?} is a user of its own: {e}"));
            users.push(u);
        }
    }
    for u in &users {
        for key in [&u.sub, &u.username, &u.email] {
            assert_eq!(
                s.find_user(key).await.expect("find").as_ref(),
                Some(u),
                "{key:?}"
            );
        }
    }
    assert_eq!(s.list_users().await.expect("list").len(), users.len());
    assert_eq!(s.find_user("SS").await.expect("find"), None);
    assert_eq!(
        s.find_user("😂").await.expect("find"),
        None,
        "4-byte characters compared exactly"
    );

    let t = new_token(&users[4], "😀#001");
    s.insert_token(&t).await.expect("emoji login");
    assert!(
        s.candidate_by_login("😁#001", now())
            .await
            .expect("q")
            .is_none()
    );
    assert!(
        s.candidate_by_login("😀#001", now())
            .await
            .expect("q")
            .is_some()
    );
    assert_eq!(
        s.candidates_by_user("😀", now(), 5).await.expect("q").len(),
        1
    );
    assert!(
        s.candidates_by_user("😁", now(), 5)
            .await
            .expect("q")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn first_logins_of_one_new_user_all_succeed() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    // Many requests of one new user at once: none may fail on the race
    // to insert the same sub (they update instead).
    let tries = (0..16).map(|i| {
        let s = Arc::clone(&db.store);
        let u = user("sub-new", "newbie", &format!("n{}@example.org", i % 2));
        tokio::spawn(async move { s.upsert_user(&u).await })
    });
    for t in tries.collect::<Vec<_>>() {
        t.await.expect("task").expect("upsert");
    }
    let all = db.store.list_users().await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].username, "newbie");
}

#[tokio::test(flavor = "multi_thread")]
async fn uses_and_deletes_at_once_neither_fail_nor_leave_orphans() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    let s = &db.store;
    let owner = user("sub-jo", "jo", "jo@example.org");
    s.upsert_user(&owner).await.expect("user");
    let mut ids = Vec::new();
    for i in 0..20 {
        let t = new_token(&owner, &format!("jo#{i:03}"));
        s.insert_token(&t).await.expect("token");
        ids.push(t.token.id);
    }
    let at = now();
    let uses: Vec<(Uuid, NaiveDateTime)> = ids.iter().map(|id| (*id, at)).collect();
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (s, uses, id) = (Arc::clone(s), uses.clone(), *id);
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                s.delete_token(&TokenRef::Id(id)).await.map(|_| ())
            } else {
                s.record_uses(&uses).await
            }
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("no error under concurrency");
    }
    assert_eq!(s.list_tokens(None).await.expect("list").len(), 10);
    let mut conn = connect(&db.url).await;
    let orphans = count(
        &mut conn,
        "SELECT COUNT(*) FROM logs l \
         WHERE NOT EXISTS (SELECT 1 FROM tokens t WHERE t.id = l.tokenId)",
    )
    .await;
    assert_eq!(orphans, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_recovers_when_the_server_drops_its_connections() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    let s = &db.store;
    let owner = user("sub-kim", "kim", "kim@example.org");
    s.upsert_user(&owner).await.expect("user");
    // Several idle pooled connections.
    let (a, b, c) = tokio::join!(s.find_user("kim"), s.find_user("kim"), s.find_user("kim"));
    for found in [a, b, c] {
        assert_eq!(found.expect("find"), Some(owner.clone()));
    }

    // As after a server restart: every connection of the store is gone.
    let mut admin = connect(&db.url).await;
    let ids: Vec<u64> = admin
        .query(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND ID <> CONNECTION_ID()",
        )
        .await
        .expect("processlist");
    assert!(!ids.is_empty(), "the store keeps idle connections");
    for id in ids {
        // 1094: that connection closed on its own meanwhile; gone either way.
        match admin.query_drop(format!("KILL {id}")).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(e)) if e.code == 1094 => {}
            Err(e) => panic!("kill: {e}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    for _ in 0..5 {
        assert_eq!(
            s.find_user("kim").await.expect("a fresh connection"),
            Some(owner.clone())
        );
    }
    s.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_modes_are_honoured() {
    let Some(db) = fresh_mysql().await else {
        return;
    };
    let mut conn = connect(&db.url).await;
    let have_ssl: Option<String> = conn.query_first("SELECT @@have_ssl").await.unwrap_or(None);
    let server_tls = have_ssl.as_deref() == Some("YES");
    let with = |query: &str| {
        let url = format!("{}?{query}", db.url);
        let url = DatabaseUrl::parse(&url).expect("URL parses");
        let options = PoolOptions {
            size: 1,
            connect_timeout: Duration::from_secs(5),
        };
        store::open(&url, &options).expect("store opens")
    };
    for query in ["ssl-mode=DISABLED", "ssl_mode=preferred", "charset=utf8mb4"] {
        with(query)
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
    }
    let required = with("ssl-mode=REQUIRED").ping().await;
    if server_tls {
        required.expect("REQUIRED on a server with TLS");
    } else {
        assert!(
            matches!(required, Err(StoreError::Unavailable)),
            "REQUIRED without server TLS"
        );
    }
    let url = DatabaseUrl::parse(&format!("{}?ssl-mode=bogus", db.url)).expect("URL parses");
    assert!(matches!(
        store::open(&url, &PoolOptions::default()),
        Err(StoreError::BadOption("ssl-mode"))
    ));
}

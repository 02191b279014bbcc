//! A database written by the Python devicepasswords project, served as it
//! is: every valid token works by login, username and email; expired ones
//! and wrong passwords fail; the CLI leaves every other row untouched;
//! migrating only adds indexes and devicepass's own `dp_sessions` table.

use rusqlite::Connection;
use rusqlite::types::Value;
use serde::Deserialize;

use crate::engines::UPSTREAM_TABLES;
use crate::support::{self, Server, basic, get_auth};

#[derive(Deserialize)]
struct Expected {
    tokens: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    username: String,
    email: String,
    sub: String,
    login: String,
    password: String,
    expected: String,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(support::fixture("devicepasswords-upstream.json"))
        .expect("fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

fn copy_database(dir: &std::path::Path) -> String {
    let path = dir.join("upstream.sqlite");
    std::fs::copy(support::fixture("devicepasswords-upstream.sqlite"), &path)
        .expect("copy fixture");
    format!("sqlite:///{}", path.display())
}

#[test]
fn every_upstream_token_answers_as_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = copy_database(dir.path());
    let server = Server::start(
        dir.path(),
        &[("DP_DATABASE_URL", &url), ("DP_PASSWORD_HASH", "plaintext")],
    );
    let rows = expected().tokens;
    assert_eq!(rows.len(), 11, "fixture rows");
    for row in &rows {
        let by_login = get_auth(
            server.addr,
            "/auth",
            Some(&basic(&row.login, &row.password)),
        );
        match row.expected.as_str() {
            "valid" => {
                for name in [&row.login, &row.username, &row.email] {
                    let reply = get_auth(server.addr, "/auth", Some(&basic(name, &row.password)));
                    assert_eq!(reply.status, 200, "{} as {name}", row.login);
                    assert_eq!(reply.header("X-Auth-User"), Some(row.username.as_bytes()));
                    assert_eq!(reply.header("X-Auth-Email"), Some(row.email.as_bytes()));
                    assert_eq!(reply.header("X-Auth-Sub"), Some(row.sub.as_bytes()));
                    assert_eq!(reply.header("X-Auth-Login"), Some(row.login.as_bytes()));
                    assert!(reply.body.is_empty());
                }
            }
            "expired" => {
                assert_eq!(by_login.status, 401, "expired {}", row.login);
                let by_user = get_auth(
                    server.addr,
                    "/auth",
                    Some(&basic(&row.username, &row.password)),
                );
                assert_eq!(by_user.status, 401, "expired {} by username", row.login);
            }
            other => panic!("unknown expectation {other}"),
        }
        let wrong = get_auth(
            server.addr,
            "/auth",
            Some(&basic(&row.login, "wrong-password-1")),
        );
        assert_eq!(wrong.status, 401, "wrong password for {}", row.login);
        assert!(
            wrong
                .header_str("WWW-Authenticate")
                .starts_with("Basic realm=")
        );
    }
}

/// Every row of every table, as values, in primary key order.
fn dump(path: &std::path::Path) -> Vec<(String, Vec<Vec<Value>>)> {
    let conn = Connection::open(path).expect("open copy");
    UPSTREAM_TABLES
        .iter()
        .map(|table| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
                .expect("select");
            let width = stmt.column_count();
            let rows = stmt
                .query_map([], |r| (0..width).map(|i| r.get::<_, Value>(i)).collect())
                .expect("query")
                .collect::<Result<Vec<Vec<Value>>, _>>()
                .expect("rows");
            (table.to_string(), rows)
        })
        .collect()
}

#[test]
fn cli_create_and_delete_leave_other_rows_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = copy_database(dir.path());
    let path = dir.path().join("upstream.sqlite");
    let before = dump(&path);

    let (id, login, password) = support::create_token(&url, "dörte", &["--name", "laptop"]);
    assert!(login.starts_with("dörte#"), "{login}");
    let conn = Connection::open(&path).expect("open");
    let (stored_id, expires): (String, Option<String>) = conn
        .query_row(
            "SELECT id, expires FROM tokens WHERE login = ?1",
            [&login],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("new row");
    assert_eq!(
        stored_id,
        id.replace('-', ""),
        "UUID stored as 32 hex digits"
    );
    assert_eq!(expires, None);

    let verify = support::cli(
        &url,
        &["verify", &login],
        &[],
        Some(&format!("{password}\n")),
    );
    assert!(verify.status.success(), "new token verifies");

    let out = support::cli(&url, &["token", "delete", &login], &[], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dump(&path), before, "rows changed");
}

#[test]
fn new_expiry_is_written_the_sqlalchemy_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = copy_database(dir.path());
    let (_, login, _) = support::create_token(&url, "alice", &["--expires", "2031-02-03T04:05:06"]);
    let conn = Connection::open(dir.path().join("upstream.sqlite")).expect("open");
    let expires: String = conn
        .query_row(
            "SELECT expires FROM tokens WHERE login = ?1",
            [&login],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(expires, "2031-02-03 04:05:06.000000");
}

/// `(type, name, sql)` of every schema object, for the given tables.
fn objects(path: &std::path::Path, tables: &[&str]) -> Vec<(String, String, Option<String>)> {
    let conn = Connection::open(path).expect("open copy");
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ?1 ORDER BY name")
        .expect("select");
    let mut out = Vec::new();
    for table in tables {
        let rows = stmt
            .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query");
        out.extend(rows.map(|r| r.expect("row")));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn migrating_adds_the_session_table_and_keeps_every_row() {
    use devicepass::store::{self, DatabaseUrl, SessionRecord};

    let dir = tempfile::tempdir().expect("tempdir");
    let url = copy_database(dir.path());
    let path = dir.path().join("upstream.sqlite");
    let (rows_before, tables_before) = (dump(&path), objects(&path, &UPSTREAM_TABLES));
    let parsed = DatabaseUrl::parse(&url).expect("url");
    let s = store::open(&parsed, &Default::default()).expect("open");
    s.migrate().await.expect("migrate");
    s.migrate().await.expect("migrate again");

    assert_eq!(dump(&path), rows_before, "rows changed");
    let mut upstream_tables = objects(&path, &UPSTREAM_TABLES);
    upstream_tables
        .retain(|(kind, name, _)| kind == "table" || !name.starts_with("ix_devicepass_"));
    assert_eq!(upstream_tables, tables_before, "upstream tables changed");
    let own: Vec<(String, String)> = objects(&path, &["dp_sessions"])
        .into_iter()
        .map(|(kind, name, _)| (kind, name))
        .collect();
    let expected = [
        ("table", "dp_sessions"),
        ("index", "ix_dp_sessions_expires"),
        ("index", "ix_dp_sessions_sid"),
        ("index", "ix_dp_sessions_sub"),
        ("index", "sqlite_autoindex_dp_sessions_1"),
    ];
    let mut own_sorted = own.clone();
    own_sorted.sort();
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
    expected.sort();
    assert_eq!(own_sorted, expected);

    // The new table works, and a revoked sid is a plain upstream row.
    let now = chrono::Utc::now().naive_utc();
    let session = SessionRecord {
        id: "0f".repeat(32),
        sub: Some("sub-unknown-to-users".into()),
        sid: Some("idp-session-7".into()),
        data: r#"{"step":"done"}"#.into(),
        expires: now + chrono::TimeDelta::hours(1),
    };
    s.put_session(&session)
        .await
        .expect("put, no foreign key on sub");
    let ended = s.end_idp_session(Some("idp-session-7"), None).await;
    assert_eq!(ended.expect("end"), 1);
    let conn = Connection::open(&path).expect("open");
    let sid: String = conn
        .query_row("SELECT sid FROM revoked", [], |r| r.get(0))
        .expect("one revoked row");
    assert_eq!(sid, "idp-session-7");
}

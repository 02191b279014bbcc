//! PostgreSQL-only checks: a database the Python project created is used
//! as it is (devicepass only adds indexes and its own `dp_sessions`
//! table), a database devicepass creates is one the Python project can
//! use, and the pool survives the server dropping its connections.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use devicepass::store::{
    self, DatabaseUrl, PoolOptions, SessionRecord, Store, StoreError, TokenRef,
};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::engines::{Engine, UPSTREAM_TABLES as TABLES, create_postgres};
use crate::support::fixture;

/// What devicepass adds beside the upstream schema, in name order.
const DEVICEPASS_INDEXES: [&str; 6] = [
    "dp_sessions_pkey",
    "ix_devicepass_logs_token",
    "ix_devicepass_tokens_sub",
    "ix_dp_sessions_expires",
    "ix_dp_sessions_sid",
    "ix_dp_sessions_sub",
];

/// devicepass's own table, as `schema` shows its columns.
const SESSIONS_COLUMNS: [&str; 5] = [
    "column|dp_sessions|1|id|character varying|varchar|64|NO",
    "column|dp_sessions|2|sub|character varying|varchar|YES",
    "column|dp_sessions|3|sid|character varying|varchar|YES",
    "column|dp_sessions|4|data|text|text|NO",
    "column|dp_sessions|5|expires|timestamp without time zone|timestamp|6|NO",
];

const ALICE_1: &str = "6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a01";
const ALICE_2: &str = "6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a02";
const ALICE_OLD: &str = "6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a03";
const BOB_1: &str = "6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5b01";
const ALICE_2_HASH: &str = "$pbkdf2-sha256$29000$N2bMWSul1Jozxvi/1/r/Xw$Rwi0Pf0c.kkKjEN6KZx5EXb2n";

/// Rows as SQLAlchemy (psycopg2) writes them: literals cast to native
/// `uuid` and `timestamp without time zone`, naive UTC, microseconds.
const PYTHON_ROWS: &str = r#"
INSERT INTO users (sub, username, email) VALUES ('sub-alice', 'alice', 'alice@example.org');
INSERT INTO users (sub, username, email) VALUES ('sub-bob', 'bob', 'bob@example.org');
INSERT INTO tokens (id, sub, name, token, expires, login) VALUES
  ('6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a01'::UUID, 'sub-alice', 'laptop',
   '{plaintext}alice-one', NULL, 'alice#001');
INSERT INTO tokens (id, sub, name, token, expires, login) VALUES
  ('6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a02'::UUID, 'sub-alice', 'Handy 📱',
   '$pbkdf2-sha256$29000$N2bMWSul1Jozxvi/1/r/Xw$Rwi0Pf0c.kkKjEN6KZx5EXb2n',
   '2031-05-06T07:08:09.123456'::timestamp, 'alice#002');
INSERT INTO tokens (id, sub, name, token, expires, login) VALUES
  ('6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a03'::UUID, 'sub-alice', 'old',
   '{plaintext}alice-old', '2020-01-01T00:00:00'::timestamp, 'alice#003');
INSERT INTO tokens (id, sub, name, token, expires, login) VALUES
  ('6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5b01'::UUID, 'sub-bob', 'desk',
   '{plaintext}bob-one', NULL, 'bob#001');
INSERT INTO logs (date, "tokenId") VALUES
  ('2029-06-01T12:00:00'::timestamp, '6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a01'::UUID);
INSERT INTO logs (date, "tokenId") VALUES
  ('2029-12-01T10:00:00.000001'::timestamp, '6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a02'::UUID);
INSERT INTO logs (date, "tokenId") VALUES
  ('2029-12-31T23:59:59.999999'::timestamp, '6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5a02'::UUID);
INSERT INTO revoked (sid) VALUES ('a-revoked-session');
INSERT INTO sessions (session_id, data, expiry) VALUES
  ('session-1', '\x80049500'::bytea, '2030-01-02T03:04:05.000006'::timestamp);
"#;

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

fn open_store(url: &str) -> Arc<dyn Store> {
    let url = DatabaseUrl::parse(url).expect("URL parses");
    store::open(&url, &PoolOptions::default()).expect("store opens")
}

fn upstream_ddl() -> String {
    std::fs::read_to_string(fixture("upstream-ddl/postgresql.sql")).expect("fixture DDL")
}

/// The fixture up to (not including) the migration that adds `login`.
fn pre_login_ddl() -> String {
    let ddl = upstream_ddl();
    let cut = ddl
        .find("-- Running upgrade efe87d7792f3 -> dd50cf0133d0")
        .expect("marker");
    format!("{}\nCOMMIT;\n", &ddl[..cut])
}

/// A new database with the Python project's schema (alembic's offline
/// SQL, run as it is, transaction included).
async fn upstream_database(admin: &str) -> (String, Client) {
    let url = create_postgres(admin).await;
    let client = connect(&url).await;
    client
        .batch_execute(&upstream_ddl())
        .await
        .expect("upstream DDL");
    (url, client)
}

async fn strings(client: &Client, sql: &str) -> Vec<String> {
    let rows = client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Every row of every table in PostgreSQL's text form, plus the
/// sequences, so any change to stored bytes shows.
async fn dump(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT '{table}: ' || t::text FROM {table} t ORDER BY 1");
        out.extend(strings(client, &sql).await);
    }
    for seq in ["sessions_id_seq", "logs_id_seq"] {
        let sql = format!("SELECT '{seq}: ' || last_value || ' ' || is_called FROM {seq}");
        out.extend(strings(client, &sql).await);
    }
    out
}

/// Tables, columns, types, defaults and constraints of the public schema:
/// the upstream tables only, or devicepass's own too with `all`.
async fn schema(client: &Client, all: bool) -> Vec<String> {
    let columns = "SELECT concat_ws('|', 'column', table_name, ordinal_position, column_name, \
         data_type, udt_name, character_maximum_length, datetime_precision, is_nullable, \
         column_default) FROM information_schema.columns WHERE table_schema = 'public' \
         ORDER BY 1";
    // NOT NULL shows as CHECK constraints named by OIDs; is_nullable
    // above covers them.
    let constraints = "SELECT concat_ws('|', 'constraint', tc.table_name, tc.constraint_name, \
         tc.constraint_type, (SELECT string_agg(k.column_name, ',' ORDER BY k.ordinal_position) \
         FROM information_schema.key_column_usage k \
         WHERE k.constraint_schema = tc.constraint_schema \
         AND k.constraint_name = tc.constraint_name)) \
         FROM information_schema.table_constraints tc \
         WHERE tc.table_schema = 'public' AND tc.constraint_type <> 'CHECK' ORDER BY 1";
    let definitions = "SELECT concat_ws('|', 'definition', conrelid::regclass, conname, \
         pg_get_constraintdef(oid)) FROM pg_constraint \
         WHERE connamespace = 'public'::regnamespace ORDER BY 1";
    let mut out = strings(client, columns).await;
    out.extend(strings(client, constraints).await);
    out.extend(strings(client, definitions).await);
    // Each line is `kind|table|…`.
    out.retain(|line| all || TABLES.iter().any(|t| line.split('|').nth(1) == Some(t)));
    out
}

async fn indexes(client: &Client) -> Vec<String> {
    let sql = "SELECT indexname || ': ' || indexdef FROM pg_indexes \
         WHERE schemaname = 'public' ORDER BY 1";
    strings(client, sql).await
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micro: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|d| d.and_hms_micro_opt(h, mi, s, micro))
        .expect("valid time")
}

fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).expect("uuid")
}

#[tokio::test(flavor = "multi_thread")]
async fn python_database_is_used_without_change() {
    let Some(admin) = Engine::Postgres.admin_url() else {
        return;
    };
    let (url, client) = upstream_database(&admin).await;
    client
        .batch_execute(PYTHON_ROWS)
        .await
        .expect("python rows");
    let (rows_before, schema_before) = (dump(&client).await, schema(&client, true).await);
    let indexes_before = indexes(&client).await;

    let s = open_store(&url);
    s.migrate().await.expect("migrate");
    s.migrate().await.expect("migrate again");

    assert_eq!(
        dump(&client).await,
        rows_before,
        "stored rows are untouched"
    );
    assert_eq!(
        schema(&client, false).await,
        schema_before,
        "upstream tables and constraints unchanged"
    );
    let mut added = schema(&client, true).await;
    added.retain(|line| !schema_before.contains(line));
    assert!(
        added.iter().all(|line| line.contains("|dp_sessions|")),
        "only devicepass's table is added: {added:#?}"
    );
    assert!(
        SESSIONS_COLUMNS
            .iter()
            .all(|c| added.contains(&c.to_string()))
    );
    let mut added = indexes(&client).await;
    added.retain(|i| !indexes_before.contains(i));
    let added: Vec<&str> = added
        .iter()
        .map(|i| i.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        added, DEVICEPASS_INDEXES,
        "only devicepass's indexes are added"
    );
    python_rows_meet_sessions(&client, &s).await;

    let now = at(2030, 1, 1, 0, 0, 0, 0);
    let c = s
        .candidate_by_login("alice#002", now)
        .await
        .expect("q")
        .expect("found");
    assert_eq!(c.token.id, uuid(ALICE_2));
    assert_eq!(c.token.name, "Handy 📱");
    assert_eq!(c.token.expires, Some(at(2031, 5, 6, 7, 8, 9, 123_456)));
    assert_eq!(c.hash.expose(), ALICE_2_HASH);
    assert_eq!(
        (c.user.username.as_str(), c.user.email.as_str()),
        ("alice", "alice@example.org")
    );
    assert!(
        s.candidate_by_login("alice#003", now)
            .await
            .expect("q")
            .is_none(),
        "expired"
    );

    let by_mail = s
        .candidates_by_user("alice@example.org", now, 10)
        .await
        .expect("q");
    let ids: Vec<Uuid> = by_mail.iter().map(|c| c.token.id).collect();
    assert_eq!(
        ids,
        [uuid(ALICE_2), uuid(ALICE_1)],
        "most recently used first"
    );

    let listed = s.list_tokens(Some("sub-alice")).await.expect("list");
    let last_used: Vec<Option<NaiveDateTime>> = listed.iter().map(|t| t.last_used).collect();
    let expected = [
        Some(at(2029, 6, 1, 12, 0, 0, 0)),
        Some(at(2029, 12, 31, 23, 59, 59, 999_999)),
        None,
    ];
    assert_eq!(last_used, expected);
    assert_eq!(
        s.find_user("bob@example.org")
            .await
            .expect("q")
            .map(|u| u.sub),
        Some("sub-bob".into())
    );
    assert_eq!(s.list_users().await.expect("users").len(), 2);

    // What devicepass writes reads back the way Python's code reads it.
    s.record_uses(&[(uuid(BOB_1), at(2030, 1, 1, 0, 0, 1, 42))])
        .await
        .expect("use");
    let sql =
        "SELECT date::text FROM logs WHERE \"tokenId\" = '6f1c1d36-3b8a-4f49-9d47-0c1a0f7e5b01'";
    assert_eq!(strings(&client, sql).await, ["2030-01-01 00:00:01.000042"]);
    assert!(
        s.delete_token(&TokenRef::Id(uuid(ALICE_OLD)))
            .await
            .expect("delete")
    );
    assert!(
        s.delete_token(&TokenRef::Login("alice#002".into()))
            .await
            .expect("delete used")
    );
    let sql = "SELECT count(*)::text FROM logs";
    assert_eq!(
        strings(&client, sql).await,
        ["2"],
        "the deleted token's uses went with it"
    );
}

/// The Python project's `revoked` rows count for devicepass, and what
/// devicepass revokes is a plain row in that table; the Python project's
/// own `sessions` table is left alone.
async fn python_rows_meet_sessions(client: &Client, s: &Arc<dyn Store>) {
    assert!(s.is_revoked("a-revoked-session").await.expect("q"));
    let session = SessionRecord {
        id: "ab".repeat(32),
        sub: Some("sub-alice".into()),
        sid: Some("idp-sid-1".into()),
        data: "{}".into(),
        expires: at(2030, 1, 1, 8, 0, 0, 0),
    };
    s.put_session(&session).await.expect("put");
    let ended = s.end_idp_session(Some("idp-sid-1"), None).await;
    assert_eq!(ended.expect("end"), 1);
    let sql = "SELECT sid FROM revoked ORDER BY sid";
    assert_eq!(
        strings(client, sql).await,
        ["a-revoked-session", "idp-sid-1"]
    );
    let sql = "SELECT session_id FROM sessions";
    assert_eq!(strings(client, sql).await, ["session-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_database_gets_the_python_schema() {
    let Some(admin) = Engine::Postgres.admin_url() else {
        return;
    };
    let (_, upstream) = upstream_database(&admin).await;
    let ours_url = create_postgres(&admin).await;
    open_store(&ours_url).migrate().await.expect("migrate");
    let ours = connect(&ours_url).await;

    let expected = schema(&upstream, true).await;
    assert!(
        expected
            .iter()
            .any(|l| l.contains("|login_unique|UNIQUE|login")),
        "{expected:#?}"
    );
    assert_eq!(schema(&ours, false).await, expected);
    let mut own = schema(&ours, true).await;
    own.retain(|line| !expected.contains(line));
    assert!(
        own.iter().all(|line| line.contains("|dp_sessions|")),
        "{own:#?}"
    );
    assert!(
        SESSIONS_COLUMNS
            .iter()
            .all(|c| own.contains(&c.to_string()))
    );
    let mut expected_indexes = indexes(&upstream).await;
    let devicepass: Vec<String> = indexes(&ours)
        .await
        .into_iter()
        .filter(|i| DEVICEPASS_INDEXES.iter().any(|name| i.starts_with(name)))
        .collect();
    assert_eq!(devicepass.len(), DEVICEPASS_INDEXES.len());
    expected_indexes.extend(devicepass);
    expected_indexes.sort();
    assert_eq!(
        indexes(&ours).await,
        expected_indexes,
        "upstream indexes plus ours"
    );
    let version = "SELECT version_num::text FROM alembic_version";
    assert_eq!(
        strings(&ours, version).await,
        strings(&upstream, version).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn database_from_before_logins_is_refused() {
    let Some(admin) = Engine::Postgres.admin_url() else {
        return;
    };
    let url = create_postgres(&admin).await;
    let client = connect(&url).await;
    client
        .batch_execute(&pre_login_ddl())
        .await
        .expect("old DDL");
    let before = indexes(&client).await;
    let result = open_store(&url).migrate().await;
    assert!(
        matches!(result, Err(StoreError::Corrupt("schema"))),
        "{result:?}"
    );
    assert_eq!(indexes(&client).await, before, "nothing was changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_recovers_when_the_server_drops_connections() {
    let Some(admin) = Engine::Postgres.admin_url() else {
        return;
    };
    let url = create_postgres(&admin).await;
    let s = open_store(&url);
    s.migrate().await.expect("migrate");
    s.ping().await.expect("ping");
    let admin_client = connect(&admin).await;
    let name = url.rsplit('/').next().expect("database name").to_string();
    let kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1";
    let killed = admin_client.query(kill, &[&name]).await.expect("terminate");
    assert!(!killed.is_empty(), "the store held a connection");
    // As after a database restart: every pooled connection is dead. The
    // next checkout notices and connects anew; no request fails.
    for _ in 0..3 {
        s.ping()
            .await
            .expect("ping after the connections were dropped");
        assert!(s.list_users().await.expect("query").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmode_require_never_falls_back_to_plaintext() {
    let Some(admin) = Engine::Postgres.admin_url() else {
        return;
    };
    let client = connect(&admin).await;
    if strings(&client, "SHOW ssl").await != ["off"] {
        eprintln!("the test server has TLS; the fallback cannot be observed");
        return;
    }
    let url = create_postgres(&admin).await;
    let prefer = open_store(&format!("{url}?sslmode=prefer"));
    prefer
        .migrate()
        .await
        .expect("prefer continues without TLS");
    prefer.ping().await.expect("prefer continues without TLS");
    let require = open_store(&format!("{url}?sslmode=require"));
    assert!(matches!(require.ping().await, Err(StoreError::Unavailable)));
    let verify = open_store(&format!("{url}?sslmode=verify-full"));
    assert!(matches!(verify.ping().await, Err(StoreError::Unavailable)));
}

#[tokio::test(flavor = "multi_thread")]
async fn store_opens_while_the_server_is_down() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let url = "postgresql://dp:secret@127.0.0.1:1/devicepass";
    let options = PoolOptions {
        size: 2,
        connect_timeout: std::time::Duration::from_secs(2),
    };
    let s = store::open(&DatabaseUrl::parse(url).expect("url"), &options).expect("opens lazily");
    let started = std::time::Instant::now();
    assert!(matches!(s.ping().await, Err(StoreError::Unavailable)));
    assert!(s.migrate().await.is_err());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "bounded by the timeout"
    );
}

/// A CA that signed nothing the test server presents.
const UNRELATED_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBgjCCASmgAwIBAgIUEYdd73cyGZqgKumZf9KkUnGZrIAwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMdW5yZWxhdGVkIENBMB4XDTI2MTIwMzE0Mjg0MFoXDTM2MTEz
MDE0Mjg0MFowFzEVMBMGA1UEAwwMdW5yZWxhdGVkIENBMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEeR8fFzIJmsSpLoWWsz/WYJSywxaXwK+yonKRJSCbOQ3ZccPY
FfGs+t5w7YBYDnCgr3sFjyaXY2m1Uei6GX27p6NTMFEwHQYDVR0OBBYEFAmxWWcm
RRtDPpieC3ck2VifchFIMB8GA1UdIwQYMBaAFAmxWWcmRRtDPpieC3ck2VifchFI
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgfdsYnCFbZ1g5cmh5
yFWSw02STkfrVgl8xlcimd89K98CICiLNpuVL3G3AvlBUb/Bw3ZK2zQ4WDrs4yRf
P5Z0UOH0
-----END CERTIFICATE-----
";

fn with_host(url: &str, host: &str) -> String {
    let mut url = url::Url::parse(url).expect("url");
    url.set_host(Some(host)).expect("host");
    url.to_string()
}

/// Each sslmode against a server with TLS whose certificate names
/// `localhost` and is signed by `DEVICEPASS_TEST_POSTGRES_TLS_CA`; runs
/// only when `DEVICEPASS_TEST_POSTGRES_TLS_URL` names such a server.
#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::disallowed_methods)] // tests read their own environment
async fn sslmodes_against_a_tls_server() {
    let vars = [
        "DEVICEPASS_TEST_POSTGRES_TLS_URL",
        "DEVICEPASS_TEST_POSTGRES_TLS_CA",
    ];
    let (Ok(admin), Ok(ca)) = (std::env::var(vars[0]), std::env::var(vars[1])) else {
        eprintln!("TLS modes not tested here: {vars:?} are not set");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, UNRELATED_CA).expect("write");
    let other = other.display();
    let db = create_postgres(&admin).await;
    let (by_ip, by_name) = (with_host(&db, "127.0.0.1"), with_host(&db, "localhost"));
    let cases = [
        (&by_ip, "sslmode=disable".to_string(), Some(false)),
        (&by_ip, "sslmode=prefer".into(), Some(true)),
        (&by_ip, "sslmode=require".into(), Some(true)),
        (
            &by_ip,
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            Some(true),
        ),
        (
            &by_name,
            format!("sslmode=verify-full&sslrootcert={ca}"),
            Some(true),
        ),
        (
            &by_ip,
            format!("sslmode=verify-full&sslrootcert={ca}"),
            None,
        ),
        (&by_name, "sslmode=verify-full".into(), None),
        (
            &by_ip,
            format!("sslmode=verify-ca&sslrootcert={other}"),
            None,
        ),
        (&by_ip, format!("sslmode=require&sslrootcert={other}"), None),
    ];
    let admin = connect(&admin).await;
    let tls_of = "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = $1";
    for (i, (url, options, expected)) in cases.into_iter().enumerate() {
        let app = format!("dp-tls-{i}");
        let s = open_store(&format!("{url}?{options}&application_name={app}"));
        let pinged = s.ping().await;
        let Some(tls) = expected else {
            assert!(pinged.is_err(), "{options} via {url} must be refused");
            continue;
        };
        pinged.unwrap_or_else(|e| panic!("{options} via {url}: {e}"));
        let row = admin.query_one(tls_of, &[&app]).await.expect("pg_stat_ssl");
        assert_eq!(row.get::<_, bool>(0), tls, "{options}: encrypted?");
    }
}

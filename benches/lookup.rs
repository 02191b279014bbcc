//! Uncached token lookup latency per engine, with 1,000 and with
//! 1,000,000 tokens in the table. Lookups are indexed, so the ratio
//! should stay near 1.
//!
//! `cargo bench --bench lookup`; PostgreSQL and MariaDB are included when
//! `DEVICEPASS_TEST_POSTGRES_URL` / `DEVICEPASS_TEST_MYSQL_URL` name admin
//! URLs (as `scripts/test-servers.sh` exports). Rows are bulk-loaded with
//! each engine's own SQL; lookups go through the store, as in service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::{Duration, Instant};

use chrono::Utc;
use devicepass::store::{self, DatabaseUrl, PoolOptions, Store};

const SIZES: [u64; 2] = [1_000, 1_000_000];
const LOOKUPS: u64 = 2_000;
const USERS: u64 = 1_000;

fn fresh_name() -> String {
    format!(
        "dp_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn with_database(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).expect("admin URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn open(url: &str) -> std::sync::Arc<dyn Store> {
    let parsed = DatabaseUrl::parse(url).expect("url");
    let store = store::open(&parsed, &PoolOptions::default()).expect("open");
    store.migrate().await.expect("migrate");
    store
}

async fn sqlite(n: u64, dir: &std::path::Path) -> String {
    let path = dir.join(format!("bench-{n}.db"));
    let url = format!("sqlite:///{}", path.display());
    open(&url).await;
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE u(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM u WHERE x < {USERS} - 1)
         INSERT INTO users SELECT 'sub-' || x, 'user' || x, 'user' || x || '@example.org' FROM u;
         WITH RECURSIVE t(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM t WHERE x < {n})
         INSERT INTO tokens (id, sub, name, token, expires, login)
         SELECT printf('%032x', x), 'sub-' || (x % {USERS}), 'bench', '{{plaintext}}pw', NULL,
                'user' || (x % {USERS}) || '#' || x FROM t;
         COMMIT;"
    ))
    .expect("bulk load");
    url
}

async fn postgres(n: u64, admin: &str) -> String {
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .expect("pg");
    tokio::spawn(conn);
    let name = fresh_name();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create");
    let url = with_database(admin, &name);
    open(&url).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("pg");
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "INSERT INTO users SELECT 'sub-' || x, 'user' || x, 'user' || x || '@example.org'
               FROM generate_series(0, {USERS} - 1) x;
             INSERT INTO tokens (id, sub, name, token, expires, login)
             SELECT md5(x::text)::uuid, 'sub-' || (x % {USERS}), 'bench', '{{plaintext}}pw', NULL,
                    'user' || (x % {USERS}) || '#' || x FROM generate_series(1, {n}) x;
             ANALYZE;"
        ))
        .await
        .expect("bulk load");
    url
}

async fn mysql(n: u64, admin: &str) -> String {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(admin).await.expect("mysql");
    let name = fresh_name();
    conn.query_drop(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        .await
        .expect("create");
    let url = with_database(admin, &name);
    open(&url).await;
    let mut conn = mysql_async::Conn::from_url(url.as_str())
        .await
        .expect("mysql");
    // MariaDB's SEQUENCE engine provides the seq_1_to_N tables.
    conn.query_drop(format!(
        "INSERT INTO users SELECT CONCAT('sub-', seq), CONCAT('user', seq),
                CONCAT('user', seq, '@example.org') FROM seq_0_to_{}",
        USERS - 1
    ))
    .await
    .expect("users");
    conn.query_drop(format!(
        "INSERT INTO tokens (id, sub, name, token, expires, login)
         SELECT LPAD(HEX(seq), 32, '0'), CONCAT('sub-', seq % {USERS}), 'bench', '{{plaintext}}pw',
                NULL, CONCAT('user', seq % {USERS}, '#', seq) FROM seq_1_to_{n}"
    ))
    .await
    .expect("tokens");
    conn.query_drop("ANALYZE TABLE tokens, users")
        .await
        .expect("analyze");
    url
}

/// Mean latency of `candidate_by_login` for logins spread over the table.
async fn measure(url: &str, n: u64) -> Duration {
    let store = open(url).await;
    let now = Utc::now().naive_utc();
    let step = (n / LOOKUPS).max(1);
    for i in 0..50 {
        store
            .candidate_by_login(&format!("user{}#{}", i % USERS, i + 1), now)
            .await
            .expect("warm");
    }
    let started = Instant::now();
    for i in 0..LOOKUPS {
        let x = 1 + (i * step) % n;
        let login = format!("user{}#{x}", x % USERS);
        let found = store.candidate_by_login(&login, now).await.expect("lookup");
        assert!(found.is_some(), "{login} exists");
    }
    started.elapsed() / LOOKUPS as u32
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = std::env::var("DEVICEPASS_TEST_POSTGRES_URL").ok();
    let my = std::env::var("DEVICEPASS_TEST_MYSQL_URL").ok();
    for engine in ["sqlite", "postgresql", "mariadb"] {
        let mut means = Vec::new();
        for n in SIZES {
            let url = match (engine, &pg, &my) {
                ("sqlite", _, _) => sqlite(n, dir.path()).await,
                ("postgresql", Some(admin), _) => postgres(n, admin).await,
                ("mariadb", _, Some(admin)) => mysql(n, admin).await,
                _ => break,
            };
            let mean = measure(&url, n).await;
            println!(
                "{engine:>10} {n:>9} tokens: {:>8.1} µs per lookup",
                mean.as_secs_f64() * 1e6
            );
            means.push(mean);
        }
        if let [small, large] = means[..] {
            let ratio = large.as_secs_f64() / small.as_secs_f64();
            println!("{engine:>10} ratio 1,000,000 : 1,000 = {ratio:.2}");
        }
    }
}

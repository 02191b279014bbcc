//! The database engines the conformance suite runs on, and a fresh,
//! empty database on each for every test.
//!
//! SQLite always runs. PostgreSQL and MariaDB run when the test script
//! has started them (`DEVICEPASS_TEST_POSTGRES_URL`,
//! `DEVICEPASS_TEST_MYSQL_URL`, admin URLs); with
//! `DEVICEPASS_TEST_REQUIRE_SERVERS=1` (set by the script) a missing one
//! fails the test instead of skipping the engine. SQL Server runs when
//! `DEVICEPASS_TEST_MSSQL_URL` is set.
#![allow(clippy::disallowed_methods)] // tests read their own environment

use std::sync::Arc;

use devicepass::store::{self, DatabaseUrl, Store};

/// The tables of the Python project's schema, which every engine has.
pub const UPSTREAM_TABLES: [&str; 6] = [
    "alembic_version",
    "revoked",
    "sessions",
    "users",
    "tokens",
    "logs",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    Mysql,
    Mssql,
}

impl Engine {
    fn admin_var(self) -> Option<&'static str> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => Some("DEVICEPASS_TEST_POSTGRES_URL"),
            Engine::Mysql => Some("DEVICEPASS_TEST_MYSQL_URL"),
            Engine::Mssql => Some("DEVICEPASS_TEST_MSSQL_URL"),
        }
    }

    /// The admin URL, or `None` when this engine is not available here.
    pub fn admin_url(self) -> Option<String> {
        let var = self.admin_var()?;
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                let required =
                    std::env::var("DEVICEPASS_TEST_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
                if required && self != Engine::Mssql {
                    panic!("{var} is not set; run the tests with scripts/test");
                }
                eprintln!("{self:?} not tested here: {var} is not set");
                None
            }
        }
    }
}

/// A fresh database and a migrated store on it; dropped with the test
/// (server databases are dropped by name at the start of a later run).
pub struct TestDb {
    pub url: String,
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

/// A new empty database on `engine`, or `None` if it is not available.
pub async fn fresh(engine: Engine) -> Option<TestDb> {
    let (url, dir) = match engine {
        Engine::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            (
                format!("sqlite:///{}", dir.path().join("t.db").display()),
                Some(dir),
            )
        }
        Engine::Postgres => (create_postgres(&engine.admin_url()?).await, None),
        Engine::Mysql => (create_mysql(&engine.admin_url()?).await, None),
        Engine::Mssql => (create_mssql(&engine.admin_url()?).await, None),
    };
    let parsed = DatabaseUrl::parse(&url).expect("test URL parses");
    let store = store::open(
        &parsed,
        &store::PoolOptions {
            size: 8,
            ..Default::default()
        },
    )
    .expect("store opens");
    store.migrate().await.expect("migrate");
    Some(TestDb {
        url,
        store,
        _dir: dir,
    })
}

fn unique_name() -> String {
    format!(
        "dp_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Replace the database part of a server URL.
pub fn with_database(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).expect("admin URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

pub async fn create_postgres(admin: &str) -> String {
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    let name = unique_name();
    client
        .batch_execute(&format!(
            "CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"
        ))
        .await
        .expect("create database");
    with_database(admin, &name)
}

pub async fn create_mysql(admin: &str) -> String {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(admin)
        .await
        .expect("connect to the test MariaDB");
    let name = unique_name();
    conn.query_drop(format!(
        "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .await
    .expect("create database");
    let _ = conn.disconnect().await;
    with_database(admin, &name)
}

async fn create_mssql(admin: &str) -> String {
    let mut client = connect_mssql(admin).await;
    let name = unique_name();
    // A plain batch: CREATE DATABASE cannot run inside a transaction.
    client
        .simple_query(format!("CREATE DATABASE [{name}]"))
        .await
        .expect("create database")
        .into_results()
        .await
        .expect("database created");
    let _ = client.close().await;
    with_database(admin, &name)
}

type MssqlClient = tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>;

async fn connect_mssql(url: &str) -> MssqlClient {
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let parsed = DatabaseUrl::parse(url).expect("DEVICEPASS_TEST_MSSQL_URL parses");
    let store::Engine::Mssql(server) = parsed.engine() else {
        panic!("DEVICEPASS_TEST_MSSQL_URL is not an mssql:// URL");
    };
    // The same options the store reads, in the same spellings.
    let option_is = |name: &str, values: &[&str]| {
        let value = server.option(name).map(str::to_ascii_lowercase);
        value.is_some_and(|v| values.contains(&v.as_str()))
    };
    let port = server.port.unwrap_or(1433);
    let password = server.password.as_ref().map(|p| p.expose().as_str());
    let mut config = tiberius::Config::new();
    config.host(&server.host);
    config.port(port);
    config.database(&server.database);
    config.authentication(tiberius::AuthMethod::sql_server(
        &server.user,
        password.unwrap_or(""),
    ));
    if option_is("trustServerCertificate", &["true", "yes", "1"]) {
        config.trust_cert();
    }
    if option_is("encrypt", &["false", "no", "0", "optional"]) {
        config.encryption(tiberius::EncryptionLevel::Off);
    }
    let tcp = tokio::net::TcpStream::connect((server.host.as_str(), port))
        .await
        .expect("connect to the test SQL Server");
    tcp.set_nodelay(true).expect("nodelay");
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("log in to the test SQL Server")
}

/// The integer `sql` answers (a `COUNT(*)`, say), asked with the engine's
/// own driver rather than through the store under test.
pub async fn count(url: &str, sql: &str) -> i64 {
    let parsed = DatabaseUrl::parse(url).expect("test URL parses");
    match parsed.engine() {
        store::Engine::Sqlite(path) => {
            let path = path.as_ref().expect("a file database");
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.query_row(sql, [], |r| r.get(0)).expect(sql)
        }
        store::Engine::Postgres(_) => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test PostgreSQL");
            tokio::spawn(conn);
            client.query_one(sql, &[]).await.expect(sql).get(0)
        }
        store::Engine::Mysql(_) => {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::from_url(url)
                .await
                .expect("connect to the test MariaDB");
            let value: Option<i64> = conn.query_first(sql).await.expect(sql);
            let _ = conn.disconnect().await;
            value.expect("a row")
        }
        store::Engine::Mssql(_) => {
            let mut client = connect_mssql(url).await;
            let row = client
                .simple_query(sql)
                .await
                .expect(sql)
                .into_row()
                .await
                .expect(sql)
                .expect("a row");
            let value: Option<i32> = row.try_get(0).expect("an INT");
            i64::from(value.expect("not NULL"))
        }
    }
}

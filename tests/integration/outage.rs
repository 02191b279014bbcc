//! The database goes away while devicepass runs: `/auth` answers 503
//! (never 401, never a hang), `/readyz` fails, nothing panics, and service
//! comes back by itself when the database returns.
//!
//! Runs on the dedicated outage instances the test script starts
//! (`DEVICEPASS_TEST_<ENGINE>_OUTAGE_URL`, `_STOP`, `_START`), so stopping
//! them disturbs no other test.
#![allow(clippy::disallowed_methods)] // tests read their own environment

use std::process::Command;
use std::time::{Duration, Instant};

use crate::engines::{Engine, create_mysql, create_postgres};
use crate::support::{self, Server, basic, get_auth, request};

struct Outage {
    url: String,
    stop: String,
    start: String,
}

fn outage_env(prefix: &str, engine: Engine) -> Option<(String, String, String)> {
    let var =
        |suffix: &str| std::env::var(format!("DEVICEPASS_TEST_{prefix}_OUTAGE_{suffix}")).ok();
    match (var("URL"), var("STOP"), var("START")) {
        (Some(u), Some(stop), Some(start)) => Some((u, stop, start)),
        _ => {
            // Reuses the suite's rule: required under scripts/test.
            engine.admin_url()?;
            eprintln!("{engine:?} outage test needs DEVICEPASS_TEST_{prefix}_OUTAGE_*");
            None
        }
    }
}

async fn prepare(engine: Engine) -> Option<Outage> {
    let prefix = if engine == Engine::Postgres {
        "POSTGRES"
    } else {
        "MYSQL"
    };
    let (admin, stop, start) = outage_env(prefix, engine)?;
    let url = match engine {
        Engine::Postgres => create_postgres(&admin).await,
        _ => create_mysql(&admin).await,
    };
    Some(Outage { url, stop, start })
}

fn shell(command: &str) {
    let status = Command::new("sh")
        .args(["-c", command])
        .status()
        .expect("run shell");
    assert!(status.success(), "{command} failed");
}

fn run_outage(outage: Outage) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = outage.url.as_str();
    support::add_user(url, "olga", "olga@example.org");
    let (_, login, password) = support::create_token(url, "olga", &[]);
    let env = [
        ("DP_DATABASE_URL", url),
        ("DP_STORE_TIMEOUT", "2s"),
        ("DP_DATABASE_CONNECT_TIMEOUT", "1s"),
    ];
    let server = Server::start(dir.path(), &env);
    let auth = basic(&login, &password);
    assert_eq!(
        get_auth(server.addr, "/auth", Some(&auth)).status,
        200,
        "before the outage"
    );

    shell(&outage.stop);
    for credentials in [auth.clone(), basic(&login, "wrong"), basic("nobody", "x")] {
        let started = Instant::now();
        let reply = get_auth(server.addr, "/auth", Some(&credentials));
        assert_eq!(
            reply.status, 503,
            "database down must be 503, not a verdict"
        );
        assert_eq!(reply.header("Retry-After"), Some(&b"1"[..]));
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "answered within the timeout"
        );
    }
    assert_eq!(request(server.addr, "GET", "/readyz", &[], b"").status, 503);
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[], b"").status,
        200
    );

    shell(&outage.start);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = 0;
    while Instant::now() < deadline {
        status = get_auth(server.addr, "/auth", Some(&auth)).status;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(status, 200, "service came back without a restart");
    assert_eq!(request(server.addr, "GET", "/readyz", &[], b"").status, 200);
    let log = server.log_text();
    assert!(!log.contains("panicked"), "panic in log: {log}");
    assert!(!log.contains(&password), "password in log");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_outage_gives_503_and_recovers() {
    let Some(outage) = prepare(Engine::Postgres).await else {
        return;
    };
    tokio::task::spawn_blocking(move || run_outage(outage))
        .await
        .expect("outage test");
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_outage_gives_503_and_recovers() {
    let Some(outage) = prepare(Engine::Mysql).await else {
        return;
    };
    tokio::task::spawn_blocking(move || run_outage(outage))
        .await
        .expect("outage test");
}

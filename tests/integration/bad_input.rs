//! Malformed credentials get a plain 401 with the challenge: never a 500,
//! never a crash, and nothing secret in the log, even at debug level.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::support::{self, Server, basic, get_auth, request};

fn encoded(pair: &[u8]) -> Vec<u8> {
    format!("Basic {}", STANDARD.encode(pair)).into_bytes()
}

#[test]
fn malformed_credentials_are_refused_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    support::add_user(&url, "alice", "alice@example.org");
    let (_, login, password) = support::create_token(&url, "alice", &[]);
    let server = Server::start(
        dir.path(),
        &[
            ("DP_DATABASE_URL", &url),
            ("DP_LOG_LEVEL", "debug"),
            ("DP_LOG_FORMAT", "json"),
        ],
    );

    let huge = format!("Basic {}", "A".repeat(20_000)).into_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("other scheme", b"Token abc".to_vec()),
        ("basic without value", b"Basic".to_vec()),
        ("not base64", b"Basic !!!".to_vec()),
        ("no colon", encoded(b"alice")),
        ("empty password", encoded(b"alice:")),
        ("empty user", encoded(b":secret")),
        ("20 kB value", huge),
        ("not UTF-8", encoded(b"alice:\xff\xfe\xfd")),
        ("control character", encoded(b"alice\x01:secret")),
        (
            "colon in password is part of it",
            encoded(format!("{login}:sec:ret").as_bytes()),
        ),
    ];
    for (what, value) in &cases {
        let reply = request(
            server.addr,
            "GET",
            "/auth",
            &[("Authorization", value)],
            b"",
        );
        assert_eq!(reply.status, 401, "{what}");
        assert_eq!(
            reply.header_str("WWW-Authenticate"),
            "Basic realm=\"devicepass\", charset=\"UTF-8\"",
            "{what}"
        );
        assert!(reply.header("X-Request-Id").is_some(), "{what}");
    }
    let ok = get_auth(server.addr, "/auth", Some(&basic(&login, &password)));
    assert_eq!(ok.status, 200, "the real password still works");

    let log = server.log_text();
    assert!(log.contains("access denied"), "outcomes are logged");
    for secret in [
        password.as_str(),
        "sec:ret",
        "secret",
        &STANDARD.encode(format!("{login}:{password}")),
    ] {
        assert!(!log.contains(secret), "log leaks {secret:?}");
    }
}

#[test]
fn utf8_passwords_and_colons_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    support::add_user(&url, "bob", "bob@example.org");
    // `hash` and a hand-written row give a token with a chosen password.
    let conn = rusqlite::Connection::open(dir.path().join("dp.db")).expect("open");
    let sub: String = conn
        .query_row("SELECT sub FROM users", [], |r| r.get(0))
        .expect("user");
    for (login, password) in [("bob#001", "pässwörd"), ("bob#002", "sec:ret")] {
        let out = support::cli(&url, &["hash"], &[], Some(&format!("{password}\n")));
        assert!(out.status.success());
        let hash = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string();
        assert!(hash.starts_with("$argon2id$"), "default scheme is argon2id");
        conn.execute(
            "INSERT INTO tokens (id, sub, name, token, expires, login) VALUES (?1, ?2, 'x', ?3, NULL, ?4)",
            rusqlite::params![uuid::Uuid::new_v4().simple().to_string(), sub, hash, login],
        )
        .expect("insert");
    }
    let server = Server::start(dir.path(), &[("DP_DATABASE_URL", &url)]);
    assert_eq!(
        get_auth(server.addr, "/auth", Some(&basic("bob#001", "pässwörd"))).status,
        200
    );
    assert_eq!(
        get_auth(server.addr, "/auth", Some(&basic("bob#001", "passwort"))).status,
        401
    );
    assert_eq!(
        get_auth(server.addr, "/auth", Some(&basic("bob#002", "sec:ret"))).status,
        200
    );
}

#[test]
fn routes_and_json_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    support::add_user(&url, "carol", "carol@example.org");
    let (_, login, password) = support::create_token(&url, "carol", &["--name", "phone"]);
    let server = Server::start(dir.path(), &[("DP_DATABASE_URL", &url)]);
    let addr = server.addr;

    assert_eq!(request(addr, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(request(addr, "GET", "/readyz", &[], b"").status, 200);
    for path in ["/", "/authx", "/verify/x", "/admin", "/../etc/passwd"] {
        assert_eq!(request(addr, "GET", path, &[], b"").status, 404, "{path}");
    }
    assert_eq!(request(addr, "GET", "/verify", &[], b"").status, 405);

    let body = serde_json::json!({"username": login, "password": password, "service": "mqtt"});
    let ok = request(
        addr,
        "POST",
        "/verify",
        &[("Content-Type", b"application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(ok.status, 200);
    let value: serde_json::Value = serde_json::from_slice(&ok.body).expect("json");
    assert_eq!(value["ok"], true);
    assert_eq!(value["user"]["username"], "carol");
    assert_eq!(value["user"]["token_name"], "phone");

    let wrong = serde_json::json!({"username": login, "password": "nope"});
    let denied = request(addr, "POST", "/verify", &[], wrong.to_string().as_bytes());
    assert_eq!(denied.status, 401);
    assert_eq!(denied.body, br#"{"ok":false}"#);
    for junk in [&b"{"[..], b"[]", b"{\"username\": 1}", b"\xff"] {
        assert_eq!(request(addr, "POST", "/verify", &[], junk).status, 401);
    }
    let big = vec![b' '; 20_000];
    assert_eq!(request(addr, "POST", "/verify", &[], &big).status, 413);

    let service = get_auth(addr, "/auth/imap", Some(&basic(&login, &password)));
    assert_eq!(service.status, 200);
    let id = request(
        addr,
        "GET",
        "/healthz",
        &[("X-Request-Id", b"abc-123")],
        b"",
    );
    assert_eq!(id.header("X-Request-Id"), Some(&b"abc-123"[..]));
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    support::add_user(&url, "hal", "hal@example.org");
    let (_, login, password) = support::create_token(&url, "hal", &[]);
    let server = Server::start(dir.path(), &[("DP_DATABASE_URL", &url)]);
    assert_eq!(
        get_auth(server.addr, "/auth", Some(&basic(&login, &password))).status,
        200
    );
    let log = server.log.clone();
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(!log.contains("panicked"), "shutdown panicked: {log}");
}

#[test]
fn a_deleted_database_file_is_unavailable_not_a_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dp.db");
    let url = format!("sqlite:///{}", path.display());
    support::add_user(&url, "gil", "gil@example.org");
    let (_, login, password) = support::create_token(&url, "gil", &[]);
    let server = Server::start(dir.path(), &[("DP_DATABASE_URL", &url)]);
    assert_eq!(
        get_auth(server.addr, "/auth", Some(&basic(&login, &password))).status,
        200
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    assert_eq!(
        get_auth(server.addr, "/auth", Some(&basic(&login, &password))).status,
        503
    );
    assert_eq!(request(server.addr, "GET", "/readyz", &[], b"").status, 503);
    assert!(server.log_text().contains("removed or replaced"));
}

#[test]
fn a_missing_schema_fails_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("empty.db").display());
    let server = Server::start(
        dir.path(),
        &[("DP_DATABASE_URL", &url), ("DP_AUTO_MIGRATE", "false")],
    );
    assert_eq!(request(server.addr, "GET", "/readyz", &[], b"").status, 503);
    assert_eq!(
        get_auth(server.addr, "/auth", Some(&basic("a#001", "b"))).status,
        503
    );
}

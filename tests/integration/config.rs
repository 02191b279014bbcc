//! Bad configuration stops the process before it binds, naming every bad
//! setting and never echoing a value.

use std::process::Command;

use crate::support::{BIN, free_port};

#[test]
fn every_bad_setting_is_reported_by_name_before_binding() {
    let port = free_port();
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("DP_LISTEN", format!("127.0.0.1:{port}x"))
        .env("DP_CACHE_TTL", "forever")
        .env("DP_PASSWORD_HASH", "rot13")
        .env("DP_DATABASE_URL", "postgresql://user:hunter2@db:99999/x")
        .env("DP_HASH_WORKERS", "-1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in [
        "DP_LISTEN",
        "DP_CACHE_TTL",
        "DP_PASSWORD_HASH",
        "DP_DATABASE_URL",
        "DP_HASH_WORKERS",
    ] {
        assert!(err.contains(name), "{name} not reported in {err}");
    }
    assert!(!err.contains("hunter2"), "password echoed: {err}");
    assert!(!err.contains("forever"), "value echoed: {err}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn toml_file_is_read_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dp.toml");
    std::fs::write(&file, "realm = \"mail\"\nlisten = 8080\nno_such_key = 1\n").expect("write");
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap_or_default(), "serve"])
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen (in "), "{err}");
    assert!(err.contains("no_such_key (in "), "{err}");
    assert!(!err.contains("realm"), "a valid key is not an error: {err}");
}

#[test]
fn example_config_is_valid() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/devicepass.example.toml"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["--config", example, "migrate"])
        .env_clear()
        .env(
            "DP_DATABASE_URL",
            format!("sqlite:///{}", dir.path().join("x.db").display()),
        )
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_database_url_option_stops_startup_by_name() {
    let port = free_port();
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("DP_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "DP_DATABASE_URL",
            "postgresql://dp:hunter2@127.0.0.1:1/x?sslmode=sometimes",
        )
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sslmode"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains("sometimes"),
        "{err}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn settings_that_would_silently_misbehave_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("url");
    std::fs::write(&secret_file, "sqlite:///x.db\n").expect("write");
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("DP_LOG_LEVEL", "loud")
        .env("DP_HEADER_SUB", "content-length")
        .env("DP_HEADER_EMAIL", "X-Auth-User")
        .env("DP_WORDLIST", "/nonexistent/words.txt")
        .env("DP_USE_FLUSH_INTERVAL", "0")
        .env("DP_LISTEN_FILE", secret_file.to_str().unwrap_or_default())
        .env("DP_DATABASE_URL", "sqlite:///y.db")
        .env(
            "DP_DATABASE_URL_FILE",
            secret_file.to_str().unwrap_or_default(),
        )
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in [
        "DP_LOG_LEVEL",
        "DP_HEADER_SUB",
        "DP_HEADER_EMAIL",
        "DP_WORDLIST",
        "DP_USE_FLUSH_INTERVAL",
        "DP_LISTEN_FILE",
        "DP_DATABASE_URL_FILE",
    ] {
        assert!(err.contains(name), "{name} not reported in {err}");
    }
}

#[test]
fn a_bad_file_value_is_reported_even_when_the_environment_overrides_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dp.toml");
    std::fs::write(&file, "listen = \"nowhere\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["--config", file.to_str().unwrap_or_default(), "serve"])
        .env_clear()
        .env("DP_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen (in "));
}

#[test]
fn every_setting_is_documented_in_the_readme_and_the_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
    let example =
        std::fs::read_to_string(format!("{root}/config/devicepass.example.toml")).expect("example");
    for key in devicepass::config::KEYS {
        assert!(
            readme.contains(&format!("`{}`", key.name)),
            "README lacks {}",
            key.name
        );
        for var in key.env {
            assert!(readme.contains(var), "README lacks {var}");
        }
        let line = format!("\n{} = ", key.name);
        assert!(example.contains(&line), "example config lacks {}", key.name);
    }
}

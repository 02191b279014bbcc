//! Unit tests of the postgres module.

use super::*;

fn parse(value: Option<&str>) -> Result<TlsMode, OptionError> {
    TlsMode::parse(value)
}

#[test]
fn sslmode_follows_libpq() {
    assert_eq!(parse(None), Ok(TlsMode::Prefer), "libpq's default");
    assert_eq!(parse(Some("disable")), Ok(TlsMode::Disable));
    assert_eq!(parse(Some("allow")), Ok(TlsMode::Prefer));
    assert_eq!(parse(Some("prefer")), Ok(TlsMode::Prefer));
    assert_eq!(parse(Some("require")), Ok(TlsMode::Require));
    assert_eq!(parse(Some("verify-ca")), Ok(TlsMode::VerifyCa));
    assert_eq!(parse(Some("VERIFY-FULL")), Ok(TlsMode::VerifyFull));
    let err = parse(Some("required")).expect_err("a typo is refused");
    assert_eq!(err.option, "sslmode");
    assert!(parse(Some("")).is_err());
}

#[test]
fn only_disable_and_prefer_may_be_plaintext() {
    assert_eq!(TlsMode::Disable.ssl_mode(), SslMode::Disable);
    assert_eq!(TlsMode::Prefer.ssl_mode(), SslMode::Prefer);
    for mode in [TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
        assert_eq!(
            mode.ssl_mode(),
            SslMode::Require,
            "{mode:?} never falls back"
        );
    }
}

#[test]
fn certificate_checks_follow_libpq() {
    let file = Some("/etc/ssl/db-root.pem");
    assert_eq!(check_for(TlsMode::Prefer, None), Ok(Check::None));
    assert_eq!(check_for(TlsMode::Require, None), Ok(Check::None));
    assert_eq!(
        check_for(TlsMode::Require, file),
        Ok(Check::Chain),
        "like verify-ca"
    );
    assert_eq!(check_for(TlsMode::VerifyCa, file), Ok(Check::Chain));
    assert_eq!(check_for(TlsMode::VerifyFull, file), Ok(Check::Full));
    assert_eq!(check_for(TlsMode::VerifyFull, None), Ok(Check::FullPublic));
    assert_eq!(
        check_for(TlsMode::VerifyFull, Some("system")),
        Ok(Check::FullPublic)
    );
    assert_eq!(check_for(TlsMode::Disable, file), Ok(Check::None));
    let refused = |mode, root| check_for(mode, root).map_err(|e| e.option);
    assert_eq!(refused(TlsMode::VerifyCa, None), Err("sslrootcert"));
    assert_eq!(
        refused(TlsMode::Require, Some("system")),
        Err("sslrootcert")
    );
}

#[test]
fn unreadable_root_file_is_refused_at_open() {
    let missing = tls_connector(TlsMode::VerifyCa, Some("/nonexistent/root.pem"));
    assert_eq!(missing.err().map(|e| e.option), Some("sslrootcert"));
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").expect("write");
    let empty = tls_connector(TlsMode::VerifyFull, empty.to_str());
    assert_eq!(
        empty.err().map(|e| e.reason),
        Some("the file holds no certificate")
    );
}

#[test]
fn connectors_build_for_every_mode() {
    for mode in [
        TlsMode::Disable,
        TlsMode::Prefer,
        TlsMode::Require,
        TlsMode::VerifyFull,
    ] {
        assert!(tls_connector(mode, None).is_ok(), "{mode:?}");
    }
}

fn mapped(code: SqlState, constraint: &str, table: &str) -> Option<String> {
    constraint_error(&code, Some(constraint), Some(table)).map(|e| e.to_string())
}

#[test]
fn constraint_violations_map_by_name() {
    let unique = SqlState::UNIQUE_VIOLATION;
    let taken = |what: &str| Some(format!("{what} is already taken"));
    assert_eq!(
        mapped(unique.clone(), "login_unique", "tokens"),
        taken("login")
    );
    assert_eq!(
        mapped(unique.clone(), "users_username_key", "users"),
        taken("username")
    );
    assert_eq!(
        mapped(unique.clone(), "users_email_key", "users"),
        taken("email")
    );
    assert_eq!(
        mapped(unique.clone(), "tokens_pkey", "tokens"),
        taken("token id")
    );
    assert_eq!(mapped(unique, "sessions_session_id_key", "sessions"), None);
    let fk = SqlState::FOREIGN_KEY_VIOLATION;
    let missing = |what: &str| Some(format!("{what} does not exist"));
    assert_eq!(
        mapped(fk.clone(), "tokens_sub_fkey", "tokens"),
        missing("user")
    );
    assert_eq!(mapped(fk, "logs_tokenId_fkey", "logs"), missing("token"));
    assert_eq!(mapped(SqlState::UNDEFINED_TABLE, "", "tokens"), None);
}

#[test]
fn open_does_not_connect() {
    let server = ServerUrl {
        host: "127.0.0.1".into(),
        port: Some(1),
        user: "dp".into(),
        password: Some(Secret::new("hunter2".into())),
        database: "dp".into(),
        options: vec![("sslmode".into(), "require".into())],
    };
    assert!(PostgresStore::open(&server, &PoolOptions::default()).is_ok());
    let bad = ServerUrl {
        options: vec![("sslmode".into(), "sometimes".into())],
        ..server
    };
    assert!(matches!(
        PostgresStore::open(&bad, &PoolOptions::default()),
        Err(StoreError::BadOption("sslmode"))
    ));
}

#[test]
fn sessions_schema_only_adds() {
    let statements: Vec<&str> = sessions::SCHEMA
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(statements.len(), 4);
    assert!(statements[0].starts_with("CREATE TABLE IF NOT EXISTS dp_sessions ("));
    for index in &statements[1..] {
        assert!(index.starts_with("CREATE INDEX IF NOT EXISTS ix_dp_sessions_"));
        assert!(index.contains(" ON dp_sessions ("), "{index}");
    }
    for column in [
        "id VARCHAR(64) NOT NULL",
        "data TEXT NOT NULL",
        "expires TIMESTAMP WITHOUT TIME ZONE NOT NULL",
    ] {
        assert!(statements[0].contains(column), "{column}");
    }
    for word in ["ALTER", "DROP", "REFERENCES"] {
        assert!(!sessions::SCHEMA.contains(word), "{word}");
    }
}

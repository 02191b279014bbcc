//! Unit tests of the mysql module.

use super::*;

fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn read(pairs: &[(&str, &str)]) -> Result<UrlOptions, StoreError> {
    UrlOptions::read(&options(pairs))
}

fn server_error(code: u16, message: &str) -> mysql_async::Error {
    mysql_async::Error::Server(mysql_async::ServerError {
        code,
        message: message.to_string(),
        state: "23000".to_string(),
    })
}

#[test]
fn ssl_modes_parse_in_any_case_and_spelling() {
    assert_eq!(SslMode::parse("DISABLED"), Some(SslMode::Disabled));
    assert_eq!(SslMode::parse("preferred"), Some(SslMode::Preferred));
    assert_eq!(SslMode::parse("Required"), Some(SslMode::Required));
    assert_eq!(SslMode::parse("verify_ca"), Some(SslMode::VerifyCa));
    assert_eq!(
        SslMode::parse("VERIFY-IDENTITY"),
        Some(SslMode::VerifyIdentity)
    );
    assert_eq!(SslMode::parse("require"), None);
    assert_eq!(SslMode::parse(""), None);
}

#[test]
fn both_option_spellings_are_read() {
    let dashed = read(&[("ssl-mode", "REQUIRED"), ("ssl-ca", "/ca.pem")]).unwrap();
    let under = read(&[("SSL_MODE", "required"), ("ssl_ca", "/ca.pem")]).unwrap();
    assert_eq!(dashed, under);
    assert_eq!(dashed.ssl_mode, Some(SslMode::Required));
    assert_eq!(dashed.ssl_ca, Some(PathBuf::from("/ca.pem")));
}

#[test]
fn a_bad_ssl_mode_is_refused_other_options_ignored() {
    assert!(matches!(
        read(&[("ssl-mode", "sometimes")]),
        Err(StoreError::BadOption("ssl-mode"))
    ));
    let ok = read(&[("charset", "utf8mb4"), ("charset", "latin1"), ("pool", "9")]);
    assert_eq!(ok.unwrap(), UrlOptions::default());
}

#[test]
fn effective_mode_follows_mysql_clients() {
    let mode = |pairs: &[(&str, &str)]| read(pairs).unwrap().effective_mode();
    assert_eq!(mode(&[]), SslMode::Preferred);
    assert_eq!(mode(&[("ssl-ca", "/ca.pem")]), SslMode::VerifyCa);
    let required_ca = [("ssl-mode", "REQUIRED"), ("ssl-ca", "/ca.pem")];
    assert_eq!(mode(&required_ca), SslMode::VerifyCa);
    let identity = [("ssl-mode", "VERIFY_IDENTITY"), ("ssl-ca", "/ca.pem")];
    assert_eq!(mode(&identity), SslMode::VerifyIdentity);
    assert_eq!(mode(&[("ssl-mode", "DISABLED")]), SslMode::Disabled);
    let disabled = read(&[("ssl-mode", "DISABLED"), ("ssl-ca", "/ca.pem")]).unwrap();
    assert_eq!(disabled.ca_for(disabled.effective_mode()), None);
}

#[test]
fn ssl_opts_check_what_the_mode_says() {
    assert_eq!(ssl_opts(SslMode::Disabled, None), None);
    for mode in [SslMode::Preferred, SslMode::Required] {
        let opts = ssl_opts(mode, None).unwrap();
        assert!(opts.accept_invalid_certs() && opts.skip_domain_validation());
    }
    let ca = ssl_opts(SslMode::VerifyCa, Some("/ca.pem".into())).unwrap();
    assert!(!ca.accept_invalid_certs() && ca.skip_domain_validation());
    assert!(ca.disable_built_in_roots());
    assert_eq!(ca.root_certs().len(), 1);
    let identity = ssl_opts(SslMode::VerifyIdentity, None).unwrap();
    assert!(!identity.accept_invalid_certs() && !identity.skip_domain_validation());
    assert!(!identity.disable_built_in_roots());
}

#[test]
fn duplicate_keys_are_found_in_both_dialects() {
    let maria = "Duplicate entry 'ann#001' for key 'login_unique'";
    let mysql8 = "Duplicate entry 'ann#001' for key 'tokens.login_unique'";
    assert_eq!(duplicate_key(maria), Some("login_unique"));
    assert_eq!(duplicate_key(mysql8), Some("login_unique"));
    let tricky = "Duplicate entry 'x for key 'y' for key 'PRIMARY'";
    assert_eq!(duplicate_key(tricky), Some("PRIMARY"));
    assert_eq!(duplicate_key("Deadlock found"), None);
}

#[test]
fn constraint_errors_map_by_key_name() {
    let dup = |key: &str| {
        let e = server_error(
            ER_DUP_ENTRY,
            &format!("Duplicate entry 'v' for key '{key}'"),
        );
        constraint_error(&e)
    };
    assert!(matches!(
        dup("login_unique"),
        Some(StoreError::Conflict("login"))
    ));
    assert!(matches!(
        dup("users.username_unique"),
        Some(StoreError::Conflict("username"))
    ));
    assert!(matches!(
        dup("email_unique"),
        Some(StoreError::Conflict("email"))
    ));
    assert!(dup("PRIMARY").is_none());
    assert!(dup("session_id_unique").is_none());

    let fk = |name: &str| {
        let message = format!(
            "Cannot add or update a child row: a foreign key constraint fails \
             (`db`.`t`, CONSTRAINT `{name}` FOREIGN KEY (`x`) REFERENCES `y` (`z`))"
        );
        constraint_error(&server_error(ER_NO_REFERENCED_ROW_2, &message))
    };
    assert!(matches!(
        fk("tokens_sub_fk"),
        Some(StoreError::Missing("user"))
    ));
    assert!(matches!(
        fk("logs_token_fk"),
        Some(StoreError::Missing("token"))
    ));
    assert!(constraint_error(&server_error(ER_LOCK_DEADLOCK, "Deadlock")).is_none());
}

#[test]
fn only_deadlocks_and_primary_key_races_are_retried() {
    assert!(worth_retrying(&server_error(
        ER_LOCK_DEADLOCK,
        "Deadlock found"
    )));
    let primary = "Duplicate entry 'sub-a' for key 'PRIMARY'";
    assert!(worth_retrying(&server_error(ER_DUP_ENTRY, primary)));
    assert!(is_duplicate_primary(&server_error(ER_DUP_ENTRY, primary)));
    let login = "Duplicate entry 'a#001' for key 'login_unique'";
    assert!(!worth_retrying(&server_error(ER_DUP_ENTRY, login)));
    assert!(!worth_retrying(&server_error(
        1205,
        "Lock wait timeout exceeded"
    )));
}

#[test]
fn schema_names_the_keys_the_error_mapping_expects() {
    let ddl = schema("utf8mb4_nopad_bin").join("\n");
    for key in [
        "login_unique",
        "username_unique",
        "email_unique",
        "logs_token_fk",
    ] {
        assert!(ddl.contains(key), "{key}");
    }
    assert!(ddl.contains("expires DATETIME(6) NULL"));
    assert!(!ddl.contains("utf8mb4_bin"), "only the collation asked for");
}

#[test]
fn the_pool_keeps_idle_connections() {
    let server = unreachable_server(3306, &[]);
    let opts = mysql_async::Opts::from(base_opts(&server, 6));
    let pool = opts.pool_opts();
    assert_eq!((pool.constraints().min(), pool.constraints().max()), (1, 6));
    assert!(
        pool.inactive_connection_ttl() > Duration::ZERO,
        "else only min are kept"
    );
    assert!(!pool.reset_connection());
    assert_eq!(opts.tcp_port(), 3306);
    assert_eq!(opts.pass(), Some("secret"));
    assert_eq!(opts.db_name(), Some("devicepass"));
}

fn unreachable_server(port: u16, pairs: &[(&str, &str)]) -> ServerUrl {
    ServerUrl {
        host: "127.0.0.1".into(),
        port: Some(port),
        user: "dp".into(),
        password: Some(Secret::new("secret".into())),
        database: "devicepass".into(),
        options: options(pairs),
    }
}

#[tokio::test]
async fn opens_without_a_server_and_fails_fast_without_one() {
    // Bind and drop a listener to find a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let options = PoolOptions {
        size: 2,
        connect_timeout: Duration::from_millis(500),
    };
    let store = MysqlStore::open(&unreachable_server(port, &[]), &options).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable)));
    assert!(matches!(
        store.migrate().await,
        Err(StoreError::Unavailable)
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn open_refuses_a_bad_ssl_mode_or_a_missing_ca_file() {
    let options = PoolOptions::default();
    let bad = unreachable_server(3306, &[("ssl-mode", "yes-please")]);
    assert!(matches!(
        MysqlStore::open(&bad, &options),
        Err(StoreError::BadOption("ssl-mode"))
    ));
    let no_ca = unreachable_server(3306, &[("ssl-ca", "/nonexistent/devicepass-ca.pem")]);
    assert!(matches!(
        MysqlStore::open(&no_ca, &options),
        Err(StoreError::BadOption("ssl-ca"))
    ));
}

#[test]
fn sessions_table_is_keyed_indexed_and_unbounded() {
    let ddl = sessions::schema("utf8mb4_nopad_bin");
    for part in [
        "CREATE TABLE IF NOT EXISTS dp_sessions (",
        "id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL",
        "sid VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL",
        "data LONGTEXT",
        "expires DATETIME(6) NOT NULL",
        "PRIMARY KEY (id)",
        "KEY ix_dp_sessions_sub (sub)",
        "KEY ix_dp_sessions_sid (sid)",
        "KEY ix_dp_sessions_expires (expires)",
        "ENGINE=InnoDB",
    ] {
        assert!(ddl.contains(part), "{part}");
    }
    assert!(!ddl.contains("FOREIGN KEY"), "sub refers to no user row");
    assert!(!ddl.contains("utf8mb4_bin"), "only the collation asked for");
    for column in ["id", "sub", "sid", "data", "expires"] {
        let required = ("dp_sessions", column);
        assert!(REQUIRED_COLUMNS.contains(&required), "{column}");
    }
    assert_eq!(SCHEMA_VERSION, 2, "version 2 adds dp_sessions");
}

//! Unit tests of the keys module.

use super::super::Config;

fn load(vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    Config::load_from(
        None,
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .map(|l| l.config)
    .map_err(|e| e.0.into_iter().map(|e| e.name).collect())
}

#[test]
fn defaults_are_valid() {
    let config = load(&[]).map_err(|e| format!("{e:?}"));
    let config = config.expect("defaults load");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.realm, "devicepass");
    assert_eq!(config.max_expiration_days, None);
}

#[test]
fn every_bad_value_is_reported_by_name() {
    let errors = load(&[
        ("DP_LISTEN", "nowhere"),
        ("DP_CACHE_TTL", "soon"),
        ("DP_PASSWORD_HASH", "rot13"),
        ("DP_HEADER_USER", "bad header"),
        ("DP_SQLALCHEMY_DATABASE_URI", "oracle://x"),
    ])
    .err()
    .unwrap_or_default();
    for name in [
        "DP_LISTEN",
        "DP_CACHE_TTL",
        "DP_PASSWORD_HASH",
        "DP_HEADER_USER",
    ] {
        assert!(
            errors.iter().any(|e| e == name),
            "{name} missing from {errors:?}"
        );
    }
    assert!(errors.iter().any(|e| e == "DP_SQLALCHEMY_DATABASE_URI"));
}

#[test]
fn python_names_keep_working() {
    let config = load(&[
        ("DP_SQLALCHEMY_DATABASE_URI", "sqlite:////tmp/x.db"),
        ("DP_MAX_EXPIRATION_DAYS", "30"),
    ])
    .map_err(|e| format!("{e:?}"))
    .expect("valid");
    assert_eq!(config.max_expiration_days, Some(30));
    assert_eq!(config.database_url.redacted(), "sqlite:////tmp/x.db");
}

#[test]
fn listeners_default_to_tcp_only() {
    let config = load(&[]).map_err(|e| format!("{e:?}")).expect("valid");
    assert_eq!(config.metrics_listen, None);
    assert_eq!(config.unix_socket, None);
    assert_eq!(config.unix_socket_mode, 0o660);
}

#[test]
fn listener_settings_are_parsed() {
    let config = load(&[
        ("DP_METRICS_LISTEN", "127.0.0.1:9090"),
        ("DP_UNIX_SOCKET", "/run/devicepass/dp.sock"),
        ("DP_UNIX_SOCKET_MODE", "0600"),
    ])
    .map_err(|e| format!("{e:?}"))
    .expect("valid");
    assert_eq!(config.metrics_listen.map(|a| a.port()), Some(9090));
    let path = config.unix_socket.expect("socket path");
    assert_eq!(path.to_str(), Some("/run/devicepass/dp.sock"));
    assert_eq!(config.unix_socket_mode, 0o600);
}

#[test]
fn bad_listener_settings_are_reported_by_name() {
    let long = format!("/{}", "s".repeat(120));
    let errors = load(&[
        ("DP_METRICS_LISTEN", "metrics.example:9090"),
        ("DP_UNIX_SOCKET", &long),
        ("DP_UNIX_SOCKET_MODE", "rw-rw----"),
    ])
    .err()
    .unwrap_or_default();
    assert_eq!(
        errors,
        vec!["DP_METRICS_LISTEN", "DP_UNIX_SOCKET", "DP_UNIX_SOCKET_MODE"]
    );
    for mode in ["888", "1777", ""] {
        let errors = load(&[("DP_UNIX_SOCKET_MODE", mode)]).err();
        assert_eq!(errors, Some(vec!["DP_UNIX_SOCKET_MODE".to_string()]));
    }
}

#[test]
fn metrics_need_an_address_of_their_own() {
    let same = [
        ("DP_LISTEN", "127.0.0.1:8080"),
        ("DP_METRICS_LISTEN", "127.0.0.1:8080"),
    ];
    let errors = load(&same).err();
    assert_eq!(errors, Some(vec!["DP_METRICS_LISTEN".to_string()]));
    let any_port = [
        ("DP_LISTEN", "127.0.0.1:0"),
        ("DP_METRICS_LISTEN", "127.0.0.1:0"),
    ];
    assert!(load(&any_port).is_ok());
}

#[test]
fn conflicting_aliases_are_an_error() {
    let errors = load(&[
        ("DP_DATABASE_URL", "sqlite:///a.db"),
        ("DP_SQLALCHEMY_DATABASE_URI", "sqlite:///b.db"),
    ])
    .err()
    .unwrap_or_default();
    assert_eq!(errors, vec!["DP_SQLALCHEMY_DATABASE_URI".to_string()]);
}

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

/// The names of the bad settings, or nothing when the load succeeded.
fn errors_of(vars: &[(&str, &str)]) -> Vec<String> {
    load(vars).err().unwrap_or_default()
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

const OIDC: &[(&str, &str)] = &[
    (
        "DP_OIDC_DISCOVERY_URL",
        "https://id.example.org/.well-known/openid-configuration",
    ),
    ("DP_OIDC_CLIENT_ID", "devicepass"),
    ("DP_PUBLIC_URL", "https://devicepass.example.org/"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars: Vec<_> = OIDC
        .iter()
        .filter(|(name, _)| !extra.iter().any(|(n, _)| n == name))
        .copied()
        .collect();
    vars.extend_from_slice(extra);
    vars
}

#[test]
fn sign_in_is_off_without_a_discovery_url() {
    let config = load(&[]).expect("defaults");
    assert!(config.oidc.is_none());
    assert!(config.web.cookie_secure);
    assert_eq!(config.ui.heading, "Device passwords");
    assert!(!config.ui.logins);
}

#[test]
fn python_oidc_settings_keep_their_meaning() {
    let config = load(&with(&[
        ("DP_OIDC_CLIENT_SECRET", "s3cret"),
        ("DP_OIDC_SCOPE", "openid email profile groups"),
        ("DP_OIDC_CLAIM_EMAIL_VERIFIED", ""),
        ("DP_OIDC_CLAIM_USERNAME", "email"),
        ("DP_OIDC_CLAIMS_FROM_PROFILE", "true"),
        ("DP_OIDC_REQUIRED_CLAIM", "hd"),
        ("DP_OIDC_REQUIRED_CLAIM_VALUE", "example.org"),
        ("DP_OIDC_GROUP_MEMBERSHIP", "staff"),
        ("DP_UI_SHOW_SUBJECT", "false"),
    ]))
    .map_err(|e| format!("{e:?}"))
    .expect("valid");
    let oidc = config.oidc.expect("sign-in on");
    assert_eq!(oidc.public_url.as_str(), "https://devicepass.example.org/");
    assert_eq!(oidc.scope, ["openid", "email", "profile", "groups"]);
    assert_eq!(
        oidc.claim_email_verified, None,
        "empty accepts unverified addresses"
    );
    assert_eq!(oidc.claim_username, "email");
    assert!(oidc.claims_from_profile);
    assert_eq!(oidc.required_claim.as_deref(), Some("hd"));
    assert_eq!(oidc.required_claim_value.as_deref(), Some("example.org"));
    assert_eq!(oidc.group_membership.as_deref(), Some("staff"));
    assert_eq!(oidc.group_claim, "groups");
    assert_eq!(oidc.api_audience, "devicepass", "defaults to the client id");
    assert_eq!(
        oidc.client_secret.map(|s| s.expose().clone()).as_deref(),
        Some("s3cret")
    );
    assert!(!config.ui.show_subject);
}

#[test]
fn sign_in_settings_are_checked_together() {
    let errors = errors_of(&[("DP_OIDC_DISCOVERY_URL", "https://id.example.org/")]);
    assert!(
        errors.iter().any(|e| e == "DP_OIDC_CLIENT_ID"),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e == "DP_PUBLIC_URL"), "{errors:?}");
    for (name, bad) in [
        ("DP_OIDC_SCOPE", "email profile"),
        ("DP_OIDC_DISCOVERY_URL", "ftp://id.example.org/"),
        ("DP_PUBLIC_URL", "https://devicepass.example.org/?x=1"),
        ("DP_OIDC_ALGORITHMS", "RS256,HS256"),
        ("DP_OIDC_ALGORITHMS", "none"),
        ("DP_OIDC_CLAIM_EMAIL", "e mail"),
        ("DP_HSTS", "forever"),
        ("DP_SESSION_LIFETIME", "0"),
    ] {
        let errors = errors_of(&with(&[(name, bad)]));
        assert_eq!(errors, [name], "{name}={bad}");
    }
}

#[test]
fn secure_cookies_need_https_except_on_loopback() {
    let plain = [("DP_PUBLIC_URL", "http://devicepass.example.org")];
    assert_eq!(errors_of(&with(&plain)), ["DP_PUBLIC_URL"]);
    let local = [("DP_PUBLIC_URL", "http://127.0.0.1:8080")];
    assert!(load(&with(&local)).is_ok());
    let opted_out = [
        ("DP_PUBLIC_URL", "http://devicepass.lan"),
        ("DP_COOKIE_SECURE", "false"),
    ];
    assert!(load(&with(&opted_out)).is_ok());
}

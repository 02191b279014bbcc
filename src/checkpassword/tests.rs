//! Unit tests of the checkpassword module.

use super::*;

#[test]
fn fd3_input_is_user_password_and_the_rest_ignored() {
    let input = parse_input(b"alice#042\0glacier-saffron\x000123\0").unwrap();
    assert_eq!(input.username, "alice#042");
    assert_eq!(input.password.expose(), "glacier-saffron");
    // The timestamp may be empty (Dovecot) or missing its NUL.
    let input = parse_input(b"bob\0pw:with:colons\0\0").unwrap();
    assert_eq!(input.password.expose(), "pw:with:colons");
    assert!(parse_input(b"bob\0pw\0").is_ok());
}

#[test]
fn fd3_input_with_missing_fields_is_misuse() {
    for bytes in [&b""[..], b"alice", b"alice\0", b"alice\0password"] {
        let err = parse_input(bytes).err();
        assert_eq!(err, Some(InputError::MissingField), "{bytes:?}");
        assert_eq!(err.map(InputError::exit), Some(Exit::Misuse));
    }
}

#[test]
fn fd3_input_over_512_bytes_is_misuse() {
    let mut bytes = b"alice\0".to_vec();
    bytes.resize(MAX_INPUT - 1, b'x');
    bytes.push(0);
    assert!(parse_input(&bytes).is_ok(), "exactly 512 bytes is fine");
    bytes.push(0);
    assert_eq!(parse_input(&bytes).err(), Some(InputError::TooLong));
    assert_eq!(InputError::TooLong.exit(), Exit::Misuse);
}

#[test]
fn fd3_input_that_is_not_utf8_is_a_wrong_password() {
    assert_eq!(
        parse_input(b"al\xffce\0pw\0\0").err(),
        Some(InputError::NotUtf8)
    );
    assert_eq!(
        parse_input(b"alice\0p\xe4ss\0\0").err(),
        Some(InputError::NotUtf8)
    );
    assert_eq!(InputError::NotUtf8.exit(), Exit::Denied);
}

#[test]
fn only_200_with_a_username_grants_and_only_401_denies() {
    let body = br#"{"ok":true,"user":{"email":"a@x","login":"alice#042","username":"alice"}}"#;
    assert_eq!(
        classify(StatusCode::OK, body),
        Answer::Granted("alice".into())
    );
    assert_eq!(
        classify(StatusCode::UNAUTHORIZED, br#"{"ok":false}"#),
        Answer::Denied
    );
    let unavailable = [
        (StatusCode::OK, &b""[..]),
        (StatusCode::OK, b"ok"),
        (
            StatusCode::OK,
            br#"{"ok":false,"user":{"username":"alice"}}"#,
        ),
        (StatusCode::OK, br#"{"ok":true,"user":{"username":""}}"#),
        (StatusCode::OK, br#"{"ok":true,"user":{"username":"a\tb"}}"#),
        (
            StatusCode::OK,
            br#"{"ok":true,"user":{"username":"a\nuid=0"}}"#,
        ),
        (StatusCode::NO_CONTENT, b""),
        (StatusCode::FORBIDDEN, b""),
        (StatusCode::NOT_FOUND, b""),
        (StatusCode::PAYLOAD_TOO_LARGE, b""),
        (StatusCode::INTERNAL_SERVER_ERROR, b""),
        (StatusCode::SERVICE_UNAVAILABLE, b""),
    ];
    for (status, body) in unavailable {
        let answer = classify(status, body);
        assert!(
            matches!(answer, Answer::Unavailable(_)),
            "{status} {body:?}"
        );
    }
}

#[test]
fn answers_map_to_the_interface_exit_codes() {
    assert_eq!(Answer::Granted("alice".into()).exit(), None);
    assert_eq!(Answer::Denied.exit().map(Exit::code), Some(1));
    assert_eq!(
        Answer::Unavailable("x".into()).exit().map(Exit::code),
        Some(111)
    );
    assert_eq!(Exit::Misuse.code(), 2);
}

#[test]
fn urls_name_tcp_or_unix_endpoints() {
    let t: Target = "http://127.0.0.1:8080".parse().unwrap();
    assert_eq!(t.endpoint, Endpoint::Tcp("127.0.0.1:8080".into()));
    assert_eq!(
        (t.host.as_str(), t.path("/verify")),
        ("127.0.0.1:8080", "/verify".into())
    );
    let t: Target = "http://dp.internal/prefix/".parse().unwrap();
    assert_eq!(t.endpoint, Endpoint::Tcp("dp.internal:80".into()));
    assert_eq!(
        (t.host.as_str(), t.path("/verify")),
        ("dp.internal", "/prefix/verify".into())
    );
    let t: Target = "http://[::1]:9000".parse().unwrap();
    assert_eq!(t.endpoint, Endpoint::Tcp("[::1]:9000".into()));
    for text in ["unix:/run/dp.sock", "unix:///run/dp.sock"] {
        let t: Target = text.parse().unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/run/dp.sock".into()));
        assert_eq!(t.path("/healthz"), "/healthz");
    }
    for bad in [
        "https://x",
        "unix:",
        "127.0.0.1:8080",
        "http://u:p@x",
        "ftp://x",
    ] {
        assert!(bad.parse::<Target>().is_err(), "{bad}");
    }
}

#[test]
fn healthcheck_follows_the_listen_address() {
    let args = |url: Option<&str>, listen: Option<&str>| HealthcheckArgs {
        url: url.map(|u| u.parse().unwrap()),
        listen: listen.map(String::from),
        timeout: Duration::from_secs(1),
    };
    let target = |a| health_target(&a).unwrap().endpoint;
    let tcp = |s: &str| Endpoint::Tcp(s.into());
    assert_eq!(target(args(None, None)), tcp("127.0.0.1:8080"));
    assert_eq!(
        target(args(None, Some("0.0.0.0:9000"))),
        tcp("127.0.0.1:9000")
    );
    assert_eq!(target(args(None, Some("[::]:9000"))), tcp("[::1]:9000"));
    assert_eq!(target(args(None, Some("10.1.2.3:80"))), tcp("10.1.2.3:80"));
    let unix = Endpoint::Unix("/run/dp.sock".into());
    assert_eq!(target(args(None, Some("unix:/run/dp.sock"))), unix);
    let url = Some("http://127.0.0.2:1");
    assert_eq!(target(args(url, Some("0.0.0.0:9"))), tcp("127.0.0.2:1"));
    assert!(health_target(&args(None, Some("nonsense"))).is_err());
}

#[test]
fn timeouts_are_seconds_or_humantime() {
    assert_eq!(parse_timeout("5"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
    assert!(parse_timeout("0").is_err());
    assert!(parse_timeout("soon").is_err());
}

#[test]
fn the_verify_body_escapes_everything() {
    let input = Input {
        username: "a\"b".into(),
        password: Secret::new("p\\w\u{1}\"".into()),
    };
    let value: serde_json::Value = serde_json::from_slice(&verify_body(&input)).unwrap();
    assert_eq!(value["username"], "a\"b");
    assert_eq!(value["password"], "p\\w\u{1}\"");
    assert_eq!(value["service"], "dovecot");
}

/// A stand-in for the service on a unix socket: `/verify` grants
/// "right" to the owner "alice", `/healthz` is 200, `/slow` never ends.
async fn fake_service(path: std::path::PathBuf) {
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(fake_answer);
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

async fn fake_answer(
    request: Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let path = request.uri().path().to_string();
    assert_eq!(request.headers()[HOST], "localhost");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let (status, answer) = match path.as_str() {
        "/healthz" => (200, "ok\n".to_string()),
        p if p.starts_with("/slow") => std::future::pending().await,
        _ => {
            let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(sent["service"], "dovecot");
            match sent["password"].as_str() {
                Some("right") => (200, r#"{"ok":true,"user":{"username":"alice"}}"#.into()),
                Some("down") => (503, "request id: x\n".into()),
                _ => (401, r#"{"ok":false}"#.into()),
            }
        }
    };
    let mut response = http::Response::new(Full::new(Bytes::from(answer)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(response)
}

fn login(password: &str) -> Input {
    Input {
        username: "alice#042".into(),
        password: Secret::new(password.into()),
    }
}

#[tokio::test]
async fn the_client_speaks_http_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dp.sock");
    tokio::spawn(fake_service(socket.clone()));
    while !socket.exists() {
        tokio::task::yield_now().await;
    }
    let target: Target = format!("unix:{}", socket.display()).parse().unwrap();
    let timeout = Duration::from_secs(5);
    let granted = ask(&target, &login("right"), timeout).await;
    assert_eq!(granted, Answer::Granted("alice".into()));
    assert_eq!(ask(&target, &login("wrong"), timeout).await, Answer::Denied);
    let down = ask(&target, &login("down"), timeout).await;
    assert_eq!(down.exit(), Some(Exit::TempFail));
    let health = HealthcheckArgs {
        url: Some(target.clone()),
        listen: None,
        timeout,
    };
    assert_eq!(healthcheck(&health).await, ExitCode::SUCCESS);
}

#[tokio::test]
async fn a_silent_or_missing_service_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dp.sock");
    let missing: Target = format!("unix:{}", socket.display()).parse().unwrap();
    let answer = ask(&missing, &login("right"), Duration::from_secs(5)).await;
    assert!(
        matches!(&answer, Answer::Unavailable(r) if r.contains("connect")),
        "{answer:?}"
    );
    tokio::spawn(fake_service(socket.clone()));
    while !socket.exists() {
        tokio::task::yield_now().await;
    }
    let slow = Target {
        prefix: "/slow".into(),
        ..missing
    };
    let started = std::time::Instant::now();
    let answer = ask(&slow, &login("right"), Duration::from_millis(300)).await;
    assert!(
        matches!(&answer, Answer::Unavailable(r) if r.contains("no answer")),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

//! The self-service pages and token API without an identity provider:
//! sessions are written straight into the store (as a sign-in would),
//! so CSRF, ownership, admin rights and every form and API answer are
//! checked against the real binary. The sign-in itself, with a real
//! provider and browser, is in `selfservice`.

use std::path::Path;

use chrono::{TimeDelta, Utc};
use devicepass::oidc::Identity;
use devicepass::store::{self, DatabaseUrl, PoolOptions, SessionRecord, User};
use sha2::{Digest, Sha256};

use crate::support::{Reply, Server, basic, get_auth, request};

const COOKIE: &str = "devicepass";

/// A server whose provider is unreachable: sign-in is unavailable, but
/// sessions already in the database work.
fn server(dir: &Path, extra: &[(&str, &str)]) -> (Server, String) {
    let db = format!("sqlite:///{}/dp.db", dir.display());
    let port = crate::support::free_port();
    let mut env = vec![
        ("DP_DATABASE_URL", db.as_str()),
        ("DP_PUBLIC_URL", "http://127.0.0.1:9"),
        ("DP_COOKIE_SECURE", "false"),
        ("DP_OIDC_CLIENT_ID", "devicepass"),
        ("DP_ADMIN_GROUP", "admins"),
        ("DP_UI_LOGINS", "true"),
    ];
    let discovery = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
    env.push(("DP_OIDC_DISCOVERY_URL", discovery.as_str()));
    env.extend_from_slice(extra);
    (Server::start(dir, &env), db)
}

/// Write a signed-in session for `user`; returns (cookie value, CSRF token).
fn sign_in(db: &str, user: &User, is_admin: bool) -> (String, String) {
    sign_in_until(db, user, is_admin, Utc::now() + TimeDelta::hours(1), false)
}

/// A session whose ID token expires at `tokens_expire` (no refresh token).
fn sign_in_until(
    db: &str,
    user: &User,
    is_admin: bool,
    tokens_expire: chrono::DateTime<Utc>,
    refresh: bool,
) -> (String, String) {
    let cookie = format!(
        "{:0<43}",
        user.username
            .replace(|c: char| !c.is_ascii_alphanumeric(), "x")
    );
    let csrf = format!("csrf-of-{}", user.username);
    let identity = Identity {
        sub: user.sub.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        sid: Some(format!("sid-{}", user.sub)),
        is_admin,
        id_token: "unused".into(),
        refresh_token: refresh.then(|| "refresh-token".to_string()),
        expires_at: tokens_expire.timestamp(),
    };
    let data = serde_json::json!({ "identity": identity, "csrf": csrf }).to_string();
    let record = SessionRecord {
        id: hex::encode(Sha256::digest(cookie.as_bytes())),
        sub: Some(user.sub.clone()),
        sid: identity.sid.clone(),
        data,
        expires: Utc::now().naive_utc() + TimeDelta::hours(1),
    };
    let url = DatabaseUrl::parse(db).expect("url");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = store::open(&url, &PoolOptions::default()).expect("store");
        store.upsert_user(user).await.expect("user");
        store.put_session(&record).await.expect("session");
    });
    (cookie, csrf)
}

fn user(name: &str) -> User {
    User {
        sub: format!("sub-{name}"),
        username: name.into(),
        email: format!("{name}@example.org"),
    }
}

fn call(
    server: &Server,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let cookie_header = cookie.map(|c| format!("{COOKIE}={c}"));
    let mut all: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    if let Some(c) = &cookie_header {
        all.push(("Cookie", c.as_bytes()));
    }
    request(server.addr, method, path, &all, body)
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|_| panic!("not JSON: {}", text(reply)))
}

/// The status `/auth` answers for a login and password.
fn auth(server: &Server, login: &str, password: &str) -> u16 {
    get_auth(server.addr, "/auth", Some(&basic(login, password))).status
}

/// Whether `/api/ping` finds the session of `cookie` valid.
fn ping(server: &Server, cookie: &str) -> serde_json::Value {
    json(&call(server, "GET", "/api/ping", Some(cookie), &[], b""))["pong"].clone()
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// The value of `<code id="new-password">…</code>` and friends.
fn element_text(page: &str, id: &str) -> String {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let rest = &page[start..];
    let open = rest.find('>').expect(">") + 1;
    let close = rest.find('<').expect("<");
    rest[open..close].trim().to_string()
}

#[test]
fn pages_create_show_once_and_delete_with_csrf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, db) = server(dir.path(), &[]);
    let alice = user("alice");
    let (cookie, csrf) = sign_in(&db, &alice, false);

    let page = call(&server, "GET", "/", Some(&cookie), &[], b"");
    assert_eq!(page.status, 200, "{}", text(&page));
    let html = text(&page);
    assert!(html.contains("id=\"no-tokens\""));
    assert!(html.contains(&format!("<meta name=\"csrf-token\" content=\"{csrf}\">")));
    let csp = page.header_str("content-security-policy");
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("nonce");
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "script carries the CSP nonce"
    );

    // Without the CSRF field the form is refused and nothing is created.
    let refused = call(
        &server,
        "POST",
        "/tokens",
        Some(&cookie),
        &[FORM],
        b"name=Phone",
    );
    assert_eq!(refused.status, 403);
    assert!(text(&refused).contains("Request refused"));
    let wrong = call(
        &server,
        "POST",
        "/tokens",
        Some(&cookie),
        &[FORM],
        b"name=Phone&state=guess",
    );
    assert_eq!(wrong.status, 403);
    assert!(text(&call(&server, "GET", "/", Some(&cookie), &[], b"")).contains("id=\"no-tokens\""));

    let body = format!("name=Phone+mail&expires=&state={csrf}");
    let created = call(
        &server,
        "POST",
        "/tokens",
        Some(&cookie),
        &[FORM],
        body.as_bytes(),
    );
    assert_eq!(created.status, 200, "{}", text(&created));
    let html = text(&created);
    let password = element_text(&html, "new-password");
    let login = element_text(&html, "new-login");
    assert!(login.starts_with("alice#"), "{login}");
    assert_eq!(auth(&server, &login, &password), 200);

    // The list shows the token but never the password again.
    let list = text(&call(&server, "GET", "/", Some(&cookie), &[], b""));
    assert!(list.contains("Phone mail") && list.contains(&login));
    assert!(!list.contains(&password));
    let id = list
        .split("data-id=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("row id")
        .to_string();

    let path = format!("/tokens/{id}/delete");
    assert_eq!(
        call(&server, "POST", &path, Some(&cookie), &[FORM], b"").status,
        403
    );
    let deleted = call(
        &server,
        "POST",
        &path,
        Some(&cookie),
        &[FORM],
        format!("state={csrf}").as_bytes(),
    );
    assert_eq!(deleted.status, 303);
    assert_eq!(auth(&server, &login, &password), 401);
}

#[test]
fn form_errors_keep_the_name_and_explain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, db) = server(dir.path(), &[("DP_MAX_EXPIRATION_DAYS", "30")]);
    let (cookie, csrf) = sign_in(&db, &user("carol"), false);
    let far = (Utc::now() + TimeDelta::days(90)).date_naive();
    let body = format!("name=Laptop&expires={far}&state={csrf}");
    let reply = call(
        &server,
        "POST",
        "/tokens",
        Some(&cookie),
        &[FORM],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 400);
    let html = text(&reply);
    assert!(html.contains("at most 30 days"), "{html}");
    assert!(html.contains("value=\"Laptop\""));
    let body = format!("name=Laptop&expires=31.12.2030&state={csrf}");
    let reply = call(
        &server,
        "POST",
        "/tokens",
        Some(&cookie),
        &[FORM],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 400);
    assert!(text(&reply).contains("must be a date"));
    let body = format!("name=&state={csrf}");
    assert_eq!(
        call(
            &server,
            "POST",
            "/tokens",
            Some(&cookie),
            &[FORM],
            body.as_bytes()
        )
        .status,
        400
    );
    // Markup in a name is shown as text.
    let body = format!("name=%3Cscript%3Ex%3C%2Fscript%3E&state={csrf}");
    let reply = call(
        &server,
        "POST",
        "/tokens",
        Some(&cookie),
        &[FORM],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200);
    assert!(text(&reply).contains("&#60;script&#62;") || text(&reply).contains("&lt;script&gt;"));
}

#[test]
fn json_api_needs_csrf_and_keeps_users_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, db) = server(dir.path(), &[]);
    let (alice, alice_csrf) = sign_in(&db, &user("alice"), false);
    let (bob, bob_csrf) = sign_in(&db, &user("bob"), false);
    let (admin, admin_csrf) = sign_in(&db, &user("root"), true);

    assert_eq!(
        call(&server, "GET", "/api/v1/tokens", None, &[], b"").status,
        401
    );
    let no_csrf = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(&alice),
        &[JSON],
        br#"{"name":"x"}"#,
    );
    assert_eq!(no_csrf.status, 403);
    assert_eq!(json(&no_csrf)["error"], "csrf");
    let bob_token = ("X-CSRF-Token", bob_csrf.as_str());
    let crossed = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(&alice),
        &[JSON, bob_token],
        br#"{"name":"x"}"#,
    );
    assert_eq!(
        crossed.status, 403,
        "another session's CSRF token is refused"
    );

    let alice_token = ("X-CSRF-Token", alice_csrf.as_str());
    let created = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(&alice),
        &[JSON, alice_token],
        br#"{"name":"Tablet","expires":"2099-01-31"}"#,
    );
    assert_eq!(created.status, 201, "{}", text(&created));
    let created = json(&created);
    assert_eq!(created["expires"], "2099-01-31T00:00:00Z");
    let id = created["id"].as_str().expect("id").to_string();
    let (login, password) = (
        created["login"].as_str().expect("login"),
        created["password"].as_str().expect("pw"),
    );
    assert_eq!(auth(&server, login, password), 200);

    let mine = json(&call(
        &server,
        "GET",
        "/api/v1/tokens",
        Some(&alice),
        &[],
        b"",
    ));
    assert_eq!(mine["tokens"].as_array().expect("list").len(), 1);
    assert!(
        mine.to_string().find(password).is_none(),
        "listing never returns a password"
    );
    let bobs = json(&call(
        &server,
        "GET",
        "/api/v1/tokens",
        Some(&bob),
        &[],
        b"",
    ));
    assert_eq!(bobs["tokens"].as_array().expect("list").len(), 0);
    assert_eq!(
        call(
            &server,
            "GET",
            "/api/v1/tokens?all=true",
            Some(&bob),
            &[],
            b""
        )
        .status,
        403
    );
    let all = json(&call(
        &server,
        "GET",
        "/api/v1/tokens?all=true",
        Some(&admin),
        &[],
        b"",
    ));
    assert!(all.to_string().contains(&id));

    let path = format!("/api/v1/tokens/{id}");
    assert_eq!(
        call(&server, "DELETE", &path, Some(&bob), &[bob_token], b"").status,
        404
    );
    assert_eq!(auth(&server, login, password), 200);
    let admin_token = ("X-CSRF-Token", admin_csrf.as_str());
    assert_eq!(
        call(&server, "DELETE", &path, Some(&admin), &[], b"").status,
        403
    );
    assert_eq!(
        call(&server, "DELETE", &path, Some(&admin), &[admin_token], b"").status,
        204
    );
    assert_eq!(auth(&server, login, password), 401);
    assert_eq!(
        call(&server, "DELETE", &path, Some(&admin), &[admin_token], b"").status,
        404
    );
}

#[test]
fn python_form_api_answers_in_its_shapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, db) = server(dir.path(), &[("DP_MAX_EXPIRATION_DAYS", "10")]);
    let (cookie, csrf) = sign_in(&db, &user("dora"), false);
    assert_eq!(
        call(
            &server,
            "POST",
            "/api/tokens",
            Some(&cookie),
            &[FORM],
            b"name=Mail"
        )
        .status,
        403
    );
    let body = format!("name=Mail&expire=2099-01-01&state={csrf}");
    let reply = call(
        &server,
        "POST",
        "/api/tokens",
        Some(&cookie),
        &[FORM],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", text(&reply));
    let created = json(&reply);
    assert_eq!(created["status"], "ok");
    assert_eq!(created["name"], "Mail");
    let (login, secret) = (
        created["login"].as_str().expect("login"),
        created["secret"].as_str().expect("secret"),
    );
    assert_eq!(auth(&server, login, secret), 200);

    let list = json(&call(
        &server,
        "GET",
        "/api/tokens",
        Some(&cookie),
        &[],
        b"",
    ));
    let first = &list[0];
    let limit = (Utc::now() + TimeDelta::days(10)).date_naive();
    let expected = limit.format("%a, %d %b %Y 00:00:00 GMT").to_string();
    assert_eq!(
        first["expires"],
        expected.as_str(),
        "capped at the limit, written as Flask does"
    );
    let id = first["id"].as_str().expect("id");

    let body = format!("id=not-a-uuid&state={csrf}");
    assert_eq!(
        call(
            &server,
            "DELETE",
            "/api/tokens",
            Some(&cookie),
            &[FORM],
            body.as_bytes()
        )
        .status,
        400
    );
    let body = format!("id={id}&state={csrf}");
    let deleted = json(&call(
        &server,
        "DELETE",
        "/api/tokens",
        Some(&cookie),
        &[FORM],
        body.as_bytes(),
    ));
    assert_eq!(deleted["id"], id);
    assert_eq!(deleted["name"], "Mail");
    assert_eq!(auth(&server, login, secret), 401);
}

#[test]
fn sessions_end_by_logout_and_by_back_channel_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, db) = server(dir.path(), &[]);
    let erin = user("erin");
    let (cookie, csrf) = sign_in(&db, &erin, false);
    assert_eq!(ping(&server, &cookie), true);
    assert_eq!(
        call(&server, "POST", "/logout", Some(&cookie), &[FORM], b"").status,
        403
    );
    let out = call(
        &server,
        "POST",
        "/logout",
        Some(&cookie),
        &[FORM],
        format!("state={csrf}").as_bytes(),
    );
    assert_eq!(out.status, 303);
    assert!(out.header_str("set-cookie").contains("Max-Age=0"));
    assert_eq!(ping(&server, &cookie), false);

    // A sid revoked by the provider (as the Python project records it)
    // ends a session on its next request.
    let (cookie, _) = sign_in(&db, &erin, false);
    assert_eq!(ping(&server, &cookie), true);
    let url = DatabaseUrl::parse(&db).expect("url");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let store = store::open(&url, &PoolOptions::default()).expect("store");
            store
                .end_idp_session(Some("sid-sub-erin"), None)
                .await
                .expect("end");
        });
    assert_eq!(ping(&server, &cookie), false);
}

#[test]
fn bad_requests_get_clear_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, db) = server(dir.path(), &[("DP_HSTS", "365d")]);
    let (cookie, csrf) = sign_in(&db, &user("frank"), false);
    let csrf_header = ("X-CSRF-Token", csrf.as_str());

    // Signed out, provider unreachable: the page says so, with the request id.
    let page = call(&server, "GET", "/", None, &[], b"");
    assert_eq!(page.status, 503);
    let html = text(&page);
    assert!(html.contains("<h1>Sign-in unavailable</h1>"));
    assert!(html.contains(&page.header_str("x-request-id")));
    assert_eq!(
        page.header_str("strict-transport-security"),
        "max-age=31536000"
    );
    assert_eq!(call(&server, "GET", "/login", None, &[], b"").status, 503);

    let garbage = call(
        &server,
        "GET",
        "/api/ping",
        None,
        &[("Cookie", "devicepass=%%%; ;;=")],
        b"",
    );
    assert_eq!(garbage.status, 200);
    let bearer = call(
        &server,
        "GET",
        "/api/v1/tokens",
        None,
        &[("Authorization", "Bearer not.a.jwt")],
        b"",
    );
    assert!(matches!(bearer.status, 401 | 503), "{}", text(&bearer));
    let basic_auth = call(
        &server,
        "GET",
        "/api/v1/tokens",
        None,
        &[("Authorization", "Basic eDp5")],
        b"",
    );
    assert_eq!(basic_auth.status, 401);
    let put = call(&server, "PUT", "/api/v1/tokens", Some(&cookie), &[], b"");
    assert_eq!(put.status, 405);
    assert_eq!(put.header_str("allow"), "GET, POST");
    let form = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(&cookie),
        &[FORM, csrf_header],
        b"name=x",
    );
    assert_eq!(form.status, 415);
    let bad = call(
        &server,
        "POST",
        "/api/v1/tokens",
        Some(&cookie),
        &[JSON, csrf_header],
        b"{\"name\":",
    );
    assert_eq!(bad.status, 400);
    assert!(
        json(&bad)["message"]
            .as_str()
            .expect("message")
            .contains("name")
    );
    let big = vec![b'a'; 64 * 1024];
    assert_eq!(
        call(
            &server,
            "POST",
            "/api/v1/tokens",
            Some(&cookie),
            &[JSON, csrf_header],
            &big
        )
        .status,
        413
    );
    assert_eq!(
        call(
            &server,
            "DELETE",
            "/api/v1/tokens/nope",
            Some(&cookie),
            &[csrf_header],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        call(
            &server,
            "POST",
            "/tokens/nope/delete",
            Some(&cookie),
            &[FORM],
            b""
        )
        .status,
        404
    );
    let back = call(
        &server,
        "POST",
        "/api/logout-backchannel",
        None,
        &[FORM],
        b"nothing=here",
    );
    assert_eq!(back.status, 400);
    let front = call(
        &server,
        "GET",
        "/api/logout-frontchannel?iss=https://evil.example&sid=x",
        None,
        &[],
        b"",
    );
    assert_eq!(front.status, 400);
    let unknown = call(&server, "GET", "/api/v2/whatever", None, &[], b"");
    assert_eq!(unknown.status, 404);
    assert_eq!(json(&unknown)["error"], "not_found");
    let legacy_json = call(
        &server,
        "POST",
        "/api/tokens",
        Some(&cookie),
        &[JSON, csrf_header],
        br#"{"name":"x"}"#,
    );
    assert_eq!(legacy_json.status, 415, "the Python API takes forms");
    let log = server.log_text();
    for secret in [cookie.as_str(), csrf.as_str(), "not.a.jwt"] {
        assert!(!log.contains(secret), "the log holds a secret: {log}");
    }
}

#[test]
fn verification_only_mode_serves_no_sign_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:///{}/dp.db", dir.path().display());
    let server = Server::start(dir.path(), &[("DP_DATABASE_URL", db.as_str())]);
    let page = call(&server, "GET", "/", None, &[], b"");
    assert_eq!(page.status, 404);
    assert!(text(&page).contains("Sign-in is not configured"));
    let api = call(&server, "GET", "/api/v1/tokens", None, &[], b"");
    assert_eq!(api.status, 404);
    assert_eq!(json(&api)["error"], "not_configured");
    let spec = json(&call(&server, "GET", "/api/openapi.json", None, &[], b""));
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/tokens",
        "/api/logout-backchannel",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    let js = call(&server, "GET", "/static/app.js", None, &[], b"");
    assert_eq!(
        js.header_str("content-type"),
        "text/javascript; charset=utf-8"
    );
}

#[test]
fn page_settings_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, db) = server(
        dir.path(),
        &[
            ("DP_UI_LOGINS", "false"),
            ("DP_UI_HEADING", "Mail passwords"),
            ("DP_UI_HEADING_SUB", "Example Corp"),
            ("DP_UI_SHOW_SUBJECT", "false"),
            ("DP_UI_SHOW_LAST_USED", "false"),
        ],
    );
    let grace = user("grace");
    let (cookie, csrf) = sign_in(&db, &grace, false);
    let body = format!("name=Phone&state={csrf}");
    let created = text(&call(
        &server,
        "POST",
        "/tokens",
        Some(&cookie),
        &[FORM],
        body.as_bytes(),
    ));
    assert!(
        created.contains("<h1>Mail passwords <small>Example Corp</small></h1>"),
        "{created}"
    );
    assert!(!created.contains(&grace.sub), "subject hidden");
    assert!(!created.contains("Last used"));
    assert!(!created.contains(">Login</th>"));
    // The new password's own login is shown even when the list hides
    // logins: a username login tries only a user's recent few tokens.
    let login = element_text(&created, "new-login");
    assert!(login.starts_with("grace#"), "{login}");
    let password = element_text(&created, "new-password");
    assert_eq!(auth(&server, &login, &password), 200);
}

#[test]
fn expired_sessions_end_and_unannounced_front_channel_logout_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, db) = server(dir.path(), &[]);
    let henry = user("henry");
    // Tokens expired and no refresh token: the session is over.
    let expired = Utc::now() - TimeDelta::minutes(1);
    let (stale, _) = sign_in_until(&db, &henry, false, expired, false);
    assert_eq!(ping(&server, &stale), false);
    assert_eq!(
        call(&server, "GET", "/api/v1/tokens", Some(&stale), &[], b"").status,
        401
    );

    // With a refresh token but the provider unreachable, a session lives
    // on for an hour past its tokens' expiry, then ends.
    let ida = user("ida");
    let (recent, _) = sign_in_until(&db, &ida, false, Utc::now() - TimeDelta::minutes(5), true);
    assert_eq!(ping(&server, &recent), true);
    let (old, _) = sign_in_until(&db, &ida, false, Utc::now() - TimeDelta::minutes(61), true);
    assert_eq!(ping(&server, &old), false);

    let (cookie, _) = sign_in(&db, &henry, false);
    assert_eq!(ping(&server, &cookie), true);
    // Front-channel logout is unauthenticated: it is refused unless the
    // provider announces it (this one was never discovered), and the
    // session stays.
    let front = call(
        &server,
        "GET",
        "/api/logout-frontchannel?iss=http://127.0.0.1:9&sid=sid-sub-henry",
        None,
        &[],
        b"",
    );
    assert_eq!(front.status, 400);
    assert_eq!(ping(&server, &cookie), true);
}

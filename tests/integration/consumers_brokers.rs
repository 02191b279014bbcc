//! `/integrations/…`: the endpoints for FreeRADIUS `rlm_rest`, RabbitMQ,
//! EMQX 5 and mosquitto-go-auth, first over plain HTTP (every answer and
//! failure mode), then behind a real FreeRADIUS and a real RabbitMQ node
//! started here on loopback.
//!
//! A missing server program skips its test with a note, or fails it
//! naming the Debian package when `DEVICEPASS_TEST_REQUIRE_SERVERS=1`.
#![allow(clippy::disallowed_methods)] // tests read their own environment

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{self, Reply, Server, basic, free_port, request};

/// A devicepass with one user (`alice`) and one device password.
struct Setup {
    server: Server,
    login: String,
    password: String,
    _dir: tempfile::TempDir,
}

fn setup(extra: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    support::add_user(&url, "alice", "alice@example.org");
    let (_, login, password) = support::create_token(&url, "alice", &[]);
    let mut env = vec![("DP_DATABASE_URL", url.as_str()), ("DP_LOG_FORMAT", "json")];
    env.extend_from_slice(extra);
    let server = Server::start(dir.path(), &env);
    Setup {
        server,
        login,
        password,
        _dir: dir,
    }
}

/// A devicepass whose database never answers: every check is "cannot
/// decide" (no server listens on port 1).
fn setup_without_database() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("DP_DATABASE_URL", "postgresql://dp:dp@127.0.0.1:1/dp"),
        ("DP_AUTO_MIGRATE", "false"),
        ("DP_STORE_TIMEOUT", "2s"),
        ("DP_DATABASE_CONNECT_TIMEOUT", "1s"),
    ];
    (Server::start(dir.path(), &env), dir)
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn post_form(addr: SocketAddr, path: &str, pairs: &[(&str, &str)]) -> Reply {
    let form = b"application/x-www-form-urlencoded";
    let body = form_body(pairs);
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", form)],
        body.as_bytes(),
    )
}

fn get_query(addr: SocketAddr, path: &str, pairs: &[(&str, &str)]) -> Reply {
    let target = format!("{path}?{}", form_body(pairs));
    request(addr, "GET", &target, &[], b"")
}

fn post_json(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    let kind = b"application/json";
    request(addr, "POST", path, &[("Content-Type", kind)], body)
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).expect("JSON body")
}

fn radius(addr: SocketAddr, authorization: Option<&str>) -> Reply {
    crate::support::get_auth(addr, "/integrations/radius", authorization)
}

#[test]
fn radius_answers_204_or_an_empty_401() {
    let s = setup(&[]);
    let addr = s.server.addr;

    let ok = radius(addr, Some(&basic(&s.login, &s.password)));
    assert_eq!((ok.status, ok.body.as_slice()), (204, &b""[..]));
    let by_email = radius(addr, Some(&basic("alice@example.org", &s.password)));
    assert_eq!(by_email.status, 204, "username or email works too");
    let post = request(
        addr,
        "POST",
        "/integrations/radius",
        &[("Authorization", basic(&s.login, &s.password).as_bytes())],
        b"User-Name=ignored",
    );
    assert_eq!(post.status, 204, "rlm_rest may POST");

    let wrong = radius(addr, Some(&basic(&s.login, "not-it")));
    let unknown = radius(addr, Some(&basic("mallory", &s.password)));
    for no in [&wrong, &unknown] {
        assert_eq!(no.status, 401);
        assert!(no.body.is_empty(), "rlm_rest fails on an HTML body");
    }
    assert_eq!(wrong.headers.len(), unknown.headers.len());
    for malformed in [None, Some("Basic !!!"), Some("Bearer abc")] {
        let reply = radius(addr, malformed);
        assert_eq!((reply.status, reply.body.len()), (401, 0), "{malformed:?}");
    }
}

#[test]
fn rabbitmq_user_path_says_allow_or_deny_with_200() {
    let s = setup(&[]);
    let (addr, path) = (s.server.addr, "/integrations/rabbitmq/user");
    let good = [("username", s.login.as_str()), ("password", &s.password)];

    // Exactly the word: RabbitMQ strips spaces but not newlines.
    assert_eq!(get_query(addr, path, &good).body, b"allow");
    let posted = post_form(addr, path, &good);
    assert_eq!(
        (posted.status, posted.body.as_slice()),
        (200, &b"allow"[..])
    );
    let extra = [("vhost", "/"), ("client_id", "x"), ("password", "second")];
    let with_extra = [&good[..], &extra[..]].concat();
    assert_eq!(post_form(addr, path, &with_extra).body, b"allow");

    let denials: [&[(&str, &str)]; 5] = [
        &[("username", &s.login), ("password", "not-it")],
        &[("username", "mallory"), ("password", &s.password)],
        &[("username", &s.login)],
        &[("username", &s.login), ("password", "")],
        &[],
    ];
    for fields in denials {
        let reply = post_form(addr, path, fields);
        assert_eq!((reply.status, reply.body.as_slice()), (200, &b"deny"[..]));
        assert_eq!(get_query(addr, path, fields).body, b"deny");
    }
    let log = s.server.log_text();
    assert!(
        log.contains(r#""service":"rabbitmq""#),
        "service named: {log}"
    );
    assert!(!log.contains(&s.password), "password in log");
}

#[test]
fn rabbitmq_authorization_paths_allow_any_named_user() {
    let s = setup(&[]);
    let addr = s.server.addr;
    for what in ["vhost", "resource", "topic"] {
        let path = format!("/integrations/rabbitmq/{what}");
        let asked = [
            ("username", "alice#042"),
            ("vhost", "/"),
            ("resource", "queue"),
            ("name", "q"),
            ("permission", "configure"),
            ("tags", ""),
        ];
        assert_eq!(post_form(addr, &path, &asked).body, b"allow", "{what}");
        assert_eq!(get_query(addr, &path, &asked).body, b"allow", "{what}");
        // No lookup: an unknown name is allowed too, so these paths tell
        // nobody which usernames exist. Only /user lets anyone in.
        let unknown = [("username", "nobody-at-all")];
        assert_eq!(post_form(addr, &path, &unknown).body, b"allow", "{what}");
        for fields in [&[][..], &[("username", "")], &[("username", "a\nb")]] {
            let reply = post_form(addr, &path, fields);
            assert_eq!((reply.status, reply.body.as_slice()), (200, &b"deny"[..]));
        }
    }
}

#[test]
fn emqx_hears_every_no_as_200_deny() {
    let s = setup(&[]);
    let (addr, path) = (s.server.addr, "/integrations/emqx");
    let good = json!({"username": s.login, "password": s.password, "clientid": "c1"});

    let ok = post_json(addr, path, good.to_string().as_bytes());
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header_str("Content-Type"), "application/json");
    assert_eq!(
        json_of(&ok),
        json!({"result": "allow", "is_superuser": false})
    );
    let form = [("username", s.login.as_str()), ("password", &s.password)];
    assert_eq!(json_of(&post_form(addr, path, &form))["result"], "allow");
    assert_eq!(json_of(&get_query(addr, path, &form))["result"], "allow");

    let wrong = json!({"username": s.login, "password": "not-it"}).to_string();
    let unknown = json!({"username": "mallory", "password": s.password}).to_string();
    let bodies = [
        wrong.as_str(),
        &unknown,
        r#"{"username":"alice"}"#,
        r#"{"username":42,"password":"x"}"#,
        "not json",
        "[]",
    ];
    for body in bodies {
        let no = post_json(addr, path, body.as_bytes());
        assert_eq!(
            no.status, 200,
            "never 401: EMQX reads it as ignore ({body})"
        );
        assert_eq!(json_of(&no), json!({"result": "deny"}), "{body}");
    }
    let log = s.server.log_text();
    assert!(log.contains(r#""service":"emqx""#), "service named: {log}");
    assert!(!log.contains(&s.password), "password in log");
}

#[test]
fn mosquitto_go_auth_user_superuser_and_acl() {
    let s = setup(&[]);
    let addr = s.server.addr;
    let user = "/integrations/mosquitto/user";
    let good = json!({"username": s.login, "password": s.password, "clientid": "c"});

    let ok = post_json(addr, user, good.to_string().as_bytes());
    assert_eq!(ok.status, 200);
    assert_eq!(json_of(&ok), json!({"ok": true, "error": ""}));
    let form = [
        ("username", "alice"),
        ("password", &s.password),
        ("clientid", "c"),
    ];
    assert_eq!(post_form(addr, user, &form).status, 200, "params mode form");

    let wrong = json!({"username": s.login, "password": "nope", "clientid": "c"});
    let unknown = json!({"username": "mallory", "password": s.password});
    for body in [wrong.to_string(), unknown.to_string(), "{}".into()] {
        let no = post_json(addr, user, body.as_bytes());
        assert_eq!(no.status, 401, "{body}");
        assert_eq!(json_of(&no)["ok"], false, "{body}");
    }

    let superuser = "/integrations/mosquitto/superuser";
    let asked = json!({"username": s.login}).to_string();
    assert_eq!(post_json(addr, superuser, asked.as_bytes()).status, 401);
    assert_eq!(
        post_json(addr, superuser, good.to_string().as_bytes()).status,
        401
    );

    let acl = "/integrations/mosquitto/acl";
    let check = json!({"username": s.login, "clientid": "c", "topic": "a/b", "acc": 2});
    assert_eq!(
        post_json(addr, acl, check.to_string().as_bytes()).status,
        200
    );
    let anonymous = json!({"username": "", "clientid": "c", "topic": "a/b", "acc": 1});
    assert_eq!(
        post_json(addr, acl, anonymous.to_string().as_bytes()).status,
        401
    );
    let log = s.server.log_text();
    assert!(
        log.contains(r#""service":"mosquitto""#),
        "service named: {log}"
    );
}

#[test]
fn integrations_refuse_big_bodies_other_methods_and_unknown_paths() {
    let s = setup(&[]);
    let addr = s.server.addr;
    let big = format!(
        r#"{{"username":"alice","password":"{}"}}"#,
        "x".repeat(17_000)
    );
    for path in ["/integrations/emqx", "/integrations/mosquitto/user"] {
        let reply = post_json(addr, path, big.as_bytes());
        assert_eq!(reply.status, 413, "{path}");
        assert_eq!(json_of(&reply)["ok"], false, "{path}");
    }
    let long_form = form_body(&[("username", "alice"), ("password", &"x".repeat(17_000))]);
    let form = b"application/x-www-form-urlencoded";
    let path = "/integrations/rabbitmq/user";
    let reply = request(
        addr,
        "POST",
        path,
        &[("Content-Type", form)],
        long_form.as_bytes(),
    );
    assert_eq!(reply.status, 413);

    let deleted = request(addr, "DELETE", "/integrations/emqx", &[], b"");
    assert_eq!(deleted.status, 405);
    assert_eq!(deleted.header_str("Allow"), "GET, POST, PUT");
    for path in [
        "/integrations/",
        "/integrations/rabbitmq",
        "/integrations/emqx/x",
    ] {
        assert_eq!(request(addr, "GET", path, &[], b"").status, 404, "{path}");
    }
}

#[test]
fn integrations_answer_503_when_devicepass_cannot_decide() {
    let (server, _dir) = setup_without_database();
    let addr = server.addr;
    let pair = [("username", "alice"), ("password", "pw")];
    let pair_json = br#"{"username":"alice","password":"pw"}"#;
    let replies = [
        ("radius", radius(addr, Some(&basic("alice", "pw")))),
        (
            "rabbitmq",
            post_form(addr, "/integrations/rabbitmq/user", &pair),
        ),
        ("emqx", post_json(addr, "/integrations/emqx", pair_json)),
        (
            "mosquitto",
            post_json(addr, "/integrations/mosquitto/user", pair_json),
        ),
    ];
    for (who, reply) in &replies {
        assert_eq!(reply.status, 503, "{who}: never a yes or a no");
        assert_eq!(reply.header_str("Retry-After"), "1", "{who}");
        let body = String::from_utf8_lossy(&reply.body);
        assert!(
            !body.contains('<') && !body.contains("postgres"),
            "{who}: {body}"
        );
    }
    // The policy paths need no database and keep answering.
    let named = [("username", "alice")];
    let vhost = post_form(addr, "/integrations/rabbitmq/vhost", &named);
    assert_eq!(vhost.body, b"allow");
}

// ---- FreeRADIUS ------------------------------------------------------

/// The path of a program, or `None` (test skipped) when it is missing and
/// the servers are not required.
fn program(path: &str, package: &str) -> Option<PathBuf> {
    if Path::new(path).exists() {
        return Some(PathBuf::from(path));
    }
    let required = std::env::var("DEVICEPASS_TEST_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{path} not found: install the Debian package {package}"
    );
    eprintln!("skipped: {path} not found (Debian package {package})");
    None
}

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private FreeRADIUS configuration: the shipped module and policy
/// from deploy/freeradius, pointed at `devicepass`, in a minimal server.
fn radius_config(dir: &Path, devicepass: SocketAddr, port: u16) -> PathBuf {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/freeradius");
    let conf = dir.join("raddb");
    for sub in ["log", "run"] {
        std::fs::create_dir_all(conf.join(sub)).expect("raddb dirs");
    }
    let module = std::fs::read_to_string(deploy.join("mods-available/devicepass"))
        .expect("deploy module")
        .replace("http://127.0.0.1:8080", &format!("http://{devicepass}"));
    std::fs::write(conf.join("devicepass-module"), module).expect("module");
    let policy = deploy.join("policy.d/devicepass");
    std::fs::copy(policy, conf.join("devicepass-policy")).expect("policy");
    // The stock dictionary, if any: it only $INCLUDEs the shipped ones.
    let stock = Path::new("/etc/freeradius/3.0/dictionary");
    if std::fs::copy(stock, conf.join("dictionary")).is_err() {
        std::fs::write(conf.join("dictionary"), "").expect("dictionary");
    }
    let text = RADIUSD_CONF
        .replace("@DIR@", &conf.display().to_string())
        .replace("@PORT@", &port.to_string());
    std::fs::write(conf.join("radiusd.conf"), text).expect("radiusd.conf");
    conf
}

/// No `user`/`group`: run as whoever runs the tests (root included), with
/// every path in the temp dir and only the auth listener, on loopback.
const RADIUSD_CONF: &str = r#"
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = @DIR@
confdir = @DIR@
logdir = @DIR@/log
run_dir = @DIR@/run
db_dir = @DIR@
radacctdir = @DIR@/log
modconfdir = @DIR@/mods-config
certdir = @DIR@/certs
cadir = @DIR@/certs
libdir = /usr/lib/freeradius
name = freeradius
pidfile = @DIR@/run/freeradius.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {
    destination = files
    file = @DIR@/log/radius.log
    auth = yes
}
security {
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}
thread pool {
    start_servers = 1
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 2
    max_requests_per_server = 0
}
client loopback {
    ipaddr = 127.0.0.1
    secret = dp-radius-secret
}
modules {
    $INCLUDE @DIR@/devicepass-module
}
policy {
    $INCLUDE @DIR@/devicepass-policy
}
server default {
    listen {
        type = auth
        ipaddr = 127.0.0.1
        port = @PORT@
    }
    authorize {
        devicepass_authorize
    }
    authenticate {
        Auth-Type devicepass {
            devicepass
        }
    }
}
"#;

fn start_freeradius(binary: &Path, conf: &Path, log: &Path) -> Killed {
    let out = std::fs::File::create(log).expect("freeradius log");
    let child = Command::new(binary)
        .args(["-X", "-d", &conf.display().to_string()])
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("start freeradius");
    let mut radius = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Ready to process requests") {
            return radius;
        }
        if let Ok(Some(status)) = radius.0.try_wait() {
            panic!("freeradius exited with {status}: {text}");
        }
        assert!(
            Instant::now() < deadline,
            "freeradius did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `radtest`'s reply line: "Access-Accept" or "Access-Reject".
fn radtest(binary: &Path, port: u16, user: &str, password: &str) -> String {
    let server = format!("127.0.0.1:{port}");
    let out = Command::new(binary)
        .args([user, password, &server, "0", "dp-radius-secret"])
        .output()
        .expect("run radtest");
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text.lines().find(|l| l.starts_with("Received"));
    match received.and_then(|l| l.split_whitespace().nth(1)) {
        Some(kind) => kind.to_owned(),
        None => panic!("no reply from freeradius: {text}"),
    }
}

#[test]
fn freeradius_rlm_rest_accepts_device_passwords() {
    let Some(freeradius) = program("/usr/sbin/freeradius", "freeradius") else {
        return;
    };
    let Some(radtest_bin) = program("/usr/bin/radtest", "freeradius-utils") else {
        return;
    };
    let rest = "/usr/lib/freeradius/rlm_rest.so";
    if program(rest, "freeradius-rest").is_none() {
        return;
    }
    let s = setup(&[]);
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = radius_config(dir.path(), s.server.addr, port);
    let log = dir.path().join("freeradius.log");
    let _radius = start_freeradius(&freeradius, &conf, &log);

    let check = |user: &str, password: &str| radtest(&radtest_bin, port, user, password);
    assert_eq!(check(&s.login, &s.password), "Access-Accept");
    assert_eq!(check("alice", &s.password), "Access-Accept", "by username");
    assert_eq!(check(&s.login, "not-it"), "Access-Reject");
    assert_eq!(check("mallory", &s.password), "Access-Reject");
    let radius_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        radius_log.contains("Status : 401"),
        "401 decoded: {radius_log}"
    );
    assert!(!radius_log.contains("Failed to parse"), "{radius_log}");

    // devicepass gone: rlm_rest fails, and a failure is a reject.
    s.server.terminate();
    assert_eq!(check(&s.login, &s.password), "Access-Reject");
}

// ---- RabbitMQ --------------------------------------------------------

const RABBIT_BIN: &str = "/usr/lib/rabbitmq/bin";

/// A private RabbitMQ node: its own ports, epmd, cookie and data, all in
/// a temp dir and on loopback. Stopped with `rabbitmqctl stop`, and its
/// epmd killed, on drop.
struct Rabbit {
    env: Vec<(String, String)>,
    amqp: SocketAddr,
    management: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Rabbit {
    fn start(dir: &Path, devicepass: SocketAddr) -> Rabbit {
        let (amqp, management) = (free_port(), free_port());
        std::fs::create_dir_all(dir.join("home")).expect("home");
        let dp = format!("http://{devicepass}/integrations/rabbitmq");
        let conf = format!(
            "listeners.tcp.default = 127.0.0.1:{amqp}\n\
             management.tcp.ip = 127.0.0.1\n\
             management.tcp.port = {management}\n\
             loopback_users = none\n\
             auth_backends.1 = http\n\
             auth_http.http_method = post\n\
             auth_http.user_path = {dp}/user\n\
             auth_http.vhost_path = {dp}/vhost\n\
             auth_http.resource_path = {dp}/resource\n\
             auth_http.topic_path = {dp}/topic\n"
        );
        std::fs::write(dir.join("rabbitmq.conf"), conf).expect("rabbitmq.conf");
        let plugins = "[rabbitmq_management,rabbitmq_auth_backend_http].\n";
        std::fs::write(dir.join("enabled_plugins"), plugins).expect("plugins");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("env file");
        let env = rabbit_env(dir, amqp);
        let log = std::fs::File::create(dir.join("server.out")).expect("log");
        let child = Command::new(Path::new(RABBIT_BIN).join("rabbitmq-server"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("start rabbitmq-server");
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let mut rabbit = Rabbit {
            env,
            amqp: at(amqp),
            management: at(management),
            child,
            dir: dir.to_path_buf(),
        };
        rabbit.wait_ready();
        rabbit
    }

    /// Up when both listeners accept (AMQP opens at the very end of the
    /// boot). A first boot takes tens of seconds.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let up = |addr| TcpStream::connect(addr).is_ok();
        while !(up(self.amqp) && up(self.management)) {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.out"));
                panic!("rabbitmq did not start: {}", log.unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(Path::new(RABBIT_BIN).join("rabbitmqctl"))
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run rabbitmqctl")
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Our epmd (on our port, see rabbit_env) outlives the node.
        let _ = Command::new("epmd")
            .arg("-kill")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output();
    }
}

/// Everything the node and rabbitmqctl need, nothing from the caller's
/// environment but PATH; distribution and epmd bound to 127.0.0.1.
fn rabbit_env(dir: &Path, amqp: u16) -> Vec<(String, String)> {
    let d = |name: &str| dir.join(name).display().to_string();
    let loopback = "-kernel inet_dist_use_interface {127,0,0,1}";
    let ctl = free_port().to_string();
    let vars = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("LANG", "C.UTF-8".into()),
        ("HOME", d("home")),
        ("RABBITMQ_NODENAME", "dp-test@localhost".into()),
        ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
        ("RABBITMQ_NODE_PORT", amqp.to_string()),
        ("RABBITMQ_DIST_PORT", free_port().to_string()),
        ("RABBITMQ_CTL_DIST_PORT_MIN", ctl.clone()),
        ("RABBITMQ_CTL_DIST_PORT_MAX", ctl),
        ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
        ("ERL_EPMD_PORT", free_port().to_string()),
        ("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", loopback.into()),
        ("RABBITMQ_CTL_ERL_ARGS", loopback.into()),
        ("RABBITMQ_MNESIA_BASE", d("mnesia")),
        ("RABBITMQ_LOG_BASE", d("log")),
        ("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf")),
        ("RABBITMQ_ADVANCED_CONFIG_FILE", d("advanced.config")),
        ("RABBITMQ_CONF_ENV_FILE", d("rabbitmq-env.conf")),
        ("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins")),
        ("RABBITMQ_PID_FILE", d("rabbitmq.pid")),
        // The start script then execs the VM instead of forking it, so the
        // child we hold (and kill, if all else fails) is the node itself.
        ("RUNNING_UNDER_SYSTEMD", "true".into()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn whoami(addr: SocketAddr, user: &str, password: &str) -> Reply {
    let auth = basic(user, password);
    let headers = [("Authorization", auth.as_bytes())];
    request(addr, "GET", "/api/whoami", &headers, b"")
}

#[test]
fn rabbitmq_logs_in_with_device_passwords() {
    let Some(_) = program(&format!("{RABBIT_BIN}/rabbitmq-server"), "rabbitmq-server") else {
        return;
    };
    let s = setup(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rabbit = Rabbit::start(dir.path(), s.server.addr);

    let mut conn = match amqp::open(rabbit.amqp, &s.login, &s.password, "/") {
        Ok(conn) => conn,
        Err(e) => panic!("device password refused: {e}"),
    };
    amqp::declare_queue(&mut conn, "dp-test-queue");
    amqp::close(&mut conn);
    let by_email = amqp::open(rabbit.amqp, "alice@example.org", &s.password, "/");
    assert!(by_email.is_ok(), "email login");

    for (user, password) in [(s.login.as_str(), "not-it"), ("mallory", &s.password)] {
        match amqp::open(rabbit.amqp, user, password, "/") {
            Ok(_) => panic!("{user} with a wrong password got in"),
            Err(e) => assert!(e.contains("Some(403)"), "refused as ACCESS_REFUSED: {e}"),
        }
    }

    // The management API checks the password with devicepass too, then
    // refuses: device-password users have no tags (no administration).
    let right = whoami(rabbit.management, &s.login, &s.password);
    let wrong = whoami(rabbit.management, &s.login, "not-it");
    assert_eq!((right.status, wrong.status), (401, 401));
    let reason = String::from_utf8_lossy(&right.body);
    assert!(reason.contains("Not management user"), "{reason}");

    let log = s.server.log_text();
    assert!(log.contains(r#""service":"rabbitmq""#), "{log}");
    assert!(log.contains("access granted") && log.contains("access denied"));
    drop(rabbit);
}

/// Just enough AMQP 0-9-1 to log in with PLAIN, open a vhost and declare
/// a queue: each step asks devicepass a different question.
mod amqp {
    use super::*;

    const FRAME_END: u8 = 0xCE;

    pub fn open(
        addr: SocketAddr,
        user: &str,
        password: &str,
        vhost: &str,
    ) -> Result<TcpStream, String> {
        let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"AMQP\x00\x00\x09\x01")
            .map_err(|e| e.to_string())?;
        expect(&mut s, (10, 10))?; // connection.start
        send(&mut s, 0, (10, 11), &start_ok(user, password));
        let tune = expect(&mut s, (10, 30))?;
        // tune-ok: the server's channel-max and frame-max, no heartbeats.
        let mut tune_ok = tune[..6].to_vec();
        tune_ok.extend_from_slice(&[0, 0]);
        send(&mut s, 0, (10, 31), &tune_ok);
        let mut open = Vec::new();
        shortstr(&mut open, vhost);
        shortstr(&mut open, "");
        open.push(0);
        send(&mut s, 0, (10, 40), &open);
        expect(&mut s, (10, 41))?;
        Ok(s)
    }

    pub fn declare_queue(s: &mut TcpStream, name: &str) {
        send(s, 1, (20, 10), &[0]); // channel.open, empty reserved shortstr
        expect(s, (20, 11)).expect("channel.open-ok");
        let mut declare = vec![0, 0];
        shortstr(&mut declare, name);
        declare.push(0b0000_1000); // auto-delete
        declare.extend_from_slice(&0u32.to_be_bytes());
        send(s, 1, (50, 10), &declare);
        expect(s, (50, 11)).expect("queue.declare-ok");
    }

    pub fn close(s: &mut TcpStream) {
        let mut args = 200u16.to_be_bytes().to_vec();
        shortstr(&mut args, "bye");
        args.extend_from_slice(&[0, 0, 0, 0]);
        send(s, 0, (10, 50), &args);
        expect(s, (10, 51)).expect("connection.close-ok");
    }

    /// PLAIN credentials, and the capability that makes RabbitMQ explain
    /// a refused login with connection.close 403 instead of hanging up.
    fn start_ok(user: &str, password: &str) -> Vec<u8> {
        let mut caps = Vec::new();
        shortstr(&mut caps, "authentication_failure_close");
        caps.extend_from_slice(&[b't', 1]);
        let mut props = Vec::new();
        shortstr(&mut props, "capabilities");
        props.push(b'F');
        longstr(&mut props, &caps);
        let mut args = Vec::new();
        longstr(&mut args, &props);
        shortstr(&mut args, "PLAIN");
        longstr(&mut args, format!("\0{user}\0{password}").as_bytes());
        shortstr(&mut args, "en_US");
        args
    }

    fn shortstr(out: &mut Vec<u8>, text: &str) {
        out.push(u8::try_from(text.len()).expect("short string"));
        out.extend_from_slice(text.as_bytes());
    }

    fn longstr(out: &mut Vec<u8>, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("long string");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
    }

    fn send(s: &mut TcpStream, channel: u16, (class, method): (u16, u16), args: &[u8]) {
        let size = u32::try_from(args.len() + 4).expect("frame size");
        let mut frame = vec![1];
        frame.extend_from_slice(&channel.to_be_bytes());
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&class.to_be_bytes());
        frame.extend_from_slice(&method.to_be_bytes());
        frame.extend_from_slice(args);
        frame.push(FRAME_END);
        s.write_all(&frame).expect("send AMQP frame");
    }

    /// The arguments of the next method, if it is `want`; a close
    /// (with its reply code) or a hang-up is the error.
    fn expect(s: &mut TcpStream, want: (u16, u16)) -> Result<Vec<u8>, String> {
        loop {
            let mut head = [0u8; 7];
            if s.read_exact(&mut head).is_err() {
                return Err(format!("connection closed while waiting for {want:?}"));
            }
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
            let mut payload = vec![0u8; size as usize + 1];
            s.read_exact(&mut payload).map_err(|e| e.to_string())?;
            if head[0] != 1 {
                continue; // a heartbeat or content frame: not a method
            }
            let class = u16::from_be_bytes([payload[0], payload[1]]);
            let method = u16::from_be_bytes([payload[2], payload[3]]);
            let args = payload[4..payload.len() - 1].to_vec();
            if (class, method) == want {
                return Ok(args);
            }
            let code = args.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            return Err(format!(
                "got {class}.{method} (code {code:?}), not {want:?}"
            ));
        }
    }
}

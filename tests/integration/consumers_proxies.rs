//! Reverse proxies in front of an application, asking devicepass: the
//! real Caddy, nginx and HAProxy, started here on loopback with the
//! configurations shipped in `deploy/`, in front of a stand-in
//! application that echoes the request headers it received. Traefik and
//! Envoy cannot be installed here: their request shapes (as documented
//! in INTEGRATIONS.md) are sent to devicepass directly.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{self, Reply, Server, basic, free_port, request, wait_for_port};

const REALM: &str = "proxied";
const CHALLENGE: &str = "Basic realm=\"proxied\", charset=\"UTF-8\"";
const IDENTITY: &[&str] = &[
    "x-auth-user",
    "x-auth-email",
    "x-auth-sub",
    "x-auth-login",
    "x-auth-token-name",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A devicepass with one user and device password.
struct Fixture {
    dir: tempfile::TempDir,
    server: Server,
    login: String,
    password: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    support::add_user(&url, "frank", "frank@example.org");
    let (_, login, password) = support::create_token(&url, "frank", &["--name", "laptop"]);
    let env = [("DP_DATABASE_URL", url.as_str()), ("DP_REALM", REALM)];
    let server = Server::start(dir.path(), &env);
    Fixture {
        dir,
        server,
        login,
        password,
    }
}

impl Fixture {
    fn right(&self) -> String {
        basic(&self.login, &self.password)
    }

    fn wrong(&self) -> String {
        basic(&self.login, "not-the-password")
    }
}

/// The stand-in application: answers 200 with the request head it got.
fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = echo(stream);
        }
    });
    addr
}

fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        received.extend_from_slice(&buf[..n]);
    };
    let head = received[..head_end].to_vec();
    // Read the body too, or closing with unread bytes resets the proxy.
    let length = header_values(&head, "content-length")
        .first()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    while received.len() < head_end + length {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    let status = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        head.len()
    );
    stream.write_all(status.as_bytes())?;
    stream.write_all(&head)
}

/// Every value of a header in a raw request head, in order.
fn header_values(head: &[u8], name: &str) -> Vec<String> {
    String::from_utf8_lossy(head)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// The application got the request, with devicepass's identity only.
fn assert_identity_reached_upstream(reply: &Reply) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let seen = |name| header_values(&reply.body, name);
    assert_eq!(
        seen("x-auth-user"),
        ["frank"],
        "forged header must be replaced"
    );
    assert_eq!(seen("x-auth-email"), ["frank@example.org"]);
    assert_eq!(seen("x-auth-login").len(), 1);
}

/// Wrong password: our 401 and challenge, and the application untouched.
fn assert_denied(reply: &Reply) {
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header_str("WWW-Authenticate"), CHALLENGE);
    assert!(header_values(&reply.body, "x-auth-user").is_empty());
}

/// A client that claims an identity of its own.
fn forged(authorization: &str) -> [(&'static str, &[u8]); 3] {
    [
        ("Authorization", authorization.as_bytes()),
        ("X-Auth-User", b"mallory"),
        ("X-Auth-Email", b"mallory@example.org"),
    ]
}

fn installed(candidates: &[&str], package: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{package} not found: install it (apt-get install {package}) or run scripts/test"
            )
        })
}

/// A proxy process, killed with the test.
struct Proxy {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(command: &mut Command, addr: SocketAddr, log: &Path) -> Proxy {
    let log = std::fs::File::create(log).expect("proxy log");
    let child = command
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start proxy");
    wait_for_port(addr);
    Proxy { child, addr }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// --- Caddy ---------------------------------------------------------------

/// deploy/caddy/Caddyfile as shipped, behind the test's global options.
fn start_caddy(dir: &Path, devicepass: SocketAddr, upstream: SocketAddr) -> Proxy {
    let caddy = installed(&["/usr/bin/caddy", "/usr/local/bin/caddy"], "caddy");
    let addr = local(free_port());
    let wrapper = dir.join("Caddyfile");
    let shipped = repo("deploy/caddy/Caddyfile");
    let text = format!(
        "{{\n\tadmin off\n\tdefault_bind 127.0.0.1\n\tauto_https off\n}}\nimport {}\n",
        shipped.display()
    );
    std::fs::write(&wrapper, text).expect("Caddyfile");
    let mut command = Command::new(caddy);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&wrapper)
        .env_clear()
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("caddy-data"))
        .env("XDG_CONFIG_HOME", dir.join("caddy-config"))
        .env("SITE_ADDRESS", format!("http://{addr}"))
        .env("DEVICEPASS_ADDRESS", devicepass.to_string())
        .env("UPSTREAM_ADDRESS", upstream.to_string());
    spawn(&mut command, addr, &dir.join("caddy.log"))
}

#[test]
fn caddy_forward_auth_passes_identity_and_replaces_forged_headers() {
    let f = fixture();
    let caddy = start_caddy(f.dir.path(), f.server.addr, start_echo());
    let right = f.right();

    let ok = request(caddy.addr, "GET", "/files/a.txt", &forged(&right), b"");
    assert_identity_reached_upstream(&ok);
    assert_eq!(header_values(&ok.body, "x-auth-token-name"), ["laptop"]);

    let wrong = f.wrong();
    assert_denied(&request(caddy.addr, "GET", "/a", &forged(&wrong), b""));
    assert_denied(&request(caddy.addr, "GET", "/a", &[], b""));
}

#[test]
fn caddy_never_lets_a_request_through_when_devicepass_is_gone() {
    let f = fixture();
    let caddy = start_caddy(f.dir.path(), f.server.addr, start_echo());
    let right = f.right();
    drop(f.server);
    let reply = request(caddy.addr, "GET", "/a", &forged(&right), b"");
    assert!(reply.status >= 500, "got {}", reply.status);
    assert!(header_values(&reply.body, "x-auth-user").is_empty());
}

// --- nginx ---------------------------------------------------------------

/// The server block of the Kubernetes sidecar's nginx ConfigMap, pointed
/// at this test's devicepass and application.
fn sidecar_nginx_server(devicepass: SocketAddr, upstream: SocketAddr, port: u16) -> String {
    let manifest =
        std::fs::read_to_string(repo("deploy/kubernetes/sidecar.yaml")).expect("sidecar manifest");
    let block = yaml_block(&manifest, "default.conf: |");
    [
        ("listen 8080;", format!("listen 127.0.0.1:{port};")),
        ("127.0.0.1:8081", devicepass.to_string()),
        ("webdav-app:8000", upstream.to_string()),
    ]
    .iter()
    .fold(block, |text, (from, to)| {
        assert!(
            text.contains(from),
            "{from} not in the sidecar's nginx config"
        );
        text.replace(from, to)
    })
}

/// The text of a YAML block scalar (`key: |`), without its indentation.
fn yaml_block(text: &str, key: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != key);
    let indent = lines.next().map_or(0, |l| l.len() - l.trim_start().len()) + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn start_nginx(dir: &Path, server_block: &str, port: u16) -> Proxy {
    let nginx = installed(&["/usr/sbin/nginx", "/usr/bin/nginx"], "nginx");
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log info;\nevents {{ worker_connections 64; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{server_block}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let mut command = Command::new(nginx);
    command.arg("-p").arg(dir).arg("-c").arg(&path);
    spawn(&mut command, local(port), &dir.join("nginx.log"))
}

#[test]
fn nginx_sidecar_config_replaces_forged_identity_headers() {
    let f = fixture();
    let port = free_port();
    let server_block = sidecar_nginx_server(f.server.addr, start_echo(), port);
    let nginx = start_nginx(f.dir.path(), &server_block, port);
    let right = f.right();

    let ok = request(nginx.addr, "GET", "/dav/a.txt", &forged(&right), b"");
    assert_identity_reached_upstream(&ok);
    // The subrequest carries no body, so an upload does not hang.
    let put = request(
        nginx.addr,
        "PUT",
        "/dav/b.txt",
        &forged(&right),
        b"new text",
    );
    assert_identity_reached_upstream(&put);

    let wrong = f.wrong();
    assert_denied(&request(nginx.addr, "GET", "/dav/", &forged(&wrong), b""));
}

// --- HAProxy -------------------------------------------------------------

/// deploy/haproxy/haproxy.cfg and devicepass.lua as shipped.
fn start_haproxy(dir: &Path, devicepass: SocketAddr, upstream: SocketAddr) -> Proxy {
    let haproxy = installed(&["/usr/sbin/haproxy", "/usr/bin/haproxy"], "haproxy");
    let addr = local(free_port());
    let mut command = Command::new(haproxy);
    command
        .arg("-db")
        .arg("-f")
        .arg(repo("deploy/haproxy/haproxy.cfg"))
        .env_clear()
        .env("DEVICEPASS_HAPROXY_DIR", repo("deploy/haproxy"))
        .env("HAPROXY_BIND", addr.to_string())
        .env(
            "DEVICEPASS_URL",
            format!("http://{devicepass}/auth/haproxy"),
        )
        .env("UPSTREAM_ADDRESS", upstream.to_string());
    spawn(&mut command, addr, &dir.join("haproxy.log"))
}

#[test]
fn haproxy_lua_check_passes_identity_and_replaces_forged_headers() {
    let f = fixture();
    let haproxy = start_haproxy(f.dir.path(), f.server.addr, start_echo());
    let right = f.right();

    let ok = request(haproxy.addr, "GET", "/files/a?x=1", &forged(&right), b"");
    assert_identity_reached_upstream(&ok);
    let post = request(haproxy.addr, "POST", "/upload", &forged(&right), b"data");
    assert_identity_reached_upstream(&post);

    let wrong = f.wrong();
    let denied = request(haproxy.addr, "GET", "/a", &forged(&wrong), b"");
    assert_denied(&denied);
    assert_denied(&request(haproxy.addr, "GET", "/a", &[], b""));
}

#[test]
fn haproxy_answers_503_when_devicepass_is_gone() {
    let f = fixture();
    let haproxy = start_haproxy(f.dir.path(), f.server.addr, start_echo());
    let right = f.right();
    drop(f.server);
    let reply = request(haproxy.addr, "GET", "/a", &forged(&right), b"");
    assert_eq!(reply.status, 503);
    assert!(header_values(&reply.body, "x-auth-user").is_empty());
}

// --- Traefik and Envoy: their requests, sent directly -------------------

/// What Traefik's ForwardAuth sends: GET, the client's headers (a forged
/// identity among them) and X-Forwarded-*.
fn traefik_request(addr: SocketAddr, authorization: &str) -> Reply {
    let headers: [(&str, &[u8]); 7] = [
        ("Authorization", authorization.as_bytes()),
        ("X-Auth-User", b"mallory"),
        ("X-Forwarded-Method", b"PROPFIND"),
        ("X-Forwarded-Proto", b"https"),
        ("X-Forwarded-Host", b"dav.example.org"),
        ("X-Forwarded-Uri", b"/dav/calendars/frank/?depth=1"),
        ("X-Forwarded-For", b"203.0.113.7"),
    ];
    request(addr, "GET", "/auth/traefik", &headers, b"")
}

#[test]
fn traefik_forward_auth_requests_get_identity_or_a_challenge() {
    let f = fixture();
    let ok = traefik_request(f.server.addr, &f.right());
    assert_eq!(ok.status, 200);
    assert!(ok.body.is_empty());
    for name in IDENTITY {
        assert!(!ok.header_str(name).is_empty(), "{name} missing");
    }
    // authResponseHeaders copies ours; the client's forgery is not echoed.
    assert_eq!(ok.header_str("X-Auth-User"), "frank");

    // Traefik hands a refusal to the client as it is.
    let wrong = traefik_request(f.server.addr, &f.wrong());
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header_str("WWW-Authenticate"), CHALLENGE);
    assert!(wrong.body.is_empty());
    assert!(wrong.header("X-Auth-User").is_none());
}

/// What Envoy's ext_authz HTTP service sends: the original method, the
/// original path after `path_prefix`, the Authorization header.
fn envoy_request(addr: SocketAddr, method: &str, authorization: &str) -> Reply {
    let headers: [(&str, &[u8]); 2] = [
        ("Authorization", authorization.as_bytes()),
        ("X-Envoy-Expected-Rq-Timeout-Ms", b"5000"),
    ];
    request(addr, method, "/auth/envoy/original/path", &headers, b"")
}

#[test]
fn envoy_ext_authz_requests_get_exactly_200_or_401() {
    let f = fixture();
    for method in ["POST", "PUT", "DELETE", "GET"] {
        let ok = envoy_request(f.server.addr, method, &f.right());
        assert_eq!(ok.status, 200, "{method}: Envoy allows on exactly 200");
        assert_eq!(ok.header_str("X-Auth-User"), "frank");

        let wrong = envoy_request(f.server.addr, method, &f.wrong());
        assert_eq!(wrong.status, 401, "{method}");
        assert_eq!(wrong.header_str("WWW-Authenticate"), CHALLENGE);
    }
}

#[test]
fn envoy_ext_authz_requests_never_get_2xx_when_devicepass_cannot_decide() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A database that refuses connections: every lookup fails.
    let url = format!("postgresql://dp@127.0.0.1:{}/dp", free_port());
    let env = [
        ("DP_DATABASE_URL", url.as_str()),
        ("DP_AUTO_MIGRATE", "false"),
        ("DP_DATABASE_CONNECT_TIMEOUT", "1s"),
    ];
    let server = Server::start(dir.path(), &env);
    for method in ["POST", "GET"] {
        let reply = envoy_request(server.addr, method, &basic("frank", "secret"));
        assert_eq!(reply.status, 503, "{method}: status_on_error, never a yes");
        assert!(reply.header("X-Auth-User").is_none());
    }
}

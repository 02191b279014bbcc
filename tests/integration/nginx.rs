//! nginx `auth_request` in front of a location that serves a file: the
//! real nginx, started here on loopback. (`return` would run before the
//! auth phase and let the test pass without checking anything.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{self, Server, basic, free_port, get_auth, request, wait_for_port};

fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "nginx not found: install it (apt-get install nginx-light) or run scripts/test, which does"
    );
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nginx(dir: &Path, devicepass: SocketAddr) -> (Nginx, SocketAddr) {
    let port = free_port();
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("private")).expect("www");
    std::fs::write(root.join("private/secret.txt"), "the protected file\n").expect("file");
    let d = dir.display();
    let conf = format!(
        r#"
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /_devicepass {{
            internal;
            proxy_pass http://{devicepass}/auth/web;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }}
        location /private/ {{
            auth_request /_devicepass;
            auth_request_set $auth_user $upstream_http_x_auth_user;
            add_header X-Seen-User $auth_user always;
            try_files $uri =404;
        }}
    }}
}}
"#,
        root = root.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("nginx.conf");
    let child = Command::new(nginx_binary())
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &conf_path.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_for_port(addr);
    (Nginx(child), addr)
}

#[test]
fn nginx_auth_request_guards_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    support::add_user(&url, "frank", "frank@example.org");
    let (_, login, password) = support::create_token(&url, "frank", &[]);
    let server = Server::start(
        dir.path(),
        &[("DP_DATABASE_URL", &url), ("DP_REALM", "files")],
    );
    let (_nginx, addr) = start_nginx(dir.path(), server.addr);

    let ok = get_auth(addr, "/private/secret.txt", Some(&basic(&login, &password)));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"the protected file\n");
    assert_eq!(ok.header("X-Seen-User"), Some(&b"frank"[..]));

    let wrong = get_auth(addr, "/private/secret.txt", Some(&basic(&login, "not-it")));
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.header_str("WWW-Authenticate"),
        "Basic realm=\"files\", charset=\"UTF-8\""
    );
    assert!(!String::from_utf8_lossy(&wrong.body).contains("protected"));

    let none = request(addr, "GET", "/private/secret.txt", &[], b"");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header_str("WWW-Authenticate"),
        "Basic realm=\"files\", charset=\"UTF-8\""
    );

    let by_name = get_auth(
        addr,
        "/private/secret.txt",
        Some(&basic("frank@example.org", &password)),
    );
    assert_eq!(by_name.status, 200, "email works through nginx too");
}

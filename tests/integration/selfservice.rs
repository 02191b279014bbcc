//! Sign-in end to end: the real binary against a real OpenID provider
//! (`tests/e2e/provider.mjs`, Node's oidc-provider), with headless
//! Chromium using the self-service page as a person would
//! (`tests/e2e/selfservice.test.mjs`); and a start while the provider is
//! still down.
//!
//! Needs Node, the packages `npm ci` installs in tests/e2e, and Debian's
//! chromium; scripts/test installs all three. Without them the tests are
//! skipped with the reason printed, unless
//! `DEVICEPASS_TEST_REQUIRE_SERVERS=1` (set by the script): then they fail.
#![allow(clippy::disallowed_methods)] // tests read their own environment

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::{self, BIN, basic, free_port, get_auth};

const CLIENT_SECRET: &str = "devicepass-test-secret";
const API_AUDIENCE: &str = "http://127.0.0.1/devicepass-api";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Discovery retries back off to about a minute between attempts.
const DISCOVERY_PATIENCE: Duration = Duration::from_secs(90);
const BROWSER_PATIENCE: Duration = Duration::from_secs(600);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// Whether the Node tools (and Chromium, when asked) are here. Missing
/// ones skip the test, or fail it under `DEVICEPASS_TEST_REQUIRE_SERVERS=1`.
fn tools_present(browser: bool) -> bool {
    let mut missing = Vec::new();
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node");
    }
    if !e2e_dir().join("node_modules/oidc-provider").is_dir() {
        missing.push("tests/e2e/node_modules (npm ci in tests/e2e)");
    }
    if browser && !Path::new(CHROMIUM).exists() {
        missing.push("/usr/bin/chromium (Debian package chromium)");
    }
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("DEVICEPASS_TEST_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
    assert!(!required, "sign-in tests need {}", missing.join(", "));
    eprintln!("sign-in tests skipped: missing {}", missing.join(", "));
    false
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `provider.mjs` as a child process, killed on drop.
struct Provider {
    child: Child,
    issuer: String,
    log: PathBuf,
}

impl Provider {
    /// Start on `port` (0: any) for devicepass at `dp_url`; waits for its
    /// `ready <issuer>` line.
    fn start(dir: &Path, port: u16, dp_url: &str) -> Provider {
        let log = dir.join(format!("provider-{port}.log"));
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(e2e_dir())
            .env("OP_PORT", port.to_string())
            .env("DP_URL", dp_url)
            .env("DP_CLIENT_SECRET", CLIENT_SECRET)
            .env("DP_API_AUDIENCE", API_AUDIENCE)
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("provider log"))
            .spawn()
            .expect("start node provider.mjs");
        let stdout = child.stdout.take().expect("provider stdout");
        let (lines, first) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut provider = Provider {
            child,
            issuer: String::new(),
            log,
        };
        match first.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("ready ") => {
                provider.issuer = line["ready ".len()..].to_string();
            }
            other => panic!(
                "provider did not start ({other:?}):\n{}",
                tail(&provider.log, 40)
            ),
        }
        provider
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `devicepass serve` configured for sign-in, killed on drop.
struct Devicepass {
    child: Child,
    addr: SocketAddr,
    url: String,
    log: PathBuf,
}

impl Devicepass {
    fn start(dir: &Path, db_url: &str, port: u16, issuer: &str) -> Devicepass {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let url = format!("http://{addr}");
        let log = dir.join(format!("devicepass-{port}.log"));
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        let child = Command::new(BIN)
            .arg("serve")
            .env_clear()
            .envs([
                ("DP_DATABASE_URL", db_url),
                ("DP_LISTEN", &addr.to_string()),
                ("DP_PUBLIC_URL", &url),
                ("DP_OIDC_DISCOVERY_URL", &discovery),
                ("DP_OIDC_CLIENT_ID", "devicepass"),
                ("DP_OIDC_CLIENT_SECRET", CLIENT_SECRET),
                ("DP_OIDC_SCOPE", "openid email profile groups"),
                ("DP_OIDC_GROUP_MEMBERSHIP", "devicepass-users"),
                ("DP_ADMIN_GROUP", "devicepass-admins"),
                ("DP_OIDC_API_AUDIENCE", API_AUDIENCE),
                ("DP_UI_LOGINS", "true"),
                ("DP_USE_FLUSH_INTERVAL", "100ms"),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("devicepass log"))
            .spawn()
            .expect("start devicepass");
        let mut server = Devicepass {
            child,
            addr,
            url,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(self.addr).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("devicepass exited with {status}:\n{}", tail(&self.log, 40));
            }
            assert!(
                Instant::now() < deadline,
                "devicepass did not start:\n{}",
                tail(&self.log, 40)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Devicepass {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copy a child's output to ours line by line as it comes (written to
/// the real stdout/stderr, which the test harness does not capture) and
/// keep it for the failure message.
fn relay(
    from: impl Read + Send + 'static,
    to_stderr: bool,
    kept: Arc<Mutex<String>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if to_stderr {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            } else {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            let mut kept = kept.lock().expect("output lock");
            kept.push_str(&line);
            kept.push('\n');
        }
    })
}

/// `node --test selfservice.test.mjs` against both servers: its output
/// streamed, and its exit status. Also writes TAP to
/// `DEVICEPASS_TEST_E2E_TAP` when set, for scripts/test's summary.
fn run_browser_tests(dp: &Devicepass, op: &Provider) -> (ExitStatus, String) {
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e/page.png");
    let mut command = Command::new("node");
    command.args([
        "--test",
        "--test-reporter=spec",
        "--test-reporter-destination=stdout",
    ]);
    if let Ok(tap) = std::env::var("DEVICEPASS_TEST_E2E_TAP") {
        command.arg("--test-reporter=tap");
        command.arg(format!("--test-reporter-destination={tap}"));
    }
    let mut child = command
        .arg("selfservice.test.mjs")
        .current_dir(e2e_dir())
        .env("DP_URL", &dp.url)
        .env("OP_URL", &op.issuer)
        .env("DP_API_AUDIENCE", API_AUDIENCE)
        .env("CHROMIUM", CHROMIUM)
        .env("SCREENSHOT", &screenshot)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node --test");
    let kept = Arc::new(Mutex::new(String::new()));
    let relays = [
        relay(child.stdout.take().expect("stdout"), false, kept.clone()),
        relay(child.stderr.take().expect("stderr"), true, kept.clone()),
    ];
    let deadline = Instant::now() + BROWSER_PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            eprintln!("node tests still running after {BROWSER_PATIENCE:?}: killed");
            let _ = child.kill();
            break child.wait().expect("wait for node");
        }
        thread::sleep(Duration::from_millis(200));
    };
    for relay in relays {
        let _ = relay.join();
    }
    let output = kept.lock().expect("output lock").clone();
    (status, output)
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite:///{}", dir.join("dp.db").display())
}

/// The text of the first `<h1>`, tags inside it dropped.
fn heading(body: &[u8]) -> String {
    let html = String::from_utf8_lossy(body);
    let Some(start) = html.find("<h1") else {
        return String::new();
    };
    let inner = &html[start..];
    let inner = &inner[inner.find('>').map_or(0, |i| i + 1)..];
    let inner = &inner[..inner.find("</h1>").unwrap_or(inner.len())];
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_string()
}

#[test]
fn selfservice_in_a_browser() {
    if !tools_present(true) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dp_port = free_port();
    let op = Provider::start(dir.path(), 0, &format!("http://127.0.0.1:{dp_port}"));
    let dp = Devicepass::start(dir.path(), &sqlite_url(dir.path()), dp_port, &op.issuer);

    let (status, output) = run_browser_tests(&dp, &op);
    // The whole output was streamed above; repeat the reporter's list of
    // failures (all of it if there is none, as after a crash).
    let failures = output
        .find("✖ failing tests:")
        .map_or(output.as_str(), |at| &output[at..]);
    assert!(
        status.success(),
        "browser tests failed ({status}):\n{failures}\n\
         --- devicepass log (last lines) ---\n{}\n\
         --- provider log (last lines) ---\n{}",
        tail(&dp.log, 60),
        tail(&op.log, 30),
    );
}

#[test]
fn selfservice_waits_for_a_provider_that_starts_later() {
    if !tools_present(false) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = sqlite_url(dir.path());
    support::add_user(&db_url, "carol", "carol@example.org");
    let (_, login, password) = support::create_token(&db_url, "carol", &[]);
    let op_port = free_port();
    let issuer = format!("http://127.0.0.1:{op_port}");
    let dp = Devicepass::start(dir.path(), &db_url, free_port(), &issuer);

    assert_eq!(get_auth(dp.addr, "/healthz", None).status, 200);
    for path in ["/", "/login"] {
        let reply = get_auth(dp.addr, path, None);
        assert_eq!(reply.status, 503, "{path} while the provider is down");
        assert_eq!(heading(&reply.body), "Sign-in unavailable", "{path}");
    }
    let auth = |password: &str| {
        let credentials = basic(&login, password);
        get_auth(dp.addr, "/auth", Some(&credentials)).status
    };
    assert_eq!(
        auth(&password),
        200,
        "verification works without the provider"
    );
    assert_eq!(auth("wrong"), 401);

    let _op = Provider::start(dir.path(), op_port, &dp.url);
    let deadline = Instant::now() + DISCOVERY_PATIENCE;
    loop {
        let reply = get_auth(dp.addr, "/login", None);
        let location = reply.header_str("location");
        if matches!(reply.status, 302 | 303) && location.starts_with(&format!("{issuer}/auth")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/login still answers {} after {DISCOVERY_PATIENCE:?}:\n{}",
            reply.status,
            tail(&dp.log, 40)
        );
        thread::sleep(Duration::from_secs(1));
    }
    let page = get_auth(dp.addr, "/", None);
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("id=\"sign-in\""));
    assert_eq!(auth(&password), 200);
}

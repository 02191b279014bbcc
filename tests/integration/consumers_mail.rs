//! Mail consumers, with the real programs from Debian: a private Dovecot
//! 2.3 (IMAP) checking device passwords through `devicepass checkpassword`
//! and through the Lua passdb script, and a private Postfix doing SMTP
//! AUTH through Dovecot SASL. Everything listens on 127.0.0.1 and lives
//! in a temporary directory; the shipped snippets in `deploy/dovecot` and
//! `deploy/postfix` are used as they are, with only paths and the URL
//! replaced.
//!
//! The checkpassword program is also run directly, with fd 3 and fd 4
//! wired by a shell, to pin down its exit statuses without Dovecot.
#![allow(clippy::disallowed_methods)] // tests read their own environment

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::support::{self, BIN, Server, free_port, wait_for_port};

const DOVECOT: &str = "/usr/sbin/dovecot";
const REPLY: &str = "/usr/lib/dovecot/checkpassword-reply";
const LUA_PASSDB: &str = "/usr/lib/dovecot/modules/auth/libauthdb_lua.so";
const POSTFIX: &str = "/usr/sbin/postfix";

/// Dovecot's answers, as IMAP clients see them.
const AUTH_FAILED: &str = "a NO [AUTHENTICATIONFAILED] Authentication failed.";
const TEMP_FAILURE: &str = "a NO [UNAVAILABLE] Temporary authentication failure.";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// True when the programs are installed and the test runs as root (both
/// servers switch users). Otherwise skip, or fail under
/// `DEVICEPASS_TEST_REQUIRE_SERVERS=1`.
fn available(programs: &[(&str, &str)]) -> bool {
    let required = std::env::var("DEVICEPASS_TEST_REQUIRE_SERVERS").as_deref() == Ok("1");
    let missing = programs.iter().find(|(path, _)| !Path::new(path).exists());
    let problem = match missing {
        Some((path, package)) => format!("{path} is missing: apt-get install {package}"),
        None if id(&["-u"]) != 0 => "private Dovecot/Postfix instances need root".into(),
        None => return true,
    };
    assert!(!required, "{problem}");
    eprintln!("skipping: {problem}");
    false
}

/// `id ARGS` as a number (uid or gid).
fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("run id");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {args:?}: {text}"))
}

/// A temporary directory the servers' unprivileged users can traverse
/// (tempfile makes it 0700).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    set_mode(dir.path(), 0o755);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// devicepass serving a fresh database with one user and one token.
struct Devicepass {
    server: Server,
    db: String,
    socket: PathBuf,
    login: String,
    password: String,
}

fn devicepass(dir: &Path) -> Devicepass {
    let db = format!("sqlite:///{}", dir.join("dp.db").display());
    support::add_user(&db, "alice", "alice@example.org");
    let (_, login, password) = support::create_token(&db, "alice", &[]);
    let socket = dir.join("dp.sock");
    let env = [
        ("DP_DATABASE_URL", db.as_str()),
        ("DP_UNIX_SOCKET", &socket.display().to_string()),
        // Dovecot runs checkpassword as its `dovecot` user.
        ("DP_UNIX_SOCKET_MODE", "0666"),
    ];
    let server = Server::start(dir, &env);
    Devicepass {
        server,
        db,
        socket,
        login,
        password,
    }
}

/// A private Dovecot master (`dovecot -F`), stopped with SIGTERM on drop so
/// it takes its children along.
struct Dovecot {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Dovecot {
    /// Start with `auth` (passdb, userdb and auth settings) added to a
    /// minimal IMAP-only configuration.
    fn start(dir: &Path, auth: &str, env: &str) -> Dovecot {
        let root = dir.join("dovecot");
        let home = root.join("home");
        std::fs::create_dir_all(&home).expect("dovecot dirs");
        // Dovecot refuses uid 0 for mail processes, so the mail owner is
        // the current user unless that is root.
        let (uid, gid) = match id(&["-u"]) {
            0 => (id(&["-u", "nobody"]), id(&["-g", "nobody"])),
            uid => (uid, id(&["-g"])),
        };
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown home");
        let port = free_port();
        let conf = dovecot_conf(&root, port, auth, env, (uid, gid));
        let conf_path = root.join("dovecot.conf");
        std::fs::write(&conf_path, conf).expect("dovecot.conf");
        let out = std::fs::File::create(root.join("stdout.log")).expect("stdout log");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start dovecot");
        let dovecot = Dovecot {
            child,
            port,
            log: root.join("dovecot.log"),
        };
        wait_for_port(dovecot.addr());
        dovecot
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log_text(&self) -> String {
        read(&self.log)
    }

    /// Whether `needle` reaches the log within a few seconds: Dovecot's
    /// log process writes after the IMAP answer has gone out.
    fn logs(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.log_text().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `a LOGIN` and Dovecot's tagged answer.
    fn login(&self, user: &str, password: &str) -> String {
        let command = format!("a LOGIN {} {}", imap_quote(user), imap_quote(password));
        imap(self.addr(), &command)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }
}

fn dovecot_conf(root: &Path, port: u16, auth: &str, env: &str, owner: (u32, u32)) -> String {
    let r = root.display();
    let (uid, gid) = owner;
    format!(
        r#"
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
auth_verbose = yes
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
import_environment = TZ {env}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
# Every failed login comes from 127.0.0.1; the per-IP auth penalty would
# delay each later attempt by seconds. Mode 0 switches it off.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{auth}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/home
}}
"#
    )
}

/// The shipped checkpassword snippet without its example userdb, pointed
/// at this binary and `url`.
fn checkpassword_conf(url: &str) -> String {
    let text = read(&deploy("dovecot/10-devicepass-checkpassword.conf"));
    let (passdb, _) = text
        .split_once("\nuserdb {")
        .expect("the snippet ends with an example userdb");
    assert!(passdb.contains("args = /usr/local/bin/devicepass checkpassword"));
    passdb
        .replace("/usr/local/bin/devicepass", BIN)
        .replace("http://127.0.0.1:8080", url)
}

fn imap_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Send one IMAP command; return its tagged answer line.
fn imap(addr: SocketAddr, command: &str) -> String {
    let stream = TcpStream::connect(addr).expect("connect to IMAP");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let greeting = line(&mut reader);
    assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
    (&stream)
        .write_all(format!("{command}\r\n").as_bytes())
        .expect("send");
    let tag = command.split(' ').next().unwrap_or_default();
    loop {
        let answer = line(&mut reader);
        if answer.is_empty() || answer.starts_with(&format!("{tag} ")) {
            return answer;
        }
    }
}

fn line(reader: &mut impl BufRead) -> String {
    let mut text = String::new();
    let _ = reader.read_line(&mut text);
    text.trim_end().to_string()
}

#[test]
fn dovecot_checkpassword_logs_in_with_device_passwords() {
    if !available(&[(DOVECOT, "dovecot-imapd"), (REPLY, "dovecot-core")]) {
        return;
    }
    let dir = open_tempdir();
    let dp = devicepass(dir.path());
    let url = format!("http://{}", dp.server.addr);
    let dovecot = Dovecot::start(dir.path(), &checkpassword_conf(&url), "");

    let ok = dovecot.login(&dp.login, &dp.password);
    assert!(ok.starts_with("a OK"), "{ok}\n{}", dovecot.log_text());
    // The token login was replaced by its owner's username.
    assert!(
        dovecot.logs("Login: user=<alice>"),
        "{}",
        dovecot.log_text()
    );
    let by_email = dovecot.login("alice@example.org", &dp.password);
    assert!(by_email.starts_with("a OK"), "{by_email}");
    assert_eq!(dovecot.login(&dp.login, "not-the-password"), AUTH_FAILED);
    assert_eq!(dovecot.login("nobody-here", &dp.password), AUTH_FAILED);

    dp.server.terminate();
    let down = dovecot.login(&dp.login, &dp.password);
    assert!(down.starts_with(TEMP_FAILURE), "{down}");
    assert!(
        dovecot.logs("exited with status 111"),
        "{}",
        dovecot.log_text()
    );
    let log = dovecot.log_text();
    // The shipped snippet parses cleanly ('#' in a value is a comment
    // unless quoted).
    assert!(!log.contains("Warning: Configuration file"), "{log}");
    assert!(!log.contains(&dp.password), "the password reached the log");
}

#[test]
fn dovecot_lua_passdb_script_runs_on_dovecot_2_3() {
    let programs = [(DOVECOT, "dovecot-imapd"), (LUA_PASSDB, "dovecot-auth-lua")];
    if !available(&programs) {
        return;
    }
    let dir = open_tempdir();
    let dp = devicepass(dir.path());
    // A username that needs JSON escaping both ways.
    let odd = "o\"ne\\il";
    support::add_user(&dp.db, odd, "oneil@example.org");
    let (_, odd_login, odd_password) = support::create_token(&dp.db, odd, &[]);
    // Dovecot 2.3 syntax of the block in 10-devicepass-lua.conf; the URL
    // comes from the environment there (2.3 has no lua_settings). Any
    // username character is let through, to test the script's escaping.
    let auth = format!(
        "auth_mechanisms = plain login\nauth_username_chars =\n\
         passdb {{\n  driver = lua\n  args = file={} blocking=yes\n}}\n",
        deploy("dovecot/devicepass.lua").display()
    );
    let env = format!("DEVICEPASS_URL=http://{}", dp.server.addr);
    let dovecot = Dovecot::start(dir.path(), &auth, &env);

    let ok = dovecot.login(&dp.login, &dp.password);
    assert!(ok.starts_with("a OK"), "{ok}\n{}", dovecot.log_text());
    assert!(
        dovecot.logs("Login: user=<alice>"),
        "{}",
        dovecot.log_text()
    );
    assert_eq!(dovecot.login(&dp.login, "not-the-password"), AUTH_FAILED);
    for login in [odd, &odd_login] {
        let ok = dovecot.login(login, &odd_password);
        assert!(
            ok.starts_with("a OK"),
            "{login}: {ok}\n{}",
            dovecot.log_text()
        );
    }
    assert_eq!(dovecot.login(odd, "\"quoted\\"), AUTH_FAILED);

    dp.server.terminate();
    let down = dovecot.login(&dp.login, &dp.password);
    assert!(down.starts_with(TEMP_FAILURE), "{down}");
    assert!(!dovecot.log_text().contains(&dp.password));
}

/// A private Postfix: its own config, queue and data directories, smtpd
/// on a free loopback port. Stopped with `postfix stop` on drop.
struct Postfix {
    conf: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Postfix {
    fn start(dir: &Path) -> Postfix {
        let root = dir.join("postfix");
        let (conf, queue, data) = (root.join("conf"), root.join("queue"), root.join("data"));
        for d in [&conf, &queue, &data] {
            std::fs::create_dir_all(d).expect("postfix dirs");
        }
        // `postfix start` creates the queue's subdirectories itself, but
        // the master's lock file goes into data_directory, which must
        // belong to mail_owner.
        let owner = (id(&["-u", "postfix"]), id(&["-g", "postfix"]));
        std::os::unix::fs::chown(&data, Some(owner.0), Some(owner.1)).expect("chown data");
        let port = free_port();
        let log = root.join("maillog");
        std::fs::write(conf.join("main.cf"), postfix_main_cf(&root, &log)).expect("main.cf");
        std::fs::write(conf.join("master.cf"), postfix_master_cf(port)).expect("master.cf");
        let postfix = Postfix { conf, port, log };
        let out = postfix.command("start");
        // `postfix start` returns once the master listens. No probe here:
        // an smtpd started before Dovecot's auth socket exists exits, and
        // the master then throttles smtpd restarts.
        assert!(
            out.status.success(),
            "postfix start failed:\n{}",
            postfix.log_text()
        );
        postfix
    }

    fn command(&self, action: &str) -> Output {
        Command::new(POSTFIX)
            .arg("-c")
            .arg(&self.conf)
            .arg(action)
            .output()
            .expect("run postfix")
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log_text(&self) -> String {
        read(&self.log)
    }

    /// EHLO, then `AUTH PLAIN`; the reply line to AUTH.
    fn auth_plain(&self, user: &str, password: &str) -> String {
        let stream = TcpStream::connect(self.addr()).expect("connect to SMTP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let send = |command: &str| {
            (&stream)
                .write_all(format!("{command}\r\n").as_bytes())
                .expect("send");
        };
        let greeting = smtp_reply(&mut reader);
        assert!(greeting.starts_with("220"), "{greeting}");
        send("EHLO client.test");
        let ehlo = smtp_reply(&mut reader);
        assert!(ehlo.starts_with("250"), "{ehlo}");
        let token = STANDARD.encode(format!("\0{user}\0{password}"));
        send(&format!("AUTH PLAIN {token}"));
        let answer = smtp_reply(&mut reader);
        send("QUIT");
        answer
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.command("stop");
    }
}

/// The last line of a (possibly multi-line) SMTP reply.
fn smtp_reply(reader: &mut impl BufRead) -> String {
    loop {
        let text = line(reader);
        if text.len() < 4 || text.as_bytes()[3] != b'-' {
            return text;
        }
    }
}

fn postfix_main_cf(root: &Path, log: &Path) -> String {
    let r = root.display();
    let snippet = read(&deploy("postfix/main.cf.devicepass"));
    assert!(snippet.contains("smtpd_sasl_path = private/auth"));
    format!(
        r#"compatibility_level = 3.6
config_directory = {r}/conf
queue_directory = {r}/queue
data_directory = {r}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = devicepass.test
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {log}
maillog_file_prefixes = {r}
{snippet}
# No TLS in this test instance, so AUTH must be offered without it.
smtpd_tls_auth_only = no
"#,
        log = log.display()
    )
}

/// smtpd on the test port and the services it talks to, none chrooted
/// (the queue directory is not set up as a chroot jail).
fn postfix_master_cf(port: u16) -> String {
    let services = [
        ("cleanup", "unix", "n", "0", "cleanup"),
        ("qmgr", "unix", "n", "1", "qmgr"),
        ("rewrite", "unix", "-", "-", "trivial-rewrite"),
        ("bounce", "unix", "-", "0", "bounce"),
        ("defer", "unix", "-", "0", "bounce"),
        ("trace", "unix", "-", "0", "bounce"),
        ("verify", "unix", "-", "1", "verify"),
        ("proxymap", "unix", "-", "-", "proxymap"),
        ("anvil", "unix", "-", "1", "anvil"),
        ("scache", "unix", "-", "1", "scache"),
        ("error", "unix", "-", "-", "error"),
        ("postlog", "unix-dgram", "n", "1", "postlogd"),
    ];
    let mut text = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
    for (name, kind, private, limit, program) in services {
        text.push_str(&format!(
            "{name} {kind} {private} - n - {limit} {program}\n"
        ));
    }
    text
}

#[test]
fn postfix_smtp_auth_checks_device_passwords_through_dovecot() {
    let programs = [
        (DOVECOT, "dovecot-imapd"),
        (REPLY, "dovecot-core"),
        (POSTFIX, "postfix"),
    ];
    if !available(&programs) {
        return;
    }
    let dir = open_tempdir();
    let dp = devicepass(dir.path());
    // Postfix first: `postfix start` creates queue/private, where Dovecot
    // puts the auth socket (as the shipped snippet does in
    // /var/spool/postfix/private).
    let postfix = Postfix::start(dir.path());
    let queue = dir.path().join("postfix/queue");
    let socket = read(&deploy("postfix/dovecot-auth-socket.conf"))
        .replace("/var/spool/postfix", &queue.display().to_string());
    // Dovecot reaches devicepass over its unix socket this time.
    let url = format!("unix:{}", dp.socket.display());
    let auth = format!("{}\n{socket}", checkpassword_conf(&url));
    let dovecot = Dovecot::start(dir.path(), &auth, "");
    wait_for_port(postfix.addr());

    let ok = postfix.auth_plain(&dp.login, &dp.password);
    let logs = || format!("{}\n{}", postfix.log_text(), dovecot.log_text());
    assert!(ok.starts_with("235 "), "{ok}\n{}", logs());
    let wrong = postfix.auth_plain(&dp.login, "not-the-password");
    assert!(wrong.starts_with("535 "), "{wrong}\n{}", logs());
}

/// Run `devicepass checkpassword ARGS` with `input` on fd 3 (closed when
/// `None`) and fd 4 captured, as Dovecot would; returns (exit code, what
/// reached fd 4, stderr).
fn checkpassword(dir: &Path, input: Option<&[u8]>, args: &[&str]) -> (i32, String, String) {
    let (fd3, fd4) = (dir.join("fd3"), dir.join("fd4"));
    std::fs::write(&fd3, input.unwrap_or_default()).expect("fd 3 input");
    let _ = std::fs::remove_file(&fd4);
    let script = match input {
        Some(_) => r#"exec "$@" 3<"$FD3" 4>"$FD4""#,
        None => r#"exec "$@" 3<&- 4>"$FD4""#,
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(BIN)
        .arg("checkpassword")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("FD3", &fd3)
        .env("FD4", &fd4)
        .env("HOME", "/root-of-the-auth-process")
        .stdin(Stdio::null())
        .output()
        .expect("run checkpassword");
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (code, read(&fd4), stderr)
}

#[test]
fn checkpassword_follows_the_djb_interface() {
    let dir = open_tempdir();
    let dp = devicepass(dir.path());
    let http = format!("http://{}", dp.server.addr);
    let unix = format!("unix:{}", dp.socket.display());
    let input = |user: &str, password: &str| format!("{user}\0{password}\0\0").into_bytes();
    // A reply program that writes what it got to fd 4, like Dovecot's.
    fn with(url: &str) -> Vec<&str> {
        let reply = r#"printf 'USER=%s HOME=%s' "$USER" "${HOME-unset}" >&4"#;
        vec!["--url", url, "/bin/sh", "-c", reply]
    }
    let run = |bytes: &[u8], url: &str| checkpassword(dir.path(), Some(bytes), &with(url));
    let right = input(&dp.login, &dp.password);

    // Granted: exec the reply program with the owner's name, no HOME.
    for url in [&http, &unix] {
        let (code, fd4, err) = run(&right, url);
        assert_eq!(
            (code, fd4.as_str()),
            (0, "USER=alice HOME=unset"),
            "{url}: {err}"
        );
    }
    assert_eq!(run(&input("alice@example.org", &dp.password), &http).0, 0);

    // Denied: 1, and the reply program never runs.
    let (code, fd4, _) = run(&input(&dp.login, "not-the-password"), &http);
    assert_eq!((code, fd4.as_str()), (1, ""));
    let latin1 = [dp.login.as_bytes(), b"\0p\xe4ss\0\0"].concat();
    assert_eq!(run(&latin1, &http).0, 1, "non-UTF-8 is a wrong password");

    // Misuse: 2.
    for bytes in [&b"no separators"[..], &[b'x'; 600][..], &b"alice\0"[..]] {
        assert_eq!(run(bytes, &http).0, 2);
    }
    assert_eq!(
        checkpassword(dir.path(), None, &with(&http)).0,
        2,
        "fd 3 closed"
    );
    let no_program = ["--url", http.as_str()];
    assert_eq!(checkpassword(dir.path(), Some(&right), &no_program).0, 2);
    // Lookup mode (AUTHORIZED set) cannot be served; 2 would mean "found".
    let lookup = Command::new(BIN)
        .args(["checkpassword", "--url", &http, REPLY])
        .env("AUTHORIZED", "1")
        .output()
        .expect("run checkpassword");
    assert_eq!(lookup.status.code(), Some(111));

    let healthcheck = |url: &str| {
        let out = Command::new(BIN)
            .args(["healthcheck", "--url", url])
            .output();
        out.expect("run healthcheck").status.code()
    };
    assert_eq!(healthcheck(&http), Some(0));
    assert_eq!(healthcheck(&unix), Some(0));

    // Service down: 111, a reason without the password, health fails.
    let port = dp.server.addr.port();
    dp.server.terminate();
    let (code, _, err) = run(&right, &http);
    assert_eq!(code, 111, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains(&dp.password));
    assert_eq!(healthcheck(&http), Some(1));
    assert_eq!(healthcheck(&unix), Some(1));
}

//! Thin clients of a running devicepass service: `checkpassword` (the DJB
//! checkpassword interface, for Dovecot 2.3's `passdb checkpassword`) and
//! `healthcheck` (for container health checks).
//!
//! Both run where the service's configuration is not available — inside
//! Dovecot's auth process, or next to the server in a container — so they
//! never load [`crate::config::Config`]; they only speak HTTP/1.1 to the
//! service over TCP (`http://host:port[/prefix]`) or a unix socket
//! (`unix:/path/to.sock`).
//!
//! checkpassword contract: Dovecot writes `user\0password\0timestamp\0` to
//! fd 3 and appends the path of its reply program to our arguments. We
//! `POST /verify` with `{"username","password","service":"dovecot"}`; on
//! 200 we set `USER` to the token owner's username and exec the reply
//! program, which reports back on fd 4. Exit 1 means a wrong password,
//! 111 a temporary failure (service unreachable, slow, 5xx or any
//! unexpected answer), 2 misuse. The password is never printed.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::secret::Secret;

/// Where the service listens unless `--url` or the environment says else.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The DJB interface's limit on what fd 3 carries.
pub const MAX_INPUT: usize = 512;

/// Largest answer body read; a `/verify` answer is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The file descriptor Dovecot writes the credentials to. Opened by path:
/// the crate forbids `unsafe`, which `File::from_raw_fd` would need.
const FD3_PATH: &str = "/dev/fd/3";

/// The `service` field sent with every check, so logs name the consumer.
const SERVICE: &str = "dovecot";

/// Exit statuses of the checkpassword interface (besides exec'ing the
/// reply program on success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Wrong password (or credentials no device password can match).
    Denied,
    /// Called wrongly: no reply program, fd 3 unreadable or malformed.
    Misuse,
    /// The answer could not be had; Dovecot reports a temporary failure.
    TempFail,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Denied => 1,
            Exit::Misuse => 2,
            Exit::TempFail => 111,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Arguments of `devicepass checkpassword`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpasswordArgs {
    /// The running service: http://HOST:PORT[/PREFIX] or unix:/PATH.
    #[arg(long, env = "DP_CHECKPASSWORD_URL", default_value = DEFAULT_URL)]
    pub url: Target,
    /// Longest wait for the whole exchange (connect, request, answer).
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Set by Dovecot when it wants a lookup without a password (userdb
    /// or credentials lookup), which this program cannot serve.
    #[arg(long, env = "AUTHORIZED", hide = true)]
    pub authorized: Option<String>,
    /// The reply program and its arguments (Dovecot appends the path of
    /// its checkpassword-reply).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "REPLY-PROGRAM"
    )]
    pub program: Vec<OsString>,
}

/// Arguments of `devicepass healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The running service: http://HOST:PORT[/PREFIX] or unix:/PATH.
    /// Without it, derived from DP_LISTEN, else http://127.0.0.1:8080.
    #[arg(long, env = "DP_HEALTHCHECK_URL")]
    pub url: Option<Target>,
    /// The service's listen address, read so the check follows it.
    #[arg(long, env = "DP_LISTEN", hide = true)]
    pub listen: Option<String>,
    /// Longest wait for the answer.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// Whole seconds (`5`) or a humantime duration (`5s`, `1500ms`).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    }?;
    if parsed.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(parsed)
}

/// How to reach the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`, resolved at connect time.
    Tcp(String),
    Unix(PathBuf),
}

/// A parsed `--url`: where to connect, the `Host` header, a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: Endpoint,
    host: String,
    prefix: String,
    shown: String,
}

impl Target {
    /// The request path for `route` (`/verify`) under the URL's prefix.
    pub fn path(&self, route: &str) -> String {
        format!("{}{route}", self.prefix)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Target, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return unix_target(path);
        }
        let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        if url.scheme() != "http" {
            // No TLS client here on purpose: the service is meant to be
            // reached on loopback or a unix socket.
            return Err("use http://HOST:PORT or unix:/PATH".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not supported".into());
        }
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(Target {
            endpoint: Endpoint::Tcp(format!("{host}:{port}")),
            host: match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            },
            prefix: url.path().trim_end_matches('/').to_string(),
            shown: text.to_string(),
        })
    }
}

fn unix_target(path: &str) -> Result<Target, String> {
    // `unix:///run/dp.sock` is a common spelling of the same thing.
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        return Err("unix: needs a socket path".into());
    }
    Ok(Target {
        endpoint: Endpoint::Unix(PathBuf::from(path)),
        host: "localhost".into(),
        prefix: String::new(),
        shown: format!("unix:{path}"),
    })
}

/// The login and password read from fd 3.
pub struct Input {
    pub username: String,
    pub password: Secret<String>,
}

/// Why fd 3 could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("more than {MAX_INPUT} bytes on fd 3")]
    TooLong,
    #[error("fd 3 does not hold user\\0password\\0")]
    MissingField,
    #[error("username or password is not UTF-8")]
    NotUtf8,
}

impl InputError {
    /// Non-UTF-8 bytes are what a client typed, not a wiring mistake: no
    /// device password can match them, so they are a wrong password
    /// (the service answers such credentials with 401 too).
    pub fn exit(self) -> Exit {
        match self {
            InputError::NotUtf8 => Exit::Denied,
            InputError::TooLong | InputError::MissingField => Exit::Misuse,
        }
    }
}

/// Parse `user\0password\0…`; what follows the password (the timestamp
/// and anything else) is ignored.
pub fn parse_input(bytes: &[u8]) -> Result<Input, InputError> {
    if bytes.len() > MAX_INPUT {
        return Err(InputError::TooLong);
    }
    let mut fields = bytes.splitn(3, |b| *b == 0);
    let (Some(user), Some(password), Some(_rest)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(InputError::MissingField);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| InputError::NotUtf8);
    Ok(Input {
        username: text(user)?,
        password: Secret::new(text(password)?),
    })
}

/// Read fd 3 to EOF, stopping one byte past the limit.
fn read_fd3() -> Result<Vec<u8>, std::io::Error> {
    let file = std::fs::File::open(FD3_PATH)?;
    let mut bytes = Vec::with_capacity(MAX_INPUT + 1);
    file.take(MAX_INPUT as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// What the service said about a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Valid; the canonical username of the token's owner.
    Granted(String),
    Denied,
    /// No usable answer; the reason is safe to log.
    Unavailable(String),
}

impl Answer {
    /// The checkpassword exit status, or `None` when the reply program
    /// must be exec'ed.
    pub fn exit(&self) -> Option<Exit> {
        match self {
            Answer::Granted(_) => None,
            Answer::Denied => Some(Exit::Denied),
            Answer::Unavailable(_) => Some(Exit::TempFail),
        }
    }
}

#[derive(Deserialize)]
struct Granted {
    ok: bool,
    user: GrantedUser,
}

#[derive(Deserialize)]
struct GrantedUser {
    username: String,
}

/// Map a `/verify` status and body to an answer. Only 200 with a usable
/// username grants and only 401 denies; anything else is "cannot tell",
/// never a guess either way.
pub fn classify(status: StatusCode, body: &[u8]) -> Answer {
    match status {
        StatusCode::OK => granted_user(body),
        StatusCode::UNAUTHORIZED => Answer::Denied,
        other => Answer::Unavailable(format!("the service answered {other}")),
    }
}

fn granted_user(body: &[u8]) -> Answer {
    let username = match serde_json::from_slice::<Granted>(body) {
        Ok(g) if g.ok => g.user.username,
        _ => return Answer::Unavailable("200 without a usable JSON answer".into()),
    };
    // The reply program passes USER on as a tab-separated line: a control
    // character would corrupt it (or inject fields), so refuse it.
    if username.is_empty() || username.chars().any(char::is_control) {
        return Answer::Unavailable("the username is empty or has control characters".into());
    }
    Answer::Granted(username)
}

/// Why an exchange with the service failed. Carries no request data.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("answer body too large or unreadable")]
    Body,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One request to the service, with the whole exchange under `timeout`.
pub async fn exchange(
    target: &Target,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ClientError> {
    tokio::time::timeout(timeout, send(target, request))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

async fn send(
    target: &Target,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), ClientError> {
    match &target.endpoint {
        Endpoint::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map_err(ClientError::Connect)?;
            over(TokioIo::new(stream), request).await
        }
        Endpoint::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(ClientError::Connect)?;
            over(TokioIo::new(stream), request).await
        }
    }
}

async fn over<T>(io: T, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), ClientError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    // The connection future does the actual I/O; it ends when the sender
    // is dropped after the answer.
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|_| ClientError::Body)?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok((status, body))
}

fn request(
    target: &Target,
    method: Method,
    route: &str,
    body: Bytes,
) -> http::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(target.path(route))
        .header(HOST, target.host.as_str())
        .header(
            USER_AGENT,
            concat!("devicepass/", env!("CARGO_PKG_VERSION")),
        );
    if !body.is_empty() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    builder.body(Full::new(body))
}

/// The `/verify` body. Built with serde so any character in the login or
/// password is escaped correctly.
fn verify_body(input: &Input) -> Bytes {
    let value = serde_json::json!({
        "username": input.username,
        "password": input.password.expose(),
        "service": SERVICE,
    });
    Bytes::from(value.to_string())
}

/// Ask the service whether the password is valid.
pub async fn ask(target: &Target, input: &Input, timeout: Duration) -> Answer {
    let built = request(target, Method::POST, "/verify", verify_body(input));
    let request = match built {
        Ok(r) => r,
        Err(e) => return Answer::Unavailable(ClientError::from(e).to_string()),
    };
    match exchange(target, request, timeout).await {
        Ok((status, body)) => classify(status, &body),
        Err(e) => Answer::Unavailable(e.to_string()),
    }
}

fn complain(message: impl fmt::Display) {
    // stderr reaches Dovecot's log; nothing here ever holds the password.
    eprintln!("devicepass checkpassword: {message}");
}

/// `devicepass checkpassword`: read fd 3, ask, then exec the reply program
/// or exit with the interface's status.
pub async fn checkpassword(args: &CheckpasswordArgs) -> ExitCode {
    if args.authorized.is_some() {
        // Lookup mode (AUTHORIZED set) needs a program that finds users
        // without a password. Exit 2 would mean "found" there, so fail.
        complain("cannot look users up without a password; use it as a passdb only");
        return Exit::TempFail.into();
    }
    let input = match read_fd3() {
        Ok(bytes) => parse_input(&bytes),
        Err(e) => {
            complain(format_args!("cannot read fd 3: {e}"));
            return Exit::Misuse.into();
        }
    };
    let input = match input {
        Ok(input) => input,
        Err(e) => {
            complain(e);
            return e.exit().into();
        }
    };
    match ask(&args.url, &input, args.timeout).await {
        Answer::Granted(username) => exec_reply(&args.program, &username),
        Answer::Denied => Exit::Denied.into(),
        Answer::Unavailable(reason) => {
            complain(format_args!("no answer from {}: {reason}", args.url));
            Exit::TempFail.into()
        }
    }
}

/// Replace this process with the reply program, `USER` set to the
/// canonical name. Only returns when exec fails.
fn exec_reply(program: &[OsString], username: &str) -> ExitCode {
    let Some((path, rest)) = program.split_first() else {
        complain("no reply program given");
        return Exit::Misuse.into();
    };
    // HOME would be sent as the user's home directory; an inherited one
    // belongs to the auth process, not to the user.
    let error = std::process::Command::new(path)
        .args(rest)
        .env("USER", username)
        .env_remove("HOME")
        .exec();
    complain(format_args!(
        "cannot run {}: {error}",
        path.to_string_lossy()
    ));
    Exit::TempFail.into()
}

/// The blocking entry point: a small single-threaded runtime, so the thin
/// client starts fast and exec replaces a process with one thread.
pub fn run_checkpassword(args: &CheckpasswordArgs) -> ExitCode {
    match current_thread() {
        Ok(runtime) => runtime.block_on(checkpassword(args)),
        Err(e) => {
            complain(format_args!("cannot start the async runtime: {e}"));
            Exit::TempFail.into()
        }
    }
}

fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Where `healthcheck` connects: `--url`, else the listen address with
/// an unspecified IP (0.0.0.0, ::) replaced by loopback, else the default.
pub fn health_target(args: &HealthcheckArgs) -> Result<Target, String> {
    if let Some(url) = &args.url {
        return Ok(url.clone());
    }
    let Some(listen) = args.listen.as_deref() else {
        return DEFAULT_URL.parse();
    };
    if listen.starts_with("unix:") {
        return listen.parse();
    }
    let mut addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| "DP_LISTEN is not HOST:PORT; pass --url".to_string())?;
    if addr.ip().is_unspecified() {
        let loopback = match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
    }
    format!("http://{addr}").parse()
}

/// `devicepass healthcheck`: exit 0 when `/healthz` answers 200, else 1.
pub async fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    let target = match health_target(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("devicepass healthcheck: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = match request(&target, Method::GET, "/healthz", Bytes::new()) {
        Ok(r) => exchange(&target, r, args.timeout).await,
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok((StatusCode::OK, _)) => ExitCode::SUCCESS,
        Ok((status, _)) => {
            eprintln!("devicepass healthcheck: {target} answered {status}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("devicepass healthcheck: {target}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The blocking entry point of `healthcheck`.
pub fn run_healthcheck(args: &HealthcheckArgs) -> ExitCode {
    match current_thread() {
        Ok(runtime) => runtime.block_on(healthcheck(args)),
        Err(e) => {
            eprintln!("devicepass healthcheck: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests;

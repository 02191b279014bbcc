//! The deployment kit: the Dockerfile (its environment runs the real
//! binary, its health check passes against it, its stages hang
//! together), the Kubernetes manifests (schema-checked by
//! kubernetes-validate, which bundles the schemas and runs offline, and
//! checked for the security settings and probes they promise), and the
//! listeners a deployment adds: `/metrics`, on its own address or not,
//! and the Unix socket.
//!
//! Docker itself is not run: images cannot be pulled here.
#![allow(clippy::disallowed_methods)] // tests read their own environment

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use devicepass::config::{Config, KEYS};
use serde_json::Value;

use crate::support::{self, BIN, Server, basic, free_port, request, wait_for_port};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

// --- Dockerfile ------------------------------------------------------------

/// One instruction: its keyword (upper case) and the rest of the line,
/// continuation lines joined.
struct Instruction {
    keyword: String,
    rest: String,
}

struct Stage {
    image: String,
    name: String,
    body: Vec<Instruction>,
}

fn dockerfile() -> Vec<Stage> {
    let text = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical_lines(&text) {
        let (keyword, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let keyword = keyword.to_ascii_uppercase();
        let rest = rest.trim().to_string();
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            let image = words.first().unwrap_or(&"").to_string();
            stages.push(Stage {
                image,
                name,
                body: Vec::new(),
            });
        } else {
            let stage = stages.last_mut().expect("an instruction before FROM");
            stage.body.push(Instruction { keyword, rest });
        }
    }
    stages
}

/// Instructions one per line: continuations joined, comments dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.body
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.rest.as_str())
    }

    fn one(&self, keyword: &str) -> &str {
        let found: Vec<&str> = self.all(keyword).collect();
        assert_eq!(found.len(), 1, "one {keyword} expected in {}", self.name);
        found[0]
    }

    /// `ENV` settings in order (`KEY=value` pairs; values without spaces).
    fn env(&self) -> Vec<(String, String)> {
        self.all("ENV")
            .flat_map(str::split_whitespace)
            .map(|pair| {
                let (k, v) = pair.split_once('=').expect("ENV KEY=value");
                assert!(!v.contains('"'), "quoted ENV values are not parsed here");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn env_value(&self, key: &str) -> String {
        let env = self.env();
        let found = env.iter().find(|(k, _)| k == key);
        found.map(|(_, v)| v.clone()).expect("ENV present")
    }

    /// An exec-form (JSON array) command of `keyword`.
    fn exec(&self, keyword: &str) -> Vec<String> {
        let rest = self.one(keyword);
        let json = rest.find('[').map(|i| &rest[i..]).expect("exec form");
        serde_json::from_str(json).expect("JSON array")
    }

    /// `COPY` sources and destination, without `--flags`.
    fn copies(&self) -> Vec<(Option<String>, Vec<String>, String)> {
        self.all("COPY")
            .map(|rest| {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let from = words
                    .iter()
                    .find_map(|w| w.strip_prefix("--from="))
                    .map(str::to_string);
                let plain: Vec<String> = words
                    .iter()
                    .filter(|w| !w.starts_with("--"))
                    .map(|w| w.to_string())
                    .collect();
                let (dest, sources) = plain.split_last().expect("COPY SRC DEST");
                (from, sources.to_vec(), dest.clone())
            })
            .collect()
    }
}

fn runtime_stage(stages: &[Stage]) -> &Stage {
    stages.last().expect("a stage")
}

/// The container's environment with what must be private to this test
/// swapped: the port (shared machine, loopback only) and the data path.
fn test_environment(runtime: &Stage, dir: &Path, port: u16) -> Vec<(String, String)> {
    let workdir = runtime.one("WORKDIR").to_string();
    runtime
        .env()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "DP_LISTEN" => (k, format!("127.0.0.1:{port}")),
            _ => {
                let v = v.replace(&workdir, &dir.display().to_string());
                (k, v)
            }
        })
        .collect()
}

/// The image's path to the binary, swapped for the one cargo built.
fn local_command(argv: &[String], image_binary: &str) -> Command {
    assert_eq!(argv[0], image_binary, "runs the binary the image copies in");
    let mut command = Command::new(BIN);
    command.args(&argv[1..]);
    command
}

#[test]
fn binary_runs_with_the_dockerfile_environment_and_its_healthcheck_passes() {
    let stages = dockerfile();
    let runtime = runtime_stage(&stages);
    let entry = runtime.exec("ENTRYPOINT");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let env = test_environment(runtime, dir.path(), port);
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let mut argv = entry.clone();
    argv.extend(runtime.exec("CMD"));
    let mut child = local_command(&argv, &entry[0])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start devicepass");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(addr);

    let health = healthcheck(runtime, &entry[0], &env);
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    assert_eq!(request(addr, "GET", "/readyz", &[], b"").status, 200);
    // The SQLite default landed in the (stand-in) working directory.
    assert!(dir.path().join("devicepass.db").exists());

    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).expect("log");
    let first = log.lines().next().unwrap_or_default();
    assert!(
        serde_json::from_str::<Value>(first).is_ok(),
        "JSON logs: {first}"
    );
    let after = healthcheck(runtime, &entry[0], &env);
    assert_eq!(
        after.status.code(),
        Some(1),
        "fails once the service is gone"
    );
}

fn healthcheck(runtime: &Stage, binary: &str, env: &[(String, String)]) -> Output {
    let argv = runtime.exec("HEALTHCHECK");
    local_command(&argv, binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run the health check")
}

#[test]
fn dockerfile_stages_hang_together() {
    let stages = dockerfile();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["build", "runtime"]);
    let runtime = runtime_stage(&stages);
    assert!(
        runtime.image.contains("distroless") || runtime.image.contains("-slim"),
        "a small final image, not {}",
        runtime.image
    );
    for (source, _, dest) in runtime.copies() {
        assert_eq!(
            source.as_deref(),
            Some("build"),
            "{dest} comes from the build"
        );
    }
    let entry = runtime.exec("ENTRYPOINT");
    assert!(
        runtime
            .copies()
            .iter()
            .any(|(_, _, dest)| dest == &entry[0])
    );
    let health = runtime.exec("HEALTHCHECK");
    assert_eq!(health[..2], [entry[0].clone(), "healthcheck".into()]);
    assert_runs_unprivileged(runtime);
    assert_build_inputs_exist(&stages[0]);
}

fn assert_runs_unprivileged(runtime: &Stage) {
    let user = runtime.one("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap_or_default()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0, "not root");
    let copied_home = runtime
        .copies()
        .into_iter()
        .any(|(_, _, dest)| dest == runtime.one("WORKDIR"));
    assert!(
        copied_home,
        "the working directory is created owned by the user"
    );
    assert!(
        runtime
            .all("COPY")
            .any(|c| c.contains(&format!("--chown={user}")))
    );
}

fn assert_build_inputs_exist(build: &Stage) {
    for (from, sources, _) in build.copies() {
        assert!(from.is_none());
        for source in sources {
            assert!(repo(&source).exists(), "COPY {source}: no such path");
        }
    }
    // The binary embeds the word list; the build needs data/.
    let copied: Vec<String> = build.copies().into_iter().flat_map(|c| c.1).collect();
    assert!(copied.iter().any(|c| c == "data"), "data/ is copied");
}

#[test]
fn dockerfile_configures_only_known_settings_and_no_secrets() {
    let stages = dockerfile();
    let runtime = runtime_stage(&stages);
    for (key, value) in runtime.env() {
        let known = KEYS.iter().any(|k| k.env.contains(&key.as_str()));
        assert!(known, "{key} is not a devicepass setting");
        assert!(!value.contains('@'), "{key}: no credentials in an image");
    }
    let listen = runtime.env_value("DP_LISTEN");
    let port = listen.rsplit(':').next().expect("port");
    assert!(listen.starts_with("0.0.0.0:"), "reachable from outside");
    assert_eq!(runtime.one("EXPOSE"), port);
    // The same defaults the binary would accept.
    let vars = runtime.env();
    let loaded = Config::load_from(None, vars).map_err(|e| e.to_string());
    assert!(loaded.expect("valid settings").warnings.is_empty());
}

#[test]
fn readme_build_instructions_match_the_dockerfile() {
    let command = "docker build -t devicepass .";
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains(command),
        "the Dockerfile names its build command"
    );
    let readme = std::fs::read_to_string(repo("README.md")).expect("README");
    if readme.contains("docker build") {
        assert!(
            readme.contains(command),
            "README builds the image the same way"
        );
    }
    // `--target` in the README must name a stage.
    let stages = dockerfile_stage_names();
    for target in readme.split("--target ").skip(1) {
        let name = target.split_whitespace().next().unwrap_or_default();
        assert!(stages.iter().any(|s| s == name), "no stage {name}");
    }
}

fn dockerfile_stage_names() -> Vec<String> {
    dockerfile().into_iter().map(|s| s.name).collect()
}

// --- Kubernetes --------------------------------------------------------------

fn manifests() -> Vec<PathBuf> {
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// kubernetes-validate: `DEVICEPASS_TEST_KUBERNETES_VALIDATE` (set by
/// scripts/test), else on PATH. Missing is a failure under scripts/test.
fn validator() -> Option<PathBuf> {
    let named = std::env::var_os("DEVICEPASS_TEST_KUBERNETES_VALIDATE").map(PathBuf::from);
    let on_path = || {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("kubernetes-validate"))
            .find(|p| p.exists())
    };
    let found = named.filter(|p| p.exists()).or_else(on_path);
    if found.is_none() {
        let required = std::env::var("DEVICEPASS_TEST_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "kubernetes-validate is missing; scripts/test installs it"
        );
        eprintln!("Kubernetes manifests not validated: kubernetes-validate is missing");
    }
    found
}

#[test]
fn kubernetes_manifests_pass_the_schema_check() {
    let Some(validator) = validator() else { return };
    let out = Command::new(&validator)
        .args(["--strict", "--quiet"])
        .args(manifests())
        .output()
        .expect("run kubernetes-validate");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("ERROR"), "{report}");
}

/// Every document of every manifest, read by the validator's own Python
/// (which has PyYAML) and handed over as JSON.
fn documents(validator: &Path) -> Vec<Value> {
    let python = validator.with_file_name("python3");
    let python = if python.exists() {
        python
    } else {
        "python3".into()
    };
    let script = "import json, sys, yaml\n\
        print(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let out = Command::new(python)
        .args(["-c", script])
        .args(manifests())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON documents")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn kubernetes_pods_are_locked_down_and_probed() {
    let Some(validator) = validator() else { return };
    let docs = documents(&validator);
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(
        deployments.len(),
        2,
        "the sidecar and the shared Deployment"
    );
    for deployment in deployments {
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        for container in pod["containers"].as_array().expect("containers") {
            assert_locked_down(container);
            if container["name"] == "devicepass" {
                assert_devicepass_container(&docs, pod, container);
            }
        }
    }
}

fn assert_locked_down(container: &Value) {
    let security = &container["securityContext"];
    let name = &container["name"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(
        security["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{name}"
    );
}

fn assert_devicepass_container(docs: &[Value], pod: &Value, container: &Value) {
    let env = container_env(docs, container);
    let listen = env
        .iter()
        .find(|(k, _)| k == "DP_LISTEN")
        .expect("DP_LISTEN");
    let port: u64 = listen
        .1
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path);
        assert_eq!(
            named_port(container, &get["port"]),
            port,
            "{probe} hits DP_LISTEN"
        );
    }
    let file = env
        .iter()
        .find(|(k, _)| k == "DP_DATABASE_URL_FILE")
        .expect("URL file");
    assert!(
        secret_mounted(pod, container, &file.1),
        "{} is in a Secret",
        file.1
    );
    // The settings are valid as devicepass reads them (the URL file stands
    // in as a SQLite URL: the Secret is not here).
    let vars = env
        .iter()
        .filter(|(k, _)| k != "DP_DATABASE_URL_FILE")
        .chain(&[("DP_DATABASE_URL".into(), "sqlite:///x.db".into())])
        .cloned()
        .collect::<Vec<(String, String)>>();
    let loaded = Config::load_from(None, vars).map_err(|e| e.to_string());
    assert!(loaded.expect("valid settings").warnings.is_empty());
}

/// The container's variables: its ConfigMaps' data, then its own `env`.
fn container_env(docs: &[Value], container: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let name = &source["configMapRef"]["name"];
        let map = of_kind(docs, "ConfigMap")
            .into_iter()
            .find(|m| &m["metadata"]["name"] == name)
            .expect("the ConfigMap is in deploy/kubernetes");
        for (k, v) in map["data"].as_object().expect("data") {
            env.push((k.clone(), v.as_str().expect("string").to_string()));
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let value = var["value"].as_str().expect("a plain value").to_string();
        env.push((var["name"].as_str().expect("name").to_string(), value));
    }
    env
}

fn named_port(container: &Value, port: &Value) -> u64 {
    if let Some(number) = port.as_u64() {
        return number;
    }
    let ports = container["ports"].as_array().expect("ports");
    let found = ports
        .iter()
        .find(|p| &p["name"] == port)
        .expect("named port");
    found["containerPort"].as_u64().expect("number")
}

fn secret_mounted(pod: &Value, container: &Value, file: &str) -> bool {
    let mounts = container["volumeMounts"].as_array().into_iter().flatten();
    let volumes = pod["volumes"].as_array().into_iter().flatten();
    let secrets: Vec<&Value> = volumes.filter(|v| v["secret"].is_object()).collect();
    mounts
        .filter(|m| file.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .any(|m| secrets.iter().any(|s| s["name"] == m["name"]))
}

// --- Listeners: /metrics and the Unix socket ---------------------------

struct Device {
    dir: tempfile::TempDir,
    url: String,
    login: String,
    password: String,
}

fn device() -> Device {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    support::add_user(&url, "frank", "frank@example.org");
    let (_, login, password) = support::create_token(&url, "frank", &[]);
    Device {
        dir,
        url,
        login,
        password,
    }
}

/// The value of one series in a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            let mut got: Vec<String> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            got.sort();
            n == name && got == wanted
        })
        .and_then(|(_, value)| value.parse().ok())
}

fn scrape(addr: SocketAddr) -> String {
    let reply = request(addr, "GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header_str("Content-Type")
            .starts_with("text/plain; version=0.0.4")
    );
    String::from_utf8(reply.body).expect("UTF-8")
}

#[test]
fn metrics_count_verifications_by_result_and_service_on_their_own_listener() {
    let d = device();
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = metrics.to_string();
    let env = [
        ("DP_DATABASE_URL", d.url.as_str()),
        ("DP_METRICS_LISTEN", listen.as_str()),
        ("DP_HASH_WORKERS", "2"),
    ];
    let server = Server::start(d.dir.path(), &env);
    wait_for_port(metrics);
    let right = basic(&d.login, &d.password);
    let wrong = basic(&d.login, "wrong");
    let auth = |path, value: &str| {
        request(
            server.addr,
            "GET",
            path,
            &[("Authorization", value.as_bytes())],
            b"",
        )
    };
    assert_eq!(auth("/auth/webdav", &right).status, 200);
    assert_eq!(auth("/auth/webdav", &right).status, 200);
    assert_eq!(auth("/auth/webdav", &wrong).status, 401);
    assert_eq!(request(server.addr, "GET", "/auth", &[], b"").status, 401);
    assert_eq!(auth("/auth/envoy/original/path", &right).status, 200);

    // Only the metrics listener answers /metrics, and only that.
    assert_eq!(
        request(server.addr, "GET", "/metrics", &[], b"").status,
        404
    );
    assert_eq!(auth_on(metrics, &right).status, 404);
    let text = scrape(metrics);
    let verifications = |result, service| {
        let labels = [("result", result), ("service", service)];
        sample(&text, "devicepass_verifications_total", &labels)
    };
    assert_eq!(verifications("granted", "webdav"), Some(2.0));
    assert_eq!(verifications("denied", "webdav"), Some(1.0));
    assert_eq!(verifications("denied", "none"), Some(1.0), "no credentials");
    assert_eq!(
        verifications("granted", "envoy"),
        Some(1.0),
        "first segment"
    );
    assert_http_and_cache_counts(&text);
}

fn auth_on(addr: SocketAddr, value: &str) -> support::Reply {
    request(
        addr,
        "GET",
        "/auth",
        &[("Authorization", value.as_bytes())],
        b"",
    )
}

fn assert_http_and_cache_counts(text: &str) {
    let http = |route, status| {
        let labels = [("route", route), ("status", status)];
        sample(text, "devicepass_http_requests_total", &labels)
    };
    assert_eq!(http("/auth/{service}", "200"), Some(3.0));
    assert_eq!(http("/auth/{service}", "401"), Some(1.0));
    assert_eq!(http("/auth", "401"), Some(1.0));
    assert_eq!(http("/metrics", "404"), Some(1.0));
    // First grant and the wrong password hash; the repeats hit the cache.
    assert_eq!(
        sample(text, "devicepass_cache_misses_total", &[]),
        Some(2.0)
    );
    assert_eq!(sample(text, "devicepass_cache_hits_total", &[]), Some(2.0));
    assert_eq!(
        sample(text, "devicepass_hash_seconds_count", &[]),
        Some(2.0)
    );
    let lookups = sample(
        text,
        "devicepass_store_seconds_count",
        &[("query", "by_login")],
    );
    assert_eq!(lookups, Some(4.0));
    assert_eq!(sample(text, "devicepass_hash_queue_depth", &[]), Some(0.0));
    assert_eq!(sample(text, "devicepass_hash_workers", &[]), Some(2.0));
    for name in ["devicepass_verifications_total", "devicepass_hash_seconds"] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has help");
    }
}

#[test]
fn metrics_count_store_errors_as_unavailable_on_the_main_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("postgresql://dp@127.0.0.1:{}/dp", free_port());
    let env = [
        ("DP_DATABASE_URL", url.as_str()),
        ("DP_AUTO_MIGRATE", "false"),
    ];
    let server = Server::start(dir.path(), &env);
    let reply = auth_on(server.addr, &basic("frank", "secret"));
    assert_eq!(reply.status, 503);
    let text = scrape(server.addr);
    let labels = [("result", "unavailable"), ("service", "none")];
    assert_eq!(
        sample(&text, "devicepass_verifications_total", &labels),
        Some(1.0)
    );
    let labels = [("query", "by_login"), ("kind", "error")];
    assert_eq!(
        sample(&text, "devicepass_store_errors_total", &labels),
        Some(1.0)
    );
}

/// One request over a Unix socket: status, head and body.
fn over_socket(path: &Path, target: &str, authorization: Option<&str>) -> (u16, String, String) {
    let mut stream = UnixStream::connect(path).expect("connect to the socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let raw =
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(raw.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn unix_socket_serves_the_same_routes_and_replaces_a_stale_socket() {
    let d = device();
    let socket = d.dir.path().join("dp.sock");
    drop(UnixListener::bind(&socket).expect("a stale socket"));
    let path = socket.display().to_string();
    let env = [
        ("DP_DATABASE_URL", d.url.as_str()),
        ("DP_UNIX_SOCKET", path.as_str()),
        ("DP_UNIX_SOCKET_MODE", "600"),
    ];
    let server = Server::start(d.dir.path(), &env);
    let metadata = std::fs::metadata(&socket).expect("socket");
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);

    let right = basic(&d.login, &d.password);
    let (status, head, _) = over_socket(&socket, "/auth/mail", Some(&right));
    assert_eq!(status, 200);
    assert!(head.contains("\r\nx-auth-user: frank\r\n"), "{head}");
    let (status, head, _) = over_socket(&socket, "/auth/mail", Some(&basic("frank", "x")));
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: basic realm=\"devicepass\""));
    assert_eq!(over_socket(&socket, "/healthz", None).0, 200);
    let (status, _, body) = over_socket(&socket, "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        body.contains("service=\"mail\""),
        "the socket's requests count too"
    );

    assert!(server.log_text().contains("replacing a stale unix socket"));
    assert!(server.terminate().success());
    assert!(!socket.exists(), "the socket is removed on shutdown");
}

/// Run `serve` expecting it to refuse to start; its stderr.
fn refused_start(dir: &Path, env: &[(&str, &str)]) -> String {
    let port = free_port().to_string();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("DP_LISTEN", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start devicepass");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("devicepass started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unix_socket_path_taken_by_a_file_or_a_live_socket_refuses_to_start() {
    let d = device();
    let file = d.dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").expect("file");
    let path = file.display().to_string();
    let env = [
        ("DP_DATABASE_URL", d.url.as_str()),
        ("DP_UNIX_SOCKET", path.as_str()),
    ];
    let stderr = refused_start(d.dir.path(), &env);
    assert!(
        stderr.contains(&path) && stderr.contains("not a socket"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).ok().as_deref(),
        Some("keep me")
    );

    let live = d.dir.path().join("live.sock");
    let _holder = UnixListener::bind(&live).expect("a live socket");
    let path = live.display().to_string();
    let env = [
        ("DP_DATABASE_URL", d.url.as_str()),
        ("DP_UNIX_SOCKET", path.as_str()),
    ];
    let stderr = refused_start(d.dir.path(), &env);
    assert!(stderr.contains("another process"), "{stderr}");
    assert!(live.exists(), "a live socket is left alone");
}

//! Assembling the running service from a [`Config`]: store, hasher,
//! verifier, use recorder, metrics and HTTP listeners, and taking them
//! down in order.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::hash::{HashPolicy, Hasher};
use crate::http::{self, App, Listeners};
use crate::oidc::Oidc;
use crate::passgen::Wordlist;
use crate::store::{self, Store, StoreError};
use crate::tokens::TokenMaker;
use crate::verify::uses::UseRecorder;
use crate::verify::{Settings, Verifier};
use crate::web::Web;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    // The cause is the error's source: `{e:#}` prints it after this.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on unix socket {}: {reason}", path.display())]
    Unix { path: PathBuf, reason: String },
    #[error("cannot load the word list: {0}")]
    Wordlist(String),
    #[error("cannot start hashing threads: {0}")]
    Threads(std::io::Error),
}

/// Open the configured store (migrating it when so configured).
pub async fn open_store(config: &Config, migrate: bool) -> Result<Arc<dyn Store>, StoreError> {
    let store = store::open(&config.database_url, &config.pool_options())?;
    if migrate {
        store.migrate().await?;
        tracing::info!(database = %config.database_url.redacted(), "schema up to date");
    }
    Ok(store)
}

/// The hasher for new and prefix-less passwords, with the default policy.
pub fn hasher(config: &Config) -> Hasher {
    Hasher::new(config.password_hash, HashPolicy::default())
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when it has a listener of its own.
    pub metrics_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stop accepting, drain in-flight requests, write pending use records.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if self.task.await.is_err() {
            tracing::error!("server task failed");
        }
    }
}

/// Start serving `config.listen` (and the Unix socket and the metrics
/// listener, when configured) with the given hasher and clock.
pub async fn start(
    config: &Config,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
) -> Result<Running, StartError> {
    let store = open_store(config, config.auto_migrate).await?;
    let (uses, _writer) = UseRecorder::spawn(Arc::clone(&store), config.use_flush_interval);
    let hasher = Arc::new(hasher);
    let verifier = Verifier::new(
        Arc::clone(&store),
        Arc::clone(&hasher),
        Arc::clone(&clock),
        uses,
        settings(config),
    )
    .map_err(StartError::Threads)?;
    let maker = TokenMaker {
        store: Arc::clone(&store),
        hasher,
        wordlist: Arc::new(
            Wordlist::load(config.wordlist.as_deref())
                .map_err(|e| StartError::Wordlist(e.to_string()))?,
        ),
        clock,
        max_expiration_days: config.max_expiration_days,
    };
    let oidc = config.oidc.clone().map(Oidc::start);
    let web = Web::new(config, oidc, Arc::clone(&store), maker);
    http::metrics::install();
    let app = Arc::new(App {
        verifier,
        store,
        headers: config.headers.clone(),
        challenge: http::response::challenge(&config.realm),
        store_timeout: config.store_timeout,
        metrics_on_main: config.metrics_listen.is_none(),
        web,
    });
    let listeners = bind(config).await?;
    let addr = local_addr(&listeners.tcp, config.listen)?;
    let metrics_addr = match (&listeners.metrics, config.metrics_listen) {
        (Some(listener), Some(wanted)) => Some(local_addr(listener, wanted)?),
        _ => None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(run(listeners, Arc::clone(&app), config, shutdown));
    tracing::info!(
        %addr,
        metrics = ?metrics_addr,
        unix_socket = ?config.unix_socket,
        database = %config.database_url.redacted(),
        "serving"
    );
    Ok(Running {
        addr,
        metrics_addr,
        app,
        stop: Some(stop),
        task,
    })
}

fn settings(config: &Config) -> Settings {
    Settings {
        max_candidates: config.max_candidates,
        cache_capacity: config.cache_size,
        cache_ttl: config.cache_ttl,
        hash_workers: config.hash_workers,
        hash_queue: config.hash_queue,
        store_timeout: config.store_timeout,
    }
}

/// Serve until `shutdown`, then drain, write pending uses and remove the
/// Unix socket file.
fn run(
    listeners: Listeners,
    app: Arc<App>,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let grace = config.shutdown_grace;
    let socket = config.unix_socket.clone();
    async move {
        let upkeep = tokio::spawn(http::metrics::upkeep());
        let purge = tokio::spawn(purge_sessions(Arc::clone(&app)));
        http::serve(listeners, Arc::clone(&app), shutdown, grace).await;
        upkeep.abort();
        purge.abort();
        app.verifier.uses().close().await;
        if let Some(path) = socket {
            remove_socket(&path);
        }
    }
}

/// How often expired sessions and abandoned sign-ins are deleted.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Delete expired session rows now and then (every replica does; the
/// deletes are idempotent). Only when sign-in is configured.
async fn purge_sessions(app: Arc<App>) {
    if app.web.oidc.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        match app.store.purge_sessions(app.web.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "expired sessions deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete expired sessions"),
        }
    }
}

async fn bind(config: &Config) -> Result<Listeners, StartError> {
    let tcp = bind_tcp(config.listen).await?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(bind_tcp(addr).await?),
        None => None,
    };
    let unix = match &config.unix_socket {
        Some(path) => Some(bind_unix(path, config.unix_socket_mode)?),
        None => None,
    };
    Ok(Listeners { tcp, unix, metrics })
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// Bind a Unix socket at `path` with permission bits `mode`. A socket
/// file left by an earlier run is replaced; anything else there, or a
/// socket another process still answers on, is refused.
fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener, StartError> {
    let fail = |reason: String| StartError::Unix {
        path: path.to_owned(),
        reason,
    };
    clear_stale_socket(path).map_err(fail)?;
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    // Until this runs the socket has the umask's bits; no connection is
    // accepted before it, and with the usual umask only the owner could
    // connect in between.
    let permissions = std::fs::Permissions::from_mode(mode);
    if let Err(e) = std::fs::set_permissions(path, permissions) {
        remove_socket(path);
        return Err(fail(format!("cannot set its mode: {e}")));
    }
    Ok(listener)
}

fn clear_stale_socket(path: &Path) -> Result<(), String> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    if !metadata.file_type().is_socket() {
        return Err("a file that is not a socket is in the way".into());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err("another process is serving on it".into());
    }
    tracing::info!(path = %path.display(), "replacing a stale unix socket");
    std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket: {e}"))
}

fn remove_socket(path: &Path) {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the unix socket");
    }
}

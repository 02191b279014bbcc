//! Assembling the running service from a [`Config`]: store, hasher,
//! verifier, use recorder and HTTP server, and taking them down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::hash::{HashPolicy, Hasher};
use crate::http::{self, App};
use crate::store::{self, Store, StoreError};
use crate::verify::uses::UseRecorder;
use crate::verify::{Settings, Verifier};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
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

/// Start serving `config.listen` with the given hasher and clock.
pub async fn start(
    config: &Config,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
) -> Result<Running, StartError> {
    let store = open_store(config, config.auto_migrate).await?;
    let (uses, _writer) = UseRecorder::spawn(Arc::clone(&store), config.use_flush_interval);
    let settings = Settings {
        max_candidates: config.max_candidates,
        cache_capacity: config.cache_size,
        cache_ttl: config.cache_ttl,
        hash_workers: config.hash_workers,
        hash_queue: config.hash_queue,
        store_timeout: config.store_timeout,
    };
    let verifier = Verifier::new(Arc::clone(&store), Arc::new(hasher), clock, uses, settings)
        .map_err(StartError::Threads)?;
    let app = Arc::new(App {
        verifier,
        store,
        headers: config.headers.clone(),
        challenge: http::response::challenge(&config.realm),
        store_timeout: config.store_timeout,
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let grace = config.shutdown_grace;
    let served = Arc::clone(&app);
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        http::serve(listener, Arc::clone(&served), shutdown, grace).await;
        served.verifier.uses().flush().await;
    });
    tracing::info!(%addr, database = %config.database_url.redacted(), "serving");
    Ok(Running {
        addr,
        app,
        stop: Some(stop),
        task,
    })
}

//! Recording token uses without a database write on the request path.
//!
//! A successful verification sends (token, time) to a background task,
//! which keeps the latest time per token and writes one `logs` row per
//! token each flush interval. A full channel drops the record (the
//! "last used" display is a convenience, not an audit log); a failed flush
//! keeps its records for the next try.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::store::Store;

/// Records kept while the database is unreachable, at most.
const MAX_PENDING: usize = 100_000;
/// Records in flight to the background task, at most.
const CHANNEL: usize = 4096;

enum Message {
    Use(Uuid, NaiveDateTime),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct UseRecorder {
    tx: mpsc::Sender<Message>,
}

impl UseRecorder {
    /// Start the background writer; it ends when every recorder is dropped.
    pub fn spawn(store: Arc<dyn Store>, interval: Duration) -> (UseRecorder, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let task = tokio::spawn(run(store, rx, interval));
        (UseRecorder { tx }, task)
    }

    pub fn record(&self, token: Uuid, at: NaiveDateTime) {
        if self.tx.try_send(Message::Use(token, at)).is_err() {
            tracing::debug!(token_id = %token, "use record dropped");
        }
    }

    /// Write what is pending now, and wait until that is done.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Write what is pending and end the background task; later uses are
    /// dropped. Called at shutdown, so that no timer of the task is still
    /// armed while the runtime goes down (tokio panics on that).
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Message>, interval: Duration) {
    let mut pending: HashMap<Uuid, NaiveDateTime> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Use(id, at)) => note(&mut pending, id, at),
                Some(Message::Flush(done)) => {
                    write(store.as_ref(), &mut pending).await;
                    let _ = done.send(());
                }
                Some(Message::Close(done)) => {
                    write(store.as_ref(), &mut pending).await;
                    let _ = done.send(());
                    return;
                }
                None => break,
            },
            _ = ticker.tick() => write(store.as_ref(), &mut pending).await,
        }
    }
    write(store.as_ref(), &mut pending).await;
}

fn note(pending: &mut HashMap<Uuid, NaiveDateTime>, id: Uuid, at: NaiveDateTime) {
    if pending.len() >= MAX_PENDING && !pending.contains_key(&id) {
        return;
    }
    let latest = pending.entry(id).or_insert(at);
    *latest = (*latest).max(at);
}

async fn write(store: &dyn Store, pending: &mut HashMap<Uuid, NaiveDateTime>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<(Uuid, NaiveDateTime)> = pending.iter().map(|(k, v)| (*k, *v)).collect();
    match store.record_uses(&batch).await {
        Ok(()) => {
            tracing::debug!(count = batch.len(), "token uses recorded");
            pending.clear();
        }
        Err(e) => tracing::warn!(error = %e, count = batch.len(), "token uses not recorded yet"),
    }
}

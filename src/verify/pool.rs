//! A bounded pool of threads for slow password hashing.
//!
//! Slow hashes (argon2id, bcrypt, scrypt, …) take tens to hundreds of
//! milliseconds and up to 64 MiB each. Running them on the async reactor
//! would stall every other request; running them on an unbounded blocking
//! pool lets a burst allocate without limit. Here a fixed number of worker
//! threads (about one per core) take jobs from a bounded queue; when the
//! queue is full, [`HashPool::submit`] fails at once, so the caller can
//! answer 503 instead of piling requests up.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The queue is full, or the pool is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hashing queue is full")]
pub struct Busy;

pub struct HashPool {
    sender: SyncSender<Job>,
    queued: Arc<AtomicUsize>,
    workers: usize,
}

impl HashPool {
    /// `workers` threads, and room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let (sender, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let queued = Arc::new(AtomicUsize::new(0));
        for n in 0..workers {
            let receiver = Arc::clone(&receiver);
            let queued = Arc::clone(&queued);
            thread::Builder::new()
                .name(format!("devicepass-hash-{n}"))
                .spawn(move || work(&receiver, &queued))?;
        }
        Ok(HashPool {
            sender,
            queued,
            workers,
        })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Jobs accepted and not yet finished.
    pub fn depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queue `job`; its result arrives on the returned receiver.
    pub fn submit<R, F>(&self, job: F) -> Result<oneshot::Receiver<R>, Busy>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let queued = Arc::clone(&self.queued);
        let boxed: Job = Box::new(move || {
            let result = job();
            // Counted out before the answer goes, so whoever reads the
            // depth after getting an answer sees this job finished.
            queued.fetch_sub(1, Ordering::Relaxed);
            // The requester may have gone away; its answer is then unwanted.
            let _ = tx.send(result);
        });
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(boxed) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }
}

fn work(receiver: &Mutex<Receiver<Job>>, queued: &AtomicUsize) {
    loop {
        let job = {
            let guard = receiver.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        let Ok(job) = job else { return };
        // A panicking job must not take its worker thread with it; the
        // requester sees its answer channel closed.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            // The job did not get to count itself out.
            queued.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("hashing job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[tokio::test]
    async fn runs_jobs_and_returns_results() {
        let pool = HashPool::new(2, 4).expect("threads start");
        let rx = pool.submit(|| 6 * 7).expect("room in the queue");
        assert_eq!(rx.await.ok(), Some(42));
    }

    #[tokio::test]
    async fn refuses_at_once_when_full() {
        let pool = HashPool::new(1, 1).expect("threads start");
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let gate = Arc::new(Barrier::new(2));
        let held = Arc::clone(&gate);
        let first = pool
            .submit(move || {
                let _ = started_tx.send(());
                held.wait();
            })
            .expect("worker free");
        // Once the worker runs the first job, one more fits in the queue.
        started_rx.recv().expect("worker started");
        let second = pool.submit(|| ()).expect("queue has room");
        assert_eq!(pool.depth(), 2);
        assert_eq!(pool.submit(|| ()).err(), Some(Busy));
        gate.wait();
        assert!(first.await.is_ok());
        assert!(second.await.is_ok());
    }
}

//! Deciding whether a username and password are a valid device password.
//!
//! The steps, in order: look the candidate tokens up (by login, else by
//! the owner's username or email; expired tokens never match); accept at
//! once when the verified-hash cache knows the pair; otherwise check the
//! stored hashes on the bounded hashing pool. A refusal always costs at
//! least one slow hash (a dummy one when nothing slow was checked), so an
//! unknown user, an expired token and a wrong password look alike.

pub mod cache;
pub mod credentials;
pub mod pool;
pub mod uses;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::clock::Clock;
use crate::hash::Hasher;
use crate::secret::Secret;
use crate::store::{Candidate, Store, StoreError};
use cache::VerifiedCache;
pub use credentials::Credentials;
use pool::HashPool;
use uses::UseRecorder;

/// Who a matching device password belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub email: String,
    pub sub: String,
    pub login: String,
    pub token_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Granted(Identity),
    Denied,
}

/// The verifier cannot decide; the answer must be "try later", never a no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the database is unavailable")]
    Unavailable,
    #[error("the hashing queue is full")]
    Busy,
    #[error("password check failed")]
    Internal,
}

/// Tunables, from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_candidates: usize,
    pub cache_capacity: u64,
    pub cache_ttl: Duration,
    pub hash_workers: usize,
    pub hash_queue: usize,
    pub store_timeout: Duration,
}

pub struct Verifier {
    store: Arc<dyn Store>,
    hasher: Arc<Hasher>,
    clock: Arc<dyn Clock>,
    cache: VerifiedCache,
    pool: HashPool,
    uses: UseRecorder,
    dummy: Arc<String>,
    settings: Settings,
    slow_hashes: Arc<AtomicU64>,
}

impl Verifier {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: Arc<Hasher>,
        clock: Arc<dyn Clock>,
        uses: UseRecorder,
        settings: Settings,
    ) -> std::io::Result<Self> {
        let pool = HashPool::new(settings.hash_workers, settings.hash_queue)?;
        let cache = VerifiedCache::new(settings.cache_capacity, settings.cache_ttl);
        let dummy = Arc::new(hasher.dummy());
        Ok(Verifier {
            store,
            hasher,
            clock,
            cache,
            pool,
            uses,
            dummy,
            settings,
            slow_hashes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Slow hash computations so far, dummy ones included.
    pub fn slow_hashes(&self) -> u64 {
        self.slow_hashes.load(Ordering::Relaxed)
    }

    /// Hashing jobs accepted and not yet finished.
    pub fn queue_depth(&self) -> usize {
        self.pool.depth()
    }

    pub fn uses(&self) -> &UseRecorder {
        &self.uses
    }

    pub async fn verify(&self, credentials: &Credentials) -> Result<Outcome, VerifyError> {
        if credentials.is_empty() {
            self.check_slowly(Vec::new(), &credentials.password).await?;
            return Ok(Outcome::Denied);
        }
        let now = self.clock.now();
        let candidates = self.lookup(&credentials.username, now).await?;
        let password = credentials.password.expose();
        for candidate in &candidates {
            if self
                .cache
                .contains(&self.cache.key(candidate.hash.expose(), password))
            {
                return Ok(self.grant(candidate, password, now));
            }
        }
        let matched = self.check_slowly(candidates, &credentials.password).await?;
        Ok(match matched {
            Some(candidate) => self.grant(&candidate, password, now),
            None => Outcome::Denied,
        })
    }

    async fn lookup(&self, name: &str, now: NaiveDateTime) -> Result<Vec<Candidate>, VerifyError> {
        let by_login = self.store.candidate_by_login(name, now);
        let found = self.bounded(by_login).await?;
        let candidates = match found {
            Some(candidate) => vec![candidate],
            None => {
                let limit = self.settings.max_candidates;
                let by_user = self.store.candidates_by_user(name, now, limit);
                self.bounded(by_user).await?
            }
        };
        // The store filters by expiry too; this is the authoritative check.
        Ok(candidates
            .into_iter()
            .filter(|c| c.token.expires.is_none_or(|at| at > now))
            .collect())
    }

    async fn bounded<T>(
        &self,
        query: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, VerifyError> {
        match tokio::time::timeout(self.settings.store_timeout, query).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "token lookup failed");
                Err(VerifyError::Unavailable)
            }
            Err(_) => {
                tracing::warn!("token lookup timed out");
                Err(VerifyError::Unavailable)
            }
        }
    }

    /// Check the candidates on the hashing pool; the first match wins.
    async fn check_slowly(
        &self,
        candidates: Vec<Candidate>,
        password: &Secret<String>,
    ) -> Result<Option<Candidate>, VerifyError> {
        let hasher = Arc::clone(&self.hasher);
        let dummy = Arc::clone(&self.dummy);
        let counter = Arc::clone(&self.slow_hashes);
        let password = password.clone();
        let job = move || {
            let (matched, slow) = check_all(&hasher, &candidates, &password, &dummy);
            counter.fetch_add(slow, Ordering::Relaxed);
            matched.map(|i| candidates.into_iter().nth(i))
        };
        let answer = self.pool.submit(job).map_err(|_| {
            tracing::warn!(workers = self.pool.workers(), "hashing queue full");
            VerifyError::Busy
        })?;
        let matched = answer.await.map_err(|_| VerifyError::Internal)?;
        Ok(matched.flatten())
    }

    fn grant(&self, candidate: &Candidate, password: &str, now: NaiveDateTime) -> Outcome {
        self.cache
            .insert(self.cache.key(candidate.hash.expose(), password));
        self.uses.record(candidate.token.id, now);
        Outcome::Granted(Identity {
            username: candidate.user.username.clone(),
            email: candidate.user.email.clone(),
            sub: candidate.user.sub.clone(),
            login: candidate.token.login.clone(),
            token_name: candidate.token.name.clone(),
        })
    }
}

/// Runs on a hashing thread: the index of the first matching candidate,
/// and how many slow hashes were computed.
fn check_all(
    hasher: &Hasher,
    candidates: &[Candidate],
    password: &Secret<String>,
    dummy: &str,
) -> (Option<usize>, u64) {
    let password = password.expose();
    let mut slow = 0;
    for (index, candidate) in candidates.iter().enumerate() {
        let stored = candidate.hash.expose();
        if hasher.identify(stored).is_slow() {
            slow += 1;
        }
        match hasher.verify(stored, password) {
            Ok(true) => return (Some(index), slow),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(token_id = %candidate.token.id, error = %e, "stored hash unreadable");
            }
        }
    }
    if slow == 0 {
        // Refusals cost one slow hash, whatever the reason.
        let _ = hasher.verify(dummy, password);
        slow = 1;
    }
    (None, slow)
}

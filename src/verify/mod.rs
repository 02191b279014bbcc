//! Deciding whether a username and password are a valid device password.
//!
//! The steps, in order: look the candidate tokens up (by login, else by
//! the owner's username or email; expired tokens never match); accept at
//! once when the verified-hash cache knows the pair; otherwise check the
//! stored hashes on the bounded hashing pool. A refusal always costs at
//! least one slow hash (a dummy one when nothing slow was checked), so an
//! unknown user, an expired token and a wrong password look alike.
//!
//! The verifier records its own metrics (cache, hashing, store) and
//! leaves each verdict where the HTTP layer can label it by route.

pub mod cache;
pub mod credentials;
pub mod pool;
pub mod uses;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// How one verification ended, as counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Granted,
    Denied,
    Unavailable,
    Busy,
}

impl Verdict {
    fn of(result: &Result<Outcome, VerifyError>) -> Verdict {
        match result {
            Ok(Outcome::Granted(_)) => Verdict::Granted,
            Ok(Outcome::Denied) => Verdict::Denied,
            Err(VerifyError::Busy) => Verdict::Busy,
            Err(VerifyError::Unavailable | VerifyError::Internal) => Verdict::Unavailable,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Granted => "granted",
            Verdict::Denied => "denied",
            Verdict::Unavailable => "unavailable",
            Verdict::Busy => "busy",
        }
    }
}

tokio::task_local! {
    // Only the HTTP layer knows the service a verification was for, so
    // the verdict is left here for it rather than counted by the verifier.
    static VERDICT: Cell<Option<Verdict>>;
}

/// Run `task`, and return with its output the verdict of the last
/// verification made within it (`None` when the verifier was not asked).
pub async fn observe<F: Future>(task: F) -> (F::Output, Option<Verdict>) {
    let watched = async {
        let output = task.await;
        (output, VERDICT.with(Cell::get))
    };
    VERDICT.scope(Cell::new(None), watched).await
}

/// Give the metrics recorded here their help texts.
pub fn describe_metrics() {
    metrics::describe_counter!(
        CACHE_HITS,
        "Verifications answered from the verified-hash cache"
    );
    metrics::describe_counter!(CACHE_MISSES, "Verifications that needed a slow hash check");
    metrics::describe_histogram!(HASH_SECONDS, "Hashing time of one verification");
    metrics::describe_histogram!(HASH_WAIT_SECONDS, "Time spent waiting for a hashing thread");
    metrics::describe_histogram!(STORE_SECONDS, "Latency of token lookups, by query");
    metrics::describe_counter!(STORE_ERRORS, "Failed or timed-out token lookups, by query");
}

const CACHE_HITS: &str = "devicepass_cache_hits_total";
const CACHE_MISSES: &str = "devicepass_cache_misses_total";
const HASH_SECONDS: &str = "devicepass_hash_seconds";
const HASH_WAIT_SECONDS: &str = "devicepass_hash_wait_seconds";
const STORE_SECONDS: &str = "devicepass_store_seconds";
const STORE_ERRORS: &str = "devicepass_store_errors_total";

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

    /// Threads of the hashing pool.
    pub fn workers(&self) -> usize {
        self.pool.workers()
    }

    /// Hashing jobs accepted and not yet finished.
    pub fn queue_depth(&self) -> usize {
        self.pool.depth()
    }

    pub fn uses(&self) -> &UseRecorder {
        &self.uses
    }

    pub async fn verify(&self, credentials: &Credentials) -> Result<Outcome, VerifyError> {
        let result = self.decide(credentials).await;
        // Outside `observe` (the command line) there is nobody to tell.
        let _ = VERDICT.try_with(|v| v.set(Some(Verdict::of(&result))));
        result
    }

    async fn decide(&self, credentials: &Credentials) -> Result<Outcome, VerifyError> {
        let floor = self.refusal_cost(&credentials.username);
        if credentials.is_empty() {
            self.check_slowly(Vec::new(), &credentials.password, floor)
                .await?;
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
                metrics::counter!(CACHE_HITS).increment(1);
                return Ok(self.grant(candidate, password, now));
            }
        }
        if !candidates.is_empty() {
            metrics::counter!(CACHE_MISSES).increment(1);
        }
        let matched = self
            .check_slowly(candidates, &credentials.password, floor)
            .await?;
        Ok(match matched {
            Some(candidate) => self.grant(&candidate, password, now),
            None => Outcome::Denied,
        })
    }

    async fn lookup(&self, name: &str, now: NaiveDateTime) -> Result<Vec<Candidate>, VerifyError> {
        let by_login = self.store.candidate_by_login(name, now);
        let found = self.bounded("by_login", by_login).await?;
        let candidates = match found {
            Some(candidate) => vec![candidate],
            None => {
                let limit = self.settings.max_candidates;
                let by_user = self.store.candidates_by_user(name, now, limit);
                self.bounded("by_user", by_user).await?
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
        name: &'static str,
        query: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, VerifyError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.settings.store_timeout, query).await;
        metrics::histogram!(STORE_SECONDS, "query" => name).record(started.elapsed());
        let kind = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "token lookup failed");
                "error"
            }
            Err(_) => {
                tracing::warn!("token lookup timed out");
                "timeout"
            }
        };
        metrics::counter!(STORE_ERRORS, "query" => name, "kind" => kind).increment(1);
        Err(VerifyError::Unavailable)
    }

    /// Slow hashes a refusal costs for this name, whatever the reason.
    ///
    /// A token login (`name#digits`, recognisable by its shape alone)
    /// selects one row, so a refusal costs one hash. Any other name may be
    /// a username or email with up to `max_candidates` tokens, each
    /// checked; refusing an unknown name more cheaply would tell which
    /// names exist, so every such refusal costs `max_candidates` hashes.
    fn refusal_cost(&self, name: &str) -> u64 {
        if looks_like_login(name) {
            1
        } else {
            self.settings.max_candidates.max(1) as u64
        }
    }

    /// Check the candidates on the hashing pool; the first match wins. A
    /// refusal is padded with dummy checks to `floor` slow hashes.
    async fn check_slowly(
        &self,
        candidates: Vec<Candidate>,
        password: &Secret<String>,
        floor: u64,
    ) -> Result<Option<Candidate>, VerifyError> {
        let hasher = Arc::clone(&self.hasher);
        let dummy = Arc::clone(&self.dummy);
        let counter = Arc::clone(&self.slow_hashes);
        let password = password.clone();
        let queued = Instant::now();
        let job = move || {
            let started = Instant::now();
            metrics::histogram!(HASH_WAIT_SECONDS).record(started - queued);
            let (matched, slow) = check_all(&hasher, &candidates, &password, &dummy, floor);
            counter.fetch_add(slow, Ordering::Relaxed);
            metrics::histogram!(HASH_SECONDS).record(started.elapsed());
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
    floor: u64,
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
    // Refusals cost the same whatever the reason (see `refusal_cost`).
    while slow < floor {
        let _ = hasher.verify(dummy, password);
        slow += 1;
    }
    (None, slow)
}

/// `name#digits`: the shape of a token login.
fn looks_like_login(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(user, n)| {
        !user.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leave(verdict: Verdict) {
        let _ = VERDICT.try_with(|v| v.set(Some(verdict)));
    }

    #[tokio::test]
    async fn observe_returns_the_verdict_left_within() {
        let seen = observe(async {
            leave(Verdict::Denied);
            leave(Verdict::Busy);
            7
        })
        .await;
        assert_eq!(seen, (7, Some(Verdict::Busy)));
        assert_eq!(observe(async { 7 }).await, (7, None));
        // Outside `observe` a verdict goes nowhere, without failing.
        leave(Verdict::Granted);
    }

    #[test]
    fn failures_are_unavailable_or_busy_never_denied() {
        let of = |e| Verdict::of(&Err(e)).label();
        assert_eq!(of(VerifyError::Busy), "busy");
        assert_eq!(of(VerifyError::Unavailable), "unavailable");
        assert_eq!(of(VerifyError::Internal), "unavailable");
        assert_eq!(Verdict::of(&Ok(Outcome::Denied)).label(), "denied");
    }
}

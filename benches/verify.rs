#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Cached against uncached verification, in-process, on a SQLite store
//! with one argon2id token (default policy). Prints means and the ratio.
//!
//! `cargo bench --bench verify`

use std::sync::Arc;
use std::time::{Duration, Instant};

use devicepass::clock::SystemClock;
use devicepass::hash::{HashPolicy, Hasher, Scheme};
use devicepass::secret::Secret;
use devicepass::store::{NewToken, SqliteStore, Store, Token, User};
use devicepass::verify::uses::UseRecorder;
use devicepass::verify::{Credentials, Outcome, Settings, Verifier};

fn settings(cache: u64) -> Settings {
    Settings {
        max_candidates: 5,
        cache_capacity: cache,
        cache_ttl: Duration::from_secs(300),
        hash_workers: 1,
        hash_queue: 16,
        store_timeout: Duration::from_secs(5),
    }
}

async fn mean(verifier: &Verifier, credentials: &Credentials, rounds: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..rounds {
        let outcome = verifier.verify(credentials).await;
        assert!(
            matches!(outcome, Ok(Outcome::Granted(_))),
            "bench token must verify"
        );
    }
    started.elapsed() / rounds
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&Some(dir.path().join("bench.db")), 4).expect("open"));
    store.migrate().await.expect("migrate");
    let user = User {
        sub: "s".into(),
        username: "bench".into(),
        email: "b@example.org".into(),
    };
    store.upsert_user(&user).await.expect("user");
    let hasher = Arc::new(Hasher::new(Scheme::Argon2, HashPolicy::default()));
    let hash = hasher.hash("bench-password-12345").expect("hash");
    let token = Token {
        id: uuid::Uuid::new_v4(),
        sub: "s".into(),
        login: "bench#001".into(),
        name: "bench".into(),
        expires: None,
    };
    store
        .insert_token(&NewToken {
            token,
            hash: Secret::new(hash),
        })
        .await
        .expect("token");
    let credentials = Credentials::new("bench#001", "bench-password-12345");

    let mut results = Vec::new();
    for (label, cache, rounds) in [("uncached", 0, 20), ("cached", 10_000, 20_000)] {
        let (uses, _writer) = UseRecorder::spawn(Arc::clone(&store), Duration::from_secs(10));
        let verifier = Verifier::new(
            Arc::clone(&store),
            Arc::clone(&hasher),
            Arc::new(SystemClock),
            uses,
            settings(cache),
        )
        .expect("verifier");
        mean(&verifier, &credentials, 2).await; // warm up (and fill the cache)
        let took = mean(&verifier, &credentials, rounds).await;
        println!(
            "{label:>9}: {:>10.1} µs per verification ({rounds} rounds)",
            took.as_secs_f64() * 1e6
        );
        results.push(took);
    }
    let ratio = results[0].as_secs_f64() / results[1].as_secs_f64();
    println!("   ratio: cached verification is {ratio:.0}x faster than uncached");
}

//! The verified-hash cache.
//!
//! An entry says "this password matched this stored hash". Its key is an
//! HMAC-SHA256, under a key drawn at random when the process starts, of the
//! stored hash and the password: the cache never holds a password, and its
//! keys are worthless outside this process. The cache never decides alone:
//! the token row is read first on every request, so a deleted or expired
//! token fails even while its entry is still here.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use moka::sync::Cache;
use sha2::Sha256;

type Key = [u8; 32];

pub struct VerifiedCache {
    secret: [u8; 32],
    entries: Option<Cache<Key, ()>>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` entries living `ttl` each; a capacity
    /// of zero disables caching.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let entries = (capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        VerifiedCache {
            secret: rand::random(),
            entries,
        }
    }

    pub fn key(&self, stored: &str, password: &str) -> Key {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            // HMAC takes keys of any length; this branch cannot be taken.
            return [0; 32];
        };
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        mac.update(&(stored.len() as u64).to_be_bytes());
        mac.update(stored.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.entries.as_ref().is_some_and(|c| c.contains_key(key))
    }

    pub fn insert(&self, key: Key) {
        if let Some(c) = &self.entries {
            c.insert(key, ());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_hash_and_password() {
        let cache = VerifiedCache::new(10, Duration::from_secs(60));
        let k = cache.key("$h", "pw");
        assert_ne!(k, cache.key("$h", "pw2"));
        assert_ne!(k, cache.key("$h2", "pw"));
        assert_ne!(cache.key("ab", "c"), cache.key("a", "bc"));
        assert!(!cache.contains(&k));
        cache.insert(k);
        assert!(cache.contains(&k));
    }

    #[test]
    fn keys_differ_between_processes() {
        let a = VerifiedCache::new(1, Duration::from_secs(1));
        let b = VerifiedCache::new(1, Duration::from_secs(1));
        assert_ne!(a.key("$h", "pw"), b.key("$h", "pw"));
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = VerifiedCache::new(0, Duration::from_secs(60));
        let k = cache.key("$h", "pw");
        cache.insert(k);
        assert!(!cache.contains(&k));
    }
}

//! The provider's signing keys (its JWKS), held in the two forms the
//! verifiers take: openidconnect's for ID tokens, jsonwebtoken's for
//! logout and access tokens. Both come from the same document, so they
//! never disagree.
//!
//! A token naming a key we do not have may mean the provider rotated its
//! keys: the set is fetched again, at most once per [`MIN_REFETCH`], so a
//! stream of tokens with made-up key ids cannot make us hammer the
//! provider.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{NaiveDateTime, TimeDelta};
use jsonwebtoken::jwk::Jwk;
use openidconnect::core::CoreJsonWebKeySet;
use openidconnect::{DiscoveryError, JsonWebKeySetUrl};
use tracing::{debug, info, warn};

use super::transport::{Transport, TransportError};

/// Least time between two fetches caused by an unknown key id.
pub(crate) const MIN_REFETCH: TimeDelta = TimeDelta::seconds(60);

pub(crate) struct KeySet {
    pub(crate) core: CoreJsonWebKeySet,
    pub(crate) jwks: Vec<Jwk>,
}

impl KeySet {
    /// Both forms from openidconnect's parse, which already skipped keys
    /// it does not understand; jsonwebtoken skips its own.
    pub(crate) fn from_core(core: CoreJsonWebKeySet) -> KeySet {
        let jwks: Vec<Jwk> = core
            .keys()
            .iter()
            .filter_map(|key| serde_json::to_value(key).ok())
            .filter_map(|value| serde_json::from_value(value).ok())
            .collect();
        if jwks.len() != core.keys().len() {
            debug!(
                keys = core.keys().len(),
                usable = jwks.len(),
                "some provider keys are unusable for logout and access tokens"
            );
        }
        KeySet { core, jwks }
    }

    /// Parse a JWKS document.
    #[cfg(test)]
    pub(crate) fn from_json(json: &[u8]) -> Result<KeySet, serde_json::Error> {
        Ok(KeySet::from_core(serde_json::from_slice(json)?))
    }
}

/// Fetch the JWKS at `url`; the error text names no secret.
pub(crate) async fn fetch(transport: &Transport, url: &JsonWebKeySetUrl) -> Result<KeySet, String> {
    let http = |request| transport.send(request);
    CoreJsonWebKeySet::fetch_async(url, &http)
        .await
        .map(KeySet::from_core)
        .map_err(|e| discovery_error(&e))
}

/// A fixed description of a failed discovery or key fetch.
pub(crate) fn discovery_error(e: &DiscoveryError<TransportError>) -> String {
    match e {
        DiscoveryError::Request(e) => e.to_string(),
        DiscoveryError::Response(status, _, reason) => format!("{reason} (status {status})"),
        DiscoveryError::Parse(e) => format!("unreadable answer at {}", e.path()),
        DiscoveryError::Validation(reason) => reason.clone(),
        DiscoveryError::UrlParse(e) => format!("bad url: {e}"),
        other => other.to_string(),
    }
}

/// The current keys, and the refetch-on-unknown-key policy.
pub(crate) struct KeyStore {
    current: RwLock<Arc<KeySet>>,
    /// When an unknown key id last caused a fetch. The lock also makes
    /// concurrent callers wait for one fetch instead of each starting one.
    last_refetch: tokio::sync::Mutex<Option<NaiveDateTime>>,
}

impl KeyStore {
    pub(crate) fn new(keys: KeySet) -> KeyStore {
        KeyStore {
            current: RwLock::new(Arc::new(keys)),
            last_refetch: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace(&self, keys: Arc<KeySet>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = keys;
    }

    /// Keys to try again with after `tried` lacked a token's key: the set
    /// another caller fetched meanwhile, or the result of `fetch` unless
    /// the last such fetch was under [`MIN_REFETCH`] ago. `None` when
    /// there is nothing new to try.
    pub(crate) async fn after_unknown_key<F>(
        &self,
        tried: &Arc<KeySet>,
        now: NaiveDateTime,
        fetch: F,
    ) -> Option<Arc<KeySet>>
    where
        F: Future<Output = Result<KeySet, String>>,
    {
        let mut last = self.last_refetch.lock().await;
        let current = self.current();
        if !Arc::ptr_eq(&current, tried) {
            return Some(current);
        }
        if last.is_some_and(|at| now - at < MIN_REFETCH) {
            debug!("unknown signing key; refetched too recently to try again");
            return None;
        }
        *last = Some(now);

        match fetch.await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                self.replace(keys.clone());
                info!(keys = keys.jwks.len(), "provider signing keys refetched");
                Some(keys)
            }
            Err(reason) => {
                warn!(%reason, "provider signing keys could not be refetched");
                None
            }
        }
    }
}

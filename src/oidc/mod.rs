//! OpenID Connect relying party: discovery, sign-in with the
//! authorization code flow (PKCE, `state`, `nonce`), refresh, RP-initiated
//! logout, and validation of back-channel logout tokens and bearer access
//! tokens against the provider's keys.
//!
//! The provider may be unreachable when the service starts: [`Oidc::start`]
//! never fails, and discovery is retried in the background while
//! verification keeps working. Until it succeeds every sign-in answer is
//! [`OidcError::Unavailable`].
//!
//! Layout: `discovery` finds the provider, `keys` holds its signing keys,
//! `login` runs sign-in and refresh, `jwt` checks logout and access
//! tokens, `claims` applies the access rules, `transport` is the HTTP
//! client. Tests (`tests/`) use keys from `testdata/` and a small
//! provider on loopback.

mod claims;
mod discovery;
mod jwt;
mod keys;
mod login;
mod settings;
mod transport;

use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::clock::{Clock, SystemClock};
use crate::config::OidcConfig;
use discovery::Provider;
use keys::{KeySet, KeyStore};
use settings::Settings;
use transport::Transport;

/// A sign-in in progress: kept server-side between the redirect to the
/// provider and its answer.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

impl PendingLogin {
    /// Whether the provider's answer carries this sign-in's `state`,
    /// compared in constant time.
    pub fn matches_state(&self, state: &str) -> bool {
        self.state.as_bytes().ct_eq(state.as_bytes()).into()
    }
}

/// Who signed in, read from a verified ID token (and the userinfo
/// endpoint when configured), after every access rule passed.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub sub: String,
    pub username: String,
    pub email: String,
    /// The provider's session id (`sid`), for back-channel logout.
    pub sid: Option<String>,
    /// Member of `DP_ADMIN_GROUP`.
    pub is_admin: bool,
    /// The raw ID token, sent back as `id_token_hint` at logout.
    pub id_token: String,
    pub refresh_token: Option<String>,
    /// Unix time the tokens expire; a session refreshes before then.
    pub expires_at: i64,
}

/// Who a bearer access token speaks for.
#[derive(Debug, Clone)]
pub struct BearerIdentity {
    pub sub: String,
    pub is_admin: bool,
    /// From the token's username / email claims, when it carries them.
    pub username: Option<String>,
    pub email: Option<String>,
}

/// What a back-channel logout token asks to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub sid: Option<String>,
    pub sub: Option<String>,
}

/// Why a user may not sign in; the text is shown to them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("your account has no {0} claim; ask your administrator")]
    MissingClaim(String),
    #[error("your email address is not verified")]
    EmailNotVerified,
    #[error("your account is not in a group allowed to use this service")]
    NotInGroup,
    #[error("your account does not have the attribute this service requires")]
    RequiredClaim,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery has not succeeded yet, or the provider did not answer.
    #[error("the identity provider cannot be reached")]
    Unavailable,
    /// The user signed in, but an access rule refuses them.
    #[error("{0}")]
    Refused(Refusal),
    /// A token or provider answer failed validation; the reason is for
    /// logs (it never holds a token).
    #[error("invalid {0}")]
    Invalid(String),
}

/// The relying party. Cheap to clone.
#[derive(Clone)]
pub struct Oidc {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    /// `None` when no HTTP client could be built (logged at start).
    transport: Option<Transport>,
    clock: Arc<dyn Clock>,
    /// `None` until discovery succeeds.
    provider: RwLock<Option<Arc<Provider>>>,
    keys: KeyStore,
}

impl Oidc {
    /// Start discovery in the background; never fails.
    pub fn start(config: OidcConfig) -> Oidc {
        let transport = Transport::new()
            .inspect_err(
                |e| tracing::error!(error = %e, "no HTTP client for the identity provider"),
            )
            .ok();
        let oidc = Oidc::build(&config, transport, None, Arc::new(SystemClock));
        if oidc.inner.transport.is_some() {
            discovery::spawn(Arc::downgrade(&oidc.inner));
        }
        oidc
    }

    /// A relying party over a provider found elsewhere, without
    /// background discovery: `provider` and `keys` are used as given, and
    /// a token naming an unknown key refetches from `provider.jwks_uri`.
    /// `clock` decides expiry. For tests, which build this state in place
    /// of serving a discovery document.
    #[cfg(test)]
    pub(crate) fn with_provider(
        config: &OidcConfig,
        provider: Provider,
        keys: KeySet,
        clock: Arc<dyn Clock>,
    ) -> Oidc {
        let transport = Transport::new()
            .inspect_err(|e| tracing::warn!(error = %e, "no HTTP client for the provider"))
            .ok();
        Oidc::build(config, transport, Some((provider, keys)), clock)
    }

    fn build(
        config: &OidcConfig,
        transport: Option<Transport>,
        discovered: Option<(Provider, KeySet)>,
        clock: Arc<dyn Clock>,
    ) -> Oidc {
        let (provider, keys) = match discovered {
            Some((provider, keys)) => (Some(Arc::new(provider)), keys),
            None => (None, KeySet::from_core(Default::default())),
        };
        let inner = Inner {
            settings: Settings::new(config),
            transport,
            clock,
            provider: RwLock::new(provider),
            keys: KeyStore::new(keys),
        };
        Oidc {
            inner: Arc::new(inner),
        }
    }

    /// Whether discovery succeeded and sign-in can start.
    pub fn ready(&self) -> bool {
        self.inner.provider().is_some()
    }

    /// Whether the provider says it sends back-channel logout tokens.
    pub fn backchannel_logout_supported(&self) -> bool {
        self.inner
            .provider()
            .is_some_and(|p| p.backchannel_logout_supported)
    }

    /// Whether the provider announces front-channel logout; only then is
    /// `/api/logout-frontchannel` honoured (it is unauthenticated by design).
    pub fn frontchannel_logout_supported(&self) -> bool {
        self.inner
            .provider()
            .is_some_and(|p| p.frontchannel_logout_supported)
    }

    /// The provider's issuer, once discovered.
    pub fn issuer(&self) -> Option<String> {
        Some(self.inner.provider()?.issuer.as_str().to_string())
    }

    /// Origins (`scheme://host:port`) of the provider's authorization and
    /// end-session endpoints, for the page's CSP `form-action`.
    pub fn origins(&self) -> Vec<String> {
        let Some(provider) = self.inner.provider() else {
            return Vec::new();
        };
        let endpoints = [
            Some(provider.authorization_endpoint.url()),
            provider.end_session_endpoint.as_ref(),
        ];
        let mut origins: Vec<String> = endpoints
            .into_iter()
            .flatten()
            .map(|url| url.origin().ascii_serialization())
            .collect();
        origins.dedup();
        origins
    }

    /// The provider URL to send the browser to, and what to keep until
    /// it answers at `<public_url>/login`.
    pub fn begin_login(&self) -> Result<(url::Url, PendingLogin), OidcError> {
        let provider = self.inner.provider().ok_or(OidcError::Unavailable)?;
        Ok(login::begin(&self.inner.settings, &provider))
    }

    /// Exchange the code, validate the ID token (signature against the
    /// JWKS, refreshed once on an unknown key id; issuer, audience,
    /// expiry, nonce, algorithm allow-list), read claims and apply the
    /// access rules.
    pub async fn finish_login(
        &self,
        code: &str,
        pending: &PendingLogin,
    ) -> Result<Identity, OidcError> {
        self.inner.finish_login(code, pending).await
    }

    /// New tokens from a refresh token, with the access rules applied
    /// again. `previous` supplies what a refresh answer may leave out (a
    /// provider need not send a new ID token or refresh token).
    pub async fn refresh(&self, previous: &Identity) -> Result<Identity, OidcError> {
        self.inner.refresh(previous).await
    }

    /// The provider's end-session URL for RP-initiated logout, returning
    /// to `<public_url>/`; `None` when the provider has none.
    pub fn logout_url(&self, identity: &Identity) -> Option<url::Url> {
        let provider = self.inner.provider()?;
        let mut url = provider.end_session_endpoint.clone()?;
        let settings = &self.inner.settings;
        url.query_pairs_mut()
            .append_pair("id_token_hint", &identity.id_token)
            .append_pair("client_id", settings.client_id.as_str())
            .append_pair(
                "post_logout_redirect_uri",
                settings.post_logout_uri.as_str(),
            )
            .append_pair("logout_hint", &identity.email);
        Some(url)
    }

    /// Validate a back-channel logout token (OpenID Connect Back-Channel
    /// Logout 1.0, section 2.6).
    pub async fn logout_token(&self, jwt: &str) -> Result<LogoutRequest, OidcError> {
        let inner = &self.inner;
        let provider = inner.provider().ok_or(OidcError::Unavailable)?;
        let rejected = |reason: &str| OidcError::Invalid(format!("logout token: {reason}"));
        let signed = inner
            .verify_jwt(jwt)
            .await
            .map_err(|e| rejected(e.reason()))?;
        let expected = jwt::Expected {
            issuer: provider.issuer.as_str(),
            audience: inner.settings.client_id.as_str(),
            now: inner.clock.now().and_utc().timestamp(),
        };
        jwt::logout_request(&signed, &expected).map_err(rejected)
    }

    /// Validate a bearer access token: a JWT signed by the provider, for
    /// `DP_OIDC_API_AUDIENCE`, unexpired; the group rules apply.
    pub async fn bearer(&self, jwt: &str) -> Result<BearerIdentity, OidcError> {
        let inner = &self.inner;
        let provider = inner.provider().ok_or(OidcError::Unavailable)?;
        let signed = inner.verify_jwt(jwt).await.map_err(|e| match e {
            jwt::SignatureError::NotJwt => OidcError::Invalid("bearer token is not a JWT".into()),
            e => OidcError::Invalid(format!("bearer token: {}", e.reason())),
        })?;
        let expected = jwt::Expected {
            issuer: provider.issuer.as_str(),
            audience: &inner.settings.api_audience,
            now: inner.clock.now().and_utc().timestamp(),
        };
        jwt::check_access_token(&signed.claims, &expected)
            .and_then(|()| {
                let shared_audience =
                    inner.settings.api_audience == inner.settings.client_id.as_str();
                jwt::check_not_id_token(&signed, shared_audience)
            })
            .map_err(|reason| OidcError::Invalid(format!("bearer token: {reason}")))?;
        inner.settings.rules.bearer(&signed.claims)
    }
}

impl Inner {
    fn provider(&self) -> Option<Arc<Provider>> {
        self.provider
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_provider(&self, provider: Provider) {
        let mut current = self
            .provider
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *current = Some(Arc::new(provider));
    }

    /// A JWT's signature, checked against the current keys and, if it
    /// names a key we do not have, once more after refetching them.
    async fn verify_jwt(&self, jwt: &str) -> Result<jwt::Signed, jwt::SignatureError> {
        let algorithms = &self.settings.jwt_algs;
        let check = |keys: &KeySet| jwt::verify_signature(jwt, &keys.jwks, algorithms);
        // A bad signature may mean a key rotated under the same key id.
        let retry = |e: &jwt::SignatureError| {
            matches!(
                e,
                jwt::SignatureError::UnknownKey | jwt::SignatureError::Invalid
            )
        };
        self.with_key_refetch(check, retry).await
    }

    /// Run `check` with the current keys; when it fails for want of a
    /// key, run it again with refetched keys if the refetch policy allows.
    async fn with_key_refetch<T, E>(
        &self,
        check: impl Fn(&KeySet) -> Result<T, E>,
        unknown_key: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        let keys = self.keys.current();
        let first = check(&keys);
        match &first {
            Err(e) if unknown_key(e) => {}
            _ => return first,
        }
        let now = self.clock.now();
        match self
            .keys
            .after_unknown_key(&keys, now, self.fetch_keys())
            .await
        {
            Some(fresh) => check(&fresh),
            None => first,
        }
    }

    async fn fetch_keys(&self) -> Result<KeySet, String> {
        match (&self.transport, self.provider()) {
            (Some(transport), Some(provider)) => keys::fetch(transport, &provider.jwks_uri).await,
            _ => Err("the provider is not discovered".into()),
        }
    }
}

#[cfg(test)]
mod tests;

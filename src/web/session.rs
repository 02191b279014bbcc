//! Browser sessions, kept server-side in the store.
//!
//! The cookie holds 32 random bytes; the database holds only their
//! SHA-256, so reading the database does not yield a usable session. A
//! sign-in in progress (state, nonce, PKCE verifier) is a row of the same
//! table under its own short-lived cookie, taken exactly once when the
//! provider answers. Sessions survive a restart and are shared by every
//! replica on the same database.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{NaiveDateTime, TimeDelta};
use cookie::{Cookie, SameSite};
use http::HeaderMap;
use http::header::COOKIE;
use rand::RngExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Web;
use crate::oidc::{Identity, OidcError, PendingLogin};
use crate::store::{SessionRecord, StoreError};

/// How long a sign-in may take at the provider.
const LOGIN_WINDOW: TimeDelta = TimeDelta::minutes(10);

/// Tokens are refreshed this long before they expire.
const REFRESH_MARGIN: i64 = 60;

/// How long past its tokens' expiry a session survives while the provider
/// cannot be reached to refresh them, in seconds.
const OUTAGE_GRACE: i64 = 3600;

/// What a signed-in session row holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub identity: Identity,
    /// Sent back with every state-changing request.
    pub csrf: String,
    #[serde(skip)]
    pub id: String,
}

/// Cookie names: `__Host-` binds them to this host and path `/` when they
/// are Secure; browsers refuse that prefix without Secure.
pub struct CookieNames {
    pub session: &'static str,
    pub login: &'static str,
}

pub fn cookie_names(secure: bool) -> CookieNames {
    if secure {
        CookieNames {
            session: "__Host-devicepass",
            login: "__Host-devicepass-login",
        }
    } else {
        CookieNames {
            session: "devicepass",
            login: "devicepass-login",
        }
    }
}

/// A new random value for a cookie or a CSRF token.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The row id of a cookie value.
fn digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The value of the cookie `name`, if the request sent one that looks
/// like ours (a malformed Cookie header is read as no cookie).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Web {
    fn cookie(&self, name: &str, value: String, max_age: Option<i64>) -> String {
        let mut c = Cookie::build((name.to_string(), value))
            .path("/")
            .http_only(true)
            .secure(self.settings.cookie_secure)
            .same_site(SameSite::Lax);
        if let Some(secs) = max_age {
            c = c.max_age(cookie::time::Duration::seconds(secs));
        }
        c.build().to_string()
    }

    /// A Set-Cookie value that removes the cookie `name`.
    pub fn clear_cookie(&self, name: &str) -> String {
        self.cookie(name, String::new(), Some(0))
    }

    /// The cookie of the sign-in whose `state` is given: one per sign-in,
    /// so two tabs signing in at once do not undo each other.
    pub fn login_cookie(&self, state: &str) -> String {
        format!("{}-{}", self.names.login, &digest(state)[..16])
    }

    /// Remember a sign-in in progress; returns the Set-Cookie value.
    pub async fn save_pending(&self, pending: &PendingLogin) -> Result<String, StoreError> {
        let value = random_token();
        let data = serde_json::to_string(pending).map_err(|_| StoreError::Corrupt("session"))?;
        let record = SessionRecord {
            id: digest(&value),
            sub: None,
            sid: None,
            data,
            expires: self.clock.now() + LOGIN_WINDOW,
        };
        self.store.put_session(&record).await?;
        let max_age = LOGIN_WINDOW.num_seconds();
        let name = self.login_cookie(&pending.state);
        Ok(self.cookie(&name, value, Some(max_age)))
    }

    /// The sign-in this browser started with `state`, taken so it cannot
    /// be replayed.
    pub async fn take_pending(
        &self,
        headers: &HeaderMap,
        state: &str,
    ) -> Result<Option<PendingLogin>, StoreError> {
        let Some(value) = cookie_value(headers, &self.login_cookie(state)) else {
            return Ok(None);
        };
        let record = self
            .store
            .take_session(&digest(&value), self.clock.now())
            .await?;
        Ok(record
            .filter(|r| r.sub.is_none())
            .and_then(|r| serde_json::from_str(&r.data).ok()))
    }

    /// Start a session for a signed-in user; returns the Set-Cookie value.
    pub async fn create_session(&self, identity: Identity) -> Result<String, StoreError> {
        let value = random_token();
        let session = Session {
            identity,
            csrf: random_token(),
            id: digest(&value),
        };
        let expires = self.clock.now() + self.lifetime();
        self.write(&session, expires).await?;
        let max_age = self.lifetime().num_seconds();
        Ok(self.cookie(self.names.session, value, Some(max_age)))
    }

    fn lifetime(&self) -> TimeDelta {
        TimeDelta::from_std(self.settings.session_lifetime).unwrap_or(TimeDelta::hours(12))
    }

    async fn write(&self, session: &Session, expires: NaiveDateTime) -> Result<(), StoreError> {
        let data = serde_json::to_string(session).map_err(|_| StoreError::Corrupt("session"))?;
        let record = SessionRecord {
            id: session.id.clone(),
            sub: Some(session.identity.sub.clone()),
            sid: session.identity.sid.clone(),
            data,
            expires,
        };
        self.store.put_session(&record).await
    }

    /// The signed-in session of this request, refreshed through the
    /// refresh token when its tokens are about to expire. A session whose
    /// tokens expired and cannot be refreshed, or whose provider session
    /// was revoked, is ended.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
        let Some(value) = cookie_value(headers, self.names.session) else {
            return Ok(None);
        };
        let id = digest(&value);
        let now = self.clock.now();
        let Some(record) = self.store.session(&id, now).await? else {
            return Ok(None);
        };
        let Some(mut session) = record
            .sub
            .as_ref()
            .and_then(|_| serde_json::from_str::<Session>(&record.data).ok())
        else {
            tracing::warn!("a session row cannot be read; ending it");
            self.store.delete_session(&id).await?;
            return Ok(None);
        };
        session.id = id;
        if let Some(sid) = &session.identity.sid
            && self.store.is_revoked(sid).await?
        {
            self.store.delete_session(&session.id).await?;
            return Ok(None);
        }
        let now_unix = now.and_utc().timestamp();
        if session.identity.expires_at - REFRESH_MARGIN > now_unix {
            return Ok(Some(session));
        }
        self.refresh(session, record.expires, now_unix).await
    }

    async fn refresh(
        &self,
        mut session: Session,
        row_expires: NaiveDateTime,
        now_unix: i64,
    ) -> Result<Option<Session>, StoreError> {
        let expired = session.identity.expires_at <= now_unix;
        let Some(oidc) = &self.oidc else {
            return Ok(None);
        };
        if session.identity.refresh_token.is_none() {
            if expired {
                self.store.delete_session(&session.id).await?;
                return Ok(None);
            }
            return Ok(Some(session));
        }
        match oidc.refresh(&session.identity).await {
            Ok(identity) if identity.sub == session.identity.sub => {
                tracing::debug!(sub = %identity.sub, "session refreshed");
                session.identity = identity;
                self.write(&session, row_expires).await?;
                Ok(Some(session))
            }
            Ok(_) => {
                tracing::warn!("a refresh answered for another subject; session ended");
                self.store.delete_session(&session.id).await?;
                Ok(None)
            }
            // The provider is down: a signed-in user keeps working for a
            // while (try again on the next request), but not forever
            // without the provider confirming them.
            Err(OidcError::Unavailable)
                if now_unix < session.identity.expires_at + OUTAGE_GRACE =>
            {
                if expired {
                    tracing::warn!(sub = %session.identity.sub, "provider unreachable; session kept past token expiry");
                }
                Ok(Some(session))
            }
            Err(e) => {
                tracing::info!(sub = %session.identity.sub, reason = %e, "session ended: refresh failed");
                self.store.delete_session(&session.id).await?;
                Ok(None)
            }
        }
    }

    /// Delete the session this request's cookie names, if any, without
    /// reading it (a new sign-in replaces it).
    pub async fn forget_session(&self, headers: &HeaderMap) -> Result<(), StoreError> {
        match cookie_value(headers, self.names.session) {
            Some(value) => self.store.delete_session(&digest(&value)).await,
            None => Ok(()),
        }
    }

    pub async fn end_session(&self, session: &Session) -> Result<(), StoreError> {
        self.store.delete_session(&session.id).await
    }
}

/// Compare a presented CSRF token with the session's, in constant time.
pub fn csrf_matches(session: &Session, presented: Option<&str>) -> bool {
    use subtle::ConstantTimeEq as _;
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(session.csrf.as_bytes())))
}

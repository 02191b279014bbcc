//! Creating device passwords: the rules shared by the CLI and the web.
//!
//! A new token gets a generated password (shown once, stored hashed with
//! the configured scheme), a unique login `username#NNN`, and an expiry no
//! later than `DP_MAX_EXPIRATION_DAYS` from now when that limit is set.

use std::sync::Arc;

use chrono::{NaiveDateTime, TimeDelta};
use uuid::Uuid;

use crate::clock::Clock;
use crate::hash::{HashError, Hasher};
use crate::passgen::{Wordlist, login_for};
use crate::secret::Secret;
use crate::store::{NewToken, Store, StoreError, Token, User};

/// Tries at finding a free login before giving up.
const LOGIN_ATTEMPTS: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("the expiry is in the past")]
    ExpiryInPast,
    #[error("the expiry is more than {0} days away")]
    ExpiryTooFar(u32),
    #[error("no free login found for this user")]
    NoFreeLogin,
    #[error("token name must be 1 to 200 characters without control characters")]
    BadName,
}

/// Why a username cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("the username must not be empty")]
    Empty,
    #[error("the username must not contain a colon (HTTP Basic ends the user at the first colon)")]
    Colon,
    #[error("the username must not contain control characters")]
    Control,
    #[error("the username must not start or end with a space (a proxy's header would lose it)")]
    Padded,
    #[error("the username must not contain # (logins of device passwords are username#digits)")]
    Hash,
}

/// A username must survive HTTP Basic (no colon), logs (no control
/// characters) and identity headers (no surrounding spaces, which a proxy
/// trims, making ` alice ` look like `alice`); logins are built from it.
pub fn check_username(username: &str) -> Result<(), UsernameError> {
    if username.trim().is_empty() {
        Err(UsernameError::Empty)
    } else if username.contains(':') {
        Err(UsernameError::Colon)
    } else if username.chars().any(char::is_control) {
        Err(UsernameError::Control)
    } else if username.trim() != username {
        Err(UsernameError::Padded)
    } else if username.contains('#') {
        Err(UsernameError::Hash)
    } else {
        Ok(())
    }
}

/// A created token and its password, which is never shown again.
pub struct Created {
    pub token: Token,
    pub password: Secret<String>,
}

pub struct TokenMaker {
    pub store: Arc<dyn Store>,
    pub hasher: Arc<Hasher>,
    pub wordlist: Arc<Wordlist>,
    pub clock: Arc<dyn Clock>,
    pub max_expiration_days: Option<u32>,
}

impl TokenMaker {
    pub async fn create(
        &self,
        user: &User,
        name: &str,
        expires: Option<NaiveDateTime>,
    ) -> Result<Created, TokenError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(TokenError::BadName);
        }
        let expires = self.check_expiry(expires)?;
        let password = self.wordlist.generate();
        let hasher = Arc::clone(&self.hasher);
        let plain = password.clone();
        // Hashing is slow on purpose; keep it off the async threads.
        let hash = tokio::task::spawn_blocking(move || hasher.hash(plain.expose()))
            .await
            .map_err(|_| StoreError::Unavailable)??;
        let hash = Secret::new(hash);
        for attempt in 0..LOGIN_ATTEMPTS {
            let token = Token {
                id: Uuid::new_v4(),
                sub: user.sub.clone(),
                login: login_for(&user.username, attempt),
                name: name.to_string(),
                expires,
            };
            let new = NewToken {
                token,
                hash: hash.clone(),
            };
            match self.store.insert_token(&new).await {
                Ok(()) => {
                    return Ok(Created {
                        token: new.token,
                        password,
                    });
                }
                Err(StoreError::Conflict("login")) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TokenError::NoFreeLogin)
    }

    fn check_expiry(
        &self,
        expires: Option<NaiveDateTime>,
    ) -> Result<Option<NaiveDateTime>, TokenError> {
        let now = self.clock.now();
        if expires.is_some_and(|at| at <= now) {
            return Err(TokenError::ExpiryInPast);
        }
        let Some(days) = self.max_expiration_days else {
            return Ok(expires);
        };
        let limit = now + TimeDelta::days(i64::from(days));
        match expires {
            None => Ok(Some(limit)),
            Some(at) if at <= limit => Ok(Some(at)),
            Some(_) => Err(TokenError::ExpiryTooFar(days)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_that_break_basic_headers_or_logins_are_refused() {
        assert_eq!(check_username("alice"), Ok(()));
        assert_eq!(check_username("dörte.o'neil"), Ok(()));
        assert_eq!(check_username(" "), Err(UsernameError::Empty));
        assert_eq!(check_username("a:b"), Err(UsernameError::Colon));
        assert_eq!(check_username("a\nb"), Err(UsernameError::Control));
        assert_eq!(check_username(" alice "), Err(UsernameError::Padded));
        assert_eq!(check_username("alice\u{a0}"), Err(UsernameError::Padded));
        assert_eq!(check_username("alice#508"), Err(UsernameError::Hash));
    }
}

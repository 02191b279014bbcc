//! Sign-in with the authorization code flow, and refresh.
//!
//! The ID token is checked by openidconnect (signature against the JWKS
//! with the algorithm allow-list, issuer, audience, expiry, nonce); the
//! claims are then read from its payload as JSON, merged with userinfo
//! when configured, and put through the access rules.

use std::time::Duration;

use base64::prelude::{BASE64_URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, TimeDelta, Utc};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreIdToken, CoreIdTokenVerifier,
    CoreJsonWebKeySet, CoreTokenResponse,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, Nonce, NonceVerifier, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RefreshToken, RequestTokenError, SignatureVerificationError, StandardErrorResponse,
    TokenResponse,
};
use tracing::{debug, info, warn};

use super::claims::{self, Claims};
use super::discovery::Provider;
use super::jwt::LEEWAY_SECS;
use super::keys::KeySet;
use super::settings::Settings;
use super::transport::{Transport, TransportError};
use super::{Identity, Inner, OidcError, PendingLogin};

/// How long a refreshed session lasts when the provider sends neither an
/// ID token nor `expires_in`: short, so the provider is asked again soon.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(5 * 60);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

type TokenError = RequestTokenError<TransportError, StandardErrorResponse<CoreErrorResponseType>>;

/// A client for one request. ID tokens are verified by
/// [`Inner::verify_id_token`], so it carries no keys.
fn client(settings: &Settings, provider: &Provider) -> Client {
    let client = CoreClient::new(
        settings.client_id.clone(),
        provider.issuer.clone(),
        CoreJsonWebKeySet::default(),
    )
    .set_auth_uri(provider.authorization_endpoint.clone())
    .set_token_uri(provider.token_endpoint.clone())
    .set_redirect_uri(settings.redirect_uri.clone());

    // Without a secret this is a public client: PKCE and the client id.
    let Some(secret) = &settings.client_secret else {
        return client;
    };
    let auth = match provider.secret_basic {
        true => AuthType::BasicAuth,
        false => AuthType::RequestBody,
    };
    client
        .set_client_secret(ClientSecret::new(secret.expose().clone()))
        .set_auth_type(auth)
}

pub(super) fn begin(settings: &Settings, provider: &Provider) -> (url::Url, PendingLogin) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let client = client(settings, provider);
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scopes(settings.scopes.iter().cloned())
        .set_pkce_challenge(challenge)
        .url();
    let pending = PendingLogin {
        state: state.into_secret(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.into_secret(),
    };
    (url, pending)
}

/// The nonce an ID token must carry: the one sent at sign-in, or any on
/// refresh (a refreshed ID token need not repeat it).
struct NonceCheck<'a>(Option<&'a Nonce>);

impl NonceVerifier for NonceCheck<'_> {
    fn verify(self, found: Option<&Nonce>) -> Result<(), String> {
        match self.0 {
            Some(expected) => expected.verify(found),
            None => Ok(()),
        }
    }
}

/// An ID token that passed verification.
struct VerifiedIdToken {
    raw: String,
    claims: Claims,
    expires_at: i64,
}

impl Inner {
    pub(super) async fn finish_login(
        &self,
        code: &str,
        pending: &PendingLogin,
    ) -> Result<Identity, OidcError> {
        let (transport, provider) = self.usable()?;
        let http = |request| transport.send(request);
        let response = client(&self.settings, &provider)
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&http)
            .await
            .map_err(token_error)?;

        let id_token = response
            .id_token()
            .ok_or_else(|| invalid("token answer: no id token"))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let verified = self
            .verify_id_token(&provider, id_token, Some(&nonce))
            .await?;
        let sub = claims::text(&verified.claims, "sub").map(str::to_string);
        let identity = self.identity(&provider, verified, &response, None).await;
        match &identity {
            Ok(who) => tracing::debug!(sub = %who.sub, admin = who.is_admin, "identity verified"),
            Err(OidcError::Refused(why)) => info!(?sub, refusal = ?why, "sign-in refused"),
            Err(_) => {}
        }
        identity
    }

    pub(super) async fn refresh(&self, previous: &Identity) -> Result<Identity, OidcError> {
        let Some(refresh_token) = &previous.refresh_token else {
            return Err(invalid("no refresh token"));
        };
        let (transport, provider) = self.usable()?;
        let http = |request| transport.send(request);
        let refresh_token = RefreshToken::new(refresh_token.clone());
        let response = client(&self.settings, &provider)
            .exchange_refresh_token(&refresh_token)
            .request_async(&http)
            .await
            .map_err(token_error)?;

        let Some(id_token) = response.id_token() else {
            let lifetime = response.expires_in().unwrap_or(FALLBACK_LIFETIME);
            debug!(sub = %previous.sub, "session refreshed without a new id token");
            return Ok(Identity {
                refresh_token: new_refresh_token(&response, previous),
                expires_at: self.now().timestamp().saturating_add(seconds(lifetime)),
                ..previous.clone()
            });
        };
        let verified = self.verify_id_token(&provider, id_token, None).await?;
        if claims::text(&verified.claims, "sub") != Some(previous.sub.as_str()) {
            return Err(invalid("refreshed id token: another subject"));
        }
        let identity = self
            .identity(&provider, verified, &response, Some(previous))
            .await;
        if let Err(OidcError::Refused(why)) = &identity {
            info!(sub = %previous.sub, refusal = ?why, "refresh refused");
        }
        identity
    }

    /// Check an ID token, fetching the keys again once if it names a key
    /// we do not have.
    async fn verify_id_token(
        &self,
        provider: &Provider,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<VerifiedIdToken, OidcError> {
        let skewed = self.now() - TimeDelta::seconds(LEEWAY_SECS);
        let check = |keys: &KeySet| {
            let verifier = CoreIdTokenVerifier::new_public_client(
                self.settings.client_id.clone(),
                provider.issuer.clone(),
                keys.core.clone(),
            )
            .set_allowed_algs(self.settings.id_token_algs.iter().cloned())
            .set_time_fn(move || skewed);
            let claims = id_token.claims(&verifier, NonceCheck(nonce))?;
            Ok(claims.expiration().timestamp())
        };
        let expires_at = self
            .with_key_refetch(check, names_unknown_key)
            .await
            .map_err(|e| invalid(id_token_reason(&e)))?;

        let raw = id_token.to_string();
        let claims = payload(&raw).ok_or_else(|| invalid("id token: unreadable payload"))?;
        Ok(VerifiedIdToken {
            raw,
            claims,
            expires_at,
        })
    }

    /// Merge userinfo if configured, apply the rules, build the identity.
    async fn identity(
        &self,
        provider: &Provider,
        id_token: VerifiedIdToken,
        response: &CoreTokenResponse,
        previous: Option<&Identity>,
    ) -> Result<Identity, OidcError> {
        let mut claims = id_token.claims;
        if self.settings.claims_from_profile {
            let access_token = response.access_token().secret();
            let extra = self.userinfo(provider, access_token, &claims).await?;
            claims::merge(&mut claims, extra);
        }
        let person = self.settings.rules.sign_in(&claims)?;

        let now = self.now().timestamp();
        let access_expiry = response
            .expires_in()
            .map(|d| now.saturating_add(seconds(d)));
        let sid = claims::text(&claims, "sid").map(str::to_string);
        Ok(Identity {
            sid: sid.or_else(|| previous.and_then(|p| p.sid.clone())),
            sub: person.sub,
            username: person.username,
            email: person.email,
            is_admin: person.is_admin,
            id_token: id_token.raw,
            refresh_token: match previous {
                Some(previous) => new_refresh_token(response, previous),
                None => response.refresh_token().map(|t| t.secret().clone()),
            },
            expires_at: access_expiry.map_or(id_token.expires_at, |a| a.min(id_token.expires_at)),
        })
    }

    /// The userinfo claims, which must be about the ID token's subject.
    /// A provider without a userinfo endpoint contributes none.
    async fn userinfo(
        &self,
        provider: &Provider,
        access_token: &str,
        id_claims: &Claims,
    ) -> Result<Claims, OidcError> {
        let (Some(url), Some(transport)) = (&provider.userinfo_endpoint, &self.transport) else {
            debug!("the provider has no userinfo endpoint");
            return Ok(Claims::new());
        };
        let response = transport
            .get_with_token(url, access_token)
            .await
            .map_err(|e| {
                warn!(error = %e, "userinfo endpoint unreachable");
                OidcError::Unavailable
            })?;
        if !response.status().is_success() {
            return Err(invalid(&format!(
                "userinfo answer: status {}",
                response.status()
            )));
        }
        let claims: Claims = serde_json::from_slice(response.body()).map_err(|_| {
            invalid("userinfo answer: not a JSON object (signed answers are not supported)")
        })?;
        if claims.get("sub") != id_claims.get("sub") {
            return Err(invalid("userinfo answer: another subject"));
        }
        Ok(claims)
    }

    /// The transport and provider, once discovery has succeeded.
    fn usable(&self) -> Result<(&Transport, std::sync::Arc<Provider>), OidcError> {
        match (&self.transport, self.provider()) {
            (Some(transport), Some(provider)) => Ok((transport, provider)),
            _ => Err(OidcError::Unavailable),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now().and_utc()
    }
}

/// The refresh token to keep: a new one if sent, else the previous.
fn new_refresh_token(response: &CoreTokenResponse, previous: &Identity) -> Option<String> {
    response
        .refresh_token()
        .map(|t| t.secret().clone())
        .or_else(|| previous.refresh_token.clone())
}

/// The JSON payload of a compact JWT.
fn payload(jwt: &str) -> Option<Claims> {
    let encoded = jwt.split('.').nth(1)?;
    let bytes = BASE64_URL_SAFE_NO_PAD.decode(encoded).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A failed token request: the provider down, or it said no. The answer
/// itself may hold tokens, so none of it is kept but the error code.
fn token_error(e: TokenError) -> OidcError {
    match e {
        RequestTokenError::Request(e) => {
            warn!(error = %e, "token endpoint unreachable");
            OidcError::Unavailable
        }
        RequestTokenError::ServerResponse(answer) => {
            invalid(&format!("token request refused: {}", answer.error()))
        }
        RequestTokenError::Parse(..) => invalid("token answer: unreadable"),
        RequestTokenError::Other(_) => invalid("token answer: unexpected"),
    }
}

/// Whether new keys might help: an unknown key id, or a signature that
/// fails under a known one (a provider may rotate a key and keep its id).
fn names_unknown_key(e: &ClaimsVerificationError) -> bool {
    matches!(
        e,
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey | SignatureVerificationError::CryptoError(_)
        )
    )
}

/// A fixed reason: openidconnect's messages quote claim values.
fn id_token_reason(e: &ClaimsVerificationError) -> &'static str {
    use ClaimsVerificationError as E;
    use SignatureVerificationError as S;
    match e {
        E::Expired(_) => "id token: expired",
        E::InvalidAudience(_) => "id token: wrong audience",
        E::InvalidIssuer(_) => "id token: wrong issuer",
        E::InvalidNonce(_) => "id token: nonce mismatch",
        E::InvalidSubject(_) => "id token: bad subject",
        E::SignatureVerification(S::DisallowedAlg(_)) => "id token: algorithm not allowed",
        E::SignatureVerification(S::NoMatchingKey) => "id token: signed with an unknown key",
        E::SignatureVerification(S::NoSignature) => "id token: unsigned",
        E::SignatureVerification(_) => "id token: bad signature",
        E::Unsupported(_) => "id token: unsupported form",
        _ => "id token: rejected",
    }
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn invalid(reason: &str) -> OidcError {
    OidcError::Invalid(reason.to_string())
}

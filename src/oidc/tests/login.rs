//! Discovery, sign-in and refresh against the loopback provider.

use std::collections::HashMap;
use std::time::Duration;

use base64::prelude::{BASE64_STANDARD, BASE64_URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::support::*;
use crate::config::OidcConfig;
use crate::oidc::{Identity, Oidc, OidcError, PendingLogin, Refusal};

async fn started(config: OidcConfig) -> Oidc {
    ready(Oidc::start(config)).await
}

/// Wait (up to 5 s) for discovery to succeed.
async fn ready(oidc: Oidc) -> Oidc {
    for _ in 0..100 {
        if oidc.ready() {
            return oidc;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("discovery did not succeed");
}

/// A sign-in whose nonce nobody checks (refresh, or before discovery).
fn no_nonce() -> PendingLogin {
    PendingLogin {
        state: "state".into(),
        nonce: String::new(),
        pkce_verifier: "verifier".into(),
    }
}

fn id_claims(fake: &FakeProvider, pending: &PendingLogin) -> Value {
    json!({
        "iss": fake.base,
        "aud": CLIENT_ID,
        "iat": now(),
        "exp": now() + 600,
        "nonce": pending.nonce,
        "sub": "user-1",
        "sid": "session-1",
        "email": "ada@example.org",
        "email_verified": true,
        "preferred_username": "ada",
        "groups": ["staff"],
    })
}

fn token_answer(id_token: &str) -> (u16, Value) {
    let answer = json!({
        "access_token": "access-1",
        "token_type": "Bearer",
        "expires_in": 300,
        "refresh_token": "refresh-1",
        "id_token": id_token,
    });
    (200, answer)
}

/// Sign in with the ID token `claims` (built for the pending login).
async fn sign_in(
    fake: &FakeProvider,
    oidc: &Oidc,
    claims: impl FnOnce(&PendingLogin) -> Value,
) -> Result<Identity, OidcError> {
    let (_, pending) = oidc.begin_login().unwrap();
    let id_token = rsa_key().sign(&claims(&pending));
    fake.with(|s| s.token_answer = token_answer(&id_token));
    oidc.finish_login("code-1", &pending).await
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn last_token_request(fake: &FakeProvider) -> Sent {
    fake.with(|s| s.token_requests.last().cloned().unwrap())
}

#[tokio::test]
async fn discovery_finds_the_provider_and_sign_in_starts_with_pkce() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    let oidc = started(fake.config()).await;
    assert_eq!(oidc.issuer().as_deref(), Some(fake.base.as_str()));
    assert_eq!(oidc.origins(), [fake.base.as_str()]);
    assert!(oidc.backchannel_logout_supported());

    let (url, pending) = oidc.begin_login().unwrap();
    assert_eq!(
        url.as_str().split('?').next(),
        Some(&*format!("{}/authorize", fake.base))
    );
    let sent = query(&url);
    assert_eq!(sent["response_type"], "code");
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(sent["redirect_uri"], "https://dp.example.org/dp/login");
    assert_eq!(sent["scope"], "openid email profile");
    assert_eq!(sent["state"], pending.state);
    assert_eq!(sent["nonce"], pending.nonce);
    assert_eq!(sent["code_challenge_method"], "S256");
    let challenge = BASE64_URL_SAFE_NO_PAD.encode(Sha256::digest(&pending.pkce_verifier));
    assert_eq!(sent["code_challenge"], challenge);
    assert!(!sent.contains_key("response_mode"));

    assert!(pending.matches_state(&sent["state"]));
    assert!(!pending.matches_state("forged"));
    let (_, other) = oidc.begin_login().unwrap();
    assert_ne!(
        (&other.state, &other.nonce),
        (&pending.state, &pending.nonce)
    );
}

#[tokio::test]
async fn finish_login_exchanges_the_code_and_reads_the_claims() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    let mut config = fake.config();
    config.group_membership = Some("staff".into());
    config.admin_group = Some("staff".into());
    let oidc = started(config).await;

    let identity = sign_in(&fake, &oidc, |p| id_claims(&fake, p))
        .await
        .unwrap();
    assert_eq!(identity.sub, "user-1");
    assert_eq!(identity.username, "ada");
    assert_eq!(identity.email, "ada@example.org");
    assert_eq!(identity.sid.as_deref(), Some("session-1"));
    assert!(identity.is_admin);
    assert_eq!(identity.refresh_token.as_deref(), Some("refresh-1"));
    // The access token (300 s) expires before the ID token (600 s).
    assert!((now() + 295..=now() + 300).contains(&identity.expires_at));

    let sent = last_token_request(&fake);
    assert_eq!(sent.form["grant_type"], "authorization_code");
    assert_eq!(sent.form["code"], "code-1");
    assert_eq!(sent.form["redirect_uri"], "https://dp.example.org/dp/login");
    assert_eq!(sent.form["code_verifier"].len(), 43);
    assert!(!sent.form.contains_key("client_secret"));
    let basic = BASE64_STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert_eq!(sent.authorization, Some(format!("Basic {basic}")));

    let logout = oidc.logout_url(&identity).unwrap();
    assert!(
        logout
            .as_str()
            .starts_with(&format!("{}/logout?", fake.base))
    );
    let sent = query(&logout);
    assert_eq!(sent["id_token_hint"], identity.id_token);
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(
        sent["post_logout_redirect_uri"],
        "https://dp.example.org/dp/"
    );
    assert_eq!(sent["logout_hint"], "ada@example.org");
}

#[tokio::test]
async fn the_secret_goes_in_the_form_when_the_provider_asks_and_public_clients_send_none() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    fake.with(|s| s.auth_methods = json!(["client_secret_post"]));
    let oidc = started(fake.config()).await;
    sign_in(&fake, &oidc, |p| id_claims(&fake, p))
        .await
        .unwrap();
    let sent = last_token_request(&fake);
    assert_eq!(sent.form["client_id"], CLIENT_ID);
    assert_eq!(sent.form["client_secret"], CLIENT_SECRET);
    assert_eq!(sent.authorization, None);

    let mut public = fake.config();
    public.client_secret = None;
    let oidc = started(public).await;
    sign_in(&fake, &oidc, |p| id_claims(&fake, p))
        .await
        .unwrap();
    let sent = last_token_request(&fake);
    assert_eq!(sent.form["client_id"], CLIENT_ID);
    assert!(!sent.form.contains_key("client_secret"));
    assert_eq!(sent.authorization, None);
}

#[tokio::test]
async fn bad_id_tokens_and_refusals_are_invalid_and_an_outage_unavailable() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    let oidc = started(fake.config()).await;
    let change = |name: &'static str, value: Value| {
        let fake = fake.clone();
        move |p: &PendingLogin| {
            let mut claims = id_claims(&fake, p);
            claims[name] = value;
            claims
        }
    };
    let cases = [
        (
            change("nonce", json!("replayed")),
            "id token: nonce mismatch",
        ),
        (
            change("aud", json!("someone-else")),
            "id token: wrong audience",
        ),
        (
            change("iss", json!("https://evil.example")),
            "id token: wrong issuer",
        ),
        (change("exp", json!(now() - 120)), "id token: expired"),
    ];
    for (claims, expected) in cases {
        let result = sign_in(&fake, &oidc, claims).await;
        assert!(
            matches!(result, Err(OidcError::Invalid(r)) if r == expected),
            "{expected}"
        );
    }

    // HS256 keyed with the client secret: never on the allow-list.
    let (_, pending) = oidc.begin_login().unwrap();
    let secret = EncodingKey::from_secret(CLIENT_SECRET.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &id_claims(&fake, &pending),
        &secret,
    )
    .unwrap();
    fake.with(|s| s.token_answer = token_answer(&token));
    let result = oidc.finish_login("code-1", &pending).await;
    assert!(matches!(result, Err(OidcError::Invalid(r)) if r == "id token: algorithm not allowed"));

    let (_, pending) = oidc.begin_login().unwrap();
    let refusal = json!({"error": "invalid_grant", "error_description": "code expired"});
    fake.with(|s| s.token_answer = (400, refusal));
    let result = oidc.finish_login("code-1", &pending).await;
    assert!(
        matches!(result, Err(OidcError::Invalid(r)) if r == "token request refused: invalid_grant")
    );

    fake.with(|s| s.token_answer = (503, json!({})));
    let result = oidc.finish_login("code-1", &pending).await;
    assert!(matches!(result, Err(OidcError::Unavailable)));
}

#[tokio::test]
async fn an_access_rule_refuses_after_a_valid_sign_in() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    let oidc = started(fake.config()).await;
    let unverified = |p: &PendingLogin| {
        let mut claims = id_claims(&fake, p);
        claims["email_verified"] = json!(false);
        claims
    };
    let result = sign_in(&fake, &oidc, unverified).await;
    assert!(matches!(
        result,
        Err(OidcError::Refused(Refusal::EmailNotVerified))
    ));
}

#[tokio::test]
async fn an_id_token_signed_with_a_new_key_refetches_the_keys_once() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    let oidc = started(fake.config()).await;
    let rotated = ec_key_b();
    fake.with(|s| s.jwks = jwks(&[&rsa_key(), &rotated]));

    let (_, pending) = oidc.begin_login().unwrap();
    let id_token = rotated.sign(&id_claims(&fake, &pending));
    fake.with(|s| s.token_answer = token_answer(&id_token));
    assert!(oidc.finish_login("code-1", &pending).await.is_ok());
    // Once at discovery, once for the new key.
    assert_eq!(fake.with(|s| s.jwks_fetches), 2);
}

#[tokio::test]
async fn claims_from_profile_merge_userinfo_with_the_id_token_winning() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    let mut config = fake.config();
    config.claims_from_profile = true;
    config.group_membership = Some("staff".into());
    let oidc = started(config).await;
    let sparse = |p: &PendingLogin| {
        let mut claims = id_claims(&fake, p);
        let map = claims.as_object_mut().unwrap();
        map.remove("preferred_username");
        map.remove("groups");
        claims
    };
    let profile = json!({
        "sub": "user-1",
        "preferred_username": "ada",
        "email": "someone-else@example.org",
        "groups": ["staff"],
    });
    fake.with(|s| s.userinfo_answer = (200, profile));

    let identity = sign_in(&fake, &oidc, sparse).await.unwrap();
    assert_eq!(identity.username, "ada");
    assert_eq!(identity.email, "ada@example.org");
    assert_eq!(fake.with(|s| s.userinfo_tokens.clone()), ["access-1"]);

    fake.with(|s| s.userinfo_answer = (200, json!({"sub": "user-2", "groups": ["staff"]})));
    let result = sign_in(&fake, &oidc, sparse).await;
    assert!(
        matches!(result, Err(OidcError::Invalid(r)) if r == "userinfo answer: another subject")
    );
}

#[tokio::test]
async fn refresh_applies_the_rules_to_a_new_id_token_and_keeps_what_is_not_resent() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    let mut config = fake.config();
    config.group_membership = Some("staff".into());
    let oidc = started(config).await;
    let first = sign_in(&fake, &oidc, |p| id_claims(&fake, p))
        .await
        .unwrap();

    // A new ID token without nonce and no new refresh token.
    let mut claims = id_claims(&fake, &no_nonce());
    claims.as_object_mut().unwrap().remove("nonce");
    claims["preferred_username"] = json!("ada.l");
    let answer = json!({"access_token": "a2", "token_type": "Bearer", "expires_in": 60,
        "id_token": rsa_key().sign(&claims)});
    fake.with(|s| s.token_answer = (200, answer));
    let second = oidc.refresh(&first).await.unwrap();
    assert_eq!(second.username, "ada.l");
    assert_eq!(second.refresh_token.as_deref(), Some("refresh-1"));
    assert_ne!(second.id_token, first.id_token);
    let sent = last_token_request(&fake);
    assert_eq!(sent.form["grant_type"], "refresh_token");
    assert_eq!(sent.form["refresh_token"], "refresh-1");

    // No ID token: the claims stay, the expiry and refresh token change.
    let answer = json!({"access_token": "a3", "token_type": "Bearer", "expires_in": 120,
        "refresh_token": "refresh-2"});
    fake.with(|s| s.token_answer = (200, answer));
    let third = oidc.refresh(&second).await.unwrap();
    assert_eq!(
        (third.username.as_str(), third.id_token.as_str()),
        ("ada.l", &*second.id_token)
    );
    assert_eq!(third.refresh_token.as_deref(), Some("refresh-2"));
    assert!((now() + 115..=now() + 120).contains(&third.expires_at));

    // Left the group since: refused.
    claims["groups"] = json!([]);
    let answer = json!({"access_token": "a4", "token_type": "Bearer",
        "id_token": rsa_key().sign(&claims)});
    fake.with(|s| s.token_answer = (200, answer));
    let result = oidc.refresh(&third).await;
    assert!(matches!(
        result,
        Err(OidcError::Refused(Refusal::NotInGroup))
    ));

    // Another subject: invalid.
    claims["sub"] = json!("user-2");
    claims["groups"] = json!(["staff"]);
    let answer = json!({"access_token": "a5", "token_type": "Bearer",
        "id_token": rsa_key().sign(&claims)});
    fake.with(|s| s.token_answer = (200, answer));
    let result = oidc.refresh(&third).await;
    assert!(
        matches!(result, Err(OidcError::Invalid(r)) if r == "refreshed id token: another subject")
    );

    let without = Identity {
        refresh_token: None,
        ..third
    };
    let result = oidc.refresh(&without).await;
    assert!(matches!(result, Err(OidcError::Invalid(r)) if r == "no refresh token"));
}

#[tokio::test]
async fn discovery_retries_until_the_provider_answers() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    fake.with(|s| s.discovery_failures = 1);
    let oidc = Oidc::start(fake.config());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!oidc.ready());
    let oidc = ready(oidc).await;
    assert_eq!(oidc.issuer().as_deref(), Some(fake.base.as_str()));
}

#[tokio::test]
async fn an_issuer_ending_in_a_slash_is_found() {
    let fake = FakeProvider::start(&[&rsa_key()]).await;
    let with_slash = format!("{}/", fake.base);
    fake.with(|s| s.issuer = with_slash.clone());
    let oidc = started(fake.config()).await;
    assert_eq!(oidc.issuer(), Some(with_slash));
}

#[tokio::test]
async fn before_discovery_everything_is_unavailable() {
    let oidc = Oidc::start(config("http://127.0.0.1:9"));
    assert!(!oidc.ready());
    assert_eq!(oidc.issuer(), None);
    assert!(oidc.origins().is_empty());
    assert!(matches!(oidc.begin_login(), Err(OidcError::Unavailable)));
    let result = oidc.finish_login("code", &no_nonce()).await;
    assert!(matches!(result, Err(OidcError::Unavailable)));
    assert!(matches!(
        oidc.logout_token("a.b.c").await,
        Err(OidcError::Unavailable)
    ));
    assert!(matches!(
        oidc.bearer("a.b.c").await,
        Err(OidcError::Unavailable)
    ));
}

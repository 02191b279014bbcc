//! Back-channel logout tokens and bearer access tokens, checked against
//! keys from `testdata/` with a clock that stands still.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::support::*;
use crate::clock::ManualClock;
use crate::config::OidcConfig;
use crate::oidc::{BearerIdentity, LogoutRequest, Oidc, OidcError, Refusal};

/// Nothing listens here: a key refetch fails at once.
const ISSUER: &str = "http://127.0.0.1:9/realms/staff";
const NOW: i64 = 1_900_000_000;
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        DateTime::from_timestamp(NOW, 0).unwrap().naive_utc(),
    ))
}

fn oidc(config: &OidcConfig) -> Oidc {
    let keys = key_set(&[&rsa_key(), &ec_key_a()]);
    Oidc::with_provider(config, provider(ISSUER), keys, clock())
}

fn reason<T: std::fmt::Debug>(result: Result<T, OidcError>) -> String {
    match result {
        Err(OidcError::Invalid(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

fn logout_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "iat": NOW - 5,
        "exp": NOW + 120,
        "jti": "logout-1",
        "sid": "session-1",
        "sub": "user-1",
        "events": { EVENT: {} },
    })
}

async fn logout(claims: &Value) -> Result<LogoutRequest, OidcError> {
    oidc(&config(ISSUER))
        .logout_token(&rsa_key().sign(claims))
        .await
}

/// `claims` with `name` set to `value`, or removed when it is null.
fn with(mut claims: Value, name: &str, value: Value) -> Value {
    let map = claims.as_object_mut().unwrap();
    match value {
        Value::Null => map.remove(name),
        value => map.insert(name.into(), value),
    };
    claims
}

#[tokio::test]
async fn a_valid_logout_token_names_the_session_and_subject() {
    let request = logout(&logout_claims()).await.unwrap();
    assert_eq!(
        request,
        LogoutRequest {
            sid: Some("session-1".into()),
            sub: Some("user-1".into()),
        }
    );

    let only_sid = with(logout_claims(), "sub", Value::Null);
    let request = logout(&only_sid).await.unwrap();
    assert_eq!(request.sub, None);

    let listed = with(logout_claims(), "aud", json!(["other", CLIENT_ID]));
    assert!(logout(&listed).await.is_ok());
}

#[tokio::test]
async fn a_logout_token_type_header_must_say_logout_or_jwt() {
    let key = rsa_key();
    for (typ, accepted) in [
        ("logout+jwt", true),
        ("application/logout+jwt", true),
        ("JWT", true),
    ]
    .into_iter()
    .chain([("at+jwt", false), ("id_token+jwt", false)])
    {
        let mut header = key.header();
        header.typ = Some(typ.into());
        let token = key.sign_with(header, &logout_claims());
        let result = oidc(&config(ISSUER)).logout_token(&token).await;
        assert_eq!(result.is_ok(), accepted, "typ {typ}");
    }
}

#[tokio::test]
async fn logout_tokens_failing_a_rule_are_refused_with_the_reason() {
    let cases = [
        (
            with(logout_claims(), "aud", json!("someone-else")),
            "wrong audience",
        ),
        (
            with(logout_claims(), "iss", json!("https://evil.example")),
            "wrong issuer",
        ),
        (with(logout_claims(), "exp", json!(NOW - 61)), "expired"),
        (with(logout_claims(), "iat", Value::Null), "no iat"),
        (
            with(logout_claims(), "events", Value::Null),
            "no back-channel logout event",
        ),
        (
            with(logout_claims(), "events", json!({"other": {}})),
            "no back-channel logout event",
        ),
        (
            with(logout_claims(), "nonce", json!("n")),
            "carries a nonce",
        ),
    ];
    for (claims, expected) in cases {
        let got = reason(logout(&claims).await);
        assert_eq!(got, format!("logout token: {expected}"));
    }

    let anonymous = with(
        with(logout_claims(), "sid", Value::Null),
        "sub",
        Value::Null,
    );
    assert_eq!(
        reason(logout(&anonymous).await),
        "logout token: names neither sid nor sub"
    );
}

#[tokio::test]
async fn expiry_allows_a_minute_of_clock_skew() {
    let just_expired = with(logout_claims(), "exp", json!(NOW - 30));
    assert!(logout(&just_expired).await.is_ok());
    let without_exp = with(logout_claims(), "exp", Value::Null);
    assert!(logout(&without_exp).await.is_ok());
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_known_id_is_refused() {
    let forged = ec_key_b().renamed("ec-a").sign(&logout_claims());
    let result = oidc(&config(ISSUER)).logout_token(&forged).await;
    assert_eq!(reason(result), "logout token: bad signature");
}

#[tokio::test]
async fn hs256_keyed_with_the_public_key_is_refused() {
    // The classic confusion attack: the published key used as an HMAC
    // secret. HS* is never on the allow-list.
    let public = rsa_key().jwk().to_string();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let secret = EncodingKey::from_secret(public.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&header, &logout_claims(), &secret).unwrap();

    let oidc = oidc(&config(ISSUER));
    let expected = "signature algorithm not allowed";
    assert_eq!(
        reason(oidc.logout_token(&token).await),
        format!("logout token: {expected}")
    );
    assert_eq!(
        reason(oidc.bearer(&token).await),
        format!("bearer token: {expected}")
    );
}

#[tokio::test]
async fn algorithms_outside_the_configured_list_are_refused() {
    let mut only_rsa = config(ISSUER);
    only_rsa.algorithms = vec!["RS256".into()];
    let token = ec_key_a().sign(&logout_claims());
    let result = oidc(&only_rsa).logout_token(&token).await;
    assert_eq!(
        reason(result),
        "logout token: signature algorithm not allowed"
    );

    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(&logout_claims().to_string())
    );
    let result = oidc(&config(ISSUER)).logout_token(&unsigned).await;
    assert_eq!(
        reason(result),
        "logout token: signature algorithm not allowed"
    );
}

fn b64(text: &str) -> String {
    use base64::prelude::{BASE64_URL_SAFE_NO_PAD, Engine};
    BASE64_URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn an_unknown_key_id_refetches_the_keys_at_most_once_a_minute() {
    let (a, b) = (ec_key_a(), ec_key_b());
    let fake = FakeProvider::start(&[&a, &b]).await;
    let clock = clock();
    let provider = provider(&fake.base);
    let oidc = Oidc::with_provider(&fake.config(), provider, key_set(&[&a]), clock.clone());
    let claims = with(logout_claims(), "iss", json!(fake.base));

    // The provider rotated to key b: one fetch, then b verifies.
    assert!(oidc.logout_token(&b.sign(&claims)).await.is_ok());
    assert_eq!(fake.with(|s| s.jwks_fetches), 1);

    // A made-up key id within the minute costs no fetch.
    let made_up = ec_key_b().renamed("made-up").sign(&claims);
    let result = oidc.logout_token(&made_up).await;
    assert_eq!(reason(result), "logout token: signed with an unknown key");
    assert_eq!(fake.with(|s| s.jwks_fetches), 1);

    clock.advance(TimeDelta::seconds(61));
    assert!(oidc.logout_token(&made_up).await.is_err());
    assert_eq!(fake.with(|s| s.jwks_fetches), 2);
}

fn access_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": [API_AUDIENCE, "account"],
        "exp": NOW + 300,
        "iat": NOW - 5,
        "sub": "user-1",
        "preferred_username": "ada",
        "email": "ada@example.org",
        "groups": ["staff", "admins"],
    })
}

fn group_config() -> OidcConfig {
    let mut config = config(ISSUER);
    config.group_membership = Some("staff".into());
    config.admin_group = Some("admins".into());
    config
}

async fn bearer(config: &OidcConfig, claims: &Value) -> Result<BearerIdentity, OidcError> {
    oidc(config).bearer(&rsa_key().sign(claims)).await
}

#[tokio::test]
async fn a_valid_access_token_names_its_user_and_groups() {
    let who = bearer(&group_config(), &access_claims()).await.unwrap();
    assert_eq!(who.sub, "user-1");
    assert!(who.is_admin);
    assert_eq!(who.username.as_deref(), Some("ada"));
    assert_eq!(who.email.as_deref(), Some("ada@example.org"));

    let bare = json!({"iss": ISSUER, "aud": API_AUDIENCE, "exp": NOW + 60, "sub": "svc"});
    let who = bearer(&config(ISSUER), &bare).await.unwrap();
    assert_eq!((who.username, who.email, who.is_admin), (None, None, false));
}

#[tokio::test]
async fn an_opaque_bearer_token_is_not_a_jwt() {
    let result = oidc(&config(ISSUER)).bearer("2YotnFZFEjr1zCsicMWpAA").await;
    assert_eq!(reason(result), "bearer token is not a JWT");
}

#[tokio::test]
async fn access_tokens_failing_a_rule_are_refused_with_the_reason() {
    let cases = [
        (
            with(access_claims(), "aud", json!(CLIENT_ID)),
            "wrong audience",
        ),
        (
            with(access_claims(), "iss", json!("https://evil.example")),
            "wrong issuer",
        ),
        (with(access_claims(), "exp", Value::Null), "no exp"),
        (with(access_claims(), "exp", json!(NOW - 61)), "expired"),
        (
            with(access_claims(), "nbf", json!(NOW + 120)),
            "not valid yet",
        ),
        (with(access_claims(), "sub", Value::Null), "no sub"),
    ];
    for (claims, expected) in cases {
        let got = reason(bearer(&group_config(), &claims).await);
        assert_eq!(got, format!("bearer token: {expected}"));
    }

    let forged = ec_key_b().renamed("ec-a").sign(&access_claims());
    let result = oidc(&config(ISSUER)).bearer(&forged).await;
    assert_eq!(reason(result), "bearer token: bad signature");
}

#[tokio::test]
async fn access_tokens_obey_the_group_and_required_claim_rules() {
    let outsider = with(access_claims(), "groups", json!(["guests"]));
    let result = bearer(&group_config(), &outsider).await;
    assert!(matches!(
        result,
        Err(OidcError::Refused(Refusal::NotInGroup))
    ));

    let mut required = config(ISSUER);
    required.required_claim = Some("department".into());
    let result = bearer(&required, &access_claims()).await;
    assert!(matches!(
        result,
        Err(OidcError::Refused(Refusal::RequiredClaim))
    ));
    let member = with(access_claims(), "department", json!("it"));
    assert!(bearer(&required, &member).await.is_ok());
}

#[tokio::test]
async fn id_tokens_are_not_access_tokens() {
    for (claim, value) in [
        ("nonce", json!("n-0S6_WzA2Mj")),
        ("at_hash", json!("77QmUPtjPfzWtF2AnpK9RQ")),
        ("typ", json!("ID")),
    ] {
        let got = reason(bearer(&config(ISSUER), &with(access_claims(), claim, value)).await);
        assert_eq!(
            got, "bearer token: an ID token, not an access token",
            "{claim}"
        );
    }

    // With the client id as API audience, an ID token and an access token
    // share their audience: only a token marked as an access token passes.
    let mut shared = config(ISSUER);
    shared.api_audience = CLIENT_ID.into();
    let unmarked = with(access_claims(), "aud", json!(CLIENT_ID));
    let got = reason(bearer(&shared, &unmarked).await);
    assert!(got.contains("not marked as an access token"), "{got}");
    let keycloak = with(unmarked.clone(), "typ", json!("Bearer"));
    assert!(bearer(&shared, &keycloak).await.is_ok());
    let key = rsa_key();
    let mut header = key.header();
    header.typ = Some("at+jwt".into());
    let rfc9068 = oidc(&shared)
        .bearer(&key.sign_with(header, &unmarked))
        .await;
    assert!(rfc9068.is_ok());
}

#[tokio::test]
async fn a_key_replaced_under_the_same_id_is_refetched() {
    let old = ec_key_a();
    let replacement = ec_key_b().renamed(&old.kid);
    let fake = FakeProvider::start(&[&replacement]).await;
    let provider = provider(&fake.base);
    let oidc = Oidc::with_provider(&fake.config(), provider, key_set(&[&old]), clock());
    let claims = with(logout_claims(), "iss", json!(fake.base));

    assert!(oidc.logout_token(&replacement.sign(&claims)).await.is_ok());
    assert_eq!(fake.with(|s| s.jwks_fetches), 1);
}

//! Back-channel logout tokens and bearer access tokens: JWTs checked with
//! jsonwebtoken against the provider's keys.
//!
//! jsonwebtoken checks the signature only; every claim is checked here,
//! against the time the caller passes in, so expiry tests need no sleep.

use std::str::FromStr;

use base64::prelude::{BASE64_URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header, Validation};
use serde_json::Value;

use super::LogoutRequest;
use super::claims::{Claims, text};

/// Clock skew allowed between us and the provider on `exp` and `nbf`.
pub(crate) const LEEWAY_SECS: i64 = 60;

/// The event a back-channel logout token must carry.
const BACKCHANNEL_LOGOUT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a JWT's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    NotJwt,
    Unsupported,
    Algorithm,
    UnknownKey,
    Invalid,
}

impl SignatureError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            SignatureError::NotJwt => "not a signed JWT",
            SignatureError::Unsupported => "critical header parameters are not supported",
            SignatureError::Algorithm => "signature algorithm not allowed",
            SignatureError::UnknownKey => "signed with an unknown key",
            SignatureError::Invalid => "bad signature",
        }
    }
}

/// A JWT whose signature checked out; its claims are not checked yet.
#[derive(Debug)]
pub(crate) struct Signed {
    pub(crate) header: Header,
    pub(crate) claims: Claims,
}

/// Check `jwt`'s signature with the keys it may name, if its algorithm
/// is `allowed`.
pub(crate) fn verify_signature(
    jwt: &str,
    keys: &[Jwk],
    allowed: &[Algorithm],
) -> Result<Signed, SignatureError> {
    let raw_header = raw_header(jwt).ok_or(SignatureError::NotJwt)?;
    if raw_header.contains_key("crit") {
        return Err(SignatureError::Unsupported);
    }
    let alg = raw_header.get("alg").and_then(Value::as_str);
    let alg = alg.and_then(|a| Algorithm::from_str(a).ok());
    let alg = alg
        .filter(|a| allowed.contains(a))
        .ok_or(SignatureError::Algorithm)?;
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| SignatureError::NotJwt)?;

    let candidates: Vec<&Jwk> = keys.iter().filter(|k| fits(k, &header, alg)).collect();
    if candidates.is_empty() {
        return Err(SignatureError::UnknownKey);
    }
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<Claims>(jwt, &key, &validation) {
            return Ok(Signed {
                header: data.header,
                claims: data.claims,
            });
        }
    }
    Err(SignatureError::Invalid)
}

/// The header of a compact JWS (three parts; five would be encrypted).
fn raw_header(jwt: &str) -> Option<Claims> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, _, _] = parts.as_slice() else {
        return None;
    };
    let bytes = BASE64_URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `jwk` may have signed a token with this header: the key id
/// matches when there is one, and the key is a signing key of the
/// algorithm's kind.
fn fits(jwk: &Jwk, header: &Header, alg: Algorithm) -> bool {
    let common = &jwk.common;
    let id_matches = header.kid.is_none() || common.key_id == header.kid;
    let for_signing = !matches!(
        common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    );
    let alg_matches = common
        .key_algorithm
        .is_none_or(|a| Algorithm::from_str(&a.to_string()).ok() == Some(alg));
    let kind_matches = matches!(
        (&jwk.algorithm, alg.family()),
        (AlgorithmParameters::RSA(_), AlgorithmFamily::Rsa)
            | (AlgorithmParameters::EllipticCurve(_), AlgorithmFamily::Ec)
            | (AlgorithmParameters::OctetKeyPair(_), AlgorithmFamily::Ed)
    );
    id_matches && for_signing && alg_matches && kind_matches
}

/// What a token must be for.
pub(crate) struct Expected<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    /// Unix time.
    pub(crate) now: i64,
}

/// The claims of a back-channel logout token (Back-Channel Logout 1.0,
/// section 2.6). Replayed tokens (`jti`) are not tracked: ending a session
/// twice does no harm.
pub(crate) fn logout_request(
    token: &Signed,
    expected: &Expected<'_>,
) -> Result<LogoutRequest, &'static str> {
    let typ = token.header.typ.as_deref();
    if typ.is_some_and(|t| !is_logout_type(t)) {
        return Err("wrong typ header");
    }
    let claims = &token.claims;
    check_issuer_audience(claims, expected)?;
    timestamp(claims, "iat").ok_or("no iat")?;
    if timestamp(claims, "exp").is_some_and(|exp| exp + LEEWAY_SECS < expected.now) {
        return Err("expired");
    }
    let events = claims.get("events").and_then(Value::as_object);
    if !events.is_some_and(|e| e.contains_key(BACKCHANNEL_LOGOUT)) {
        return Err("no back-channel logout event");
    }
    if claims.contains_key("nonce") {
        return Err("carries a nonce");
    }

    let sid = text(claims, "sid").map(str::to_string);
    let sub = text(claims, "sub").map(str::to_string);
    if sid.is_none() && sub.is_none() {
        return Err("names neither sid nor sub");
    }
    Ok(LogoutRequest { sid, sub })
}

/// `logout+jwt` (with or without `application/`), or plain `JWT`.
fn is_logout_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    let typ = typ.strip_prefix("application/").unwrap_or(&typ);
    typ == "logout+jwt" || typ == "jwt"
}

/// The registered claims of a JWT access token (RFC 9068): issuer,
/// audience, an unexpired `exp`, and `nbf` when present.
pub(crate) fn check_access_token(
    claims: &Claims,
    expected: &Expected<'_>,
) -> Result<(), &'static str> {
    check_issuer_audience(claims, expected)?;
    let exp = timestamp(claims, "exp").ok_or("no exp")?;
    if exp + LEEWAY_SECS < expected.now {
        return Err("expired");
    }
    if timestamp(claims, "nbf").is_some_and(|nbf| nbf - LEEWAY_SECS > expected.now) {
        return Err("not valid yet");
    }
    Ok(())
}

/// Refuse ID tokens offered as access tokens: the page hands its ID
/// token to the provider as `id_token_hint` at sign-out, so one may turn
/// up where it was not meant to. An RFC 9068 `at+jwt` is an access token;
/// `nonce`, `at_hash`, `c_hash` or Keycloak's `typ: ID` mark an ID token.
/// When the API audience is the client id (the ID token's audience), a
/// token must also say it is an access token (`at+jwt`, or Keycloak's
/// `typ: Bearer`).
pub(crate) fn check_not_id_token(
    signed: &Signed,
    shared_audience: bool,
) -> Result<(), &'static str> {
    let header_typ = signed
        .header
        .typ
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    let header_typ = header_typ
        .strip_prefix("application/")
        .unwrap_or(&header_typ);
    if header_typ == "at+jwt" {
        return Ok(());
    }
    let claims = &signed.claims;
    let claim_typ = claims.get("typ").and_then(Value::as_str).unwrap_or("");
    let id_token = ["nonce", "at_hash", "c_hash"]
        .iter()
        .any(|c| claims.contains_key(*c))
        || claim_typ.eq_ignore_ascii_case("id");
    if id_token {
        return Err("an ID token, not an access token");
    }
    if shared_audience && !claim_typ.eq_ignore_ascii_case("bearer") {
        return Err("not marked as an access token (at+jwt), and its audience is the client id");
    }
    Ok(())
}

fn check_issuer_audience(claims: &Claims, expected: &Expected<'_>) -> Result<(), &'static str> {
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err("wrong issuer");
    }
    let audience_matches = match claims.get("aud") {
        Some(Value::String(one)) => one == expected.audience,
        Some(Value::Array(many)) => many.iter().any(|a| a.as_str() == Some(expected.audience)),
        _ => false,
    };
    match audience_matches {
        true => Ok(()),
        false => Err("wrong audience"),
    }
}

/// A NumericDate claim, in whole seconds.
fn timestamp(claims: &Claims, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
}

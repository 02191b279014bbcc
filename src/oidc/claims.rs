//! Reading claims and applying the access rules.
//!
//! Claim names are settings, so claims are read from the verified token's
//! JSON payload as a map rather than through typed structs. The rules
//! keep the meaning they have in the Python devicepasswords project:
//! email and username must be there, the email must be verified (when
//! configured), a required claim may be demanded (with a value), and a
//! group may be demanded from a group claim holding a JSON array.

use serde_json::{Map, Value};

use super::{BearerIdentity, OidcError, Refusal};
use crate::config::OidcConfig;

/// A token payload, or userinfo answer, as JSON.
pub(crate) type Claims = Map<String, Value>;

/// Who passed the sign-in rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    pub(crate) sub: String,
    pub(crate) username: String,
    pub(crate) email: String,
    pub(crate) is_admin: bool,
}

/// The claim names and access rules from the configuration.
pub(crate) struct Rules {
    email: String,
    email_verified: Option<String>,
    username: String,
    required: Option<String>,
    required_value: Option<String>,
    group: Option<String>,
    group_claim: String,
    admin_group: Option<String>,
}

impl Rules {
    pub(crate) fn new(config: &OidcConfig) -> Rules {
        Rules {
            email: config.claim_email.clone(),
            email_verified: config.claim_email_verified.clone(),
            username: config.claim_username.clone(),
            required: config.required_claim.clone(),
            required_value: config.required_claim_value.clone(),
            group: config.group_membership.clone(),
            group_claim: config.group_claim.clone(),
            admin_group: config.admin_group.clone(),
        }
    }

    /// Every sign-in rule, in order; the first that fails decides.
    pub(crate) fn sign_in(&self, claims: &Claims) -> Result<Person, OidcError> {
        let sub = text(claims, "sub").ok_or_else(|| invalid("id token has no sub"))?;
        let missing = |name: &str| OidcError::Refused(Refusal::MissingClaim(name.to_string()));
        let email = text(claims, &self.email).ok_or_else(|| missing(&self.email))?;
        let username = text(claims, &self.username).ok_or_else(|| missing(&self.username))?;

        if let Some(name) = &self.email_verified
            && !claims.get(name).is_some_and(is_true)
        {
            return Err(OidcError::Refused(Refusal::EmailNotVerified));
        }
        self.check_required(claims)?;
        let groups = groups(claims, &self.group_claim);
        self.check_group(&groups)?;

        Ok(Person {
            sub: sub.to_string(),
            username: username.to_string(),
            email: email.to_string(),
            is_admin: self.is_admin(&groups),
        })
    }

    /// The rules for an access token: a subject, the required claim and
    /// the group; username and email are taken when present.
    pub(crate) fn bearer(&self, claims: &Claims) -> Result<BearerIdentity, OidcError> {
        let sub = text(claims, "sub").ok_or_else(|| invalid("bearer token: no sub"))?;
        self.check_required(claims)?;
        let groups = groups(claims, &self.group_claim);
        self.check_group(&groups)?;
        Ok(BearerIdentity {
            sub: sub.to_string(),
            is_admin: self.is_admin(&groups),
            username: text(claims, &self.username).map(str::to_string),
            email: text(claims, &self.email).map(str::to_string),
        })
    }

    fn check_required(&self, claims: &Claims) -> Result<(), OidcError> {
        let Some(name) = &self.required else {
            return Ok(());
        };
        let satisfied = match (claims.get(name), &self.required_value) {
            (None | Some(Value::Null), _) => false,
            (Some(_), None) => true,
            (Some(Value::Array(items)), Some(want)) => items.iter().any(|v| equals(v, want)),
            (Some(value), Some(want)) => equals(value, want),
        };
        match satisfied {
            true => Ok(()),
            false => Err(OidcError::Refused(Refusal::RequiredClaim)),
        }
    }

    fn check_group(&self, groups: &[&str]) -> Result<(), OidcError> {
        match &self.group {
            Some(group) if !groups.contains(&group.as_str()) => {
                Err(OidcError::Refused(Refusal::NotInGroup))
            }
            _ => Ok(()),
        }
    }

    fn is_admin(&self, groups: &[&str]) -> bool {
        self.admin_group
            .as_deref()
            .is_some_and(|admin| groups.contains(&admin))
    }
}

/// Add `extra` claims (from userinfo) that `claims` lacks: the ID token
/// is signed, so its values win.
pub(crate) fn merge(claims: &mut Claims, extra: Claims) {
    for (name, value) in extra {
        claims.entry(name).or_insert(value);
    }
}

/// A claim holding a non-empty string.
pub(crate) fn text<'a>(claims: &'a Claims, name: &str) -> Option<&'a str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `true`, or the string "true" some providers send.
fn is_true(value: &Value) -> bool {
    matches!(value, Value::Bool(true)) || value.as_str() == Some("true")
}

/// The groups in a claim: a JSON array of strings (other members are
/// ignored), or a single string.
fn groups<'a>(claims: &'a Claims, name: &str) -> Vec<&'a str> {
    match claims.get(name) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    }
}

/// Whether a claim value equals the configured text: strings as they
/// are, numbers and booleans as written in JSON.
fn equals(value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) => s == want,
        Value::Bool(b) => want.parse() == Ok(*b),
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

fn invalid(reason: &str) -> OidcError {
    OidcError::Invalid(reason.to_string())
}

#[cfg(test)]
mod tests;

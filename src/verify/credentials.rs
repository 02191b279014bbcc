//! Credentials as consumers send them: HTTP Basic (RFC 7617) or a JSON
//! body. Parsing never fails loudly: every malformed input is simply
//! "no credentials", which the HTTP layer answers with 401.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::secret::Secret;

/// Longest Authorization value read; anything longer is refused unread.
/// A login and a generated password fit in a few hundred bytes.
pub const MAX_HEADER_LEN: usize = 4096;

/// A username (a token login, a username or an email) and a password.
pub struct Credentials {
    pub username: String,
    pub password: Secret<String>,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: Secret::new(password.into()),
        }
    }

    /// Empty user or empty password: refused by policy, after the same
    /// work as a wrong password.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty() || self.password.expose().is_empty()
    }
}

/// Why an Authorization value was not usable. Never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credentials")]
    Missing,
    #[error("request body is not JSON with a username and a password")]
    NotJson,
    #[error("authorization value too long")]
    TooLong,
    #[error("authorization scheme is not Basic")]
    NotBasic,
    #[error("basic credentials are not valid base64")]
    BadBase64,
    #[error("basic credentials are not UTF-8")]
    NotUtf8,
    #[error("basic credentials have no colon")]
    NoColon,
    #[error("credentials contain control characters")]
    ControlCharacter,
}

/// Parse an `Authorization: Basic …` value.
pub fn parse_basic(value: &[u8]) -> Result<Credentials, CredentialsError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(CredentialsError::TooLong);
    }
    let value = trim_ows(value);
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(at) => (&value[..at], &value[at..]),
        None => return Err(CredentialsError::NotBasic),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(CredentialsError::NotBasic);
    }
    let encoded = trim_ows(rest);
    let decoded = STANDARD
        .decode(encoded)
        .map_err(|_| CredentialsError::BadBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| CredentialsError::NotUtf8)?;
    split_pair(&text)
}

/// Split `user:password` at the first colon (a user-id has none).
pub fn split_pair(text: &str) -> Result<Credentials, CredentialsError> {
    let (user, password) = text.split_once(':').ok_or(CredentialsError::NoColon)?;
    if text.chars().any(char::is_control) {
        return Err(CredentialsError::ControlCharacter);
    }
    Ok(Credentials::new(user, password))
}

/// Check a JSON-supplied pair the same way as a Basic one.
pub fn check_fields(user: &str, password: &str) -> Result<Credentials, CredentialsError> {
    if user.chars().chain(password.chars()).any(char::is_control) {
        return Err(CredentialsError::ControlCharacter);
    }
    Ok(Credentials::new(user, password))
}

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pair: &[u8]) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(pair)).into_bytes()
    }

    fn parsed(value: &[u8]) -> (String, String) {
        match parse_basic(value) {
            Ok(c) => (c.username, c.password.into_inner()),
            Err(e) => panic!("refused: {e}"),
        }
    }

    #[test]
    fn password_may_contain_colons() {
        let (user, pass) = parsed(&basic(b"alice#042:sec:ret"));
        assert_eq!((user.as_str(), pass.as_str()), ("alice#042", "sec:ret"));
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_allowed() {
        let value = format!("bAsIc    {}", STANDARD.encode("a:b"));
        assert_eq!(parsed(value.as_bytes()), ("a".into(), "b".into()));
    }

    #[test]
    fn utf8_passwords_are_kept() {
        let (_, pass) = parsed(&basic("bob:pässwörd".as_bytes()));
        assert_eq!(pass, "pässwörd");
    }

    #[test]
    fn malformed_values_are_refused() {
        use CredentialsError::*;
        let cases: Vec<(Vec<u8>, CredentialsError)> = vec![
            (b"Token abc".to_vec(), NotBasic),
            (b"Basic".to_vec(), NotBasic),
            (b"Basic ".to_vec(), NotBasic),
            (b"Basic !!!".to_vec(), BadBase64),
            (basic(b"alice"), NoColon),
            (basic(b"al\x00ice:pw"), ControlCharacter),
            (basic(b"alice:\xff\xfe"), NotUtf8),
            (vec![b'A'; MAX_HEADER_LEN + 1], TooLong),
        ];
        for (value, want) in cases {
            let got = parse_basic(&value).err();
            assert_eq!(got, Some(want), "{}", String::from_utf8_lossy(&value));
        }
    }

    #[test]
    fn empty_halves_parse_but_are_flagged() {
        assert!(
            parse_basic(&basic(b"alice:"))
                .map(|c| c.is_empty())
                .unwrap_or(false)
        );
        assert!(
            parse_basic(&basic(b":secret"))
                .map(|c| c.is_empty())
                .unwrap_or(false)
        );
    }
}

//! The Unix crypt family: md5_crypt `$1$`, sha1_crypt `$sha1$`, sha256_crypt `$5$`
//! and sha512_crypt `$6$`, bare or behind `{CRYPT}` (which `mod.rs` strips).
//!
//! Values are parsed here with passlib's rules (salt lengths, checksum lengths,
//! rounds without zero padding); `pwhash` runs the algorithms themselves.

use pwhash::HashSetup;

use super::codec::{self, canonical_decimal, in_range, is_hash64};
use super::limits::MAX_ROUNDS;
use super::{HashPolicy, Invalid, Made, Refusal, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

/// What passlib allows for each kind.
struct Spec {
    ident: &'static str,
    max_salt: usize,
    /// Salt length passlib uses for new hashes.
    new_salt: usize,
    checksum_len: usize,
    min_rounds: u32,
}

impl Kind {
    fn spec(self) -> Spec {
        let (ident, max_salt, new_salt, checksum_len, min_rounds) = match self {
            Kind::Md5 => ("$1$", 8, 8, 22, 0),
            Kind::Sha1 => ("$sha1$", 64, 8, 28, 1),
            Kind::Sha256 => ("$5$", 16, 16, 43, 1000),
            Kind::Sha512 => ("$6$", 16, 16, 86, 1000),
        };
        Spec {
            ident,
            max_salt,
            new_salt,
            checksum_len,
            min_rounds,
        }
    }
}

/// A stored value taken apart. `rounds` is `None` for md5_crypt (fixed at 1000) and
/// for SHA-crypt values without `rounds=` (5000, the algorithm's implicit default).
struct Parsed<'a> {
    rounds: Option<u32>,
    salt: &'a str,
    checksum: &'a str,
}

fn parse(kind: Kind, body: &str) -> Result<Parsed<'_>, Invalid> {
    let spec = kind.spec();
    let rest = body.strip_prefix(spec.ident).ok_or(Invalid)?;
    let fields: Vec<&str> = rest.split('$').collect();
    let (rounds, salt, checksum) = match (kind, fields.as_slice()) {
        (Kind::Md5, &[salt, checksum]) => (None, salt, checksum),
        (Kind::Sha1, &[rounds, salt, checksum]) => (Some(rounds), salt, checksum),
        (Kind::Sha256 | Kind::Sha512, &[rounds, salt, checksum]) => (
            Some(rounds.strip_prefix("rounds=").ok_or(Invalid)?),
            salt,
            checksum,
        ),
        (Kind::Sha256 | Kind::Sha512, &[salt, checksum]) => (None, salt, checksum),
        _ => return Err(Invalid),
    };
    let rounds = rounds.map(|text| rounds_at_least(spec.min_rounds, text));
    let rounds = rounds.transpose()?;
    // Checking the alphabet also keeps pwhash's decoder, which would underflow on
    // control characters, away from anything but hash64.
    let salt_ok = salt.len() <= spec.max_salt && is_hash64(salt);
    let checksum_ok = checksum.len() == spec.checksum_len && is_hash64(checksum);
    if !(salt_ok && checksum_ok) {
        return Err(Invalid);
    }
    Ok(Parsed {
        rounds,
        salt,
        checksum,
    })
}

/// Rounds as passlib writes them (no zero padding), within `min..=MAX_ROUNDS`.
fn rounds_at_least(min: u32, text: &str) -> Result<u32, Invalid> {
    in_range(canonical_decimal(text)?, min, MAX_ROUNDS)
}

/// The checksum field pwhash computes for `password` with the parsed settings.
fn checksum(kind: Kind, salt: &str, rounds: Option<u32>, pw: &str) -> Option<String> {
    let setup = HashSetup {
        salt: Some(salt),
        rounds,
    };
    // pwhash deprecates md5_crypt and sha256_crypt for new passwords; we need them
    // to read existing values, and make new ones only when configured to.
    #[allow(deprecated)]
    let full = match kind {
        Kind::Md5 => pwhash::md5_crypt::hash_with(setup, pw),
        Kind::Sha1 => pwhash::sha1_crypt::hash_with(setup, pw),
        Kind::Sha256 => pwhash::sha256_crypt::hash_with(setup, pw),
        Kind::Sha512 => pwhash::sha512_crypt::hash_with(setup, pw),
    };
    let full = full.ok()?;
    full.rsplit_once('$')
        .map(|(_, checksum)| checksum.to_owned())
}

pub(super) fn verify(kind: Kind, body: &str, password: &str) -> Verdict {
    let parsed = parse(kind, body)?;
    // passlib refuses NUL in these passwords (C's crypt() would stop at it), so no
    // such password can have been set; the check is not secret.
    if password.contains('\0') {
        return Ok(false);
    }
    let computed = checksum(kind, parsed.salt, parsed.rounds, password);
    let computed = computed.ok_or(Invalid)?;
    Ok(codec::ct_eq(
        computed.as_bytes(),
        parsed.checksum.as_bytes(),
    ))
}

/// A new value with the policy's rounds for `kind`.
pub(super) fn hash(kind: Kind, policy: &HashPolicy, password: &str) -> Made {
    if password.contains('\0') {
        return Err("password contains a NUL byte, which crypt cannot represent");
    }
    let spec = kind.spec();
    let rounds = match kind {
        Kind::Md5 => None,
        Kind::Sha1 => Some(policy.sha1_crypt_rounds),
        Kind::Sha256 => Some(policy.sha256_crypt_rounds),
        Kind::Sha512 => Some(policy.sha512_crypt_rounds),
    };
    if let Some(r) = rounds {
        in_range(r.into(), spec.min_rounds, MAX_ROUNDS).map_err(|_| BAD_ROUNDS)?;
    }
    let salt = codec::random_hash64(spec.new_salt)?;
    let checksum = checksum(kind, &salt, rounds, password).ok_or(CRYPT_FAILED)?;
    Ok(match (kind, rounds) {
        (Kind::Sha1, Some(r)) => format!("$sha1${r}${salt}${checksum}"),
        (Kind::Sha256 | Kind::Sha512, Some(r)) => {
            format!("{}rounds={r}${salt}${checksum}", spec.ident)
        }
        _ => format!("{}{salt}${checksum}", spec.ident),
    })
}

const BAD_ROUNDS: Refusal = "rounds in the hash policy are out of range for this scheme";
const CRYPT_FAILED: Refusal = "the crypt routine failed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // From pwhash's and passlib's own test suites.
        let md5 = "$1$5pZSV9va$azfrPr6af3Fc7dLblQXVa0";
        let sha1 = "$sha1$19703$iVdJqfSE$v4qYKl1zqYThwpjJAoKX6UvlHq/a";
        let sha512 = "$6$rounds=11531$G/gkPn17kHYo0gTF$Kq.uZBHlSBXyzsOJXtxJruOOH4yc0Is13\
                      uY7yK0PvAvXxbvc1w8DO1RzREMhKsc82K/Jh8OquV8FZUlreYPJk1";
        assert_eq!(verify(Kind::Md5, md5, "password"), Ok(true));
        assert_eq!(verify(Kind::Sha1, sha1, "password"), Ok(true));
        assert_eq!(verify(Kind::Sha512, sha512, "test"), Ok(true));
        assert_eq!(verify(Kind::Sha512, sha512, "test\0"), Ok(false));
    }

    #[test]
    fn rounds_follow_passlib_rules() {
        let chk = "x".repeat(86);
        let with = |rounds: &str| format!("$6$rounds={rounds}$salt${chk}");
        assert!(parse(Kind::Sha512, &with("1000")).is_ok());
        for bad in ["999", "01000", "", "10000001", "-5000", "5000 "] {
            assert!(parse(Kind::Sha512, &with(bad)).is_err(), "{bad:?}");
        }
        assert!(parse(Kind::Sha512, &format!("$6$saltsaltsaltsalt1${chk}")).is_err());
    }
}

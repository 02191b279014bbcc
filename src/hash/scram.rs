//! SCRAM credentials (RFC 5802): passlib's `$scram$<rounds>$<salt>$sha-1=..,sha-256=..`
//! and Dovecot's `{SCRAM-SHA-1}` / `{SCRAM-SHA-256}`
//! `<rounds>,<salt>,<StoredKey>,<ServerKey>`.
//!
//! Both rest on SaltedPassword = PBKDF2-HMAC(SASLprep(password), salt, rounds), as
//! passlib's `scram.derive_digest` computes it (devicepasswords used it for Dovecot's
//! form too). A password SASLprep rejects cannot have been stored, so it never matches.

use std::borrow::Cow;

use base64::Engine;
use hmac::digest::{FixedOutput, Update};
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::codec::{self, B64, canonical_decimal, decimal, decode, in_range};
use super::limits::MAX_ROUNDS;
use super::{Invalid, Made, Refusal, Verdict};

/// Salt lengths of new values: passlib's default for `$scram$`, devicepasswords'
/// for Dovecot's form.
const NEW_PASSLIB_SALT_BYTES: usize = 12;
const NEW_DOVECOT_SALT_BYTES: usize = 16;

/// The digests a new `$scram$` value carries: passlib's default set.
const NEW_PASSLIB_ALGS: [Alg; 3] = [Alg::Sha1, Alg::Sha256, Alg::Sha512];

/// The digest passlib checks when several are stored: the first present of these.
const PASSLIB_VERIFY_ORDER: [Alg; 5] = [
    Alg::Sha256,
    Alg::Sha512,
    Alg::Sha224,
    Alg::Sha384,
    Alg::Sha1,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Alg {
    const ALL: [Alg; 5] = [
        Alg::Sha1,
        Alg::Sha224,
        Alg::Sha256,
        Alg::Sha384,
        Alg::Sha512,
    ];

    /// The IANA name passlib writes.
    fn iana(self) -> &'static str {
        match self {
            Alg::Sha1 => "sha-1",
            Alg::Sha224 => "sha-224",
            Alg::Sha256 => "sha-256",
            Alg::Sha384 => "sha-384",
            Alg::Sha512 => "sha-512",
        }
    }

    fn output_len(self) -> usize {
        match self {
            Alg::Sha1 => 20,
            Alg::Sha224 => 28,
            Alg::Sha256 => 32,
            Alg::Sha384 => 48,
            Alg::Sha512 => 64,
        }
    }

    /// SaltedPassword := Hi(password, salt, rounds).
    fn salted_password(self, password: &[u8], salt: &[u8], rounds: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            Alg::Sha1 => pbkdf2_into::<Sha1>(password, salt, rounds, &mut out),
            Alg::Sha224 => pbkdf2_into::<Sha224>(password, salt, rounds, &mut out),
            Alg::Sha256 => pbkdf2_into::<Sha256>(password, salt, rounds, &mut out),
            Alg::Sha384 => pbkdf2_into::<Sha384>(password, salt, rounds, &mut out),
            Alg::Sha512 => pbkdf2_into::<Sha512>(password, salt, rounds, &mut out),
        }
        out
    }

    /// (StoredKey, ServerKey) as Dovecot stores them; only SHA-1 and SHA-256 occur.
    fn dovecot_keys(self, salted: &[u8]) -> (Vec<u8>, Vec<u8>) {
        match self {
            Alg::Sha1 => keys::<Sha1>(salted),
            Alg::Sha224 => keys::<Sha224>(salted),
            Alg::Sha256 => keys::<Sha256>(salted),
            Alg::Sha384 => keys::<Sha384>(salted),
            Alg::Sha512 => keys::<Sha512>(salted),
        }
    }
}

fn pbkdf2_into<D>(password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8])
where
    D: EagerHash,
    Hmac<D>: KeyInit + Update + FixedOutput + Clone,
{
    // HMAC takes keys of any length, so pbkdf2's only error cannot occur; the
    // output is then all zeros, which matches no stored digest anyway.
    let _ = pbkdf2::pbkdf2::<Hmac<D>>(password, salt, rounds, out);
}

fn hmac_of<D>(key: &[u8], message: &[u8]) -> Vec<u8>
where
    D: EagerHash,
    Hmac<D>: KeyInit + Mac,
{
    match <Hmac<D> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            Mac::update(&mut mac, message);
            mac.finalize().into_bytes().to_vec()
        }
        // Unreachable as above; an empty key matches nothing stored.
        Err(_) => Vec::new(),
    }
}

/// StoredKey = H(HMAC(SaltedPassword, "Client Key")),
/// ServerKey = HMAC(SaltedPassword, "Server Key").
fn keys<D>(salted: &[u8]) -> (Vec<u8>, Vec<u8>)
where
    D: EagerHash + Digest,
    Hmac<D>: KeyInit + Mac,
{
    let client_key = hmac_of::<D>(salted, b"Client Key");
    let stored_key = D::digest(&client_key).to_vec();
    (stored_key, hmac_of::<D>(salted, b"Server Key"))
}

fn saslprep(password: &str) -> Option<Cow<'_, str>> {
    stringprep::saslprep(password).ok()
}

// ----- passlib's $scram$ -----

struct PasslibScram {
    rounds: u32,
    salt: Vec<u8>,
    digests: Vec<(Alg, Vec<u8>)>,
}

/// Follows passlib's `scram.from_string`: rounds without zero padding, ab64 salt and
/// digests, `sha-1` required. passlib rejects algorithm names that are not IANA
/// spellings; we also reject the few valid ones it never writes (md5, md2).
fn parse_passlib(body: &str) -> Result<PasslibScram, Invalid> {
    let rest = body.strip_prefix("$scram$").ok_or(Invalid)?;
    let fields: Vec<&str> = rest.split('$').collect();
    let &[rounds, salt, checksums] = fields.as_slice() else {
        return Err(Invalid);
    };
    let rounds = in_range(canonical_decimal(rounds)?, 1, MAX_ROUNDS)?;
    let salt = codec::decode_ab64(salt)?;
    let mut digests = Vec::new();
    for pair in checksums.split(',') {
        let (name, digest) = pair.split_once('=').ok_or(Invalid)?;
        let alg = Alg::ALL
            .into_iter()
            .find(|alg| alg.iana() == name)
            .ok_or(Invalid)?;
        digests.push((alg, codec::decode_ab64(digest)?));
    }
    if !digests.iter().any(|&(alg, _)| alg == Alg::Sha1) {
        return Err(Invalid);
    }
    Ok(PasslibScram {
        rounds,
        salt,
        digests,
    })
}

pub(super) fn verify_passlib(body: &str, password: &str) -> Verdict {
    let h = parse_passlib(body)?;
    // Like a Python dict, a repeated name keeps its last digest.
    let find = |alg: Alg| h.digests.iter().rev().find(|&&(a, _)| a == alg);
    let (alg, stored) = PASSLIB_VERIFY_ORDER
        .iter()
        .find_map(|&alg| find(alg).map(|(_, digest)| (alg, digest)))
        .ok_or(Invalid)?;
    // passlib answers "no match" here; a digest of the wrong size is corrupt.
    if stored.len() != alg.output_len() {
        return Err(Invalid);
    }
    let Some(password) = saslprep(password) else {
        return Ok(false);
    };
    let computed = alg.salted_password(password.as_bytes(), &h.salt, h.rounds);
    Ok(codec::ct_eq(&computed, stored))
}

pub(super) fn hash_passlib(rounds: u32, password: &str) -> Made {
    let rounds = in_range(rounds.into(), 1, MAX_ROUNDS).map_err(|_| BAD_ROUNDS)?;
    let password = saslprep(password).ok_or(SASLPREP)?;
    let salt = codec::random_bytes::<NEW_PASSLIB_SALT_BYTES>()?;
    let digests: Vec<String> = NEW_PASSLIB_ALGS
        .iter()
        .map(|alg| {
            let digest = alg.salted_password(password.as_bytes(), &salt, rounds);
            format!("{}={}", alg.iana(), codec::encode_ab64(&digest))
        })
        .collect();
    let salt = codec::encode_ab64(&salt);
    Ok(format!("$scram${rounds}${salt}${}", digests.join(",")))
}

// ----- Dovecot's {SCRAM-SHA-1} / {SCRAM-SHA-256} -----

struct DovecotScram {
    rounds: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

fn parse_dovecot(alg: Alg, body: &str) -> Result<DovecotScram, Invalid> {
    let fields: Vec<&str> = body.split(',').collect();
    let &[rounds, salt, stored_key, server_key] = fields.as_slice() else {
        return Err(Invalid);
    };
    let rounds = in_range(decimal(rounds)?, 1, MAX_ROUNDS)?;
    let salt = decode(&B64, salt)?;
    let stored_key = decode(&B64, stored_key)?;
    let server_key = decode(&B64, server_key)?;
    let n = alg.output_len();
    if stored_key.len() != n || server_key.len() != n {
        return Err(Invalid);
    }
    Ok(DovecotScram {
        rounds,
        salt,
        stored_key,
        server_key,
    })
}

pub(super) fn verify_dovecot(alg: Alg, body: &str, password: &str) -> Verdict {
    let h = parse_dovecot(alg, body)?;
    let Some(password) = saslprep(password) else {
        return Ok(false);
    };
    let salted = alg.salted_password(password.as_bytes(), &h.salt, h.rounds);
    let (stored_key, server_key) = alg.dovecot_keys(&salted);
    // `&`, not `&&`: check both keys whatever the first says.
    let stored_ok = codec::ct_eq(&stored_key, &h.stored_key);
    Ok(stored_ok & codec::ct_eq(&server_key, &h.server_key))
}

/// The part after `{SCRAM-SHA-*}`, as devicepasswords wrote it.
pub(super) fn hash_dovecot(alg: Alg, rounds: u32, password: &str) -> Made {
    let rounds = in_range(rounds.into(), 1, MAX_ROUNDS).map_err(|_| BAD_ROUNDS)?;
    let password = saslprep(password).ok_or(SASLPREP)?;
    let salt = codec::random_bytes::<NEW_DOVECOT_SALT_BYTES>()?;
    let salted = alg.salted_password(password.as_bytes(), &salt, rounds);
    let (stored_key, server_key) = alg.dovecot_keys(&salted);
    let [salt, stored_key, server_key] =
        [&salt[..], &stored_key, &server_key].map(|b| B64.encode(b));
    Ok(format!("{rounds},{salt},{stored_key},{server_key}"))
}

const BAD_ROUNDS: Refusal = "rounds in the hash policy are out of range for this scheme";
const SASLPREP: Refusal = "password contains characters SASLprep does not allow";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devicepasswords_test_vectors() {
        // From devicepasswords' tests/hashes/test_dovecot.py.
        let sha1 = "4096,YLq6hzinvC13hpOtiYrY6w==,U2vQpW46v6506Zsab9NTlPv/jbk=,\
                    cJxnNAQ5EeLhLAk6IB8ymube7TU=";
        let sha256 = "4096,2LdpQgqFUFMdV63SS9XgnQ==,\
                      1lqxQc6gqLHXXuycpPlLyvb8AUSuxBfmZlqaJGzFDOI=,\
                      j+dSYp5a1uwOD6HLuzKvnJSmGeKJuJCLQmN80MCEeS0=";
        assert_eq!(verify_dovecot(Alg::Sha1, sha1, "IeDahgai"), Ok(true));
        assert_eq!(verify_dovecot(Alg::Sha256, sha256, "maiPeeja"), Ok(true));
        assert_eq!(verify_dovecot(Alg::Sha256, sha256, "maiPeeja!"), Ok(false));
    }

    #[test]
    fn passlib_checks_sha256_before_sha1() {
        let stored = hash_passlib(1, "pw").unwrap();
        // Corrupt the sha-1 digest: passlib would still answer from sha-256.
        let (head, tail) = stored.split_once("sha-1=").unwrap();
        let zeros = "A".repeat(27);
        let corrupted = format!("{head}sha-1={zeros}{}", &tail[27..]);
        assert_eq!(verify_passlib(&corrupted, "pw"), Ok(true));
    }

    #[test]
    fn passlib_requires_sha1_and_a_digest() {
        assert!(parse_passlib("$scram$1$c2FsdA$sha-256=AAAA").is_err());
        assert!(parse_passlib("$scram$1$c2FsdA$sha-1,sha-256").is_err());
        assert!(parse_passlib("$scram$01$c2FsdA$sha-1=AAAA").is_err());
        assert!(parse_passlib("$scram$1$c2FsdA$SHA-1=AAAA").is_err());
    }

    #[test]
    fn saslprep_maps_non_ascii_spaces() {
        // U+00A0 NO-BREAK SPACE is mapped to a space, so both spellings match.
        let stored = hash_passlib(1, "a b").unwrap();
        assert_eq!(verify_passlib(&stored, "a\u{a0}b"), Ok(true));
        assert_eq!(verify_passlib(&stored, "a\u{7}b"), Ok(false));
    }
}

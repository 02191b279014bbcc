//! Schemes without a work factor: plaintext, bare hex digests (`hex_*`, `nthash`),
//! LDAP's base64 digests (`{MD5}`, `{SHA}`) and their salted forms (`{SSHA}` ...).
//!
//! They are here because existing databases hold them; none is a good way to store a
//! password, but device passwords are long random strings, which blunts the damage.

use base64::Engine;
use md4::Md4;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::codec::{self, B64};
use super::{Invalid, Made, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alg {
    Md5,
    Sha1,
    Sha256,
    Sha512,
    /// MD4 of the UTF-16LE password (Windows' NT hash).
    Nt,
}

/// Salt length for new `{SMD5}`/`{SSHA*}` values: passlib's default for the SHA-2
/// forms, within the 4..=16 bytes passlib reads, and read by any LDAP server or
/// Dovecot since they take the salt to be whatever follows the digest.
const NEW_SALT_BYTES: usize = 8;

/// Salt lengths accepted when reading: passlib takes 4..=16; Dovecot and OpenLDAP
/// write 4 but read any, so be generous above.
const SALT_BYTES: std::ops::RangeInclusive<usize> = 4..=64;

impl Alg {
    fn output_len(self) -> usize {
        match self {
            Alg::Md5 | Alg::Nt => 16,
            Alg::Sha1 => 20,
            Alg::Sha256 => 32,
            Alg::Sha512 => 64,
        }
    }

    /// The digest of `parts` concatenated.
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Alg::Md5 => digest_of::<Md5>(parts),
            Alg::Sha1 => digest_of::<Sha1>(parts),
            Alg::Sha256 => digest_of::<Sha256>(parts),
            Alg::Sha512 => digest_of::<Sha512>(parts),
            Alg::Nt => digest_of::<Md4>(parts),
        }
    }

    fn of_password(self, password: &str) -> Vec<u8> {
        match self {
            Alg::Nt => {
                let utf16 = password.encode_utf16().flat_map(u16::to_le_bytes);
                self.digest(&[&utf16.collect::<Vec<u8>>()])
            }
            _ => self.digest(&[password.as_bytes()]),
        }
    }
}

fn digest_of<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = D::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

/// Plaintext and `{plaintext}`: the stored value is the password.
pub(super) fn verify_plain(stored: &str, password: &str) -> bool {
    codec::ct_eq(stored.as_bytes(), password.as_bytes())
}

/// An unsalted digest. Bare values (`hex_*`, `nthash`) are hex as passlib requires;
/// behind a tag, Dovecot's convention applies: hex if the length says so, else base64.
pub(super) fn verify_unsalted(alg: Alg, body: &str, tagged: bool, pw: &str) -> Verdict {
    let n = alg.output_len();
    let stored = if body.len() == 2 * n {
        hex::decode(body).map_err(|_| Invalid)?
    } else if tagged {
        codec::decode(&B64, body)?
    } else {
        return Err(Invalid);
    };
    if stored.len() != n {
        return Err(Invalid);
    }
    Ok(codec::ct_eq(&alg.of_password(pw), &stored))
}

/// `{SMD5}`, `{SSHA}`, `{SSHA256}`, `{SSHA512}`: base64 of digest(password + salt)
/// followed by the salt.
pub(super) fn verify_salted(alg: Alg, body: &str, password: &str) -> Verdict {
    let data = codec::decode(&B64, body)?;
    let n = alg.output_len();
    let salt_len = data.len().checked_sub(n).ok_or(Invalid)?;
    if !SALT_BYTES.contains(&salt_len) {
        return Err(Invalid);
    }
    let (stored, salt) = data.split_at(n);
    Ok(codec::ct_eq(
        &alg.digest(&[password.as_bytes(), salt]),
        stored,
    ))
}

/// `hex_*` and `nthash`: lower-case hex, as passlib writes.
pub(super) fn hex(alg: Alg, password: &str) -> String {
    hex::encode(alg.of_password(password))
}

/// The part after `{MD5}` or `{SHA}`.
pub(super) fn base64(alg: Alg, password: &str) -> String {
    B64.encode(alg.of_password(password))
}

/// The part after `{SMD5}`, `{SSHA}`, ... with a fresh salt.
pub(super) fn salted(alg: Alg, password: &str) -> Made {
    let salt = codec::random_bytes::<NEW_SALT_BYTES>()?;
    let mut data = alg.digest(&[password.as_bytes(), &salt]);
    data.extend_from_slice(&salt);
    Ok(B64.encode(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_hash_is_md4_of_utf16le() {
        // The classic test vector for "password".
        assert_eq!(hex(Alg::Nt, "password"), "8846f7eaee8fb117ad06bdd830b7586c");
    }

    #[test]
    fn tagged_digests_read_hex_or_base64_and_bare_ones_only_hex() {
        let hex_md5 = "5f4dcc3b5aa765d61d8327deb882cf99"; // md5("password")
        let b64_md5 = "X03MO1qnZdYdgyfeuILPmQ==";
        let (md5, pw) = (Alg::Md5, "password");
        let verify = |body: &str, tagged| verify_unsalted(md5, body, tagged, pw);
        assert_eq!(verify(hex_md5, false), Ok(true));
        assert_eq!(verify(&hex_md5.to_uppercase(), false), Ok(true));
        assert_eq!(verify(hex_md5, true), Ok(true));
        assert_eq!(verify(b64_md5, true), Ok(true));
        assert_eq!(verify(b64_md5, false), Err(Invalid));
    }

    #[test]
    fn salted_digest_needs_a_salt_of_four_bytes_or_more() {
        let digest_only = B64.encode(Alg::Sha1.digest(&[b"pw"]));
        assert_eq!(verify_salted(Alg::Sha1, &digest_only, "pw"), Err(Invalid));
        let mut with_salt = Alg::Sha1.digest(&[b"pw", b"salt"]);
        with_salt.extend_from_slice(b"salt");
        assert_eq!(
            verify_salted(Alg::Sha1, &B64.encode(with_salt), "pw"),
            Ok(true)
        );
    }
}

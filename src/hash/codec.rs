//! Small pieces every family needs: the base64 flavours of the stored formats,
//! integers as passlib parses them, random salts and constant-time comparison.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::TryRng;
use rand::rngs::SysRng;
use subtle::ConstantTimeEq;

use super::{Invalid, Refusal};

/// Decoding is lenient the way Python's `binascii.a2b_base64` is (padding optional,
/// unused low bits ignored), since passlib accepted such values.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);

/// Standard alphabet with `=` padding on output: LDAP `{SSHA}`, Dovecot.
pub(super) const B64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// Standard alphabet without padding: PHC strings (argon2) and passlib's scrypt.
pub(super) const B64_BARE: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, LENIENT.with_encode_padding(false));

/// bcrypt's own alphabet, unpadded.
pub(super) const B64_BCRYPT: GeneralPurpose =
    GeneralPurpose::new(&alphabet::BCRYPT, LENIENT.with_encode_padding(false));

/// The alphabet of crypt salts and checksums ("hash64").
const HASH64: &[u8; 64] = b"./0123456789\
    ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub(super) fn is_hash64(s: &str) -> bool {
    s.bytes().all(|b| HASH64.contains(&b))
}

/// Decode base64 of at most `MAX_FIELD_BYTES` bytes.
pub(super) fn decode(engine: &GeneralPurpose, s: &str) -> Result<Vec<u8>, Invalid> {
    if s.len() > super::limits::MAX_FIELD_BYTES * 4 / 3 + 4 {
        return Err(Invalid);
    }
    engine.decode(s).map_err(|_| Invalid)
}

/// passlib's "adapted base64" (`ab64`): standard alphabet with `.` for `+`, unpadded.
/// Like passlib, `+` is accepted on input as well.
pub(super) fn decode_ab64(s: &str) -> Result<Vec<u8>, Invalid> {
    decode(&B64_BARE, &s.replace('.', "+"))
}

pub(super) fn encode_ab64(bytes: &[u8]) -> String {
    B64_BARE.encode(bytes).replace('+', ".")
}

/// A decimal integer as Python's `int()` reads one from these formats: ASCII digits
/// only (no sign, no spaces), leading zeros allowed.
pub(super) fn decimal(s: &str) -> Result<u64, Invalid> {
    // Ten digits already exceed every limit; more could overflow u64.
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid);
    }
    s.parse().map_err(|_| Invalid)
}

/// A decimal integer where passlib forbids zero padding (rounds of the crypt family
/// and `$scram$`).
pub(super) fn canonical_decimal(s: &str) -> Result<u64, Invalid> {
    if s.len() > 1 && s.starts_with('0') {
        return Err(Invalid);
    }
    decimal(s)
}

/// `decimal` narrowed to `lo..=hi`.
pub(super) fn in_range(value: u64, lo: u32, hi: u32) -> Result<u32, Invalid> {
    u32::try_from(value)
        .ok()
        .filter(|v| (lo..=hi).contains(v))
        .ok_or(Invalid)
}

/// Equality that takes the same time wherever the first difference is. Lengths are
/// not secret (they are fixed by the scheme).
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub(super) fn fill_random(buf: &mut [u8]) -> Result<(), Refusal> {
    SysRng
        .try_fill_bytes(buf)
        .map_err(|_| "the operating system's random number generator failed")
}

pub(super) fn random_bytes<const N: usize>() -> Result<[u8; N], Refusal> {
    let mut buf = [0u8; N];
    fill_random(&mut buf)?;
    Ok(buf)
}

/// `len` random hash64 characters, for crypt salts.
pub(super) fn random_hash64(len: usize) -> Result<String, Refusal> {
    let mut bytes = vec![0u8; len];
    fill_random(&mut bytes)?;
    // 64 divides 256, so masking to six bits keeps every character equally likely.
    let chars = bytes
        .iter()
        .map(|b| char::from(HASH64[usize::from(b & 63)]));
    Ok(chars.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_follows_python_int_without_sign_or_spaces() {
        assert_eq!(decimal("0042"), Ok(42));
        assert_eq!(canonical_decimal("0042"), Err(Invalid));
        assert_eq!(canonical_decimal("0"), Ok(0));
        for bad in ["", "+1", "-1", " 1", "1 ", "99999999999", "1e3", "٣"] {
            assert_eq!(decimal(bad), Err(Invalid), "{bad:?}");
        }
    }

    #[test]
    fn ab64_uses_dot_for_plus_and_accepts_both() {
        assert_eq!(encode_ab64(&[0xfb, 0xef]), "..8");
        assert_eq!(decode_ab64("..8"), Ok(vec![0xfb, 0xef]));
        assert_eq!(decode_ab64("++8"), Ok(vec![0xfb, 0xef]));
    }

    #[test]
    fn random_hash64_has_requested_length_and_alphabet() {
        let salt = random_hash64(16).unwrap();
        assert_eq!(salt.len(), 16);
        assert!(is_hash64(&salt));
    }
}

//! The memory- or CPU-hard KDFs: argon2 (`$argon2id$...`, PHC format), bcrypt
//! (`$2b$`, also `$2a$`/`$2y$`) and passlib's scrypt (`$scrypt$ln=..,r=..,p=..$..`).
//!
//! Every cost parameter is checked against `limits` before any work or allocation,
//! so a hostile stored value costs at most bounded time and memory.

use std::cell::RefCell;

use argon2::{Argon2, AssociatedData, Block, ParamsBuilder};
use base64::Engine;

use super::codec::{self, B64_BARE, B64_BCRYPT, decimal, decode, in_range};
use super::limits::{MAX_BCRYPT_COST, MAX_MEMORY_BYTES, MAX_SCRYPT_LOG_N, MAX_WORK_BYTES};
use super::{HashPolicy, Invalid, Made, Refusal, Verdict};

/// Salt and digest lengths of new argon2 and scrypt hashes: passlib's defaults.
const NEW_SALT_BYTES: usize = 16;
const NEW_DIGEST_BYTES: usize = 32;

const BAD_POLICY: Refusal = "cost parameters in the hash policy are out of range";

// ----- argon2 -----

struct Argon2Hash {
    algorithm: argon2::Algorithm,
    version: argon2::Version,
    cost: Argon2Cost,
    data: Vec<u8>,
    salt: Vec<u8>,
    digest: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Argon2Cost {
    m_kib: u32,
    t: u32,
    p: u32,
}

impl Argon2Cost {
    /// Within the format's rules (m >= 8p) and our limits.
    fn is_acceptable(self) -> bool {
        let memory = u64::from(self.m_kib) * 1024;
        self.t >= 1
            && self.p >= 1
            && u64::from(self.m_kib) >= 8 * u64::from(self.p)
            && memory <= MAX_MEMORY_BYTES
            && memory * u64::from(self.t) <= MAX_WORK_BYTES
    }

    fn params(self, output_len: usize, data: &[u8]) -> Result<argon2::Params, Invalid> {
        let mut builder = ParamsBuilder::new();
        builder
            .m_cost(self.m_kib)
            .t_cost(self.t)
            .p_cost(self.p)
            .output_len(output_len);
        if !data.is_empty() {
            builder.data(AssociatedData::new(data).map_err(|_| Invalid)?);
        }
        builder.build().map_err(|_| Invalid)
    }
}

/// `$argon2<type>$[v=<n>$]m=<n>,t=<n>,p=<n>[,data=<b64>]$<salt>$<digest>`; a missing
/// version means 0x10, as in passlib. `keyid=` needs a key we do not have.
fn parse_argon2(body: &str) -> Result<Argon2Hash, Invalid> {
    let mut fields = body.strip_prefix("$argon2").ok_or(Invalid)?.split('$');
    let algorithm = match fields.next() {
        Some("id") => argon2::Algorithm::Argon2id,
        Some("i") => argon2::Algorithm::Argon2i,
        Some("d") => argon2::Algorithm::Argon2d,
        _ => return Err(Invalid),
    };
    let mut field = fields.next().ok_or(Invalid)?;
    let mut version = argon2::Version::V0x10;
    if let Some(number) = field.strip_prefix("v=") {
        let number = u32::try_from(decimal(number)?).map_err(|_| Invalid)?;
        version = argon2::Version::try_from(number).map_err(|_| Invalid)?;
        field = fields.next().ok_or(Invalid)?;
    }
    let (cost, data) = parse_argon2_params(field)?;
    let salt = decode(&B64_BARE, fields.next().ok_or(Invalid)?)?;
    let digest = decode(&B64_BARE, fields.next().ok_or(Invalid)?)?;
    // argon2 needs 8 bytes of salt; digests shorter than 4 bytes do not exist.
    if fields.next().is_some() || salt.len() < 8 || digest.len() < 4 {
        return Err(Invalid);
    }
    Ok(Argon2Hash {
        algorithm,
        version,
        cost,
        data,
        salt,
        digest,
    })
}

fn parse_argon2_params(field: &str) -> Result<(Argon2Cost, Vec<u8>), Invalid> {
    let mut parts = field.split(',');
    let mut number = |key: &str| -> Result<u32, Invalid> {
        let text = parts
            .next()
            .and_then(|p| p.strip_prefix(key))
            .ok_or(Invalid)?;
        in_range(decimal(text)?, 0, u32::MAX)
    };
    let cost = Argon2Cost {
        m_kib: number("m=")?,
        t: number("t=")?,
        p: number("p=")?,
    };
    let data = match parts.next() {
        None => Vec::new(),
        Some(part) => decode(&B64_BARE, part.strip_prefix("data=").ok_or(Invalid)?)?,
    };
    if parts.next().is_some() || !cost.is_acceptable() {
        return Err(Invalid);
    }
    Ok((cost, data))
}

pub(super) fn verify_argon2(body: &str, password: &str) -> Verdict {
    let h = parse_argon2(body)?;
    let params = h.cost.params(h.digest.len(), &h.data)?;
    let mut out = vec![0u8; h.digest.len()];
    let argon2 = Argon2::new(h.algorithm, h.version, params);
    argon2_into(&argon2, password, &h.salt, &mut out).map_err(|_| Invalid)?;
    Ok(codec::ct_eq(&out, &h.digest))
}

/// Blocks (KiB) of working memory a hashing thread keeps between checks:
/// enough for the default policy and passlib's 64 MiB; larger stored
/// parameters get a buffer of their own that is freed afterwards.
const KEEP_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// Argon2's working memory, reused by each hashing thread. Allocating
    /// it for every check makes glibc raise its mmap threshold and keep
    /// the freed buffers in per-thread arenas: resident memory grew by
    /// about 8 MiB a check (146 MiB after 16 sequential checks on one
    /// thread); with one reused buffer it stays at one buffer a thread.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn argon2_into(
    argon2: &Argon2<'_>,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let needed = argon2.params().block_count();
    ARGON2_MEMORY.with(|cell| {
        let Ok(mut blocks) = cell.try_borrow_mut() else {
            return argon2.hash_password_into(password.as_bytes(), salt, out);
        };
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        let result = argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            out,
            &mut blocks[..needed],
        );
        // The blocks are derived from the password: clear them, and let
        // an unusually large buffer go.
        blocks[..needed].fill(Block::default());
        if blocks.len() > KEEP_BLOCKS {
            *blocks = Vec::new();
        }
        result
    })
}

/// argon2id, version 0x13, as passlib writes it.
pub(super) fn hash_argon2(policy: &HashPolicy, password: &str) -> Made {
    let cost = Argon2Cost {
        m_kib: policy.argon2_memory_kib,
        t: policy.argon2_iterations,
        p: policy.argon2_parallelism,
    };
    if !cost.is_acceptable() {
        return Err(BAD_POLICY);
    }
    let params = cost.params(NEW_DIGEST_BYTES, &[]).map_err(|_| BAD_POLICY)?;
    let salt = codec::random_bytes::<NEW_SALT_BYTES>()?;
    let mut out = [0u8; NEW_DIGEST_BYTES];
    let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    argon2_into(&argon2, password, &salt, &mut out)
        .map_err(|_| "argon2 failed (out of memory?)")?;
    let Argon2Cost { m_kib, t, p } = cost;
    let (salt, out) = (B64_BARE.encode(salt), B64_BARE.encode(out));
    Ok(format!("$argon2id$v=19$m={m_kib},t={t},p={p}${salt}${out}"))
}

// ----- bcrypt -----

/// `$2b$12$` + 22 characters of salt + 31 of checksum, in bcrypt's base64.
fn parse_bcrypt(body: &str) -> Result<(u32, [u8; 16], Vec<u8>), Invalid> {
    // 60 ASCII bytes make every slice below land on a character boundary.
    if body.len() != 60 || !body.is_ascii() {
        return Err(Invalid);
    }
    let (head, tail) = body.split_at(7);
    let cost = match head.as_bytes() {
        [b'$', b'2', b'a' | b'b' | b'y', b'$', _, _, b'$'] => decimal(&head[4..6])?,
        _ => return Err(Invalid),
    };
    let cost = in_range(cost, 4, MAX_BCRYPT_COST)?;
    let (salt, checksum) = tail.split_at(22);
    let salt: [u8; 16] = decode(&B64_BCRYPT, salt)?.try_into().map_err(|_| Invalid)?;
    let checksum = decode(&B64_BCRYPT, checksum)?;
    if checksum.len() != 23 {
        return Err(Invalid);
    }
    Ok((cost, salt, checksum))
}

/// The 23 raw checksum bytes bcrypt computes (it reads at most 72 password bytes).
fn bcrypt_checksum(cost: u32, salt: [u8; 16], password: &str) -> Option<Vec<u8>> {
    let parts = bcrypt::hash_with_salt(password.as_bytes(), cost, salt).ok()?;
    let full = parts.to_string();
    decode(&B64_BCRYPT, full.get(29..)?).ok()
}

pub(super) fn verify_bcrypt(body: &str, password: &str) -> Verdict {
    let (cost, salt, stored) = parse_bcrypt(body)?;
    // passlib refuses NUL in bcrypt passwords, so none can have been set.
    if password.contains('\0') {
        return Ok(false);
    }
    let computed = bcrypt_checksum(cost, salt, password).ok_or(Invalid)?;
    Ok(codec::ct_eq(&computed, &stored))
}

/// `$2b$`, passlib's default variant.
pub(super) fn hash_bcrypt(cost: u32, password: &str) -> Made {
    if password.contains('\0') {
        return Err("password contains a NUL byte, which bcrypt cannot represent");
    }
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(BAD_POLICY);
    }
    let salt = codec::random_bytes::<16>()?;
    let parts = bcrypt::hash_with_salt(password.as_bytes(), cost, salt);
    let parts = parts.map_err(|_| BAD_POLICY)?;
    Ok(parts.format_for_version(bcrypt::Version::TwoB))
}

// ----- scrypt -----

struct ScryptHash {
    params: scrypt::Params,
    salt: Vec<u8>,
    digest: Vec<u8>,
}

/// passlib's constraints (1 <= ln, ln < 16r, rp < 2^30) and our memory/work limits.
fn scrypt_params(log_n: u64, r: u64, p: u64) -> Result<scrypt::Params, Invalid> {
    let log_n = u8::try_from(log_n).map_err(|_| Invalid)?;
    // `min` keeps the shift in range; out-of-range values are refused just below.
    let memory = (128 * u128::from(r)) << log_n.min(MAX_SCRYPT_LOG_N);
    let acceptable = (1..=MAX_SCRYPT_LOG_N).contains(&log_n)
        && r >= 1
        && p >= 1
        && u128::from(log_n) < 16 * u128::from(r)
        && u128::from(r) * u128::from(p) < 1 << 30
        && memory <= u128::from(MAX_MEMORY_BYTES)
        && memory * u128::from(p) <= u128::from(MAX_WORK_BYTES);
    if !acceptable {
        return Err(Invalid);
    }
    let (r, p) = (in_range(r, 1, u32::MAX)?, in_range(p, 1, u32::MAX)?);
    scrypt::Params::new(log_n, r, p).map_err(|_| Invalid)
}

/// `$scrypt$ln=<n>,r=<n>,p=<n>$<salt>$<digest>`, unpadded standard base64.
fn parse_scrypt(body: &str) -> Result<ScryptHash, Invalid> {
    let rest = body.strip_prefix("$scrypt$").ok_or(Invalid)?;
    let fields: Vec<&str> = rest.split('$').collect();
    let &[settings, salt, digest] = fields.as_slice() else {
        return Err(Invalid);
    };
    let settings: Vec<&str> = settings.split(',').collect();
    let &[ln, r, p] = settings.as_slice() else {
        return Err(Invalid);
    };
    let number = |text: &str, key: &str| decimal(text.strip_prefix(key).ok_or(Invalid)?);
    let params = scrypt_params(number(ln, "ln=")?, number(r, "r=")?, number(p, "p=")?)?;
    let (salt, digest) = (decode(&B64_BARE, salt)?, decode(&B64_BARE, digest)?);
    // passlib's scrypt checksums are always 32 bytes.
    if digest.len() != NEW_DIGEST_BYTES {
        return Err(Invalid);
    }
    Ok(ScryptHash {
        params,
        salt,
        digest,
    })
}

pub(super) fn verify_scrypt(body: &str, password: &str) -> Verdict {
    let h = parse_scrypt(body)?;
    let mut out = [0u8; NEW_DIGEST_BYTES];
    let done = scrypt::scrypt(password.as_bytes(), &h.salt, &h.params, &mut out);
    done.map_err(|_| Invalid)?;
    Ok(codec::ct_eq(&out, &h.digest))
}

pub(super) fn hash_scrypt(policy: &HashPolicy, password: &str) -> Made {
    let (log_n, r, p) = (policy.scrypt_log_n, policy.scrypt_r, policy.scrypt_p);
    let params = scrypt_params(log_n.into(), r.into(), p.into());
    let params = params.map_err(|_| BAD_POLICY)?;
    let salt = codec::random_bytes::<NEW_SALT_BYTES>()?;
    let mut out = [0u8; NEW_DIGEST_BYTES];
    let done = scrypt::scrypt(password.as_bytes(), &salt, &params, &mut out);
    done.map_err(|_| BAD_POLICY)?;
    let (salt, out) = (B64_BARE.encode(salt), B64_BARE.encode(out));
    Ok(format!("$scrypt$ln={log_n},r={r},p={p}${salt}${out}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_costs_beyond_the_limits_are_refused_before_any_work() {
        let tail = "$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA";
        for params in [
            "m=4294967295,t=1,p=1",
            "m=1048576,t=9,p=1",
            "m=8,t=0,p=1",
            "m=8,t=1,p=0",
            "m=8,t=1,p=2",
            "m=8,t=1,p=1,keyid=AAAA",
            "m=8,t=1",
        ] {
            let stored = format!("$argon2id$v=19${params}{tail}");
            assert!(parse_argon2(&stored).is_err(), "{params}");
        }
        assert!(parse_argon2(&format!("$argon2id$v=19$m=8,t=1,p=1{tail}")).is_ok());
        assert!(parse_argon2(&format!("$argon2i$m=8,t=1,p=1{tail}")).is_ok());
    }

    #[test]
    fn scrypt_limits() {
        assert!(scrypt_params(16, 8, 1).is_ok());
        assert!(scrypt_params(20, 8, 1).is_ok());
        for (ln, r, p) in [(0, 8, 1), (21, 8, 1), (300, 8, 1), (16, 1, 1), (20, 8, 9)] {
            assert!(scrypt_params(ln, r, p).is_err(), "{ln} {r} {p}");
        }
        assert!(scrypt_params(10, 1 << 31, 1 << 31).is_err());
    }

    #[test]
    fn bcrypt_accepts_2a_2b_2y_and_ignores_bytes_past_72() {
        let long = "a".repeat(72);
        let stored = hash_bcrypt(4, &long).unwrap();
        for variant in ["2a", "2b", "2y"] {
            let stored = stored.replacen("2b", variant, 1);
            assert_eq!(verify_bcrypt(&stored, &format!("{long}tail")), Ok(true));
        }
        assert!(parse_bcrypt(&stored.replacen("2b", "2x", 1)).is_err());
        assert!(parse_bcrypt(&stored.replacen("$04$", "$21$", 1)).is_err());
    }
}

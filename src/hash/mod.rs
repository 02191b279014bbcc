//! Stored password hashes: identify the scheme, verify a password, create new hashes.
//!
//! The formats are the ones passlib 1.7 reads and writes, so that a database shared
//! with the Python project "devicepasswords" keeps working in both directions, plus
//! the `{TAG}` spellings Dovecot and LDAP servers use for the same digests.
//!
//! A stored value is read by its prefix (`$2b$`, `{SSHA}`, `{CRYPT}$6$`, ...); values
//! without a recognised prefix (plaintext, bare hex digests, NT hashes) are read with
//! the [`Hasher`]'s default scheme, as the Python project did with its configured one.
//!
//! The families live in their own files: `digest.rs` (plaintext, hex, LDAP, NT
//! hash), `crypt.rs` (the Unix crypt family), `kdf.rs` (argon2, bcrypt, scrypt) and
//! `scram.rs` (passlib's `$scram$` and Dovecot's `{SCRAM-SHA-*}`); `codec.rs` has
//! the encodings they share. They report failures as `Invalid` or a static reason;
//! this file turns those into [`HashError`]s, which therefore can never quote a
//! stored value or a password.

mod codec;
mod crypt;
mod digest;
mod kdf;
mod scram;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// A password hashing scheme, named as passlib names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Argon2,
    Bcrypt,
    Scrypt,
    Scram,
    Md5Crypt,
    Sha1Crypt,
    Sha256Crypt,
    Sha512Crypt,
    LdapMd5,
    LdapSha1,
    LdapSaltedMd5,
    LdapSaltedSha1,
    LdapSaltedSha256,
    LdapSaltedSha512,
    LdapMd5Crypt,
    LdapSha1Crypt,
    LdapSha256Crypt,
    LdapSha512Crypt,
    LdapBcrypt,
    RoundupPlaintext,
    DovecotScramSha1,
    DovecotScramSha256,
    HexMd5,
    HexSha1,
    HexSha256,
    HexSha512,
    NtHash,
    Plaintext,
}

impl Scheme {
    /// Every scheme, in the order they are documented.
    pub const ALL: &'static [Scheme] = &[
        Scheme::Argon2,
        Scheme::Bcrypt,
        Scheme::Scrypt,
        Scheme::Scram,
        Scheme::Md5Crypt,
        Scheme::Sha1Crypt,
        Scheme::Sha256Crypt,
        Scheme::Sha512Crypt,
        Scheme::LdapMd5,
        Scheme::LdapSha1,
        Scheme::LdapSaltedMd5,
        Scheme::LdapSaltedSha1,
        Scheme::LdapSaltedSha256,
        Scheme::LdapSaltedSha512,
        Scheme::LdapMd5Crypt,
        Scheme::LdapSha1Crypt,
        Scheme::LdapSha256Crypt,
        Scheme::LdapSha512Crypt,
        Scheme::LdapBcrypt,
        Scheme::RoundupPlaintext,
        Scheme::DovecotScramSha1,
        Scheme::DovecotScramSha256,
        Scheme::HexMd5,
        Scheme::HexSha1,
        Scheme::HexSha256,
        Scheme::HexSha512,
        Scheme::NtHash,
        Scheme::Plaintext,
    ];

    /// The passlib name (`dovecot_scram_*` are the Python project's own handlers).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2 => "argon2",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Scrypt => "scrypt",
            Scheme::Scram => "scram",
            Scheme::Md5Crypt => "md5_crypt",
            Scheme::Sha1Crypt => "sha1_crypt",
            Scheme::Sha256Crypt => "sha256_crypt",
            Scheme::Sha512Crypt => "sha512_crypt",
            Scheme::LdapMd5 => "ldap_md5",
            Scheme::LdapSha1 => "ldap_sha1",
            Scheme::LdapSaltedMd5 => "ldap_salted_md5",
            Scheme::LdapSaltedSha1 => "ldap_salted_sha1",
            Scheme::LdapSaltedSha256 => "ldap_salted_sha256",
            Scheme::LdapSaltedSha512 => "ldap_salted_sha512",
            Scheme::LdapMd5Crypt => "ldap_md5_crypt",
            Scheme::LdapSha1Crypt => "ldap_sha1_crypt",
            Scheme::LdapSha256Crypt => "ldap_sha256_crypt",
            Scheme::LdapSha512Crypt => "ldap_sha512_crypt",
            Scheme::LdapBcrypt => "ldap_bcrypt",
            Scheme::RoundupPlaintext => "roundup_plaintext",
            Scheme::DovecotScramSha1 => "dovecot_scram_sha1",
            Scheme::DovecotScramSha256 => "dovecot_scram_sha256",
            Scheme::HexMd5 => "hex_md5",
            Scheme::HexSha1 => "hex_sha1",
            Scheme::HexSha256 => "hex_sha256",
            Scheme::HexSha512 => "hex_sha512",
            Scheme::NtHash => "nthash",
            Scheme::Plaintext => "plaintext",
        }
    }

    /// Whether the scheme is a deliberately expensive KDF, so that a caller may want
    /// to cache successful checks or bound how many run at once.
    pub fn is_slow(self) -> bool {
        match self {
            Scheme::Argon2
            | Scheme::Bcrypt
            | Scheme::Scrypt
            | Scheme::Scram
            | Scheme::Md5Crypt
            | Scheme::Sha1Crypt
            | Scheme::Sha256Crypt
            | Scheme::Sha512Crypt
            | Scheme::LdapMd5Crypt
            | Scheme::LdapSha1Crypt
            | Scheme::LdapSha256Crypt
            | Scheme::LdapSha512Crypt
            | Scheme::LdapBcrypt
            | Scheme::DovecotScramSha1
            | Scheme::DovecotScramSha256 => true,
            Scheme::LdapMd5
            | Scheme::LdapSha1
            | Scheme::LdapSaltedMd5
            | Scheme::LdapSaltedSha1
            | Scheme::LdapSaltedSha256
            | Scheme::LdapSaltedSha512
            | Scheme::RoundupPlaintext
            | Scheme::HexMd5
            | Scheme::HexSha1
            | Scheme::HexSha256
            | Scheme::HexSha512
            | Scheme::NtHash
            | Scheme::Plaintext => false,
        }
    }

    /// The `{TAG}` passlib writes in front of this scheme's values, if it has one.
    /// Such a scheme cannot read a value that lacks a tag.
    fn tag(self) -> Option<&'static str> {
        match self {
            Scheme::LdapMd5 => Some("{MD5}"),
            Scheme::LdapSha1 => Some("{SHA}"),
            Scheme::LdapSaltedMd5 => Some("{SMD5}"),
            Scheme::LdapSaltedSha1 => Some("{SSHA}"),
            Scheme::LdapSaltedSha256 => Some("{SSHA256}"),
            Scheme::LdapSaltedSha512 => Some("{SSHA512}"),
            Scheme::LdapMd5Crypt
            | Scheme::LdapSha1Crypt
            | Scheme::LdapSha256Crypt
            | Scheme::LdapSha512Crypt
            | Scheme::LdapBcrypt => Some("{CRYPT}"),
            Scheme::RoundupPlaintext => Some("{plaintext}"),
            Scheme::DovecotScramSha1 => Some("{SCRAM-SHA-1}"),
            Scheme::DovecotScramSha256 => Some("{SCRAM-SHA-256}"),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scheme name that is not one of [`Scheme::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown password scheme {name:?}; accepted: {}", accepted_names())]
pub struct UnknownScheme {
    pub name: String,
}

fn accepted_names() -> String {
    let names: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
    names.join(", ")
}

impl FromStr for Scheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .iter()
            .copied()
            .find(|scheme| scheme.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownScheme { name: s.to_owned() })
    }
}

/// Cost parameters for new hashes, all in one place.
///
/// The numbers follow current public guidance where there is one and passlib 1.7's
/// defaults otherwise, so that hashes made here cost what the Python project's did:
///
/// * argon2id m=19456 KiB, t=2, p=1: OWASP's Password Storage Cheat Sheet (2023+)
///   first configuration; modest memory because this service verifies many device
///   passwords per second on small machines.
/// * bcrypt cost 12: passlib's default and above OWASP's minimum of 10.
/// * scrypt ln=16 (N=2^16), r=8, p=1: passlib's default, 64 MiB per check; OWASP
///   lists N=2^16, r=8 with p=2 or N=2^17, p=1 — these device passwords carry ~68 bits
///   of entropy, so memory per check matters more to us than the last factor of two.
/// * sha1_crypt 480000, sha256_crypt 535000, sha512_crypt 656000 rounds: passlib's.
/// * `$scram$` 100000 PBKDF2 rounds: passlib's default; SCRAM clients redo this work
///   on every login, which rules out OWASP's 600000 for PBKDF2-HMAC-SHA256.
/// * Dovecot SCRAM 200000 rounds: what devicepasswords wrote for these hashes.
///
/// Unsalted digests, plaintext and md5_crypt have no cost parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPolicy {
    /// Argon2id memory in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes over memory.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// bcrypt log2 rounds, 4..=20 here (see `limits`).
    pub bcrypt_cost: u32,
    /// scrypt log2(N).
    pub scrypt_log_n: u8,
    /// scrypt block size r.
    pub scrypt_r: u32,
    /// scrypt parallelism p.
    pub scrypt_p: u32,
    pub sha1_crypt_rounds: u32,
    pub sha256_crypt_rounds: u32,
    pub sha512_crypt_rounds: u32,
    /// PBKDF2 rounds for passlib's `$scram$` (each of its three digests).
    pub scram_rounds: u32,
    /// PBKDF2 rounds for Dovecot's `{SCRAM-SHA-1}` and `{SCRAM-SHA-256}`.
    pub dovecot_scram_rounds: u32,
}

impl Default for HashPolicy {
    fn default() -> Self {
        HashPolicy {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            bcrypt_cost: 12,
            scrypt_log_n: 16,
            scrypt_r: 8,
            scrypt_p: 1,
            sha1_crypt_rounds: 480_000,
            sha256_crypt_rounds: 535_000,
            sha512_crypt_rounds: 656_000,
            scram_rounds: 100_000,
            dovecot_scram_rounds: 200_000,
        }
    }
}

impl HashPolicy {
    /// The cheapest parameters each format allows. Hashes made with these fall to a
    /// laptop in seconds: only for tests, never for stored passwords.
    pub const INSECURE_FAST_FOR_TESTS_ONLY: HashPolicy = HashPolicy {
        argon2_memory_kib: 8,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        bcrypt_cost: 4,
        scrypt_log_n: 1,
        scrypt_r: 1,
        scrypt_p: 1,
        sha1_crypt_rounds: 1,
        sha256_crypt_rounds: 1000,
        sha512_crypt_rounds: 1000,
        scram_rounds: 1,
        dovecot_scram_rounds: 1,
    };
}

/// Upper bounds on what a stored value may ask of us. Reading a hash must not let a
/// corrupt or hostile database row hang a worker or allocate gigabytes, so values
/// beyond these are reported as malformed. Each is far above any sane configuration
/// (each allows roughly a minute of CPU or 1 GiB of memory at most); new hashes are
/// held to the same bounds so that we can always read back what we write.
mod limits {
    /// Iterations of PBKDF2, sha1_crypt and the SHA-crypt family.
    pub const MAX_ROUNDS: u32 = 10_000_000;
    /// bcrypt cost 20 is ~1 minute; 31 (the format's maximum) would be days.
    pub const MAX_BCRYPT_COST: u32 = 20;
    /// scrypt N = 2^20.
    pub const MAX_SCRYPT_LOG_N: u8 = 20;
    /// Memory for one argon2 or scrypt computation.
    pub const MAX_MEMORY_BYTES: u64 = 1 << 30;
    /// Memory times passes (argon2) or times parallelism (scrypt).
    pub const MAX_WORK_BYTES: u64 = 8 << 30;
    /// passlib refuses longer passwords (`MAX_PASSWORD_SIZE`); the SHA-crypt family
    /// costs time quadratic in the password length.
    pub const MAX_PASSWORD_BYTES: usize = 4096;
    /// Salts and digests in stored values; real ones are at most a few dozen bytes.
    pub const MAX_FIELD_BYTES: usize = 1024;
}

/// Why verifying or hashing failed. The messages name the scheme and the reason,
/// never the stored value or the password, so they are safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("stored value is not a valid {scheme} hash")]
    Malformed { scheme: &'static str },
    #[error("cannot create a {0} hash: {1}")]
    Create(&'static str, &'static str),
}

/// A family's verdict that a stored value cannot be read; see [`HashError::Malformed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Invalid;

/// A family's reason for refusing to create a hash; see [`HashError::Create`].
type Refusal = &'static str;

/// What the families answer: a match or not, or an unreadable stored value.
type Verdict = Result<bool, Invalid>;

/// A new value, or why none was made.
type Made = Result<String, Refusal>;

/// `{TAG}` prefixes, matched case-insensitively as Dovecot and OpenLDAP do, with the
/// case-sensitive start the rest must have ("" = anything) and the scheme that reads
/// it. The first match wins, so more specific rows come first.
const TAGS: &[(&str, &str, Scheme)] = &[
    ("{CRYPT}", "$1$", Scheme::LdapMd5Crypt),
    ("{CRYPT}", "$sha1$", Scheme::LdapSha1Crypt),
    ("{CRYPT}", "$5$", Scheme::LdapSha256Crypt),
    ("{CRYPT}", "$6$", Scheme::LdapSha512Crypt),
    ("{CRYPT}", "$2a$", Scheme::LdapBcrypt),
    ("{CRYPT}", "$2b$", Scheme::LdapBcrypt),
    ("{CRYPT}", "$2y$", Scheme::LdapBcrypt),
    // Dovecot's own names for the crypt family.
    ("{MD5-CRYPT}", "$1$", Scheme::LdapMd5Crypt),
    ("{SHA256-CRYPT}", "$5$", Scheme::LdapSha256Crypt),
    ("{SHA512-CRYPT}", "$6$", Scheme::LdapSha512Crypt),
    ("{BLF-CRYPT}", "$2", Scheme::LdapBcrypt),
    ("{ARGON2I}", "$argon2", Scheme::Argon2),
    ("{ARGON2ID}", "$argon2", Scheme::Argon2),
    ("{ARGON2}", "$argon2", Scheme::Argon2),
    // Dovecot's {MD5} is md5-crypt; LDAP's (and passlib's) is a base64 MD5 digest.
    ("{MD5}", "$1$", Scheme::LdapMd5Crypt),
    ("{MD5}", "", Scheme::LdapMd5),
    ("{LDAP-MD5}", "", Scheme::LdapMd5),
    ("{PLAIN-MD5}", "", Scheme::HexMd5),
    ("{SHA}", "", Scheme::LdapSha1),
    ("{SHA1}", "", Scheme::LdapSha1),
    ("{SHA256}", "", Scheme::HexSha256),
    ("{SHA512}", "", Scheme::HexSha512),
    ("{SMD5}", "", Scheme::LdapSaltedMd5),
    ("{SSHA}", "", Scheme::LdapSaltedSha1),
    ("{SSHA256}", "", Scheme::LdapSaltedSha256),
    ("{SSHA512}", "", Scheme::LdapSaltedSha512),
    ("{NTLM}", "", Scheme::NtHash),
    ("{SCRAM-SHA-1}", "", Scheme::DovecotScramSha1),
    ("{SCRAM-SHA-256}", "", Scheme::DovecotScramSha256),
    ("{PLAINTEXT}", "", Scheme::RoundupPlaintext),
    ("{PLAIN}", "", Scheme::RoundupPlaintext),
    ("{CLEARTEXT}", "", Scheme::RoundupPlaintext),
];

/// Modular-crypt identifiers (case-sensitive, as in passlib).
const IDENTS: &[(&str, Scheme)] = &[
    ("$argon2id$", Scheme::Argon2),
    ("$argon2i$", Scheme::Argon2),
    ("$argon2d$", Scheme::Argon2),
    ("$2a$", Scheme::Bcrypt),
    ("$2b$", Scheme::Bcrypt),
    ("$2y$", Scheme::Bcrypt),
    ("$scrypt$", Scheme::Scrypt),
    ("$scram$", Scheme::Scram),
    ("$1$", Scheme::Md5Crypt),
    ("$sha1$", Scheme::Sha1Crypt),
    ("$5$", Scheme::Sha256Crypt),
    ("$6$", Scheme::Sha512Crypt),
];

/// A stored value split into the scheme that reads it and the part after any tag.
struct Resolved<'a> {
    scheme: Scheme,
    body: &'a str,
    tagged: bool,
}

fn strip_tag<'a>(stored: &'a str, tag: &str) -> Option<&'a str> {
    // `get`, not slicing: a multi-byte character may straddle the tag length. Once
    // `get` succeeds, the slice below starts on a character boundary.
    let head = stored.get(..tag.len())?;
    head.eq_ignore_ascii_case(tag).then(|| &stored[tag.len()..])
}

/// Verifies stored hashes of any supported scheme and creates new ones with a
/// default scheme and [`HashPolicy`].
#[derive(Debug, Clone)]
pub struct Hasher {
    default_scheme: Scheme,
    policy: HashPolicy,
    /// Made on first use: the work of one hash is not spent until it is needed.
    dummy: OnceLock<String>,
}

impl Hasher {
    pub fn new(default_scheme: Scheme, policy: HashPolicy) -> Self {
        Hasher {
            default_scheme,
            policy,
            dummy: OnceLock::new(),
        }
    }

    pub fn default_scheme(&self) -> Scheme {
        self.default_scheme
    }

    pub fn policy(&self) -> &HashPolicy {
        &self.policy
    }

    /// Which scheme reads this stored value: by prefix, else the default scheme.
    pub fn identify(&self, stored: &str) -> Scheme {
        self.resolve(stored).scheme
    }

    fn resolve<'a>(&self, stored: &'a str) -> Resolved<'a> {
        for &(tag, inner, scheme) in TAGS {
            if let Some(body) = strip_tag(stored, tag).filter(|b| b.starts_with(inner)) {
                let tagged = true;
                return Resolved {
                    scheme,
                    body,
                    tagged,
                };
            }
        }
        let scheme = IDENTS
            .iter()
            .find(|(ident, _)| stored.starts_with(ident))
            .map_or(self.default_scheme, |&(_, scheme)| scheme);
        Resolved {
            scheme,
            body: stored,
            tagged: false,
        }
    }

    /// Verify `password` against `stored`: `Ok(false)` for no match. Passwords longer
    /// than passlib accepts (4096 bytes) never match, before the stored value is even
    /// looked at. Never panics; cost parameters beyond `limits` count as malformed.
    ///
    /// # Errors
    /// [`HashError::Malformed`] when the stored value cannot be read by the scheme
    /// [`identify`](Self::identify) picks.
    pub fn verify(&self, stored: &str, password: &str) -> Result<bool, HashError> {
        if password.len() > limits::MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let Resolved {
            scheme,
            body,
            tagged,
        } = self.resolve(stored);
        let malformed = HashError::Malformed {
            scheme: scheme.name(),
        };
        if scheme.tag().is_some() && !tagged {
            return Err(malformed);
        }
        verify_body(scheme, body, tagged, password).map_err(|Invalid| malformed)
    }

    /// Hash a new password with the default scheme and policy (random salt from the
    /// operating system's RNG), in the format passlib writes for the scheme.
    ///
    /// # Errors
    /// [`HashError::Create`] if the password is over 4096 bytes, holds a NUL byte
    /// (crypt family, bcrypt) or fails SASLprep (SCRAM), if the policy is out of
    /// range for the scheme, or if the RNG fails.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        let scheme = self.default_scheme;
        if password.len() > limits::MAX_PASSWORD_BYTES {
            return Err(HashError::Create(
                scheme.name(),
                "password longer than 4096 bytes",
            ));
        }
        let body = hash_body(scheme, &self.policy, password)
            .map_err(|reason| HashError::Create(scheme.name(), reason))?;
        Ok(match scheme.tag() {
            Some(tag) => format!("{tag}{body}"),
            None => body,
        })
    }

    /// A stored value of the default scheme and policy for a random password, to
    /// verify against when the user is unknown so that the answer takes as long as a
    /// real check. The caller must reject the login whatever that check answers.
    /// Made once per `Hasher`; empty (and cheap to check) only if it cannot be made.
    pub fn dummy(&self) -> String {
        self.dummy.get_or_init(|| self.make_dummy()).clone()
    }

    fn make_dummy(&self) -> String {
        let made = codec::random_hash64(24)
            .map_err(|reason| HashError::Create(self.default_scheme.name(), reason))
            .and_then(|password| self.hash(&password));
        made.unwrap_or_else(|err| {
            // Only a broken RNG or an out-of-range policy gets here; hash() reports the
            // same error to whoever creates passwords, so a warning suffices.
            tracing::warn!(%err, "no dummy hash: unknown users get a fast answer");
            String::new()
        })
    }
}

fn verify_body(scheme: Scheme, body: &str, tagged: bool, pw: &str) -> Verdict {
    use Scheme as S;
    use crypt::Kind as C;
    use digest::Alg as D;
    use scram::Alg;
    match scheme {
        S::Plaintext | S::RoundupPlaintext => Ok(digest::verify_plain(body, pw)),
        S::HexMd5 => digest::verify_unsalted(D::Md5, body, tagged, pw),
        S::HexSha1 | S::LdapSha1 => digest::verify_unsalted(D::Sha1, body, tagged, pw),
        S::HexSha256 => digest::verify_unsalted(D::Sha256, body, tagged, pw),
        S::HexSha512 => digest::verify_unsalted(D::Sha512, body, tagged, pw),
        S::LdapMd5 => digest::verify_unsalted(D::Md5, body, tagged, pw),
        S::NtHash => digest::verify_unsalted(D::Nt, body, tagged, pw),
        S::LdapSaltedMd5 => digest::verify_salted(D::Md5, body, pw),
        S::LdapSaltedSha1 => digest::verify_salted(D::Sha1, body, pw),
        S::LdapSaltedSha256 => digest::verify_salted(D::Sha256, body, pw),
        S::LdapSaltedSha512 => digest::verify_salted(D::Sha512, body, pw),
        S::Md5Crypt | S::LdapMd5Crypt => crypt::verify(C::Md5, body, pw),
        S::Sha1Crypt | S::LdapSha1Crypt => crypt::verify(C::Sha1, body, pw),
        S::Sha256Crypt | S::LdapSha256Crypt => crypt::verify(C::Sha256, body, pw),
        S::Sha512Crypt | S::LdapSha512Crypt => crypt::verify(C::Sha512, body, pw),
        S::Bcrypt | S::LdapBcrypt => kdf::verify_bcrypt(body, pw),
        S::Argon2 => kdf::verify_argon2(body, pw),
        S::Scrypt => kdf::verify_scrypt(body, pw),
        S::Scram => scram::verify_passlib(body, pw),
        S::DovecotScramSha1 => scram::verify_dovecot(Alg::Sha1, body, pw),
        S::DovecotScramSha256 => scram::verify_dovecot(Alg::Sha256, body, pw),
    }
}

/// The new value for `scheme` without its `{TAG}`, which [`Hasher::hash`] adds.
fn hash_body(scheme: Scheme, policy: &HashPolicy, pw: &str) -> Made {
    use Scheme as S;
    use crypt::Kind as C;
    use digest::Alg as D;
    use scram::Alg;
    let p = policy;
    let dovecot_rounds = p.dovecot_scram_rounds;
    match scheme {
        S::Plaintext | S::RoundupPlaintext => Ok(pw.to_owned()),
        S::HexMd5 => Ok(digest::hex(D::Md5, pw)),
        S::HexSha1 => Ok(digest::hex(D::Sha1, pw)),
        S::HexSha256 => Ok(digest::hex(D::Sha256, pw)),
        S::HexSha512 => Ok(digest::hex(D::Sha512, pw)),
        S::NtHash => Ok(digest::hex(D::Nt, pw)),
        S::LdapMd5 => Ok(digest::base64(D::Md5, pw)),
        S::LdapSha1 => Ok(digest::base64(D::Sha1, pw)),
        S::LdapSaltedMd5 => digest::salted(D::Md5, pw),
        S::LdapSaltedSha1 => digest::salted(D::Sha1, pw),
        S::LdapSaltedSha256 => digest::salted(D::Sha256, pw),
        S::LdapSaltedSha512 => digest::salted(D::Sha512, pw),
        S::Md5Crypt | S::LdapMd5Crypt => crypt::hash(C::Md5, p, pw),
        S::Sha1Crypt | S::LdapSha1Crypt => crypt::hash(C::Sha1, p, pw),
        S::Sha256Crypt | S::LdapSha256Crypt => crypt::hash(C::Sha256, p, pw),
        S::Sha512Crypt | S::LdapSha512Crypt => crypt::hash(C::Sha512, p, pw),
        S::Bcrypt | S::LdapBcrypt => kdf::hash_bcrypt(p.bcrypt_cost, pw),
        S::Argon2 => kdf::hash_argon2(p, pw),
        S::Scrypt => kdf::hash_scrypt(p, pw),
        S::Scram => scram::hash_passlib(p.scram_rounds, pw),
        S::DovecotScramSha1 => scram::hash_dovecot(Alg::Sha1, dovecot_rounds, pw),
        S::DovecotScramSha256 => scram::hash_dovecot(Alg::Sha256, dovecot_rounds, pw),
    }
}

//! Tests across the families: passlib's own answers from
//! `tests/fixtures/passlib-hashes.jsonl`, identification, round trips for every
//! scheme, malformed values, and inputs that must not panic.

use super::*;

const FAST: HashPolicy = HashPolicy::INSECURE_FAST_FOR_TESTS_ONLY;
const PASSWORD: &str = "correct horse battery staple";

#[derive(serde::Deserialize)]
struct Row {
    scheme: String,
    password: String,
    hash: String,
    matches: bool,
}

/// The fixture rows with their 1-based line numbers.
fn fixture() -> Vec<(usize, Row)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/passlib-hashes.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("fixture readable");
    let rows = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let parse = |(i, line): (usize, &str)| {
        let row = serde_json::from_str(line);
        (i + 1, row.unwrap_or_else(|e| panic!("line {}: {e}", i + 1)))
    };
    rows.map(parse).collect()
}

/// Every row verified with the hasher `make` gives; one line per disagreement.
fn disagreements(rows: &[(usize, Row)], make: impl Fn(Scheme) -> Hasher) -> Vec<String> {
    let mut failures = Vec::new();
    for (line, row) in rows {
        let scheme: Scheme = row.scheme.parse().expect("fixture scheme is known");
        let hasher = make(scheme);
        let identified = hasher.identify(&row.hash);
        if identified != scheme {
            failures.push(format!(
                "line {line} ({scheme}): identified as {identified}"
            ));
        }
        let got = hasher.verify(&row.hash, &row.password);
        if got != Ok(row.matches) {
            failures.push(format!(
                "line {line} ({scheme}): want {}, got {got:?}",
                row.matches
            ));
        }
    }
    failures
}

#[test]
fn every_fixture_row_gives_passlibs_answer() {
    let rows = fixture();
    assert!(rows.len() >= 168, "fixture has {} rows", rows.len());
    let failures = disagreements(&rows, |scheme| Hasher::new(scheme, FAST));
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The schemes whose values carry no prefix and so depend on the default scheme.
const PREFIXLESS: &[Scheme] = &[
    Scheme::Plaintext,
    Scheme::HexMd5,
    Scheme::HexSha1,
    Scheme::HexSha256,
    Scheme::HexSha512,
    Scheme::NtHash,
];

#[test]
fn prefixed_fixture_rows_are_identified_by_prefix() {
    let mut rows = fixture();
    rows.retain(|(_, row)| !PREFIXLESS.iter().any(|s| s.name() == row.scheme));
    assert!(rows.len() >= 130, "only {} prefixed rows", rows.len());
    let failures = disagreements(&rows, |_| Hasher::new(Scheme::Plaintext, FAST));
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn scheme_names_parse_case_insensitively() {
    for &scheme in Scheme::ALL {
        assert_eq!(scheme.name().parse(), Ok(scheme));
        assert_eq!(scheme.name().to_uppercase().parse(), Ok(scheme));
        assert_eq!(scheme.to_string(), scheme.name());
    }
    let err = "sha3_crypt".parse::<Scheme>().unwrap_err();
    let message = err.to_string();
    assert!(message.contains("sha3_crypt"), "{message}");
    assert!(
        message.contains("argon2, bcrypt") && message.contains("plaintext"),
        "{message}"
    );
}

#[test]
fn slow_schemes_are_the_kdfs() {
    let slow: Vec<&str> = Scheme::ALL
        .iter()
        .filter(|s| s.is_slow())
        .map(|s| s.name())
        .collect();
    for name in [
        "argon2",
        "bcrypt",
        "scrypt",
        "scram",
        "sha512_crypt",
        "ldap_bcrypt",
    ] {
        assert!(slow.contains(&name), "{name}");
    }
    for name in ["plaintext", "hex_sha256", "nthash", "ldap_salted_sha512"] {
        assert!(!slow.contains(&name), "{name}");
    }
}

#[test]
fn identification_by_tag_and_ident() {
    let sha256_crypt = "$5$rounds=1000$saltsalt$\
                        azOwbpkvuuBKkE82dQPwTsQE8JyT9Fflpr9aKid3aT9";
    let cases: &[(&str, Scheme)] = &[
        ("{ssha}AAAA", Scheme::LdapSaltedSha1),
        ("{Ssha512}AAAA", Scheme::LdapSaltedSha512),
        ("{crypt}$6$salt$x", Scheme::LdapSha512Crypt),
        ("{CRYPT}$2y$04$x", Scheme::LdapBcrypt),
        ("{CRYPT}abJnggxhB/yWI", Scheme::Plaintext), // DES crypt: not supported
        ("{MD5}$1$salt$x", Scheme::LdapMd5Crypt),    // Dovecot's meaning of {MD5}
        ("{MD5}X03MO1qnZdYdgyfeuILPmQ==", Scheme::LdapMd5),
        ("{BLF-CRYPT}$2y$05$x", Scheme::LdapBcrypt),
        ("{SHA512-CRYPT}$6$x", Scheme::LdapSha512Crypt),
        ("{ARGON2ID}$argon2id$v=19$x", Scheme::Argon2),
        (
            "{SHA256}XohImNooBHFR0OVvjcYpJ3NgPQ1qq73WKhHvch0VQtg=",
            Scheme::HexSha256,
        ),
        ("{plain}pw", Scheme::RoundupPlaintext),
        ("{NTLM}8846f7eaee8fb117ad06bdd830b7586c", Scheme::NtHash),
        ("{scram-sha-256}4096,x", Scheme::DovecotScramSha256),
        ("$argon2i$m=8,t=1,p=1$x", Scheme::Argon2),
        ("$2a$04$x", Scheme::Bcrypt),
        ("$2x$04$x", Scheme::Plaintext),
        (sha256_crypt, Scheme::Sha256Crypt),
        ("$sha1$1$x$y", Scheme::Sha1Crypt),
        ("{CRYPTé", Scheme::Plaintext),
        ("", Scheme::Plaintext),
    ];
    let hasher = Hasher::new(Scheme::Plaintext, FAST);
    for &(stored, want) in cases {
        assert_eq!(hasher.identify(stored), want, "{stored:?}");
    }
    assert_eq!(
        Hasher::new(Scheme::NtHash, FAST).identify("whatever"),
        Scheme::NtHash
    );
}

#[test]
fn dovecot_spellings_verify() {
    let cases = [
        "{SHA256}XohImNooBHFR0OVvjcYpJ3NgPQ1qq73WKhHvch0VQtg=",
        "{SHA512}sQnzu7wkTrgkQZF+0G1hi5AI3Qmzvv0bXgc5THBqi7mAsdd4Xll27ASbRt9fEyav\
         Wi6m0QP9B8lThf+rDKy8hg==",
        "{PLAIN-MD5}5f4dcc3b5aa765d61d8327deb882cf99",
        "{LDAP-MD5}X03MO1qnZdYdgyfeuILPmQ==",
        "{SHA256-CRYPT}$5$rounds=1000$saltsalt$\
         azOwbpkvuuBKkE82dQPwTsQE8JyT9Fflpr9aKid3aT9",
        "{BLF-CRYPT}$2y$04$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
        "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$\
         ePHX6tepXWusf6b6MH9TJ+SVGted3R/FtCkxq/X5UVo",
        "{PLAIN}password",
        "{CLEARTEXT}password",
        "{NTLM}8846F7EAEE8FB117AD06BDD830B7586C",
    ];
    let hasher = Hasher::new(Scheme::Plaintext, FAST);
    for stored in cases {
        assert_eq!(hasher.verify(stored, "password"), Ok(true), "{stored}");
        assert_eq!(hasher.verify(stored, "Password"), Ok(false), "{stored}");
    }
}

/// Round trips under `policy` for `schemes`, with UTF-8, empty and spaced passwords.
fn assert_round_trips(schemes: &[Scheme], policy: HashPolicy, passwords: &[&str]) {
    let by_prefix = Hasher::new(Scheme::Plaintext, policy);
    for &scheme in schemes {
        let hasher = Hasher::new(scheme, policy);
        for &password in passwords {
            let stored = hasher
                .hash(password)
                .unwrap_or_else(|e| panic!("{scheme}: {e}"));
            let wrong = format!("{password}!");
            assert_eq!(hasher.identify(&stored), scheme, "{scheme}: {stored}");
            assert_eq!(
                hasher.verify(&stored, password),
                Ok(true),
                "{scheme}: {stored}"
            );
            assert_eq!(
                hasher.verify(&stored, &wrong),
                Ok(false),
                "{scheme}: {stored}"
            );
            if !PREFIXLESS.contains(&scheme) {
                assert_eq!(by_prefix.verify(&stored, password), Ok(true), "{scheme}");
            }
        }
    }
}

#[test]
fn every_scheme_round_trips() {
    let passwords = [
        "pässwörd",
        "ünïcødé-пароль-密码",
        "",
        "  spaced  ",
        "pass:with:colons",
    ];
    assert_round_trips(Scheme::ALL, FAST, &passwords);
}

#[test]
fn default_policy_is_usable_for_every_scheme() {
    // The {CRYPT} forms share code and cost with the bare ones; skip them for time.
    let schemes: Vec<Scheme> = Scheme::ALL
        .iter()
        .copied()
        .filter(|s| s.tag() != Some("{CRYPT}"))
        .collect();
    assert_round_trips(&schemes, HashPolicy::default(), &["pässwörd"]);
}

#[test]
fn new_hashes_have_passlibs_layout() {
    let policy = HashPolicy::default();
    let hash = |scheme| Hasher::new(scheme, FAST).hash("pw").unwrap();
    let default = |scheme| Hasher::new(scheme, policy).hash("pw").unwrap();
    assert!(default(Scheme::Argon2).starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(hash(Scheme::Bcrypt).starts_with("$2b$04$"));
    assert!(hash(Scheme::LdapBcrypt).starts_with("{CRYPT}$2b$04$"));
    assert!(hash(Scheme::Scrypt).starts_with("$scrypt$ln=1,r=1,p=1$"));
    assert!(hash(Scheme::Sha512Crypt).starts_with("$6$rounds=1000$"));
    assert!(hash(Scheme::LdapSha1Crypt).starts_with("{CRYPT}$sha1$1$"));
    assert!(hash(Scheme::Md5Crypt).starts_with("$1$"));
    assert!(hash(Scheme::RoundupPlaintext) == "{plaintext}pw");
    assert!(hash(Scheme::DovecotScramSha256).starts_with("{SCRAM-SHA-256}1,"));
    assert_eq!(hash(Scheme::HexMd5), "8fe4c11451281c094a6578e6ddbf5eed");
    let scram = hash(Scheme::Scram);
    assert!(scram.starts_with("$scram$1$"), "{scram}");
    for digest in ["$sha-1=", ",sha-256=", ",sha-512="] {
        assert!(scram.contains(digest), "{scram}");
    }
    assert_eq!(hash(Scheme::LdapSaltedSha256).len(), "{SSHA256}".len() + 56);
}

#[test]
fn argon2_and_scram_new_hashes_carry_the_default_costs() {
    // Cheap to make: the costs are in the text, so check the text and skip the work.
    let policy = HashPolicy {
        scram_rounds: 100_000,
        ..FAST
    };
    let scram = Hasher::new(Scheme::Scram, policy).hash("pw").unwrap();
    assert!(scram.starts_with("$scram$100000$"), "{scram}");
    assert_eq!(HashPolicy::default().sha512_crypt_rounds, 656_000);
    assert_eq!(HashPolicy::default().bcrypt_cost, 12);
}

/// Stored values that must be reported as malformed, with the default scheme to use.
const MALFORMED: &[(Scheme, &str)] = &[
    // argon2
    (Scheme::Argon2, "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ"),
    (
        Scheme::Argon2,
        "$argon2id$v=19$m=99999999999,t=3,p=4$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
    ),
    (
        Scheme::Argon2,
        "$argon2id$v=19$m=4194305,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
    ),
    (
        Scheme::Argon2,
        "$argon2id$v=19$m=1048576,t=4294967295,p=1$c2FsdHNhbHQ$AAAAAAAAAAAA",
    ),
    (
        Scheme::Argon2,
        "$argon2id$v=18$m=8,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
    ),
    (
        Scheme::Argon2,
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
    ),
    (
        Scheme::Argon2,
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$!!!!!!!!",
    ),
    (
        Scheme::Argon2,
        "$argon2x$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
    ),
    (Scheme::Argon2, "{ARGON2ID}$argon2id$"),
    (Scheme::Argon2, "not an argon2 hash"),
    // bcrypt
    (Scheme::Bcrypt, "$2b$12$tooshort"),
    (
        Scheme::Bcrypt,
        "$2b$32$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
    ),
    (
        Scheme::Bcrypt,
        "$2b$21$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
    ),
    (
        Scheme::Bcrypt,
        "$2b$03$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
    ),
    (
        Scheme::Bcrypt,
        "$2b$1a$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
    ),
    (
        Scheme::Bcrypt,
        "$2x$04$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdm",
    ),
    (
        Scheme::Bcrypt,
        "$2b$04$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzdé",
    ),
    (
        Scheme::Bcrypt,
        "$2b$04$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvxngrb/Jzd+",
    ),
    (
        Scheme::LdapBcrypt,
        "{CRYPT}$2b$99$abcdefghijklmnopqrstuughE8Ev8uGFaUgY2cNEySvx",
    ),
    // scrypt
    (Scheme::Scrypt, "$scrypt$ln=16,r=8,p=1$c2FsdA$AAAAAAAA"),
    (
        Scheme::Scrypt,
        "$scrypt$ln=0,r=8,p=1$c2FsdA$xJrHs5c76OTwzvL55zklElFBnhwrO0Jiq16oQgrlul4",
    ),
    (
        Scheme::Scrypt,
        "$scrypt$ln=21,r=8,p=1$c2FsdA$xJrHs5c76OTwzvL55zklElFBnhwrO0Jiq16oQgrlul4",
    ),
    (
        Scheme::Scrypt,
        "$scrypt$ln=99999999999,r=8,p=1$c2FsdA$xJrHs5c76OTwzvL55zklElFBnhwrO0Jiq16oQ",
    ),
    (
        Scheme::Scrypt,
        "$scrypt$ln=16,r=0,p=1$c2FsdA$xJrHs5c76OTwzvL55zklElFBnhwrO0Jiq16oQgrlul4",
    ),
    (
        Scheme::Scrypt,
        "$scrypt$ln=16,r=8,p=0$c2FsdA$xJrHs5c76OTwzvL55zklElFBnhwrO0Jiq16oQgrlul4",
    ),
    (
        Scheme::Scrypt,
        "$scrypt$ln=16,r=8$c2FsdA$xJrHs5c76OTwzvL55zklElFBnhwrO0Jiq16oQgrlul4",
    ),
    (
        Scheme::Scrypt,
        "$scrypt$ln=16,r=4294967295,p=4294967295$c2FsdA$xJrHs5c76OTwzvL55zklElFBnhwrO",
    ),
    // passlib scram
    (
        Scheme::Scram,
        "$scram$0$c2FsdA$sha-1=GKv514k2ZZNxY8o53BhUN5yeNSs",
    ),
    (
        Scheme::Scram,
        "$scram$10000001$c2FsdA$sha-1=GKv514k2ZZNxY8o53BhUN5yeNSs",
    ),
    (
        Scheme::Scram,
        "$scram$01$c2FsdA$sha-1=GKv514k2ZZNxY8o53BhUN5yeNSs",
    ),
    (
        Scheme::Scram,
        "$scram$1$c2FsdA$sha-256=INr4jZ6Hbd550r0OSdr18M5N3MIo0SrtrP.0iUsnNjo",
    ),
    (Scheme::Scram, "$scram$1$c2FsdA$sha-1,sha-256"),
    (Scheme::Scram, "$scram$1$c2FsdA$sha-1=!!!!"),
    (Scheme::Scram, "$scram$1$c2FsdA$sha-1=AAAA"),
    (Scheme::Scram, "$scram$1$c2FsdA"),
    // crypt family
    (Scheme::Md5Crypt, "$1$saltsalty$WVcAheKX00eyAeKAZWDVy1"),
    (Scheme::Md5Crypt, "$1$saltsalt$WVcAheKX00eyAeKAZWDVy"),
    (Scheme::Md5Crypt, "$1$sa\u{1}t$WVcAheKX00eyAeKAZWDVy1"),
    (Scheme::Md5Crypt, "$1$saltsalt$WVcAheKX00eyAeKAZWDVé"),
    (Scheme::Md5Crypt, "$1$saltsalt"),
    (
        Scheme::Sha1Crypt,
        "$sha1$0$lII7OdeH$qT0WtotOPw.BDlW1uPjtAdUW6ayy",
    ),
    (
        Scheme::Sha1Crypt,
        "$sha1$4294967296$lII7OdeH$qT0WtotOPw.BDlW1uPjtAdUW6ayy",
    ),
    (
        Scheme::Sha1Crypt,
        "$sha1$04800$lII7OdeH$qT0WtotOPw.BDlW1uPjtAdUW6ayy",
    ),
    (Scheme::Sha1Crypt, "$sha1$4800$lII7OdeH"),
    (
        Scheme::Sha256Crypt,
        "$5$rounds=999$soG4fatN2hOkliEI$hXyVJ39KVBhtvS3QUOwNxCSA2kcuJ0JoYZt8eJIISj.",
    ),
    (
        Scheme::Sha256Crypt,
        "$5$rounds=10000001$soG4fatN$hXyVJ39KVBhtvS3QUOwNxCSA2kcuJ0JoYZt8eJIISj.",
    ),
    (
        Scheme::Sha256Crypt,
        "$5$soG4fatN2hOkliEIx$hXyVJ39KVBhtvS3QUOwNxCSA2kcuJ0JoYZt8eJIISj.",
    ),
    (
        Scheme::Sha512Crypt,
        "$6$rounds=$jD.B3xLUixfmtpu/$fQt9JOpva.0uOuVBZYT",
    ),
    (
        Scheme::Sha512Crypt,
        "$6$jD.B3xLUixfmtpu/$fQt9JOpva.0uOuVBZYT",
    ),
    (Scheme::LdapMd5Crypt, "{CRYPT}$1$8WI1UWET$"),
    (Scheme::LdapSha512Crypt, "no-tag-and-no-ident"),
    // digests
    (Scheme::HexMd5, "7705c1cc5b1b59292bdcea6f413e950"),
    (Scheme::HexMd5, "zz05c1cc5b1b59292bdcea6f413e950e"),
    (Scheme::HexSha256, "{SHA256}not base64 at all"),
    (Scheme::HexSha512, "7705c1cc5b1b59292bdcea6f413e950e"),
    (Scheme::NtHash, "{NTLM}751167fea5604a30"),
    (Scheme::NtHash, "751167fea5604a30891378f3c3f11c9"),
    (Scheme::LdapMd5, "{MD5}kgjdy1PxP74kDzY0Zu2J"),
    (Scheme::LdapMd5, "{MD5}!!!!!!!!!!!!!!!!!!!!!!=="),
    (Scheme::LdapSha1, "{SHA}SdaR+wpHUJnwShZGMjvUiBj86JI=AAAA"),
    (Scheme::LdapSaltedSha1, "{SSHA}eS6HuGwUEKNuFJlOX3WmKaqZYPa+"),
    (
        Scheme::LdapSaltedSha256,
        "{SSHA256}OXh7KwnKTGnW2+WhzbNLleh4UE7LzwhM/HB33L8D46y=",
    ),
    (
        Scheme::LdapSaltedSha512,
        "{SSHA512}D7cZmYYwHii7rJwg56VPyezaGSeaIhAsU6PrXRdDB9h",
    ),
    (Scheme::LdapSaltedMd5, "bare value without its tag"),
    (Scheme::RoundupPlaintext, "bare value without its tag"),
    // Dovecot SCRAM
    (
        Scheme::DovecotScramSha1,
        "{SCRAM-SHA-1}4096,Y+Ys8NNLXakXmMJ2wLTKCg==",
    ),
    (
        Scheme::DovecotScramSha1,
        "{SCRAM-SHA-1}0,Y+Ys8NNL,sOLzo4alRiBLlisKvEHirWsTYQA=,\
         sOLzo4alRiBLlisKvEHirWsTYQA=",
    ),
    (
        Scheme::DovecotScramSha1,
        "{SCRAM-SHA-1}4096,Y+Ys8NNL,sOLzo4alRiBL,Rp5tUUeV7I87+IOlop7mCYjWdiU=",
    ),
    (
        Scheme::DovecotScramSha1,
        "{SCRAM-SHA-1}4096,!!!!,sOLzo4alRiBLlisKvEHirWsTYQA=,\
         sOLzo4alRiBLlisKvEHirWsTYQA=",
    ),
    (
        Scheme::DovecotScramSha256,
        "{SCRAM-SHA-256}99999999999,Y+Ys8NNL,AAAA,AAAA",
    ),
    (
        Scheme::DovecotScramSha256,
        "{SCRAM-SHA-256}4096,Y+Ys8NNL,sOLzo4alRiBLlisKvEHirWsTYQA=,\
         sOLzo4alRiBLlisKvEHirWsTYQA=",
    ),
    (Scheme::DovecotScramSha256, "bare value without its tag"),
];

#[test]
fn malformed_values_are_errors_that_quote_nothing() {
    let mut failures = Vec::new();
    for (i, &(default, stored)) in MALFORMED.iter().enumerate() {
        let hasher = Hasher::new(default, FAST);
        let scheme = hasher.identify(stored);
        match hasher.verify(stored, PASSWORD) {
            Err(err @ HashError::Malformed { scheme: s }) if s == scheme.name() => {
                let message = err.to_string();
                if message.contains(stored) || message.contains(PASSWORD) {
                    failures.push(format!("#{i} ({scheme}): message leaks: {message}"));
                }
            }
            other => failures.push(format!("#{i} ({scheme}) {stored:?}: got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn create_errors_quote_nothing() {
    let bad = HashPolicy {
        bcrypt_cost: 40,
        argon2_memory_kib: 1,
        scrypt_log_n: 40,
        ..FAST
    };
    for scheme in [Scheme::Bcrypt, Scheme::Argon2, Scheme::Scrypt] {
        let err = Hasher::new(scheme, bad).hash(PASSWORD).unwrap_err();
        assert!(
            matches!(err, HashError::Create(name, _) if name == scheme.name()),
            "{err:?}"
        );
        assert!(!err.to_string().contains(PASSWORD));
    }
    let nul = Hasher::new(Scheme::Sha512Crypt, FAST)
        .hash("nul\0byte")
        .unwrap_err();
    assert!(!nul.to_string().contains("nul\0byte"), "{nul}");
}

#[test]
fn overlong_passwords_never_match_and_are_not_hashed() {
    let long = "a".repeat(limits::MAX_PASSWORD_BYTES + 1);
    let plain = Hasher::new(Scheme::Plaintext, FAST);
    assert_eq!(plain.verify(&long, &long), Ok(false));
    assert!(matches!(
        plain.hash(&long),
        Err(HashError::Create("plaintext", _))
    ));
    let max = "a".repeat(limits::MAX_PASSWORD_BYTES);
    let stored = Hasher::new(Scheme::Sha256Crypt, FAST).hash(&max).unwrap();
    assert_eq!(plain.verify(&stored, &max), Ok(true));
}

#[test]
fn dummy_is_a_value_of_the_default_scheme_made_once() {
    for scheme in [Scheme::Argon2, Scheme::LdapBcrypt, Scheme::HexSha1] {
        let hasher = Hasher::new(scheme, FAST);
        let dummy = hasher.dummy();
        assert_eq!(hasher.identify(&dummy), scheme);
        assert_eq!(hasher.verify(&dummy, PASSWORD), Ok(false));
        assert_eq!(hasher.dummy(), dummy);
    }
}

/// Odd inputs for every default scheme: any answer will do, but no panic.
#[test]
fn odd_inputs_do_not_panic() {
    let odd = [
        "",
        "$",
        "{",
        "}",
        "{}",
        "{CRYPT}",
        "{CRYPT}$",
        "$2b$",
        "$argon2id$",
        "$argon2id$v=",
        "$scrypt$",
        "$scrypt$ln=,r=,p=$$",
        "$scram$",
        "$scram$1$$",
        "$scram$1$$=",
        "$1$",
        "$1$$",
        "$sha1$",
        "$sha1$$$",
        "$5$",
        "$6$rounds=",
        "$6$rounds=$$",
        "{SSHA}",
        "{SSHA}=",
        "{SCRAM-SHA-1}",
        "{SCRAM-SHA-1},,,",
        "{plaintext}",
        "é{SSHA}",
        "{sshé}",
        "\0",
        "$2b$\0",
        "{MD5}$1$",
        "{BLF-CRYPT}$2",
        "{ARGON2ID}$argon2",
        "𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞",
    ];
    for &scheme in Scheme::ALL {
        let hasher = Hasher::new(scheme, FAST);
        for stored in odd {
            for password in ["", "pw", "\0", "é"] {
                let _ = hasher.verify(stored, password);
            }
        }
    }
}

/// Every prefix of a real value, and every position overwritten with awkward
/// characters, for every scheme. The cheap policy keeps any that parse cheap.
#[test]
fn truncated_and_mangled_values_do_not_panic() {
    let by_prefix = Hasher::new(Scheme::Plaintext, FAST);
    for &scheme in Scheme::ALL {
        let hasher = Hasher::new(scheme, FAST);
        let stored = hasher.hash("pw").unwrap();
        for (cut, _) in stored.char_indices() {
            let _ = hasher.verify(&stored[..cut], "pw");
            let _ = by_prefix.verify(&stored[..cut], "pw");
        }
        let chars: Vec<char> = stored.chars().collect();
        for i in 0..chars.len() {
            for replacement in ['\0', '\u{1}', 'é', '$', ',', '=', '9', '0', '{', '.'] {
                let mut mangled = chars.clone();
                mangled[i] = replacement;
                let mangled: String = mangled.into_iter().collect();
                let _ = hasher.verify(&mangled, "pw");
            }
        }
    }
}

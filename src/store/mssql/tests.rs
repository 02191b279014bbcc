//! Unit tests of the mssql module.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, SubsecRound, TimeDelta, Utc};
use tiberius::time::{Date, DateTime2, Time};
use tiberius::{ColumnData, ColumnType, FromSql};

use super::*;
use crate::store::{DatabaseUrl, Engine};

fn server(url: &str) -> ServerUrl {
    match DatabaseUrl::parse(url).map(|u| u.engine().clone()) {
        Ok(Engine::Mssql(server)) => server,
        _ => panic!("{url} is not an mssql URL"),
    }
}

fn target(url: &str) -> Result<Target, OptionError> {
    Target::new(&server(url), Duration::from_millis(1500))
}

fn tls(url: &str) -> Result<Tls, OptionError> {
    tls_options(&server(url))
}

/// The numbers of the `@P` placeholders, in order of appearance.
fn placeholders(sql: &str) -> Vec<usize> {
    sql.split("@P")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Every parameter from @P1 to @PN is used, and no other.
fn assert_params<const N: usize>(name: &str, statement: &Statement<N>) {
    let mut used = placeholders(statement.sql);
    used.sort_unstable();
    used.dedup();
    assert_eq!(used, (1..=N).collect::<Vec<_>>(), "{name}");
    assert!(!statement.sql.contains('?'), "{name}: only @P placeholders");
}

#[test]
fn config_defaults_to_port_1433_and_encryption() {
    let t = target("mssql://sa:hunter2@db.example/devicepass").expect("target");
    assert_eq!((t.host.as_str(), t.port), ("db.example", 1433));
    assert_eq!(t.config.get_addr(), "db.example:1433");
    assert_eq!(
        t.config.get_handshake_timeout(),
        Some(Duration::from_millis(1500))
    );
    let shown = format!("{:?}", t.config);
    assert!(shown.contains("devicepass"), "database set: {shown}");
    assert!(!shown.contains("hunter2"), "password never shown");
    let expected = Tls {
        encryption: EncryptionLevel::Required,
        trust_server_certificate: false,
    };
    assert_eq!(tls("mssql://sa:p@h/d"), Ok(expected));
}

#[test]
fn config_takes_port_ipv6_host_and_pymssql_scheme() {
    let t = target("mssql+pymssql://u:p@db:14330/dp").expect("target");
    assert_eq!((t.host.as_str(), t.port), ("db", 14330));
    let t = target("mssql://u:p@[::1]/dp").expect("target");
    assert_eq!((t.host.as_str(), t.port), ("::1", 1433));
    assert!(
        target("mssql://u@h/dp").is_ok(),
        "no password is an empty one"
    );
}

#[test]
fn encrypt_and_trust_options() {
    let level = |url| tls(url).map(|t| t.encryption);
    assert_eq!(
        level("mssql://u:p@h/d?encrypt=true"),
        Ok(EncryptionLevel::Required)
    );
    assert_eq!(
        level("mssql://u:p@h/d?Encrypt=yes"),
        Ok(EncryptionLevel::Required)
    );
    assert_eq!(
        level("mssql://u:p@h/d?encrypt=false"),
        Ok(EncryptionLevel::Off)
    );
    assert_eq!(
        level("mssql://u:p@h/d?encrypt=no"),
        Ok(EncryptionLevel::Off)
    );
    assert_eq!(
        level("mssql://u:p@h/d?encrypt=strict"),
        Ok(EncryptionLevel::Strict)
    );
    let trust = |url| tls(url).map(|t| t.trust_server_certificate);
    assert_eq!(
        trust("mssql://u:p@h/d?trustServerCertificate=true"),
        Ok(true)
    );
    assert_eq!(
        trust("mssql://u:p@h/d?TrustServerCertificate=yes"),
        Ok(true)
    );
    assert_eq!(
        trust("mssql://u:p@h/d?trustServerCertificate=false"),
        Ok(false)
    );
    assert_eq!(
        trust("mssql://u:p@h/d?charset=utf8"),
        Ok(false),
        "unknown is ignored"
    );

    let url = "mssql://u:p@h/d?encrypt=false&trustServerCertificate=true";
    let shown = format!("{:?}", target(url).expect("target").config);
    assert!(shown.contains("encryption: Off"), "{shown}");
    assert!(shown.contains("bypass: true"), "{shown}");
}

#[test]
fn bad_option_values_are_refused_by_name() {
    let err = tls("mssql://u:p@h/d?encrypt=maybe").expect_err("refused");
    assert_eq!(err.option, "encrypt");
    assert!(err.to_string().contains("encrypt"), "{err}");
    assert!(
        !err.to_string().contains("maybe"),
        "the value is not echoed"
    );
    let err = tls("mssql://u:p@h/d?trustServerCertificate=sure").expect_err("refused");
    assert_eq!(err.option, "trustServerCertificate");
}

/// A writer for the log lines of one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(work: impl FnOnce()) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, work);
    let bytes = captured.0.lock().expect("log buffer").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn open_logs_the_bad_option_and_fails() {
    let log = logged(|| {
        let url = server("mssql://sa:hunter2@h/d?trustServerCertificate=maybe");
        let opened = MssqlStore::open(&url, &PoolOptions::default());
        assert!(matches!(
            opened,
            Err(StoreError::BadOption("trustServerCertificate"))
        ));
    });
    assert!(log.contains("ERROR"), "{log}");
    assert!(log.contains("trustServerCertificate"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}

#[test]
fn every_statement_binds_exactly_its_parameters() {
    assert_params("ping", &PING);
    assert_params("record_version", &RECORD_VERSION);
    assert_params("candidate_by_login", &CANDIDATE_BY_LOGIN);
    assert_params("candidates_by_user", &CANDIDATES_BY_USER);
    assert_params("upsert_user", &UPSERT_USER);
    assert_params("find_user", &FIND_USER);
    assert_params("list_users", &LIST_USERS);
    assert_params("insert_token", &INSERT_TOKEN);
    assert_params("list_tokens", &LIST_TOKENS);
    assert_params("delete_token_by_id", &DELETE_TOKEN_BY_ID);
    assert_params("delete_token_by_login", &DELETE_TOKEN_BY_LOGIN);
    assert_params("put_session", &sessions::PUT_SESSION);
    assert_params("get_session", &sessions::GET_SESSION);
    assert_params("take_session", &sessions::TAKE_SESSION);
    assert_params("delete_session", &sessions::DELETE_SESSION);
    assert_params("end_by_sid", &sessions::END_BY_SID);
    assert_params("end_by_sub", &sessions::END_BY_SUB);
    assert_params("is_revoked", &sessions::IS_REVOKED);
    assert_params("purge_sessions", &sessions::PURGE_SESSIONS);
    // Bound in the order the text first names them.
    assert_eq!(placeholders(INSERT_TOKEN.sql), [1, 2, 3, 4, 5, 6]);
    assert_eq!(placeholders(CANDIDATE_BY_LOGIN.sql), [1, 1, 2]);
    for fixed in [
        SESSION_SETUP,
        ROLLBACK_IF_OPEN,
        BEGIN,
        COMMIT,
        MIGRATION_LOCK,
    ] {
        assert!(placeholders(fixed).is_empty(), "{fixed}");
    }
}

#[test]
fn record_uses_binds_date_then_token_per_row() {
    let sql = record_uses_sql(3);
    assert_eq!(placeholders(&sql), [1, 2, 3, 4, 5, 6]);
    assert!(sql.contains("(@P1, @P2), (@P3, @P4), (@P5, @P6)"), "{sql}");
    assert!(sql.contains("([date], [tokenId])"), "{sql}");
    assert!(sql.contains("WHERE EXISTS"), "deleted tokens are skipped");
    let full = record_uses_sql(USES_PER_STATEMENT);
    assert_eq!(placeholders(&full).len(), 2 * USES_PER_STATEMENT);
}

fn ddl() -> String {
    MIGRATIONS
        .iter()
        .flat_map(|(_, statements)| statements.iter())
        .copied()
        .collect::<Vec<_>>()
        .join(";\n")
}

#[test]
fn schema_uses_unicode_exact_keys_and_microseconds() {
    let ddl = ddl();
    let bin = "COLLATE Latin1_General_100_BIN2 NOT NULL";
    for column in [
        format!("sub NVARCHAR(255) {bin}"),
        format!("username NVARCHAR(255) {bin}"),
        format!("email NVARCHAR(255) {bin}"),
        format!("login NVARCHAR(300) {bin}"),
        "name NVARCHAR(400) NOT NULL".into(),
        "token NVARCHAR(1024) NOT NULL".into(),
        "id UNIQUEIDENTIFIER NOT NULL".into(),
        "expires DATETIME2(6) NULL".into(),
        "[date] DATETIME2(6) NOT NULL".into(),
        "[tokenId] UNIQUEIDENTIFIER NOT NULL".into(),
        "id BIGINT IDENTITY(1, 1) NOT NULL".into(),
        format!("sid NVARCHAR(255) {bin}"),
        "data VARBINARY(MAX) NULL".into(),
        "expiry DATETIME2(6) NULL".into(),
    ] {
        assert!(ddl.contains(&column), "{column}");
    }
    for table in ["users", "tokens", "logs", "revoked", "sessions"] {
        assert!(ddl.contains(&format!("CREATE TABLE {table} (")), "{table}");
    }
    assert!(ddl.contains("ON logs ([tokenId], [date])"));
    let plain = ddl.replace("NVARCHAR", "").replace("DATETIME2", "");
    assert!(
        !plain.contains("VARCHAR") && !plain.contains("DATETIME"),
        "{plain}"
    );
}

#[test]
fn every_mapped_constraint_exists_in_the_schema() {
    let ddl = ddl();
    for (name, _) in UNIQUE_KEYS.iter().chain(FOREIGN_KEYS.iter()) {
        assert!(ddl.contains(&format!("CONSTRAINT {name} ")), "{name}");
    }
    assert!(ddl.contains("CONSTRAINT login_unique UNIQUE (login)"));
    assert!(MIGRATION_LOCK.contains("sp_getapplock"));
    assert!(MIGRATION_LOCK.contains("@LockOwner = N'Transaction'"));
    assert!(MIGRATION_LOCK.contains("devicepass_schema"));
}

#[test]
fn sessions_table_is_an_additive_version_2() {
    // A version 1 database gets exactly the new table and its indexes.
    let added: Vec<&str> = pending(1).flat_map(|(_, s)| s.iter()).copied().collect();
    assert_eq!(pending(1).map(|(v, _)| *v).collect::<Vec<_>>(), [2]);
    for sql in &added {
        assert!(sql.contains("dp_sessions"), "{sql}");
        assert!(!sql.contains("ALTER") && !sql.contains("DROP"), "{sql}");
    }
    let ddl = added.join(";\n");
    let bin = "COLLATE Latin1_General_100_BIN2";
    for column in [
        format!("id NVARCHAR(64) {bin} NOT NULL"),
        format!("sub NVARCHAR(255) {bin} NULL"),
        format!("sid NVARCHAR(255) {bin} NULL"),
        "data NVARCHAR(MAX) NOT NULL".into(),
        "expires DATETIME2(6) NOT NULL".into(),
        "CONSTRAINT dp_sessions_pk PRIMARY KEY (id)".into(),
    ] {
        assert!(ddl.contains(&column), "{column}");
    }
    for index in ["(sub)", "(sid)", "(expires)"] {
        assert!(ddl.contains(&format!("ON dp_sessions {index}")), "{index}");
    }
    assert!(!ddl.contains("FOREIGN KEY"), "sub refers to no user row");
    let revoked_sid = format!("sid NVARCHAR(255) {bin}");
    assert!(CREATE_REVOKED.contains(&revoked_sid), "as dp_sessions.sid");
}

#[test]
fn session_statements_respect_expiry() {
    use sessions::{GET_SESSION, PURGE_SESSIONS, TAKE_SESSION};
    assert!(GET_SESSION.sql.contains("expires > @P2"));
    assert!(TAKE_SESSION.sql.contains("expires > @P2"));
    assert!(PURGE_SESSIONS.sql.contains("expires <= @P1"));
    // One statement deletes and returns: of two takers one gets the row.
    let take = TAKE_SESSION.sql.trim();
    assert!(take.starts_with("DELETE FROM dp_sessions"), "{take}");
    let output = "OUTPUT deleted.id, deleted.sub, deleted.sid, deleted.data, deleted.expires";
    assert!(take.contains(output), "columns as read_session reads them");
    assert!(
        GET_SESSION
            .sql
            .contains("SELECT id, sub, sid, data, expires FROM")
    );
}

/// The lines of a batch, trimmed, without blank ones.
fn lines(sql: &str) -> Vec<&str> {
    sql.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn ending_by_sid_revokes_once_and_counts_in_one_transaction() {
    let batch = lines(sessions::END_BY_SID.sql);
    let at = |text: &str| {
        batch
            .iter()
            .position(|l| l.starts_with(text))
            .unwrap_or_else(|| panic!("no line {text}"))
    };
    assert!(at("BEGIN TRANSACTION") < at("IF NOT EXISTS"));
    assert!(batch[at("IF NOT EXISTS")].contains("WITH (UPDLOCK, HOLDLOCK)"));
    assert_eq!(at("INSERT INTO revoked"), at("IF NOT EXISTS") + 1);
    let delete = at("DELETE FROM dp_sessions");
    assert!(batch[delete].contains("DATALENGTH(sid) = DATALENGTH(@P1)"));
    assert_eq!(batch[delete + 1], "SET @deleted = @@ROWCOUNT;");
    assert!(at("COMMIT TRANSACTION") < at("SELECT @deleted"));
    assert!(
        sessions::END_BY_SUB
            .sql
            .contains("DATALENGTH(sub) = DATALENGTH(@P1)")
    );

    let put = lines(sessions::PUT_SESSION.sql);
    assert!(put.contains(&"UPDATE dp_sessions WITH (UPDLOCK, SERIALIZABLE)"));
    assert!(put.contains(&"IF @@ROWCOUNT = 0"));
}

#[test]
fn migrations_run_once_in_order() {
    let all: Vec<i32> = pending(0).map(|(v, _)| *v).collect();
    let mut sorted = all.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(all, sorted, "ascending, no duplicates");
    let latest = all.last().copied().unwrap_or_default();
    assert_eq!(pending(latest).count(), 0);
    assert_eq!(
        pending(latest + 5).count(),
        0,
        "a newer schema is left alone"
    );
}

/// The value `to_sql` sends, detached from the borrowed original (as
/// `FromSql` takes values that live as long as a row).
fn sent(data: ColumnData<'_>) -> ColumnData<'static> {
    match data {
        ColumnData::Guid(v) => ColumnData::Guid(v),
        ColumnData::DateTime2(v) => ColumnData::DateTime2(v),
        other => panic!("unexpected SQL type {other:?}"),
    }
}

#[test]
fn uuid_round_trips_through_uniqueidentifier() {
    let id = Uuid::new_v4();
    let data = sent(id.to_sql());
    assert!(matches!(data, ColumnData::Guid(Some(_))));
    assert_eq!(Uuid::from_sql(&data).expect("decode"), Some(id));
}

fn micros(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("datetime")
}

#[test]
fn datetimes_round_trip_to_the_microsecond() {
    for at in [
        micros("2024-02-29 23:59:59.999999"),
        micros("1970-01-01 00:00:00.000001"),
        micros("9999-12-31 23:59:59.999999"),
    ] {
        let data = sent(at.to_sql());
        assert!(
            matches!(data, ColumnData::DateTime2(Some(_))),
            "sent as DATETIME2"
        );
        assert_eq!(NaiveDateTime::from_sql(&data).expect("decode"), Some(at));
    }
    let none: Option<NaiveDateTime> = None;
    assert_eq!(none.to_sql(), ColumnData::DateTime2(None));
}

/// A DATETIME2(6) value as the server sends it: scale 6.
fn datetime2_6(at: NaiveDateTime) -> ColumnData<'static> {
    let epoch = NaiveDate::from_ymd_opt(1, 1, 1).expect("epoch");
    let days = u32::try_from((at.date() - epoch).num_days()).expect("days");
    let since_midnight = at - at.date().and_hms_opt(0, 0, 0).expect("midnight");
    let increments = u64::try_from(since_midnight.num_microseconds().expect("µs"));
    let time = Time::new(increments.expect("positive"), 6);
    ColumnData::DateTime2(Some(DateTime2::new(Date::new(days), time)))
}

#[test]
fn datetime2_6_from_the_server_keeps_microseconds() {
    let at = micros("2025-06-30 12:34:56.789012");
    assert_eq!(
        NaiveDateTime::from_sql(&datetime2_6(at)).expect("decode"),
        Some(at)
    );
}

fn string(value: &str) -> ColumnData<'static> {
    ColumnData::String(Some(Cow::Owned(value.to_owned())))
}

fn candidate_row(id: Uuid, expires: Option<NaiveDateTime>) -> Row {
    let expires = expires.map_or(ColumnData::DateTime2(None), datetime2_6);
    Row::builder()
        .column("id", ColumnType::Guid, ColumnData::Guid(Some(id)))
        .column("sub", ColumnType::NVarchar, string("sub-ö"))
        .column("login", ColumnType::NVarchar, string("dörte#042"))
        .column("name", ColumnType::NVarchar, string("Handy 📱"))
        .column("expires", ColumnType::Datetime2, expires)
        .column("username", ColumnType::NVarchar, string("dörte"))
        .column("email", ColumnType::NVarchar, string("d@exämple.org"))
        .column("token", ColumnType::NVarchar, string("{plaintext}pässwörd"))
        .build()
}

#[test]
fn rows_become_candidates() {
    let id = Uuid::new_v4();
    let expires = micros("2030-01-02 03:04:05.000006");
    let c = read_candidate(&candidate_row(id, Some(expires))).expect("candidate");
    let token = Token {
        id,
        sub: "sub-ö".into(),
        login: "dörte#042".into(),
        name: "Handy 📱".into(),
        expires: Some(expires),
    };
    assert_eq!(c.token, token);
    assert_eq!(c.user.sub, "sub-ö");
    assert_eq!(
        (c.user.username.as_str(), c.user.email.as_str()),
        ("dörte", "d@exämple.org")
    );
    assert_eq!(c.hash.expose(), "{plaintext}pässwörd");
    let never = read_candidate(&candidate_row(id, None)).expect("candidate");
    assert_eq!(never.token.expires, None);
}

#[test]
fn rows_become_token_infos_and_users() {
    let id = Uuid::new_v4();
    let used = micros("2025-01-01 00:00:00.5");
    let row = Row::builder()
        .column("id", ColumnType::Guid, ColumnData::Guid(Some(id)))
        .column("sub", ColumnType::NVarchar, string("s"))
        .column("login", ColumnType::NVarchar, string("l#001"))
        .column("name", ColumnType::NVarchar, string("n"))
        .column(
            "expires",
            ColumnType::Datetime2,
            ColumnData::DateTime2(None),
        )
        .column("username", ColumnType::NVarchar, string("u"))
        .column("last_used", ColumnType::Datetime2, datetime2_6(used))
        .build();
    let info = read_token_info(&row).expect("info");
    assert_eq!((info.token.id, info.username.as_str()), (id, "u"));
    assert_eq!(info.last_used, Some(used));

    let row = Row::builder()
        .column("sub", ColumnType::NVarchar, string("s"))
        .column("username", ColumnType::NVarchar, string("u"))
        .column("email", ColumnType::NVarchar, string("e"))
        .build();
    let user = User {
        sub: "s".into(),
        username: "u".into(),
        email: "e".into(),
    };
    assert_eq!(read_user(&row).expect("user"), user);
}

fn session_row(sub: Option<&str>, sid: Option<&str>, at: NaiveDateTime) -> Row {
    let text = |v: Option<&str>| ColumnData::String(v.map(|v| Cow::Owned(v.to_owned())));
    Row::builder()
        .column("id", ColumnType::NVarchar, string(&"ab".repeat(32)))
        .column("sub", ColumnType::NVarchar, text(sub))
        .column("sid", ColumnType::NVarchar, text(sid))
        .column("data", ColumnType::NVarchar, string(r#"{"a":"ö"}"#))
        .column("expires", ColumnType::Datetime2, datetime2_6(at))
        .build()
}

#[test]
fn rows_become_sessions() {
    let at = micros("2030-01-02 03:04:05.000006");
    let signed_in = sessions::read_session(&session_row(Some("sub-ö"), Some("sid-1"), at));
    let expected = SessionRecord {
        id: "ab".repeat(32),
        sub: Some("sub-ö".into()),
        sid: Some("sid-1".into()),
        data: r#"{"a":"ö"}"#.into(),
        expires: at,
    };
    assert_eq!(signed_in.expect("session"), expected);
    let pending = sessions::read_session(&session_row(None, None, at)).expect("session");
    assert_eq!((pending.sub, pending.sid), (None, None));

    let no_expiry = Row::builder()
        .column("id", ColumnType::NVarchar, string("x"))
        .column("sub", ColumnType::NVarchar, ColumnData::String(None))
        .column("sid", ColumnType::NVarchar, ColumnData::String(None))
        .column("data", ColumnType::NVarchar, string("{}"))
        .column(
            "expires",
            ColumnType::Datetime2,
            ColumnData::DateTime2(None),
        )
        .build();
    assert!(matches!(
        sessions::read_session(&no_expiry),
        Err(StoreError::Corrupt("datetime"))
    ));

    let count = |value: Option<i64>| {
        let row = Row::builder()
            .column("deleted", ColumnType::Int8, ColumnData::I64(value))
            .build();
        sessions::read_count(&[row])
    };
    assert_eq!(count(Some(3)).ok(), Some(3));
    assert!(count(None).is_err());
    assert!(sessions::read_count(&[]).is_err());
}

#[test]
fn unexpected_values_are_corrupt_not_panics() {
    let row = Row::builder()
        .column("id", ColumnType::NVarchar, string("not a guid"))
        .build();
    assert!(matches!(
        read_token(&row),
        Err(StoreError::Corrupt("token id"))
    ));
    let row = Row::builder()
        .column("sub", ColumnType::NVarchar, ColumnData::String(None))
        .build();
    assert!(matches!(read_user(&row), Err(StoreError::Corrupt("user"))));
    let version = Row::builder()
        .column("version", ColumnType::Int4, ColumnData::I32(Some(1)))
        .build();
    assert_eq!(read_version(&[vec![version]]), Ok(1));
    assert!(read_version(&[]).is_err());
}

#[test]
fn unique_violations_name_the_taken_value() {
    let unique = |name: &str, value: &str| {
        format!(
            "Violation of UNIQUE KEY constraint '{name}'. Cannot insert duplicate key \
             in object 'dbo.t'. The duplicate key value is ({value})."
        )
    };
    for (name, what) in UNIQUE_KEYS {
        let mapped = classify(2627, &unique(name, "x"));
        assert!(
            matches!(mapped, Some(StoreError::Conflict(w)) if w == what),
            "{name}"
        );
    }
    let pk = "Violation of PRIMARY KEY constraint 'tokens_pk'. Cannot insert duplicate \
              key in object 'dbo.tokens'. The duplicate key value is (1).";
    assert!(matches!(
        classify(2627, pk),
        Some(StoreError::Conflict("token id"))
    ));
    let index = "Cannot insert duplicate key row in object 'dbo.tokens' with unique \
                 index 'login_unique'. The duplicate key value is (a#001).";
    assert!(matches!(
        classify(2601, index),
        Some(StoreError::Conflict("login"))
    ));
    // A value that looks like another constraint's name changes nothing.
    let sneaky = unique("users_email_unique", "'login_unique'");
    assert!(matches!(
        classify(2627, &sneaky),
        Some(StoreError::Conflict("email"))
    ));
    assert!(classify(2627, &unique("someone_elses", "x")).is_none());
}

#[test]
fn foreign_key_violations_name_what_is_missing() {
    let fk = |name: &str| {
        format!(
            "The INSERT statement conflicted with the FOREIGN KEY constraint \"{name}\". \
             The conflict occurred in database \"dp\", table \"dbo.users\", column 'sub'."
        )
    };
    assert!(matches!(
        classify(547, &fk("tokens_sub_fk")),
        Some(StoreError::Missing("user"))
    ));
    assert!(matches!(
        classify(547, &fk("logs_token_fk")),
        Some(StoreError::Missing("token"))
    ));
    assert!(classify(547, &fk("other_fk")).is_none());
}

#[test]
fn other_errors_are_unavailable_and_logged() {
    assert!(classify(1205, "deadlock victim 'login_unique'").is_none());
    assert!(classify(18456, "Login failed for user 'sa'.").is_none());
    assert!(quotes_the_value(2628) && quotes_the_value(8152));
    let log = logged(|| {
        let io = Error::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "connection reset by peer".into(),
        };
        assert!(matches!(db_error("ping", &io), StoreError::Unavailable));
        let odd = Error::Protocol("unexpected token".into());
        assert!(matches!(db_error("migrate", &odd), StoreError::Unavailable));
    });
    assert!(
        log.contains("connection reset by peer") && log.contains("ping"),
        "{log}"
    );
    assert!(
        log.contains("unexpected token") && log.contains("migrate"),
        "{log}"
    );
}

#[tokio::test]
async fn open_connects_nothing_and_a_dead_server_is_unavailable() {
    // A port nothing listens on: bound, then released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = server(&format!("mssql://sa:p@127.0.0.1:{port}/dp"));
    let options = PoolOptions {
        size: 2,
        connect_timeout: Duration::from_secs(2),
    };
    let store = MssqlStore::open(&url, &options).expect("opens while the server is down");
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable)));
    let now = Utc::now().naive_utc().trunc_subsecs(6);
    let found = store.candidate_by_login("x#001", now).await;
    assert!(matches!(found, Err(StoreError::Unavailable)));
    let session = store.take_session(&"ab".repeat(32), now).await;
    assert!(matches!(session, Err(StoreError::Unavailable)));
    let ended = store.end_idp_session(Some("sid"), None).await;
    assert!(matches!(ended, Err(StoreError::Unavailable)));
    let nothing = store.end_idp_session(None, None).await;
    assert_eq!(nothing.ok(), Some(0), "nothing to end needs no server");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts the TCP connection, then never answers the prelogin.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            kept.push(socket);
        }
    });
    let url = server(&format!("mssql://sa:p@127.0.0.1:{port}/dp"));
    let options = PoolOptions {
        size: 1,
        connect_timeout: Duration::from_millis(300),
    };
    let store = MssqlStore::open(&url, &options).expect("opens");
    let started = std::time::Instant::now();
    assert!(matches!(
        store.migrate().await,
        Err(StoreError::Unavailable)
    ));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the connect timeout"
    );
    let uses = [(
        Uuid::new_v4(),
        micros("2025-01-01 00:00:00") + TimeDelta::seconds(1),
    )];
    assert!(matches!(
        store.record_uses(&uses).await,
        Err(StoreError::Unavailable)
    ));
    assert!(
        store.record_uses(&[]).await.is_ok(),
        "nothing to write needs no server"
    );
    held.abort();
}

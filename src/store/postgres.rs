//! The PostgreSQL store (tokio-postgres behind a deadpool pool).
//!
//! The schema is the one the Python project's alembic migrations create
//! on PostgreSQL (native `uuid` ids, `timestamp without time zone` in
//! UTC), so either program runs against the same database. The pool
//! connects lazily: the service starts while the database is down, and
//! every checkout is verified with an empty query, so connections killed
//! by a database restart are replaced without restarting the service.
//!
//! TLS follows libpq's `sslmode` (see [`TlsMode`]) using rustls. Browser
//! sessions are in the [`sessions`] submodule.

mod sessions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::Row;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

use super::{
    Candidate, NewToken, PoolOptions, ServerUrl, SessionRecord, Store, StoreError, Token,
    TokenInfo, TokenRef, User,
};
use crate::secret::Secret;

/// The revision the Python project's alembic migrations end at; written
/// into a new database so that project can run against it unchanged.
const UPSTREAM_REVISION: &str = "dd50cf0133d0";

/// Serialises migrations of one database across processes ("devpass1").
/// Advisory locks are per database, so other databases are not blocked.
const MIGRATION_LOCK: i64 = 0x6465_7670_6173_7331;

/// How long an idle connection waits before TCP keepalives probe it, so
/// a peer that vanished without closing the socket is noticed in minutes
/// rather than after the kernel's default two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// The schema the Python project's migrations leave in PostgreSQL (see
/// tests/fixtures/upstream-ddl/postgresql.sql). The `login` column that
/// migration `dd50cf0133d0` adds is declared in place; the catalog ends
/// up the same (same column position and constraint names).
const UPSTREAM_SCHEMA: &str = r#"
CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE revoked (
    sid VARCHAR NOT NULL,
    PRIMARY KEY (sid)
);
CREATE TABLE sessions (
    id SERIAL NOT NULL,
    session_id VARCHAR(255),
    data BYTEA,
    expiry TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (id),
    UNIQUE (session_id)
);
CREATE TABLE users (
    sub VARCHAR NOT NULL,
    username VARCHAR NOT NULL,
    email VARCHAR NOT NULL,
    PRIMARY KEY (sub),
    UNIQUE (email),
    UNIQUE (username)
);
CREATE TABLE tokens (
    id UUID NOT NULL,
    sub VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    token VARCHAR NOT NULL,
    expires TIMESTAMP WITHOUT TIME ZONE,
    login VARCHAR NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(sub) REFERENCES users (sub),
    CONSTRAINT login_unique UNIQUE (login)
);
CREATE TABLE logs (
    id SERIAL NOT NULL,
    date TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    "tokenId" UUID NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY("tokenId") REFERENCES tokens (id)
);
"#;

/// devicepass's own indexes on upstream tables (its own table is in
/// [`sessions::SCHEMA`]); nothing the old project would trip over.
const ADDITIONS: &str = r#"
CREATE INDEX IF NOT EXISTS ix_devicepass_tokens_sub ON tokens (sub);
CREATE INDEX IF NOT EXISTS ix_devicepass_logs_token ON logs ("tokenId", date);
"#;

/// Whether `tokens` (as unqualified queries resolve it) exists, and
/// whether it has the `login` column the upstream migration added.
const SCHEMA_STATE: &str = "SELECT to_regclass('tokens') IS NOT NULL, EXISTS (\
     SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass('tokens') \
     AND attname = 'login' AND NOT attisdropped)";

const CANDIDATE_SELECT: &str = "SELECT t.id, t.sub, t.login, t.name, t.expires, \
     u.username, u.email, t.token FROM tokens t JOIN users u ON u.sub = t.sub";

const LAST_USED: &str = "(SELECT max(l.date) FROM logs l WHERE l.\"tokenId\" = t.id)";

const ACTIVE: &str = "(t.expires IS NULL OR t.expires > $2)";

const TOKEN_INFO_SELECT: &str = "SELECT t.id, t.sub, t.login, t.name, t.expires, \
     u.username, (SELECT max(l.date) FROM logs l WHERE l.\"tokenId\" = t.id) \
     FROM tokens t JOIN users u ON u.sub = t.sub";

const UPSERT_USER: &str = "INSERT INTO users (sub, username, email) VALUES ($1, $2, $3) \
     ON CONFLICT (sub) DO UPDATE SET username = EXCLUDED.username, email = EXCLUDED.email";

const FIND_USER: &str = "SELECT sub, username, email FROM users \
     WHERE sub = $1 OR username = $1 OR email = $1 \
     ORDER BY sub = $1 DESC, username = $1 DESC LIMIT 1";

const INSERT_TOKEN: &str = "INSERT INTO tokens (id, sub, name, token, expires, login) \
     VALUES ($1, $2, $3, $4, $5, $6)";

/// One logs row per entry, in order, in one statement. Uses of tokens
/// deleted meanwhile find no row to join and are skipped. `FOR KEY SHARE`
/// makes a concurrent `delete_token` (which locks the row `FOR UPDATE`)
/// either wait for this batch or finish first, so neither side ever hits
/// the foreign key.
const RECORD_USES: &str = "INSERT INTO logs (date, \"tokenId\") \
     SELECT u.at, t.id FROM unnest($1::uuid[], $2::timestamp[]) \
     WITH ORDINALITY AS u(id, at, n) JOIN tokens t ON t.id = u.id \
     ORDER BY u.n FOR KEY SHARE OF t";

/// PostgreSQL behind a lazily connecting pool.
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Build the pool; nothing connects until the first query.
    pub fn open(server: &ServerUrl, options: &PoolOptions) -> Result<Self, StoreError> {
        let mode = TlsMode::parse(server.option("sslmode")).map_err(option_error)?;
        let tls = tls_connector(mode, server.option("sslrootcert")).map_err(option_error)?;
        warn_ignored_options(server);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        };
        let config = pg_config(server, options, mode);
        let manager = Manager::from_config(config, tls, manager_config);
        let timeout = Some(options.connect_timeout);
        let pool = Pool::builder(manager)
            .max_size(options.size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "cannot build the postgres pool");
                StoreError::Unavailable
            })?;
        Ok(PostgresStore { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

fn pg_config(server: &ServerUrl, options: &PoolOptions, mode: TlsMode) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&server.host)
        .port(server.port.unwrap_or(5432))
        .user(&server.user)
        .dbname(&server.database)
        .application_name(server.option("application_name").unwrap_or("devicepass"))
        .ssl_mode(mode.ssl_mode())
        .connect_timeout(options.connect_timeout)
        .keepalives_idle(KEEPALIVE_IDLE);
    if let Some(password) = &server.password {
        config.password(password.expose().as_bytes());
    }
    config
}

/// Options read here; others are reported once at open, not silently
/// ignored (a misspelt `sslmode` must not go unnoticed).
const KNOWN_OPTIONS: [&str; 3] = ["sslmode", "sslrootcert", "application_name"];

fn warn_ignored_options(server: &ServerUrl) {
    for (name, _) in &server.options {
        if !KNOWN_OPTIONS.iter().any(|k| k.eq_ignore_ascii_case(name)) {
            tracing::warn!(option = %name, "postgres URL option is not supported; ignored");
        }
    }
}

// ---------------------------------------------------------------- TLS ---

/// libpq's `sslmode`, as far as rustls can follow it.
///
/// `allow` and `prefer` both try TLS first and continue in plaintext only
/// when the server answers that it has no TLS (tokio-postgres's `Prefer`).
/// Unlike libpq they do not retry in plaintext after a *failed* TLS
/// handshake: that only fails closed. `prefer` is the default, as in
/// libpq. `require` never falls back to plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A problem with a URL option; names the option and the reason, never
/// the value (a path may be private, a typo of a password is possible).
#[derive(Debug, Clone, PartialEq, Eq)]
struct OptionError {
    option: &'static str,
    reason: &'static str,
}

fn option_error(e: OptionError) -> StoreError {
    tracing::error!(
        option = e.option,
        reason = e.reason,
        "invalid postgres URL option"
    );
    StoreError::BadOption(e.option)
}

impl TlsMode {
    fn parse(value: Option<&str>) -> Result<TlsMode, OptionError> {
        let Some(value) = value else {
            return Ok(TlsMode::Prefer);
        };
        match value.to_ascii_lowercase().as_str() {
            "disable" => Ok(TlsMode::Disable),
            "allow" | "prefer" => Ok(TlsMode::Prefer),
            "require" => Ok(TlsMode::Require),
            "verify-ca" => Ok(TlsMode::VerifyCa),
            "verify-full" => Ok(TlsMode::VerifyFull),
            _ => Err(OptionError {
                option: "sslmode",
                reason: "must be disable, allow, prefer, require, verify-ca or verify-full",
            }),
        }
    }

    fn ssl_mode(self) -> SslMode {
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encryption only (libpq's `prefer`/`require` without a root file).
    None,
    /// Chain to the given roots, any host name (libpq's `verify-ca`, and
    /// `prefer`/`require` when a root file is given, as libpq does).
    Chain,
    /// Chain and host name against the given roots.
    Full,
    /// Chain and host name against the public web roots (no root file,
    /// or `sslrootcert=system`, which libpq allows only with verify-full).
    FullPublic,
}

fn check_for(mode: TlsMode, rootcert: Option<&str>) -> Result<Check, OptionError> {
    let system = rootcert.is_some_and(|r| r.eq_ignore_ascii_case("system"));
    let file = rootcert.is_some() && !system;
    match (mode, file, system) {
        (TlsMode::VerifyFull, false, _) => Ok(Check::FullPublic),
        (TlsMode::VerifyFull, true, _) => Ok(Check::Full),
        (_, _, true) if mode != TlsMode::Disable => Err(OptionError {
            option: "sslrootcert",
            reason: "\"system\" is only allowed with sslmode=verify-full",
        }),
        (TlsMode::VerifyCa, false, _) => Err(OptionError {
            option: "sslrootcert",
            reason: "sslmode=verify-ca needs a root certificate file",
        }),
        (TlsMode::Disable, ..) => Ok(Check::None),
        (_, true, _) => Ok(Check::Chain),
        (_, false, _) => Ok(Check::None),
    }
}

fn tls_connector(mode: TlsMode, rootcert: Option<&str>) -> Result<MakeRustlsConnect, OptionError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match check_for(mode, rootcert)? {
        Check::None => Arc::new(EncryptOnly(provider.signature_verification_algorithms)),
        Check::Chain => Arc::new(ChainOnly(webpki_verifier(&provider, rootcert)?)),
        Check::Full => webpki_verifier(&provider, rootcert)?,
        Check::FullPublic => {
            // That constructor uses the process-wide provider, which rustls
            // cannot pick by itself if a second one is ever linked in.
            let _already_set = CryptoProvider::install_default((*provider).clone());
            return Ok(MakeRustlsConnect::with_webpki_roots());
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| OptionError {
            option: "sslmode",
            reason: "the TLS library has no usable protocol version",
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn webpki_verifier(
    provider: &Arc<CryptoProvider>,
    rootcert: Option<&str>,
) -> Result<Arc<WebPkiServerVerifier>, OptionError> {
    let roots = load_roots(rootcert.unwrap_or_default())?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|_| OptionError {
            option: "sslrootcert",
            reason: "the root certificates cannot be used",
        })
}

fn load_roots(path: &str) -> Result<RootCertStore, OptionError> {
    let unreadable = OptionError {
        option: "sslrootcert",
        reason: "the file cannot be read as PEM certificates",
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|_| unreadable.clone())?;
    for cert in certs {
        let cert = cert.map_err(|_| unreadable.clone())?;
        roots.add(cert).map_err(|_| unreadable.clone())?;
    }
    if roots.is_empty() {
        return Err(OptionError {
            option: "sslrootcert",
            reason: "the file holds no certificate",
        });
    }
    Ok(roots)
}

/// Accepts any certificate but still checks the handshake signatures:
/// protects against eavesdropping, not against an active impostor —
/// exactly what libpq's `sslmode=require` promises.
#[derive(Debug)]
struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// The full web PKI check minus the host name (libpq's `verify-ca`).
/// rustls checks the chain before the name, so a name mismatch is only
/// reported for a certificate whose chain was already accepted.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

fn is_name_mismatch(e: &CertificateError) -> bool {
    matches!(
        e,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    )
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verdict {
            Err(rustls::Error::InvalidCertificate(e)) if is_name_mismatch(&e) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

// ------------------------------------------------------------- errors ---

/// The one converter from driver errors: detail to the log, an opaque
/// error (or the name of a taken unique value) to the caller.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error()
        && let Some(err) = constraint_error(db.code(), db.constraint(), db.table())
    {
        return err;
    }
    if e.is_closed() {
        // The server went away mid-request; the pool replaces the
        // connection at its next checkout.
        tracing::warn!(error = %e, "postgres connection lost");
    } else {
        tracing::error!(error = %e, "postgres error");
    }
    StoreError::Unavailable
}

/// Constraint violations callers can act on, by constraint name. Names
/// are matched loosely so other naming conventions still map.
fn constraint_error(
    code: &SqlState,
    constraint: Option<&str>,
    table: Option<&str>,
) -> Option<StoreError> {
    let constraint = constraint.unwrap_or_default();
    if *code == SqlState::UNIQUE_VIOLATION {
        if constraint.contains("login") {
            Some(StoreError::Conflict("login"))
        } else if constraint.contains("username") {
            Some(StoreError::Conflict("username"))
        } else if constraint.contains("email") {
            Some(StoreError::Conflict("email"))
        } else if table == Some("tokens") {
            Some(StoreError::Conflict("token id"))
        } else {
            None
        }
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        if table == Some("tokens") {
            Some(StoreError::Missing("user"))
        } else {
            Some(StoreError::Missing("token"))
        }
    } else {
        None
    }
}

/// The pool could not hand out a connection: the database is down,
/// unreachable, refusing us, or every connection is busy.
fn pool_error(e: PoolError) -> StoreError {
    tracing::warn!(error = %e, "no postgres connection");
    StoreError::Unavailable
}

// --------------------------------------------------------------- rows ---

fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &'static str,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| {
        tracing::error!(error = %e, column = index, "unexpected postgres value");
        StoreError::Corrupt(what)
    })
}

fn read_token(row: &Row) -> Result<Token, StoreError> {
    Ok(Token {
        id: get(row, 0, "token id")?,
        sub: get(row, 1, "token")?,
        login: get(row, 2, "token")?,
        name: get(row, 3, "token")?,
        expires: get(row, 4, "datetime")?,
    })
}

fn read_candidate(row: &Row) -> Result<Candidate, StoreError> {
    let token = read_token(row)?;
    let user = User {
        sub: token.sub.clone(),
        username: get(row, 5, "user")?,
        email: get(row, 6, "user")?,
    };
    let hash: String = get(row, 7, "token")?;
    Ok(Candidate {
        token,
        user,
        hash: Secret::new(hash),
    })
}

fn read_user(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        sub: get(row, 0, "user")?,
        username: get(row, 1, "user")?,
        email: get(row, 2, "user")?,
    })
}

fn read_token_info(row: &Row) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        token: read_token(row)?,
        username: get(row, 5, "user")?,
        last_used: get(row, 6, "datetime")?,
    })
}

fn read_all<T>(
    rows: &[Row],
    read: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(read).collect()
}

// ----------------------------------------------------------- migrate ---

/// Create the upstream schema in an empty database, or check an existing
/// one, then add devicepass's indexes and table — all under an advisory
/// lock, so a second replica waits and then finds the work done.
async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_error)?;
    // Read after taking the lock: in READ COMMITTED each statement sees
    // what a replica that held the lock before us committed.
    let state = tx.query_one(SCHEMA_STATE, &[]).await.map_err(db_error)?;
    let (has_tokens, has_login): (bool, bool) =
        (get(&state, 0, "schema")?, get(&state, 1, "schema")?);
    if !has_tokens {
        tx.batch_execute(UPSTREAM_SCHEMA).await.map_err(db_error)?;
        tx.execute(
            "INSERT INTO alembic_version (version_num) VALUES ($1)",
            &[&UPSTREAM_REVISION],
        )
        .await
        .map_err(db_error)?;
    } else if !has_login {
        // Tokens from before the `login` column cannot be selected.
        tracing::error!("tokens table has no login column; upgrade devicepasswords first");
        return Err(StoreError::Corrupt("schema"));
    }
    tx.batch_execute(ADDITIONS).await.map_err(db_error)?;
    tx.batch_execute(sessions::SCHEMA).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

// -------------------------------------------------------------- store ---

type Param<'a> = &'a (dyn ToSql + Sync);

impl PostgresStore {
    /// Run one cached statement and return its rows.
    async fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(db_error)?;
        client.query(&stmt, params).await.map_err(db_error)
    }

    async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(db_error)?;
        client.execute(&stmt, params).await.map_err(db_error)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        migrate(&mut client).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Reading the tokens table also tells a missing schema (the
        // service started with auto_migrate off) from a healthy database.
        self.query("SELECT 1 FROM tokens WHERE false", &[])
            .await
            .map(drop)
    }

    async fn candidate_by_login(
        &self,
        login: &str,
        now: NaiveDateTime,
    ) -> Result<Option<Candidate>, StoreError> {
        let sql = format!("{CANDIDATE_SELECT} WHERE t.login = $1 AND {ACTIVE}");
        let rows = self.query(&sql, &[&login, &now]).await?;
        rows.first().map(read_candidate).transpose()
    }

    async fn candidates_by_user(
        &self,
        name: &str,
        now: NaiveDateTime,
        limit: usize,
    ) -> Result<Vec<Candidate>, StoreError> {
        let sql = format!(
            "{CANDIDATE_SELECT} WHERE (u.username = $1 OR u.email = $1) AND {ACTIVE} \
             ORDER BY {LAST_USED} DESC NULLS LAST, t.login LIMIT $3"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(&sql, &[&name, &now, &limit]).await?;
        read_all(&rows, read_candidate)
    }

    async fn upsert_user(&self, user: &User) -> Result<(), StoreError> {
        let params: [Param<'_>; 3] = [&user.sub, &user.username, &user.email];
        self.execute(UPSERT_USER, &params).await.map(drop)
    }

    async fn find_user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let rows = self.query(FIND_USER, &[&name]).await?;
        rows.first().map(read_user).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = "SELECT sub, username, email FROM users ORDER BY username";
        let rows = self.query(sql, &[]).await?;
        read_all(&rows, read_user)
    }

    async fn insert_token(&self, new: &NewToken) -> Result<(), StoreError> {
        let t = &new.token;
        let hash = new.hash.expose();
        let params: [Param<'_>; 6] = [&t.id, &t.sub, &t.name, hash, &t.expires, &t.login];
        self.execute(INSERT_TOKEN, &params).await.map(drop)
    }

    async fn list_tokens(&self, sub: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        // Two statements rather than `$1 IS NULL OR …`, which would get
        // one generic plan that cannot use the index on `sub`.
        let rows = match sub {
            Some(sub) => {
                let sql =
                    format!("{TOKEN_INFO_SELECT} WHERE t.sub = $1 ORDER BY u.username, t.login");
                self.query(&sql, &[&sub]).await?
            }
            None => {
                let sql = format!("{TOKEN_INFO_SELECT} ORDER BY u.username, t.login");
                self.query(&sql, &[]).await?
            }
        };
        read_all(&rows, read_token_info)
    }

    async fn delete_token(&self, which: &TokenRef) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // Locking the row first makes a concurrent record_uses wait for
        // us (or us for it), so no use record is left behind.
        let (sql, id_or_login): (&str, Param<'_>) = match which {
            TokenRef::Id(id) => ("SELECT id FROM tokens WHERE id = $1 FOR UPDATE", id),
            TokenRef::Login(login) => ("SELECT id FROM tokens WHERE login = $1 FOR UPDATE", login),
        };
        let stmt = tx.prepare_cached(sql).await.map_err(db_error)?;
        let Some(row) = tx
            .query_opt(&stmt, &[id_or_login])
            .await
            .map_err(db_error)?
        else {
            return Ok(false);
        };
        let id: Uuid = get(&row, 0, "token id")?;
        let logs = tx
            .prepare_cached("DELETE FROM logs WHERE \"tokenId\" = $1")
            .await
            .map_err(db_error)?;
        tx.execute(&logs, &[&id]).await.map_err(db_error)?;
        let token = tx
            .prepare_cached("DELETE FROM tokens WHERE id = $1")
            .await
            .map_err(db_error)?;
        tx.execute(&token, &[&id]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn record_uses(&self, uses: &[(Uuid, NaiveDateTime)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let (ids, dates): (Vec<Uuid>, Vec<NaiveDateTime>) = uses.iter().copied().unzip();
        // One statement is one transaction: all rows or none.
        self.execute(RECORD_USES, &[&ids, &dates]).await.map(drop)
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        sessions::put(self, session).await
    }

    async fn session(
        &self,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sessions::find(self, id, now).await
    }

    async fn take_session(
        &self,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sessions::take(self, id, now).await
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        sessions::delete(self, id).await
    }

    async fn end_idp_session(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<u64, StoreError> {
        sessions::end_idp(self, sid, sub).await
    }

    async fn is_revoked(&self, sid: &str) -> Result<bool, StoreError> {
        sessions::is_revoked(self, sid).await
    }

    async fn purge_sessions(&self, now: NaiveDateTime) -> Result<u64, StoreError> {
        sessions::purge(self, now).await
    }
}

#[cfg(test)]
mod tests;

//! The command line: serving, migrations, and managing users and tokens
//! without the web interface (the only way in verification-only mode).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{NaiveDate, NaiveDateTime};
use clap::{Parser, Subcommand};

use crate::checkpassword::{self, CheckpasswordArgs, HealthcheckArgs};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::passgen::Wordlist;
use crate::service;
use crate::store::{Store, TokenRef, User};
use crate::tokens::TokenMaker;
use crate::verify::uses::UseRecorder;
use crate::verify::{Credentials, Outcome, Settings, Verifier};

#[derive(Parser)]
#[command(
    name = "devicepass",
    version,
    about = "Device passwords for OpenID Connect organisations"
)]
pub struct Cli {
    /// TOML configuration file; DP_* environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage device passwords.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check a password (read from stdin) for a login, username or email;
    /// exit 0 if it is valid, 1 if not, 3 if the database is unavailable.
    Verify { login: String },
    /// Hash a password read from stdin with the configured scheme.
    Hash,
    /// Dovecot 2.3 checkpassword (DJB interface): read the login and
    /// password from fd 3, ask the running service, then exec the reply
    /// program (exit 1: wrong password, 111: service unavailable).
    Checkpassword(CheckpasswordArgs),
    /// Exit 0 if the running service answers GET /healthz with 200, else 1.
    Healthcheck(HealthcheckArgs),
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user, or update the username and email of a subject.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// The identity provider's subject; a new UUID when omitted.
        #[arg(long)]
        sub: Option<String>,
    },
    /// List users.
    List,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a device password; prints its login and password once.
    Create {
        /// Owner: username, email or subject.
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "device")]
        name: String,
        /// Expiry: a date (2027-01-31), a UTC time (2027-01-31T18:00:00)
        /// or a duration from now (90d, 12h).
        #[arg(long)]
        expires: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List device passwords (without their hashes).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Delete a device password by id or login.
    Delete { token: String },
}

/// Run a command that needs no configuration: the thin clients of a
/// running service, which must work in environments (Dovecot's auth
/// process, a health check) that have no service settings. `None` for
/// every other command.
pub fn run_without_config(command: &Command) -> Option<ExitCode> {
    match command {
        Command::Checkpassword(args) => Some(checkpassword::run_checkpassword(args)),
        Command::Healthcheck(args) => Some(checkpassword::run_healthcheck(args)),
        _ => None,
    }
}

/// Run a command with a loaded configuration.
pub async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match command {
        Command::Serve => serve(config, clock).await,
        Command::Migrate => {
            service::open_store(&config, true).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(cmd) => user(cmd, &config).await,
        Command::Token(cmd) => token(cmd, &config, clock).await,
        Command::Verify { login } => verify(&login, &config, clock).await,
        Command::Hash => {
            let password = read_password()?;
            if password.is_empty() {
                bail!("no password on stdin");
            }
            println!("{}", service::hasher(&config).hash(&password)?);
            Ok(ExitCode::SUCCESS)
        }
        // Reached only when `main` did not call `run_without_config`
        // first; the configuration is not used.
        Command::Checkpassword(args) => Ok(checkpassword::checkpassword(&args).await),
        Command::Healthcheck(args) => Ok(checkpassword::healthcheck(&args).await),
    }
}

async fn serve(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    let running = service::start(&config, service::hasher(&config), clock).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn user(cmd: UserCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = service::open_store(config, config.auto_migrate).await?;
    match cmd {
        UserCommand::Add {
            username,
            email,
            sub,
        } => {
            crate::tokens::check_username(&username)?;
            if email.trim().is_empty() || email.chars().any(char::is_control) {
                bail!("the email must not be empty or contain control characters");
            }
            let sub = sub.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let username_shown = username.clone();
            store
                .upsert_user(&User {
                    sub: sub.clone(),
                    username,
                    email,
                })
                .await?;
            println!("user {username_shown} (subject {sub}) saved");
        }
        UserCommand::List => {
            let mut out = std::io::stdout().lock();
            for u in store.list_users().await? {
                writeln!(out, "{}\t{}\t{}", u.username, u.email, u.sub)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn token(
    cmd: TokenCommand,
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ExitCode> {
    let store = service::open_store(config, config.auto_migrate).await?;
    match cmd {
        TokenCommand::Create {
            user,
            name,
            expires,
            json,
        } => {
            let owner = find_user(store.as_ref(), &user).await?;
            let expires = expires.map(|e| parse_expiry(&e, clock.now())).transpose()?;
            let maker = TokenMaker {
                store,
                hasher: Arc::new(service::hasher(config)),
                wordlist: Arc::new(Wordlist::load(config.wordlist.as_deref())?),
                clock,
                max_expiration_days: config.max_expiration_days,
            };
            let created = maker.create(&owner, &name, expires).await?;
            print_created(&created, json)?;
        }
        TokenCommand::List { user } => {
            let sub = match user {
                Some(u) => Some(find_user(store.as_ref(), &u).await?.sub),
                None => None,
            };
            let mut out = std::io::stdout().lock();
            for t in store.list_tokens(sub.as_deref()).await? {
                let expires = t.token.expires.map_or("never".into(), |e| e.to_string());
                let used = t.last_used.map_or("never".into(), |e| e.to_string());
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\texpires {}\tlast used {}",
                    t.token.id, t.token.login, t.username, t.token.name, expires, used
                )?;
            }
        }
        TokenCommand::Delete { token } => {
            if !store.delete_token(&TokenRef::parse(&token)).await? {
                eprintln!("devicepass: no token with that id or login");
                return Ok(ExitCode::from(1));
            }
            println!("token {token} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_created(created: &crate::tokens::Created, json: bool) -> anyhow::Result<()> {
    let t = &created.token;
    let expires = t.expires.map(|e| e.format("%Y-%m-%dT%H:%M:%S").to_string());
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "id": t.id.to_string(),
            "login": t.login,
            "name": t.name,
            "password": created.password.expose(),
            "expires": expires,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(out, "login:    {}", t.login)?;
        writeln!(out, "password: {}", created.password.expose())?;
        writeln!(out, "id:       {}", t.id)?;
        writeln!(out, "expires:  {}", expires.as_deref().unwrap_or("never"))?;
        writeln!(out, "The password is shown only this once.")?;
    }
    Ok(())
}

async fn find_user(store: &dyn Store, name: &str) -> anyhow::Result<User> {
    store
        .find_user(name)
        .await?
        .with_context(|| format!("no user with username, email or subject {name:?}"))
}

async fn verify(login: &str, config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    let store = service::open_store(config, false).await?;
    let (uses, _writer) = UseRecorder::spawn(Arc::clone(&store), config.use_flush_interval);
    let settings = Settings {
        max_candidates: config.max_candidates,
        cache_capacity: 0,
        cache_ttl: config.cache_ttl,
        hash_workers: 1,
        hash_queue: 1,
        store_timeout: config.store_timeout,
    };
    let hasher = Arc::new(service::hasher(config));
    let verifier = Verifier::new(store, hasher, clock, uses, settings)?;
    let credentials = Credentials::new(login, read_password()?);
    let outcome = verifier.verify(&credentials).await;
    verifier.uses().close().await;
    Ok(match outcome {
        Ok(Outcome::Granted(identity)) => {
            println!("{}", identity.username);
            ExitCode::SUCCESS
        }
        Ok(Outcome::Denied) => ExitCode::from(1),
        Err(e) => {
            eprintln!("cannot verify: {e}");
            ExitCode::from(3)
        }
    })
}

/// One line from stdin, without its line ending.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn parse_expiry(text: &str, now: NaiveDateTime) -> anyhow::Result<NaiveDateTime> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN));
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at);
        }
    }
    let span = humantime::parse_duration(text).map_err(|_| {
        anyhow::anyhow!(
            "--expires must be a valid date (2027-01-31), UTC time (2027-01-31T18:00:00) \
             or duration (90d)"
        )
    })?;
    let span = chrono::TimeDelta::from_std(span).context("--expires is too far away")?;
    Ok(now + span)
}

//! Verification semantics, in-process so the clock and the hash counter
//! can be reached: revocation with a warm cache, the expiry boundary, and
//! equal work for unknown users and wrong passwords.

use std::sync::Arc;

use chrono::{NaiveDateTime, SubsecRound, TimeDelta, Utc};
use devicepass::clock::{Clock, ManualClock};
use devicepass::config::Config;
use devicepass::hash::{HashPolicy, Hasher, Scheme};
use devicepass::secret::Secret;
use devicepass::service::{self, Running};
use devicepass::store::{NewToken, Store, Token, User};
use tokio::task::spawn_blocking;

use crate::support::{self, basic, get_auth};

fn fast_hasher() -> Hasher {
    Hasher::new(Scheme::Argon2, HashPolicy::INSECURE_FAST_FOR_TESTS_ONLY)
}

struct Fixture {
    _dir: tempfile::TempDir,
    url: String,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    running: Running,
    user: User,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:///{}", dir.path().join("dp.db").display());
    let vars = [
        ("DP_DATABASE_URL", url.as_str()),
        ("DP_LISTEN", "127.0.0.1:0"),
    ];
    let config = Config::load_from(None, vars)
        .map_err(|e| e.to_string())
        .expect("config")
        .config;
    // Stored times have microseconds; start the clock on one.
    let clock = Arc::new(ManualClock::new(Utc::now().naive_utc().trunc_subsecs(6)));
    let as_clock: Arc<dyn Clock> = Arc::clone(&clock) as Arc<dyn Clock>;
    let running = service::start(&config, fast_hasher(), as_clock)
        .await
        .expect("start");
    let store = service::open_store(&config, false).await.expect("store");
    let user = User {
        sub: "sub-erin".into(),
        username: "erin".into(),
        email: "erin@example.org".into(),
    };
    store.upsert_user(&user).await.expect("user");
    Fixture {
        _dir: dir,
        url,
        store,
        clock,
        running,
        user,
    }
}

impl Fixture {
    async fn token(&self, login: &str, password: &str, expires: Option<NaiveDateTime>) {
        let hash = fast_hasher().hash(password).expect("hash");
        let token = Token {
            id: uuid::Uuid::new_v4(),
            sub: self.user.sub.clone(),
            login: login.into(),
            name: "test".into(),
            expires,
        };
        self.store
            .insert_token(&NewToken {
                token,
                hash: Secret::new(hash),
            })
            .await
            .expect("insert");
    }

    async fn status(&self, user: &str, password: &str) -> u16 {
        let addr = self.running.addr;
        let value = basic(user, password);
        spawn_blocking(move || get_auth(addr, "/auth", Some(&value)).status)
            .await
            .expect("request")
    }

    fn slow_hashes(&self) -> u64 {
        self.running.app.verifier.slow_hashes()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_token_revokes_it_at_once_despite_the_cache() {
    let f = fixture().await;
    f.token("erin#100", "correct-horse", None).await;
    assert_eq!(f.status("erin#100", "correct-horse").await, 200);
    let before = f.slow_hashes();
    assert_eq!(f.status("erin#100", "correct-horse").await, 200);
    assert_eq!(
        f.slow_hashes(),
        before,
        "second check is served from the cache"
    );

    let url = f.url.clone();
    let out =
        spawn_blocking(move || support::cli(&url, &["token", "delete", "erin#100"], &[], None))
            .await
            .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.status("erin#100", "correct-horse").await, 401);
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_boundary() {
    let f = fixture().await;
    let now = f.clock.now();
    f.token(
        "erin#201",
        "gone-a-second-ago",
        Some(now - TimeDelta::seconds(1)),
    )
    .await;
    f.token(
        "erin#202",
        "good-for-an-hour",
        Some(now + TimeDelta::hours(1)),
    )
    .await;
    assert_eq!(f.status("erin#201", "gone-a-second-ago").await, 401);
    assert_eq!(f.status("erin#202", "good-for-an-hour").await, 200);
    assert_eq!(
        f.status("erin", "good-for-an-hour").await,
        200,
        "by username"
    );

    // An hour and a second later the cached entry must not keep it alive.
    f.clock.advance(TimeDelta::seconds(3601));
    assert_eq!(f.status("erin#202", "good-for-an-hour").await, 401);
    assert_eq!(f.status("erin@example.org", "good-for-an-hour").await, 401);
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_and_wrong_password_cost_one_slow_hash_each() {
    let f = fixture().await;
    f.token("erin#300", "right-password", None).await;

    let before = f.slow_hashes();
    assert_eq!(f.status("nobody#999", "whatever").await, 401);
    assert_eq!(f.slow_hashes() - before, 1, "unknown user");

    let before = f.slow_hashes();
    assert_eq!(f.status("erin#300", "wrong-password").await, 401);
    assert_eq!(f.slow_hashes() - before, 1, "wrong password");

    let before = f.slow_hashes();
    assert_eq!(f.status("erin#300", "").await, 401);
    assert_eq!(f.slow_hashes() - before, 1, "empty password");

    let now = f.clock.now();
    f.token("erin#301", "expired-one", Some(now - TimeDelta::minutes(1)))
        .await;
    let before = f.slow_hashes();
    assert_eq!(f.status("erin#301", "expired-one").await, 401);
    assert_eq!(f.slow_hashes() - before, 1, "expired token");
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uses_are_recorded_in_the_background() {
    let f = fixture().await;
    f.token("erin#400", "used-password", None).await;
    assert_eq!(f.status("erin#400", "used-password").await, 200);
    f.running.app.verifier.uses().flush().await;
    let tokens = f.store.list_tokens(Some(&f.user.sub)).await.expect("list");
    let used = tokens
        .iter()
        .find(|t| t.token.login == "erin#400")
        .expect("token");
    assert_eq!(
        used.last_used,
        Some(f.clock.now()),
        "last use is the verification time"
    );
    f.running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn username_refusals_cost_the_same_whether_or_not_the_name_exists() {
    let f = fixture().await;
    for n in 0..3 {
        f.token(&format!("erin#50{n}"), &format!("password-{n}"), None)
            .await;
    }
    // Default max_candidates is 5: a refusal by username or email costs
    // five slow hashes, for a user with three tokens and for nobody.
    for name in ["erin", "erin@example.org", "nobody", "nobody@example.org"] {
        let before = f.slow_hashes();
        assert_eq!(f.status(name, "wrong-password").await, 401, "{name}");
        assert_eq!(f.slow_hashes() - before, 5, "{name}");
    }
    assert_eq!(
        f.status("erin", "password-1").await,
        200,
        "the right one still works"
    );
    f.running.stop().await;
}

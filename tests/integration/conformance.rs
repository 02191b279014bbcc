//! One conformance suite for every store: the same test functions run on
//! SQLite, PostgreSQL, MariaDB (and SQL Server when a URL is given).
//! Browser sessions have their part in [`sessions`].

mod sessions;

use std::sync::Arc;

use chrono::{NaiveDateTime, SubsecRound, TimeDelta, Utc};
use devicepass::clock::{Clock, ManualClock};
use devicepass::hash::{HashPolicy, Hasher, Scheme};
use devicepass::passgen::Wordlist;
use devicepass::secret::Secret;
use devicepass::store::{NewToken, Store, StoreError, Token, TokenRef, User};
use devicepass::tokens::TokenMaker;
use uuid::Uuid;

use crate::engines::{Engine, fresh};
use sessions::{
    idp_logout_by_sid_revokes_once, idp_logout_by_sub_ends_every_session_of_the_user,
    sessions_are_deleted, sessions_expire_at_their_time, sessions_round_trip_and_replace,
    take_session_hands_a_row_out_once,
};

/// Generates one `#[tokio::test]` per engine for each suite function.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::run(super::Engine::Sqlite, super::$name).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::run(super::Engine::Postgres, super::$name).await } )* }
        mod mysql { $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::run(super::Engine::Mysql, super::$name).await } )* }
        mod mssql { $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::run(super::Engine::Mssql, super::$name).await } )* }
    };
}

conformance!(
    users_are_created_updated_and_found,
    tokens_are_created_listed_and_deleted,
    lookup_by_login_username_and_email,
    expiry_boundary,
    concurrent_creates_never_duplicate_or_lose,
    non_ascii_round_trips,
    uses_are_written_in_batches,
    migrations_are_idempotent_and_concurrent,
    sessions_round_trip_and_replace,
    sessions_expire_at_their_time,
    take_session_hands_a_row_out_once,
    sessions_are_deleted,
    idp_logout_by_sid_revokes_once,
    idp_logout_by_sub_ends_every_session_of_the_user,
);

/// What each suite function gets: a fresh migrated store and its URL.
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub url: String,
}

async fn run<F, Fut>(engine: Engine, suite: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = fresh(engine).await else {
        return;
    };
    suite(Ctx {
        store: Arc::clone(&db.store),
        url: db.url.clone(),
    })
    .await;
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

fn user(n: &str) -> User {
    User {
        sub: format!("sub-{n}"),
        username: n.into(),
        email: format!("{n}@example.org"),
    }
}

/// A token whose stored value is `{plaintext}<login>-password`.
pub(crate) fn token(owner: &User, login: &str, expires: Option<NaiveDateTime>) -> NewToken {
    NewToken {
        token: Token {
            id: Uuid::new_v4(),
            sub: owner.sub.clone(),
            login: login.into(),
            name: format!("{login} device"),
            expires,
        },
        hash: Secret::new(format!("{{plaintext}}{login}-password")),
    }
}

async fn users_are_created_updated_and_found(ctx: Ctx) {
    let s = ctx.store;
    let alice = user("alice");
    s.upsert_user(&alice).await.expect("create");
    s.upsert_user(&alice).await.expect("same again is fine");
    let renamed = User {
        username: "alice2".into(),
        email: "a2@example.org".into(),
        ..alice.clone()
    };
    s.upsert_user(&renamed).await.expect("update by sub");
    for key in ["sub-alice", "alice2", "a2@example.org"] {
        assert_eq!(
            s.find_user(key).await.expect("find"),
            Some(renamed.clone()),
            "{key}"
        );
    }
    assert_eq!(
        s.find_user("alice").await.expect("find"),
        None,
        "old name is gone"
    );

    let bob = User {
        sub: "sub-bob".into(),
        username: "alice2".into(),
        email: "b@example.org".into(),
    };
    assert!(matches!(
        s.upsert_user(&bob).await,
        Err(StoreError::Conflict("username"))
    ));
    let bob = User {
        username: "bob".into(),
        email: "a2@example.org".into(),
        ..bob
    };
    assert!(matches!(
        s.upsert_user(&bob).await,
        Err(StoreError::Conflict("email"))
    ));

    let names: Vec<String> = s
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, vec!["alice2".to_string()]);
}

async fn tokens_are_created_listed_and_deleted(ctx: Ctx) {
    let s = ctx.store;
    let (a, b) = (user("ann"), user("ben"));
    s.upsert_user(&a).await.expect("ann");
    s.upsert_user(&b).await.expect("ben");
    let t1 = token(&a, "ann#001", None);
    let t2 = token(&a, "ann#002", Some(now() + TimeDelta::days(3)));
    let t3 = token(&b, "ben#001", None);
    for t in [&t1, &t2, &t3] {
        s.insert_token(t).await.expect("insert");
    }
    assert!(matches!(
        s.insert_token(&token(&b, "ann#001", None)).await,
        Err(StoreError::Conflict("login"))
    ));
    let ghost = User {
        sub: "nobody".into(),
        ..user("x")
    };
    assert!(
        s.insert_token(&token(&ghost, "x#001", None)).await.is_err(),
        "owner must exist"
    );

    let mine = s.list_tokens(Some("sub-ann")).await.expect("list");
    let logins: Vec<&str> = mine.iter().map(|t| t.token.login.as_str()).collect();
    assert_eq!(logins, vec!["ann#001", "ann#002"]);
    assert_eq!(
        mine[1].token, t2.token,
        "fields round-trip, expiry to the microsecond"
    );
    assert_eq!(mine[0].username, "ann");
    assert_eq!(s.list_tokens(None).await.expect("all").len(), 3);

    assert!(
        s.delete_token(&TokenRef::Id(t1.token.id))
            .await
            .expect("by id")
    );
    assert!(
        s.delete_token(&TokenRef::Login("ben#001".into()))
            .await
            .expect("by login")
    );
    assert!(
        !s.delete_token(&TokenRef::Login("ben#001".into()))
            .await
            .expect("again")
    );
    let left: Vec<String> = s
        .list_tokens(None)
        .await
        .expect("all")
        .into_iter()
        .map(|t| t.token.login)
        .collect();
    assert_eq!(left, vec!["ann#002".to_string()]);
}

async fn lookup_by_login_username_and_email(ctx: Ctx) {
    let s = ctx.store;
    let c = user("cat");
    s.upsert_user(&c).await.expect("user");
    let at = now();
    let tokens: Vec<NewToken> = (1..=4)
        .map(|i| token(&c, &format!("cat#00{i}"), None))
        .collect();
    for t in &tokens {
        s.insert_token(t).await.expect("insert");
    }
    // Used: #3 most recently, then #1; #2 and #4 never.
    let uses = [
        (tokens[0].token.id, at - TimeDelta::hours(2)),
        (tokens[2].token.id, at - TimeDelta::hours(1)),
    ];
    s.record_uses(&uses).await.expect("uses");

    let one = s
        .candidate_by_login("cat#002", at)
        .await
        .expect("login")
        .expect("found");
    assert_eq!(one.token.login, "cat#002");
    assert_eq!(one.user, c);
    assert_eq!(one.hash.expose(), "{plaintext}cat#002-password");
    assert!(
        s.candidate_by_login("cat#009", at)
            .await
            .expect("login")
            .is_none()
    );
    assert!(
        s.candidate_by_login("cat", at)
            .await
            .expect("login")
            .is_none(),
        "username is no login"
    );

    for name in ["cat", "cat@example.org"] {
        let found = s.candidates_by_user(name, at, 10).await.expect("by user");
        let order: Vec<&str> = found.iter().map(|c| c.token.login.as_str()).collect();
        assert_eq!(
            &order[..2],
            ["cat#003", "cat#001"],
            "{name}: most recently used first"
        );
        assert_eq!(order.len(), 4);
    }
    assert_eq!(
        s.candidates_by_user("cat", at, 2)
            .await
            .expect("limit")
            .len(),
        2
    );
    assert!(
        s.candidates_by_user("dog", at, 5)
            .await
            .expect("unknown")
            .is_empty()
    );
}

async fn expiry_boundary(ctx: Ctx) {
    let s = ctx.store;
    let d = user("dan");
    s.upsert_user(&d).await.expect("user");
    let at = now();
    s.insert_token(&token(&d, "dan#001", Some(at)))
        .await
        .expect("expires now");
    s.insert_token(&token(&d, "dan#002", Some(at + TimeDelta::microseconds(1))))
        .await
        .expect("1 µs left");
    s.insert_token(&token(&d, "dan#003", Some(at - TimeDelta::seconds(1))))
        .await
        .expect("expired");
    s.insert_token(&token(&d, "dan#004", None))
        .await
        .expect("never expires");

    assert!(
        s.candidate_by_login("dan#001", at)
            .await
            .expect("q")
            .is_none(),
        "expires <= now never matches"
    );
    assert!(
        s.candidate_by_login("dan#002", at)
            .await
            .expect("q")
            .is_some()
    );
    assert!(
        s.candidate_by_login("dan#003", at)
            .await
            .expect("q")
            .is_none()
    );
    assert!(
        s.candidate_by_login("dan#004", at)
            .await
            .expect("q")
            .is_some()
    );
    let active: Vec<String> = s
        .candidates_by_user("dan", at, 10)
        .await
        .expect("q")
        .into_iter()
        .map(|c| c.token.login)
        .collect();
    let mut active = active;
    active.sort();
    assert_eq!(active, vec!["dan#002".to_string(), "dan#004".to_string()]);
}

async fn concurrent_creates_never_duplicate_or_lose(ctx: Ctx) {
    let s = ctx.store;
    let e = user("eve");
    s.upsert_user(&e).await.expect("user");

    // The same login from many writers at once: exactly one wins.
    let tries = (0..16).map(|_| {
        let s = Arc::clone(&s);
        let t = token(&e, "eve#777", None);
        tokio::spawn(async move { s.insert_token(&t).await })
    });
    let results = futures_join(tries).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict("login"))))
        .count();
    assert_eq!((won, conflicts), (1, 15));

    // Many creates for one user with generated logins: none lost.
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now()));
    let maker = Arc::new(TokenMaker {
        store: Arc::clone(&s),
        hasher: Arc::new(Hasher::new(
            Scheme::Plaintext,
            HashPolicy::INSECURE_FAST_FOR_TESTS_ONLY,
        )),
        wordlist: Arc::new(Wordlist::builtin().expect("words")),
        clock,
        max_expiration_days: None,
    });
    let creates = (0..40).map(|i| {
        let maker = Arc::clone(&maker);
        let e = e.clone();
        tokio::spawn(async move {
            maker
                .create(&e, &format!("device {i}"), None)
                .await
                .map(|c| c.token.login)
        })
    });
    let logins: Vec<String> = futures_join(creates)
        .await
        .into_iter()
        .map(|r| r.expect("created"))
        .collect();
    let mut unique = logins.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 40, "no duplicate logins");
    assert_eq!(
        s.list_tokens(Some(&e.sub)).await.expect("list").len(),
        41,
        "no lost token"
    );
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.expect("task"));
    }
    out
}

async fn non_ascii_round_trips(ctx: Ctx) {
    let s = ctx.store;
    let u = User {
        sub: "sub-ö".into(),
        username: "dörte.ßü".into(),
        email: "jürgen@exämple.org".into(),
    };
    s.upsert_user(&u).await.expect("user");
    let mut t = token(&u, "dörte.ßü#042", None);
    t.token.name = "Handy 📱 — 日本".into();
    t.hash = Secret::new("{plaintext}pässwörd 🔑".into());
    s.insert_token(&t).await.expect("token");
    assert_eq!(
        s.find_user("jürgen@exämple.org").await.expect("find"),
        Some(u.clone())
    );
    let c = s
        .candidate_by_login("dörte.ßü#042", now())
        .await
        .expect("q")
        .expect("found");
    assert_eq!(c.token.name, "Handy 📱 — 日本");
    assert_eq!(c.hash.expose(), "{plaintext}pässwörd 🔑");
    assert_eq!(
        s.candidates_by_user("dörte.ßü", now(), 5)
            .await
            .expect("q")
            .len(),
        1
    );
}

async fn uses_are_written_in_batches(ctx: Ctx) {
    let s = ctx.store;
    let f = user("fay");
    s.upsert_user(&f).await.expect("user");
    let kept = token(&f, "fay#001", None);
    let gone = token(&f, "fay#002", None);
    s.insert_token(&kept).await.expect("kept");
    s.insert_token(&gone).await.expect("gone");
    let at = now();
    let batch: Vec<(Uuid, NaiveDateTime)> = (0..100)
        .map(|i| (kept.token.id, at - TimeDelta::minutes(i)))
        .collect();
    s.record_uses(&batch).await.expect("batch");
    s.delete_token(&TokenRef::Id(gone.token.id))
        .await
        .expect("delete");
    // A use of a token deleted meanwhile is skipped, not an error.
    s.record_uses(&[
        (gone.token.id, at),
        (kept.token.id, at + TimeDelta::seconds(1)),
    ])
    .await
    .expect("mixed");
    let listed = s.list_tokens(Some(&f.sub)).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used, Some(at + TimeDelta::seconds(1)));
    // Deleting a used token removes its use records too.
    assert!(
        s.delete_token(&TokenRef::Id(kept.token.id))
            .await
            .expect("delete used")
    );
}

async fn migrations_are_idempotent_and_concurrent(ctx: Ctx) {
    let s = ctx.store;
    let g = user("gus");
    s.upsert_user(&g).await.expect("user");
    s.insert_token(&token(&g, "gus#001", None))
        .await
        .expect("token");
    s.migrate().await.expect("second run");
    let url = devicepass::store::DatabaseUrl::parse(&ctx.url).expect("url");
    let other = devicepass::store::open(&url, &Default::default()).expect("second replica");
    let (a, b) = tokio::join!(s.migrate(), other.migrate());
    a.expect("replica one");
    b.expect("replica two");
    assert!(
        s.candidate_by_login("gus#001", now())
            .await
            .expect("q")
            .is_some(),
        "data kept"
    );
}

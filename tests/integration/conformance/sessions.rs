//! Server-side browser sessions and identity-provider logouts, the same
//! on every engine: rows round-trip, expire at their time, are handed out
//! once, and a logout by `sid` is recorded in `revoked` exactly once.

use std::sync::Arc;

use chrono::{NaiveDateTime, TimeDelta};
use devicepass::store::{SessionRecord, Store};
use uuid::Uuid;

use super::{Ctx, futures_join, now};
use crate::engines;

/// A session id as the web layer makes it: 64 hex digits.
fn new_id() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

fn session(sub: Option<&str>, sid: Option<&str>, expires: NaiveDateTime) -> SessionRecord {
    SessionRecord {
        id: new_id(),
        sub: sub.map(Into::into),
        sid: sid.map(Into::into),
        data: r#"{"csrf":"c5f3","id_token":"eyJhbGciOiJSUzI1NiJ9.e30.sig"}"#.into(),
        expires,
    }
}

async fn put_all(s: &Arc<dyn Store>, sessions: &[&SessionRecord]) {
    for session in sessions {
        s.put_session(session).await.expect("put");
    }
}

/// Which of `sessions` are still there at `at`, by position.
async fn present(s: &Arc<dyn Store>, sessions: &[&SessionRecord], at: NaiveDateTime) -> Vec<bool> {
    let mut out = Vec::new();
    for session in sessions {
        out.push(s.session(&session.id, at).await.expect("get").is_some());
    }
    out
}

async fn revoked_rows(url: &str, sid: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM revoked WHERE sid = '{sid}'");
    engines::count(url, &sql).await
}

pub(super) async fn sessions_round_trip_and_replace(ctx: Ctx) {
    let s = ctx.store;
    let at = now();
    let mut signed_in = session(Some("sub-ö"), Some("sid-日本"), at + TimeDelta::hours(8));
    // A few kilobytes of JSON, non-ASCII included.
    signed_in.data = format!(r#"{{"pad":"{}","name":"Dörte 📱"}}"#, "x".repeat(6000));
    let pending = session(None, None, at + TimeDelta::minutes(10));
    put_all(&s, &[&signed_in, &pending]).await;

    let found = s.session(&signed_in.id, at).await.expect("get");
    assert_eq!(found, Some(signed_in.clone()), "every field, µs included");
    let found = s.session(&pending.id, at).await.expect("get");
    assert_eq!(found, Some(pending.clone()), "NULL sub and sid");

    let replaced = SessionRecord {
        id: pending.id.clone(),
        sub: Some("sub-ann".into()),
        sid: Some("sid-1".into()),
        data: r#"{"step":"signed in"}"#.into(),
        expires: at + TimeDelta::hours(1) + TimeDelta::microseconds(7),
    };
    s.put_session(&replaced).await.expect("replace");
    let found = s.session(&pending.id, at).await.expect("get");
    assert_eq!(found, Some(replaced), "the same id is replaced");
    let found = s.session(&signed_in.id, at).await.expect("get");
    assert_eq!(found, Some(signed_in), "others untouched");
    assert_eq!(s.session(&new_id(), at).await.expect("get"), None);
}

pub(super) async fn sessions_expire_at_their_time(ctx: Ctx) {
    let s = ctx.store;
    let at = now();
    let ends_now = session(Some("sub-a"), None, at);
    let ends_soon = session(Some("sub-a"), None, at + TimeDelta::microseconds(1));
    let ended = session(Some("sub-a"), None, at - TimeDelta::seconds(1));
    let all = [&ends_now, &ends_soon, &ended];
    put_all(&s, &all).await;

    assert_eq!(
        present(&s, &all, at).await,
        [false, true, false],
        "expires <= now"
    );
    for gone in [&ends_now, &ended] {
        let taken = s.take_session(&gone.id, at).await.expect("take");
        assert_eq!(taken, None, "an expired session is not handed out");
    }
    let earlier = at - TimeDelta::minutes(1);
    assert_eq!(
        present(&s, &all, earlier).await,
        [true, true, true],
        "expired rows are left for the purge"
    );

    assert_eq!(s.purge_sessions(at).await.expect("purge"), 2);
    assert_eq!(present(&s, &all, earlier).await, [false, true, false]);
    assert_eq!(s.purge_sessions(at).await.expect("purge again"), 0);
    let taken = s.take_session(&ends_soon.id, at).await.expect("take");
    assert_eq!(taken, Some(ends_soon), "1 µs left is still valid");
}

pub(super) async fn take_session_hands_a_row_out_once(ctx: Ctx) {
    let s = ctx.store;
    let at = now();
    let one = session(None, None, at + TimeDelta::minutes(5));
    s.put_session(&one).await.expect("put");
    let taken = s.take_session(&one.id, at).await.expect("take");
    assert_eq!(taken, Some(one.clone()));
    assert_eq!(s.take_session(&one.id, at).await.expect("again"), None);
    assert_eq!(s.session(&one.id, at).await.expect("get"), None);

    // Many takers at once, several times: exactly one gets each row.
    for _ in 0..5 {
        let contested = session(Some("sub-b"), Some("sid-b"), at + TimeDelta::minutes(5));
        s.put_session(&contested).await.expect("put");
        let takers = (0..8).map(|_| {
            let s = Arc::clone(&s);
            let id = contested.id.clone();
            tokio::spawn(async move { s.take_session(&id, at).await })
        });
        let got: Vec<SessionRecord> = futures_join(takers)
            .await
            .into_iter()
            .filter_map(|r| r.expect("take"))
            .collect();
        assert_eq!(got, [contested], "one taker, the whole row");
    }
}

pub(super) async fn sessions_are_deleted(ctx: Ctx) {
    let s = ctx.store;
    let at = now();
    let (gone, kept) = (
        session(Some("sub-c"), None, at + TimeDelta::hours(1)),
        session(Some("sub-c"), None, at + TimeDelta::hours(1)),
    );
    put_all(&s, &[&gone, &kept]).await;
    s.delete_session(&gone.id).await.expect("delete");
    s.delete_session(&gone.id)
        .await
        .expect("deleting again is fine");
    s.delete_session(&new_id())
        .await
        .expect("deleting none is fine");
    assert_eq!(present(&s, &[&gone, &kept], at).await, [false, true]);
}

pub(super) async fn idp_logout_by_sid_revokes_once(ctx: Ctx) {
    let s = ctx.store;
    let at = now();
    let later = at + TimeDelta::hours(1);
    let first = session(Some("sub-d"), Some("sid-D"), later);
    let second = session(Some("sub-d"), Some("sid-D"), later);
    let elsewhere = session(Some("sub-d"), Some("sid-E"), later);
    let other_case = session(Some("sub-x"), Some("sid-d"), later);
    let no_sid = session(Some("sub-d"), None, later);
    let all = [&first, &second, &elsewhere, &other_case, &no_sid];
    put_all(&s, &all).await;
    assert!(!s.is_revoked("sid-D").await.expect("revoked?"));

    // The sid decides; the sub sent along does not widen the logout.
    let ended = s.end_idp_session(Some("sid-D"), Some("sub-d")).await;
    assert_eq!(ended.expect("end"), 2);
    assert_eq!(
        present(&s, &all, at).await,
        [false, false, true, true, true]
    );
    assert!(s.is_revoked("sid-D").await.expect("revoked?"));
    assert!(!s.is_revoked("sid-d").await.expect("exact match"));
    assert!(!s.is_revoked("sid-E").await.expect("revoked?"));
    assert_eq!(revoked_rows(&ctx.url, "sid-D").await, 1);

    let again = s.end_idp_session(Some("sid-D"), None).await;
    assert_eq!(again.expect("a repeat is no error"), 0);
    assert_eq!(revoked_rows(&ctx.url, "sid-D").await, 1, "written once");

    // The same logout delivered twice at once.
    let twice = (0..2).map(|_| {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.end_idp_session(Some("sid-E"), None).await })
    });
    let counts: Vec<u64> = futures_join(twice)
        .await
        .into_iter()
        .map(|r| r.expect("concurrent end"))
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 1, "{counts:?}");
    assert_eq!(revoked_rows(&ctx.url, "sid-E").await, 1);
    assert_eq!(
        present(&s, &all, at).await,
        [false, false, false, true, true]
    );
}

pub(super) async fn idp_logout_by_sub_ends_every_session_of_the_user(ctx: Ctx) {
    let s = ctx.store;
    let at = now();
    let later = at + TimeDelta::hours(1);
    let with_sid = session(Some("sub-f"), Some("sid-F"), later);
    let without = session(Some("sub-f"), None, later);
    let other_user = session(Some("sub-g"), Some("sid-G"), later);
    let pending = session(None, None, later);
    let all = [&with_sid, &without, &other_user, &pending];
    put_all(&s, &all).await;

    assert_eq!(s.end_idp_session(None, None).await.expect("neither"), 0);
    assert_eq!(present(&s, &all, at).await, [true, true, true, true]);

    assert_eq!(
        s.end_idp_session(None, Some("sub-f")).await.expect("end"),
        2
    );
    assert_eq!(present(&s, &all, at).await, [false, false, true, true]);
    assert!(
        !s.is_revoked("sid-F").await.expect("revoked?"),
        "no sid sent"
    );
    let sql = "SELECT COUNT(*) FROM revoked";
    assert_eq!(engines::count(&ctx.url, sql).await, 0);
}

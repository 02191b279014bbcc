use serde_json::{Value, json};

use super::*;
use crate::oidc::tests::support::config;

fn rules(change: impl FnOnce(&mut OidcConfig)) -> Rules {
    let mut config = config("https://id.example.org");
    change(&mut config);
    Rules::new(&config)
}

fn claims(value: Value) -> Claims {
    match value {
        Value::Object(map) => map,
        _ => panic!("claims must be an object"),
    }
}

fn ada() -> Claims {
    claims(json!({
        "sub": "user-1",
        "email": "ada@example.org",
        "email_verified": true,
        "preferred_username": "ada",
        "groups": ["staff", "admins"],
    }))
}

fn without(name: &str) -> Claims {
    let mut c = ada();
    c.remove(name);
    c
}

fn with(name: &str, value: Value) -> Claims {
    let mut c = ada();
    c.insert(name.into(), value);
    c
}

fn refusal(result: Result<Person, OidcError>) -> Refusal {
    match result {
        Err(OidcError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn missing(name: &str) -> Refusal {
    Refusal::MissingClaim(name.into())
}

#[test]
fn the_configured_claims_make_the_person() {
    let person = rules(|_| {}).sign_in(&ada()).unwrap();
    let expected = Person {
        sub: "user-1".into(),
        username: "ada".into(),
        email: "ada@example.org".into(),
        is_admin: false,
    };
    assert_eq!(person, expected);

    let renamed = rules(|c| {
        c.claim_username = "upn".into();
        c.claim_email = "mail".into();
    });
    let person = renamed
        .sign_in(&claims(
            json!({"sub": "u", "upn": "ada@corp", "mail": "a@corp",
            "email_verified": true}),
        ))
        .unwrap();
    assert_eq!(
        (person.username.as_str(), person.email.as_str()),
        ("ada@corp", "a@corp")
    );
}

#[test]
fn a_token_without_a_subject_is_invalid() {
    let result = rules(|_| {}).sign_in(&without("sub"));
    assert!(matches!(result, Err(OidcError::Invalid(r)) if r == "id token has no sub"));
}

#[test]
fn email_and_username_must_be_non_empty_strings() {
    let r = rules(|_| {});
    assert_eq!(refusal(r.sign_in(&without("email"))), missing("email"));
    assert_eq!(
        refusal(r.sign_in(&with("email", json!("")))),
        missing("email")
    );
    assert_eq!(
        refusal(r.sign_in(&with("email", json!(["a@b"])))),
        missing("email")
    );
    let no_username = without("preferred_username");
    assert_eq!(
        refusal(r.sign_in(&no_username)),
        missing("preferred_username")
    );

    let renamed = rules(|c| c.claim_username = "upn".into());
    assert_eq!(refusal(renamed.sign_in(&ada())), missing("upn"));
}

#[test]
fn the_email_must_be_verified_when_a_claim_is_configured() {
    let r = rules(|_| {});
    assert!(r.sign_in(&with("email_verified", json!("true"))).is_ok());
    for unverified in [json!(false), json!("false"), json!(1), Value::Null] {
        let result = r.sign_in(&with("email_verified", unverified));
        assert_eq!(refusal(result), Refusal::EmailNotVerified);
    }
    let result = r.sign_in(&without("email_verified"));
    assert_eq!(refusal(result), Refusal::EmailNotVerified);

    let trusting = rules(|c| c.claim_email_verified = None);
    assert!(
        trusting
            .sign_in(&with("email_verified", json!(false)))
            .is_ok()
    );
}

#[test]
fn a_required_claim_must_be_present_and_match_its_value() {
    let present = rules(|c| c.required_claim = Some("hd".into()));
    assert!(present.sign_in(&with("hd", json!("example.org"))).is_ok());
    assert!(present.sign_in(&with("hd", json!(false))).is_ok());
    assert_eq!(refusal(present.sign_in(&ada())), Refusal::RequiredClaim);
    let null = with("hd", Value::Null);
    assert_eq!(refusal(present.sign_in(&null)), Refusal::RequiredClaim);

    let valued = rules(|c| {
        c.required_claim = Some("hd".into());
        c.required_claim_value = Some("example.org".into());
    });
    assert!(valued.sign_in(&with("hd", json!("example.org"))).is_ok());
    assert!(
        valued
            .sign_in(&with("hd", json!(["x", "example.org"])))
            .is_ok()
    );
    for wrong in [json!("gmail.com"), json!(["x"]), json!({"example.org": 1})] {
        assert_eq!(
            refusal(valued.sign_in(&with("hd", wrong))),
            Refusal::RequiredClaim
        );
    }

    let flag = rules(|c| {
        c.required_claim = Some("staff".into());
        c.required_claim_value = Some("true".into());
    });
    assert!(flag.sign_in(&with("staff", json!(true))).is_ok());
    assert_eq!(
        refusal(flag.sign_in(&with("staff", json!(false)))),
        Refusal::RequiredClaim
    );
}

#[test]
fn group_membership_reads_an_array_or_a_single_string() {
    let staff = rules(|c| c.group_membership = Some("staff".into()));
    assert!(staff.sign_in(&ada()).is_ok());
    assert!(staff.sign_in(&with("groups", json!("staff"))).is_ok());
    assert!(
        staff
            .sign_in(&with("groups", json!([1, null, "staff"])))
            .is_ok()
    );
    for outside in [
        json!(["guests"]),
        json!([]),
        json!("guests"),
        json!({"staff": true}),
    ] {
        assert_eq!(
            refusal(staff.sign_in(&with("groups", outside))),
            Refusal::NotInGroup
        );
    }
    assert_eq!(
        refusal(staff.sign_in(&without("groups"))),
        Refusal::NotInGroup
    );

    let roles = rules(|c| {
        c.group_membership = Some("staff".into());
        c.group_claim = "roles".into();
    });
    assert_eq!(refusal(roles.sign_in(&ada())), Refusal::NotInGroup);
    assert!(roles.sign_in(&with("roles", json!(["staff"]))).is_ok());
}

#[test]
fn admins_are_members_of_the_admin_group() {
    let admins = rules(|c| c.admin_group = Some("admins".into()));
    assert!(admins.sign_in(&ada()).unwrap().is_admin);
    let staff_only = with("groups", json!(["staff"]));
    assert!(!admins.sign_in(&staff_only).unwrap().is_admin);
    assert!(!rules(|_| {}).sign_in(&ada()).unwrap().is_admin);
}

#[test]
fn the_rules_apply_in_order() {
    let strict = rules(|c| {
        c.required_claim = Some("hd".into());
        c.group_membership = Some("nobody".into());
    });
    let mut c = without("email");
    c.insert("email_verified".into(), json!(false));
    assert_eq!(refusal(strict.sign_in(&c)), missing("email"));
    let unverified = with("email_verified", json!(false));
    assert_eq!(
        refusal(strict.sign_in(&unverified)),
        Refusal::EmailNotVerified
    );
    assert_eq!(refusal(strict.sign_in(&ada())), Refusal::RequiredClaim);
    let with_hd = with("hd", json!("x"));
    assert_eq!(refusal(strict.sign_in(&with_hd)), Refusal::NotInGroup);
}

#[test]
fn userinfo_fills_gaps_but_the_id_token_wins() {
    let mut id_token = without("preferred_username");
    let userinfo = claims(json!({"preferred_username": "ada", "email": "other@example.org"}));
    merge(&mut id_token, userinfo);
    assert_eq!(text(&id_token, "preferred_username"), Some("ada"));
    assert_eq!(text(&id_token, "email"), Some("ada@example.org"));
}

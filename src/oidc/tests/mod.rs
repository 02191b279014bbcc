//! Tests of the relying party as a whole: tokens checked against keys
//! from `testdata/`, and sign-in against a small provider on loopback.

mod login;
pub(super) mod support;
mod tokens;

use crate::oidc::{Identity, Oidc, PendingLogin};

/// The web layer awaits these on a multi-threaded runtime: this only has
/// to compile.
#[allow(dead_code)]
fn the_futures_are_send(oidc: &Oidc, identity: &Identity, pending: &PendingLogin) {
    fn send<T: Send>(_: T) {}
    send(oidc.finish_login("", pending));
    send(oidc.refresh(identity));
    send(oidc.logout_token(""));
    send(oidc.bearer(""));
    send(oidc.clone());
}

//! devicepass: device passwords for organisations that sign in with OpenID
//! Connect, and a fast verification service for everything that cannot.
//!
//! Layout: [`config`] loads settings; [`store`] keeps users and tokens;
//! [`hash`] reads and writes stored password hashes; [`verify`] decides
//! whether a password is valid; [`http`] serves the verification contract;
//! [`service`] puts them together; [`cli`] is the command line.
#![forbid(unsafe_code)]

pub mod checkpassword;
pub mod cli;
pub mod clock;
pub mod config;
pub mod hash;
pub mod http;
pub mod oidc;
pub mod passgen;
pub mod secret;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod verify;
pub mod web;

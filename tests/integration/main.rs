#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Integration tests: the real binary and the real server, on loopback,
//! against real SQLite files and a real nginx.

mod bad_input;
mod behaviour;
mod config;
mod conformance;
mod consumers_brokers;
mod consumers_mail;
mod consumers_proxies;
mod deployment;
mod engines;
mod mysql_specific;
mod nginx;
mod outage;
mod postgres_specific;
mod selfservice;
mod support;
mod upstream;
mod web;

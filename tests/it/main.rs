//! The integration tests: one test binary (as fd and redis-rs build theirs), with one module
//! per behaviour and one shared harness, [`support`], that starts real `redis-server`
//! processes on free loopback ports.
//!
//! Run one behaviour with a filter on its module path, e.g.
//! `cargo test --all-features --test it faults::process::` or `... --test it basic::`.

mod support;

mod bad_input;
mod basic;
// The `redmutex` command: built only with the `cli` feature, which is also what sets
// `CARGO_BIN_EXE_redmutex` for this crate.
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_permits;
mod contention;
mod deadline_rule;
mod election;
mod failures;
mod faults;
mod fencing;
mod harness;
mod keep_alive;
mod leader;
mod lease_api;
mod lease_truth;
mod leftovers;
mod multi;
mod observability;
mod once;
mod props;
mod quarantine;
mod queue;
mod quorum;
mod rwlock;
mod security;
mod self_wait;
mod semaphore;
mod sentinel;
#[cfg(feature = "tls-rustls")]
mod tls;
mod tokens;
mod wakeup;

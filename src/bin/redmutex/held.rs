//! What `run` and `acquire` say about what they hold, by kind: a lock, a read-write lock taken
//! shared (`-s`) or exclusive (`-x`), like flock(1)'s modes, or a semaphore's permit (`run
//! --permits N`). Taking, supervising and releasing are written once, over the library's
//! generic [`Handle`] and [`LeaseGuard`]; only the command's environment and the log line
//! differ.

use redmutex::kind::{Acquire, Lock, Permit, Read, Write};
use redmutex::{Handle, LeaseGuard};

/// What the command's environment and the log get, for a lease of this kind.
pub trait Describe: Acquire {
    /// Extra variables for the command's environment.
    fn env(lock: &Handle<Self>, guard: &LeaseGuard<Self>) -> Vec<(&'static str, String)>;

    /// What the log says after "lease valid for ..." (", fencing token 7", ", permit 2 of 4").
    fn note(lock: &Handle<Self>, guard: &LeaseGuard<Self>) -> String;
}

/// `REDMUTEX_FENCING_TOKEN`, set with --fencing only.
fn fencing_env<K>(guard: &LeaseGuard<K>) -> Vec<(&'static str, String)> {
    guard
        .fencing_token()
        .map(|t| ("REDMUTEX_FENCING_TOKEN", t.to_string()))
        .into_iter()
        .collect()
}

fn fencing_note<K>(guard: &LeaseGuard<K>) -> String {
    guard
        .fencing_token()
        .map_or_else(String::new, |t| format!(", fencing token {t}"))
}

impl Describe for Lock {
    fn env(_: &Handle<Self>, guard: &LeaseGuard<Self>) -> Vec<(&'static str, String)> {
        fencing_env(guard)
    }

    fn note(_: &Handle<Self>, guard: &LeaseGuard<Self>) -> String {
        fencing_note(guard)
    }
}

impl Describe for Read {
    fn env(_: &Handle<Self>, _: &LeaseGuard<Self>) -> Vec<(&'static str, String)> {
        // Readers get no fencing token.
        Vec::new()
    }

    fn note(_: &Handle<Self>, _: &LeaseGuard<Self>) -> String {
        ", shared".to_owned()
    }
}

impl Describe for Write {
    fn env(_: &Handle<Self>, guard: &LeaseGuard<Self>) -> Vec<(&'static str, String)> {
        fencing_env(guard)
    }

    fn note(_: &Handle<Self>, guard: &LeaseGuard<Self>) -> String {
        format!(", exclusive{}", fencing_note(guard))
    }
}

impl Describe for Permit {
    fn env(lock: &Handle<Self>, guard: &LeaseGuard<Self>) -> Vec<(&'static str, String)> {
        vec![
            ("REDMUTEX_PERMIT", guard.slot().to_string()),
            ("REDMUTEX_PERMITS", lock.permits().to_string()),
        ]
    }

    fn note(lock: &Handle<Self>, guard: &LeaseGuard<Self>) -> String {
        format!(", permit {} of {}", guard.slot(), lock.permits())
    }
}

//! Waiting for the lock, flock-style: at once (`-n`), for a while (`-w`), or as long as it
//! takes, and interruptible by SIGINT/SIGTERM/SIGHUP.
//!
//! The library's `acquire` cannot be interrupted, so this runs its policy from the binary:
//! one [`RedLock::try_acquire`] round at a time, the same pause between rounds, and the same
//! limit on rounds in a row that fail for want of a quorum. A round is bounded by the connect
//! and I/O timeouts, so a signal is acted on within one round.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rand::RngExt;
use redmutex::{Error, RedLock, RedLockGuard};

use crate::signals::{self, Event};

/// Pause between rounds while the lock is held elsewhere: the library's default retry delay...
const RETRY_DELAY: Duration = Duration::from_millis(50);
/// ...plus a random jitter in [0, RETRY_JITTER).
const RETRY_JITTER_MS: u64 = 50;
/// Rounds in a row that may fail for want of a quorum before giving up (the library's default).
const MAX_RETRIES: u32 = 3;

/// How waiting for the lock ended.
pub enum Outcome {
    Acquired(RedLockGuard),
    /// Held elsewhere for the whole wait.
    Busy,
    /// A terminating signal arrived first.
    Interrupted(i32),
}

/// Takes `lock`, waiting at most `limit` (`None`: as long as it takes) while it is held
/// elsewhere.
///
/// # Errors
///
/// The library's error when rounds keep failing (`NoQuorum`, `TooLate`), or at once for bad
/// input (`InvalidConfig`, `InvalidArgument`).
pub fn acquire(
    lock: &RedLock,
    limit: Option<Duration>,
    events: &Receiver<Event>,
) -> Result<Outcome, Error> {
    let start = Instant::now();
    let deadline = limit.and_then(|l| start.checked_add(l));
    let mut failures = 0u32;
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        let failed = match lock.try_acquire() {
            Ok(Some(guard)) => {
                log::info!(
                    "acquired {:?} after {:.3?} ({rounds} round{}), valid for {:.3?}",
                    lock.resource(),
                    start.elapsed(),
                    if rounds == 1 { "" } else { "s" },
                    guard.validity()
                );
                // A signal that came during the last round still wins: the guard is dropped,
                // which releases the lock.
                if let Some(sig) = pending_signal(events) {
                    return Ok(Outcome::Interrupted(sig));
                }
                return Ok(Outcome::Acquired(guard));
            }
            Ok(None) => {
                if rounds == 1 {
                    log::info!("{:?} is held elsewhere; waiting", lock.resource());
                }
                failures = 0;
                None
            }
            Err(e @ (Error::NoQuorum { .. } | Error::TooLate { .. })) => {
                failures += 1;
                log::debug!("round {rounds} failed: {e}");
                if failures > MAX_RETRIES {
                    log::info!(
                        "giving up on {:?} after {:.3?}: {failures} rounds in a row failed",
                        lock.resource(),
                        start.elapsed()
                    );
                    return Err(e);
                }
                Some(e)
            }
            Err(e) => return Err(e),
        };
        let mut pause =
            RETRY_DELAY + Duration::from_millis(rand::rng().random_range(0..RETRY_JITTER_MS));
        if let Some(deadline) = deadline {
            let now = Instant::now();
            if now >= deadline {
                log::info!(
                    "gave up on {:?} after {:.3?} ({rounds} round{})",
                    lock.resource(),
                    start.elapsed(),
                    if rounds == 1 { "" } else { "s" }
                );
                return failed.map_or(Ok(Outcome::Busy), Err);
            }
            // Sleep at most to the deadline, then make one last round.
            pause = pause.min(deadline - now);
        }
        if let Some(sig) = sleep(pause, events) {
            log::info!(
                "interrupted by {} after waiting {:.3?} for {:?}",
                signals::name(sig),
                start.elapsed(),
                lock.resource()
            );
            return Ok(Outcome::Interrupted(sig));
        }
    }
}

/// Sleeps for `pause`, or until a terminating signal arrives (returned).
fn sleep(pause: Duration, events: &Receiver<Event>) -> Option<i32> {
    let end = Instant::now() + pause;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match events.recv_timeout(left) {
            Ok(Event::Signal(sig)) if signals::is_terminating(sig) => return Some(sig),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(left);
                return None;
            }
        }
    }
}

/// A terminating signal that has already arrived, if any.
fn pending_signal(events: &Receiver<Event>) -> Option<i32> {
    events.try_iter().find_map(|e| match e {
        Event::Signal(sig) if signals::is_terminating(sig) => Some(sig),
        _ => None,
    })
}

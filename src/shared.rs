//! The runtime state a factory shares with its locks, guards and background threads: the nodes,
//! the validated settings, and the wake-up and callback services. It sits below the handles
//! (factory, lock, guard) and the lease protocol, and imports neither.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::node::Nodes;
use crate::notify::Notifier;
use crate::round;
use crate::waker::Waker;

/// The longest TTL accepted (about 34 years): far beyond any sensible lease, and small enough
/// that Redis can add it to its clock.
pub(crate) const MAX_TTL: Duration = Duration::from_millis(1 << 40);

/// Settings shared by the factory and all its locks, validated when the factory is built.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) ttl: Duration,
    pub(crate) retry_delay: Duration,
    pub(crate) retry_jitter: Duration,
    pub(crate) max_retries: u32,
    pub(crate) drift_factor: f64,
    pub(crate) quorum: usize,
    pub(crate) keep_alive: bool,
    pub(crate) max_hold: Option<Duration>,
    pub(crate) fencing: bool,
}

/// What the factory, its locks, their guards and the background threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) nodes: Nodes,
    pub(crate) config: Config,
    /// Wake-up on release.
    pub(crate) waker: Waker,
    /// The thread user callbacks run on.
    pub(crate) notifier: Notifier,
}

impl Shared {
    /// The clock drift allowance for a lease of `ttl`.
    pub(crate) fn drift(&self, ttl: Duration) -> Duration {
        round::drift(ttl, self.config.drift_factor)
    }
}

/// The longest name accepted (a lock's resource, a semaphore's name, a multi-lock's member):
/// Redis allows more, but a name this long is a bug.
pub(crate) const MAX_NAME_LEN: usize = 64 * 1024;

/// Checks a name the handles put in keys: not empty, at most [`MAX_NAME_LEN`] bytes. `what`
/// names it in the error ("resource name", "semaphore name").
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )));
    }
    Ok(())
}

/// Checks a token given to a token-level call: not empty, at most `max` bytes.
pub(crate) fn check_token(token: &str, max: usize) -> Result<()> {
    if token.is_empty() {
        return Err(Error::InvalidArgument("the token must not be empty".into()));
    }
    if token.len() > max {
        return Err(Error::InvalidArgument(format!(
            "the token is {} bytes long; at most {max} are allowed",
            token.len()
        )));
    }
    Ok(())
}

/// Checks a lease duration (a TTL or an extension).
pub(crate) fn check_ttl(what: &str, ttl: Duration, drift_factor: f64) -> Result<()> {
    if ttl.as_millis() == 0 {
        return Err(Error::InvalidConfig(format!(
            "{what} must be at least 1 ms, got {ttl:?}"
        )));
    }
    if ttl > MAX_TTL {
        return Err(Error::InvalidConfig(format!(
            "{what} {ttl:?} is too long (at most {MAX_TTL:?})"
        )));
    }
    let drift = round::drift(ttl, drift_factor);
    if ttl <= drift {
        return Err(Error::InvalidConfig(format!(
            "{what} {ttl:?} leaves no validity after the clock drift allowance of {drift:?}"
        )));
    }
    Ok(())
}

/// Checks a keep-alive hold limit.
pub(crate) fn check_max_hold(limit: Option<Duration>) -> Result<()> {
    match limit {
        Some(limit) if limit.is_zero() || limit > MAX_TTL => Err(Error::InvalidConfig(format!(
            "max hold time must be between 1 ms and {MAX_TTL:?}, got {limit:?}"
        ))),
        _ => Ok(()),
    }
}

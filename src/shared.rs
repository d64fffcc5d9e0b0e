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

/// The longest resource name accepted. Redis allows more, but a lock name this long is a bug.
pub const MAX_RESOURCE_LEN: usize = 64 * 1024;

/// Checks a resource name (a lock's name, the key every key of the lock starts with).
pub(crate) fn check_resource(resource: &str) -> Result<()> {
    if resource.is_empty() {
        return Err(Error::InvalidArgument(
            "resource name must not be empty".into(),
        ));
    }
    if resource.len() > MAX_RESOURCE_LEN {
        return Err(Error::InvalidArgument(format!(
            "resource name is {} bytes long; at most {MAX_RESOURCE_LEN} are allowed",
            resource.len()
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

//! The runtime state a factory shares with its locks, guards and background threads: the nodes,
//! the validated settings, and the wake-up and callback services. It sits below the handles
//! (factory, lock, guard) and the lease protocol, and imports neither.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::node::Nodes;
use crate::notify::Notifier;
use crate::observe::{HandleEvent, MAX_PENDING, Observer};
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
    /// The bound on every TTL written to the nodes, by any client (the restart quarantine's).
    pub(crate) longest_ttl: Duration,
    /// Whether the restart quarantine is on.
    pub(crate) quarantine: bool,
}

/// What the factory, its locks, their guards and the background threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) nodes: Nodes,
    pub(crate) config: Config,
    /// Wake-up on release.
    pub(crate) waker: Waker,
    /// The thread user callbacks run on.
    pub(crate) notifier: Arc<Notifier>,
    /// Counters, the event handler, the slow-acquire threshold.
    pub(crate) observer: Arc<Observer>,
}

impl Shared {
    /// The clock drift allowance for a lease of `ttl`.
    pub(crate) fn drift(&self, ttl: Duration) -> Duration {
        round::drift(ttl, self.config.drift_factor)
    }

    /// Checks that a lease of `ttl` (`what`: "ttl", "extension") stays within the longest TTL,
    /// the bound of the restart quarantine: a quarantine shorter than a lease does not protect
    /// it. Not enforced when the quarantine is off.
    pub(crate) fn check_longest(&self, what: &str, ttl: Duration) -> Result<()> {
        let c = &self.config;
        if c.quarantine && ttl > c.longest_ttl {
            return Err(Error::InvalidConfig(format!(
                "{what} {ttl:?} is longer than the longest TTL {:?}: raise longest_ttl (on \
                 every client of these nodes) to at least the longest TTL any of them uses",
                c.longest_ttl
            )));
        }
        Ok(())
    }

    /// Hands an event to the event handler on the callback thread (see [`deliver`]).
    pub(crate) fn deliver(
        &self,
        event: &'static str,
        call: impl FnOnce(&dyn HandleEvent) + Send + 'static,
    ) {
        deliver(&self.notifier, &self.observer, event, call);
    }
}

/// Hands an event seen on a library thread (or under a library lock) to the event handler, to be
/// delivered on the callback thread after the jobs already queued there. Nothing to do without
/// a handler; an event is dropped (and counted) when the handler has fallen [`MAX_PENDING`]
/// events behind, or when the callback thread cannot be started. Never blocks and never runs
/// the handler here: it may be called while a lease's round lock is held.
pub(crate) fn deliver(
    notifier: &Notifier,
    observer: &Arc<Observer>,
    event: &'static str,
    call: impl FnOnce(&dyn HandleEvent) + Send + 'static,
) {
    let Some(handler) = observer.handler.clone() else {
        return;
    };
    if observer.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
        observer.pending.fetch_sub(1, Ordering::AcqRel);
        observer.counters.events_dropped.incr();
        return;
    }
    let queued = Arc::clone(observer);
    let job = Box::new(move || {
        queued.guarded(event, || call(handler.as_ref()));
        queued.pending.fetch_sub(1, Ordering::AcqRel);
    });
    // Never run here, where a library lock may be held: without a callback thread, drop it.
    if notifier.hand_over(job).is_err() {
        observer.pending.fetch_sub(1, Ordering::AcqRel);
        observer.counters.events_dropped.incr();
    }
}

/// The longest name accepted (a lock's resource, a semaphore's or read-write lock's name, a
/// multi-lock's member). Redis allows more, but a lock name this long is a bug.
pub const MAX_RESOURCE_LEN: usize = 64 * 1024;

/// The most permits a semaphore may have.
///
/// Each permit is a slot key on every node, and a node looks at up to `permits` slots when it
/// finds the first ones taken (an acquisition while most permits are held, or a release by
/// token): Redis runs a script alone, so that work delays every client of the node. 1,024
/// keeps the worst case under a millisecond of server time; a larger pool of holders is better
/// split into several semaphores (or served by a queue in front of them).
pub const MAX_PERMITS: u32 = 1024;

/// The most resources one multi-lock may take.
///
/// Every round on a multi-lock (acquire, extend, release) names each resource's key, and its
/// waiting marker, on every node; Redis runs the script alone, so a very large set delays every
/// client of the node. Lock larger sets by a coarser name.
pub const MAX_MULTI_RESOURCES: usize = 1024;

/// Checks a semaphore's permit count: 1 to [`MAX_PERMITS`].
pub(crate) fn check_permits(permits: u32) -> Result<()> {
    if permits == 0 || permits > MAX_PERMITS {
        return Err(Error::InvalidArgument(format!(
            "a semaphore has 1 to {MAX_PERMITS} permits, not {permits}"
        )));
    }
    Ok(())
}

/// Checks a multi-lock's resources: 1 to [`MAX_MULTI_RESOURCES`] valid names.
pub(crate) fn check_resources(resources: &[Arc<str>]) -> Result<()> {
    if resources.is_empty() {
        return Err(Error::InvalidArgument(
            "a multi-lock needs at least one resource".into(),
        ));
    }
    if resources.len() > MAX_MULTI_RESOURCES {
        return Err(Error::InvalidArgument(format!(
            "a multi-lock takes at most {MAX_MULTI_RESOURCES} resources, not {}",
            resources.len()
        )));
    }
    resources
        .iter()
        .try_for_each(|r| check_name("resource name", r))
}

/// Checks a resource name (a lock's name, the key every key of the lock starts with).
pub(crate) fn check_resource(resource: &str) -> Result<()> {
    check_name("resource name", resource)
}

/// Checks a name the handles put in keys: not empty, at most [`MAX_RESOURCE_LEN`] bytes. `what`
/// names it in the error ("resource name", "semaphore name").
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    if name.len() > MAX_RESOURCE_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes long; at most {MAX_RESOURCE_LEN} are allowed",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::LossEvent;
    use crate::observe::LossReason;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Condvar, Mutex};
    use std::time::Instant;

    /// Blocks in its first call until the gate opens; counts its calls.
    #[derive(Default)]
    struct Stuck {
        calls: AtomicUsize,
        gate: Mutex<bool>,
        opened: Condvar,
    }

    impl HandleEvent for Stuck {
        fn on_loss(&self, _: &LossEvent<'_>) {
            if self.calls.fetch_add(1, Ordering::AcqRel) == 0 {
                let gate = self.gate.lock().unwrap();
                let _ = self
                    .opened
                    .wait_timeout_while(gate, Duration::from_secs(30), |open| !*open)
                    .unwrap();
            }
        }
    }

    #[test]
    fn events_beyond_the_pending_bound_are_dropped_and_counted_while_the_handler_blocks() {
        let stuck = Arc::new(Stuck::default());
        let observer = Arc::new(Observer::new(Some(Arc::clone(&stuck) as _), None));
        let notifier = Notifier::default();
        let loss = |h: &dyn HandleEvent| {
            h.on_loss(&LossEvent {
                resource: "k",
                reason: LossReason::Expired,
            });
        };
        deliver(&notifier, &observer, "on_loss", loss);
        let end = Instant::now() + Duration::from_secs(10);
        while stuck.calls.load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < end, "the first event never ran");
            std::thread::sleep(Duration::from_millis(1));
        }
        // One event runs (blocked), MAX_PENDING - 1 more fit in the queue, the rest are dropped.
        let extra = 2 * MAX_PENDING;
        for _ in 0..extra {
            deliver(&notifier, &observer, "on_loss", loss);
        }
        let dropped = observer.counters.events_dropped.get();
        assert_eq!(dropped, u64::try_from(extra + 1 - MAX_PENDING).unwrap());
        *stuck.gate.lock().unwrap() = true;
        stuck.opened.notify_all();
        while observer.pending.load(Ordering::Acquire) > 0 {
            assert!(Instant::now() < end, "the queue never drained");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(stuck.calls.load(Ordering::Acquire), MAX_PENDING);
    }
}

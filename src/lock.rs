//! `RedLock`: a named lock, and the acquisition loop around one round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;

use crate::command::Arg;
use crate::error::{Error, Result};
use crate::factory::{MAX_TTL, Shared, check_ttl};
use crate::guard::{RedLockGuard, release_round};
use crate::lease::{Lease, LeaseOptions, Token};
use crate::round::{self, Tally, acquire_reply, command_round, int_reply, script_round, set_reply};
use crate::scripts;

/// The longest resource name accepted. Redis allows more, but a lock name this long is a bug.
pub const MAX_RESOURCE_LEN: usize = 64 * 1024;

/// A distributed lock on one resource, created by
/// [`RedLockFactory::create_lock`](crate::RedLockFactory::create_lock).
///
/// A `RedLock` holds no state about who holds the lock: every acquisition returns a
/// [`RedLockGuard`] that carries its own token and deadline. So one `RedLock` can be shared by
/// many threads (it is `Send + Sync` and cheap to clone), and each thread that acquires it gets
/// its own guard, as with `std::sync::Mutex`.
///
/// # Differences from `std::sync::Mutex`
///
/// - **A lease, not ownership.** The lock expires after its TTL even if the guard is still
///   alive (a crashed holder cannot block others forever). Check [`RedLockGuard::validity`]
///   before acting, and [`extend`](RedLockGuard::extend) long critical sections.
/// - **Release can fail.** [`RedLockGuard::release`] reports a lock that expired or was lost;
///   dropping the guard releases too, but can only log a failure.
/// - **No poisoning.** A panic while holding the guard releases the lock on unwind.
/// - **Not reentrant.** Acquiring a lock you hold waits (or times out) like any other caller.
/// - **No data inside.** The lock guards whatever you decide; it does not own a value.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
/// let lock = factory.create_lock("reports:daily");
/// match lock.try_acquire()? {
///     Some(guard) => {
///         // ... do the work, then release and learn whether it stayed ours throughout
///         guard.release()?;
///     }
///     None => println!("someone else is on it"),
/// }
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Clone)]
pub struct RedLock {
    shared: Arc<Shared>,
    resource: Arc<str>,
    ttl: Duration,
    keep_alive: bool,
    max_hold: Option<Duration>,
    fencing: bool,
}

impl std::fmt::Debug for RedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedLock")
            .field("resource", &self.resource)
            .field("ttl", &self.ttl)
            .field("keep_alive", &self.keep_alive)
            .field("fencing", &self.fencing)
            .finish_non_exhaustive()
    }
}

/// The outcome of one acquisition round.
enum Attempt {
    Acquired(RedLockGuard),
    /// Held elsewhere: a quorum answered, but not enough said yes.
    Busy,
    /// Too few nodes answered, or the round was too slow.
    Failed(Error),
}

impl RedLock {
    pub(crate) fn new(shared: Arc<Shared>, resource: Arc<str>) -> Self {
        let c = &shared.config;
        let (ttl, keep_alive, max_hold, fencing) = (c.ttl, c.keep_alive, c.max_hold, c.fencing);
        Self {
            shared,
            resource,
            ttl,
            keep_alive,
            max_hold,
            fencing,
        }
    }

    /// This lock with keep-alive on or off, instead of the factory's choice (see
    /// [`RedLockFactoryBuilder::keep_alive`](crate::RedLockFactoryBuilder::keep_alive)).
    #[must_use]
    pub fn with_keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// This lock with its own keep-alive hold limit (see
    /// [`RedLockFactoryBuilder::max_hold`](crate::RedLockFactoryBuilder::max_hold)).
    #[must_use]
    pub fn with_max_hold(mut self, limit: Duration) -> Self {
        self.max_hold = Some(limit);
        self
    }

    /// This lock with fencing tokens on or off, instead of the factory's choice (see
    /// [`RedLockGuard::fencing_token`]).
    #[must_use]
    pub fn with_fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// This lock with its own TTL instead of the factory's.
    ///
    /// An invalid TTL (zero, too long, or shorter than the drift allowance) is reported by the
    /// first call that uses it, as [`Error::InvalidConfig`].
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The resource name, which is also the Redis key.
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The lease time of each acquisition.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lock, waiting while it is held elsewhere.
    ///
    /// This function blocks: it runs rounds separated by `retry_delay` plus a random jitter until
    /// a quorum grants the lock. It waits as long as the lock stays held by others; rounds that
    /// fail because too few nodes answer are retried `max_retries` times in a row, then the
    /// error is returned, so a dead cluster is reported, never waited on forever.
    ///
    /// # Errors
    ///
    /// - [`Error::NoQuorum`]: too few nodes answered in `max_retries + 1` rounds in a row.
    /// - [`Error::TooLate`]: the same, because rounds were slower than the TTL allows.
    /// - [`Error::InvalidArgument`], [`Error::InvalidConfig`]: bad resource name or TTL.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let _g = factory.create_lock("k").acquire()?;
    /// // held until `_g` goes out of scope
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    ///
    /// Bind the guard to a name: `let _ = lock.acquire()?;` drops the guard at the end of the
    /// statement and releases the lock at once.
    pub fn acquire(&self) -> Result<RedLockGuard> {
        self.acquire_until(None)
    }

    /// Takes the lock if a single round can: never waits.
    ///
    /// This function does not block beyond one round (bounded by the connect and I/O
    /// timeouts). `Ok(None)` means the lock is held elsewhere.
    ///
    /// # Errors
    ///
    /// [`Error::NoQuorum`] when too few nodes answered, [`Error::TooLate`] when the round took
    /// the whole validity, [`Error::InvalidArgument`] or [`Error::InvalidConfig`] for a bad
    /// name or TTL.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// if let Some(_g) = factory.create_lock("cron:cleanup").try_acquire()? {
    ///     // only one host runs the cleanup
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<Option<RedLockGuard>> {
        self.check()?;
        match self.attempt(false) {
            Attempt::Acquired(g) => Ok(Some(g)),
            Attempt::Busy => Ok(None),
            Attempt::Failed(e) => Err(e),
        }
    }

    /// Takes the lock, waiting at most about `timeout` while it is held elsewhere.
    ///
    /// This function blocks for up to `timeout` plus one round. A zero `timeout` makes one
    /// round, like [`try_acquire`](Self::try_acquire) but with an error when the lock is held.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the lock stayed held elsewhere; otherwise as
    /// [`acquire`](Self::acquire) (a failing cluster is reported even before the timeout).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// match factory.create_lock("k").acquire_timeout(Duration::from_secs(2)) {
    ///     Ok(_g) => { /* critical section */ }
    ///     Err(redmutex::Error::Timeout { .. }) => eprintln!("busy, try later"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RedLockGuard> {
        // A deadline too far to represent is no deadline.
        self.acquire_until(Some(Instant::now().checked_add(timeout)))
    }

    /// Releases `guard`, reporting whether the lock was still ours: the same as
    /// [`RedLockGuard::release`]. (The guard knows its own lock and token.)
    ///
    /// # Errors
    ///
    /// As [`RedLockGuard::release`].
    pub fn release(&self, guard: RedLockGuard) -> Result<()> {
        guard.release()
    }

    /// Whether anyone holds the lock: a quorum of nodes has the key.
    ///
    /// This function does not block beyond one round. The answer may be stale as soon as it
    /// is returned; use it for monitoring, not to decide whether to acquire.
    ///
    /// # Errors
    ///
    /// [`Error::NoQuorum`] when too few nodes answered; [`Error::InvalidArgument`] for a bad
    /// name.
    pub fn is_locked(&self) -> Result<bool> {
        check_resource(&self.resource)?;
        let args = [Arg::Str("EXISTS"), Arg::Str(&self.resource)];
        let tally = command_round(&self.shared, &args, self.shared.all, int_reply);
        let q = self.shared.config.quorum;
        if tally.answered() < q {
            return Err(self.no_quorum(tally));
        }
        Ok(tally.yes >= q)
    }

    fn check(&self) -> Result<()> {
        check_resource(&self.resource)?;
        check_ttl("ttl", self.ttl, self.shared.config.drift_factor)?;
        match self.max_hold {
            Some(limit) if limit.is_zero() || limit > MAX_TTL => Err(Error::InvalidConfig(
                format!("max hold time must be between 1 ms and {MAX_TTL:?}, got {limit:?}"),
            )),
            _ => Ok(()),
        }
    }

    fn acquire_until(&self, deadline: Option<Option<Instant>>) -> Result<RedLockGuard> {
        self.check()?;
        let deadline = deadline.flatten();
        let start = Instant::now();
        let waker = &self.shared.waker;
        let wake = waker.enabled();
        if wake {
            waker.subscribe(&self.shared, self.shared.config.connect_timeout);
            // Fairness: we just released this lock to waiters; let one of them take it first.
            let grace = waker.grace_left(&self.resource);
            if !grace.is_zero() {
                let grace =
                    deadline.map_or(grace, |d| grace.min(d.saturating_duration_since(start)));
                std::thread::sleep(grace);
            }
        }
        let mut failures = 0u32;
        // The first attempt is a bare SET NX PX, as fast as it gets; once the lock was found
        // busy, the attempts also mark the resource as waited for (see `waker`).
        let mut waiting = false;
        loop {
            // Read before the attempt, so a release during it still wakes the wait below.
            let seen = if wake { waker.seq(&self.resource) } else { 0 };
            let failed = match self.attempt(waiting) {
                Attempt::Acquired(g) => return Ok(g),
                // Busy at the first, bare attempt: try again at once, marking the resource as
                // waited for, so that the holder's release is announced (a release in between
                // simply lets this second attempt succeed).
                Attempt::Busy if !waiting && wake => {
                    waiting = true;
                    continue;
                }
                Attempt::Busy => {
                    failures = 0;
                    None
                }
                Attempt::Failed(e) => {
                    failures += 1;
                    if failures > self.shared.config.max_retries {
                        return Err(e);
                    }
                    Some(e)
                }
            };
            let mut pause = self.pause();
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    return Err(failed.unwrap_or_else(|| Error::Timeout {
                        resource: self.resource.to_string(),
                        waited: start.elapsed(),
                    }));
                }
                // Sleep at most to the deadline, then make one last round.
                pause = pause.min(deadline - now);
            }
            if wake && failed.is_none() {
                // Woken by a release: the lock is most likely free, so the next attempt is a
                // bare SET again (a busy one is followed at once by a marking attempt).
                if waker.wait(&self.resource, seen, pause) {
                    waiting = false;
                }
            } else {
                std::thread::sleep(pause);
            }
        }
    }

    /// The pause between rounds: `retry_delay + uniform[0, retry_jitter)`.
    fn pause(&self) -> Duration {
        let c = &self.shared.config;
        let jitter = u64::try_from(c.retry_jitter.as_nanos()).unwrap_or(u64::MAX);
        let extra = if jitter == 0 {
            0
        } else {
            rand::rng().random_range(0..jitter)
        };
        c.retry_delay.saturating_add(Duration::from_nanos(extra))
    }

    /// How long a waiter's mark stays: well past the longest pause between its rounds.
    fn waiting_mark(&self) -> Duration {
        let c = &self.shared.config;
        c.retry_delay
            .saturating_add(c.retry_jitter)
            .saturating_mul(2)
            .saturating_add(Duration::from_millis(100))
    }

    /// One acquisition round (plus the fencing round when fencing is on). `waiting`: the caller
    /// will wait if the lock is busy, so mark the resource as waited for.
    fn attempt(&self, waiting: bool) -> Attempt {
        let shared = &self.shared;
        let token = Token::new();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mark = waiting && shared.waker.enabled();
        let start = Instant::now();
        let tally = if self.fencing || mark {
            // The acquire script: SET NX PX, plus the fencing counter and the waiting mark.
            let mark_ms = if mark {
                u64::try_from(self.waiting_mark().as_millis()).unwrap_or(u64::MAX)
            } else {
                0
            };
            let keys = [
                Arg::Str(&self.resource),
                Arg::Prefixed(scripts::FENCE_PREFIX, &self.resource),
                Arg::Prefixed(scripts::WAITING_PREFIX, &self.resource),
            ];
            let args = [
                Arg::Str(token.as_str()),
                Arg::Int(ttl_ms),
                Arg::Int(mark_ms),
            ];
            script_round(
                shared,
                &scripts::ACQUIRE,
                &keys,
                &args,
                shared.all,
                acquire_reply,
            )
        } else {
            let args = [
                Arg::Str("SET"),
                Arg::Str(&self.resource),
                Arg::Str(token.as_str()),
                Arg::Str("NX"),
                Arg::Str("PX"),
                Arg::Int(ttl_ms),
            ];
            command_round(shared, &args, shared.all, set_reply)
        };
        let elapsed = start.elapsed();
        let q = shared.config.quorum;
        let drift = round::drift(self.ttl, shared.config.drift_factor);
        log::debug!(
            "redmutex: acquire {:?}: {}/{} yes, {} no, {} failed, quorum {q}, {elapsed:?}",
            self.resource,
            tally.yes,
            shared.nodes.len(),
            tally.no,
            tally.failures.len()
        );
        let mut failure = None;
        if tally.yes >= q
            && let Some(validity) = round::validity(self.ttl, elapsed, drift)
        {
            // Every SET was sent after `start`, so no key expires before `start + ttl` by the
            // nodes' clocks (give or take the drift): the lease runs to `start + ttl - drift`,
            // which is `start + elapsed + validity`.
            let now = start + elapsed;
            let deadline = now.checked_add(validity).unwrap_or(now);
            let fencing = if self.fencing {
                match self.fence(tally.aux, deadline) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        failure = Some(e);
                        None
                    }
                }
            } else {
                None
            };
            if failure.is_none() {
                let options = LeaseOptions {
                    ttl: self.ttl,
                    keep_alive: self.keep_alive,
                    hold_until: self.max_hold.and_then(|d| start.checked_add(d)),
                };
                let lease = Lease::new(
                    Arc::clone(shared),
                    Arc::clone(&self.resource),
                    token,
                    fencing,
                    options,
                    deadline,
                );
                return Attempt::Acquired(RedLockGuard::new(lease));
            }
        }
        // Not acquired: take back every SET that may have landed, in one round, so a split vote
        // frees the lock at once instead of blocking everyone for a TTL. Nodes that answered
        // "no" certainly did not set our token and are skipped.
        let mask = tally.written & !tally.refused;
        if mask != 0 {
            let released = release_round(shared, &self.resource, &token, mask, false);
            log::debug!(
                "redmutex: released partial {:?} on {} nodes",
                self.resource,
                released.yes
            );
        }
        if let Some(e) = failure {
            Attempt::Failed(e)
        } else if tally.yes >= q {
            log::warn!(
                "redmutex: {:?}: a quorum answered but the round took {elapsed:?} of a {:?} TTL",
                self.resource,
                self.ttl
            );
            Attempt::Failed(Error::TooLate {
                resource: self.resource.to_string(),
                elapsed,
            })
        } else if tally.answered() >= q {
            Attempt::Busy
        } else {
            Attempt::Failed(self.no_quorum(tally))
        }
    }

    /// The fencing round of a quorum max-register: `seen` is the largest counter the grant's
    /// quorum held; writes `seen + 1` back (never lowering a counter) and issues it only once a
    /// quorum acknowledged the write before `deadline`, the end of the lease. Any later grant's
    /// quorum shares a node with this write's quorum, so it reads at least `seen + 1`.
    fn fence(&self, seen: i64, deadline: Instant) -> Result<u64> {
        let shared = &self.shared;
        let started = Instant::now();
        // Lua numbers are doubles: integers are exact up to 2^53.
        let token = u64::try_from(seen)
            .ok()
            .and_then(|s| s.checked_add(1))
            .filter(|t| *t < (1 << 53))
            .ok_or_else(|| Error::InvalidConfig(format!("fencing counter {seen} out of range")))?;
        let keys = [Arg::Prefixed(scripts::FENCE_PREFIX, &self.resource)];
        let tally = script_round(
            shared,
            &scripts::FENCE,
            &keys,
            &[Arg::Int(token)],
            shared.all,
            int_reply,
        );
        if tally.yes < shared.config.quorum {
            return Err(self.no_quorum(tally));
        }
        if Instant::now() >= deadline {
            return Err(Error::TooLate {
                resource: self.resource.to_string(),
                elapsed: started.elapsed(),
            });
        }
        Ok(token)
    }

    fn no_quorum(&self, tally: Tally) -> Error {
        Error::NoQuorum {
            resource: self.resource.to_string(),
            answered: tally.answered(),
            needed: self.shared.config.quorum,
            nodes: self.shared.nodes.len(),
            failures: tally.failures,
        }
    }
}

fn check_resource(resource: &str) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedLockFactory;

    fn factory() -> RedLockFactory {
        RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap()
    }

    #[test]
    fn bad_names_and_ttls_are_errors_before_any_io() {
        let f = factory();
        assert!(matches!(
            f.create_lock("").try_acquire(),
            Err(Error::InvalidArgument(_))
        ));
        let huge = "x".repeat(MAX_RESOURCE_LEN + 1);
        assert!(matches!(
            f.create_lock(huge.as_str()).acquire(),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_lock("k").with_ttl(Duration::ZERO).acquire(),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            f.create_lock("").is_locked(),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn pause_stays_within_delay_and_jitter() {
        let f = RedLockFactory::builder()
            .node("redis://127.0.0.1:1")
            .retry_delay(Duration::from_millis(10))
            .retry_jitter(Duration::from_millis(5))
            .build()
            .unwrap();
        let lock = f.create_lock("k");
        let pauses: Vec<Duration> = (0..200).map(|_| lock.pause()).collect();
        assert!(pauses.iter().all(|p| *p >= Duration::from_millis(10)));
        assert!(pauses.iter().all(|p| *p < Duration::from_millis(15)));
        // Jitter really varies.
        assert!(pauses.iter().any(|p| *p != pauses[0]));
    }

    #[test]
    fn lock_is_send_sync_clone_static() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<RedLock>();
    }
}

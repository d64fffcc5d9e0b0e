//! `RedLock`: a named lock. A thin handle: every operation is a call of the lease protocol.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guard::RedLockGuard;
use crate::keeper::Runtime;
use crate::protocol::acquire::{self, MutexRequest, Wait};
use crate::protocol::inspect::{self, Holding, Inspection, LockState};
use crate::protocol::lease::{self, Lease, MAX_TOKEN_LEN, Target};
use crate::shared::{check_max_hold, check_resource, check_token, check_ttl};

pub use crate::shared::MAX_RESOURCE_LEN;

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
    runtime: Arc<Runtime>,
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

impl RedLock {
    pub(crate) fn new(runtime: Arc<Runtime>, resource: Arc<str>) -> Self {
        let c = &runtime.shared.config;
        let (ttl, keep_alive, max_hold, fencing) = (c.ttl, c.keep_alive, c.max_hold, c.fencing);
        Self {
            runtime,
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
        self.acquire_with(Wait::forever())
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
        let lease = acquire::try_acquire(&self.runtime.shared, &self.request())?;
        Ok(lease.map(|lease| self.guard(lease)))
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
        self.acquire_with(Wait::timeout(timeout))
    }

    /// Takes the lock, waiting as `wait` says: as long as it takes ([`Wait::forever`]), up to a
    /// timeout or a deadline ([`Wait::timeout`], [`Wait::until`]), and until a cancel flag is
    /// set ([`Wait::cancel_on`]). [`acquire`](Self::acquire) and
    /// [`acquire_timeout`](Self::acquire_timeout) are this with `Wait::forever()` and
    /// `Wait::timeout(d)`.
    ///
    /// This function blocks until the lock is taken, the wait runs out (plus one round), or the
    /// flag is seen set (within about 20 ms, or one round if a round is under way). Waiters are
    /// woken by the holder's release and get the lock fairly, as with `acquire`.
    ///
    /// # Errors
    ///
    /// - [`Error::Cancelled`]: the flag was set; no lock is held (a lock taken by the last
    ///   round is released).
    /// - [`Error::Timeout`]: the lock stayed held elsewhere until the deadline.
    /// - Otherwise as [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use redmutex::{Error, Wait};
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let stop = Arc::new(AtomicBool::new(false));
    /// // e.g. a signal handler or a shutdown path sets it: stop.store(true, Ordering::Release)
    /// match factory.create_lock("k").acquire_with(Wait::forever().cancel_on(&stop)) {
    ///     Ok(_g) => { /* critical section */ }
    ///     Err(Error::Cancelled { .. }) => { /* shutting down */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn acquire_with(&self, wait: Wait<'_>) -> Result<RedLockGuard> {
        self.check()?;
        let lease = acquire::acquire(&self.runtime.shared, &self.request(), &wait)?;
        Ok(self.guard(lease))
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
        let inspection = self.inspect()?;
        match inspection.state {
            LockState::Free { .. } => Ok(false),
            LockState::Unknown { answered } => Err(Error::NoQuorum {
                resource: self.resource.to_string(),
                answered,
                agreed: answered,
                needed: inspection.quorum,
                nodes: inspection.nodes.len(),
                failures: inspection
                    .nodes
                    .into_iter()
                    .filter_map(|n| match n.holding {
                        Holding::Failed(e) => Some(e),
                        _ => None,
                    })
                    .collect(),
            }),
            _ => Ok(true),
        }
    }

    /// What every node holds for this resource (the holder's [`Fingerprint`], never its
    /// token, and the key's remaining TTL), the fencing counter, and the quorum's verdict:
    /// for monitoring and scripts (`redmutex status`).
    ///
    /// This function does not block beyond one round, and changes nothing. The answer may be
    /// stale as soon as it is returned.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name. Nodes that fail are reported in the
    /// inspection ([`Holding::Failed`]), not as an error.
    ///
    /// [`Fingerprint`]: crate::Fingerprint
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use redmutex::LockState;
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// match factory.create_lock("k").inspect()?.state {
    ///     LockState::Held { holder, ttl, .. } => println!("held by {holder} for {ttl:?}"),
    ///     LockState::Free { .. } => println!("free"),
    ///     other => println!("{other:?}"),
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn inspect(&self) -> Result<Inspection> {
        check_resource(&self.resource)?;
        Ok(inspect::inspect(&self.runtime.shared, &self.resource))
    }

    /// Releases the lock held with `token` (from [`RedLockGuard::leak`], or `redmutex acquire`),
    /// from any process: the same compare-and-delete, quorum rule and wake-up of waiters as
    /// [`RedLockGuard::release`].
    ///
    /// The token is a capability: whoever has it can end the lock, even while its holder is
    /// still working. Only pass it to the code that must end the lease.
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// - [`Error::NotHeld`]: a quorum does not hold the lock with this token (it expired, was
    ///   released, was taken over, or the token is wrong); nothing was changed.
    /// - [`Error::NoQuorum`]: too few nodes answered to tell.
    /// - [`Error::InvalidArgument`]: an empty or oversized name or token.
    pub fn release_token(&self, token: &str) -> Result<()> {
        check_resource(&self.resource)?;
        check_token(token, MAX_TOKEN_LEN)?;
        lease::release(&self.runtime.shared, &Target::Mutex, &self.resource, token)
    }

    /// Makes the nodes hold the lock of `token` at least `ttl` from now (it never shortens
    /// it), from any process; returns the validity this proves (`ttl - round time - drift`).
    /// The same script and quorum rule as [`RedLockGuard::extend`].
    ///
    /// The token is a capability: whoever has it can keep the lock held. Only pass it to the
    /// code that owns the lease.
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// - [`Error::NotHeld`]: a quorum does not hold the lock with this token; nothing changed.
    /// - [`Error::NoQuorum`]: too few nodes answered to tell.
    /// - [`Error::TooLate`]: the round took the whole validity.
    /// - [`Error::InvalidArgument`], [`Error::InvalidConfig`]: a bad name, token or TTL.
    pub fn extend_token(&self, token: &str, ttl: Duration) -> Result<Duration> {
        check_resource(&self.resource)?;
        check_token(token, MAX_TOKEN_LEN)?;
        lease::extend_token(
            &self.runtime.shared,
            &Target::Mutex,
            &self.resource,
            token,
            ttl,
        )
    }

    fn check(&self) -> Result<()> {
        check_resource(&self.resource)?;
        check_ttl("ttl", self.ttl, self.runtime.shared.config.drift_factor)?;
        check_max_hold(self.max_hold)
    }

    fn request(&self) -> MutexRequest<'_> {
        MutexRequest {
            resource: &self.resource,
            ttl: self.ttl,
            fencing: self.fencing,
            keep_alive: self.keep_alive,
            max_hold: self.max_hold,
        }
    }

    fn guard(&self, lease: Lease) -> RedLockGuard {
        RedLockGuard::new(Arc::clone(&self.runtime), lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedLockFactory;

    fn factory() -> RedLockFactory {
        RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap()
    }

    #[test]
    fn bad_names_tokens_and_ttls_are_errors_before_any_io() {
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
        assert!(matches!(
            f.create_lock("k").release_token(""),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_lock("k")
                .extend_token(&"t".repeat(MAX_TOKEN_LEN + 1), Duration::from_secs(1)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_lock("k").extend_token("t", Duration::ZERO),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn lock_is_send_sync_clone_static() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<RedLock>();
    }
}

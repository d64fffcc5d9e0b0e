//! `MultiLock`: several resources locked together, all or nothing, in one round; and
//! `MultiLockGuard`, its guard. Thin handles: every operation is a call of the lease protocol.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guard::{Held, LossSignal};
use crate::keeper::Runtime;
use crate::protocol::acquire::Wait;
use crate::protocol::lease::{self, Lease, LossReason, MAX_TOKEN_LEN, Target};
use crate::protocol::multi::{self as protocol, MultiRequest};
use crate::shared::{check_max_hold, check_name, check_token, check_ttl};

/// The most resources one multi-lock may take.
///
/// Every round on a multi-lock (acquire, extend, release) names each resource's key, and its
/// waiting marker, on every node; Redis runs the script alone, so a very large set delays every
/// client of the node. Lock larger sets by a coarser name.
pub const MAX_MULTI_RESOURCES: usize = 1024;

/// A lock on several resources at once, all or nothing, created by
/// [`RedLockFactory::create_multi_lock`](crate::RedLockFactory::create_multi_lock).
///
/// One round takes every resource: on each node one script sets every resource's lock key to
/// the token (`SET key token PX ttl`, the keys and values of [`RedLock`](crate::RedLock)) only
/// if none of them is taken, so each node grants the whole set or nothing, and the lock is held
/// when a quorum granted it. It therefore excludes every holder of any of its resources: a
/// [`RedLock`](crate::RedLock) of that name (from this or another Redlock client), another
/// multi-lock sharing a resource, a [`Semaphore`](crate::Semaphore) of that name. It costs one
/// round, not one per resource, and it cannot deadlock: nothing is held while waiting.
///
/// The resources are kept sorted and without duplicates (the canonical order every node sees).
/// Its guard is a lease like a lock's ([`MultiLockGuard`]): a node counts as holding it only if
/// it holds *every* key with the token.
///
/// Waiting for a multi-lock is woken by the release of any of its resources, by a lock or by
/// another multi-lock.
///
/// # Examples
///
/// ```no_run
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
/// // Move money between two accounts: both locked, or neither.
/// let both = factory.create_multi_lock(["account:17", "account:42"]);
/// let guard = both.acquire()?;
/// // ... no holder of "account:17" or "account:42" runs now ...
/// guard.release()?;
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Clone)]
pub struct MultiLock {
    runtime: Arc<Runtime>,
    /// Sorted, without duplicates.
    resources: Arc<[Arc<str>]>,
    /// `[a, b, c]`: for errors, logs and the wake-up room.
    name: Arc<str>,
    ttl: Duration,
    fencing: bool,
    keep_alive: bool,
    max_hold: Option<Duration>,
}

impl fmt::Debug for MultiLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiLock")
            .field("resources", &self.resources)
            .field("ttl", &self.ttl)
            .field("keep_alive", &self.keep_alive)
            .field("fencing", &self.fencing)
            .finish_non_exhaustive()
    }
}

impl MultiLock {
    pub(crate) fn new(runtime: Arc<Runtime>, mut resources: Vec<Arc<str>>) -> Self {
        resources.sort();
        resources.dedup();
        let name = format!(
            "[{}]",
            resources
                .iter()
                .map(|r| &**r)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let c = &runtime.shared.config;
        let (ttl, keep_alive, max_hold, fencing) = (c.ttl, c.keep_alive, c.max_hold, c.fencing);
        Self {
            runtime,
            resources: resources.into(),
            name: name.into(),
            ttl,
            fencing,
            keep_alive,
            max_hold,
        }
    }

    /// This multi-lock with fencing tokens on or off, instead of the factory's choice (see
    /// [`MultiLockGuard::fencing_token`]).
    #[must_use]
    pub fn with_fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// This multi-lock with keep-alive on or off, instead of the factory's choice (see
    /// [`RedLockFactoryBuilder::keep_alive`](crate::RedLockFactoryBuilder::keep_alive)).
    #[must_use]
    pub fn with_keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// This multi-lock with its own keep-alive hold limit (see
    /// [`RedLockFactoryBuilder::max_hold`](crate::RedLockFactoryBuilder::max_hold)).
    #[must_use]
    pub fn with_max_hold(mut self, limit: Duration) -> Self {
        self.max_hold = Some(limit);
        self
    }

    /// This multi-lock with its own TTL instead of the factory's.
    ///
    /// An invalid TTL is reported by the first call that uses it, as [`Error::InvalidConfig`].
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The resources, sorted, without duplicates: each is a Redis key.
    #[must_use]
    pub fn resources(&self) -> &[Arc<str>] {
        &self.resources
    }

    /// The lease time of each acquisition.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes every resource, waiting while any is held elsewhere.
    ///
    /// This function blocks as [`RedLock::acquire`](crate::RedLock::acquire) does; it is woken
    /// by the release of any of the resources.
    ///
    /// # Errors
    ///
    /// - [`Error::NoQuorum`], [`Error::TooLate`]: as for a lock.
    /// - [`Error::InvalidArgument`]: no resources, more than [`MAX_MULTI_RESOURCES`], or a bad
    ///   name; [`Error::InvalidConfig`]: a bad TTL.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let _g = factory.create_multi_lock(["inventory:7", "orders:7"]).acquire()?;
    /// // both held until `_g` goes out of scope
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<MultiLockGuard> {
        self.acquire_with(Wait::forever())
    }

    /// Takes every resource if a single round can: never waits. `Ok(None)` means some resource
    /// is held elsewhere (nothing is held then).
    ///
    /// This function does not block beyond one round (and the take-back of a split round).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<Option<MultiLockGuard>> {
        self.check()?;
        let lease = protocol::try_acquire(&self.runtime.shared, &self.request())?;
        Ok(lease.map(|lease| self.guard(lease)))
    }

    /// Takes every resource, waiting at most about `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when some resource stayed held elsewhere; otherwise as
    /// [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<MultiLockGuard> {
        self.acquire_with(Wait::timeout(timeout))
    }

    /// Takes every resource, waiting as `wait` says (see
    /// [`RedLock::acquire_with`](crate::RedLock::acquire_with)).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`], [`Error::Timeout`]; otherwise as [`acquire`](Self::acquire).
    pub fn acquire_with(&self, wait: Wait<'_>) -> Result<MultiLockGuard> {
        self.check()?;
        let lease = protocol::acquire(&self.runtime.shared, &self.request(), &wait)?;
        Ok(self.guard(lease))
    }

    /// Releases the multi-lock held with `token` (from [`MultiLockGuard::leak`]), from any
    /// process: the same release and wake-up as [`MultiLockGuard::release`].
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] when a quorum does not hold every resource with this token;
    /// [`Error::NoQuorum`]; [`Error::InvalidArgument`] for bad input.
    pub fn release_token(&self, token: &str) -> Result<()> {
        self.check_names()?;
        check_token(token, MAX_TOKEN_LEN)?;
        let target = Target::Multi(Arc::clone(&self.resources));
        lease::release(&self.runtime.shared, &target, &self.name, token)
    }

    /// Makes the nodes hold every resource of `token`'s multi-lock at least `ttl` from now
    /// (never shorter), from any process; returns the validity this proves.
    ///
    /// # Errors
    ///
    /// As [`RedLock::extend_token`](crate::RedLock::extend_token).
    pub fn extend_token(&self, token: &str, ttl: Duration) -> Result<Duration> {
        self.check_names()?;
        check_token(token, MAX_TOKEN_LEN)?;
        let target = Target::Multi(Arc::clone(&self.resources));
        lease::extend_token(&self.runtime.shared, &target, &self.name, token, ttl)
    }

    fn check_names(&self) -> Result<()> {
        if self.resources.is_empty() {
            return Err(Error::InvalidArgument(
                "a multi-lock needs at least one resource".into(),
            ));
        }
        if self.resources.len() > MAX_MULTI_RESOURCES {
            return Err(Error::InvalidArgument(format!(
                "a multi-lock takes at most {MAX_MULTI_RESOURCES} resources, not {}",
                self.resources.len()
            )));
        }
        self.resources
            .iter()
            .try_for_each(|r| check_name("resource name", r))
    }

    fn check(&self) -> Result<()> {
        self.check_names()?;
        check_ttl("ttl", self.ttl, self.runtime.shared.config.drift_factor)?;
        check_max_hold(self.max_hold)
    }

    fn request(&self) -> MultiRequest<'_> {
        MultiRequest {
            name: &self.name,
            resources: &self.resources,
            ttl: self.ttl,
            fencing: self.fencing,
            keep_alive: self.keep_alive,
            max_hold: self.max_hold,
        }
    }

    fn guard(&self, lease: Lease) -> MultiLockGuard {
        MultiLockGuard {
            held: Held::new(Arc::clone(&self.runtime), lease),
            resources: Arc::clone(&self.resources),
        }
    }
}

/// Proof of holding every resource of a [`MultiLock`]; releases them all when dropped.
///
/// Created by [`MultiLock::acquire`], [`MultiLock::try_acquire`],
/// [`MultiLock::acquire_timeout`] and [`MultiLock::acquire_with`]. The same lease as a lock's
/// guard: it expires after its [`validity`](Self::validity) unless extended or kept alive, it
/// tells when it is lost, and dropping it releases it, best effort. `Send + Sync + 'static`,
/// not `Clone`.
///
/// ```compile_fail
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"]).unwrap();
/// let g = factory.create_multi_lock(["a", "b"]).acquire().unwrap();
/// let g2 = g.clone(); // error: MultiLockGuard is not Clone
/// ```
#[must_use = "if unused the resources are released immediately"]
#[clippy::has_significant_drop]
pub struct MultiLockGuard {
    held: Held,
    resources: Arc<[Arc<str>]>,
}

impl MultiLockGuard {
    /// The resources held, sorted.
    #[must_use]
    pub fn resources(&self) -> &[Arc<str>] {
        &self.resources
    }

    /// The random token stored in every resource's key on the nodes (a secret capability, as
    /// for a lock).
    #[must_use]
    pub fn token(&self) -> &str {
        self.held.token()
    }

    /// The fencing token of this acquisition: strictly greater than every token issued before
    /// for *any* of its resources, by a lock ([`RedLockGuard::fencing_token`]) or a multi-lock
    /// (as long as the nodes keep their data); the counter of each resource is raised to it, so
    /// later grants of any of them get a greater one. `None` unless fencing is on
    /// ([`RedLockFactoryBuilder::fencing`], [`MultiLock::with_fencing`]).
    ///
    /// [`RedLockGuard::fencing_token`]: crate::RedLockGuard::fencing_token
    /// [`RedLockFactoryBuilder::fencing`]: crate::RedLockFactoryBuilder::fencing
    #[must_use]
    pub fn fencing_token(&self) -> Option<u64> {
        self.held.lease.fencing
    }

    /// How much of the lease is left. Zero once expired or lost.
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.held.validity()
    }

    /// Whether the lease still has validity left. This function does not block.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        !self.validity().is_zero()
    }

    /// Whether the lock is known to be lost or has run out: `!is_valid()`.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        !self.is_valid()
    }

    /// A handle that tells when this lock is lost (see
    /// [`RedLockGuard::loss_signal`](crate::RedLockGuard::loss_signal)).
    #[must_use]
    pub fn loss_signal(&self) -> LossSignal {
        self.held.loss_signal()
    }

    /// Calls `callback` once if the lock is lost, on the factory's callback thread (see
    /// [`RedLockGuard::on_loss`](crate::RedLockGuard::on_loss)).
    pub fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
        self.held.on_loss(callback);
    }

    /// Extends the lease: the nodes hold every resource at least `ttl` from now (never
    /// shorter). A node counts only if it still holds every resource with our token.
    ///
    /// # Errors
    ///
    /// As [`RedLockGuard::extend`](crate::RedLockGuard::extend).
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        self.held.extend(ttl)
    }

    /// Releases every resource and reports whether the lock was still ours: `Ok` means a quorum
    /// held every resource with our token until this release.
    ///
    /// # Errors
    ///
    /// As [`RedLockGuard::release`](crate::RedLockGuard::release).
    pub fn release(self) -> Result<()> {
        self.held.release()
    }

    /// Gives the lock up without releasing it, and returns its token (see
    /// [`RedLockGuard::leak`](crate::RedLockGuard::leak)); [`MultiLock::release_token`] ends it.
    #[must_use = "the token is the only way to release the lock before its TTL"]
    pub fn leak(self) -> String {
        self.held.leak()
    }
}

impl fmt::Debug for MultiLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiLockGuard")
            .field("resources", &self.resources)
            .field("validity", &self.validity())
            .field("fencing_token", &self.fencing_token())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedLockFactory;

    #[test]
    fn resources_are_sorted_and_deduplicated() {
        let f = RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap();
        let m = f.create_multi_lock(["b", "a", "c", "a"]);
        let names: Vec<&str> = m.resources().iter().map(|r| &**r).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(&*m.name, "[a, b, c]");
    }

    #[test]
    fn bad_input_is_an_error_before_any_io() {
        let f = RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap();
        let none: [&str; 0] = [];
        assert!(matches!(
            f.create_multi_lock(none).try_acquire(),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_multi_lock(["a", ""]).acquire(),
            Err(Error::InvalidArgument(_))
        ));
        let many: Vec<String> = (0..=MAX_MULTI_RESOURCES).map(|i| i.to_string()).collect();
        assert!(matches!(
            f.create_multi_lock(many).try_acquire(),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_multi_lock(["a"])
                .with_ttl(Duration::ZERO)
                .acquire(),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            f.create_multi_lock(["a"]).release_token(""),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn handles_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<MultiLock>();
        check::<MultiLockGuard>();
    }
}

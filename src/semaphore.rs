//! `Semaphore`: at most `permits` holders of one name at once, across processes and hosts; and
//! `SemaphorePermit`, its guard. Thin handles: every operation is a call of the lease protocol.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guard::{Held, LossSignal};
use crate::keeper::Runtime;
use crate::protocol::acquire::Wait;
use crate::protocol::lease::{self, LossReason, MAX_TOKEN_LEN, Target};
use crate::protocol::semaphore::{self as protocol, SemaphoreRequest};
use crate::shared::{check_max_hold, check_name, check_token, check_ttl};

/// The most permits a semaphore may have.
///
/// Each permit is a slot key on every node, and a node looks at up to `permits` slots when it
/// finds the first ones taken (an acquisition while most permits are held, or a release by
/// token): Redis runs a script alone, so that work delays every client of the node. 1,024
/// keeps the worst case under a millisecond of server time; a larger pool of holders is better
/// split into several semaphores (or served by a queue in front of them).
pub const MAX_PERMITS: u32 = 1024;

/// A distributed counting semaphore: at most `permits` holders at once, created by
/// [`RedLockFactory::create_semaphore`](crate::RedLockFactory::create_semaphore).
///
/// Each permit is one of `permits` slots, and each slot is an ordinary Redlock lock on its own
/// key (`<name>:redmutex:permit:<slot>`): a permit is a quorum's grant of one slot. So at most
/// `permits` holders exist under exactly the assumptions that make one lock exclusive (see
/// `docs/features.md`, "Semaphore"). A permit is a lease like a lock's: it expires after its
/// TTL unless extended (or kept alive), a crashed holder's permit frees itself at its TTL, and
/// a holder paused past its TTL finds its [`SemaphorePermit::is_valid`] false.
///
/// Like [`RedLock`](crate::RedLock), a `Semaphore` holds no state about its holders: it is
/// `Send + Sync`, cheap to clone, and every acquisition returns its own [`SemaphorePermit`].
///
/// # One name, one count
///
/// Every client of a semaphore must use the same `permits`. While any permit is held, the
/// semaphore's name key (the key a lock of that name would hold) says the count, and an
/// acquisition with another count fails with [`Error::InvalidConfig`] instead of granting more
/// permits than either side allows. The key goes with the last permit released (or expires
/// with it), so changing the count takes stopping the old clients first.
///
/// A lock ([`RedLockFactory::create_lock`](crate::RedLockFactory::create_lock)) or a
/// multi-lock of the same name excludes the permit holders and is excluded by them: a permit
/// waits while the lock is held, and the lock waits while any permit is held.
///
/// # Examples
///
/// ```no_run
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
/// let downloads = factory.create_semaphore("mirror:downloads", 4);
/// let permit = downloads.acquire()?; // waits while 4 holders run
/// // ... at most 4 of these run at once, across every host ...
/// permit.release()?;
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    permits: u32,
    ttl: Duration,
    keep_alive: bool,
    max_hold: Option<Duration>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.name)
            .field("permits", &self.permits)
            .field("ttl", &self.ttl)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl Semaphore {
    pub(crate) fn new(runtime: Arc<Runtime>, name: Arc<str>, permits: u32) -> Self {
        let c = &runtime.shared.config;
        let (ttl, keep_alive, max_hold) = (c.ttl, c.keep_alive, c.max_hold);
        Self {
            runtime,
            name,
            permits,
            ttl,
            keep_alive,
            max_hold,
        }
    }

    /// This semaphore with keep-alive on or off, instead of the factory's choice (see
    /// [`RedLockFactoryBuilder::keep_alive`](crate::RedLockFactoryBuilder::keep_alive)).
    #[must_use]
    pub fn with_keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// This semaphore with its own keep-alive hold limit (see
    /// [`RedLockFactoryBuilder::max_hold`](crate::RedLockFactoryBuilder::max_hold)).
    #[must_use]
    pub fn with_max_hold(mut self, limit: Duration) -> Self {
        self.max_hold = Some(limit);
        self
    }

    /// This semaphore with its own permit TTL instead of the factory's.
    ///
    /// An invalid TTL (zero, too long, or shorter than the drift allowance) is reported by the
    /// first call that uses it, as [`Error::InvalidConfig`].
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The semaphore's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many holders it allows at once.
    #[must_use]
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// The lease time of each permit.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes a permit, waiting while all are held.
    ///
    /// This function blocks: it waits as long as every permit stays held by others (woken by
    /// their releases, and polling as [`RedLock::acquire`](crate::RedLock::acquire) does);
    /// rounds that fail for want of answering nodes are retried `max_retries` times in a row,
    /// then the error is returned.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidConfig`]: another client uses this name with another permit count
    ///   (returned at once), or the TTL is invalid.
    /// - [`Error::NoQuorum`], [`Error::TooLate`]: as for a lock.
    /// - [`Error::InvalidArgument`]: a bad name, or `permits` zero or above [`MAX_PERMITS`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let _permit = factory.create_semaphore("encoders", 2).acquire()?;
    /// // held until `_permit` goes out of scope
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<SemaphorePermit> {
        self.acquire_with(Wait::forever())
    }

    /// Takes a permit if one attempt can: never waits.
    ///
    /// This function does not block beyond one attempt: one round, or up to three when the
    /// nodes disagree about which permits are free. `Ok(None)` means every permit is held
    /// elsewhere.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// match factory.create_semaphore("crawlers", 8).try_acquire()? {
    ///     Some(_permit) => { /* one of at most 8 */ }
    ///     None => println!("8 crawlers already run"),
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<Option<SemaphorePermit>> {
        self.check()?;
        let lease = protocol::try_acquire(&self.runtime.shared, &self.request())?;
        Ok(lease.map(|lease| self.permit(lease)))
    }

    /// Takes a permit, waiting at most about `timeout` while all are held.
    ///
    /// This function blocks for up to `timeout` plus one attempt.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when every permit stayed held; otherwise as
    /// [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit> {
        self.acquire_with(Wait::timeout(timeout))
    }

    /// Takes a permit, waiting as `wait` says (see
    /// [`RedLock::acquire_with`](crate::RedLock::acquire_with)): the one waiting call the
    /// others are made of.
    ///
    /// This function blocks until a permit is taken, the wait runs out (plus one attempt), or
    /// the cancel flag is seen set.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the flag was set (no permit is held), [`Error::Timeout`] when
    /// the wait ran out; otherwise as [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redmutex::Wait;
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let permit = factory
    ///     .create_semaphore("exports", 3)
    ///     .acquire_with(Wait::timeout(Duration::from_secs(30)))?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn acquire_with(&self, wait: Wait<'_>) -> Result<SemaphorePermit> {
        self.check()?;
        let lease = protocol::acquire(&self.runtime.shared, &self.request(), &wait)?;
        Ok(self.permit(lease))
    }

    /// Releases the permit held with `token` (from [`SemaphorePermit::leak`]), from any
    /// process: the same release and wake-up of waiters as [`SemaphorePermit::release`]. The
    /// nodes look for the token in every slot.
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] when a quorum does not hold a permit with this token;
    /// [`Error::NoQuorum`] when too few nodes answered; [`Error::InvalidArgument`] for a bad
    /// name, count or token.
    pub fn release_token(&self, token: &str) -> Result<()> {
        self.check_token(token)?;
        let target = Target::any_permit(self.permits, self.permits);
        lease::release(&self.runtime.shared, &target, &self.name, token)
    }

    /// Makes the nodes hold the permit of `token` at least `ttl` from now (never shorter),
    /// from any process; returns the validity this proves.
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`], [`Error::NoQuorum`], [`Error::TooLate`], and
    /// [`Error::InvalidArgument`] or [`Error::InvalidConfig`] for bad input, as
    /// [`RedLock::extend_token`](crate::RedLock::extend_token).
    pub fn extend_token(&self, token: &str, ttl: Duration) -> Result<Duration> {
        self.check_token(token)?;
        let target = Target::any_permit(self.permits, self.permits);
        lease::extend_token(&self.runtime.shared, &target, &self.name, token, ttl)
    }

    fn check_token(&self, token: &str) -> Result<()> {
        check_name("semaphore name", &self.name)?;
        check_permits(self.permits)?;
        check_token(token, MAX_TOKEN_LEN)
    }

    fn check(&self) -> Result<()> {
        check_name("semaphore name", &self.name)?;
        check_permits(self.permits)?;
        check_ttl("ttl", self.ttl, self.runtime.shared.config.drift_factor)?;
        check_max_hold(self.max_hold)
    }

    fn request(&self) -> SemaphoreRequest<'_> {
        SemaphoreRequest {
            name: &self.name,
            permits: self.permits,
            ttl: self.ttl,
            keep_alive: self.keep_alive,
            max_hold: self.max_hold,
        }
    }

    fn permit(&self, lease: lease::Lease) -> SemaphorePermit {
        let slot = if let Target::Permit { slot, .. } = lease.target {
            slot
        } else {
            0
        };
        SemaphorePermit {
            held: Held::new(Arc::clone(&self.runtime), lease),
            slot,
        }
    }
}

fn check_permits(permits: u32) -> Result<()> {
    if permits == 0 || permits > MAX_PERMITS {
        return Err(Error::InvalidArgument(format!(
            "a semaphore has 1 to {MAX_PERMITS} permits, not {permits}"
        )));
    }
    Ok(())
}

/// One permit of a [`Semaphore`]; releases it when dropped.
///
/// Created by [`Semaphore::acquire`], [`Semaphore::try_acquire`],
/// [`Semaphore::acquire_timeout`] and [`Semaphore::acquire_with`]. It is the same lease as a
/// [`RedLockGuard`](crate::RedLockGuard)'s, on the permit's slot: it expires after its
/// [`validity`](Self::validity) unless extended or kept alive, it tells when it is lost
/// ([`loss_signal`](Self::loss_signal), [`on_loss`](Self::on_loss)), and dropping it releases
/// it, best effort (call [`release`](Self::release) to learn the outcome).
///
/// It is `Send + Sync + 'static` for the same reasons as a lock's guard (release is a
/// compare-and-delete of the token), and not `Clone`.
///
/// ```compile_fail
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"]).unwrap();
/// let p = factory.create_semaphore("s", 2).acquire().unwrap();
/// let p2 = p.clone(); // error: SemaphorePermit is not Clone
/// ```
#[must_use = "if unused the permit is released immediately"]
#[clippy::has_significant_drop]
pub struct SemaphorePermit {
    held: Held,
    slot: u32,
}

impl SemaphorePermit {
    /// The semaphore's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.held.lease.resource
    }

    /// Which of the semaphore's slots this permit holds, from 0 to `permits - 1`: no other
    /// holder has the same slot while this permit is valid (use it to pick a worker index, a
    /// port, a device...).
    #[must_use]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The random token stored in the permit's slot on the nodes (40 hex digits). A secret
    /// capability, as for a lock ([`RedLockGuard::token`](crate::RedLockGuard::token)).
    #[must_use]
    pub fn token(&self) -> &str {
        self.held.token()
    }

    /// How much of the lease is left: the time during which this permit counts against the
    /// semaphore for sure. Zero once expired or lost.
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.held.validity()
    }

    /// Whether the lease still has validity left. This function does not block or touch the
    /// network.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        !self.validity().is_zero()
    }

    /// Whether the permit is known to be lost or has run out: `!is_valid()`.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        !self.is_valid()
    }

    /// A handle that tells when this permit is lost (see
    /// [`RedLockGuard::loss_signal`](crate::RedLockGuard::loss_signal)).
    #[must_use]
    pub fn loss_signal(&self) -> LossSignal {
        self.held.loss_signal()
    }

    /// Calls `callback` once if the permit is lost, on the factory's callback thread (see
    /// [`RedLockGuard::on_loss`](crate::RedLockGuard::on_loss)).
    pub fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
        self.held.on_loss(callback);
    }

    /// Extends the lease so that the nodes hold the permit at least `ttl` from now (never
    /// shorter than they already do).
    ///
    /// This function blocks for one round; it follows the deadline rule of
    /// [`RedLockGuard::extend`](crate::RedLockGuard::extend).
    ///
    /// # Errors
    ///
    /// As [`RedLockGuard::extend`](crate::RedLockGuard::extend): [`Error::Expired`],
    /// [`Error::LockLost`], [`Error::NoQuorum`], [`Error::TooLate`], [`Error::InvalidConfig`].
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        self.held.extend(ttl)
    }

    /// Releases the permit and reports whether it was still ours.
    ///
    /// This function blocks for one round. The release announces the freed slot, so a waiter
    /// woken by it tries that slot first.
    ///
    /// # Errors
    ///
    /// As [`RedLockGuard::release`](crate::RedLockGuard::release): [`Error::Expired`] or
    /// [`Error::LockLost`] when a quorum no longer held it (more than `permits` holders may
    /// have overlapped), [`Error::NoQuorum`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let permit = factory.create_semaphore("uploads", 3).acquire()?;
    /// // ... work ...
    /// permit.release()?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn release(self) -> Result<()> {
        self.held.release()
    }

    /// Gives the permit up without releasing it, and returns its token: the permit stays held
    /// until its TTL runs out or [`Semaphore::release_token`] ends it.
    #[must_use = "the token is the only way to release the permit before its TTL"]
    pub fn leak(self) -> String {
        self.held.leak()
    }
}

impl fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a capability: not shown.
        f.debug_struct("SemaphorePermit")
            .field("name", &self.name())
            .field("slot", &self.slot)
            .field("validity", &self.validity())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedLockFactory;

    #[test]
    fn bad_input_is_an_error_before_any_io() {
        let f = RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap();
        for permits in [0, MAX_PERMITS + 1] {
            assert!(matches!(
                f.create_semaphore("s", permits).try_acquire(),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            f.create_semaphore("", 2).acquire(),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_semaphore("s", 2)
                .with_ttl(Duration::ZERO)
                .try_acquire(),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            f.create_semaphore("s", 2).release_token(""),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_semaphore("s", 2).extend_token("t", Duration::ZERO),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn handles_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Semaphore>();
        check::<SemaphorePermit>();
    }
}

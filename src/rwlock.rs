//! `RwLock`: a named read-write lock, and its read and write guards. A thin handle: every
//! operation is a call of the lease protocol (`protocol::rw`), and each guard wraps the
//! lease-holding part every guard is made of (`guard::Held`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guard::{Held, LossSignal};
use crate::keeper::Runtime;
use crate::protocol::acquire::{MutexRequest, Wait};
use crate::protocol::lease::{Lease, LossReason};
use crate::protocol::rw;
use crate::shared::{check_max_hold, check_resource, check_ttl};

/// A distributed read-write lock on one name, created by
/// [`RedLockFactory::create_rwlock`](crate::RedLockFactory::create_rwlock): any number of
/// readers at once, or one writer.
///
/// Like [`RedLock`](crate::RedLock), it holds no state about who holds it: each acquisition
/// returns a guard ([`RwLockReadGuard`], [`RwLockWriteGuard`]) with its own token and deadline,
/// so one `RwLock` can be shared by many threads (it is `Send + Sync` and cheap to clone).
///
/// # Guarantees
///
/// - **A writer is never with anyone else.** At no moment do a writer and another holder (a
///   reader or a writer) both hold a guard with validity left, under the same assumptions as
///   the mutex (independent masters, nodes that keep their keys, bounded clock drift): on every
///   node one script decides atomically, and a reader's quorum and a writer's quorum share a
///   node.
/// - **Writers are not starved.** A writer that waits ([`write`](Self::write),
///   [`write_timeout`](Self::write_timeout), [`write_with`](Self::write_with)) keeps new
///   readers out while it waits; it gets in once the readers already inside have left. (So a
///   steady stream of writers can delay readers: the preference is the writer's.) A writer that
///   dies while waiting stops keeping readers out within about a second with the default
///   settings; one that gives up stops at once.
/// - **Each reader's lease is its own.** A reader that crashed expires after its own TTL, however
///   often the other readers renew theirs.
/// - **One name, every mode.** The writer holds the lock key (the name) exactly as a mutex
///   holder does, and readers hold it with a marker that a mutex's `SET NX` finds taken: a
///   [`RedLock`](crate::RedLock) on the same name, and any other Redlock client (redsync,
///   node-redlock, ...), is a writer of this lock. They exclude each other; only a plain mutex
///   waiter gets no writer preference.
///
/// # Differences from `std::sync::RwLock`
///
/// - **A lease, not ownership**, as for [`RedLock`](crate::RedLock): check
///   [`validity`](RwLockReadGuard::validity), [`extend`](RwLockReadGuard::extend) long holds,
///   or turn on keep-alive.
/// - **No upgrade.** A thread that holds a read guard and asks for the write lock gets
///   [`Error::WouldDeadlock`] at once (std would deadlock). Take the write lock from the start
///   and [`downgrade`](RwLockWriteGuard::downgrade) it instead: that is atomic.
/// - **Not reentrant.** A second `read` by a thread that holds a read guard waits behind a
///   waiting writer (which waits for that guard): do not take a read lock twice in one thread.
///   A thread that holds the write lock waits for itself if it asks again.
/// - **No poisoning, no data inside**, as for the mutex.
///
/// # Costs
///
/// One round per acquisition and per release, as for the mutex, but each is a script (a few
/// sorted-set operations on the node) where an uncontended mutex sends a bare `SET NX`; see
/// `docs/benchmarks.md`. Four keys per name at most (the lock key, the readers, the waiting
/// writers, the waiting mark), each the name plus a suffix, all expiring by themselves.
///
/// # Examples
///
/// ```no_run
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
/// let config = factory.create_rwlock("config:pricing");
/// {
///     let _r = config.read()?;
///     // ... read the configuration; other readers may read it at the same time ...
/// }
/// {
///     let w = config.write()?;
///     // ... change it: nobody else reads or writes meanwhile ...
///     let _r = w.downgrade()?; // publish, then keep reading it without letting a writer in
/// }
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Clone)]
pub struct RwLock {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    ttl: Duration,
    keep_alive: bool,
    max_hold: Option<Duration>,
    fencing: bool,
}

impl fmt::Debug for RwLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("keep_alive", &self.keep_alive)
            .field("fencing", &self.fencing)
            .finish_non_exhaustive()
    }
}

impl RwLock {
    pub(crate) fn new(runtime: Arc<Runtime>, name: Arc<str>) -> Self {
        let c = &runtime.shared.config;
        let (ttl, keep_alive, max_hold, fencing) = (c.ttl, c.keep_alive, c.max_hold, c.fencing);
        Self {
            runtime,
            name,
            ttl,
            keep_alive,
            max_hold,
            fencing,
        }
    }

    /// This lock with keep-alive on or off for its guards, instead of the factory's choice
    /// (see [`RedLockFactoryBuilder::keep_alive`](crate::RedLockFactoryBuilder::keep_alive)).
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

    /// This lock with fencing tokens for its writers on or off, instead of the factory's choice
    /// (see [`RwLockWriteGuard::fencing_token`]). Readers get none.
    #[must_use]
    pub fn with_fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// This lock with its own TTL instead of the factory's, for readers and writers alike.
    ///
    /// An invalid TTL (zero, too long, or shorter than the drift allowance) is reported by the
    /// first call that uses it, as [`Error::InvalidConfig`].
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The lock's name: the Redis key its writer holds, which every other key of the lock
    /// starts with.
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.name
    }

    /// The lease time of each acquisition.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes a read lock, waiting while a writer holds the lock or waits for it.
    ///
    /// This function blocks, like [`RedLock::acquire`](crate::RedLock::acquire): it waits as
    /// long as writers hold or want the lock (woken by their release), and returns the error
    /// after `max_retries + 1` rounds in a row fail for want of answering nodes.
    ///
    /// # Errors
    ///
    /// - [`Error::NoQuorum`], [`Error::TooLate`]: too few nodes answered, or too slowly, in
    ///   `max_retries + 1` rounds in a row.
    /// - [`Error::InvalidArgument`], [`Error::InvalidConfig`]: a bad name or TTL.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let _r = factory.create_rwlock("catalog").read()?;
    /// // read; other readers may hold it too, no writer does
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn read(&self) -> Result<RwLockReadGuard> {
        self.read_with(Wait::forever())
    }

    /// Takes a read lock if a single round can: never waits.
    ///
    /// This function does not block beyond one round. `Ok(None)` means a writer holds the lock
    /// or waits for it.
    ///
    /// # Errors
    ///
    /// [`Error::NoQuorum`], [`Error::TooLate`], [`Error::InvalidArgument`],
    /// [`Error::InvalidConfig`], as [`read`](Self::read) (after one round).
    pub fn try_read(&self) -> Result<Option<RwLockReadGuard>> {
        self.check()?;
        let lease = rw::try_read(&self.runtime.shared, &self.request(false))?;
        Ok(lease.map(|lease| self.read_guard(lease)))
    }

    /// Takes a read lock, waiting at most about `timeout`.
    ///
    /// This function blocks for up to `timeout` plus one round.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when writers kept the lock for the whole wait; otherwise as
    /// [`read`](Self::read).
    pub fn read_timeout(&self, timeout: Duration) -> Result<RwLockReadGuard> {
        self.read_with(Wait::timeout(timeout))
    }

    /// Takes a read lock, waiting as `wait` says (a timeout, a deadline, a cancel flag: see
    /// [`Wait`]). [`read`](Self::read) and [`read_timeout`](Self::read_timeout) are this with
    /// `Wait::forever()` and `Wait::timeout(d)`.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the flag was set (no lock is held), [`Error::Timeout`] when
    /// the wait ran out; otherwise as [`read`](Self::read).
    pub fn read_with(&self, wait: Wait<'_>) -> Result<RwLockReadGuard> {
        self.check()?;
        let lease = rw::read(&self.runtime.shared, &self.request(false), &wait)?;
        Ok(self.read_guard(lease))
    }

    /// Takes the write lock, waiting while anyone holds the lock; meanwhile no new reader gets
    /// in (writer preference).
    ///
    /// This function blocks, like [`RedLock::acquire`](crate::RedLock::acquire). While it
    /// waits, every round renews this call's intent to write, which keeps new readers out; the
    /// readers already inside finish, and the writer gets in when the last one leaves (woken by
    /// its release). Should the call give up (an error), it withdraws its intent.
    ///
    /// # Errors
    ///
    /// - [`Error::WouldDeadlock`]: this thread holds a read lock on this lock (from this
    ///   factory); refused at once, before any round.
    /// - [`Error::NoQuorum`], [`Error::TooLate`]: too few nodes answered, or too slowly, in
    ///   `max_retries + 1` rounds in a row.
    /// - [`Error::InvalidArgument`], [`Error::InvalidConfig`]: a bad name or TTL.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let w = factory.create_rwlock("catalog").write()?;
    /// // rewrite the catalog: no reader and no other writer holds it
    /// w.release()?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn write(&self) -> Result<RwLockWriteGuard> {
        self.write_with(Wait::forever())
    }

    /// Takes the write lock if a single round can: never waits (and so keeps no reader out).
    ///
    /// This function does not block beyond one round. `Ok(None)` means the lock is held
    /// (by readers or a writer).
    ///
    /// # Errors
    ///
    /// [`Error::WouldDeadlock`] as [`write`](Self::write); [`Error::NoQuorum`],
    /// [`Error::TooLate`], [`Error::InvalidArgument`], [`Error::InvalidConfig`] after one round.
    pub fn try_write(&self) -> Result<Option<RwLockWriteGuard>> {
        self.check_write()?;
        let lease = rw::try_write(&self.runtime.shared, &self.request(true))?;
        Ok(lease.map(|lease| self.write_guard(lease)))
    }

    /// Takes the write lock, waiting at most about `timeout` (keeping new readers out
    /// meanwhile, as [`write`](Self::write) does).
    ///
    /// This function blocks for up to `timeout` plus one round.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the lock stayed held for the whole wait (the intent is
    /// withdrawn); otherwise as [`write`](Self::write).
    pub fn write_timeout(&self, timeout: Duration) -> Result<RwLockWriteGuard> {
        self.write_with(Wait::timeout(timeout))
    }

    /// Takes the write lock, waiting as `wait` says (a timeout, a deadline, a cancel flag: see
    /// [`Wait`]), keeping new readers out meanwhile. [`write`](Self::write) and
    /// [`write_timeout`](Self::write_timeout) are this with `Wait::forever()` and
    /// `Wait::timeout(d)`.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the flag was set (no lock is held, the intent is withdrawn),
    /// [`Error::Timeout`] when the wait ran out; otherwise as [`write`](Self::write).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::atomic::AtomicBool;
    /// use std::time::Duration;
    /// use redmutex::Wait;
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let stop = AtomicBool::new(false);
    /// let w = factory
    ///     .create_rwlock("catalog")
    ///     .write_with(Wait::timeout(Duration::from_secs(30)).cancel_on(&stop))?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn write_with(&self, wait: Wait<'_>) -> Result<RwLockWriteGuard> {
        self.check_write()?;
        let lease = rw::write(&self.runtime.shared, &self.request(true), &wait)?;
        Ok(self.write_guard(lease))
    }

    fn check(&self) -> Result<()> {
        check_resource(&self.name)?;
        check_ttl("ttl", self.ttl, self.runtime.shared.config.drift_factor)?;
        check_max_hold(self.max_hold)
    }

    /// [`check`](Self::check), and no read lock of this thread on this lock: a writer would
    /// wait for it forever.
    fn check_write(&self) -> Result<()> {
        self.check()?;
        if readers::held_here(&self.runtime, &self.name) {
            return Err(Error::WouldDeadlock {
                resource: self.name.to_string(),
            });
        }
        Ok(())
    }

    /// What an acquisition asks for; fencing tokens go to writers only (`write`).
    fn request(&self, write: bool) -> MutexRequest<'_> {
        MutexRequest {
            resource: &self.name,
            ttl: self.ttl,
            fencing: self.fencing && write,
            keep_alive: self.keep_alive,
            max_hold: self.max_hold,
        }
    }

    fn read_guard(&self, lease: Lease) -> RwLockReadGuard {
        RwLockReadGuard::new(Arc::clone(&self.runtime), lease)
    }

    fn write_guard(&self, lease: Lease) -> RwLockWriteGuard {
        RwLockWriteGuard {
            held: Held::new(Arc::clone(&self.runtime), lease),
        }
    }
}

/// The read guards each thread holds, by factory and name: what the upgrade check looks at.
mod readers {
    use super::{Arc, HashMap, LazyLock, Mutex, PoisonError, Runtime, ThreadId};

    /// (factory, name, the thread that took the read lock).
    type Key = (usize, Arc<str>, ThreadId);

    static HELD: LazyLock<Mutex<HashMap<Key, usize>>> = LazyLock::new(Mutex::default);

    fn key(runtime: &Arc<Runtime>, name: &Arc<str>) -> Key {
        (
            Arc::as_ptr(runtime).addr(),
            Arc::clone(name),
            std::thread::current().id(),
        )
    }

    /// Whether this thread holds a read guard of `name` from this factory.
    pub(super) fn held_here(runtime: &Arc<Runtime>, name: &Arc<str>) -> bool {
        let key = key(runtime, name);
        HELD.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&key)
    }

    /// One read guard, counted for the thread that took it until it is dropped. (The guard
    /// keeps the factory alive, so its address names it as long as the mark lives.)
    pub(super) struct Mark(Key);

    impl Mark {
        pub(super) fn new(runtime: &Arc<Runtime>, name: &Arc<str>) -> Self {
            let key = key(runtime, name);
            *HELD
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_default() += 1;
            Self(key)
        }
    }

    impl Drop for Mark {
        fn drop(&mut self) {
            let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = held.get_mut(&self.0) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&self.0);
                }
            }
        }
    }
}

/// Proof of holding a read lock; releases it when dropped.
///
/// Created by [`RwLock::read`], [`RwLock::try_read`], [`RwLock::read_timeout`],
/// [`RwLock::read_with`] and [`RwLockWriteGuard::downgrade`]. The lease API is the mutex
/// guard's ([`RedLockGuard`](crate::RedLockGuard)): [`validity`](Self::validity),
/// [`extend`](Self::extend), keep-alive, [`loss_signal`](Self::loss_signal),
/// [`release`](Self::release), release on drop (best effort, logged on failure). Its lease is
/// its own: other readers' renewals never keep it alive.
///
/// It is `Send` and `Sync` (release is a compare-and-delete of its token, valid from any
/// thread), `'static`, and not `Clone`.
///
/// ```compile_fail
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"]).unwrap();
/// let r = factory.create_rwlock("k").read().unwrap();
/// let r2 = r.clone(); // error: RwLockReadGuard is not Clone
/// ```
#[must_use = "if unused the lock is released immediately"]
#[clippy::has_significant_drop]
pub struct RwLockReadGuard {
    // Dropped first: the thread no longer counts as a reader once its guard starts to go.
    _mark: readers::Mark,
    held: Held,
}

impl RwLockReadGuard {
    fn new(runtime: Arc<Runtime>, lease: Lease) -> Self {
        Self {
            _mark: readers::Mark::new(&runtime, &lease.resource),
            held: Held::new(runtime, lease),
        }
    }

    fn from_held(held: Held) -> Self {
        Self {
            _mark: readers::Mark::new(&held.runtime, &held.lease.resource),
            held,
        }
    }

    /// This reader's random token (40 hex digits): a secret capability, like a mutex
    /// guard's (see [`RedLockGuard::token`](crate::RedLockGuard::token)).
    #[must_use]
    pub fn token(&self) -> &str {
        self.held.token()
    }

    /// The lock's name (the Redis key its writer holds).
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.held.lease.resource
    }

    /// How much of this reader's lease is left: during that time no writer holds the lock,
    /// allowing for clock drift. Zero once expired or lost.
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.held.validity()
    }

    /// Whether the lease still has validity left: `validity() > 0`. This does not talk to the
    /// nodes.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        !self.validity().is_zero()
    }

    /// Whether the lease is known to be lost or has run out: `!is_valid()`. This function does
    /// not block.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        !self.is_valid()
    }

    /// A handle that tells when this read lock is lost (see
    /// [`RedLockGuard::loss_signal`](crate::RedLockGuard::loss_signal)).
    #[must_use]
    pub fn loss_signal(&self) -> LossSignal {
        self.held.loss_signal()
    }

    /// Calls `callback` once if this read lock is lost, on the factory's callback thread (see
    /// [`RedLockGuard::on_loss`](crate::RedLockGuard::on_loss)).
    pub fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
        self.held.on_loss(callback);
    }

    /// Extends this reader's lease so that the nodes hold it at least `ttl` from now (never
    /// shorter than they already do).
    ///
    /// This function blocks for one round. As for the mutex, the guard's validity is raised
    /// only when a quorum confirmed in time, and a failed round leaves it where it was. It
    /// extends this reader only: the other readers' leases are untouched.
    ///
    /// # Errors
    ///
    /// As [`RedLockGuard::extend`](crate::RedLockGuard::extend): [`Error::Expired`],
    /// [`Error::LockLost`], [`Error::NoQuorum`], [`Error::TooLate`], [`Error::InvalidConfig`].
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        self.held.extend(ttl)
    }

    /// Releases the read lock and reports whether it was still ours (see
    /// [`RedLockGuard::release`](crate::RedLockGuard::release)). The last reader out wakes the
    /// writers waiting.
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// [`Error::Expired`], [`Error::LockLost`] (a writer may have held the lock meanwhile),
    /// [`Error::NoQuorum`].
    pub fn release(self) -> Result<()> {
        self.held.release()
    }
}

impl fmt::Debug for RwLockReadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a capability: not shown.
        f.debug_struct("RwLockReadGuard")
            .field("resource", &self.resource())
            .field("validity", &self.validity())
            .finish_non_exhaustive()
    }
}

/// Proof of holding the write lock; releases it when dropped.
///
/// Created by [`RwLock::write`], [`RwLock::try_write`], [`RwLock::write_timeout`] and
/// [`RwLock::write_with`]. The lease API is the mutex guard's
/// ([`RedLockGuard`](crate::RedLockGuard)); on the nodes the writer is a mutex holder of the
/// lock's name. [`downgrade`](Self::downgrade) turns it into a read guard atomically.
///
/// It is `Send` and `Sync`, `'static`, and not `Clone`.
///
/// ```compile_fail
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"]).unwrap();
/// let w = factory.create_rwlock("k").write().unwrap();
/// let w2 = w.clone(); // error: RwLockWriteGuard is not Clone
/// ```
#[must_use = "if unused the lock is released immediately"]
#[clippy::has_significant_drop]
pub struct RwLockWriteGuard {
    held: Held,
}

impl RwLockWriteGuard {
    /// The writer's random token (40 hex digits): a secret capability, like a mutex guard's
    /// (see [`RedLockGuard::token`](crate::RedLockGuard::token)).
    #[must_use]
    pub fn token(&self) -> &str {
        self.held.token()
    }

    /// The lock's name (the Redis key its writer holds).
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.held.lease.resource
    }

    /// The fencing token of this write acquisition: strictly greater than every token issued
    /// before for this name, to writers and to mutex holders of the same name alike. `None`
    /// unless fencing is on (see
    /// [`RedLockGuard::fencing_token`](crate::RedLockGuard::fencing_token)).
    #[must_use]
    pub fn fencing_token(&self) -> Option<u64> {
        self.held.lease.fencing
    }

    /// How much of the lease is left: during that time no one else holds the lock (reader or
    /// writer), allowing for clock drift. Zero once expired or lost.
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.held.validity()
    }

    /// Whether the lease still has validity left: `validity() > 0`. This does not talk to the
    /// nodes.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        !self.validity().is_zero()
    }

    /// Whether the lease is known to be lost or has run out: `!is_valid()`. This function does
    /// not block.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        !self.is_valid()
    }

    /// A handle that tells when the write lock is lost (see
    /// [`RedLockGuard::loss_signal`](crate::RedLockGuard::loss_signal)). After a
    /// [`downgrade`](Self::downgrade) it ends as after a release; the read guard has its own.
    #[must_use]
    pub fn loss_signal(&self) -> LossSignal {
        self.held.loss_signal()
    }

    /// Calls `callback` once if the write lock is lost, on the factory's callback thread (see
    /// [`RedLockGuard::on_loss`](crate::RedLockGuard::on_loss)).
    pub fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
        self.held.on_loss(callback);
    }

    /// Extends the lease so that the nodes hold it at least `ttl` from now (never shorter than
    /// they already do).
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// As [`RedLockGuard::extend`](crate::RedLockGuard::extend): [`Error::Expired`],
    /// [`Error::LockLost`], [`Error::NoQuorum`], [`Error::TooLate`], [`Error::InvalidConfig`].
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        self.held.extend(ttl)
    }

    /// Releases the write lock and reports whether it was still ours (see
    /// [`RedLockGuard::release`](crate::RedLockGuard::release)), waking those who wait.
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// [`Error::Expired`], [`Error::LockLost`] (someone else may have held the lock
    /// meanwhile), [`Error::NoQuorum`].
    pub fn release(self) -> Result<()> {
        self.held.release()
    }

    /// Turns the write lock into a read lock, atomically: on every node one script makes this
    /// writer a reader (with the same token, for no less time than it held the lock as a
    /// writer), so no writer can take the lock in between. Readers may join as soon as it is
    /// done (unless a writer is waiting), and those waiting are woken.
    ///
    /// This function blocks for one round. The read guard's validity is
    /// `ttl - round time - drift` from the round's start (the lock's TTL; keep-alive and the
    /// hold limit carry over). The write guard's loss signal ends.
    ///
    /// # Errors
    ///
    /// On error nothing is held any more: what the round may have left (as a writer or a
    /// reader) is released, or expires with its TTL.
    ///
    /// - [`Error::Expired`]: the write lease had already run out (no conversion is tried).
    /// - [`Error::LockLost`]: a quorum no longer held our token.
    /// - [`Error::NoQuorum`], [`Error::TooLate`]: too few nodes converted, or too slowly.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let lock = factory.create_rwlock("report");
    /// let w = lock.write()?;
    /// // ... build the report ...
    /// let r = w.downgrade()?;
    /// // ... read it back alongside other readers; no writer changed it in between ...
    /// drop(r);
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn downgrade(self) -> Result<RwLockReadGuard> {
        let held = self.held.convert(rw::downgrade)?;
        Ok(RwLockReadGuard::from_held(held))
    }
}

impl fmt::Debug for RwLockWriteGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a capability: not shown.
        f.debug_struct("RwLockWriteGuard")
            .field("resource", &self.resource())
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
    fn handles_and_guards_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        fn clone<T: Clone>() {}
        check::<RwLock>();
        clone::<RwLock>();
        check::<RwLockReadGuard>();
        check::<RwLockWriteGuard>();
    }

    #[test]
    fn bad_names_and_ttls_are_errors_before_any_io() {
        let f = RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap();
        assert!(matches!(
            f.create_rwlock("").try_read(),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_rwlock("").write(),
            Err(Error::InvalidArgument(_))
        ));
        let huge = "x".repeat(crate::MAX_RESOURCE_LEN + 1);
        assert!(matches!(
            f.create_rwlock(huge.as_str()).read(),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            f.create_rwlock("k").with_ttl(Duration::ZERO).try_write(),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            f.create_rwlock("k")
                .with_max_hold(Duration::ZERO)
                .read_timeout(Duration::ZERO),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn the_reader_registry_counts_per_thread_factory_and_name() {
        let f = RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap();
        let g = RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap();
        let (rf, rg) = (&f.create_rwlock("k").runtime, &g.create_rwlock("k").runtime);
        let name: Arc<str> = Arc::from("k");
        let other: Arc<str> = Arc::from("other");
        assert!(!readers::held_here(rf, &name));
        let a = readers::Mark::new(rf, &name);
        let b = readers::Mark::new(rf, &name);
        assert!(readers::held_here(rf, &name));
        assert!(!readers::held_here(rg, &name), "another factory");
        assert!(!readers::held_here(rf, &other), "another name");
        let elsewhere =
            std::thread::scope(|s| s.spawn(|| readers::held_here(rf, &name)).join().unwrap());
        assert!(!elsewhere, "another thread");
        drop(a);
        assert!(readers::held_here(rf, &name));
        drop(b);
        assert!(!readers::held_here(rf, &name));
    }
}

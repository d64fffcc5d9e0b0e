//! `Handle<K>`: a named lease of any kind, with the builders and the acquire family written
//! once. Each operation checks its input, refuses a wait for the calling thread's own lease, and
//! is then one call of the lease protocol (its one waiting loop, its token-level rounds).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guard::LeaseGuard;
use crate::keeper::Runtime;
use crate::kind::{Acquire, Fenced, Kind, kind_name};
use crate::local;
use crate::protocol::acquire::{Request, Wait};
use crate::protocol::lease::{self, MAX_TOKEN_LEN};
use crate::shared::{check_max_hold, check_token, check_ttl};

/// A distributed synchronizer on one name, of kind `K`: a lock, one side of a read-write lock, a
/// semaphore, a multi-lock, an election, a run-once job.
///
/// One type for every kind, as `lock_api` has one `Mutex<R, T>` for every raw mutex:
/// [`RedLock`](crate::RedLock), [`RwLock`](crate::RwLock), [`Semaphore`](crate::Semaphore),
/// [`MultiLock`](crate::MultiLock), [`Election`](crate::Election) and
/// [`RunOnce`](crate::RunOnce) are `Handle<K>` for their [`kind`](crate::kind), and
/// [`RwLock::reader`](crate::RwLock::reader) and [`RwLock::writer`](crate::RwLock::writer) give
/// the handles of its two sides. The methods below are every handle's (the builders), every
/// acquiring handle's (the acquire family and the token-level calls) or every fencing handle's
/// (`with_fencing`); each kind's page adds its own.
///
/// A handle holds no state about who holds the lease: every acquisition returns a
/// [`LeaseGuard`] that carries its own token and deadline. So one handle can be shared by many
/// threads (it is `Send + Sync` and cheap to clone), and each thread that acquires it gets its
/// own guard, as with `std::sync::Mutex`. Creating one does not talk to the nodes; a bad name or
/// setting is reported by the first call that uses it.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
/// let lock = factory.create_lock("reports:daily").with_ttl(Duration::from_secs(30));
/// match lock.try_acquire()? {
///     Some(guard) => {
///         // ... do the work, then release and learn whether it stayed ours throughout
///         guard.release()?;
///     }
///     None => println!("someone else is on it"),
/// }
/// # Ok::<(), redmutex::Error>(())
/// ```
pub struct Handle<K> {
    runtime: Arc<Runtime>,
    /// The lease name: what errors, logs, events and wake-ups use.
    name: Arc<str>,
    settings: Settings,
    kind: K,
}

/// The per-handle settings, each defaulting to the factory's.
#[derive(Debug, Clone, Copy)]
struct Settings {
    ttl: Duration,
    keep_alive: bool,
    max_hold: Option<Duration>,
    fencing: bool,
}

impl<K: Kind> Clone for Handle<K> {
    fn clone(&self) -> Self {
        Self {
            runtime: Arc::clone(&self.runtime),
            name: Arc::clone(&self.name),
            settings: self.settings,
            kind: self.kind.clone(),
        }
    }
}

impl<K: Kind> fmt::Debug for Handle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(&format!("Handle<{}>", kind_name::<K>()));
        d.field("resource", &self.name);
        self.kind.spec().debug_fields(&mut d);
        d.field("ttl", &self.settings.ttl)
            .field("keep_alive", &self.settings.keep_alive)
            .field("fencing", &self.settings.fencing)
            .finish_non_exhaustive()
    }
}

impl<K: Kind> Handle<K> {
    /// A handle on `name` with the factory's settings.
    pub(crate) fn new(runtime: Arc<Runtime>, name: Arc<str>, kind: K) -> Self {
        let c = &runtime.shared.config;
        let settings = Settings {
            ttl: c.ttl,
            keep_alive: c.keep_alive,
            max_hold: c.max_hold,
            fencing: c.fencing,
        };
        Self {
            runtime,
            name,
            settings,
            kind,
        }
    }

    /// The same name and settings, as a handle of another kind (a read-write lock's sides).
    pub(crate) fn as_kind<J: Kind>(&self, kind: J) -> Handle<J> {
        Handle {
            runtime: Arc::clone(&self.runtime),
            name: Arc::clone(&self.name),
            settings: self.settings,
            kind,
        }
    }

    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub(crate) fn kind(&self) -> &K {
        &self.kind
    }

    /// This handle with its own TTL instead of the factory's: the lease time of each
    /// acquisition (for a read-write lock, of readers and writers alike; for a semaphore, of each
    /// permit).
    ///
    /// An invalid TTL (zero, too long, or shorter than the drift allowance) is reported by the
    /// first call that uses it, as [`Error::InvalidConfig`].
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// This handle with keep-alive on or off for its guards, instead of the factory's choice
    /// (see [`RedLockFactoryBuilder::keep_alive`](crate::RedLockFactoryBuilder::keep_alive)).
    #[must_use]
    pub fn with_keep_alive(mut self, on: bool) -> Self {
        self.settings.keep_alive = on;
        self
    }

    /// This handle with its own keep-alive hold limit (see
    /// [`RedLockFactoryBuilder::max_hold`](crate::RedLockFactoryBuilder::max_hold)).
    ///
    /// A limit of zero or too long is reported by the first acquisition, as
    /// [`Error::InvalidConfig`].
    #[must_use]
    pub fn with_max_hold(mut self, limit: Duration) -> Self {
        self.settings.max_hold = Some(limit);
        self
    }

    /// The name: a lock's resource (its Redis key), a read-write lock's or a semaphore's name
    /// (which every key of it starts with), or a multi-lock's resources as one name (`[a, b]`;
    /// see [`MultiLock::resources`](crate::MultiLock::resources)).
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.name
    }

    /// The lease time of each acquisition.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    /// Checks every setting before any I/O.
    fn check(&self) -> Result<()> {
        self.kind.spec().check(&self.name)?;
        check_ttl(
            "ttl",
            self.settings.ttl,
            self.runtime.shared.config.drift_factor,
        )?;
        check_max_hold(self.settings.max_hold)
    }
}

impl<K: Fenced> Handle<K> {
    /// This handle with fencing tokens on or off, instead of the factory's choice (see
    /// [`LeaseGuard::fencing_token`]). For a read-write lock, its writers get them; readers
    /// never do.
    #[must_use]
    pub fn with_fencing(mut self, on: bool) -> Self {
        self.settings.fencing = on;
        self
    }
}

/// The acquire family, written once: every form is one call of the protocol's one waiting loop
/// (or of its single attempt), after the same checks.
impl<K: Acquire> Handle<K> {
    /// Takes the lease, waiting while it is held elsewhere: a lock while anyone holds it, a
    /// read lock while a writer holds or waits for it, the write lock while anyone holds it
    /// (keeping new readers out meanwhile), a permit while all are held, a multi-lock while
    /// any of its resources is held.
    ///
    /// This function blocks: it runs rounds separated by `retry_delay` plus a random jitter,
    /// woken early by the holder's release, until a quorum grants the lease. It waits as long as
    /// the lease stays held by others; rounds that fail because too few nodes answer are
    /// retried `max_retries` times in a row, then the error is returned, so a dead cluster is
    /// reported, never waited on forever. Waiters get the lease fairly.
    ///
    /// # Errors
    ///
    /// - [`Error::WouldDeadlock`]: this thread holds a read lock of the name (from this
    ///   factory), and the lease excludes readers: the write lock (an upgrade), a lock, a
    ///   permit, or a multi-lock containing the name. Waiting would be waiting for itself, so it
    ///   is refused at once, before any round (see [`LeaseGuard::hand_over`] for a guard moved
    ///   to another thread). Other leases of this thread are waited for like anyone's: a lock is
    ///   not reentrant.
    /// - [`Error::NoQuorum`]: too few nodes answered in `max_retries + 1` rounds in a row.
    /// - [`Error::TooLate`]: the same, because rounds were slower than the TTL allows.
    /// - [`Error::InvalidArgument`], [`Error::InvalidConfig`]: a bad name, TTL or hold limit;
    ///   for a semaphore also a bad permit count, or another client using the name with another
    ///   count (returned at once).
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
    /// statement and releases the lease at once.
    pub fn acquire(&self) -> Result<LeaseGuard<K>> {
        self.acquire_with(Wait::forever())
    }

    /// Takes the lease if a single attempt can: never waits.
    ///
    /// This function does not block beyond one attempt, bounded by the connect and I/O
    /// timeouts: one round (plus the take-back of a split vote, and for a semaphore up to two
    /// more rounds when the nodes disagree about which permits are free). `Ok(None)` means the
    /// lease is held elsewhere (or by this thread: a lock is not reentrant).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), after one attempt; [`Error::WouldDeadlock`] only for a
    /// write lock asked for by a thread that holds a read lock of the name (an upgrade is
    /// refused in every form).
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
    pub fn try_acquire(&self) -> Result<Option<LeaseGuard<K>>> {
        self.check()?;
        let spec = self.kind.spec();
        if spec.try_refuses_upgrade() {
            self.refuse_self_wait()?;
        }
        let lease = spec.try_once(&self.runtime.shared, &self.request())?;
        Ok(lease.map(|lease| self.guard(lease)))
    }

    /// Takes the lease, waiting at most about `timeout` while it is held elsewhere.
    ///
    /// This function blocks for up to `timeout` plus one attempt. A zero `timeout` makes one
    /// attempt, like [`try_acquire`](Self::try_acquire) but with an error when the lease is
    /// held.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the lease stayed held elsewhere (a waiting writer withdraws its
    /// intent); otherwise as [`acquire`](Self::acquire) (a failing cluster is reported even
    /// before the timeout).
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
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LeaseGuard<K>> {
        self.acquire_with(Wait::timeout(timeout))
    }

    /// Takes the lease, waiting as `wait` says: as long as it takes ([`Wait::forever`]), up to
    /// a timeout or a deadline ([`Wait::timeout`], [`Wait::until`]), and until a cancel flag is
    /// set ([`Wait::cancel_on`]). [`acquire`](Self::acquire) and
    /// [`acquire_timeout`](Self::acquire_timeout) are this with `Wait::forever()` and
    /// `Wait::timeout(d)`: the one waiting call the others are made of.
    ///
    /// This function blocks until the lease is taken, the wait runs out (plus one attempt), or
    /// the flag is seen set (within about 20 ms, or one round if a round is under way).
    ///
    /// # Errors
    ///
    /// - [`Error::Cancelled`]: the flag was set; nothing is held (a lease taken by the last
    ///   round is released, a waiting writer's intent withdrawn).
    /// - [`Error::Timeout`]: the lease stayed held elsewhere until the deadline.
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
    pub fn acquire_with(&self, wait: Wait<'_>) -> Result<LeaseGuard<K>> {
        self.check()?;
        self.refuse_self_wait()?;
        let lease = self
            .kind
            .spec()
            .wait(&self.runtime.shared, &self.request(), &wait)?;
        Ok(self.guard(lease))
    }

    /// Releases `guard`, reporting whether the lease was still ours: the same as
    /// [`LeaseGuard::release`]. (The guard knows its own lease and token.)
    ///
    /// # Errors
    ///
    /// As [`LeaseGuard::release`].
    pub fn release(&self, guard: LeaseGuard<K>) -> Result<()> {
        guard.release()
    }

    /// Releases the lease held with `token` (from [`LeaseGuard::leak`], or `redmutex
    /// acquire`), from any process: the same release script, quorum rule and wake-up of
    /// waiters as [`LeaseGuard::release`]. A semaphore's nodes look for the token in every
    /// slot; a multi-lock's release every resource held with it.
    ///
    /// The token is a capability: whoever has it can end the lease, even while its holder is
    /// still working. Only pass it to the code that must end the lease.
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// - [`Error::NotHeld`]: a quorum does not hold the lease with this token (it expired, was
    ///   released, was taken over, or the token is wrong); nothing was changed.
    /// - [`Error::NoQuorum`]: too few nodes answered to tell.
    /// - [`Error::InvalidArgument`]: a bad name, permit count or token.
    pub fn release_token(&self, token: &str) -> Result<()> {
        self.check_token(token)?;
        let shared = &self.runtime.shared;
        lease::release(shared, &self.kind.spec().target(), &self.name, token)
    }

    /// Makes the nodes hold the lease of `token` at least `ttl` from now (it never shortens
    /// it), from any process; returns the validity this proves (`ttl - round time - drift`).
    /// The same script and quorum rule as [`LeaseGuard::extend`].
    ///
    /// The token is a capability: whoever has it can keep the lease held. Only pass it to the
    /// code that owns the lease.
    ///
    /// This function blocks for one round.
    ///
    /// # Errors
    ///
    /// - [`Error::NotHeld`]: a quorum does not hold the lease with this token; nothing changed.
    /// - [`Error::NoQuorum`]: too few nodes answered to tell.
    /// - [`Error::TooLate`]: the round took the whole validity.
    /// - [`Error::InvalidArgument`], [`Error::InvalidConfig`]: a bad name, token or TTL.
    pub fn extend_token(&self, token: &str, ttl: Duration) -> Result<Duration> {
        self.check_token(token)?;
        let shared = &self.runtime.shared;
        lease::extend_token(shared, &self.kind.spec().target(), &self.name, token, ttl)
    }

    fn check_token(&self, token: &str) -> Result<()> {
        self.kind.spec().check(&self.name)?;
        check_token(token, MAX_TOKEN_LEN)
    }

    /// Refuses an acquisition that a read lease of the calling thread blocks: it would wait for
    /// itself.
    fn refuse_self_wait(&self) -> Result<()> {
        let want = self.kind.spec().wants(&self.name);
        match local::blocking(&self.runtime.shared, &want) {
            Some(resource) => Err(Error::WouldDeadlock { resource }),
            None => Ok(()),
        }
    }

    /// What an acquisition asks the protocol for; each kind takes what applies to it.
    fn request(&self) -> Request<'_> {
        let s = &self.settings;
        Request {
            resource: &self.name,
            ttl: s.ttl,
            fencing: s.fencing,
            keep_alive: s.keep_alive,
            max_hold: s.max_hold,
        }
    }

    pub(crate) fn guard(&self, lease: lease::Lease) -> LeaseGuard<K> {
        LeaseGuard::new(Arc::clone(&self.runtime), lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lease::MAX_TOKEN_LEN;
    use crate::{
        MAX_MULTI_RESOURCES, MAX_PERMITS, MAX_RESOURCE_LEN, MultiLock, RedLock, RedLockFactory,
        RwLock, Semaphore,
    };

    #[test]
    fn handles_are_send_sync_clone_static() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<RedLock>();
        check::<RwLock>();
        check::<Handle<crate::kind::Read>>();
        check::<Handle<crate::kind::Write>>();
        check::<Semaphore>();
        check::<MultiLock>();
    }

    /// Every bad name, count, token and setting of every kind is an error before any I/O (the
    /// factory's one node does not exist).
    #[test]
    fn bad_input_is_an_error_before_any_io() {
        let f = RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap();
        let huge = "x".repeat(MAX_RESOURCE_LEN + 1);
        let long_token = "t".repeat(MAX_TOKEN_LEN + 1);
        let many: Vec<String> = (0..=MAX_MULTI_RESOURCES).map(|i| i.to_string()).collect();
        let none: [&str; 0] = [];
        let zero = Duration::ZERO;
        let second = Duration::from_secs(1);
        let rw = f.create_rwlock("k");
        let cases: Vec<(&str, Result<()>)> = vec![
            ("empty name", f.create_lock("").try_acquire().map(drop)),
            (
                "huge name",
                f.create_lock(huge.as_str()).acquire().map(drop),
            ),
            (
                "zero ttl",
                f.create_lock("k").with_ttl(zero).acquire().map(drop),
            ),
            ("is_locked", f.create_lock("").is_locked().map(drop)),
            ("empty token", f.create_lock("k").release_token("")),
            (
                "long token",
                f.create_lock("k")
                    .extend_token(&long_token, second)
                    .map(drop),
            ),
            (
                "zero extension",
                f.create_lock("k").extend_token("t", zero).map(drop),
            ),
            ("empty rw name", f.create_rwlock("").try_read().map(drop)),
            ("empty rw name", f.create_rwlock("").write().map(drop)),
            (
                "huge rw name",
                f.create_rwlock(huge.as_str()).read().map(drop),
            ),
            (
                "zero rw ttl",
                rw.clone().with_ttl(zero).try_write().map(drop),
            ),
            (
                "zero hold",
                rw.with_max_hold(zero)
                    .reader()
                    .acquire_timeout(zero)
                    .map(drop),
            ),
            (
                "no permits",
                f.create_semaphore("s", 0).try_acquire().map(drop),
            ),
            (
                "too many permits",
                f.create_semaphore("s", MAX_PERMITS + 1).acquire().map(drop),
            ),
            (
                "empty semaphore name",
                f.create_semaphore("", 2).acquire().map(drop),
            ),
            (
                "zero permit ttl",
                f.create_semaphore("s", 2)
                    .with_ttl(zero)
                    .try_acquire()
                    .map(drop),
            ),
            (
                "empty permit token",
                f.create_semaphore("s", 2).release_token(""),
            ),
            (
                "zero permit extension",
                f.create_semaphore("s", 2).extend_token("t", zero).map(drop),
            ),
            (
                "no resources",
                f.create_multi_lock(none).try_acquire().map(drop),
            ),
            (
                "empty resource",
                f.create_multi_lock(["a", ""]).acquire().map(drop),
            ),
            (
                "too many resources",
                f.create_multi_lock(many).try_acquire().map(drop),
            ),
            (
                "zero multi ttl",
                f.create_multi_lock(["a"])
                    .with_ttl(zero)
                    .acquire()
                    .map(drop),
            ),
            (
                "empty multi token",
                f.create_multi_lock(["a"]).release_token(""),
            ),
        ];
        for (what, result) in cases {
            assert!(
                matches!(
                    result,
                    Err(Error::InvalidArgument(_) | Error::InvalidConfig(_))
                ),
                "{what}: {result:?}"
            );
        }
    }
}

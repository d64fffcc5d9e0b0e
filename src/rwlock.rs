//! `RwLock` and its guards: the read-write kinds of the one [`Handle`] and [`LeaseGuard`]. A
//! read-write lock is a handle of two sides, [`reader`](RwLock::reader) and
//! [`writer`](RwLock::writer), each with the acquire family; `read` and `write` are std's names
//! for their `acquire`. What it adds: the sides, std's names, the downgrade.

use crate::error::Result;
use crate::guard::LeaseGuard;
use crate::handle::Handle;
use crate::kind;
use crate::protocol::rw;

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
/// - **Writers are not starved.** A writer that waits ([`write`](Self::write), or any waiting
///   form of [`writer`](Self::writer)) keeps new readers out while it waits; it gets in once
///   the readers already inside have left. (So a steady stream of writers can delay readers:
///   the preference is the writer's.) A writer that dies while waiting stops keeping readers
///   out within about a second with the default settings; one that gives up stops at once.
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
///   [`Error::WouldDeadlock`](crate::Error::WouldDeadlock) at once (std would deadlock), as it
///   does for a lock, a semaphore or a multi-lock of the name. Take the write lock from the
///   start and [`downgrade`](RwLockWriteGuard::downgrade) it instead: that is atomic.
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
pub type RwLock = Handle<kind::ReadWrite>;

/// Proof of holding a read lock; releases it when dropped: a [`LeaseGuard`] of the read kind,
/// with the whole lease API.
///
/// Created by [`RwLock::read`], [`RwLock::try_read`], the acquire family of
/// [`RwLock::reader`] (`acquire_timeout`, `acquire_with`, ...) and
/// [`RwLockWriteGuard::downgrade`]. Its lease is its own: other readers' renewals never keep it
/// alive, and its [`extend`](LeaseGuard::extend) leaves theirs as they are. Its release wakes
/// the writers waiting when it is the last reader out. It has no fencing token: readers share
/// the name, and a token could not order them.
pub type RwLockReadGuard = LeaseGuard<kind::Read>;

/// Proof of holding the write lock; releases it when dropped: a [`LeaseGuard`] of the write
/// kind, with the whole lease API, plus [`downgrade`](LeaseGuard::downgrade).
///
/// Created by [`RwLock::write`], [`RwLock::try_write`] and the acquire family of
/// [`RwLock::writer`]. On the nodes the writer is a lock holder of the name
/// ([`RedLockGuard`](crate::RedLockGuard)'s key and value), and its fencing token comes from
/// the same counter.
pub type RwLockWriteGuard = LeaseGuard<kind::Write>;

/// What a read-write lock adds to the handle: its two sides, and std's names for taking them.
impl RwLock {
    /// The read side: a handle with the acquire family (`acquire`, `try_acquire`,
    /// `acquire_timeout`, `acquire_with`, and the token-level calls) for read locks, with this
    /// lock's name and settings. [`read`](Self::read) is its `acquire`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let catalog = factory.create_rwlock("catalog");
    /// let _r = catalog.reader().acquire_timeout(Duration::from_secs(2))?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    #[must_use]
    pub fn reader(&self) -> Handle<kind::Read> {
        self.as_kind(kind::Read(()))
    }

    /// The write side: a handle with the acquire family for the write lock, with this lock's
    /// name and settings. [`write`](Self::write) is its `acquire`; every waiting form keeps new
    /// readers out while it waits (writer preference) and withdraws its intent when it gives
    /// up.
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
    ///     .writer()
    ///     .acquire_with(Wait::timeout(Duration::from_secs(30)).cancel_on(&stop))?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    #[must_use]
    pub fn writer(&self) -> Handle<kind::Write> {
        self.as_kind(kind::Write(()))
    }

    /// Takes a read lock, waiting while a writer holds the lock or waits for it: std's name for
    /// [`reader().acquire()`](Handle::acquire).
    ///
    /// This function blocks as [`RedLock::acquire`](crate::RedLock::acquire) does: it waits as
    /// long as writers hold or want the lock (woken by their release), and returns the error
    /// after `max_retries + 1` rounds in a row fail for want of answering nodes.
    ///
    /// # Errors
    ///
    /// As [`Handle::acquire`]: [`Error::NoQuorum`](crate::Error::NoQuorum),
    /// [`Error::TooLate`](crate::Error::TooLate),
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument),
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig).
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
        self.reader().acquire()
    }

    /// Takes a read lock if a single round can: never waits. std's name for
    /// [`reader().try_acquire()`](Handle::try_acquire).
    ///
    /// This function does not block beyond one round. `Ok(None)` means a writer holds the lock
    /// or waits for it.
    ///
    /// # Errors
    ///
    /// As [`Handle::try_acquire`]: [`Error::NoQuorum`](crate::Error::NoQuorum), [`Error::TooLate`](crate::Error::TooLate),
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument), [`Error::InvalidConfig`](crate::Error::InvalidConfig).
    pub fn try_read(&self) -> Result<Option<RwLockReadGuard>> {
        self.reader().try_acquire()
    }

    /// Takes the write lock, waiting while anyone holds the lock; meanwhile no new reader gets
    /// in (writer preference). std's name for [`writer().acquire()`](Handle::acquire).
    ///
    /// This function blocks as [`RedLock::acquire`](crate::RedLock::acquire) does. While it
    /// waits, every round renews this call's intent to write, which keeps new readers out; the
    /// readers already inside finish, and the writer gets in when the last one leaves (woken by
    /// its release). Should the call give up (an error), it withdraws its intent.
    ///
    /// # Errors
    ///
    /// - [`Error::WouldDeadlock`](crate::Error::WouldDeadlock): this thread holds a read lock
    ///   on this lock (from this factory); refused at once, before any round.
    /// - [`Error::NoQuorum`](crate::Error::NoQuorum), [`Error::TooLate`](crate::Error::TooLate): too few nodes answered, or too slowly, in
    ///   `max_retries + 1` rounds in a row.
    /// - [`Error::InvalidArgument`](crate::Error::InvalidArgument), [`Error::InvalidConfig`](crate::Error::InvalidConfig): a bad name or TTL.
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
        self.writer().acquire()
    }

    /// Takes the write lock if a single round can: never waits (and so keeps no reader out).
    /// std's name for [`writer().try_acquire()`](Handle::try_acquire).
    ///
    /// This function does not block beyond one round. `Ok(None)` means the lock is held
    /// (by readers or a writer).
    ///
    /// # Errors
    ///
    /// [`Error::WouldDeadlock`](crate::Error::WouldDeadlock) when this thread holds a read lock
    /// on this lock (an upgrade is refused in every form);
    /// [`Error::NoQuorum`](crate::Error::NoQuorum), [`Error::TooLate`](crate::Error::TooLate),
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument),
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) after one round.
    pub fn try_write(&self) -> Result<Option<RwLockWriteGuard>> {
        self.writer().try_acquire()
    }
}

/// What a write guard adds: the atomic downgrade.
impl RwLockWriteGuard {
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
    /// - [`Error::Expired`](crate::Error::Expired): the write lease had already run out (no conversion is tried).
    /// - [`Error::LockLost`](crate::Error::LockLost): a quorum no longer held our token.
    /// - [`Error::NoQuorum`](crate::Error::NoQuorum), [`Error::TooLate`](crate::Error::TooLate): too few nodes converted, or too slowly.
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
        self.convert(rw::downgrade)
    }
}

//! `RedLock` and `RedLockGuard`: the lock kind of the one [`Handle`] and [`LeaseGuard`], and
//! what a lock adds to them (`inspect`, `is_locked`).

use crate::error::{Error, Result};
use crate::guard::LeaseGuard;
use crate::handle::Handle;
use crate::kind;
use crate::protocol::inspect::{self, Holding, Inspection, LockState};
use crate::shared::check_resource;

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
///   A thread that holds a read lock of the name gets [`Error::WouldDeadlock`] instead (see
///   [`acquire`](RedLock::acquire)).
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
pub type RedLock = Handle<kind::Lock>;

/// Proof of holding a [`RedLock`]; releases it when dropped: a [`LeaseGuard`] of the lock kind,
/// with the whole lease API (token, validity, extend, loss signal, release, leak).
///
/// This structure is created by [`RedLock::acquire`], [`RedLock::try_acquire`],
/// [`RedLock::acquire_timeout`] and [`RedLock::acquire_with`]. On the nodes the lock key holds
/// its token, which a compare-and-delete releases.
pub type RedLockGuard = LeaseGuard<kind::Lock>;

/// What a lock adds to the handle: a look at who holds it.
impl RedLock {
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
                resource: self.resource().to_owned(),
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
        check_resource(self.resource())?;
        Ok(inspect::inspect(&self.runtime().shared, self.resource()))
    }
}

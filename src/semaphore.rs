//! `Semaphore` and `SemaphorePermit`: the permit kind of the one [`Handle`] and
//! [`LeaseGuard`] (at most `permits` holders of one name at once, across processes and hosts),
//! and what a semaphore adds to them (its count, a permit's slot).

use crate::guard::LeaseGuard;
use crate::handle::Handle;
use crate::kind;
use crate::protocol::lease::Target;

pub use crate::shared::MAX_PERMITS;

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
/// acquisition with another count fails with [`Error::InvalidConfig`](crate::Error::InvalidConfig) instead of granting more
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
pub type Semaphore = Handle<kind::Permit>;

/// One permit of a [`Semaphore`]; releases it when dropped: a [`LeaseGuard`] of the permit
/// kind, with the whole lease API, plus the [`slot`](LeaseGuard::slot) it holds.
///
/// Created by [`Semaphore::acquire`], [`Semaphore::try_acquire`],
/// [`Semaphore::acquire_timeout`] and [`Semaphore::acquire_with`]. It is the same lease as a
/// [`RedLockGuard`](crate::RedLockGuard)'s, on the permit's slot: it expires after its
/// [`validity`](LeaseGuard::validity) unless extended or kept alive, it tells when it is lost
/// ([`loss_signal`](LeaseGuard::loss_signal)), and dropping it releases it, best effort (call
/// [`release`](LeaseGuard::release) to learn the outcome; it announces the freed slot, so a
/// waiter woken by it tries that slot first). It has no fencing token: a permit is shared with
/// `permits - 1` other holders, whom a token could not order.
pub type SemaphorePermit = LeaseGuard<kind::Permit>;

/// What a semaphore adds to the handle: its count.
impl Semaphore {
    /// How many holders it allows at once.
    #[must_use]
    pub fn permits(&self) -> u32 {
        self.kind().permits
    }
}

/// What a permit adds to the guard: its slot.
impl SemaphorePermit {
    /// Which of the semaphore's slots this permit holds, from 0 to `permits - 1`: no other
    /// holder has the same slot while this permit is valid (use it to pick a worker index, a
    /// port, a device...).
    #[must_use]
    pub fn slot(&self) -> u32 {
        match self.lease().target {
            Target::Permit { slot, .. } => slot,
            _ => 0,
        }
    }
}

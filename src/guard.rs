//! `RedLockGuard`: proof of holding a lock, with the token, the deadline and the release; and
//! `LossSignal`, which tells when it is lost. Both are thin handles on the protocol's lease.

use std::fmt;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::keeper::{Runtime, Task, renew_after};
use crate::protocol::lease::{Lease, LossReason, lock};

/// Proof of holding a distributed lock; releases it when dropped.
///
/// This structure is created by [`RedLock::acquire`], [`RedLock::try_acquire`] and
/// [`RedLock::acquire_timeout`]. It owns everything it needs (the token, the deadline and a
/// handle on the factory's pools), so it is `'static` and does not borrow the [`RedLock`].
///
/// Dropping the guard releases the lock, best effort: a failure there can only be logged
/// (`log::warn!`). Call [`release`](Self::release) to learn whether the lock was still yours.
/// Dropping also releases during a panic's unwinding, and never panics itself.
///
/// # A lease
///
/// The lock expires [`validity`](Self::validity) after it was taken, whether or not the guard
/// is alive: check [`is_valid`](Self::is_valid) before acting on the protected resource, and
/// [`extend`](Self::extend) the lease in long critical sections.
///
/// # Thread safety
///
/// The guard is `Send`: release is a compare-and-delete of the token on each node, valid from
/// any thread (unlike a pthread mutex, which must be unlocked by the locking thread). It is
/// also `Sync`, since its only mutable state, the deadline, is atomic.
///
/// It is not `Clone`: one acquisition, one release.
///
/// ```compile_fail
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"]).unwrap();
/// let g = factory.create_lock("k").acquire().unwrap();
/// let g2 = g.clone(); // error: RedLockGuard is not Clone
/// ```
///
/// [`RedLock`]: crate::RedLock
/// [`RedLock::acquire`]: crate::RedLock::acquire
/// [`RedLock::try_acquire`]: crate::RedLock::try_acquire
/// [`RedLock::acquire_timeout`]: crate::RedLock::acquire_timeout
#[must_use = "if unused the lock is released immediately"]
#[clippy::has_significant_drop]
pub struct RedLockGuard {
    held: Held,
}

/// What every guard (of a mutex, and of the other synchronizers built on the lease protocol)
/// is made of: a held lease, its factory's runtime, and whether it was already released. It
/// registers keep-alive, answers the lease questions, and releases on drop; the public guards
/// are thin wrappers that document it for their kind.
pub(crate) struct Held {
    pub(crate) lease: Arc<Lease>,
    pub(crate) runtime: Arc<Runtime>,
    /// Set by `release` and `leak`, so that `Drop` does not release again.
    released: bool,
}

impl Held {
    /// Takes charge of a lease just acquired: schedules its keep-alive when asked for.
    pub(crate) fn new(runtime: Arc<Runtime>, lease: Lease) -> Self {
        let lease = Arc::new(lease);
        if lease.options.keep_alive {
            let due = Instant::now() + renew_after(lease.options.ttl);
            let id = runtime
                .keeper
                .add(&runtime.shared, Arc::clone(&lease), Task::Renew, due);
            lease.slot().entry = Some(id);
        }
        Self {
            lease,
            runtime,
            released: false,
        }
    }

    pub(crate) fn token(&self) -> &str {
        self.lease.token.as_str()
    }

    pub(crate) fn validity(&self) -> Duration {
        self.lease.validity()
    }

    pub(crate) fn loss_signal(&self) -> LossSignal {
        self.watch();
        LossSignal {
            lease: Arc::clone(&self.lease),
        }
    }

    pub(crate) fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
        let lease = &self.lease;
        let mut outcome = lock(&lease.outcome);
        if let Some(reason) = outcome.lost {
            drop(outcome);
            callback(reason);
            return;
        }
        if outcome.ended {
            return;
        }
        outcome.callbacks.push(Box::new(callback));
        drop(outcome);
        self.watch();
    }

    /// Makes sure the keeper will notice the loss: kept-alive leases are already scheduled;
    /// others get a watch at their deadline.
    fn watch(&self) {
        let lease = &self.lease;
        let mut slot = lease.slot();
        if slot.live && slot.entry.is_none() {
            let id = self.runtime.keeper.add(
                &self.runtime.shared,
                Arc::clone(lease),
                Task::Watch(LossReason::Expired),
                lease.deadline(),
            );
            slot.entry = Some(id);
        }
    }

    pub(crate) fn extend(&self, ttl: Duration) -> Result<()> {
        self.lease.extend(ttl)
    }

    /// Releases the lease and reports whether it was still held.
    pub(crate) fn release(mut self) -> Result<()> {
        self.released = true;
        self.end()
    }

    /// Gives the lease up without releasing it; returns its token.
    pub(crate) fn leak(mut self) -> String {
        self.released = true;
        self.retire();
        self.lease.mark_ended();
        self.lease.token.as_str().to_owned()
    }

    /// Replaces the lease with the one `f` makes of it (a downgrade), under its round lock: no
    /// extend or renewal runs meanwhile, and none follows on the old lease, which is taken out
    /// of keep-alive and ends without a release round (its loss signal ends). On error the old
    /// lease is over too (`f` released what it could), and a loss the error shows is signalled.
    pub(crate) fn convert(mut self, f: impl FnOnce(&Lease) -> Result<Lease>) -> Result<Self> {
        self.released = true;
        let mut slot = self.lease.slot();
        let result = if slot.live {
            f(&self.lease)
        } else {
            Err(Error::Expired {
                resource: self.lease.resource.to_string(),
            })
        };
        slot.live = false;
        let entry = slot.entry.take();
        drop(slot);
        if let Some(id) = entry {
            self.runtime.keeper.remove(id);
        }
        let result = result.map_err(|e| self.lease.noting_loss(e));
        self.lease.mark_ended();
        result.map(|lease| Self::new(Arc::clone(&self.runtime), lease))
    }

    /// Takes the lease out of keep-alive (waiting for a round under way on it).
    fn retire(&self) {
        if let Some(id) = self.lease.retire() {
            self.runtime.keeper.remove(id);
        }
    }

    /// Retires and releases the lease, and settles its loss signal.
    fn end(&self) -> Result<()> {
        self.retire();
        self.lease.release()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.released
            && let Err(e) = self.end()
        {
            log::warn!(
                "redmutex: releasing {:?} on drop failed: {e}",
                self.lease.resource
            );
        }
    }
}

impl RedLockGuard {
    pub(crate) fn new(runtime: Arc<Runtime>, lease: Lease) -> Self {
        Self {
            held: Held::new(runtime, lease),
        }
    }

    /// The random token stored as the key's value on the nodes (40 hex digits).
    ///
    /// Treat it as a secret capability: anyone with the token can release or extend the lock
    /// ([`RedLock::release_token`](crate::RedLock::release_token)). Do not log it; inspection
    /// shows its [`Fingerprint`](crate::Fingerprint) instead.
    #[must_use]
    pub fn token(&self) -> &str {
        self.held.token()
    }

    /// The resource name (the Redis key).
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.held.lease.resource
    }

    /// The fencing token of this acquisition: strictly greater than every token issued before
    /// for this resource (as long as the nodes keep their data). `None` unless fencing is on
    /// ([`RedLockFactoryBuilder::fencing`](crate::RedLockFactoryBuilder::fencing),
    /// [`RedLock::with_fencing`](crate::RedLock::with_fencing)).
    ///
    /// Pass it with every write to the protected resource, and have the resource reject a write
    /// whose token is smaller than one it has already seen: that keeps a paused, expired holder
    /// from overwriting a newer holder's work, which no lease can prevent.
    #[must_use]
    pub fn fencing_token(&self) -> Option<u64> {
        self.held.lease.fencing
    }

    /// How much of the lease is left: the time during which no other client can hold the lock,
    /// allowing for clock drift. Zero once expired or lost.
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.held.validity()
    }

    /// Whether the lease still has validity left: `validity() > 0`.
    ///
    /// This does not talk to the nodes. With keep-alive, it turns false as soon as a renewal
    /// finds the lock lost; without, a lock deleted from outside is only noticed by the next
    /// [`extend`](Self::extend) or [`release`](Self::release).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        !self.validity().is_zero()
    }

    /// Whether the lock is known to be lost or has run out: `!is_valid()`, as a question.
    ///
    /// This function does not block or touch the network.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        !self.is_valid()
    }

    /// A handle that tells when this lock is lost: [`LossSignal::wait`] blocks until then (or
    /// until the guard is released), [`LossSignal::is_lost`] asks without blocking.
    ///
    /// With keep-alive the signal fires as soon as a renewal finds the lock lost, or the lease
    /// runs out because renewals failed; without keep-alive it fires when the lease runs out
    /// (or when [`extend`](Self::extend) finds it lost). It fires at most once, and never
    /// after a release.
    ///
    /// # What to do on loss
    ///
    /// Stop acting on the protected resource at once: another client may hold the lock now.
    /// Abandon or roll back the work in progress, then drop the guard (its release will report
    /// the loss) and, if the work must go on, acquire the lock again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let factory = redmutex::RedLockFactory::builder()
    /// #     .node("redis://127.0.0.1:7001").keep_alive(true).build()?;
    /// let guard = factory.create_lock("leader").acquire()?;
    /// let lost = guard.loss_signal();
    /// while !lost.is_lost() {
    ///     // ... a slice of leader work ...
    /// #   break;
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    #[must_use]
    pub fn loss_signal(&self) -> LossSignal {
        self.held.loss_signal()
    }

    /// Calls `callback` once if the lock is lost.
    ///
    /// If it already is, the callback runs at once, on the calling thread. Otherwise it runs
    /// when the loss is found, on the factory's callback thread (`redmutex-notify`), one
    /// callback after another. Either way it never runs while the library holds one of its
    /// locks. On the callback thread it may block, panic (the panic is caught and logged) or
    /// drop guards, including this one, without stopping keep-alive; keep it short all the same
    /// (send on a channel, set a flag): the next callback waits for it. It is not called after
    /// a release without loss.
    pub fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
        self.held.on_loss(callback);
    }

    /// Extends the lease so that the nodes hold it at least `ttl` from now.
    ///
    /// This function blocks for one round. It succeeds only if a quorum still held our token and
    /// answered before the current validity ended; then the guard's validity becomes at least
    /// `ttl - round time - drift`. It never shortens the lease: where the nodes already hold it
    /// longer than `ttl`, they keep their expiry (and so does the guard).
    ///
    /// Rounds on one guard never overlap: an `extend` from another thread, or a keep-alive
    /// renewal, waits for the one under way (at most one round). Whatever the outcome, the
    /// guard never believes in a longer lease than a quorum of nodes really holds: a failed or
    /// late round leaves its validity where it was (see `docs/reliability.md`, "Guard vs
    /// nodes").
    ///
    /// # Errors
    ///
    /// - [`Error::Expired`](crate::Error::Expired): the validity had already ended (no round is made), or ended before
    ///   a quorum answered.
    /// - [`Error::LockLost`](crate::Error::LockLost): a quorum no longer holds our token; the guard becomes invalid.
    /// - [`Error::NoQuorum`](crate::Error::NoQuorum): too few nodes answered to tell; the validity is unchanged.
    /// - [`Error::TooLate`](crate::Error::TooLate): the round took the whole new validity; the validity is unchanged.
    /// - [`Error::InvalidConfig`](crate::Error::InvalidConfig): `ttl` is zero, too long, or shorter than the drift allowance.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let guard = factory.create_lock("k").acquire()?;
    /// for batch in 0..10 {
    ///     // ... a slice of long work ...
    ///     guard.extend(Duration::from_secs(10))?;
    /// }
    /// guard.release()?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        self.held.extend(ttl)
    }

    /// Releases the lock and reports whether it was still ours.
    ///
    /// This function blocks for one round. `Ok` means a quorum still held our token until this
    /// release, so no other client can have held the lock in between, even if the release
    /// came after the guard's validity.
    ///
    /// # Errors
    ///
    /// - [`Error::Expired`](crate::Error::Expired): the lease had run out and a quorum no longer had our token: the
    ///   critical section may have overlapped another holder's.
    /// - [`Error::LockLost`](crate::Error::LockLost): the same, although the lease had not run out (the key was deleted
    ///   or overwritten from outside, or a node lost its data).
    /// - [`Error::NoQuorum`](crate::Error::NoQuorum): too few nodes answered to tell; the keys left behind expire with
    ///   their TTL.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let guard = factory.create_lock("k").acquire()?;
    /// // ... critical section ...
    /// if let Err(e) = guard.release() {
    ///     eprintln!("the critical section may have overlapped another holder: {e}");
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn release(self) -> Result<()> {
        self.held.release()
    }

    /// Gives the lease up without releasing it, and returns its token: the lock stays held on
    /// the nodes until its TTL runs out, or until a [`RedLock::release_token`] or
    /// [`RedLock::extend_token`] with this token (from this process or another one). Keep-alive
    /// stops, and the loss signal ends (as after a release).
    ///
    /// This is how a lease crosses a process boundary (like `lock_api`'s `MutexGuard::leak`):
    /// `redmutex acquire` prints the token and exits, and a later `redmutex release` ends the
    /// lock.
    ///
    /// The token is a capability: whoever has it can release or extend the lock. Pass it only
    /// to the code that must end the lease, not through logs or command lines (`ps` shows
    /// them).
    ///
    /// [`RedLock::release_token`]: crate::RedLock::release_token
    /// [`RedLock::extend_token`]: crate::RedLock::extend_token
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let lock = factory.create_lock("deploy");
    /// let token = lock.acquire()?.leak();
    /// // ... later, maybe in another process with the same nodes:
    /// lock.release_token(&token)?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    #[must_use = "the token is the only way to release the lock before its TTL"]
    pub fn leak(self) -> String {
        self.held.leak()
    }
}

impl fmt::Debug for RedLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a capability: not shown.
        f.debug_struct("RedLockGuard")
            .field("resource", &self.resource())
            .field("validity", &self.validity())
            .field("fencing_token", &self.fencing_token())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<RedLockGuard>();
        check::<LossSignal>();
    }
}

/// A handle that learns when a held lock is lost, without touching the network.
///
/// Created by [`RedLockGuard::loss_signal`](crate::RedLockGuard::loss_signal). Cheap to clone,
/// `Send + Sync`; it does not keep the lock held.
#[derive(Clone)]
pub struct LossSignal {
    pub(crate) lease: Arc<Lease>,
}

impl fmt::Debug for LossSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossSignal")
            .field("resource", &self.lease.resource)
            .field("lost", &self.reason())
            .finish()
    }
}

impl LossSignal {
    /// Whether the lock is known to be lost. This function does not block.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        self.reason().is_some()
    }

    /// Why the lock was lost, if it was. This function does not block.
    #[must_use]
    pub fn reason(&self) -> Option<LossReason> {
        lock(&self.lease.outcome).lost
    }

    /// Blocks until the lock is lost (`Some(reason)`) or released without loss (`None`).
    pub fn wait(&self) -> Option<LossReason> {
        let mut outcome = lock(&self.lease.outcome);
        outcome.waiters += 1;
        while outcome.lost.is_none() && !outcome.ended {
            outcome = self
                .lease
                .outcome_changed
                .wait(outcome)
                .unwrap_or_else(PoisonError::into_inner);
        }
        outcome.waiters -= 1;
        outcome.lost
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; `None` also when the time ran out.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<LossReason> {
        let end = Instant::now().checked_add(timeout);
        let mut outcome = lock(&self.lease.outcome);
        outcome.waiters += 1;
        while outcome.lost.is_none() && !outcome.ended {
            let left = match end {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            outcome = self
                .lease
                .outcome_changed
                .wait_timeout(outcome, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        outcome.waiters -= 1;
        outcome.lost
    }
}

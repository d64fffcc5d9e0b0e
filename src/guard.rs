//! `LeaseGuard<K>`: proof of holding a lease of any kind, with the whole lease API written once
//! (token, validity, extend, loss signal, release, leak, hand-over); and `LossSignal`, which
//! tells when a lease is lost. Both are thin handles on the protocol's lease.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::keeper::{Runtime, Task, renew_after};
use crate::kind::kind_name;
use crate::local::Claim;
use crate::protocol::lease::{Lease, LossReason, Target, lock};

/// Proof of holding a lease; releases it when dropped.
///
/// One type for every kind of lease, as `lock_api` has one `MutexGuard` for every raw mutex:
/// [`RedLockGuard`](crate::RedLockGuard) (a lock), [`RwLockReadGuard`](crate::RwLockReadGuard)
/// and [`RwLockWriteGuard`](crate::RwLockWriteGuard) (the sides of a read-write lock),
/// [`SemaphorePermit`](crate::SemaphorePermit), [`MultiLockGuard`](crate::MultiLockGuard),
/// [`LeaderGuard`](crate::LeaderGuard) and [`RunGuard`](crate::RunGuard) are `LeaseGuard<K>` for
/// their [`kind`](crate::kind). The methods below are every guard's; a kind adds its own (a
/// permit's [`slot`](Self::slot), a multi-lock's [`resources`](Self::resources), a writer's
/// [`downgrade`](Self::downgrade), a leader's [`term`](Self::term) and
/// [`proclaim`](Self::proclaim), a run's [`complete`](Self::complete)).
///
/// This structure is created by the acquire family of a [`Handle`](crate::Handle)
/// ([`acquire`](crate::Handle::acquire), [`try_acquire`](crate::Handle::try_acquire),
/// [`acquire_timeout`](crate::Handle::acquire_timeout),
/// [`acquire_with`](crate::Handle::acquire_with)) and by [`RwLock`](crate::RwLock)'s `read` and
/// `write`. It owns everything it needs (the token, the deadline, a handle on the factory's
/// pools), so it is `'static` and borrows nothing.
///
/// Dropping the guard releases the lease, best effort: a failure there can only be logged
/// (`log::warn!`). Call [`release`](Self::release) to learn whether the lease was still yours.
/// Dropping also releases during a panic's unwinding, and never panics itself.
///
/// # A lease
///
/// The lease expires [`validity`](Self::validity) after it was taken, whether or not the guard
/// is alive: check [`is_valid`](Self::is_valid) before acting on the protected resource,
/// [`extend`](Self::extend) the lease in long critical sections (or turn keep-alive on), and
/// watch its [`loss_signal`](Self::loss_signal).
///
/// # Generic over any held lease
///
/// Code that only needs the lease takes `&LeaseGuard<K>` for any `K`:
///
/// ```no_run
/// use std::time::Duration;
/// use redmutex::{LeaseGuard, Result};
///
/// /// Keeps any lease for one more slice of work: extends it when less than `slice` is left.
/// fn keep_for<K>(lease: &LeaseGuard<K>, slice: Duration) -> Result<()> {
///     if lease.validity() < slice {
///         lease.extend(slice * 2)?;
///     }
///     Ok(())
/// }
///
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
/// let slice = Duration::from_secs(5);
/// let lock = factory.create_lock("report");
/// let guard = lock.acquire()?;
/// keep_for(&guard, slice)?;
/// let read = factory.create_rwlock("catalog").read()?;
/// keep_for(&read, slice)?;
/// let write = factory.create_rwlock("prices").write()?;
/// keep_for(&write, slice)?;
/// let permit = factory.create_semaphore("encoders", 2).acquire()?;
/// keep_for(&permit, slice)?;
/// let both = factory.create_multi_lock(["seat:1", "seat:2"]).acquire()?;
/// keep_for(&both, slice)?;
/// # Ok::<(), redmutex::Error>(())
/// ```
///
/// # Thread safety
///
/// The guard is `Send`: release is a compare-and-delete of the token on each node, valid from
/// any thread (unlike a pthread mutex, which must be unlocked by the locking thread). It is
/// also `Sync`, since its only mutable state, the deadline, is atomic, and rounds on one lease
/// are serialised.
///
/// The library keeps track of which thread a read guard counts for, to refuse a wait that its
/// own read lease would block ([`Error::WouldDeadlock`]): the thread that acquired it, until
/// the guard is used on another thread or [handed over](Self::hand_over). See
/// [`hand_over`](Self::hand_over) for what that cannot see.
///
/// It is not `Clone`: one acquisition, one release.
///
/// ```compile_fail
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"]).unwrap();
/// let g = factory.create_lock("k").acquire().unwrap();
/// let g2 = g.clone(); // error: a guard is not Clone
/// ```
#[must_use = "if unused the lease is released immediately"]
#[clippy::has_significant_drop]
pub struct LeaseGuard<K> {
    held: Held,
    kind: PhantomData<fn() -> K>,
}

/// What every guard is made of: a held lease, its factory's runtime, the thread it counts for,
/// and whether it was already released. It registers keep-alive, answers the lease questions,
/// and releases on drop.
struct Held {
    lease: Arc<Lease>,
    runtime: Arc<Runtime>,
    claim: Claim,
    /// Set by `release`, `leak` and `convert`, so that `Drop` does not release again.
    released: bool,
}

impl Held {
    /// Takes charge of a lease just acquired: counts it for this thread and schedules its
    /// keep-alive when asked for.
    fn new(runtime: Arc<Runtime>, lease: Lease) -> Self {
        let lease = Arc::new(lease);
        if lease.options.keep_alive {
            let due = Instant::now() + renew_after(lease.options.ttl);
            let id = runtime
                .keeper
                .add(&runtime.shared, Arc::clone(&lease), Task::Renew, due);
            lease.slot().entry = Some(id);
        }
        Self {
            claim: Claim::new(&lease),
            lease,
            runtime,
            released: false,
        }
    }

    /// The lease, for a use of the guard (which tells the thread registry where it is).
    fn lease(&self) -> &Lease {
        self.claim.touch(&self.lease);
        &self.lease
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

    /// The guard is done with: no longer counted for a thread, nor released on drop.
    fn finish(&mut self) {
        self.released = true;
        self.claim.end(&self.lease);
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
        if self.released {
            return;
        }
        self.claim.end(&self.lease);
        if let Err(e) = self.end() {
            log::warn!(
                "redmutex: releasing {:?} on drop failed: {e}",
                self.lease.resource
            );
        }
    }
}

impl<K> LeaseGuard<K> {
    pub(crate) fn new(runtime: Arc<Runtime>, lease: Lease) -> Self {
        Self {
            held: Held::new(runtime, lease),
            kind: PhantomData,
        }
    }

    /// The protocol's lease, for what a kind adds to its guard.
    pub(crate) fn lease(&self) -> &Lease {
        self.held.lease()
    }

    /// Replaces the lease with the one `f` makes of it (a downgrade), under its round lock: no
    /// extend or renewal runs meanwhile, and none follows on the old lease, which is taken out
    /// of keep-alive and ends without a release round (its loss signal ends). On error the old
    /// lease is over too (`f` released what it could), and a loss the error shows is signalled.
    /// The new guard counts for the calling thread.
    pub(crate) fn convert<J>(
        mut self,
        f: impl FnOnce(&Lease) -> Result<Lease>,
    ) -> Result<LeaseGuard<J>> {
        let held = &mut self.held;
        held.finish();
        let mut slot = held.lease.slot();
        let result = if slot.live {
            f(&held.lease)
        } else {
            Err(Error::Expired {
                resource: held.lease.resource.to_string(),
            })
        };
        slot.live = false;
        let entry = slot.entry.take();
        drop(slot);
        if let Some(id) = entry {
            held.runtime.keeper.remove(id);
        }
        let result = result.map_err(|e| held.lease.noting_loss(e));
        held.lease.mark_ended();
        result.map(|lease| LeaseGuard::new(Arc::clone(&held.runtime), lease))
    }

    /// Ends the guard with the kind's own last round instead of a release (a run's
    /// completion): keep-alive stops, and the round runs under the lease's round lock; its
    /// outcome is judged as a release's (a loss it shows is signalled).
    pub(crate) fn end_with<T>(mut self, f: impl FnOnce(&Lease) -> Result<T>) -> Result<T> {
        let held = &mut self.held;
        held.finish();
        held.retire();
        held.lease.end_with(f)
    }

    /// The random token stored as the lease's value on the nodes (40 hex digits).
    ///
    /// Treat it as a secret capability: anyone with the token can release or extend the lease
    /// ([`Handle::release_token`](crate::Handle::release_token)). Do not log it; inspection
    /// shows its [`Fingerprint`](crate::Fingerprint) instead.
    #[must_use]
    pub fn token(&self) -> &str {
        self.held.lease().token.as_str()
    }

    /// The name the lease was taken on: a lock's resource (its Redis key), a read-write lock's
    /// or a semaphore's name (which every key of it starts with), or a multi-lock's resources
    /// as one name (`[a, b]`). Errors, logs and events use the same name.
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.held.lease().resource
    }

    /// The fencing token of this acquisition: strictly greater than every token issued before
    /// for this name (as long as the nodes keep their data). `None` unless fencing is on
    /// ([`RedLockFactoryBuilder::fencing`](crate::RedLockFactoryBuilder::fencing),
    /// [`Handle::with_fencing`](crate::Handle::with_fencing)), and always `None` for a reader or
    /// a permit: a token orders the exclusive holders of a name, and those share it (see
    /// [`Fenced`](crate::kind::Fenced)).
    ///
    /// Pass it with every write to the protected resource, and have the resource reject a write
    /// whose token is smaller than one it has already seen: that keeps a paused, expired holder
    /// from overwriting a newer holder's work, which no lease can prevent. A write lock's token
    /// and a lock's on the same name come from one counter; a multi-lock's is above every
    /// counter of its resources, and raises each of them.
    #[must_use]
    pub fn fencing_token(&self) -> Option<u64> {
        self.held.lease().fencing
    }

    /// How much of the lease is left: the time during which no holder the lease excludes can
    /// hold it, allowing for clock drift (for a permit: during which it counts against the
    /// semaphore for sure). Zero once expired or lost.
    ///
    /// This function does not block or touch the network. Whatever happens to the rounds on
    /// the lease (failed, late, overlapping, racing a keep-alive renewal), it never exceeds what
    /// a quorum of nodes really holds (see `docs/reliability.md`, "Guard vs nodes").
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.held.lease().validity()
    }

    /// Whether the lease still has validity left: `validity() > 0`.
    ///
    /// This function does not block or touch the network. With keep-alive, it turns false as
    /// soon as a renewal finds the lease lost; without, a lease deleted from outside is only
    /// noticed by the next [`extend`](Self::extend) or [`release`](Self::release).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        !self.validity().is_zero()
    }

    /// Whether the lease is known to be lost or has run out.
    #[deprecated(
        since = "0.2.0",
        note = "the same answer as `!is_valid()`; for the loss as an event, see `loss_signal()`"
    )]
    #[must_use]
    pub fn is_lost(&self) -> bool {
        !self.is_valid()
    }

    /// A handle that tells when this lease is lost: [`LossSignal::is_lost`] asks without
    /// blocking, [`LossSignal::wait`] blocks until then (or until the guard is released), and
    /// [`LossSignal::on_loss`] calls back.
    ///
    /// With keep-alive the signal fires as soon as a renewal finds the lease lost, or the lease
    /// runs out because renewals failed; without keep-alive it fires when the lease runs out
    /// (or when [`extend`](Self::extend) finds it lost). It fires at most once, and never
    /// after a release. A write guard's signal ends at its [`downgrade`](Self::downgrade) (the
    /// read guard has its own).
    ///
    /// # What to do on loss
    ///
    /// Stop acting on the protected resource at once: another client may hold it now. Abandon
    /// or roll back the work in progress, then drop the guard (its release will report the
    /// loss) and, if the work must go on, acquire the lease again.
    ///
    /// # Examples
    ///
    /// ```no_run
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
        let held = &self.held;
        held.claim.touch(&held.lease);
        held.watch();
        LossSignal {
            lease: Arc::clone(&held.lease),
        }
    }

    /// Calls `callback` once if the lease is lost: the same as
    /// [`loss_signal().on_loss(callback)`](LossSignal::on_loss).
    #[deprecated(
        since = "0.2.0",
        note = "use `loss_signal().on_loss(callback)`: one way to learn of a loss, the signal"
    )]
    pub fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
        self.loss_signal().on_loss(callback);
    }

    /// Extends the lease so that the nodes hold it at least `ttl` from now.
    ///
    /// This function blocks for one round. It succeeds only if a quorum still held our token and
    /// answered before the current validity ended; then the guard's validity becomes at least
    /// `ttl - round time - drift`. It never shortens the lease: where the nodes already hold it
    /// longer than `ttl`, they keep their expiry (and so does the guard). It extends this lease
    /// only: a reader's extension leaves the other readers' leases as they are, a multi-lock's
    /// counts a node only if it holds every resource with our token.
    ///
    /// Rounds on one guard never overlap: an `extend` from another thread, or a keep-alive
    /// renewal, waits for the one under way (at most one round). Whatever the outcome, the
    /// guard never believes in a longer lease than a quorum of nodes really holds: a failed or
    /// late round leaves its validity where it was (see `docs/reliability.md`, "Guard vs
    /// nodes").
    ///
    /// # Errors
    ///
    /// - [`Error::Expired`]: the validity had already ended (no round is made), or ended before
    ///   a quorum answered.
    /// - [`Error::LockLost`]: a quorum no longer holds our token; the guard becomes invalid.
    /// - [`Error::NoQuorum`]: too few nodes answered to tell; the validity is unchanged.
    /// - [`Error::TooLate`]: the round took the whole new validity; the validity is unchanged.
    /// - [`Error::InvalidConfig`]: `ttl` is zero, too long, or shorter than the drift
    ///   allowance.
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
        self.held.lease().extend(ttl)
    }

    /// Releases the lease and reports whether it was still ours.
    ///
    /// This function blocks for one round. `Ok` means a quorum still held our token until this
    /// release, so no holder the lease excludes can have held it in between, even if the
    /// release came after the guard's validity. The release wakes those waiting (the last
    /// reader out wakes the writers; a permit's release tells a waiter which slot it freed).
    ///
    /// # Errors
    ///
    /// - [`Error::Expired`]: the lease had run out and a quorum no longer had our token: the
    ///   critical section may have overlapped another holder's.
    /// - [`Error::LockLost`]: the same, although the lease had not run out (the key was deleted
    ///   or overwritten from outside, or a node lost its data).
    /// - [`Error::NoQuorum`]: too few nodes answered to tell; the keys left behind expire with
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
    pub fn release(mut self) -> Result<()> {
        self.held.finish();
        self.held.end()
    }

    /// Gives the lease up without releasing it, and returns its token: the lease stays held on
    /// the nodes until its TTL runs out, or until a
    /// [`release_token`](crate::Handle::release_token) or
    /// [`extend_token`](crate::Handle::extend_token) with this token, on a handle of the same
    /// kind and name (from this process or another one). Keep-alive stops, and the loss signal
    /// ends (as after a release).
    ///
    /// This is how a lease crosses a process boundary (like `lock_api`'s `MutexGuard::leak`):
    /// `redmutex acquire` prints the token and exits, and a later `redmutex release` ends the
    /// lease.
    ///
    /// The token is a capability: whoever has it can release or extend the lease. Pass it only
    /// to the code that must end the lease, not through logs or command lines (`ps` shows
    /// them).
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
    #[must_use = "the token is the only way to release the lease before its TTL"]
    pub fn leak(mut self) -> String {
        let held = &mut self.held;
        held.finish();
        held.retire();
        held.lease.mark_ended();
        held.lease.token.as_str().to_owned()
    }

    /// Hands the guard over: from now on it counts for no thread, so that a wait by this thread
    /// for a lease the guard blocks waits (for whichever thread ends up releasing the guard)
    /// instead of failing with [`Error::WouldDeadlock`]. Call it before moving a read guard to
    /// another thread (`tx.send(guard.hand_over())`); for the other kinds it changes nothing.
    ///
    /// Why it is needed: a thread that holds a read guard and asks to wait for a lease that
    /// excludes readers of the name (the write lock, a lock, a semaphore of the name, a
    /// multi-lock containing it) would wait for itself (forever, with keep-alive), so that wait
    /// is refused at once ([`Error::WouldDeadlock`]). The library knows which thread a guard
    /// counts for only when the guard is made and when it is used: a guard used on another
    /// thread (any method, its release, its drop) stops counting for any thread by itself. But
    /// moving a guard runs no code, so a guard sent to another thread and not used there yet
    /// still counts for the sender, whose waits for it would be refused: hand it over first. A
    /// thread that received a read guard and waits for a lease that guard blocks is not caught:
    /// it waits for itself, as a thread that asks again for a lock it holds does (a lock is not
    /// reentrant).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let catalog = factory.create_rwlock("catalog");
    /// let reader = catalog.read()?.hand_over();
    /// let worker = std::thread::spawn(move || {
    ///     // ... read the catalog ...
    ///     drop(reader);
    /// });
    /// let writer = catalog.write()?; // waits for the worker's reader, not refused
    /// # drop(writer); worker.join().unwrap();
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn hand_over(self) -> Self {
        self.held.claim.end(&self.held.lease);
        self
    }
}

impl<K> fmt::Debug for LeaseGuard<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a capability: not shown.
        let lease = self.lease();
        let mut d = f.debug_struct(&format!("LeaseGuard<{}>", kind_name::<K>()));
        d.field("resource", &lease.resource)
            .field("validity", &lease.validity());
        match &lease.target {
            Target::Permit { slot, .. } => d.field("slot", slot),
            Target::Multi(resources) => d.field("resources", resources),
            Target::Leader(published) => d.field("value", &published.value()),
            Target::Run { epoch, .. } => d.field("epoch", epoch),
            Target::Mutex | Target::Reader => &mut d,
        };
        d.field("fencing_token", &lease.fencing)
            .finish_non_exhaustive()
    }
}

/// A handle that learns when a held lease is lost, without touching the network.
///
/// Created by [`LeaseGuard::loss_signal`]. Cheap to clone, `Send + Sync`; it does not keep the
/// lease held. The one way to learn of a loss, in three forms: ask ([`is_lost`](Self::is_lost),
/// [`reason`](Self::reason)), block ([`wait`](Self::wait), [`wait_timeout`](Self::wait_timeout)),
/// or be called back ([`on_loss`](Self::on_loss)).
#[derive(Clone)]
pub struct LossSignal {
    lease: Arc<Lease>,
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
    /// Whether the lease is known to be lost. This function does not block.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        self.reason().is_some()
    }

    /// Why the lease was lost, if it was. This function does not block.
    #[must_use]
    pub fn reason(&self) -> Option<LossReason> {
        lock(&self.lease.outcome).lost
    }

    /// Blocks until the lease is lost (`Some(reason)`) or released without loss (`None`).
    pub fn wait(&self) -> Option<LossReason> {
        self.wait_timeout(Duration::MAX)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; `None` also when the time ran out.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<LossReason> {
        let mut outcome = lock(&self.lease.outcome);
        outcome.waiters += 1;
        let (mut outcome, _) = self
            .lease
            .outcome_changed
            .wait_timeout_while(outcome, timeout, |o| o.lost.is_none() && !o.ended)
            .unwrap_or_else(PoisonError::into_inner);
        outcome.waiters -= 1;
        outcome.lost
    }

    /// Calls `callback` once if the lease is lost.
    ///
    /// If it already is, the callback runs at once, on the calling thread. Otherwise it runs
    /// when the loss is found, on the factory's callback thread (`redmutex-notify`), one
    /// callback after another. Either way it never runs while the library holds one of its
    /// locks. On the callback thread it may block, panic (the panic is caught and logged) or
    /// drop guards, including this lease's, without stopping keep-alive; keep it short all the
    /// same (send on a channel, set a flag): the next callback waits for it. It is not called
    /// after a release without loss.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    /// # let factory = redmutex::RedLockFactory::builder()
    /// #     .node("redis://127.0.0.1:7001").keep_alive(true).build()?;
    /// let guard = factory.create_lock("leader").acquire()?;
    /// let (tx, lost) = mpsc::channel();
    /// guard.loss_signal().on_loss(move |reason| {
    ///     let _ = tx.send(reason);
    /// });
    /// // ... work, checking `lost.try_recv()` between steps ...
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
        let mut outcome = lock(&self.lease.outcome);
        if let Some(reason) = outcome.lost {
            drop(outcome);
            callback(reason);
            return;
        }
        if outcome.ended {
            return;
        }
        outcome.callbacks.push(Box::new(callback));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind;

    #[test]
    fn guards_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<LeaseGuard<kind::Lock>>();
        check::<LeaseGuard<kind::Read>>();
        check::<LeaseGuard<kind::Write>>();
        check::<LeaseGuard<kind::Permit>>();
        check::<LeaseGuard<kind::Multi>>();
        check::<LossSignal>();
    }
}

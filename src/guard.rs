//! `RedLockGuard`: proof of holding a lock, with the token, the deadline and the release.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::command::Arg;
use crate::error::{Error, Result};
use crate::factory::{Shared, check_ttl};
use crate::keeper::{Task, renew_after};
use crate::lease::{Lease, LossReason, LossSignal, Token, lock};
use crate::round::{self, Tally, int_reply, release_reply, script_round};
use crate::scripts;

/// Runs the compare-and-delete script for `token` on the nodes in `mask`; `announce` wakes the
/// waiters (a held lock's release), or not (a failed attempt's take-back). A yes vote's number
/// is 1 when clients were waiting and were told.
pub(crate) fn release_round(
    shared: &Shared,
    resource: &str,
    token: &Token,
    mask: u64,
    announce: bool,
) -> Tally {
    let keys = [
        Arg::Str(resource),
        Arg::Prefixed(scripts::WAITING_PREFIX, resource),
    ];
    let args = [
        Arg::Str(token.as_str()),
        Arg::Str(scripts::RELEASE_CHANNEL),
        Arg::Str(if announce { "1" } else { "0" }),
    ];
    script_round(shared, &scripts::RELEASE, &keys, &args, mask, release_reply)
}

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
    lease: Arc<Lease>,
    /// Set by `release`, so that `Drop` does not release again.
    released: bool,
}

impl Lease {
    fn release(&self) -> Result<()> {
        let shared = &*self.shared;
        let start = Instant::now();
        let tally = release_round(shared, &self.resource, &self.token, shared.all, true);
        let took = start.elapsed();
        let q = shared.config.quorum;
        log::debug!(
            "redmutex: release {:?}: {}/{} deleted, {} failed",
            self.resource,
            tally.yes,
            shared.nodes.len(),
            tally.failures.len()
        );
        // Our token on a quorum means those nodes held it without a break (nobody else can
        // write our token, and an expired key is gone), so nobody else held the lock meanwhile.
        if tally.yes >= q {
            if tally.aux > 0 {
                shared.waker.released_to_waiters(&self.resource, took);
            }
            return Ok(());
        }
        Err(self.noting_loss(self.failure(tally)))
    }

    /// Judges an extension round for `ttl` that ran `elapsed` and ended at `end`, begun while
    /// the validity ran to `old_deadline`: on success moves the deadline to `end + validity`
    /// (the new expiries were set after the round began, so the lease runs to
    /// `start + ttl - drift`). Used by [`RedLockGuard::extend`] and the keep-alive thread.
    ///
    /// It marks nothing lost: callers do (see [`noting_loss`](Self::noting_loss)), outside any
    /// lock, since loss callbacks run user code.
    pub(crate) fn extended(
        &self,
        tally: Tally,
        ttl: Duration,
        elapsed: Duration,
        end: Instant,
        old_deadline: Instant,
    ) -> Result<()> {
        let shared = &*self.shared;
        if tally.yes < shared.config.quorum {
            return Err(self.failure(tally));
        }
        if end >= old_deadline {
            return Err(Error::Expired {
                resource: self.resource.to_string(),
            });
        }
        let drift = round::drift(ttl, shared.config.drift_factor);
        let Some(validity) = round::validity(ttl, elapsed, drift) else {
            return Err(Error::TooLate {
                resource: self.resource.to_string(),
                elapsed,
            });
        };
        self.set_deadline(end.checked_add(validity).unwrap_or(end));
        Ok(())
    }

    /// Marks the lease lost if `e` says it is, and hands `e` back.
    pub(crate) fn noting_loss(&self, e: Error) -> Error {
        match e {
            Error::LockLost { .. } => self.mark_lost(LossReason::TokenGone),
            Error::Expired { .. } => self.mark_lost(LossReason::Expired),
            _ => {}
        }
        e
    }

    /// Whether the lease ended by running out (rather than by its token disappearing).
    fn ran_out(&self) -> bool {
        match lock(&self.outcome).lost {
            Some(reason) => reason != LossReason::TokenGone,
            None => Instant::now() >= self.deadline(),
        }
    }

    /// The error for a round in which too few nodes said yes.
    fn failure(&self, tally: Tally) -> Error {
        let shared = &*self.shared;
        let q = shared.config.quorum;
        if tally.yes + tally.failures.len() >= q {
            // The nodes that failed might still hold our token: we cannot tell.
            Error::NoQuorum {
                resource: self.resource.to_string(),
                answered: tally.answered(),
                needed: q,
                nodes: shared.nodes.len(),
                failures: tally.failures,
            }
        } else if self.ran_out() {
            Error::Expired {
                resource: self.resource.to_string(),
            }
        } else {
            Error::LockLost {
                resource: self.resource.to_string(),
            }
        }
    }

    /// Takes the lease out of keep-alive (waiting for a renewal under way to finish), so the
    /// release round that follows never races a renewal.
    fn retire(&self) {
        let entry = {
            let mut live = lock(&self.live);
            live.live = false;
            live.entry.take()
        };
        if let Some(id) = entry {
            self.shared.keeper.remove(id);
        }
    }

    /// Makes sure the keeper will notice the loss: kept-alive leases are already scheduled;
    /// others get a watch at their deadline.
    fn watch(self: &Arc<Self>) {
        let mut live = lock(&self.live);
        if live.live && live.entry.is_none() {
            let id = self.shared.keeper.add(
                &self.shared,
                Arc::clone(self),
                Task::Watch(LossReason::Expired),
                self.deadline(),
            );
            live.entry = Some(id);
        }
    }
}

impl RedLockGuard {
    pub(crate) fn new(lease: Lease) -> Self {
        let lease = Arc::new(lease);
        if lease.options.keep_alive {
            let due = Instant::now() + renew_after(lease.options.ttl);
            let shared = &lease.shared;
            let id = shared
                .keeper
                .add(shared, Arc::clone(&lease), Task::Renew, due);
            lock(&lease.live).entry = Some(id);
        }
        Self {
            lease,
            released: false,
        }
    }

    /// The random token stored as the key's value on the nodes (40 hex digits).
    ///
    /// Treat it as a secret capability: anyone with the token can release or extend the lock.
    #[must_use]
    pub fn token(&self) -> &str {
        self.lease.token.as_str()
    }

    /// The resource name (the Redis key).
    #[must_use]
    pub fn resource(&self) -> &str {
        &self.lease.resource
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
        self.lease.fencing
    }

    /// How much of the lease is left: the time during which no other client can hold the lock,
    /// allowing for clock drift. Zero once expired or lost.
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.lease.validity()
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
        self.lease.watch();
        LossSignal {
            lease: Arc::clone(&self.lease),
        }
    }

    /// Calls `callback` once if the lock is lost (at once, on this thread, if it already is).
    ///
    /// The callback runs on the factory's keep-alive thread (or on the thread that found the
    /// loss): keep it short, e.g. send on a channel or set a flag. It is not called after a
    /// release without loss.
    pub fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
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
        lease.watch();
    }

    /// Extends the lease so that it runs `ttl` from now.
    ///
    /// This function blocks for one round. It succeeds only if a quorum still held our token and
    /// answered before the current validity ended; then the guard's validity becomes
    /// `ttl - round time - drift`. On failure the keys that were extended keep their new expiry
    /// until released.
    ///
    /// # Errors
    ///
    /// - [`Error::Expired`]: the validity had already ended (no round is made), or ended before
    ///   a quorum answered.
    /// - [`Error::LockLost`]: a quorum no longer holds our token; the guard becomes invalid.
    /// - [`Error::NoQuorum`]: too few nodes answered to tell.
    /// - [`Error::TooLate`]: the round took the whole new validity.
    /// - [`Error::InvalidConfig`]: `ttl` is zero, too long, or shorter than the drift allowance.
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
        let held = &*self.lease;
        let shared = &*held.shared;
        check_ttl("extension", ttl, shared.config.drift_factor)?;
        let old_deadline = held.deadline();
        let start = Instant::now();
        if start >= old_deadline {
            return Err(held.noting_loss(Error::Expired {
                resource: held.resource.to_string(),
            }));
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let keys = [Arg::Str(&held.resource)];
        let args = [Arg::Str(held.token.as_str()), Arg::Int(ttl_ms)];
        let tally = script_round(
            shared,
            &scripts::EXTEND,
            &keys,
            &args,
            shared.all,
            int_reply,
        );
        let end = Instant::now();
        let elapsed = end - start;
        log::debug!(
            "redmutex: extend {:?}: {}/{} extended, {} failed, {elapsed:?}",
            held.resource,
            tally.yes,
            shared.nodes.len(),
            tally.failures.len()
        );
        held.extended(tally, ttl, elapsed, end, old_deadline)
            .map_err(|e| held.noting_loss(e))
    }

    /// Releases the lock and reports whether it was still ours.
    ///
    /// This function blocks for one round. `Ok` means a quorum still held our token until this
    /// release, so no other client can have held the lock in between, even if the release
    /// came after the guard's validity.
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
        self.released = true;
        end(&self.lease)
    }
}

/// Retires and releases a lease, and settles its loss signal.
fn end(lease: &Lease) -> Result<()> {
    lease.retire();
    let result = lease.release();
    // A loss was signalled by `release` itself; otherwise waiters learn the lease ended.
    lease.mark_ended();
    result
}

impl Drop for RedLockGuard {
    fn drop(&mut self) {
        if !self.released
            && let Err(e) = end(&self.lease)
        {
            log::warn!(
                "redmutex: releasing {:?} on drop failed: {e}",
                self.lease.resource
            );
        }
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
    fn tokens_are_160_bit_hex_and_distinct() {
        let a = Token::new();
        let b = Token::new();
        assert_eq!(a.as_str().len(), 40);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a.as_str(), b.as_str());
        let many: std::collections::HashSet<String> = (0..10_000)
            .map(|_| Token::new().as_str().to_owned())
            .collect();
        assert_eq!(many.len(), 10_000);
    }

    #[test]
    fn guard_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<RedLockGuard>();
    }
}

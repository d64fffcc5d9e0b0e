//! `RedLockGuard`: proof of holding a lock, with the token, the deadline and the release.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use rand::{Rng, TryRng};

use crate::error::{Error, Result};
use crate::factory::{Shared, check_ttl};
use crate::round::{self, Fallback, Tally, fan_out, int_reply};
use crate::scripts;

/// Random bytes in a token: 160 bits, as the Redlock page suggests (20 bytes of /dev/urandom).
const TOKEN_BYTES: usize = 20;

/// A lock token: 160 bits from the OS's CSPRNG, as 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token([u8; TOKEN_BYTES * 2]);

impl Token {
    pub(crate) fn new() -> Self {
        let mut raw = [0u8; TOKEN_BYTES];
        // Straight from the OS (getrandom): one syscall, and unlike a user-space generator it
        // cannot repeat itself in a forked child. Should the OS fail, ThreadRng (ChaCha12,
        // seeded from the OS) is still a CSPRNG.
        if SysRng.try_fill_bytes(&mut raw).is_err() {
            rand::rng().fill_bytes(&mut raw);
        }
        let digit = |n: u8| if n < 10 { b'0' + n } else { b'a' + n - 10 };
        let mut hex = [0u8; TOKEN_BYTES * 2];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(raw) {
            pair.copy_from_slice(&[digit(byte >> 4), digit(byte & 15)]);
        }
        Self(hex)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Runs the compare-and-delete script for `token` on the nodes in `mask`.
pub(crate) fn release_round(shared: &Shared, resource: &str, token: &Token, mask: u64) -> Tally {
    let script = &*scripts::RELEASE;
    let packed = redis::cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(1)
        .arg(resource)
        .arg(token.as_str())
        .get_packed_command();
    let args: [&[u8]; 1] = [token.as_str().as_bytes()];
    let fallback = Fallback {
        script,
        key: resource,
        args: &args,
    };
    fan_out(shared, &packed, mask, int_reply, Some(&fallback))
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
    /// `None` once released.
    held: Option<Held>,
}

struct Held {
    shared: Arc<Shared>,
    resource: Arc<str>,
    token: Token,
    /// Reference point of `deadline`.
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the validity ends.
    deadline: AtomicU64,
    /// Set once a round found that a quorum no longer holds our token.
    lost: AtomicBool,
}

impl Held {
    fn deadline(&self) -> Instant {
        if self.lost.load(Ordering::Acquire) {
            return self.epoch;
        }
        let nanos = self.deadline.load(Ordering::Acquire);
        self.epoch
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.epoch)
    }

    fn set_deadline(&self, deadline: Instant) {
        let nanos = deadline.saturating_duration_since(self.epoch).as_nanos();
        self.deadline
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    }

    fn release(&self) -> Result<()> {
        let shared = &*self.shared;
        let tally = release_round(shared, &self.resource, &self.token, shared.all);
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
            return Ok(());
        }
        Err(self.failure(tally))
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
        } else if !self.lost.load(Ordering::Acquire) && Instant::now() >= self.deadline() {
            Error::Expired {
                resource: self.resource.to_string(),
            }
        } else {
            if !self.lost.swap(true, Ordering::AcqRel) {
                log::warn!("redmutex: lost the lock on {:?}", self.resource);
            }
            Error::LockLost {
                resource: self.resource.to_string(),
            }
        }
    }
}

impl RedLockGuard {
    pub(crate) fn new(
        shared: Arc<Shared>,
        resource: Arc<str>,
        token: Token,
        deadline: Instant,
    ) -> Self {
        let epoch = Instant::now().min(deadline);
        let held = Held {
            shared,
            resource,
            token,
            epoch,
            deadline: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        };
        held.set_deadline(deadline);
        Self { held: Some(held) }
    }

    fn held(&self) -> Option<&Held> {
        self.held.as_ref()
    }

    /// The random token stored as the key's value on the nodes (40 hex digits).
    ///
    /// Treat it as a secret capability: anyone with the token can release or extend the lock.
    #[must_use]
    pub fn token(&self) -> &str {
        self.held().map_or("", |h| h.token.as_str())
    }

    /// The resource name (the Redis key).
    #[must_use]
    pub fn resource(&self) -> &str {
        self.held().map_or("", |h| &h.resource)
    }

    /// How much of the lease is left: the time during which no other client can hold the lock,
    /// allowing for clock drift. Zero once expired or lost.
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.held().map_or(Duration::ZERO, |h| {
            h.deadline().saturating_duration_since(Instant::now())
        })
    }

    /// Whether the lease still has validity left: `validity() > 0`.
    ///
    /// This does not talk to the nodes; a lock deleted from outside is only noticed by the next
    /// [`extend`](Self::extend) or [`release`](Self::release).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        !self.validity().is_zero()
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
        let Some(held) = self.held() else {
            return Ok(());
        };
        let shared = &*held.shared;
        check_ttl("extension", ttl, shared.config.drift_factor)?;
        let old_deadline = held.deadline();
        let start = Instant::now();
        if start >= old_deadline {
            return Err(Error::Expired {
                resource: held.resource.to_string(),
            });
        }
        let script = &*scripts::EXTEND;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let packed = redis::cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(1)
            .arg(&*held.resource)
            .arg(held.token.as_str())
            .arg(ttl_ms)
            .get_packed_command();
        let ms = ttl_ms.to_string();
        let args: [&[u8]; 2] = [held.token.as_str().as_bytes(), ms.as_bytes()];
        let fallback = Fallback {
            script,
            key: &held.resource,
            args: &args,
        };
        let tally = fan_out(shared, &packed, shared.all, int_reply, Some(&fallback));
        let end = Instant::now();
        let elapsed = end - start;
        log::debug!(
            "redmutex: extend {:?}: {}/{} extended, {} failed, {elapsed:?}",
            held.resource,
            tally.yes,
            shared.nodes.len(),
            tally.failures.len()
        );
        if tally.yes < shared.config.quorum {
            return Err(held.failure(tally));
        }
        if end >= old_deadline {
            return Err(Error::Expired {
                resource: held.resource.to_string(),
            });
        }
        let drift = round::drift(ttl, shared.config.drift_factor);
        let Some(validity) = round::validity(ttl, elapsed, drift) else {
            return Err(Error::TooLate {
                resource: held.resource.to_string(),
                elapsed,
            });
        };
        // The new expiries were set after `start`: the lease runs to `start + ttl - drift`,
        // which is `end + validity`.
        held.set_deadline(end.checked_add(validity).unwrap_or(end));
        Ok(())
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
        match self.held.take() {
            Some(held) => held.release(),
            None => Ok(()),
        }
    }
}

impl Drop for RedLockGuard {
    fn drop(&mut self) {
        if let Some(held) = self.held.take()
            && let Err(e) = held.release()
        {
            log::warn!(
                "redmutex: releasing {:?} on drop failed: {e}",
                held.resource
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

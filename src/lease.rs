//! The state of one held lock, shared by its guard, the keep-alive thread and loss signals.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use rand::{Rng, TryRng};

use crate::factory::Shared;

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

/// Why a held lock was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// The lease ran out: no renewal reached a quorum in time (nodes failing or too slow), or
    /// nobody renewed it.
    Expired,
    /// A quorum no longer holds our token: the key was deleted or overwritten from outside, or
    /// a node lost its data.
    TokenGone,
    /// Keep-alive stopped renewing at the configured maximum hold time, and the lease then ran
    /// out.
    HoldLimit,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "the lease expired",
            Self::TokenGone => "a quorum no longer holds our token",
            Self::HoldLimit => "the maximum hold time was reached",
        })
    }
}

/// A callback run once when the lock is lost.
pub(crate) type LossCallback = Box<dyn FnOnce(LossReason) + Send + 'static>;

/// What becomes of a lease, seen by those waiting for its loss.
#[derive(Default)]
pub(crate) struct Outcome {
    /// `Some` once lost.
    pub(crate) lost: Option<LossReason>,
    /// Set once released (or dropped) without loss: waiters stop waiting.
    pub(crate) ended: bool,
    /// Threads blocked in `LossSignal::wait*`: notify only when there are some (a notify is a
    /// system call even with nobody waiting).
    pub(crate) waiters: usize,
    pub(crate) callbacks: Vec<LossCallback>,
}

/// Per-lease settings chosen when the lock was acquired.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseOptions {
    /// The lease time used for renewals.
    pub(crate) ttl: Duration,
    /// Renew automatically.
    pub(crate) keep_alive: bool,
    /// With keep-alive: stop renewing at this instant.
    pub(crate) hold_until: Option<Instant>,
}

/// Whether a lease is still held, and its keep-alive entry.
#[derive(Debug)]
pub(crate) struct Live {
    /// False once released or dropped.
    pub(crate) live: bool,
    /// The keeper entry renewing or watching this lease.
    pub(crate) entry: Option<u64>,
}

/// One held lock.
pub(crate) struct Lease {
    pub(crate) shared: Arc<Shared>,
    pub(crate) resource: Arc<str>,
    pub(crate) token: Token,
    pub(crate) fencing: Option<u64>,
    pub(crate) options: LeaseOptions,
    /// Reference point of `deadline`.
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the validity ends.
    deadline: AtomicU64,
    /// Set once a round found that a quorum no longer holds our token, or the keep-alive gave
    /// up.
    lost: AtomicBool,
    /// Held by the keep-alive thread while it renews, and by release while it retires the lease:
    /// a release never races a renewal.
    pub(crate) live: Mutex<Live>,
    pub(crate) outcome: Mutex<Outcome>,
    pub(crate) outcome_changed: Condvar,
}

/// Locks a mutex, ignoring poisoning (nothing here can be left half-updated by a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lease {
    pub(crate) fn new(
        shared: Arc<Shared>,
        resource: Arc<str>,
        token: Token,
        fencing: Option<u64>,
        options: LeaseOptions,
        deadline: Instant,
    ) -> Self {
        let epoch = Instant::now().min(deadline);
        let lease = Self {
            shared,
            resource,
            token,
            fencing,
            options,
            epoch,
            deadline: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            live: Mutex::new(Live {
                live: true,
                entry: None,
            }),
            outcome: Mutex::new(Outcome::default()),
            outcome_changed: Condvar::new(),
        };
        lease.set_deadline(deadline);
        lease
    }

    /// The end of the validity (the epoch, i.e. the past, once lost).
    pub(crate) fn deadline(&self) -> Instant {
        if self.lost.load(Ordering::Acquire) {
            return self.epoch;
        }
        let nanos = self.deadline.load(Ordering::Acquire);
        self.epoch
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.epoch)
    }

    pub(crate) fn set_deadline(&self, deadline: Instant) {
        let nanos = deadline.saturating_duration_since(self.epoch).as_nanos();
        self.deadline
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Release);
    }

    pub(crate) fn validity(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }

    /// Records the loss, once: the guard turns invalid at once, then waiters are woken and
    /// callbacks run (on the calling thread).
    pub(crate) fn mark_lost(&self, reason: LossReason) {
        if self.lost.swap(true, Ordering::AcqRel) {
            return;
        }
        log::warn!("redmutex: lost the lock on {:?}: {reason}", self.resource);
        let callbacks = {
            let mut outcome = lock(&self.outcome);
            outcome.lost = Some(reason);
            if outcome.waiters > 0 {
                self.outcome_changed.notify_all();
            }
            std::mem::take(&mut outcome.callbacks)
        };
        for callback in callbacks {
            callback(reason);
        }
    }

    /// Records a release without loss: loss waiters stop waiting.
    pub(crate) fn mark_ended(&self) {
        let mut outcome = lock(&self.outcome);
        outcome.ended = true;
        outcome.callbacks.clear();
        if outcome.waiters > 0 {
            self.outcome_changed.notify_all();
        }
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

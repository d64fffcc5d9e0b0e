//! What a running factory tells about itself: counters ([`Counters`], read as a [`Stats`]
//! snapshot), the user's event handler ([`HandleEvent`], held by the [`Observer`]), the
//! slow-acquire warning, and, with the `tracing` feature, spans and events ([`trace`]).
//!
//! Everything here is counted or raised by the lease protocol and the round, never by the
//! handles: every synchronizer built on them is observed the same way. Counters are relaxed
//! atomics, with no lock on any path. Handler calls never happen under a library lock: events of
//! the calling thread's own call are delivered on that thread ([`Observer::inline`]); events the
//! library's threads see go to the factory's callback thread (see `shared::deliver`).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::Error;
use crate::node::{NodeStats, Nodes};

pub(crate) mod events;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub(crate) mod trace;

pub use events::{
    AcquireEvent, ContendedEvent, ExtendFailedEvent, GiveUpEvent, HandleEvent, LossEvent,
    NodeDownEvent, NodeUpEvent, NodeWarningEvent, Votes,
};

/// Events waiting on the callback thread for the handler, at most: past that (a handler that
/// blocks), further events are dropped and counted ([`Stats::events_dropped`]) rather than
/// queued without bound.
pub(crate) const MAX_PENDING: usize = 1024;

/// Why a held lock was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl LossReason {
    /// A short lowercase name (`"expired"`, `"token_gone"`, `"hold_limit"`), e.g. for a
    /// metrics label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::TokenGone => "token_gone",
            Self::HoldLimit => "hold_limit",
        }
    }
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

/// A snapshot of what a factory has done since it was created, and of its nodes:
/// [`RedLockFactory::stats`](crate::RedLockFactory::stats).
///
/// Counters only grow (the two gauges, [`held`](Self::held) and [`waiting`](Self::waiting),
/// go both ways). Each is read on its own with a relaxed load, so a snapshot taken while other
/// threads work is not one instant: two related counters may be one operation apart.
///
/// # Examples
///
/// ```no_run
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
/// let s = factory.stats();
/// println!(
///     "{} acquired ({} after a wait, {:?} waited in all), {} timed out, {} lost",
///     s.acquisitions, s.contended, s.waited, s.timeouts, s.losses.total()
/// );
/// for node in &s.nodes {
///     println!("{}: up {}, last error {:?}", node.node, node.up, node.last_error);
/// }
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Locks taken: guards handed out by `acquire`, `acquire_timeout`, `acquire_with` and
    /// `try_acquire`.
    pub acquisitions: u64,
    /// Of those, the ones that found the lock held elsewhere first and waited for it.
    pub contended: u64,
    /// The time acquisitions spent until they had the lock, in all (from the call to the
    /// guard; an uncontended one counts its one round). Divide by
    /// [`acquisitions`](Self::acquisitions) for the mean.
    pub waited: Duration,
    /// `try_acquire` calls that found the lock held elsewhere (`Ok(None)`).
    pub busy: u64,
    /// Acquisitions that gave up at their deadline ([`Error::Timeout`]).
    pub timeouts: u64,
    /// Acquisitions called off by their cancel flag ([`Error::Cancelled`]).
    pub cancellations: u64,
    /// Acquisitions that failed otherwise: too few nodes answered, or rounds too slow, in
    /// `max_retries + 1` rounds in a row ([`Error::NoQuorum`], [`Error::TooLate`]), or a bad
    /// argument.
    pub acquire_errors: u64,
    /// Rounds sent to the nodes, of every kind (acquire, take-back, fencing, extend, renewal
    /// batches, release, inspection).
    pub rounds: u64,
    /// Rounds that too few nodes answered to decide (each is an [`Error::NoQuorum`], though a
    /// waiting acquisition or keep-alive retries it).
    pub no_quorum_rounds: u64,
    /// Rounds in which a quorum agreed too late to leave any validity ([`Error::TooLate`]).
    pub too_late_rounds: u64,
    /// Waits ended by a release announcement (wake-up on release) rather than by polling.
    pub wakeups: u64,
    /// Successful extensions: [`RedLockGuard::extend`](crate::RedLockGuard::extend) and
    /// [`RedLock::extend_token`](crate::RedLock::extend_token).
    pub extensions: u64,
    /// Extensions that failed (expired, lost, no quorum, too late).
    pub extension_failures: u64,
    /// Keep-alive renewals that extended a lease.
    pub renewals: u64,
    /// Keep-alive renewals that failed (retried while validity lasts; a renewal that finds the
    /// lock lost counts here and as a loss).
    pub renewal_failures: u64,
    /// Releases a quorum confirmed (a guard's release or drop, and
    /// [`RedLock::release_token`](crate::RedLock::release_token)).
    pub releases: u64,
    /// Releases that found the lock lost or expired, or too few nodes answering.
    pub release_failures: u64,
    /// Held locks lost, by reason.
    pub losses: Losses,
    /// Gauge: leases held now: acquired, and not yet released, leaked or dropped (a lost lease
    /// counts until its guard is released or dropped).
    pub held: u64,
    /// Gauge: acquisitions waiting now for a lock held elsewhere.
    pub waiting: u64,
    /// Event handler calls that panicked (each is caught and logged).
    pub handler_panics: u64,
    /// Events not delivered because the handler had fallen too far behind on the callback
    /// thread (a handler that blocks).
    pub events_dropped: u64,
    /// Each node's state and counters, in the factory's order.
    pub nodes: Vec<NodeStats>,
}

/// Held locks lost, by reason: a part of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Losses {
    /// [`LossReason::Expired`]: the lease ran out.
    pub expired: u64,
    /// [`LossReason::TokenGone`]: a quorum no longer held the token while it was valid.
    pub token_gone: u64,
    /// [`LossReason::HoldLimit`]: keep-alive reached the maximum hold time.
    pub hold_limit: u64,
}

impl Losses {
    /// Losses of every reason.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.expired + self.token_gone + self.hold_limit
    }

    /// Losses of one reason.
    #[must_use]
    pub const fn of(&self, reason: LossReason) -> u64 {
        match reason {
            LossReason::Expired => self.expired,
            LossReason::TokenGone => self.token_gone,
            LossReason::HoldLimit => self.hold_limit,
        }
    }
}

/// A counter: a relaxed atomic.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn decr(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The factory's counters (the nodes keep their own, and the round count).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) acquisitions: Counter,
    pub(crate) contended: Counter,
    /// Nanoseconds.
    pub(crate) waited: Counter,
    pub(crate) busy: Counter,
    pub(crate) timeouts: Counter,
    pub(crate) cancellations: Counter,
    pub(crate) acquire_errors: Counter,
    pub(crate) no_quorum_rounds: Counter,
    pub(crate) too_late_rounds: Counter,
    pub(crate) wakeups: Counter,
    pub(crate) extensions: Counter,
    pub(crate) extension_failures: Counter,
    pub(crate) renewals: Counter,
    pub(crate) renewal_failures: Counter,
    pub(crate) releases: Counter,
    pub(crate) release_failures: Counter,
    pub(crate) expired: Counter,
    pub(crate) token_gone: Counter,
    pub(crate) hold_limit: Counter,
    pub(crate) held: Counter,
    pub(crate) waiting: Counter,
    pub(crate) handler_panics: Counter,
    pub(crate) events_dropped: Counter,
}

impl Counters {
    /// Counts the end of an acquisition that got the lock.
    pub(crate) fn acquired(&self, waited: Duration, contended: bool) {
        self.acquisitions.incr();
        if contended {
            self.contended.incr();
        }
        self.waited
            .add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Counts the end of an acquisition that did not get the lock.
    pub(crate) fn gave_up(&self, e: &Error) {
        match e {
            Error::Timeout { .. } => self.timeouts.incr(),
            Error::Cancelled { .. } => self.cancellations.incr(),
            // A run-once epoch that had run: an answer, not an error.
            Error::AlreadyRan { .. } => {}
            _ => self.acquire_errors.incr(),
        }
    }

    /// Counts a loss.
    pub(crate) fn lost(&self, reason: LossReason) {
        match reason {
            LossReason::Expired => self.expired.incr(),
            LossReason::TokenGone => self.token_gone.incr(),
            LossReason::HoldLimit => self.hold_limit.incr(),
        }
    }
}

/// Counts one acquisition as waiting while it lives.
pub(crate) struct Waiting<'a>(&'a Counter);

impl<'a> Waiting<'a> {
    pub(crate) fn new(counters: &'a Counters) -> Self {
        counters.waiting.incr();
        Self(&counters.waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.decr();
    }
}

/// What a factory tells about itself: its counters, its event handler and its slow-acquire
/// threshold.
pub(crate) struct Observer {
    pub(crate) counters: Counters,
    pub(crate) handler: Option<Arc<dyn HandleEvent>>,
    /// Acquisitions that take at least this long are logged at `warn`.
    pub(crate) slow_acquire: Option<Duration>,
    /// Events handed to the callback thread and not yet delivered.
    pub(crate) pending: AtomicUsize,
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("handler", &self.handler.is_some())
            .field("slow_acquire", &self.slow_acquire)
            .finish_non_exhaustive()
    }
}

impl Observer {
    pub(crate) fn new(
        handler: Option<Arc<dyn HandleEvent>>,
        slow_acquire: Option<Duration>,
    ) -> Self {
        Self {
            counters: Counters::default(),
            handler,
            slow_acquire,
            pending: AtomicUsize::new(0),
        }
    }

    /// Delivers an event of the calling thread's own call to the handler, on this thread. Call
    /// it with no library lock held. A panic in the handler is caught, counted and logged.
    pub(crate) fn inline(&self, event: &'static str, deliver: impl FnOnce(&dyn HandleEvent)) {
        if let Some(handler) = &self.handler {
            self.guarded(event, || deliver(handler.as_ref()));
        }
    }

    /// Runs a handler call, catching, counting and logging a panic.
    pub(crate) fn guarded(&self, event: &'static str, call: impl FnOnce()) {
        if catch_unwind(AssertUnwindSafe(call)).is_err() {
            self.counters.handler_panics.incr();
            log::warn!("redmutex: the event handler panicked in {event}; the panic was caught");
        }
    }

    /// A snapshot of the counters and the nodes.
    pub(crate) fn stats(&self, nodes: &Nodes) -> Stats {
        let c = &self.counters;
        Stats {
            acquisitions: c.acquisitions.get(),
            contended: c.contended.get(),
            waited: Duration::from_nanos(c.waited.get()),
            busy: c.busy.get(),
            timeouts: c.timeouts.get(),
            cancellations: c.cancellations.get(),
            acquire_errors: c.acquire_errors.get(),
            rounds: nodes.rounds(),
            no_quorum_rounds: c.no_quorum_rounds.get(),
            too_late_rounds: c.too_late_rounds.get(),
            wakeups: c.wakeups.get(),
            extensions: c.extensions.get(),
            extension_failures: c.extension_failures.get(),
            renewals: c.renewals.get(),
            renewal_failures: c.renewal_failures.get(),
            releases: c.releases.get(),
            release_failures: c.release_failures.get(),
            losses: Losses {
                expired: c.expired.get(),
                token_gone: c.token_gone.get(),
                hold_limit: c.hold_limit.get(),
            },
            held: c.held.get(),
            waiting: c.waiting.get(),
            handler_panics: c.handler_panics.get(),
            events_dropped: c.events_dropped.get(),
            nodes: nodes.iter().map(crate::node::Node::stats).collect(),
        }
    }
}

/// A short name for how an operation ended in `e`, for spans and metrics labels.
pub(crate) fn outcome(e: &Error) -> &'static str {
    match e {
        Error::Timeout { .. } => "timeout",
        Error::Cancelled { .. } => "cancelled",
        Error::NoQuorum { .. } => "no_quorum",
        Error::TooLate { .. } => "too_late",
        Error::Expired { .. } => "expired",
        Error::LockLost { .. } => "lock_lost",
        Error::NotHeld { .. } => "not_held",
        Error::WouldDeadlock { .. } => "would_deadlock",
        Error::AlreadyRan { .. } => "already_ran",
        Error::InvalidConfig(_) | Error::InvalidArgument(_) => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Panics;

    impl HandleEvent for Panics {
        fn on_loss(&self, _: &events::LossEvent<'_>) {
            panic!("handler bug");
        }
    }

    #[test]
    fn a_panicking_handler_is_caught_and_counted_and_no_handler_costs_nothing() {
        let observer = Observer::new(Some(Arc::new(Panics)), None);
        let event = events::LossEvent {
            resource: "k",
            reason: LossReason::TokenGone,
        };
        observer.inline("on_loss", |h| h.on_loss(&event));
        observer.inline("on_loss", |h| h.on_loss(&event));
        assert_eq!(observer.counters.handler_panics.get(), 2);
        let none = Observer::new(None, None);
        none.inline("on_loss", |_| unreachable!("no handler, no call"));
    }

    #[test]
    fn losses_add_up_by_reason() {
        let c = Counters::default();
        for reason in [
            LossReason::Expired,
            LossReason::TokenGone,
            LossReason::TokenGone,
            LossReason::HoldLimit,
        ] {
            c.lost(reason);
        }
        let losses = Losses {
            expired: c.expired.get(),
            token_gone: c.token_gone.get(),
            hold_limit: c.hold_limit.get(),
        };
        assert_eq!(losses.total(), 4);
        assert_eq!(losses.of(LossReason::TokenGone), 2);
        assert_eq!(LossReason::TokenGone.as_str(), "token_gone");
        c.acquired(Duration::from_millis(3), true);
        c.acquired(Duration::from_millis(4), false);
        assert_eq!((c.acquisitions.get(), c.contended.get()), (2, 1));
        assert_eq!(c.waited.get(), 7_000_000);
    }
}

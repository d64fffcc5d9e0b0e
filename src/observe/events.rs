//! The event handler: a trait the user implements, and the events it is told of.

use std::sync::Arc;
use std::time::Duration;

use super::LossReason;
use crate::error::{Error, NodeErrorKind};
use crate::node::NodeWarning;

/// Told of what happens to a factory's locks and nodes: set one with
/// [`RedLockFactoryBuilder::event_handler`](crate::RedLockFactoryBuilder::event_handler).
///
/// In the spirit of r2d2's `HandleEvent`: every method has a default that does nothing, so an
/// implementation picks the events it cares about, and events added later do not break it.
/// Every event is a `#[non_exhaustive]` struct borrowed for the call.
///
/// # Which thread, and what a slow or panicking handler does
///
/// - **Events of the caller's own call** ([`on_acquire`](Self::on_acquire),
///   [`on_contended`](Self::on_contended), [`on_give_up`](Self::on_give_up), and
///   [`on_extend_failed`](Self::on_extend_failed) for a [`RedLockGuard::extend`]) are
///   delivered on the calling thread, before the call returns, with no library lock held. A slow
///   handler slows that call down, and nothing else (but a slow `on_acquire` eats into the new
///   lease's validity: the guard is handed out, and kept alive, after it returns).
/// - **Events the library's own threads see** (keep-alive renewal failures, losses, a node
///   going down or coming back, which connector threads and the keep-alive thread see too) are
///   delivered on the factory's callback thread (`redmutex-notify`, the thread
///   [`LossSignal::on_loss`] callbacks run on), one after another, in the order they
///   happened. So no user code ever runs on the keep-alive thread: a handler that blocks or
///   panics never delays a renewal. A handler that blocks does delay the events and `on_loss`
///   callbacks queued behind it; once 1,024 events wait, further ones are dropped and counted
///   in [`Stats::events_dropped`](crate::Stats::events_dropped) rather than queued without
///   bound. ([`RedLockGuard::is_valid`] and the [`LossSignal`](crate::LossSignal)'s
///   `is_lost` and `wait` never wait for the callback thread.)
/// - **A panic** in any method is caught, logged with `log::warn!` and counted in
///   [`Stats::handler_panics`](crate::Stats::handler_panics); the operation goes on as if the
///   handler had returned.
///
/// A handler may call the library (take a lock, read [`RedLockFactory::stats`]): no library
/// lock is held during a call. Dropping a guard from a handler on the callback thread releases
/// it there (one round) and delays the events queued behind.
///
/// [`RedLockGuard::extend`]: crate::RedLockGuard::extend
/// [`LossSignal::on_loss`]: crate::LossSignal::on_loss
/// [`RedLockGuard::is_valid`]: crate::RedLockGuard::is_valid
/// [`RedLockFactory::stats`]: crate::RedLockFactory::stats
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use redmutex::event::{AcquireEvent, LossEvent};
/// use redmutex::{HandleEvent, RedLockFactory};
///
/// #[derive(Debug)]
/// struct Alerts;
///
/// impl HandleEvent for Alerts {
///     fn on_acquire(&self, e: &AcquireEvent<'_>) {
///         if e.waited > Duration::from_secs(5) {
///             eprintln!("waited {:?} for {} over {} rounds", e.waited, e.resource, e.rounds);
///         }
///     }
///
///     fn on_loss(&self, e: &LossEvent<'_>) {
///         eprintln!("lost {}: {}", e.resource, e.reason);
///     }
/// }
///
/// let factory = RedLockFactory::builder()
///     .nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])
///     .event_handler(Alerts)
///     .build()?;
/// # Ok::<(), redmutex::Error>(())
/// ```
pub trait HandleEvent: Send + Sync {
    /// A lock was taken (by `acquire`, `acquire_timeout`, `acquire_with` or `try_acquire`).
    /// On the calling thread, before the guard is returned.
    fn on_acquire(&self, _event: &AcquireEvent<'_>) {}

    /// An acquisition found the lock held elsewhere and starts waiting for it: once per call
    /// that waits (`try_acquire` never waits). On the calling thread.
    fn on_contended(&self, _event: &ContendedEvent<'_>) {}

    /// An acquisition ended without the lock: it timed out, was cancelled, or failed (too few
    /// nodes answered, rounds too slow, a bad argument). Not called when `try_acquire` finds the
    /// lock held (that is an answer, not a failure). On the calling thread.
    fn on_give_up(&self, _event: &GiveUpEvent<'_>) {}

    /// An extension failed: a [`RedLockGuard::extend`](crate::RedLockGuard::extend) (on the
    /// calling thread), or a keep-alive renewal (on the callback thread; keep-alive retries
    /// while the lease is valid, so one lost round is not yet a loss).
    fn on_extend_failed(&self, _event: &ExtendFailedEvent<'_>) {}

    /// A held lock was lost (once per lease). On the callback thread, before the guard's
    /// `on_loss` callbacks.
    fn on_loss(&self, _event: &LossEvent<'_>) {}

    /// A node was marked down: a round, a renewal or a background connect failed on it. Rounds
    /// skip it (as a failed vote) until it answers again. On the callback thread.
    fn on_node_down(&self, _event: &NodeDownEvent<'_>) {}

    /// A node that was down answered a round again. On the callback thread.
    fn on_node_up(&self, _event: &NodeUpEvent<'_>) {}

    /// A connection's handshake found something about a node that puts the locks' guarantee
    /// at risk: it is quarantined after a restart (its yes does not count toward acquisitions
    /// for a while), it may evict lock keys, it will not say whether it restarted, or it is
    /// not as durable as declared (see [`NodeWarning`]). Reported once when it starts, not at
    /// every connection; also logged with `log::warn!`. On the callback thread.
    fn on_node_warning(&self, _event: &NodeWarningEvent<'_>) {}
}

/// A shared handler: the factory can be given an `Arc` the application keeps a copy of (to
/// read what the handler collected).
impl<T: HandleEvent + ?Sized> HandleEvent for Arc<T> {
    fn on_acquire(&self, event: &AcquireEvent<'_>) {
        (**self).on_acquire(event);
    }
    fn on_contended(&self, event: &ContendedEvent<'_>) {
        (**self).on_contended(event);
    }
    fn on_give_up(&self, event: &GiveUpEvent<'_>) {
        (**self).on_give_up(event);
    }
    fn on_extend_failed(&self, event: &ExtendFailedEvent<'_>) {
        (**self).on_extend_failed(event);
    }
    fn on_loss(&self, event: &LossEvent<'_>) {
        (**self).on_loss(event);
    }
    fn on_node_down(&self, event: &NodeDownEvent<'_>) {
        (**self).on_node_down(event);
    }
    fn on_node_up(&self, event: &NodeUpEvent<'_>) {
        (**self).on_node_up(event);
    }
    fn on_node_warning(&self, event: &NodeWarningEvent<'_>) {
        (**self).on_node_warning(event);
    }
}

/// Two handlers, told of every event in turn: the first, then the second (for example the
/// `metrics` feature's `MetricsHandler` and an application's own).
impl<A: HandleEvent, B: HandleEvent> HandleEvent for (A, B) {
    fn on_acquire(&self, event: &AcquireEvent<'_>) {
        self.0.on_acquire(event);
        self.1.on_acquire(event);
    }
    fn on_contended(&self, event: &ContendedEvent<'_>) {
        self.0.on_contended(event);
        self.1.on_contended(event);
    }
    fn on_give_up(&self, event: &GiveUpEvent<'_>) {
        self.0.on_give_up(event);
        self.1.on_give_up(event);
    }
    fn on_extend_failed(&self, event: &ExtendFailedEvent<'_>) {
        self.0.on_extend_failed(event);
        self.1.on_extend_failed(event);
    }
    fn on_loss(&self, event: &LossEvent<'_>) {
        self.0.on_loss(event);
        self.1.on_loss(event);
    }
    fn on_node_down(&self, event: &NodeDownEvent<'_>) {
        self.0.on_node_down(event);
        self.1.on_node_down(event);
    }
    fn on_node_up(&self, event: &NodeUpEvent<'_>) {
        self.0.on_node_up(event);
        self.1.on_node_up(event);
    }
    fn on_node_warning(&self, event: &NodeWarningEvent<'_>) {
        self.0.on_node_warning(event);
        self.1.on_node_warning(event);
    }
}

/// How the nodes answered one round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Votes {
    /// Nodes that said yes.
    pub yes: usize,
    /// Nodes that said no.
    pub no: usize,
    /// Nodes that gave no useful answer.
    pub failed: usize,
    /// How many had to say yes.
    pub quorum: usize,
}

impl Votes {
    pub(crate) const fn new(yes: usize, no: usize, failed: usize, quorum: usize) -> Self {
        Self {
            yes,
            no,
            failed,
            quorum,
        }
    }
}

/// A lock was taken: [`HandleEvent::on_acquire`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AcquireEvent<'a> {
    /// The resource (the lock's name).
    pub resource: &'a str,
    /// From the call to now (an uncontended acquisition: its one round).
    pub waited: Duration,
    /// Acquisition rounds made (1 when the lock was free at once).
    pub rounds: u32,
    /// Whether the lock was found held elsewhere first.
    pub contended: bool,
    /// The winning round's votes.
    pub votes: Votes,
}

/// An acquisition found the lock held and starts waiting: [`HandleEvent::on_contended`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ContendedEvent<'a> {
    /// The resource.
    pub resource: &'a str,
    /// The round that found it held: at least a quorum answered, without granting it.
    pub votes: Votes,
}

/// An acquisition ended without the lock: [`HandleEvent::on_give_up`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct GiveUpEvent<'a> {
    /// The resource.
    pub resource: &'a str,
    /// From the call to now.
    pub waited: Duration,
    /// Acquisition rounds made.
    pub rounds: u32,
    /// What the call returns: [`Error::Timeout`], [`Error::Cancelled`], [`Error::NoQuorum`],
    /// [`Error::TooLate`], ...
    pub error: &'a Error,
}

/// An extension failed: [`HandleEvent::on_extend_failed`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ExtendFailedEvent<'a> {
    /// The resource.
    pub resource: &'a str,
    /// Whether it was a keep-alive renewal (else a `RedLockGuard::extend`).
    pub keep_alive: bool,
    /// Why: [`Error::NoQuorum`] or [`Error::TooLate`] (keep-alive retries those while the
    /// lease is valid), [`Error::LockLost`], [`Error::Expired`].
    pub error: &'a Error,
}

/// A held lock was lost: [`HandleEvent::on_loss`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LossEvent<'a> {
    /// The resource.
    pub resource: &'a str,
    /// Why.
    pub reason: LossReason,
}

/// A node was marked down: [`HandleEvent::on_node_down`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct NodeDownEvent<'a> {
    /// The node's address (`host:port`, no secrets), as in [`NodeStats`](crate::NodeStats).
    pub node: &'a str,
    /// The node's position in the factory's node list.
    pub index: usize,
    /// The kind of the failure.
    pub kind: NodeErrorKind,
    /// The failure, as the client library described it.
    pub message: &'a str,
}

/// A node answers again: [`HandleEvent::on_node_up`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct NodeUpEvent<'a> {
    /// The node's address.
    pub node: &'a str,
    /// The node's position in the factory's node list.
    pub index: usize,
}

/// A node's handshake found a risk to the locks' guarantee: [`HandleEvent::on_node_warning`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct NodeWarningEvent<'a> {
    /// The node's address.
    pub node: &'a str,
    /// The node's position in the factory's node list.
    pub index: usize,
    /// What was found.
    pub warning: &'a NodeWarning,
}

//! A distributed [`std::sync::Mutex`]: a lock held across threads, processes and hosts, stored in
//! Redis with the Redlock algorithm over N independent Redis masters.
//!
//! Redlock writes the lock key, with a random token and an expiry, to every node; the lock is
//! taken when a majority accepted it within a time short enough to leave the lease some
//! validity. Any two majorities share a node, so two clients cannot hold the lock at once, and a
//! minority of nodes can crash, stall or be cut off without stopping the lock.
//!
//! redmutex is blocking and thread-based: one round writes to every node before reading any
//! reply (the round trips overlap on the calling thread), every call is bounded by connect and
//! I/O timeouts, a failing node is a "no" vote rather than an error, and the guard releases the
//! lock on `Drop` like a [`MutexGuard`](std::sync::MutexGuard).
//!
//! # Quick start
//!
//! ```no_run
//! use redmutex::RedLockFactory;
//!
//! // One factory per process: it owns a connection pool per node.
//! let factory = RedLockFactory::new([
//!     "redis://127.0.0.1:7001",
//!     "redis://127.0.0.1:7002",
//!     "redis://127.0.0.1:7003",
//! ])?;
//!
//! {
//!     let _g = factory.create_lock("k").acquire()?;
//!     // Critical section: no other client holds "k" on these nodes
//!     // (for at most the lease time, 10 s by default).
//! } // `_g` dropped: the lock is released.
//! # Ok::<(), redmutex::Error>(())
//! ```
//!
//! As with `std::sync::Mutex`, the guard must be bound to a name for the lock to stay held:
//! `let _ = lock.acquire()?;` drops the guard at the end of the statement and releases the lock
//! at once. `let _g = ...` keeps it until the end of the scope, and `drop(g)` or
//! [`g.release()`](RedLockGuard::release) ends it early.
//!
//! ```no_run
//! # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
//! let lock = factory.create_lock("jobs:42");
//! let guard = lock.acquire()?;
//! // ... work ...
//! guard.release()?; // unlike a drop, tells you if the lock had been lost meanwhile
//! # Ok::<(), redmutex::Error>(())
//! ```
//!
//! # The shape of the API
//!
//! Every synchronizer is one generic handle, and every guard one generic guard, as `lock_api`
//! writes `Mutex<R, T>` once for every raw mutex:
//!
//! - [`Handle<K>`] is a named lease of a [`kind`] `K`: [`RedLock`], [`RwLock`] (whose
//!   [`reader`](RwLock::reader) and [`writer`](RwLock::writer) are handles too),
//!   [`Semaphore`], [`MultiLock`], [`Election`] and [`RunOnce`] are type aliases of it. Its
//!   builders (`with_ttl`,
//!   `with_keep_alive`, `with_max_hold`, `with_fencing`) and its acquire family (`acquire`,
//!   `try_acquire`, `acquire_timeout`, `acquire_with`, `release`, `release_token`,
//!   `extend_token`) are written and documented once. The read-write lock keeps std's `read`
//!   and `write` as the thin forms of its sides' `acquire`.
//! - [`LeaseGuard<K>`] is proof of holding a lease of kind `K`: [`RedLockGuard`],
//!   [`RwLockReadGuard`], [`RwLockWriteGuard`], [`SemaphorePermit`], [`MultiLockGuard`],
//!   [`LeaderGuard`] and [`RunGuard`] are its aliases, and the lease API (`token`, `validity`, `is_valid`, `extend`, `loss_signal`,
//!   `release`, `leak`, `hand_over`, `fencing_token`) is every guard's, from one place.
//! - A kind adds only what is its own: [`RedLock::inspect`], [`Semaphore::permits`], a permit's
//!   [`slot`](SemaphorePermit::slot), a multi-lock's resources, a write guard's
//!   [`downgrade`](RwLockWriteGuard::downgrade).
//!
//! So code can be generic over any held lease, or any handle:
//!
//! ```no_run
//! use std::time::Duration;
//! use redmutex::{Handle, LeaseGuard, Result, kind::Acquire};
//!
//! /// Extends whatever lease it is given when less than `slice` is left.
//! fn keep_for<K>(lease: &LeaseGuard<K>, slice: Duration) -> Result<()> {
//!     if lease.validity() < slice {
//!         lease.extend(slice * 2)?;
//!     }
//!     Ok(())
//! }
//!
//! /// Takes any kind of lease, and keeps it for a first slice of work.
//! fn take<K: Acquire>(handle: &Handle<K>) -> Result<LeaseGuard<K>> {
//!     let lease = handle.acquire_timeout(Duration::from_secs(10))?;
//!     keep_for(&lease, Duration::from_secs(5))?;
//!     Ok(lease)
//! }
//! # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
//! let _lock = take(&factory.create_lock("invoices"))?;
//! let _reader = take(&factory.create_rwlock("catalog").reader())?;
//! let _permit = take(&factory.create_semaphore("encoders", 2))?;
//! # Ok::<(), redmutex::Error>(())
//! ```
//!
//! # Differences from `std::sync::Mutex`
//!
//! - **A lease, not ownership.** A lock expires after its TTL even while its guard lives, so a
//!   crashed holder cannot block others forever. [`RedLockGuard::validity`] says how long is
//!   left; [`RedLockGuard::extend`] renews it.
//! - **It can expire, and release can fail.** [`RedLockGuard::release`] returns
//!   [`Error::Expired`] or [`Error::LockLost`] when a quorum no longer had the token: the
//!   critical section may have overlapped another holder's. Dropping the guard releases too,
//!   but can only log a failure.
//! - **No poisoning.** A panic while holding the guard releases the lock during unwinding.
//! - **Not reentrant.** Acquiring a lock you already hold waits like any other caller. A thread
//!   that holds a read lock and asks to wait for something that excludes readers of the name
//!   (the write lock, a lock, a semaphore, a multi-lock containing it) gets
//!   [`Error::WouldDeadlock`] at once instead of waiting for itself; a read guard moved to
//!   another thread is [handed over](LeaseGuard::hand_over) first.
//! - **No data inside.** The lock protects whatever you decide it protects.
//! - **Failures are errors.** A cluster where too few nodes answer gives
//!   [`Error::NoQuorum`] with each node's cause, never a hang.
//!
//! # The guard never believes more than the nodes hold
//!
//! A guard's [`validity`](RedLockGuard::validity) is a lower bound on the lease a quorum of nodes
//! really holds for its token, whatever happens to a round: it failed, replies came late or
//! never, two threads sharing the guard [`extend`](RedLockGuard::extend)ed it at once, or an
//! extension raced a keep-alive renewal. `extend` never shortens a lease on the nodes, rounds on
//! one lease never overlap, and no user callback runs while the library holds a lock.
//!
//! # Beyond a mutex
//!
//! - **Cancellable waits** ([`RedLock::acquire_with`], [`Wait`]): a deadline and a flag that calls
//!   the wait off ([`Error::Cancelled`]); `acquire` and `acquire_timeout` are this.
//! - **Leases across processes** ([`RedLockGuard::leak`], [`RedLock::release_token`],
//!   [`RedLock::extend_token`], [`RedLock::inspect`]): a held lease handed out as its token, and
//!   released or extended by token with the same scripts, quorum rule and wake-up. A token is a
//!   capability: whoever has it can release the lock.
//! - **Keep-alive** ([`RedLockFactoryBuilder::keep_alive`]): one thread per factory renews
//!   every kept-alive guard's lease, in batches, optionally up to a maximum hold time.
//! - **Loss signal** ([`LeaseGuard::loss_signal`]: [`LossSignal::is_lost`],
//!   [`LossSignal::wait`], [`LossSignal::on_loss`]): the holder learns, without touching the network, that its
//!   lock was lost.
//! - **Fencing tokens** ([`RedLockFactoryBuilder::fencing`], [`RedLockGuard::fencing_token`]):
//!   a number that grows with every grant, for the protected resource to refuse stale holders.
//! - **Wake-up on release** ([`RedLockFactoryBuilder::wake_on_release`], on by default):
//!   waiters are woken by the release, and hand-overs are fair.
//! - **Sentinel-managed nodes** ([`SentinelNode`], `redis+sentinel://` URLs): each node may be
//!   a master group that fails over by itself; the quorum still needs independent groups.
//! - **Read-write lock** ([`RedLockFactory::create_rwlock`], [`RwLock`]): many readers or one
//!   writer, on the same lease protocol; writers are not starved, each reader's lease is its
//!   own, downgrade is atomic, and a mutex on the same name is a writer of it.
//! - **Leader election** ([`RedLockFactory::create_election`], [`Election`]): one leader at a
//!   time with a term (a fencing token) and a published value; [`Election::leader`] reads it from
//!   a quorum, and an [`Observer`] learns every change in term order, woken by the nodes.
//! - **Run once** ([`RedLockFactory::create_run_once`], [`RunOnce`]): work started at most once
//!   per epoch (a cron slot) across hosts, its result recorded on a quorum
//!   ([`RunGuard::complete`]); the others get the [`RunRecord`] or wait for it.
//!
//! # Observing it in production
//!
//! - [`RedLockFactory::stats`]: counters since the factory was created (acquisitions, waits,
//!   timeouts, rounds, renewals, losses by reason, ...) and each node's state ([`NodeStats`]),
//!   kept with relaxed atomics on every path, always on.
//! - [`RedLockFactoryBuilder::event_handler`]: a [`HandleEvent`] told of acquisitions, waits,
//!   give-ups, failed extensions, losses and nodes going down and up, without ever running on
//!   the keep-alive thread or under a library lock.
//! - [`RedLockFactoryBuilder::slow_acquire_threshold`]: a warning for slow acquisitions.
//! - The `tracing` and `metrics` features below.
//!
//! # What it guarantees
//!
//! Mutual exclusion holds while Redlock's assumptions hold: the nodes' clocks run at about the
//! same rate, nodes do not lose keys, and the holder stops acting before its validity ends.
//! The client enforces what it can see of the first two: a node that restarted without
//! durable persistence does not count toward acquisitions until every lease it may have
//! forgotten has expired (the restart quarantine, bounded by
//! [`RedLockFactoryBuilder::longest_ttl`]), and a node whose clock jumped ahead is treated
//! alike; eviction policies that can drop a lock are warned about
//! ([`HandleEvent::on_node_warning`], [`NodeStats`], [`RedLockFactory::diagnose`]). A process
//! pause (GC, swap, SIGSTOP) after the lock was taken can break the last one: protect resources
//! that must never see two writers with fencing tokens checked at the resource. See
//! `docs/design.md`, `docs/reliability.md` and `docs/features.md` in the repository.
//!
//! # Interoperability
//!
//! The key is the resource name, the value a 160-bit random token; the lock is taken with
//! `SET key token NX PX ttl` and released with the usual compare-and-delete script, so
//! redmutex excludes redsync, node-redlock, redlock-py and other Redlock clients using the
//! same names on the same nodes.
//!
//! # The `redis` crate in this API
//!
//! Two places of the API name a type of the [`redis`] crate (re-exported as
//! [`redmutex::redis`](redis), so that a caller names the very version redmutex uses):
//! [`IntoNode`] accepts a `redis::ConnectionInfo` or `redis::ConnectionAddr`, and
//! [`NodeError::redis_error`] returns the `&redis::RedisError` behind a node's failure. They
//! are kept, deliberately:
//!
//! - They are the escape hatches, not the way in. A node is a URL, a `(host, port)` pair or a
//!   [`SentinelNode`], and a failure is read through [`NodeErrorKind`] and `Display`; none of
//!   that names a redis type. `ConnectionInfo` is for what a URL cannot say (TLS client
//!   certificates and root CAs, built with redis-rs's own TLS types); `redis_error` is for a
//!   caller that must tell apart server errors redmutex does not classify.
//! - Wrapping them would copy redis-rs's connection and TLS settings into types of our own
//!   (which would lag behind it), and a flattened error loses `kind()`, `code()` and
//!   `detail()`.
//! - A Cargo feature would not isolate anything: features are unified across a build, so a
//!   crate enabling it anywhere ties the whole build to it, and code that compiles would depend
//!   on a feature set elsewhere in the dependency graph.
//!
//! The cost, stated: these items follow redis-rs's major version. A redmutex release that
//! moves to a new major version of `redis` is a breaking release of redmutex, and says so in
//! its changelog; everything else in the API is independent of redis-rs.
//!
//! # Cargo features
//!
//! - `tls` (alias of `tls-rustls`): `rediss://` nodes through rustls.
//! - `tls-native-tls`: `rediss://` nodes through the platform's TLS library.
//! - `tracing`: a span per acquisition, extension, release and renewal batch (target
//!   `redmutex`, fields `resource` and `outcome`), and a `debug` event per round with its votes.
//! - `metrics`: `MetricsHandler`, an event handler recording fixed, low-cardinality series
//!   through the `metrics` facade (`examples/metrics.rs` serves them for Prometheus).
//!
//! # Logging
//!
//! Through the [`log`] facade: `debug` for each round, `warn` for node failures, lost locks,
//! failed releases on drop, slow acquisitions (when a threshold is set) and a panicking event
//! handler. The library never prints and never logs node URLs or tokens.
#![cfg_attr(
    not(test),
    deny(
        clippy::print_stdout,
        clippy::print_stderr,
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing
    )
)]

// Layers, top to bottom; a module imports only modules below it (docs/design.md, "Modules").
// Handles: the factory, then each kind (what it adds, how its leases are taken), over the one
// handle and the one guard, the kinds, and the registry of this process's leases:
mod election;
mod factory;
mod guard;
mod handle;
pub mod kind;
mod local;
mod lock;
mod multi;
mod once;
mod rwlock;
mod semaphore;
// Keep-alive, over the protocol:
mod keeper;
// The lease protocol:
mod protocol;
// Runtime state and services:
mod notify;
mod observe;
mod shared;
mod waker;
// The round, the nodes, and what goes on the wire:
mod command;
mod error;
mod node;
mod round;
mod scripts;

pub use election::{DEFAULT_POLL_INTERVAL, Election, LeaderGuard, Observer};
pub use error::{Error, NodeError, NodeErrorKind, Result, RunRecord};
pub use factory::{MAX_POOL_SIZE, RedLockFactory, RedLockFactoryBuilder};
pub use guard::{LeaseGuard, LossSignal};
pub use handle::Handle;
pub use lock::{MAX_RESOURCE_LEN, RedLock, RedLockGuard};
pub use multi::{MAX_MULTI_RESOURCES, MultiLock, MultiLockGuard};
pub use node::{
    DEFAULT_SENTINEL_PORT, IntoNode, MAX_NODES, NodeStats, NodeWarning, QuarantineCause,
    SentinelNode, split_node_list,
};
#[cfg(feature = "metrics")]
pub use observe::metrics::MetricsHandler;
pub use observe::{HandleEvent, Losses, Stats};
pub use once::{DEFAULT_RETENTION, Outcome, RunGuard, RunOnce, Start};
pub use protocol::{
    Check, CheckStatus, Diagnosis, Fingerprint, Holding, Inspection, Leader, LockState, LossReason,
    MAX_VALUE_LEN, NodeView, Wait,
};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{MAX_PERMITS, Semaphore, SemaphorePermit};

/// The `redis` crate this version of redmutex is built on, whose types appear in two places of
/// its API (see the crate docs, "The `redis` crate in this API"): name them through this
/// re-export to be sure of using the same version.
pub use redis;

/// The events an [`HandleEvent`] implementation is told of, each a `#[non_exhaustive]` struct
/// borrowed for the call (as in r2d2's `event` module).
pub mod event {
    pub use crate::observe::{
        AcquireEvent, ContendedEvent, ExtendFailedEvent, GiveUpEvent, LossEvent, NodeDownEvent,
        NodeUpEvent, NodeWarningEvent, Votes,
    };
}

/// The README's examples, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

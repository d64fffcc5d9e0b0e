//! `RedLockFactory` and its builder: they validate the settings and build the runtime state
//! (nodes, services) that every lock of the factory shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::election::{Election, election};
use crate::error::{Error, Result};
use crate::keeper::{Keeper, Runtime};
use crate::kind;
use crate::lock::RedLock;
use crate::multi::{MultiLock, multi_lock};
use crate::node::{
    Change, IntoNode, Listener, MAX_NODES, NodeChange, NodeSpec, Nodes, SentinelNode, Watch,
};
use crate::notify::Notifier;
use crate::observe::{
    HandleEvent, NodeDownEvent, NodeUpEvent, NodeWarningEvent, Observer, QueueStats, Stats,
};
use crate::once::{RunOnce, run_once};
use crate::protocol::doctor::{self, Diagnosis};
use crate::queue::Queue;
use crate::round::{self, majority};
use crate::rwlock::RwLock;
use crate::semaphore::Semaphore;
use crate::shared::{self, Config, MAX_TTL, Shared, check_max_hold, check_ttl};
use crate::waker::Waker;

/// Defaults, in one place.
mod defaults {
    use std::time::Duration;

    pub(super) const TTL: Duration = Duration::from_secs(10);
    pub(super) const RETRY_DELAY: Duration = Duration::from_millis(50);
    pub(super) const RETRY_JITTER: Duration = Duration::from_millis(50);
    pub(super) const MAX_RETRIES: u32 = 3;
    pub(super) const DRIFT_FACTOR: f64 = 0.01;
    pub(super) const POOL_SIZE: u32 = 16;
    pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
    pub(super) const IO_TIMEOUT: Duration = Duration::from_millis(100);
    /// The bound on every TTL any client writes to the nodes (see `longest_ttl`'s docs).
    pub(super) const LONGEST_TTL: Duration = Duration::from_secs(60);
}

/// The largest connection pool per node accepted (r2d2 allocates its slots up front).
pub const MAX_POOL_SIZE: u32 = 1024;

/// Builds a [`RedLockFactory`]: the nodes, and the settings of the locks it creates.
///
/// Setters never panic: every value is checked by [`build`](Self::build), which names the
/// setting that is wrong.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::builder()
///     .nodes(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])
///     .node(("10.0.0.3", 6379))
///     .ttl(Duration::from_secs(30))
///     .io_timeout(Duration::from_millis(50))
///     .build()?;
/// # Ok::<(), redmutex::Error>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RedLockFactoryBuilder {
    nodes: Vec<std::result::Result<NodeSpec, String>>,
    ttl: Duration,
    retry_delay: Duration,
    retry_jitter: Duration,
    max_retries: u32,
    drift_factor: f64,
    quorum: Option<usize>,
    pool_size: u32,
    connect_timeout: Duration,
    io_timeout: Duration,
    keep_alive: bool,
    max_hold: Option<Duration>,
    fencing: bool,
    wake_on_release: bool,
    event_handler: Option<Arc<dyn HandleEvent>>,
    slow_acquire_threshold: Option<Duration>,
    longest_ttl: Duration,
    restart_quarantine: bool,
    durable_nodes: bool,
}

impl Default for RedLockFactoryBuilder {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            ttl: defaults::TTL,
            retry_delay: defaults::RETRY_DELAY,
            retry_jitter: defaults::RETRY_JITTER,
            max_retries: defaults::MAX_RETRIES,
            drift_factor: defaults::DRIFT_FACTOR,
            quorum: None,
            pool_size: defaults::POOL_SIZE,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            io_timeout: defaults::IO_TIMEOUT,
            keep_alive: false,
            max_hold: None,
            fencing: false,
            wake_on_release: true,
            event_handler: None,
            slow_acquire_threshold: None,
            longest_ttl: defaults::LONGEST_TTL,
            restart_quarantine: true,
            durable_nodes: false,
        }
    }
}

impl fmt::Debug for RedLockFactoryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match n {
                Ok(spec) => spec.name(),
                Err(_) => "<invalid>".to_owned(),
            })
            .collect();
        f.debug_struct("RedLockFactoryBuilder")
            .field("nodes", &nodes)
            .field("ttl", &self.ttl)
            .field("retry_delay", &self.retry_delay)
            .field("retry_jitter", &self.retry_jitter)
            .field("max_retries", &self.max_retries)
            .field("drift_factor", &self.drift_factor)
            .field("quorum", &self.quorum)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("max_hold", &self.max_hold)
            .field("fencing", &self.fencing)
            .field("wake_on_release", &self.wake_on_release)
            .field("event_handler", &self.event_handler.is_some())
            .field("slow_acquire_threshold", &self.slow_acquire_threshold)
            .field("longest_ttl", &self.longest_ttl)
            .field("restart_quarantine", &self.restart_quarantine)
            .field("durable_nodes", &self.durable_nodes)
            .finish()
    }
}

impl RedLockFactoryBuilder {
    /// A builder with no nodes and every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one node: a URL (`redis://[user][:password@]host[:port][/db]`, `rediss://` with
    /// the `tls` feature, `redis+unix:///path`, or a Sentinel group as
    /// `redis+sentinel://host[:port],host[:port]/master_name[/db]`), a `(host, port)` pair, a
    /// [`redis::ConnectionInfo`], or a [`SentinelNode`] (see [`IntoNode`]).
    ///
    /// Each node must be an independent Redis master or master group (not a replica of
    /// another node). An unparsable node is reported by [`build`](Self::build).
    pub fn node<T: IntoNode>(mut self, node: T) -> Self {
        self.nodes.push(NodeSpec::parse(node));
        self
    }

    /// Adds several nodes, as [`node`](Self::node) does for one.
    pub fn nodes<I>(mut self, nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: IntoNode,
    {
        self.nodes.extend(nodes.into_iter().map(NodeSpec::parse));
        self
    }

    /// Adds a Sentinel-managed master group as one node: each connection goes to the master
    /// the sentinels name at that moment, and the node follows failovers by itself. The same
    /// as [`node`](Self::node) with a [`SentinelNode`].
    ///
    /// Sentinel keeps each node available; safety still comes from the quorum of independent
    /// nodes (see [`SentinelNode`]).
    pub fn sentinel_node(self, node: SentinelNode) -> Self {
        self.node(node)
    }

    /// The lease time of the locks the factory creates: how long a lock outlives a holder
    /// that died without releasing it. A lock can override it with [`RedLock::with_ttl`].
    ///
    /// Defaults to 10 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The base pause between two rounds while waiting for a lock held elsewhere.
    ///
    /// Defaults to 50 ms.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The random extra pause, uniform in `[0, jitter)`, added to
    /// [`retry_delay`](Self::retry_delay) so contenders fall out of lock-step.
    ///
    /// Defaults to 50 ms.
    pub fn retry_jitter(mut self, jitter: Duration) -> Self {
        self.retry_jitter = jitter;
        self
    }

    /// How many rounds in a row may fail for want of a quorum of answering nodes before
    /// [`RedLock::acquire`] and [`RedLock::acquire_timeout`] return the error. Rounds that find
    /// the lock held elsewhere are waits, not failures, and do not count.
    ///
    /// Defaults to 3 (so at most 4 failed rounds).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The clock drift factor: the validity of a lease is shortened by
    /// `ttl * factor + 2 ms` to allow for nodes' clocks running at different rates. Must be
    /// finite and in `[0, 1)`.
    ///
    /// Defaults to 0.01.
    pub fn clock_drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// How many nodes must agree. It must be a strict majority (more than half the nodes) or
    /// two holders could each gather a quorum.
    ///
    /// Defaults to `nodes / 2 + 1`.
    pub fn quorum(mut self, quorum: usize) -> Self {
        self.quorum = Some(quorum);
        self
    }

    /// The most connections kept open to each node (1 to [`MAX_POOL_SIZE`]). Threads beyond it
    /// wait for a connection, up to the connect timeout.
    ///
    /// A round returns once a quorum's replies settle it; a node that has not answered by then
    /// (a far one) keeps its connection until its reply is read, so against far nodes each
    /// thread uses several connections to them (about the far node's round trip divided by
    /// the time between rounds). With a pool of one, every reply is read by the round itself.
    ///
    /// Defaults to 16.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// How long opening a connection to a node may take, handshake included; also the most a
    /// round waits for a free pooled connection.
    ///
    /// Defaults to 500 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a round waits for the nodes' replies (one deadline shared by all nodes of the
    /// round), and the write timeout of each connection. Keep it a small fraction of the TTL.
    ///
    /// Defaults to 100 ms.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// Renew the leases of the locks this factory creates automatically while their guards
    /// live (a handle can override it with
    /// [`Handle::with_keep_alive`](crate::Handle::with_keep_alive)).
    ///
    /// One background thread per factory renews every kept-alive guard at a third of its TTL,
    /// batching the renewals that fall due together into one round trip per node. When a
    /// renewal finds the lock lost, or the lease runs out before a quorum renews it, the guard
    /// turns invalid at once and its [`loss_signal`](crate::LeaseGuard::loss_signal) fires
    /// (with its [`on_loss`](crate::LossSignal::on_loss) callbacks). Releasing a guard takes it
    /// out of the renewal schedule before the release round, so the two never race.
    ///
    /// Defaults to off.
    pub fn keep_alive(mut self, on: bool) -> Self {
        self.keep_alive = on;
        self
    }

    /// With keep-alive, stop renewing once a lock has been held this long (measured from the
    /// acquisition): the last renewal is shortened to end there (renewals that would add
    /// less than a tenth of the TTL are skipped, so the lease may end up to that much earlier),
    /// and the guard's loss signal fires with [`LossReason::HoldLimit`](crate::LossReason::HoldLimit)
    /// when it runs out. A handle can override it with
    /// [`Handle::with_max_hold`](crate::Handle::with_max_hold).
    ///
    /// Defaults to no limit.
    pub fn max_hold(mut self, limit: Duration) -> Self {
        self.max_hold = Some(limit);
        self
    }

    /// Issue a fencing token with every acquisition (see
    /// [`RedLockGuard::fencing_token`](crate::RedLockGuard::fencing_token)); a lock can
    /// override it with [`Handle::with_fencing`](crate::Handle::with_fencing). Costs one more
    /// round trip per acquisition.
    ///
    /// Defaults to off.
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// The longest TTL that any client of these nodes ever writes: the bound of the **restart
    /// quarantine**, and a setting every client of the nodes must agree on.
    ///
    /// A node that lost its data (restarted without durable persistence) may have forgotten a
    /// lease that another client still holds on the other nodes; Redlock's "delayed restart"
    /// rule says such a node must not take part until every lease it may have granted has
    /// expired. The client enforces the rule itself: it reads each node's start from the
    /// connection handshake (`INFO server`: `run_id`, `uptime_in_seconds`, read again at every
    /// reconnect), and until `start + longest_ttl + drift` that node's "yes" does not count
    /// toward any acquisition (a lock, a permit, a read or write lock, a multi-lock). Extends,
    /// renewals and releases still count it: their yes says that our own token, written after
    /// the node started, is there. A node with AOF and `appendfsync always` keeps its keys and
    /// votes at once (see [`durable_nodes`](Self::durable_nodes)); see
    /// [`restart_quarantine`](Self::restart_quarantine) to switch the quarantine off.
    ///
    /// The bound covers other clients too (other processes, other Redlock libraries on the same
    /// nodes), so it is not this factory's TTL: set it to the longest TTL any of them writes in
    /// one command (with keep-alive, the TTL of one renewal, not the total hold time). Every
    /// TTL this factory uses, its own, a lock's [`with_ttl`](RedLock::with_ttl) and an
    /// [`extend`](crate::RedLockGuard::extend), must be at most this long: a longer one is
    /// refused with [`Error::InvalidConfig`], since a quarantine shorter than a lease does not
    /// protect it.
    ///
    /// Defaults to 60 s: six times the default TTL, above the usual lease of the common Redis
    /// lock clients (redsync 8 s, Redisson's watchdog 30 s), so mixed deployments are covered
    /// without configuration. The cost is availability, not safety: a restarted node sits out
    /// for a minute, which only matters when another node is down at the same time, and a
    /// fresh non-durable cluster grants its first lock after a minute.
    pub fn longest_ttl(mut self, ttl: Duration) -> Self {
        self.longest_ttl = ttl;
        self
    }

    /// Switches the restart quarantine (see [`longest_ttl`](Self::longest_ttl)) on or off.
    ///
    /// Off, a node restarted empty counts at once, and can hand a second client a lock that
    /// another still holds: Redlock's "delayed restart" rule is then the operator's to enforce.
    /// Switch it off only for throw-away nodes (tests, a local demo) whose every restart is
    /// deliberate, or where the service manager already delays restarts by more than the
    /// longest TTL. Eviction and clock checks still run, and still warn.
    ///
    /// Defaults to on.
    pub fn restart_quarantine(mut self, on: bool) -> Self {
        self.restart_quarantine = on;
        self
    }

    /// Declares that every node keeps each acknowledged write across a crash (AOF with
    /// `appendfsync always`), for servers that will not say: then a restarted node votes at
    /// once instead of sitting out its restart quarantine.
    ///
    /// The client reads persistence itself where it may (`INFO persistence`'s `aof_enabled`,
    /// and `CONFIG GET appendfsync`, which most ACL users may not run), and what the server
    /// says beats the declaration: a node that says its AOF is off, or fsyncs `everysec`, is
    /// quarantined after a restart anyway (and warned about). The declaration matters where
    /// the server does not answer: an ACL user without `CONFIG` sees `aof_enabled:1` but not
    /// the fsync policy. A server that lies about its persistence (a disk that acknowledges
    /// writes it has not stored) is beyond what the client can check.
    ///
    /// Defaults to off.
    pub fn durable_nodes(mut self, durable: bool) -> Self {
        self.durable_nodes = durable;
        self
    }

    /// Wake waiting [`acquire`](RedLock::acquire) calls when a redmutex client releases the
    /// lock, through Redis pub/sub (one subscriber connection per node per factory, opened by
    /// the first wait), instead of only polling every `retry_delay`. Polling stays as the
    /// fallback for holders using other clients and for lost messages.
    ///
    /// Defaults to on.
    pub fn wake_on_release(mut self, on: bool) -> Self {
        self.wake_on_release = on;
        self
    }

    /// Tells `handler` what happens to the factory's locks and nodes: acquisitions, waits,
    /// give-ups, failed extensions, losses, nodes going down and coming back (see
    /// [`HandleEvent`] for which thread each event is delivered on, and what a handler that
    /// blocks or panics does). To feed more than one handler, pass a pair `(a, b)`.
    ///
    /// Defaults to none (the statistics of [`RedLockFactory::stats`] are kept either way).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use redmutex::event::NodeDownEvent;
    /// use redmutex::{HandleEvent, RedLockFactory};
    ///
    /// struct Pager;
    ///
    /// impl HandleEvent for Pager {
    ///     fn on_node_down(&self, e: &NodeDownEvent<'_>) {
    ///         eprintln!("lock node {} is down ({}): {}", e.node, e.kind, e.message);
    ///     }
    /// }
    ///
    /// let factory = RedLockFactory::builder()
    ///     .nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])
    ///     .event_handler(Pager)
    ///     .build()?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn event_handler(mut self, handler: impl HandleEvent + 'static) -> Self {
        self.event_handler = Some(Arc::new(handler));
        self
    }

    /// Log a warning (`log::warn!`, naming the resource, the wait and the rounds) for every
    /// acquisition that takes at least `threshold`, whether it got the lock or gave up, like
    /// sqlx's `acquire_slow_threshold`.
    ///
    /// Defaults to off: waiting for a lock held elsewhere is normal operation (a standby
    /// waiting to become leader may wait for hours), so only the application knows what wait
    /// is too long.
    pub fn slow_acquire_threshold(mut self, threshold: Duration) -> Self {
        self.slow_acquire_threshold = Some(threshold);
        self
    }

    /// Checks every setting and creates the factory.
    ///
    /// This does not wait for connections: a node that is down (a minority may be) neither fails
    /// nor delays the build, and is connected to in the background.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`], naming the setting, when there are no nodes, too many nodes,
    /// a node that does not parse, a duplicate node (it would fake a quorum: for Sentinel
    /// nodes, the same master name and database through a common sentinel), a zero, too long
    /// or drift-eaten TTL, a drift factor outside `[0, 1)`, a quorum that is not a strict
    /// majority, a zero pool size, or a zero timeout.
    pub fn build(self) -> Result<RedLockFactory> {
        let config = self.check()?;
        let mut specs = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.into_iter().enumerate() {
            let spec = node.map_err(|e| Error::InvalidConfig(format!("node {i}: {e}")))?;
            if specs.iter().any(|seen: &NodeSpec| seen.same_node(&spec)) {
                return Err(Error::InvalidConfig(format!(
                    "node {i} ({}) is given twice: a duplicate node would fake a quorum",
                    spec.name()
                )));
            }
            specs.push(spec);
        }
        let count = specs.len();
        let observer = Arc::new(Observer::new(
            self.event_handler,
            self.slow_acquire_threshold,
        ));
        let notifier = Arc::new(Notifier::default());
        let listener = observer
            .handler
            .is_some()
            .then(|| node_listener(&notifier, &observer));
        let watch = Watch {
            sit_out: config.quarantine.then(|| {
                config.longest_ttl + round::drift(config.longest_ttl, config.drift_factor)
            }),
            declared_durable: self.durable_nodes,
            drift_factor: config.drift_factor,
        };
        let nodes = Nodes::connect(
            specs,
            self.connect_timeout,
            self.io_timeout,
            self.pool_size,
            listener,
            watch,
        )
        .map_err(Error::InvalidConfig)?;
        let shared = Arc::new(Shared {
            nodes,
            config,
            waker: Waker::new(self.wake_on_release, count),
            queue: Queue::default(),
            notifier,
            observer,
        });
        Ok(RedLockFactory {
            runtime: Arc::new(Runtime {
                shared,
                keeper: Keeper::default(),
            }),
        })
    }

    fn check(&self) -> Result<Config> {
        let n = self.nodes.len();
        if n == 0 {
            return Err(Error::InvalidConfig("no nodes given".into()));
        }
        if n > MAX_NODES {
            return Err(Error::InvalidConfig(format!(
                "{n} nodes given; at most {MAX_NODES} are supported"
            )));
        }
        let f = self.drift_factor;
        if !f.is_finite() || !(0.0..1.0).contains(&f) {
            return Err(Error::InvalidConfig(format!(
                "clock drift factor must be in [0, 1), got {f}"
            )));
        }
        check_ttl("ttl", self.ttl, f)?;
        check_ttl("longest TTL", self.longest_ttl, f)?;
        if self.restart_quarantine && self.ttl > self.longest_ttl {
            return Err(Error::InvalidConfig(format!(
                "ttl {:?} is longer than the longest TTL {:?}: raise longest_ttl (on every \
                 client of these nodes) to at least the longest TTL any of them uses",
                self.ttl, self.longest_ttl
            )));
        }
        let quorum = self.quorum.unwrap_or_else(|| majority(n));
        if quorum <= n / 2 || quorum > n {
            return Err(Error::InvalidConfig(format!(
                "quorum {quorum} for {n} nodes must be a strict majority ({} to {n})",
                majority(n)
            )));
        }
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            return Err(Error::InvalidConfig(format!(
                "pool size must be between 1 and {MAX_POOL_SIZE}, got {}",
                self.pool_size
            )));
        }
        for (what, d) in [
            ("connect timeout", self.connect_timeout),
            ("I/O timeout", self.io_timeout),
        ] {
            if d < Duration::from_millis(1) {
                return Err(Error::InvalidConfig(format!(
                    "{what} must be at least 1 ms, got {d:?}"
                )));
            }
            if d > MAX_TTL {
                return Err(Error::InvalidConfig(format!("{what} {d:?} is too long")));
            }
        }
        for (what, d) in [
            ("retry delay", self.retry_delay),
            ("retry jitter", self.retry_jitter),
        ] {
            if d > MAX_TTL {
                return Err(Error::InvalidConfig(format!("{what} {d:?} is too long")));
            }
        }
        check_max_hold(self.max_hold)?;
        Ok(Config {
            keep_alive: self.keep_alive,
            max_hold: self.max_hold,
            fencing: self.fencing,
            ttl: self.ttl,
            retry_delay: self.retry_delay,
            retry_jitter: self.retry_jitter,
            max_retries: self.max_retries,
            drift_factor: f,
            quorum,
            longest_ttl: self.longest_ttl,
            quarantine: self.restart_quarantine,
        })
    }
}

/// Hands the nodes' state changes to the event handler, on the callback thread.
fn node_listener(notifier: &Arc<Notifier>, observer: &Arc<Observer>) -> Listener {
    let (notifier, observer) = (Arc::clone(notifier), Arc::clone(observer));
    Arc::new(move |change: &NodeChange<'_>| {
        let (index, node) = (change.index, change.node.to_owned());
        match change.change {
            Change::Warning(warning) => {
                let warning = warning.clone();
                shared::deliver(&notifier, &observer, "on_node_warning", move |h| {
                    h.on_node_warning(&NodeWarningEvent {
                        node: &node,
                        index,
                        warning: &warning,
                    });
                });
            }
            Change::Down(kind, message) => {
                let message = message.to_owned();
                shared::deliver(&notifier, &observer, "on_node_down", move |h| {
                    h.on_node_down(&NodeDownEvent {
                        node: &node,
                        index,
                        kind,
                        message: &message,
                    });
                });
            }
            Change::Up => shared::deliver(&notifier, &observer, "on_node_up", move |h| {
                h.on_node_up(&NodeUpEvent { node: &node, index });
            }),
        }
    })
}

/// Creates distributed locks over a fixed set of independent Redis nodes.
///
/// A factory owns one connection pool per node and the settings of the locks it creates. It is
/// cheap to clone (an `Arc` inside) and `Send + Sync`: share one per process.
///
/// # Examples
///
/// ```no_run
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::new([
///     "redis://127.0.0.1:7001",
///     "redis://127.0.0.1:7002",
///     "redis://127.0.0.1:7003",
/// ])?;
/// let _g = factory.create_lock("k").acquire()?;
/// // critical section: no other holder of "k" on these nodes until `_g` drops
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Clone)]
pub struct RedLockFactory {
    runtime: Arc<Runtime>,
}

impl fmt::Debug for RedLockFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.runtime.shared;
        let c = &shared.config;
        f.debug_struct("RedLockFactory")
            .field("nodes", &shared.nodes)
            .field("quorum", &c.quorum)
            .field("ttl", &c.ttl)
            .field("io_timeout", &shared.nodes.io_timeout)
            .finish_non_exhaustive()
    }
}

impl RedLockFactory {
    /// A factory over `nodes` with every setting at its default: the same as
    /// `RedLockFactory::builder().nodes(nodes).build()`.
    ///
    /// # Errors
    ///
    /// As [`RedLockFactoryBuilder::build`]: [`Error::InvalidConfig`] for no nodes, a node that
    /// does not parse, or a duplicate node.
    pub fn new<I>(nodes: I) -> Result<Self>
    where
        I: IntoIterator,
        I::Item: IntoNode,
    {
        Self::builder().nodes(nodes).build()
    }

    /// A builder for a factory with non-default settings.
    pub fn builder() -> RedLockFactoryBuilder {
        RedLockFactoryBuilder::new()
    }

    /// A lock on `resource`, using the factory's TTL.
    ///
    /// The Redis key is exactly `resource`, so clients of other Redlock libraries that use the
    /// same name on the same nodes exclude each other. This does not talk to the nodes; an
    /// invalid name (empty, or over 64 KiB) is reported when the lock is used.
    pub fn create_lock(&self, resource: impl Into<Arc<str>>) -> RedLock {
        RedLock::new(Arc::clone(&self.runtime), resource.into(), kind::Lock(()))
    }

    /// A read-write lock on `name`, using the factory's TTL: many readers at once, or one
    /// writer, with writer preference (see [`RwLock`]).
    ///
    /// Its writer holds the Redis key `name` as a mutex holder does, so a lock from
    /// [`create_lock`](Self::create_lock) with the same name (or another Redlock client's) is a
    /// writer of it: they exclude each other and the readers. Its other keys are `name` plus a
    /// suffix. This does not talk to the nodes; an invalid name is reported when the lock is
    /// used.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let lock = factory.create_rwlock("settings");
    /// let _r = lock.read()?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn create_rwlock(&self, name: impl Into<Arc<str>>) -> RwLock {
        RwLock::new(Arc::clone(&self.runtime), name.into(), kind::ReadWrite(()))
    }

    /// A semaphore named `name` with `permits` permits (1 to
    /// [`MAX_PERMITS`](crate::MAX_PERMITS)): at most `permits` holders at once, each holding a
    /// permit for the factory's TTL (see [`Semaphore`]).
    ///
    /// Its keys are `name` and `name` plus a suffix, so a prefix ACL covers them. This does not
    /// talk to the nodes; a bad name or count is reported when the semaphore is used.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let workers = factory.create_semaphore("batch:workers", 4);
    /// let _permit = workers.acquire()?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn create_semaphore(&self, name: impl Into<Arc<str>>, permits: u32) -> Semaphore {
        Semaphore::new(
            Arc::clone(&self.runtime),
            name.into(),
            kind::Permit { permits },
        )
    }

    /// A lock on every resource in `resources` at once, all or nothing, in one round (see
    /// [`MultiLock`]). Duplicates are dropped and the names sorted: the canonical order every
    /// node sees.
    ///
    /// Its keys are the resources' own lock keys, so it excludes every
    /// [`create_lock`](Self::create_lock) holder of any of them (and any Redlock client using
    /// those names on these nodes). This does not talk to the nodes; an empty set or a bad name
    /// is reported when the lock is used.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let guard = factory.create_multi_lock(["seat:12A", "seat:12B"]).acquire()?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn create_multi_lock<I>(&self, resources: I) -> MultiLock
    where
        I: IntoIterator,
        I::Item: Into<Arc<str>>,
    {
        let resources = resources.into_iter().map(Into::into).collect();
        multi_lock(Arc::clone(&self.runtime), resources)
    }

    /// A leader election on `name`: one leader at a time, with a term that only grows and a
    /// value it publishes, and observers of every change (see [`Election`]). Created with
    /// keep-alive on and the factory's TTL (a vanished leader is replaced within about one
    /// TTL; a resigning one at once).
    ///
    /// The leader holds the Redis key `name` as a lock holder does, so a lock from
    /// [`create_lock`](Self::create_lock) with the same name excludes it (and its fencing
    /// tokens and the terms come from one counter). Its other keys and its channel are `name`
    /// plus a suffix. This does not talk to the nodes; an invalid name is reported when the
    /// election is used.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let leader = factory.create_election("scheduler").campaign("host-a")?;
    /// println!("leading in term {}", leader.term());
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn create_election(&self, name: impl Into<Arc<str>>) -> Election {
        election(Arc::clone(&self.runtime), name.into())
    }

    /// A job named `name` that runs at most once per epoch (see [`RunOnce`]): its runs are
    /// leases of the factory's TTL, kept alive while they work, and their completion records
    /// are kept for a day unless [`with_retention`](RunOnce::with_retention) says otherwise.
    ///
    /// Its keys and channels are `name` plus a suffix (its runs' keys `name:redmutex:run:`
    /// plus the epoch). This does not talk to the nodes; an invalid name is reported when the
    /// job is used.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let outcome = factory
    ///     .create_run_once("migrations")
    ///     .run("v42", |_run| "migrated".to_owned())?;
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn create_run_once(&self, name: impl Into<Arc<str>>) -> RunOnce {
        run_once(Arc::clone(&self.runtime), name.into())
    }

    /// The number of nodes.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.runtime.shared.nodes.len()
    }

    /// How many nodes must agree for a lock to be taken.
    #[must_use]
    pub fn quorum(&self) -> usize {
        self.runtime.shared.config.quorum
    }

    /// The default TTL of the locks this factory creates.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.runtime.shared.config.ttl
    }

    /// What the factory has done since it was created (acquisitions, waits, timeouts, rounds,
    /// extensions, renewals, losses by reason, wake-ups, ...) and each node's state (up or
    /// down, last failure, recent round trip, votes), for a service to export, as bb8's
    /// `Pool::state` and deadpool's `Pool::status` do for a pool.
    ///
    /// This function does not block and does no I/O: it reads counters the lock operations
    /// keep with relaxed atomics (always on: they cost no lock on any path).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let stats = factory.stats();
    /// let down: Vec<&str> = stats.nodes.iter().filter(|n| !n.up).map(|n| n.node.as_str()).collect();
    /// if stats.nodes.len() - down.len() < factory.quorum() {
    ///     eprintln!("no quorum: {down:?} are down");
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    #[must_use]
    pub fn stats(&self) -> Stats {
        let shared = &self.runtime.shared;
        let mut stats = shared.observer.stats(&shared.nodes);
        let queue = &shared.queue;
        stats.queues = queue
            .lines()
            .into_iter()
            .map(|l| QueueStats {
                resource: l.name.to_string(),
                waiting: l.waiting,
                held: l.held,
            })
            .collect();
        stats.queued = stats.queues.iter().map(|q| q.waiting as u64).sum();
        stats.local_handovers = queue.handed();
        stats.queue_yields = queue.yields();
        stats
    }

    /// Checks each node against what Redlock assumes and what the locks need, as
    /// `redmutex doctor` does, and returns one [`Check`](crate::Check) per finding: ok, warn or fail, with
    /// the reason and the fix in one line.
    ///
    /// Per node: it answers (with its PING round trip), it is a master, its version has what
    /// each feature needs (semaphores need Redis 6.0), its uptime against the longest TTL (is
    /// it in its restart quarantine?), its persistence and fsync policy, its eviction policy.
    /// Over the nodes: enough answer as masters for a quorum, and their `TIME`s agree. With
    /// `key`, per node: the connecting user may run every command on every key and channel
    /// that each feature (lock, fencing, wake-up, semaphore, read-write lock, multi-lock)
    /// uses for `key`, tried for real on probe keys derived from it (`<key>:redmutex:doctor`
    /// and its own derived keys, which an ACL pattern for the key's prefix covers; the probes
    /// release or delete what they take at once). A refusal of the lock's own commands fails;
    /// of another feature's, warns.
    ///
    /// This blocks for a few round trips per node, each bounded by the factory's timeouts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty or too long `key`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use redmutex::{CheckStatus, RedLockFactory};
    ///
    /// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"])?;
    /// let diagnosis = factory.diagnose(Some("app:jobs"))?;
    /// for check in diagnosis.checks.iter().filter(|c| c.status != CheckStatus::Ok) {
    ///     eprintln!("{check}");
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn diagnose(&self, key: Option<&str>) -> Result<Diagnosis> {
        if let Some(key) = key {
            shared::check_resource(key)?;
        }
        Ok(doctor::diagnose(&self.runtime.shared, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn err(b: RedLockFactoryBuilder) -> String {
        match b.build() {
            Err(Error::InvalidConfig(m)) => m,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("built"),
        }
    }

    fn three() -> RedLockFactoryBuilder {
        RedLockFactory::builder().nodes([
            "redis://127.0.0.1:1",
            "redis://127.0.0.1:2",
            "redis://127.0.0.1:3",
        ])
    }

    #[test]
    fn rejects_bad_settings_by_name() {
        assert!(err(RedLockFactory::builder()).contains("no nodes"));
        assert!(err(three().ttl(Duration::ZERO)).contains("ttl"));
        assert!(err(three().ttl(Duration::from_micros(900))).contains("ttl"));
        assert!(err(three().ttl(Duration::from_millis(2))).contains("drift"));
        assert!(err(three().ttl(Duration::MAX)).contains("too long"));
        assert!(err(three().clock_drift_factor(f64::NAN)).contains("drift factor"));
        assert!(err(three().clock_drift_factor(-0.1)).contains("drift factor"));
        assert!(err(three().clock_drift_factor(1.0)).contains("drift factor"));
        assert!(err(three().clock_drift_factor(f64::INFINITY)).contains("drift factor"));
        assert!(err(three().quorum(1)).contains("quorum"));
        assert!(err(three().quorum(4)).contains("quorum"));
        assert!(err(three().pool_size(0)).contains("pool size"));
        assert!(err(three().pool_size(u32::MAX)).contains("pool size"));
        assert!(err(three().io_timeout(Duration::ZERO)).contains("I/O timeout"));
        assert!(err(three().connect_timeout(Duration::from_nanos(5))).contains("connect timeout"));
        assert!(err(three().retry_delay(Duration::MAX)).contains("retry delay"));
        assert!(err(three().longest_ttl(Duration::ZERO)).contains("longest TTL"));
        let short = three().longest_ttl(Duration::from_secs(5));
        assert!(err(short).contains("raise longest_ttl"));
        // Off, the bound is not enforced (nor needed).
        assert!(
            three()
                .longest_ttl(Duration::from_secs(5))
                .restart_quarantine(false)
                .build()
                .is_ok()
        );
        assert!(err(three().node("redis://127.0.0.1:2")).contains("twice"));
        assert!(err(three().node("redis://localhost:1/db")).contains("node 3"));
        assert!(err(three().node("ftp://127.0.0.1:1")).contains("node 3"));
        let many: Vec<(String, u16)> = (0..40).map(|p| ("127.0.0.1".to_owned(), p)).collect();
        assert!(err(RedLockFactory::builder().nodes(many)).contains("at most"));
    }

    #[test]
    fn same_address_other_db_is_another_node() {
        let f = RedLockFactory::builder()
            .nodes([
                "redis://127.0.0.1:1/0",
                "redis://127.0.0.1:1/1",
                "redis://127.0.0.1:1/2",
            ])
            .build()
            .unwrap();
        assert_eq!(f.node_count(), 3);
    }

    #[test]
    fn builds_with_every_node_down_and_does_not_wait() {
        let start = Instant::now();
        let f = three().build().unwrap();
        assert_eq!(f.quorum(), 2);
        assert_eq!(f.ttl(), defaults::TTL);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn passwords_never_shown() {
        let b = RedLockFactory::builder().nodes([
            "redis://user:hunter2@127.0.0.1:1",
            "redis://:hunter2@127.0.0.1:2/3",
            "redis://127.0.0.1:3",
        ]);
        assert!(!format!("{b:?}").contains("hunter2"));
        let f = b.build().unwrap();
        let shown = format!("{f:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1:2/3"), "{shown}");
        let bad = err(RedLockFactory::builder().node("redis://user:hunter2@[::1"));
        assert!(!bad.contains("hunter2"), "{bad}");
    }

    #[test]
    fn sentinel_nodes_mix_with_plain_ones() {
        let f = RedLockFactory::builder()
            .node("redis://127.0.0.1:1")
            .sentinel_node(SentinelNode::new("m", [("127.0.0.1", 2)]).password("hunter2"))
            .node("redis+sentinel://:hunter2@127.0.0.1:3,127.0.0.1:4/m/1".to_owned())
            .build()
            .unwrap();
        assert_eq!(f.node_count(), 3);
        let shown = format!("{f:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sentinel:m@127.0.0.1:2"), "{shown}");
        assert!(
            shown.contains("sentinel:m@127.0.0.1:3,127.0.0.1:4/1"),
            "{shown}"
        );
    }

    #[test]
    fn sentinel_nodes_are_checked() {
        let group = || SentinelNode::new("m", [("127.0.0.1", 2), ("127.0.0.1", 3)]);
        let twice = err(three()
            .sentinel_node(group())
            .node("redis+sentinel://127.0.0.1:3/m"));
        assert!(
            twice.contains("node 4 (sentinel:m@127.0.0.1:3) is given twice"),
            "{twice}"
        );
        // Another master name, or another database, is another node.
        three()
            .sentinel_node(group())
            .node("redis+sentinel://127.0.0.1:3/other")
            .node("redis+sentinel://127.0.0.1:3/m/1")
            .build()
            .unwrap();
        let none: [(&str, u16); 0] = [];
        assert!(err(three().sentinel_node(SentinelNode::new("m", none))).contains("node 3"));
        assert!(err(three().sentinel_node(group().db(-2))).contains("node 3: database"));
        let bad = err(three().node("redis+sentinel://u:hunter2@h:0/m"));
        assert!(bad.contains("node 3: sentinel URL"), "{bad}");
        assert!(!bad.contains("hunter2"), "{bad}");
        #[cfg(not(any(feature = "tls-rustls", feature = "tls-native-tls")))]
        assert!(err(three().node("rediss+sentinel://h/m")).contains("TLS"));
    }

    #[test]
    fn factory_is_send_sync_clone_static() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<RedLockFactory>();
    }
}

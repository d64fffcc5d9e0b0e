//! One Redis node: its connection pool, its connection manager and its health.
//!
//! The pool is r2d2's, but with our own manager: the stock `impl ManageConnection for Client` has
//! no connect timeout and leaves sockets without I/O timeouts, so a black-holed node would hang
//! its caller. Health tracking keeps a dead minority cheap: a node that failed is skipped (a "no"
//! vote) for a short, growing back-off instead of costing a timeout in every round.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use r2d2::{ManageConnection, Pool, PooledConnection};
use redis::{Client, RedisError, Value};

use scheduled_thread_pool::{OnPoolDropBehavior, ScheduledThreadPool};

use crate::command::{self, Arg};
use crate::error::{NodeCause, NodeError, NodeErrorKind, describe, is_interrupted};
use crate::scripts;

mod late;
mod list;
mod sentinel;
mod spec;
mod vitals;

pub(crate) use late::{Judge, Unread};
pub use list::split_node_list;
use sentinel::Resolver;
pub use sentinel::{DEFAULT_SENTINEL_PORT, SentinelNode};
pub(crate) use spec::redacted_redis_error;
pub use spec::{IntoNode, NodeSpec};
pub(crate) use vitals::{Facts, Watch};
pub use vitals::{NodeWarning, QuarantineCause};

/// The most nodes a factory accepts. Redlock deployments use 3, 5 or 7; more only slows every
/// round down.
pub const MAX_NODES: usize = 32;

/// First back-off after a failure; it doubles with each further failure.
const BACKOFF_BASE: Duration = Duration::from_millis(20);
/// Longest back-off between probes of a failing node.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The shortest wait for a pooled connection (r2d2 needs a non-zero one to start a connect).
const MIN_WAIT: Duration = Duration::from_millis(1);
/// The smallest socket timeout: redis-rs rejects a zero `Duration`.
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// How often a caller waiting for a first connection checks whether the connect failed.
const WAIT_SLICE: Duration = Duration::from_millis(5);
/// The most releases a node is owed at once (see [`Node::owe`]); past that, the oldest is given
/// up (its key expires with its TTL).
const MAX_OWED: usize = 256;
/// The most owed releases one exchange sends (a connection's opening, a checkout), so that
/// paying them never makes a connect or a round slow: the rest go at the following checkouts.
const OWED_PER_EXCHANGE: usize = 32;

/// A release a node could not be reached for: sent to it first thing on its next connection.
#[derive(Debug)]
struct Owed {
    id: u64,
    /// The compare-and-delete, packed (as EVAL: no script needs to be loaded).
    packed: Vec<u8>,
    /// When the key it deletes expires anyway: no use sending it later.
    until: Instant,
}

/// The releases a node is owed.
#[derive(Debug, Default)]
struct OwedList {
    entries: Vec<Owed>,
    next_id: u64,
}

/// A pooled connection with the bookkeeping the pool needs.
pub(crate) struct NodeConn {
    /// Boxed: a round moves its pooled connections around (out of the pool, into the round's
    /// slots, to the reader and back), and a `redis::Connection` is most of their size.
    pub(crate) con: Box<redis::Connection>,
    /// The node's generation when this connection was opened.
    generation: u64,
    /// Set after any I/O error or timeout: the connection may have a reply in flight or be dead,
    /// so it must never be used again.
    pub(crate) broken: bool,
    /// The socket's current read timeout, to skip `setsockopt` when it would not change.
    read_timeout: Duration,
    /// The owed releases of an id below this one were sent on this connection, or before it
    /// opened (see [`Node::owe`]).
    owed_seen: u64,
}

impl NodeConn {
    /// Sets the read timeout, with a system call only when it changes.
    pub(crate) fn set_read_timeout(&mut self, timeout: Duration) -> redis::RedisResult<()> {
        if timeout != self.read_timeout {
            self.con.set_read_timeout(Some(timeout))?;
            self.read_timeout = timeout;
        }
        Ok(())
    }
}

/// Where a node's connections come from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A fixed address.
    Direct(Client),
    /// The current master of a Sentinel-managed group, resolved for each connection.
    Sentinel(Resolver),
}

impl Source {
    /// Opens a connection, bounding the connect and the handshake by `timeout` (the
    /// connection then has no I/O timeouts).
    pub(crate) fn connect(&self, timeout: Duration) -> Result<redis::Connection, RedisError> {
        match self {
            Self::Direct(client) => client.get_connection_with_timeout(timeout),
            Self::Sentinel(resolver) => resolver.connect(timeout),
        }
    }
}

/// Which Redis server each node of a factory turned out to be (its `run_id` and database), so
/// that two addresses reaching one server (`localhost` and `127.0.0.1`, a socket and a port, a
/// NAT) cannot count twice towards a quorum: the address check at build time cannot see that.
#[derive(Debug)]
struct Servers {
    ids: Mutex<Vec<Option<String>>>,
}

impl Servers {
    fn new(nodes: usize) -> Self {
        Self {
            ids: Mutex::new(vec![None; nodes]),
        }
    }

    /// Records that node `index` is server `id`; `Err(j)` if node `j` already is.
    fn claim(&self, index: usize, id: &str) -> Result<(), usize> {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(j) = ids
            .iter()
            .enumerate()
            .position(|(j, other)| j != index && other.as_deref() == Some(id))
        {
            return Err(j);
        }
        if let Some(slot) = ids.get_mut(index) {
            *slot = Some(id.to_owned());
        }
        Ok(())
    }
}

/// Opens connections with bounded connect and I/O times.
#[derive(Debug)]
pub(crate) struct NodeManager {
    source: Arc<Source>,
    connect_timeout: Duration,
    io_timeout: Duration,
    health: Arc<Health>,
    /// This node's index in `servers`.
    index: usize,
    servers: Arc<Servers>,
}

impl NodeManager {
    fn open(&self) -> Result<NodeConn, RedisError> {
        let generation = self.health.generation.load(Ordering::Acquire);
        // Bounds the TCP connect and the handshake (AUTH, SELECT, CLIENT SETINFO); for a
        // Sentinel node also the sentinels' answer and the master's ROLE check.
        let mut con = self.source.connect(self.connect_timeout)?;
        // The handshake resets the timeouts to None; set ours, never zero.
        con.set_write_timeout(Some(self.io_timeout))?;
        // Load the scripts now so rounds rarely meet NOSCRIPT, and ask which server this is
        // and how it keeps its keys (see `vitals`), in one round trip. A server that refuses a
        // command (an ACL without SCRIPT LOAD or INFO) still works: rounds fall back to EVAL,
        // and the checks that needed the answer know less. An I/O error fails the connect.
        let mut packed = Vec::new();
        for script in scripts::ALL {
            let args = [Arg::Str("SCRIPT"), Arg::Str("LOAD"), Arg::Str(script.src)];
            command::pack(&mut packed, args, 3);
        }
        vitals::pack(&mut packed);
        // Then the releases the node is owed, before any round can use the connection: the
        // commands a stopped node queued on older connections ran before this connection's
        // handshake was answered, so these come after them.
        let (owed, owed_seen) = self.health.append_owed(&mut packed, 0);
        let sent = Instant::now();
        con.send_packed_command(&packed)?;
        // Read against one deadline: the whole exchange is bounded by the connect timeout.
        let deadline = sent + self.connect_timeout;
        let mut answers = Vec::with_capacity(vitals::QUESTIONS);
        let mut loaded = 0;
        for i in 0..scripts::ALL.len() + vitals::QUESTIONS {
            let left = deadline.saturating_duration_since(Instant::now());
            con.set_read_timeout(Some(left.max(MIN_TIMEOUT)))?;
            let reply = con.recv_response()?;
            match scripts::ALL.get(i) {
                Some(script) if !matches!(reply, Value::ServerError(_)) => loaded |= script.bit,
                Some(_) => {}
                None => answers.push(reply),
            }
        }
        self.health.scripts.fetch_or(loaded, Ordering::Relaxed);
        let received = Instant::now();
        if !owed.is_empty() {
            let ran = read_owed(&mut con, &owed, deadline)?;
            self.health.paid(&ran, owed.len());
        }
        let facts = vitals::Facts::of_handshake(&answers);
        let db = redis::ConnectionLike::get_db(&con);
        if let Some(run_id) = &facts.run_id
            && let Err(j) = self.servers.claim(self.index, &format!("{run_id}/{db}"))
        {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "duplicate node",
                format!(
                    "node {} reaches the same Redis server as node {j}, which would fake a \
                     quorum; it is left out",
                    self.index
                ),
            )));
        }
        // Before the connection is handed out: every reply a round reads from this server is
        // judged with what this handshake found (a restart, a durable AOF, a clock jump).
        self.health.observe(&facts, sent, received);
        con.set_read_timeout(Some(self.io_timeout))?;
        Ok(NodeConn {
            con: Box::new(con),
            generation,
            broken: false,
            read_timeout: self.io_timeout,
            owed_seen,
        })
    }
}

impl ManageConnection for NodeManager {
    type Connection = NodeConn;
    type Error = RedisError;

    /// Runs on r2d2's connector threads; a failure marks the node down at once, so callers
    /// waiting for a connection stop waiting.
    ///
    /// A connect interrupted by a signal (EINTR: a handler ran in this process while the
    /// handshake waited for a reply) is not the node's failure: it is tried again, on a fresh
    /// connection, while the connect timeout lasts, and is never counted against the node.
    fn connect(&self) -> Result<NodeConn, RedisError> {
        let deadline = Instant::now() + self.connect_timeout;
        loop {
            match self.open() {
                Ok(conn) => {
                    self.health.connected();
                    return Ok(conn);
                }
                Err(e) if is_interrupted(&e) => {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    log::debug!(
                        "redmutex: connect to {} interrupted by a signal; trying again",
                        self.health.name
                    );
                }
                Err(e) => {
                    self.health
                        .failed(NodeErrorKind::of(&e), &format!("connect: {}", describe(&e)));
                    return Err(e);
                }
            }
        }
    }

    fn is_valid(&self, conn: &mut NodeConn) -> Result<(), RedisError> {
        redis::cmd("PING").query::<()>(&mut conn.con)
    }

    fn has_broken(&self, conn: &mut NodeConn) -> bool {
        conn.broken || !redis::ConnectionLike::is_open(&conn.con)
    }
}

/// Reads the replies to the owed releases `ids`, sent on `con`, by `deadline`; returns those
/// that ran. What they answer does not matter (a key already gone, or someone else's), only
/// that they ran: an error reply (a node still loading its dataset) leaves the release owed.
fn read_owed(
    con: &mut redis::Connection,
    ids: &[u64],
    deadline: Instant,
) -> Result<Vec<u64>, RedisError> {
    let mut ran = Vec::with_capacity(ids.len());
    for id in ids {
        let left = deadline.saturating_duration_since(Instant::now());
        con.set_read_timeout(Some(left.max(MIN_TIMEOUT)))?;
        if !matches!(con.recv_response()?, Value::ServerError(_)) {
            ran.push(*id);
        }
    }
    Ok(ran)
}

/// Sends the releases the node is owed that `conn` has not sent, on it, and reads their
/// replies within `io_timeout` (see [`Node::pay_owed`]). On an error the connection is left
/// marked broken.
fn pay_owed_on(
    health: &Health,
    conn: &mut NodeConn,
    io_timeout: Duration,
) -> Result<(), RedisError> {
    let mut packed = Vec::new();
    let (owed, seen) = health.append_owed(&mut packed, conn.owed_seen);
    conn.owed_seen = seen;
    if owed.is_empty() {
        return Ok(());
    }
    conn.broken = true; // replies in flight
    let deadline = Instant::now() + io_timeout;
    conn.con.send_packed_command(&packed)?;
    let ran = read_owed(&mut conn.con, &owed, deadline)?;
    // `read_owed` set the socket's timeout itself: back to the cached one.
    conn.con.set_read_timeout(Some(conn.read_timeout))?;
    health.paid(&ran, owed.len());
    conn.broken = false;
    Ok(())
}

/// Logs r2d2's connect errors at debug level (they are already counted by [`Health`]), so a
/// dead node does not flood the error log from background retries.
#[derive(Debug)]
struct QuietErrors {
    node: String,
}

impl r2d2::HandleError<RedisError> for QuietErrors {
    fn handle_error(&self, error: RedisError) {
        log::debug!("redmutex: connect to {} failed: {error}", self.node);
    }
}

/// A change of a node's state, reported to the factory's listener (which hands it to the event
/// handler, on the callback thread).
#[derive(Debug)]
pub(crate) struct NodeChange<'a> {
    /// The node's index in the factory.
    pub(crate) index: usize,
    /// The node's name (no secrets).
    pub(crate) node: &'a str,
    /// What changed.
    pub(crate) change: Change<'a>,
}

/// What changed about a node.
#[derive(Debug)]
pub(crate) enum Change<'a> {
    /// It was marked down after this failure.
    Down(NodeErrorKind, &'a str),
    /// It answers again.
    Up,
    /// Its handshake found this (see [`NodeWarning`]).
    Warning(&'a NodeWarning),
}

/// Told of every change of a node's state, on whichever thread saw it (a caller's, the
/// keep-alive thread, a connector thread), possibly while a lease's round lock is held: it must
/// not run user code or block.
pub(crate) type Listener = Arc<dyn Fn(&NodeChange<'_>) + Send + Sync>;

/// A node's answer to one command of a round, for its vote counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ballot {
    /// Yes (set, deleted, extended).
    Given,
    /// No (held elsewhere, not our token).
    Refused,
    /// No useful answer.
    Failed,
}

/// What a node has been doing, since the factory was created: a part of
/// [`Stats`](crate::Stats), from [`RedLockFactory::stats`](crate::RedLockFactory::stats).
///
/// Votes are the node's answers to the commands of lock rounds (acquire, extend, renew,
/// release, fencing), counted per command: a batch of 100 renewals is 100 votes. Inspections
/// are not votes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// The node's address (`host:port`, socket path, or `sentinel:master@sentinels`, plus
    /// `/db`): never a URL or a password.
    pub node: String,
    /// Whether the node is in use: false from a failure (an I/O error, a timeout, a refused
    /// connect) until it answers again, during which rounds skip it as a failed vote.
    pub up: bool,
    /// The kind of the node's last failure, if it ever failed (kept after it recovers).
    pub last_error: Option<NodeErrorKind>,
    /// The node's recent round trip, smoothed (each round moves it an eighth of the way, as
    /// TCP smooths its RTT): from the moment a round had written to every node to the moment
    /// this node's reply was read. Replies are read one node after another, so a slow node
    /// also raises the figure of the nodes read after it. A reply read after its round was
    /// decided (see `late_replies`) gives its round trip when the read waited for it; when it
    /// was there already, only a bound that lowers the figure. `None` until it first answered.
    pub round_trip: Option<Duration>,
    /// Rounds decided before this node's replies were read: a quorum had settled them. Those
    /// replies were read later, by the node's next round or its reader, and are counted in the
    /// votes all the same.
    pub late_replies: u64,
    /// Commands it said yes to.
    pub votes_given: u64,
    /// Commands it said no to (the lock was held elsewhere, or the token was not there).
    pub votes_refused: u64,
    /// Commands it gave no useful answer to (down, timed out, an error reply).
    pub votes_failed: u64,
    /// How many times it was marked down.
    pub times_down: u64,
    /// How much longer the node's "yes" does not count toward acquisitions (lock, permit,
    /// read or write lock, multi-lock): the restart quarantine, while its data may be younger
    /// than the longest TTL ([`RedLockFactoryBuilder::longest_ttl`]). `None` when it counts.
    /// Extends, renewals and releases still count it (see docs/reliability.md).
    ///
    /// [`RedLockFactoryBuilder::longest_ttl`]: crate::RedLockFactoryBuilder::longest_ttl
    pub quarantine: Option<Duration>,
    /// Why the node is quarantined, while it is.
    pub quarantine_cause: Option<QuarantineCause>,
    /// How many times a quarantine began.
    pub quarantines: u64,
    /// Yes answers to acquisitions that did not count because the node was quarantined
    /// (they are also in `votes_given`).
    pub votes_discounted: u64,
    /// Restarts seen: connections that found a new `run_id`.
    pub restarts: u64,
    /// Times its clock was found to have jumped ahead between two connections.
    pub clock_jumps: u64,
    /// Whether the node keeps every acknowledged write across a crash (AOF with `appendfsync
    /// always`, as the server says or, where it will not say, as declared): a durable node is
    /// never quarantined after a restart. `None` before the first connection.
    pub durable: Option<bool>,
    /// The node's eviction policy, when it can delete a held lock (`maxmemory` set with a
    /// `volatile-*` or `allkeys-*` policy); `None` when it cannot, or is not known.
    pub evicts: Option<String>,
    /// The server's version (`redis_version`), once known.
    pub version: Option<String>,
}

/// A node's health, shared between the node and its manager.
#[derive(Debug)]
struct Health {
    name: String,
    /// The node's index in the factory.
    index: usize,
    epoch: Instant,
    /// Bumped on every failure: connections opened before are discarded on checkout without
    /// any I/O (a stopped or restarted node leaves them all stale).
    generation: AtomicU64,
    /// Consecutive failures; 0 when healthy.
    failures: AtomicU32,
    /// 0 when healthy; otherwise nanoseconds after `epoch` at which the next probe may start.
    down_until: AtomicU64,
    /// The last failure, for the error of a skipped node.
    last_error: Mutex<String>,
    /// Whether a connection to the node was ever opened: a node that failed every connect
    /// since the factory was built is reported by its failure, not as "skipped".
    ever_up: AtomicBool,
    /// The last failure's kind ([`NodeErrorKind::code`]; 0: none yet).
    last_kind: AtomicU8,
    /// Smoothed round trip in nanoseconds; 0 before the first.
    round_trip: AtomicU64,
    given: AtomicU64,
    refused: AtomicU64,
    failed_votes: AtomicU64,
    /// Rounds whose replies were read after the round was decided (see `late`).
    late_replies: AtomicU64,
    downs: AtomicU64,
    /// Serialises the up/down transitions with their reports, so the listener hears them in
    /// the order they happened (cold path: taken only on a transition).
    transition: Mutex<()>,
    listener: Hears,
    /// The releases the node is owed (see [`Node::owe`]).
    owed: Mutex<OwedList>,
    /// The next owed release's id, read without the lock: a connection that has seen every id
    /// below it owes nothing (the checkout's fast path).
    owed_next: AtomicU64,
    /// Its standing against Redlock's assumptions (restarts, eviction, clock).
    vitals: vitals::Vitals,
    /// The connections parked with replies unread (see `late`).
    late: late::Late,
    /// The scripts known to be in the server's cache (each script's [`scripts::Lua::bit`]):
    /// loaded by a handshake, or run by an `EVAL` after a `NOSCRIPT`; forgotten on a late
    /// `NOSCRIPT`. A round leaves a node unread only when it knows every script the round
    /// sends there (a late `NOSCRIPT` would leave the command undone: only the round answers it
    /// with `EVAL`).
    scripts: AtomicU64,
}

/// The listener of a node's changes, if any (shown in `Debug` as whether there is one).
struct Hears(Option<Listener>);

impl std::fmt::Debug for Hears {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.is_some())
    }
}

impl Health {
    fn new(name: String, index: usize, listener: Option<Listener>, watch: Watch) -> Self {
        let vitals = vitals::Vitals::new(&name, watch);
        Self {
            name,
            index,
            epoch: Instant::now(),
            generation: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            ever_up: AtomicBool::new(false),
            last_kind: AtomicU8::new(0),
            round_trip: AtomicU64::new(0),
            given: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed_votes: AtomicU64::new(0),
            late_replies: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            transition: Mutex::new(()),
            listener: Hears(listener),
            owed: Mutex::default(),
            owed_next: AtomicU64::new(0),
            vitals,
            late: late::Late::default(),
            scripts: AtomicU64::new(0),
        }
    }

    fn owed(&self) -> std::sync::MutexGuard<'_, OwedList> {
        self.owed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the releases the node is still owed, of an id from `from` on, to `packed` (at
    /// most [`OWED_PER_EXCHANGE`], oldest first); returns their ids, and the id a connection
    /// that sent them has seen up to (the next one's, or the first left for later).
    fn append_owed(&self, packed: &mut Vec<u8>, from: u64) -> (Vec<u64>, u64) {
        let mut owed = self.owed();
        let next = owed.next_id;
        if owed.entries.is_empty() {
            return (Vec::new(), next);
        }
        let now = Instant::now();
        owed.entries.retain(|o| o.until > now);
        let mut due = owed.entries.iter().filter(|o| o.id >= from);
        let ids: Vec<u64> = due
            .by_ref()
            .take(OWED_PER_EXCHANGE)
            .map(|o| {
                packed.extend_from_slice(&o.packed);
                o.id
            })
            .collect();
        let seen = due.next().map_or(next, |o| o.id);
        (ids, seen)
    }

    /// Records that the node is owed `packed` until `until` (see [`Node::owe`]).
    fn owe(&self, packed: Vec<u8>, until: Instant) {
        let mut owed = self.owed();
        let now = Instant::now();
        owed.entries.retain(|o| o.until > now);
        if owed.entries.len() >= MAX_OWED {
            // In id order: the oldest first.
            owed.entries.remove(0);
            log::debug!(
                "redmutex: node {} is owed over {MAX_OWED} releases; giving up the oldest",
                self.name
            );
        }
        let id = owed.next_id;
        owed.next_id += 1;
        owed.entries.push(Owed { id, packed, until });
        self.owed_next.store(owed.next_id, Ordering::Release);
    }

    /// Forgets the owed releases `ran` (of `sent`): the node has run them.
    fn paid(&self, ran: &[u64], sent: usize) {
        self.owed().entries.retain(|o| !ran.contains(&o.id));
        log::debug!(
            "redmutex: sent {sent} owed releases to node {} ({} ran)",
            self.name,
            ran.len()
        );
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn is_down(&self) -> bool {
        self.down_until.load(Ordering::Acquire) != 0
    }

    fn backoff_nanos(&self) -> u64 {
        let failures = self.failures.load(Ordering::Relaxed).clamp(1, 16);
        let backoff = BACKOFF_BASE
            .saturating_mul(1 << (failures - 1))
            .min(BACKOFF_MAX);
        u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes a failure: retires every connection opened so far and marks the node down.
    fn failed(&self, kind: NodeErrorKind, message: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.last_kind.store(kind.code(), Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            message.clone_into(&mut last);
        }
        let until = self.now_nanos().saturating_add(self.backoff_nanos()).max(1);
        let _order = self.transition.lock();
        if self.down_until.swap(until, Ordering::AcqRel) == 0 {
            self.downs.fetch_add(1, Ordering::Relaxed);
            log::warn!("redmutex: node {} is failing: {message}", self.name);
            self.report(Change::Down(kind, message));
        }
    }

    /// Notes a connection opened to the node.
    fn connected(&self) {
        self.ever_up.store(true, Ordering::Relaxed);
    }

    /// See [`Node::note_scripts`].
    fn note_scripts(&self, bits: u64, known: bool) {
        if known {
            self.scripts.fetch_or(bits, Ordering::Relaxed);
        } else {
            self.scripts.fetch_and(!bits, Ordering::Relaxed);
        }
    }

    /// Notes the replies of a round, which took `round_trip` (`None`: unknown, the replies
    /// were read later than they came): the node is healthy again.
    fn answered(&self, round_trip: Option<Duration>) {
        if let Some(round_trip) = round_trip {
            let sample = u64::try_from(round_trip.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1);
            let old = self.round_trip.load(Ordering::Relaxed);
            let smoothed = if old == 0 {
                sample
            } else {
                old - old / 8 + sample / 8
            };
            self.round_trip.store(smoothed, Ordering::Relaxed);
        }
        if self.is_down() {
            let _order = self.transition.lock();
            if self.down_until.swap(0, Ordering::AcqRel) != 0 {
                self.failures.store(0, Ordering::Relaxed);
                log::info!("redmutex: node {} is answering again", self.name);
                self.report(Change::Up);
            }
        }
    }

    /// Tells the listener of a transition (under the transition lock).
    fn report(&self, change: Change<'_>) {
        if let Some(listener) = &self.listener.0 {
            listener(&NodeChange {
                index: self.index,
                node: &self.name,
                change,
            });
        }
    }

    /// Takes in what a connection's handshake found; logs and reports the warnings that start.
    fn observe(&self, facts: &vitals::Facts, sent: Instant, received: Instant) {
        let warnings = self.vitals.observe(facts, sent, received);
        if warnings.is_empty() {
            return;
        }
        let _order = self.transition.lock();
        for warning in &warnings {
            log::warn!("redmutex: node {}: {warning}", self.name);
            self.report(Change::Warning(warning));
        }
    }

    fn stats(&self) -> NodeStats {
        let nanos = self.round_trip.load(Ordering::Relaxed);
        let standing = self.vitals.standing();
        NodeStats {
            node: self.name.clone(),
            up: !self.is_down(),
            last_error: NodeErrorKind::from_code(self.last_kind.load(Ordering::Relaxed)),
            round_trip: (nanos != 0).then(|| Duration::from_nanos(nanos)),
            late_replies: self.late_replies.load(Ordering::Relaxed),
            votes_given: self.given.load(Ordering::Relaxed),
            votes_refused: self.refused.load(Ordering::Relaxed),
            votes_failed: self.failed_votes.load(Ordering::Relaxed),
            times_down: self.downs.load(Ordering::Relaxed),
            quarantine: standing.quarantine,
            quarantine_cause: standing.cause,
            quarantines: standing.quarantines,
            votes_discounted: standing.discounted,
            restarts: standing.restarts,
            clock_jumps: standing.clock_jumps,
            durable: standing.durable,
            evicts: standing.evicts,
            version: standing.version,
        }
    }

    /// Whether this caller gets to probe a node that is down: true for one caller once per
    /// back-off period.
    fn claim_probe(&self) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        let now = self.now_nanos();
        until != 0
            && now >= until
            && self
                .down_until
                .compare_exchange(
                    until,
                    now.saturating_add(self.backoff_nanos()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    fn last_kind(&self) -> NodeErrorKind {
        NodeErrorKind::from_code(self.last_kind.load(Ordering::Relaxed))
            .unwrap_or(NodeErrorKind::Io)
    }
}

/// One Redis node of a factory.
pub(crate) struct Node {
    /// `host:port` or socket path (plus `/db` when not 0), or `sentinel:master@sentinels`:
    /// safe to print.
    pub(crate) name: String,
    /// For connections outside the pool (the release subscriber).
    pub(crate) source: Arc<Source>,
    pool: Pool<NodeManager>,
    health: Arc<Health>,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl Drop for Node {
    /// The node's reader reads what is parked (each within its round's deadline), then ends.
    fn drop(&mut self) {
        self.close_parked();
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Settings a node needs from the factory.
struct NodeSettings {
    connect_timeout: Duration,
    io_timeout: Duration,
    pool_size: u32,
    thread_pool: Arc<ScheduledThreadPool>,
    servers: Arc<Servers>,
    listener: Option<Listener>,
    watch: Watch,
}

impl Node {
    fn new(index: usize, spec: NodeSpec, s: &NodeSettings) -> Result<Self, RedisError> {
        let name = spec.name();
        let health = Arc::new(Health::new(
            name.clone(),
            index,
            s.listener.clone(),
            s.watch,
        ));
        let source = Arc::new(match spec {
            NodeSpec::Direct(info) => Source::Direct(Client::open(info)?),
            NodeSpec::Sentinel(node) => Source::Sentinel(Resolver::new(&node)?),
        });
        let manager = NodeManager {
            source: Arc::clone(&source),
            connect_timeout: s.connect_timeout,
            io_timeout: s.io_timeout,
            health: Arc::clone(&health),
            index,
            servers: Arc::clone(&s.servers),
        };
        // build_unchecked: a node that is down must neither fail nor block the build. One idle
        // connection is opened in the background right away.
        let pool = Pool::builder()
            .max_size(s.pool_size)
            .min_idle(Some(1))
            .connection_timeout(s.connect_timeout)
            .test_on_check_out(false)
            .thread_pool(Arc::clone(&s.thread_pool))
            .error_handler(Box::new(QuietErrors { node: name.clone() }))
            .build_unchecked(manager);
        Ok(Self {
            name,
            source,
            pool,
            health,
            connect_timeout: s.connect_timeout,
            io_timeout: s.io_timeout,
        })
    }

    /// Checks out a connection, or says why the node cannot take part in this round.
    ///
    /// A healthy node is waited for until `deadline` at most (one deadline for all nodes of a
    /// round: their pools connect in the background concurrently); the wait ends early when a
    /// connect fails. A node that is down costs nothing: it is a "no" vote until r2d2's
    /// background reconnection brings a fresh connection, which is then used at once.
    pub(crate) fn checkout(
        &self,
        deadline: Instant,
    ) -> Result<PooledConnection<NodeManager>, NodeError> {
        let conn = match self.parked_due() {
            Some(conn) => conn,
            None => self.pooled(deadline)?,
        };
        if conn.owed_seen >= self.health.owed_next.load(Ordering::Acquire) {
            return Ok(conn);
        }
        self.pay_owed(conn)
    }

    /// Cold path: sends the releases the node was owed since `conn` opened, on it, before a
    /// round uses it (one round trip, within the I/O timeout). A connection opened since the
    /// node's last failure had its handshake answered after the node ran whatever it had queued
    /// (a stopped node runs the input waiting on its older connections first), so the releases
    /// come after the commands they undo.
    #[cold]
    fn pay_owed(
        &self,
        mut conn: PooledConnection<NodeManager>,
    ) -> Result<PooledConnection<NodeManager>, NodeError> {
        match pay_owed_on(&self.health, &mut conn, self.io_timeout) {
            Ok(()) => Ok(conn),
            Err(e) => {
                self.record_failure(&e);
                Err(NodeError::new(&self.name, e.into()))
            }
        }
    }

    /// A parked connection whose late reply is due (see `late`): read, and used before an
    /// idle one, so a late reply is read by the node's next round.
    fn parked_due(&self) -> Option<PooledConnection<NodeManager>> {
        if !self.has_parked() {
            return None;
        }
        let generation = self.health.generation.load(Ordering::Acquire);
        self.parked(generation, Some(Instant::now()))
    }

    /// Checks out a pooled connection (see [`checkout`](Self::checkout)).
    fn pooled(&self, deadline: Instant) -> Result<PooledConnection<NodeManager>, NodeError> {
        let generation = self.health.generation.load(Ordering::Acquire);
        // Connections opened since the last failure are good to use, even while the node is
        // marked down: one of them means the node is back.
        while let Some(mut conn) = self.pool.try_get() {
            if conn.generation >= generation {
                return Ok(conn);
            }
            conn.broken = true; // opened before the failure: drop it without I/O
        }
        if self.health.is_down() {
            // Once per back-off period, make sure a reconnection is under way; never wait.
            if self.health.claim_probe()
                && let Ok(mut conn) = self.pool.get_timeout(MIN_WAIT)
            {
                if conn.generation >= generation {
                    return Ok(conn);
                }
                conn.broken = true;
            }
            return Err(if self.health.ever_up.load(Ordering::Relaxed) {
                self.down_error()
            } else {
                // Never up (a fresh process's first contact, say): nothing is being skipped
                // that worked; the connect failure is the news.
                self.connect_error()
            });
        }
        // No idle connection: a parked one's reply comes sooner than a new connection.
        if let Some(conn) = self.parked(generation, None) {
            return Ok(conn);
        }
        let end = deadline.min(Instant::now() + self.connect_timeout);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.pool.get_timeout(left.clamp(MIN_WAIT, WAIT_SLICE)) {
                Ok(conn) if conn.generation >= generation => return Ok(conn),
                // Put back by another round since the failure, opened before it: drop it.
                Ok(mut conn) => conn.broken = true,
                // The connect this round waited for failed: that failure is this round's.
                Err(_) if self.health.is_down() => return Err(self.connect_error()),
                Err(e) if left <= MIN_WAIT => {
                    let message = e.to_string();
                    // An exhausted pool with live connections is not a node failure.
                    if self.pool.state().connections == 0 {
                        self.health.failed(NodeErrorKind::Timeout, &message);
                    }
                    return Err(NodeError::new(&self.name, NodeCause::Checkout(message)));
                }
                Err(_) => {}
            }
        }
    }

    /// Records that the node is owed a release it could not be reached for (it was down, or
    /// failed to answer): `packed`, a compare-and-delete of one token, safe to run at any time,
    /// goes to the node before any round uses a connection to it that has not sent it yet: in
    /// the opening exchange of a new connection (see `NodeManager::open`), or on a pooled one
    /// at its next checkout. So a key the node holds, or is about to hold (a command it queued
    /// while stopped), blocks nobody. Kept until it ran or `until` (when that key expires
    /// anyway), at most [`MAX_OWED`] at once.
    pub(crate) fn owe(&self, packed: Vec<u8>, until: Instant) {
        self.health.owe(packed, until);
    }

    /// Whether every script of `bits` is known to be in the server's cache (see
    /// `Health::scripts`).
    pub(crate) fn knows_scripts(&self, bits: u64) -> bool {
        bits & !self.health.scripts.load(Ordering::Relaxed) == 0
    }

    /// Notes that the scripts of `bits` are in the server's cache (an `EVAL` ran them), or,
    /// with `known` false, that some of them are not (a `NOSCRIPT`).
    pub(crate) fn note_scripts(&self, bits: u64, known: bool) {
        self.health.note_scripts(bits, known);
    }

    /// A fresh connection, after a pooled one turned out to be dead (the node restarted while
    /// it sat idle): retires every connection opened so far, then checks out as usual (waiting
    /// for r2d2's background connect, until `deadline` at most).
    pub(crate) fn reconnect(
        &self,
        deadline: Instant,
    ) -> Result<PooledConnection<NodeManager>, NodeError> {
        self.health.generation.fetch_add(1, Ordering::AcqRel);
        self.checkout(deadline)
    }

    /// The error of a node skipped while it backs off after a failure.
    fn down_error(&self) -> NodeError {
        let cause = NodeCause::Down(self.health.last_kind(), self.health.last_error());
        NodeError::new(&self.name, cause)
    }

    /// The error of a node whose connect failed: the failure itself.
    fn connect_error(&self) -> NodeError {
        let cause = NodeCause::Connect(self.health.last_kind(), self.health.last_error());
        NodeError::new(&self.name, cause)
    }

    /// Notes an I/O failure in a round. A read or write interrupted by a signal (EINTR) is
    /// not the node's failure: the round loses that node's vote (its connection, with a reply
    /// in flight, is dropped), but the node is not marked down and does not back off.
    pub(crate) fn record_failure(&self, e: &RedisError) {
        if is_interrupted(e) {
            log::debug!(
                "redmutex: a signal interrupted a round on {}: {e}",
                self.name
            );
            return;
        }
        self.health.failed(NodeErrorKind::of(e), &describe(e));
    }

    /// Counts the node's answer to one command of a round.
    pub(crate) fn count(&self, ballot: Ballot) {
        let counter = match ballot {
            Ballot::Given => &self.health.given,
            Ballot::Refused => &self.health.refused,
            Ballot::Failed => &self.health.failed_votes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// What the node has been doing.
    pub(crate) fn stats(&self) -> NodeStats {
        self.health.stats()
    }

    /// Whether the node's yes counts toward an acquisition now (it is not quarantined): one
    /// atomic load in the common case.
    pub(crate) fn counts(&self) -> bool {
        self.health.vitals.counts()
    }

    /// How much longer the node is quarantined, if it is.
    pub(crate) fn quarantine_left(&self) -> Option<Duration> {
        self.health.vitals.left()
    }

    /// Notes that a yes of this node to an acquisition did not count, and says why.
    pub(crate) fn discount(&self) -> String {
        self.health.vitals.discount();
        self.health.vitals.reason()
    }

    /// How long the node's replies are expected to take: its smoothed round trip (zero before
    /// the first), for the order in which a round reads the nodes.
    pub(crate) fn expected(&self) -> Duration {
        late::expected(&self.health)
    }

    /// Whether the node failed recently and is backing off.
    pub(crate) fn is_down(&self) -> bool {
        self.health.is_down()
    }

    /// Notes a round in which the node delivered every reply, `round_trip` after the round's
    /// requests were written.
    pub(crate) fn record_success(&self, round_trip: Duration) {
        self.health.answered(Some(round_trip));
    }
}

/// The nodes of a factory, with the timeouts every round on them uses.
pub(crate) struct Nodes {
    list: Vec<Node>,
    /// How long a round may wait for a connection.
    pub(crate) connect_timeout: Duration,
    /// How long a round may wait for the replies.
    pub(crate) io_timeout: Duration,
    /// Every node's bit, for rounds that go to all of them.
    all: u64,
    /// Rounds made on these nodes.
    rounds: AtomicU64,
    /// The restart quarantine's and the durability checks' settings.
    watch: Watch,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.list).finish()
    }
}

impl Nodes {
    /// Creates the pools (connecting in the background: a node that is down neither fails nor
    /// delays this). The specs are already checked; `Err` names the node whose client could
    /// not be created. `listener` hears every node go down and come back.
    pub(crate) fn connect(
        specs: Vec<NodeSpec>,
        connect_timeout: Duration,
        io_timeout: Duration,
        pool_size: u32,
        listener: Option<Listener>,
        watch: Watch,
    ) -> Result<Self, String> {
        let threads = specs.len().clamp(2, 8);
        let settings = NodeSettings {
            connect_timeout,
            io_timeout,
            pool_size,
            thread_pool: Arc::new(
                ScheduledThreadPool::builder()
                    .num_threads(threads)
                    .thread_name_pattern("redmutex-connect-{}")
                    .on_drop_behavior(OnPoolDropBehavior::DiscardPendingScheduled)
                    .build(),
            ),
            servers: Arc::new(Servers::new(specs.len())),
            listener,
            watch,
        };
        let mut list = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let node = Node::new(i, spec, &settings)
                .map_err(|e| format!("node {i}: {}", redacted_redis_error(&e)))?;
            list.push(node);
        }
        let all = u64::MAX >> (64 - list.len().clamp(1, 64));
        Ok(Self {
            list,
            connect_timeout,
            io_timeout,
            all,
            rounds: AtomicU64::new(0),
            watch,
        })
    }

    /// Whether the user declared the nodes durable.
    pub(crate) fn declared_durable(&self) -> bool {
        self.watch.declared_durable
    }

    /// How many nodes there are.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Every node's bit.
    pub(crate) fn all(&self) -> u64 {
        self.all
    }

    /// Node `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&Node> {
        self.list.get(i)
    }

    /// The nodes, in order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Node> {
        self.list.iter()
    }

    /// The nodes of `mask` whose yes does not count toward an acquisition now (quarantined).
    pub(crate) fn doubted(&self, mask: u64) -> u64 {
        let mut doubted = 0;
        for (i, node) in self.list.iter().enumerate() {
            let bit = 1u64 << i;
            if mask & bit != 0 && !node.counts() {
                doubted |= bit;
            }
        }
        doubted
    }

    /// Counts a round made on these nodes.
    pub(crate) fn count_round(&self) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// How many rounds were made on these nodes.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn health_reports_each_transition_once_in_order_and_keeps_its_counters() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let listener: Listener = {
            let heard = Arc::clone(&heard);
            Arc::new(move |c: &NodeChange<'_>| {
                heard.lock().unwrap().push((
                    c.index,
                    c.node.to_owned(),
                    match c.change {
                        Change::Down(kind, _) => Some(kind),
                        _ => None,
                    },
                ));
            })
        };
        let h = Health::new("127.0.0.1:1".into(), 4, Some(listener), Watch::default());
        let fresh = h.stats();
        assert!(fresh.up && fresh.last_error.is_none() && fresh.round_trip.is_none());
        h.answered(Some(10 * MS));
        assert_eq!(h.stats().round_trip, Some(10 * MS));
        // Smoothed: an eighth of the way to each new sample.
        h.answered(Some(18 * MS));
        assert_eq!(h.stats().round_trip, Some(11 * MS));
        h.failed(NodeErrorKind::Refused, "refused");
        // Further failures while down, and replies, report nothing new until it is up.
        h.failed(NodeErrorKind::Timeout, "timed out");
        let down = h.stats();
        assert!(!down.up);
        assert_eq!(down.last_error, Some(NodeErrorKind::Timeout));
        assert_eq!(down.times_down, 1);
        h.answered(Some(MS));
        h.answered(Some(MS));
        h.failed(NodeErrorKind::Dropped, "reset");
        let heard = heard.lock().unwrap().clone();
        let node = "127.0.0.1:1".to_owned();
        assert_eq!(
            heard,
            [
                (4, node.clone(), Some(NodeErrorKind::Refused)),
                (4, node.clone(), None),
                (4, node, Some(NodeErrorKind::Dropped)),
            ]
        );
        assert_eq!(h.stats().times_down, 2);
    }
}

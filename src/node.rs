//! One Redis node: its connection pool, its connection manager and its health.
//!
//! The pool is r2d2's, but with our own manager: the stock `impl ManageConnection for Client` has
//! no connect timeout and leaves sockets without I/O timeouts, so a black-holed node would hang
//! its caller. Health tracking keeps a dead minority cheap: a node that failed is skipped (a "no"
//! vote) for a short, growing back-off instead of costing a timeout in every round.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use r2d2::{ManageConnection, Pool, PooledConnection};
use redis::{Client, ConnectionInfo, RedisError};

use crate::error::{NodeCause, NodeError};
use crate::scripts;

/// First back-off after a failure; it doubles with each further failure.
const BACKOFF_BASE: Duration = Duration::from_millis(20);
/// Longest back-off between probes of a failing node.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A pooled connection with the bookkeeping the pool needs.
pub(crate) struct NodeConn {
    pub(crate) con: redis::Connection,
    /// The node's generation when this connection was opened.
    generation: u64,
    /// Set after any I/O error or timeout: the connection may have a reply in flight or be dead,
    /// so it must never be used again.
    pub(crate) broken: bool,
}

/// Opens connections with bounded connect and I/O times.
#[derive(Debug)]
pub(crate) struct NodeManager {
    client: Client,
    connect_timeout: Duration,
    io_timeout: Duration,
    health: Arc<Health>,
}

impl ManageConnection for NodeManager {
    type Connection = NodeConn;
    type Error = RedisError;

    fn connect(&self) -> Result<NodeConn, RedisError> {
        // Bounds the TCP connect and the handshake (AUTH, SELECT, CLIENT SETINFO).
        let mut con = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        // The handshake resets the timeouts to None; set ours, never zero.
        con.set_write_timeout(Some(self.io_timeout))?;
        con.set_read_timeout(Some(self.connect_timeout))?;
        // Load the scripts now so rounds rarely meet NOSCRIPT. A server that refuses (an ACL
        // without SCRIPT) still works through the EVAL fallback; an I/O error fails the connect.
        for script in [&*scripts::RELEASE, &*scripts::EXTEND] {
            if let Err(e) = script.load(&mut con)
                && (e.is_io_error() || e.is_unrecoverable_error())
            {
                return Err(e);
            }
        }
        Ok(NodeConn {
            con,
            generation: self.health.generation.load(Ordering::Acquire),
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut NodeConn) -> Result<(), RedisError> {
        redis::cmd("PING").query::<()>(&mut conn.con)
    }

    fn has_broken(&self, conn: &mut NodeConn) -> bool {
        conn.broken || !redis::ConnectionLike::is_open(&conn.con)
    }
}

/// Logs pool errors (background connects to a dead node) at debug level, not error level.
#[derive(Debug)]
struct QuietErrors {
    node: String,
}

impl r2d2::HandleError<RedisError> for QuietErrors {
    fn handle_error(&self, error: RedisError) {
        log::debug!("redmutex: connect to {} failed: {error}", self.node);
    }
}

/// Shared between a node and its manager.
#[derive(Debug, Default)]
struct Health {
    /// Bumped when a connection-level failure suggests every open socket may be dead (a restart,
    /// a reset): connections opened before are discarded on checkout without any I/O.
    generation: AtomicU64,
    /// Consecutive failures; 0 when healthy.
    failures: AtomicU32,
    /// Nanoseconds since the factory's epoch before which the node is skipped.
    down_until: AtomicU64,
    /// The last failure, for the error of a skipped node.
    last_error: std::sync::Mutex<String>,
}

/// One Redis node of a factory.
pub(crate) struct Node {
    /// `host:port` or socket path (plus `/db` when not 0): safe to print.
    pub(crate) name: String,
    pool: Pool<NodeManager>,
    health: Arc<Health>,
    connect_timeout: Duration,
    epoch: Instant,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Settings a node needs from the factory.
pub(crate) struct NodeSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) pool_size: u32,
    pub(crate) thread_pool: Arc<scheduled_thread_pool::ScheduledThreadPool>,
    pub(crate) epoch: Instant,
}

/// A display name for a node that never includes credentials.
pub(crate) fn node_name(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    if db == 0 {
        info.addr().to_string()
    } else {
        format!("{}/{db}", info.addr())
    }
}

impl Node {
    pub(crate) fn new(info: ConnectionInfo, s: &NodeSettings) -> Result<Self, RedisError> {
        let name = node_name(&info);
        let health = Arc::new(Health::default());
        let manager = NodeManager {
            client: Client::open(info)?,
            connect_timeout: s.connect_timeout,
            io_timeout: s.io_timeout,
            health: Arc::clone(&health),
        };
        // build_unchecked: a node that is down must neither fail nor block the build.
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
            pool,
            health,
            connect_timeout: s.connect_timeout,
            epoch: s.epoch,
        })
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Checks out a connection, or says why the node cannot take part in this round.
    ///
    /// Never blocks longer than the connect timeout; a node that is backing off costs nothing.
    pub(crate) fn checkout(&self) -> Result<PooledConnection<NodeManager>, NodeError> {
        let generation = self.health.generation.load(Ordering::Acquire);
        // Idle connections opened since the last connection-level failure are good to use, even
        // while backing off: r2d2 reconnects in the background, so one of them means the node is
        // back.
        while let Some(mut conn) = self.pool.try_get() {
            if conn.generation >= generation {
                return Ok(conn);
            }
            conn.broken = true; // opened before the failure: drop it without I/O
        }
        let until = self.health.down_until.load(Ordering::Acquire);
        if until != 0 {
            let now = self.now_nanos();
            // Back off; once the back-off ends, exactly one caller claims the probe.
            if now < until
                || self
                    .health
                    .down_until
                    .compare_exchange(
                        until,
                        now + self.backoff_nanos(),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_err()
            {
                return Err(NodeError::new(
                    &self.name,
                    NodeCause::Down(self.last_error()),
                ));
            }
        }
        match self.pool.get_timeout(self.connect_timeout) {
            Ok(conn) => Ok(conn),
            Err(e) => {
                let message = e.to_string();
                // An exhausted pool with live connections is not a node failure.
                if self.pool.state().connections == 0 {
                    self.record_failure(&message, false);
                }
                Err(NodeError::new(&self.name, NodeCause::Checkout(message)))
            }
        }
    }

    fn backoff_nanos(&self) -> u64 {
        let failures = self.health.failures.load(Ordering::Relaxed).clamp(1, 16);
        let backoff = BACKOFF_BASE
            .saturating_mul(1 << (failures - 1))
            .min(BACKOFF_MAX);
        u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX)
    }

    fn last_error(&self) -> String {
        self.health
            .last_error
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Notes a failure: the node backs off, and on a connection-level failure every connection
    /// opened so far is retired.
    pub(crate) fn record_failure(&self, message: &str, retire_connections: bool) {
        if retire_connections {
            self.health.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.health.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.health.last_error.lock() {
            message.clone_into(&mut last);
        }
        let until = self.now_nanos().saturating_add(self.backoff_nanos()).max(1);
        self.health.down_until.store(until, Ordering::Release);
        log::warn!("redmutex: node {} failed: {message}", self.name);
    }

    /// Notes a success: the node is healthy again.
    pub(crate) fn record_success(&self) {
        if self.health.down_until.load(Ordering::Relaxed) != 0 {
            self.health.down_until.store(0, Ordering::Release);
            self.health.failures.store(0, Ordering::Relaxed);
            log::info!("redmutex: node {} is answering again", self.name);
        }
    }
}

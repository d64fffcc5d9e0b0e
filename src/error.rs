//! The error type: one variant per situation a caller can act on.

use std::fmt;
use std::time::Duration;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation on a lock failed.
///
/// The variants keep apart what users of other Redis lock clients keep confusing:
///
/// | situation | variant |
/// |---|---|
/// | the lock is held by someone else | not an error: [`RedLock::try_acquire`] returns `Ok(None)` and [`RedLock::acquire`] waits |
/// | too few nodes answered (dead, stopped, unreachable, refusing) | [`Error::NoQuorum`], with each node's cause |
/// | a quorum said yes, but so late that no validity was left | [`Error::TooLate`] |
/// | the wait of [`RedLock::acquire_timeout`] ran out | [`Error::Timeout`] |
/// | the wait was called off with a cancel flag ([`Wait::cancel_on`]) | [`Error::Cancelled`] |
/// | the lease had already run out before release or extend | [`Error::Expired`] |
/// | a quorum no longer held our token although the lease had not run out | [`Error::LockLost`] |
/// | a token-level call ([`RedLock::release_token`], [`RedLock::extend_token`]) found the token not held by a quorum | [`Error::NotHeld`] |
/// | a thread holding a read lock asked to wait for the write lock ([`RwLock::write`]), or for a lock, permit or multi-lock of the name | [`Error::WouldDeadlock`] |
/// | bad configuration or arguments | [`Error::InvalidConfig`], [`Error::InvalidArgument`] |
///
/// [`Expired`](Error::Expired) and [`LockLost`](Error::LockLost) both mean that the critical
/// section may have overlapped another holder's.
///
/// No variant carries a node URL, so passwords never reach `Display`, `Debug` or logs: nodes are
/// named by `host:port` (or socket path).
///
/// [`RedLock::try_acquire`]: crate::RedLock::try_acquire
/// [`RedLock::acquire`]: crate::RedLock::acquire
/// [`RedLock::acquire_timeout`]: crate::RedLock::acquire_timeout
/// [`RedLock::release_token`]: crate::RedLock::release_token
/// [`RedLock::extend_token`]: crate::RedLock::extend_token
/// [`Wait::cancel_on`]: crate::Wait::cancel_on
/// [`RwLock::write`]: crate::RwLock::write
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The factory or lock configuration is invalid; the message names the setting.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// An argument to a call is invalid; the message names it.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Fewer nodes than the quorum answered, so the operation could not be decided.
    ///
    /// `failures` holds one entry per node that failed, with its address and cause.
    #[error("no quorum for {resource:?}: {answered} of {nodes} nodes answered, {needed} must agree{}", FailureList(.failures))]
    NoQuorum {
        /// The resource (key) the operation was about.
        resource: String,
        /// How many nodes answered.
        answered: usize,
        /// The quorum.
        needed: usize,
        /// How many nodes the factory has.
        nodes: usize,
        /// What went wrong on each node that did not answer.
        failures: Vec<NodeError>,
    },

    /// A quorum granted the lock, but the round took so long that no validity was left
    /// (`ttl - elapsed - drift <= 0`). The partial locks were released.
    #[error("acquired {resource:?} too late: the round took {elapsed:?}, leaving no validity")]
    TooLate {
        /// The resource (key).
        resource: String,
        /// How long the round took.
        elapsed: Duration,
    },

    /// [`RedLock::acquire_timeout`](crate::RedLock::acquire_timeout) gave up: the lock stayed
    /// held by someone else for the whole wait.
    #[error("timed out after {waited:?} waiting for {resource:?}")]
    Timeout {
        /// The resource (key).
        resource: String,
        /// How long the call waited.
        waited: Duration,
    },

    /// The wait for the lock was called off: the cancel flag given with
    /// [`Wait::cancel_on`](crate::Wait::cancel_on) was set. No lock is held.
    #[error("stopped waiting for {resource:?} after {waited:?}: cancelled")]
    Cancelled {
        /// The resource (key).
        resource: String,
        /// How long the call waited.
        waited: Duration,
    },

    /// A token-level call found that a quorum does not hold the lock with this token: it
    /// expired, was released, was taken over, or the token is wrong. Nothing was changed.
    #[error(
        "{resource:?} is not held with this token on a quorum (expired, released, taken over, or a wrong token)"
    )]
    NotHeld {
        /// The resource (key).
        resource: String,
    },

    /// The guard's validity had already ended, and a quorum no longer holds our token: another
    /// client may have held the lock since.
    #[error("the lease on {resource:?} expired before the operation")]
    Expired {
        /// The resource (key).
        resource: String,
    },

    /// A quorum no longer holds our token although the guard's validity had not ended: the key
    /// was deleted or overwritten from outside, or a node lost its data. The critical section
    /// may have overlapped another holder's.
    #[error("the lock on {resource:?} was lost: a quorum no longer holds our token")]
    LockLost {
        /// The resource (key).
        resource: String,
    },

    /// A thread that holds a read lock of a [`RwLock`](crate::RwLock) (from the same factory)
    /// asked to wait for a lease that excludes readers of that name: the write lock (an
    /// upgrade), a lock, a semaphore's permit or a multi-lock containing the name. The thread
    /// cannot release its reader while it waits, so the wait would never end with keep-alive,
    /// and end only by its own lease running out without. Refused at once, before any round.
    /// Release the read guard first, or take the write lock from the start and
    /// [`downgrade`](crate::RwLockWriteGuard::downgrade) it; a read guard moved to another
    /// thread is [handed over](crate::LeaseGuard::hand_over) first.
    #[error(
        "this thread holds a read lock on {resource:?}, which this call would wait for: a read lock cannot be upgraded to a write lock (it would wait for itself); release the read guard first"
    )]
    WouldDeadlock {
        /// The read-write lock's name (for a multi-lock, the resource it names).
        resource: String,
    },

    /// A run-once job's run was asked for, but the run of that epoch had already completed (a
    /// node holds its completion record): it is not started again. The record says how it
    /// ended. [`RunOnce::start`](crate::RunOnce::start) and [`RunOnce::run`](crate::RunOnce::run)
    /// report this as an outcome, not an error; only the lease calls of the handle
    /// ([`acquire`](crate::Handle::acquire), ...) return it.
    #[error("{resource:?} already ran in epoch {:?}: {:?} (fencing token {})", .record.epoch, .record.result, .record.fencing_token)]
    AlreadyRan {
        /// The job's name.
        resource: String,
        /// Its completion record.
        record: Box<RunRecord>,
    },
}

/// The completion record of a run-once job's run: written to a quorum by the run's completion
/// ([`RunGuard::complete`](crate::RunGuard::complete)), and kept for the job's retention.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunRecord {
    /// The epoch of the run (`""`: the job's only run).
    pub epoch: String,
    /// What the runner recorded (a small text: a status, a summary, an id).
    pub result: String,
    /// The run's fencing token: above the token of every earlier run of the job, whatever the
    /// epoch.
    pub fencing_token: u64,
    /// When the completion was recorded, by a node's clock.
    pub completed_at: std::time::SystemTime,
}

impl Error {
    /// The per-node failures behind the error, if any (only [`Error::NoQuorum`] has them).
    #[must_use]
    pub fn node_errors(&self) -> &[NodeError] {
        match self {
            Self::NoQuorum { failures, .. } => failures,
            _ => &[],
        }
    }
}

struct FailureList<'a>(&'a [NodeError]);

impl fmt::Display for FailureList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { " (" } else { "; " })?;
            write!(f, "{e}")?;
        }
        if !self.0.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// What went wrong on one node during a round.
///
/// The node is named by its address (`host:port` or socket path), never by its URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{node}: {cause}")]
#[non_exhaustive]
pub struct NodeError {
    node: String,
    #[source]
    cause: NodeCause,
}

impl NodeError {
    pub(crate) fn new(node: &str, cause: NodeCause) -> Self {
        Self {
            node: node.to_owned(),
            cause,
        }
    }

    /// The node's address (`host:port`, or the socket path).
    #[must_use]
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The Redis client error behind the failure, when there is one.
    #[must_use]
    pub fn redis_error(&self) -> Option<&redis::RedisError> {
        match &self.cause {
            NodeCause::Redis(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the node did not answer within the I/O or connect timeout.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        match &self.cause {
            NodeCause::Redis(e) => e.is_timeout(),
            NodeCause::Checkout(_) => true,
            _ => false,
        }
    }

    /// Whether the node was skipped because it failed recently and is backing off.
    #[must_use]
    pub fn is_backing_off(&self) -> bool {
        matches!(self.cause, NodeCause::Down(..))
    }

    /// What kind of failure this is. For a node skipped while backing off, the kind of the
    /// failure that put it there.
    #[must_use]
    pub fn kind(&self) -> NodeErrorKind {
        match &self.cause {
            NodeCause::Redis(e) => NodeErrorKind::of(e),
            NodeCause::Checkout(_) => NodeErrorKind::Timeout,
            NodeCause::Down(kind, _) => *kind,
            NodeCause::Unexpected(_) => NodeErrorKind::Unexpected,
        }
    }
}

/// What kind of failure a node had: the [`kind`](NodeError::kind) of a [`NodeError`], and the
/// last failure of each node in [`NodeStats`](crate::NodeStats). A small, fixed set, fit for a
/// metrics label or an alert rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeErrorKind {
    /// No answer (or no connection) within the I/O or connect timeout: a stopped, overloaded or
    /// unreachable node.
    Timeout,
    /// The connection was refused: nothing listens at the address.
    Refused,
    /// The connection was closed or reset: the node restarted, or the network cut it.
    Dropped,
    /// Another I/O error.
    Io,
    /// Authentication failed, or the ACL user lacks a permission the lock needs.
    Auth,
    /// The node is a replica (`READONLY`): a master that was demoted.
    ReadOnly,
    /// Another error reply from the server (`LOADING`, `OOM`, `BUSY`, ...).
    Server,
    /// A reply no Redis server would give to the command.
    Unexpected,
    /// Refused on the client's side: a node that reaches the same server as another one, a
    /// TLS or Sentinel setup problem, and other errors of the client library.
    Client,
}

impl NodeErrorKind {
    /// Every kind, in declaration order.
    const ALL: [Self; 9] = [
        Self::Timeout,
        Self::Refused,
        Self::Dropped,
        Self::Io,
        Self::Auth,
        Self::ReadOnly,
        Self::Server,
        Self::Unexpected,
        Self::Client,
    ];

    /// A short lowercase name (`"timeout"`, `"refused"`, ...): the `Display` form, and a
    /// metrics label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Dropped => "dropped",
            Self::Io => "io",
            Self::Auth => "auth",
            Self::ReadOnly => "read_only",
            Self::Server => "server",
            Self::Unexpected => "unexpected",
            Self::Client => "client",
        }
    }

    /// Classifies a Redis client error.
    pub(crate) fn of(e: &redis::RedisError) -> Self {
        use redis::{ErrorKind, ServerErrorKind};
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connection_refusal() {
            Self::Refused
        } else if e.is_connection_dropped() {
            Self::Dropped
        } else if e.is_io_error() {
            Self::Io
        } else {
            match e.kind() {
                ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
                    Self::Auth
                }
                ErrorKind::Server(ServerErrorKind::ReadOnly) => Self::ReadOnly,
                ErrorKind::Server(_) | ErrorKind::Extension => Self::Server,
                ErrorKind::Parse | ErrorKind::UnexpectedReturnType => Self::Unexpected,
                _ => Self::Client,
            }
        }
    }

    /// A compact code for an atomic: `index + 1` (0 stands for "none").
    pub(crate) fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|k| *k == self)
            .and_then(|i| u8::try_from(i + 1).ok())
            .unwrap_or(0)
    }

    /// The kind of a [`code`](Self::code); `None` for 0.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

impl fmt::Display for NodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cause inside a [`NodeError`].
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum NodeCause {
    /// The client or the server reported an error.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// No connection could be checked out of the pool in time.
    #[error("no connection within the connect timeout ({0})")]
    Checkout(String),
    /// The node failed recently (with a failure of this kind and message) and is skipped
    /// until its back-off ends.
    #[error("skipped while backing off after a failure ({1})")]
    Down(NodeErrorKind, String),
    /// The node answered something a Redis server would not.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_quorum_lists_every_node() {
        let e = Error::NoQuorum {
            resource: "k".into(),
            answered: 1,
            needed: 2,
            nodes: 3,
            failures: vec![
                NodeError::new("127.0.0.1:1", NodeCause::Checkout("refused".into())),
                NodeError::new("127.0.0.1:2", NodeCause::Unexpected("garbage".into())),
            ],
        };
        let s = e.to_string();
        assert_eq!(
            s,
            "no quorum for \"k\": 1 of 3 nodes answered, 2 must agree (127.0.0.1:1: no connection \
             within the connect timeout (refused); 127.0.0.1:2: unexpected reply: garbage)"
        );
        assert_eq!(e.node_errors().len(), 2);
        assert!(e.node_errors()[0].is_timeout());
        assert!(!e.node_errors()[1].is_timeout());
    }

    #[test]
    fn node_error_kinds_round_trip_through_their_codes() {
        assert_eq!(NodeErrorKind::from_code(0), None);
        for kind in NodeErrorKind::ALL {
            assert_eq!(NodeErrorKind::from_code(kind.code()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let e = NodeError::new("n", NodeCause::Down(NodeErrorKind::Refused, "x".into()));
        assert_eq!(e.kind(), NodeErrorKind::Refused);
        assert!(e.is_backing_off());
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            NodeErrorKind::of(&redis::RedisError::from(io)),
            NodeErrorKind::Refused
        );
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(
            NodeErrorKind::of(&redis::RedisError::from(timeout)),
            NodeErrorKind::Timeout
        );
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static + std::error::Error>() {}
        check::<Error>();
        check::<NodeError>();
    }
}

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

    /// Too few nodes said yes for the operation to be decided, and too few answered at all to
    /// know the answer is no.
    ///
    /// A "yes" is what the operation asks for: the lock granted (acquire), or our token still
    /// held (release, extend, renewal, and the token-level calls). A release can thus fail with
    /// a quorum of nodes answering: 3 of 5 answered, but only 1 still held the token, and the 2
    /// that failed may hold it too. `failures` holds one entry per node that failed, with its
    /// address and cause.
    #[error("no quorum for {resource:?}: {}", QuorumCount::new([*.agreed, *.answered, *.needed, *.nodes], .failures))]
    NoQuorum {
        /// The resource (key) the operation was about.
        resource: String,
        /// How many nodes answered (yes or no).
        answered: usize,
        /// How many of them said yes: granted the lock, or still held our token. (For an
        /// inspection, [`RedLock::is_locked`](crate::RedLock::is_locked), every answer.)
        agreed: usize,
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
    /// When the run was completed, by the runner's clock.
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

/// The counts of [`Error::NoQuorum`], in words: how many said yes against the quorum, then
/// how many said no and which failed.
struct QuorumCount<'a> {
    agreed: usize,
    answered: usize,
    needed: usize,
    nodes: usize,
    failures: &'a [NodeError],
}

impl<'a> QuorumCount<'a> {
    const fn new([agreed, answered, needed, nodes]: [usize; 4], failures: &'a [NodeError]) -> Self {
        Self {
            agreed,
            answered,
            needed,
            nodes,
            failures,
        }
    }
}

impl fmt::Display for QuorumCount<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            agreed,
            answered,
            needed,
            nodes,
            failures,
        } = *self;
        if agreed == answered {
            write!(
                f,
                "{answered} of {nodes} nodes answered, {needed} must agree"
            )?;
        } else {
            let refused = answered.saturating_sub(agreed);
            write!(
                f,
                "{agreed} of {nodes} nodes said yes, {needed} must; {refused} said no"
            )?;
        }
        if !failures.is_empty() {
            write!(f, ", {} failed", failures.len())?;
            for (i, e) in failures.iter().enumerate() {
                f.write_str(if i == 0 { " (" } else { "; " })?;
                write!(f, "{e}")?;
            }
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
            NodeCause::Connect(kind, _) => *kind == NodeErrorKind::Timeout,
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
            NodeCause::Down(kind, _) | NodeCause::Connect(kind, _) => *kind,
            NodeCause::Unexpected(_) => NodeErrorKind::Unexpected,
            NodeCause::Resent => NodeErrorKind::Dropped,
            NodeCause::Quarantined(_) => NodeErrorKind::Quarantined,
        }
    }

    /// Whether the node answered yes to an acquisition, but its yes did not count: it is in
    /// its restart quarantine (see [`NodeStats::quarantine`](crate::NodeStats::quarantine)).
    #[must_use]
    pub fn is_quarantined(&self) -> bool {
        matches!(self.cause, NodeCause::Quarantined(_))
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
    /// Not a failure of the node: it said yes to an acquisition, but its yes did not count,
    /// because it is in its restart quarantine (its data may be younger than the longest TTL).
    Quarantined,
}

impl NodeErrorKind {
    /// Every kind, in declaration order.
    const ALL: [Self; 10] = [
        Self::Timeout,
        Self::Refused,
        Self::Dropped,
        Self::Io,
        Self::Auth,
        Self::ReadOnly,
        Self::Server,
        Self::Unexpected,
        Self::Client,
        Self::Quarantined,
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
            Self::Quarantined => "quarantined",
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
                // A command a script may not run under the user's ACL: Redis 7.0 answers a
                // plain ERR, "The user executing the script can't run this command or
                // subcommand".
                ErrorKind::Server(_) if is_script_acl_refusal(e) => Self::Auth,
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

/// Whether an error reply is Redis refusing a command inside a script under the user's ACL.
fn is_script_acl_refusal(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("can't run this command") || text.contains("no permissions to")
}

/// The cause inside a [`NodeError`]. Each displays as one line.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum NodeCause {
    /// The client or the server reported an error.
    #[error("{}", describe(.0))]
    Redis(#[from] redis::RedisError),
    /// No connection could be checked out of the pool in time.
    #[error("no connection within the connect timeout ({0})")]
    Checkout(String),
    /// The node failed recently (with a failure of this kind and message) and is skipped
    /// until its back-off ends.
    #[error("skipped while backing off after a failure ({1})")]
    Down(NodeErrorKind, String),
    /// The connect this round waited for failed (with this kind and message), or the node
    /// has failed every connect since the factory was built: it was never up, so nothing was
    /// "skipped" that had worked.
    #[error("{1}")]
    Connect(NodeErrorKind, String),
    /// The node answered something a Redis server would not.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// The connection went before the reply came, and the command sent again on a fresh one
    /// found its work already done or never possible: its first run may have done it (a
    /// release found the token gone), so the answer cannot tell.
    #[error(
        "the connection was cut before the reply; sent again, it found the token gone (deleted \
         by its first run, or lost)"
    )]
    Resent,
    /// The node said yes to an acquisition, but its yes did not count (the message says why
    /// and for how long).
    #[error("{0}")]
    Quarantined(String),
}

/// A Redis client error in one line, for messages: redis-rs puts line breaks in some (a
/// reply that does not parse lists each unexpected byte on a line of its own), and every
/// error here is one line. A reply that is not the Redis protocol says what that likely
/// means, and a socket timeout says "timed out".
pub(crate) fn describe(e: &redis::RedisError) -> String {
    let text = one_line(&e.to_string());
    if e.kind() == redis::ErrorKind::Parse {
        format!("the reply is not Redis protocol: is a Redis server listening there? ({text})")
    } else if e.is_timeout() && !text.contains("timed out") {
        // A socket timeout reads "Resource temporarily unavailable (os error 11)" (EAGAIN).
        format!("timed out ({text})")
    } else {
        text
    }
}

/// `text` with its lines joined by "; " (blank lines and surrounding spaces dropped).
pub(crate) fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.to_owned();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a Redis client error is a system call interrupted by a signal (EINTR): a socket
/// read or write with a timeout is never restarted after a signal handler ran, whatever
/// `SA_RESTART` says. That is the process's doing, not the node's.
pub(crate) fn is_interrupted(e: &redis::RedisError) -> bool {
    use std::error::Error as _;
    let Some(source) = e.source() else {
        return false;
    };
    let io = source.downcast_ref::<std::io::Error>().or_else(|| {
        source
            .downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()
            .and_then(|inner| inner.downcast_ref::<std::io::Error>())
    });
    io.is_some_and(|io| io.kind() == std::io::ErrorKind::Interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_quorum_lists_every_node() {
        let e = Error::NoQuorum {
            resource: "k".into(),
            answered: 1,
            agreed: 1,
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
            "no quorum for \"k\": 1 of 3 nodes answered, 2 must agree, 2 failed (127.0.0.1:1: no \
             connection within the connect timeout (refused); 127.0.0.1:2: unexpected reply: \
             garbage)"
        );
        assert_eq!(e.node_errors().len(), 2);
        assert!(e.node_errors()[0].is_timeout());
        assert!(!e.node_errors()[1].is_timeout());
    }

    /// A release on 5 nodes where 3 answered but only 1 still held the token: the message
    /// must not read as if a quorum agreed (it said "3 of 5 nodes answered, 3 must agree").
    #[test]
    fn a_failed_release_says_how_many_still_held_the_token() {
        let failed = |n: &str| NodeError::new(n, NodeCause::Checkout("timed out".into()));
        let e = Error::NoQuorum {
            resource: "k".into(),
            answered: 3,
            agreed: 1,
            needed: 3,
            nodes: 5,
            failures: vec![failed("n4"), failed("n5")],
        };
        assert_eq!(
            e.to_string(),
            "no quorum for \"k\": 1 of 5 nodes said yes, 3 must; 2 said no, 2 failed (n4: no \
             connection within the connect timeout (timed out); n5: no connection within the \
             connect timeout (timed out))"
        );
    }

    /// A server that is not Redis (an HTTP server, say) made a four-line message.
    #[test]
    fn node_errors_are_one_line() {
        let parse = redis::RedisError::from((
            redis::ErrorKind::Parse,
            "Parse error",
            "at 1\nUnexpected `84`\nUnexpected `72`\n".to_owned(),
        ));
        let e = NodeError::new("127.0.0.1:8080", NodeCause::Redis(parse));
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text:?}");
        assert!(text.contains("Unexpected `84`; Unexpected `72`"), "{text}");
        assert!(
            text.contains("is a Redis server listening there?"),
            "{text}"
        );
        assert_eq!(e.kind(), NodeErrorKind::Unexpected);
        assert_eq!(one_line("a\r\n\n  b  \n"), "a; b");
        let eagain = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        let timeout = NodeError::new("n", NodeCause::Redis(redis::RedisError::from(eagain)));
        assert!(
            timeout.to_string().starts_with("n: timed out ("),
            "{timeout}"
        );
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn an_interrupted_system_call_is_told_apart() {
        let eintr = std::io::Error::from(std::io::ErrorKind::Interrupted);
        assert!(is_interrupted(&redis::RedisError::from(eintr)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_interrupted(&redis::RedisError::from(refused)));
        let client = redis::RedisError::from((redis::ErrorKind::Client, "x"));
        assert!(!is_interrupted(&client));
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
        let script = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "The user executing the script can't run this command or subcommand script: ab, on \
             @user_script:2."
                .to_owned(),
        ));
        assert_eq!(NodeErrorKind::of(&script), NodeErrorKind::Auth);
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

//! One Redlock round: the only place that talks to the nodes.
//!
//! A round checks out one connection per node and writes the command to each at once, then
//! reads the replies, so the round trips overlap on one thread. Every node's answer is a vote:
//! yes, no, or a failure; a failure never aborts the round. The acquire, release, extend and
//! is-locked operations only differ in the command they send and in how they count the votes.

use std::time::{Duration, Instant};

use r2d2::PooledConnection;
use redis::{ErrorKind, ServerErrorKind, Value};

use crate::error::{NodeCause, NodeError};
use crate::factory::Shared;
use crate::node::NodeManager;

/// The smallest socket timeout: redis-rs rejects a zero `Duration`.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The time Redis may be off in expiring a key (1 ms) plus the minimum clock drift (1 ms),
/// added to `ttl * drift_factor` (as in antirez's redlock-rb).
pub(crate) const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// The majority of `n` nodes.
pub(crate) const fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The clock drift allowance for a lease of `ttl`: `ttl * factor + 2 ms`.
///
/// `factor` must be finite and in `[0, 1)` (checked when the factory is built), so this cannot
/// panic for any TTL the factory accepts.
pub(crate) fn drift(ttl: Duration, factor: f64) -> Duration {
    ttl.mul_f64(factor).saturating_add(DRIFT_FLOOR)
}

/// What is left of a lease of `ttl` after a round that took `elapsed`: `ttl - elapsed - drift`,
/// or `None` when nothing is left. Checked arithmetic: a round slower than the TTL never
/// wraps around into a long validity.
pub(crate) fn validity(ttl: Duration, elapsed: Duration, drift: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift)
        .filter(|v| !v.is_zero())
}

/// The outcome of a round.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Nodes that said yes (SET done, token deleted or extended, key exists).
    pub(crate) yes: usize,
    /// Nodes that answered no.
    pub(crate) no: usize,
    /// Nodes that did not answer usefully.
    pub(crate) failures: Vec<NodeError>,
    /// Bit i set when the command was written to node i (it may have been applied even if the
    /// reply was lost).
    pub(crate) written: u64,
    /// Bit i set when node i answered no.
    pub(crate) refused: u64,
}

impl Tally {
    /// How many nodes answered at all.
    pub(crate) const fn answered(&self) -> usize {
        self.yes + self.no
    }
}

/// How a reply becomes a vote: `Some(true)` yes, `Some(false)` no, `None` unexpected.
pub(crate) type Classify = fn(&Value) -> Option<bool>;

/// `SET NX` says OK when it set the key and nil when the key exists.
pub(crate) fn set_reply(v: &Value) -> Option<bool> {
    match v {
        Value::Okay => Some(true),
        Value::Nil => Some(false),
        _ => None,
    }
}

/// The scripts and EXISTS answer 1 or 0.
pub(crate) fn int_reply(v: &Value) -> Option<bool> {
    match v {
        Value::Int(1) => Some(true),
        Value::Int(0) => Some(false),
        _ => None,
    }
}

/// A script to re-run through `redis::Script` (which loads it) on a node that answered
/// NOSCRIPT.
pub(crate) struct Fallback<'a> {
    pub(crate) script: &'a redis::Script,
    pub(crate) key: &'a str,
    pub(crate) args: &'a [&'a [u8]],
}

/// Sends `packed` to every node whose bit is set in `mask`, then reads and counts the replies.
pub(crate) fn fan_out(
    shared: &Shared,
    packed: &[u8],
    mask: u64,
    classify: Classify,
    fallback: Option<&Fallback<'_>>,
) -> Tally {
    let nodes = &shared.nodes;
    let mut tally = Tally::default();
    let mut sent: Vec<(usize, PooledConnection<NodeManager>)> = Vec::with_capacity(nodes.len());

    // Write to every node before reading any reply. The pools connect in the background
    // concurrently, so one checkout deadline serves all nodes.
    let checkout_deadline = Instant::now() + shared.config.connect_timeout;
    for (i, node) in nodes.iter().enumerate() {
        if mask & (1 << i) == 0 {
            continue;
        }
        let mut conn = match node.checkout(checkout_deadline) {
            Ok(conn) => conn,
            Err(e) => {
                tally.failures.push(e);
                continue;
            }
        };
        tally.written |= 1 << i;
        match conn.con.send_packed_command(packed) {
            Ok(()) => sent.push((i, conn)),
            Err(e) => {
                conn.broken = true;
                node.record_failure(&e.to_string());
                tally.failures.push(NodeError::new(&node.name, e.into()));
            }
        }
    }

    // Read the replies against one shared deadline: a round's reading is bounded by one I/O
    // timeout however many nodes are slow.
    let deadline = Instant::now() + shared.config.io_timeout;
    for (i, mut conn) in sent {
        let Some(node) = nodes.get(i) else { continue };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_TIMEOUT);
        let reply = conn
            .con
            .set_read_timeout(Some(left))
            .and_then(|()| recv_reply(&mut conn.con));
        let reply = match reply {
            Ok(v) => v.extract_error(),
            Err(e) => {
                // The connection may have a reply in flight, or be dead: never reuse it.
                conn.broken = true;
                node.record_failure(&e.to_string());
                tally.failures.push(NodeError::new(&node.name, e.into()));
                continue;
            }
        };
        node.record_success();
        let reply = match (reply, fallback) {
            (Err(e), Some(f))
                if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoScript)) =>
            {
                log::debug!("redmutex: {} had no script loaded; loading it", node.name);
                let mut invocation = f.script.prepare_invoke();
                invocation.key(f.key);
                for arg in f.args {
                    invocation.arg(*arg);
                }
                invocation.invoke::<Value>(&mut conn.con).inspect_err(|e| {
                    if e.is_io_error() {
                        conn.broken = true;
                    }
                })
            }
            (reply, _) => reply,
        };
        match reply.map(|v| (classify(&v), v)) {
            Ok((Some(true), _)) => tally.yes += 1,
            Ok((Some(false), _)) => {
                tally.no += 1;
                tally.refused |= 1 << i;
            }
            Ok((None, v)) => tally.failures.push(NodeError::new(
                &node.name,
                NodeCause::Unexpected(format!("{v:?}")),
            )),
            Err(e) => tally.failures.push(NodeError::new(&node.name, e.into())),
        }
    }
    tally
}

/// Reads one reply, skipping RESP3 push messages (they are not replies).
fn recv_reply(con: &mut redis::Connection) -> redis::RedisResult<Value> {
    loop {
        match con.recv_response()? {
            Value::Push { .. } => {}
            v => return Ok(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn majority_of_small_clusters() {
        let got: Vec<usize> = (1..=7).map(majority).collect();
        assert_eq!(got, [1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn drift_is_factor_plus_two_ms() {
        assert_eq!(drift(Duration::from_secs(10), 0.01), 102 * MS);
        assert_eq!(drift(Duration::from_secs(10), 0.0), 2 * MS);
    }

    #[test]
    fn validity_subtracts_elapsed_and_drift() {
        let ttl = Duration::from_secs(10);
        assert_eq!(validity(ttl, 3 * MS, 102 * MS), Some(9895 * MS));
    }

    #[test]
    fn validity_never_underflows() {
        let ttl = Duration::from_millis(100);
        // The round took longer than the TTL: redlock-rs wraps around here.
        assert_eq!(validity(ttl, Duration::from_secs(5), 3 * MS), None);
        // Exactly used up is not valid either.
        assert_eq!(validity(ttl, 97 * MS, 3 * MS), None);
        assert_eq!(validity(ttl, 96 * MS, 3 * MS), Some(MS));
        // Drift alone can eat the TTL.
        assert_eq!(validity(MS, Duration::ZERO, 2 * MS), None);
    }

    #[test]
    fn replies_classify() {
        assert_eq!(set_reply(&Value::Okay), Some(true));
        assert_eq!(set_reply(&Value::Nil), Some(false));
        assert_eq!(set_reply(&Value::Int(1)), None);
        assert_eq!(int_reply(&Value::Int(1)), Some(true));
        assert_eq!(int_reply(&Value::Int(0)), Some(false));
        assert_eq!(int_reply(&Value::Int(2)), None);
        assert_eq!(int_reply(&Value::Okay), None);
    }
}

//! One Redlock round: the only place that talks to the nodes.
//!
//! A round checks out one connection per node and writes the command to each at once, then
//! reads the replies, so the round trips overlap on one thread. Every node's answer is a vote:
//! yes, no, or a failure; a failure never aborts the round. The acquire, release, extend and
//! is-locked operations only differ in the command they send and in how they count the votes.

use std::time::{Duration, Instant};

use r2d2::PooledConnection;
use redis::{ErrorKind, ServerErrorKind, Value};

use crate::command::{self, Arg};
use crate::error::{NodeCause, NodeError};
use crate::factory::Shared;
use crate::node::{Node, NodeManager};
use crate::scripts::Lua;

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

/// One node's answer: yes or no, with a number some commands return alongside (the fencing
/// counter, a waiters flag); 0 when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vote {
    Yes(i64),
    No(i64),
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
    /// The largest number that came with an answer (yes or no).
    pub(crate) aux: i64,
}

impl Tally {
    /// How many nodes answered at all.
    pub(crate) const fn answered(&self) -> usize {
        self.yes + self.no
    }

    fn count(&mut self, node: usize, vote: Result<Vote, NodeError>) {
        match vote {
            Ok(Vote::Yes(aux)) => {
                self.yes += 1;
                self.aux = self.aux.max(aux);
            }
            Ok(Vote::No(aux)) => {
                self.no += 1;
                self.refused |= 1 << node;
                self.aux = self.aux.max(aux);
            }
            Err(e) => self.failures.push(e),
        }
    }
}

/// How a reply becomes a vote; `None` for a reply the command cannot give.
pub(crate) type Classify = fn(&Value) -> Option<Vote>;

/// `SET NX` says OK when it set the key and nil when the key exists.
pub(crate) fn set_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Okay => Some(Vote::Yes(0)),
        Value::Nil => Some(Vote::No(0)),
        _ => None,
    }
}

/// EXISTS and the extend script answer 1 or 0.
pub(crate) fn int_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Int(1) => Some(Vote::Yes(0)),
        Value::Int(0) => Some(Vote::No(0)),
        _ => None,
    }
}

/// The release script answers 0 (not our token), 1 (deleted) or 2 (deleted, and clients were
/// waiting for the lock).
pub(crate) fn release_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Int(0) => Some(Vote::No(0)),
        Value::Int(n @ (1 | 2)) => Some(Vote::Yes(n - 1)),
        _ => None,
    }
}

/// The acquire script answers `{granted, fencing counter}`.
pub(crate) fn acquire_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Array(items) => match items.as_slice() {
            [Value::Int(1), Value::Int(c)] if *c >= 0 => Some(Vote::Yes(*c)),
            [Value::Int(0), Value::Int(c)] if *c >= 0 => Some(Vote::No(*c)),
            _ => None,
        },
        _ => None,
    }
}

/// A script call to re-send as `EVAL <source>` to a node that answered NOSCRIPT (its script
/// cache was flushed, or it restarted). EVAL needs no `SCRIPT LOAD` permission, so an ACL user
/// without it still works.
pub(crate) struct Fallback<'a> {
    pub(crate) script: &'a Lua,
    pub(crate) keys: &'a [Arg<'a>],
    pub(crate) args: &'a [Arg<'a>],
}

impl Fallback<'_> {
    /// Sends the call as EVAL on `con` and reads the reply.
    fn eval(&self, con: &mut redis::Connection) -> redis::RedisResult<Value> {
        let mut packed = Vec::new();
        command::pack_call(&mut packed, "EVAL", self.script.src, self.keys, self.args);
        con.send_packed_command(&packed)?;
        recv_reply(con)?.extract_error()
    }
}

/// Runs `script` on the nodes in `mask` (EVALSHA, or EVAL where a node answers NOSCRIPT).
pub(crate) fn script_round(
    shared: &Shared,
    script: &Lua,
    keys: &[Arg<'_>],
    args: &[Arg<'_>],
    mask: u64,
    classify: Classify,
) -> Tally {
    command::with_buffer(|buf| {
        command::pack_script(buf, script, keys, args);
        let fallback = Fallback { script, keys, args };
        fan_out(shared, buf, mask, classify, Some(&fallback))
    })
}

/// Sends the command made of `args` to the nodes in `mask`.
pub(crate) fn command_round(
    shared: &Shared,
    args: &[Arg<'_>],
    mask: u64,
    classify: Classify,
) -> Tally {
    command::with_buffer(|buf| {
        command::pack(buf, args.iter().copied(), args.len());
        fan_out(shared, buf, mask, classify, None)
    })
}

/// Sends `packed` to every node whose bit is set in `mask`, then reads and counts the replies.
pub(crate) fn fan_out(
    shared: &Shared,
    packed: &[u8],
    mask: u64,
    classify: Classify,
    fallback: Option<&Fallback<'_>>,
) -> Tally {
    let mut tally = Tally::default();
    let written = exchange(
        shared,
        packed,
        1,
        mask,
        classify,
        fallback,
        |_, node, vote| {
            tally.count(node, vote);
        },
    );
    tally.written = written;
    tally
}

/// Like [`fan_out`] for `count` commands packed back to back (a pipeline per node): one round
/// trip for all of them. Returns one tally per command. A node answering NOSCRIPT is a failure
/// for that command (the script is loaded for next time).
pub(crate) fn fan_out_batch(
    shared: &Shared,
    packed: &[u8],
    count: usize,
    mask: u64,
    classify: Classify,
) -> Vec<Tally> {
    let mut tallies: Vec<Tally> = (0..count).map(|_| Tally::default()).collect();
    let written = exchange(
        shared,
        packed,
        count,
        mask,
        classify,
        None,
        |cmd, node, vote| {
            if let Some(t) = tallies.get_mut(cmd) {
                t.count(node, vote);
            }
        },
    );
    for t in &mut tallies {
        t.written = written;
    }
    tallies
}

/// The round itself: checks out a connection per node in `mask` and writes `packed` to each,
/// then reads `count` replies from each, calling `record(command, node, vote)` for every
/// command on every node. Returns the mask of nodes written to.
fn exchange(
    shared: &Shared,
    packed: &[u8],
    count: usize,
    mask: u64,
    classify: Classify,
    fallback: Option<&Fallback<'_>>,
    mut record: impl FnMut(usize, usize, Result<Vote, NodeError>),
) -> u64 {
    let nodes = &shared.nodes;
    let mut written = 0;
    // Nodes whose connection was replaced while writing.
    let mut fresh = 0u64;
    let mut sent: Vec<(usize, PooledConnection<NodeManager>)> = Vec::with_capacity(nodes.len());
    let fail_all = |record: &mut dyn FnMut(usize, usize, Result<Vote, NodeError>),
                    node: usize,
                    e: NodeError| {
        for cmd in 1..count {
            record(cmd, node, Err(e.clone()));
        }
        record(0, node, Err(e));
    };

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
                fail_all(&mut record, i, e);
                continue;
            }
        };
        written |= 1 << i;
        let sent_on = match conn.con.send_packed_command(packed) {
            Ok(()) => Ok(conn),
            Err(e) if e.is_connection_dropped() => {
                // Idle across a restart: one more try on a fresh connection.
                fresh |= 1 << i;
                resend(node, checkout_deadline, packed, conn)
            }
            Err(e) => {
                conn.broken = true;
                node.record_failure(&e.to_string());
                Err(NodeError::new(&node.name, e.into()))
            }
        };
        match sent_on {
            Ok(conn) => sent.push((i, conn)),
            Err(e) => fail_all(&mut record, i, e),
        }
    }

    // Read the replies against one shared deadline: a round's reading is bounded by one I/O
    // timeout however many nodes are slow.
    let deadline = Instant::now() + shared.config.io_timeout;
    'nodes: for (i, mut conn) in sent {
        let Some(node) = nodes.get(i) else { continue };
        let mut answered = false;
        let mut load_scripts = false;
        // A connection already replaced in the writing phase is not retried again.
        let mut retried = fresh & (1 << i) != 0;
        for cmd in 0..count {
            if conn.broken {
                let e = NodeCause::Unexpected("connection broken earlier in the pipeline".into());
                record(cmd, i, Err(NodeError::new(&node.name, e)));
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = conn
                .set_read_timeout(read_timeout(left, shared.config.io_timeout))
                .and_then(|()| recv_reply(&mut conn.con));
            let reply = match reply {
                Ok(v) => v.extract_error(),
                Err(e) if cmd == 0 && !retried && e.is_connection_dropped() => {
                    // Idle across a restart: nothing was read yet, so send everything again on
                    // a fresh connection, once.
                    retried = true;
                    match resend(node, deadline, packed, conn) {
                        Ok(fresh) => {
                            conn = fresh;
                            conn.set_read_timeout(read_timeout(
                                deadline.saturating_duration_since(Instant::now()),
                                shared.config.io_timeout,
                            ))
                            .and_then(|()| recv_reply(&mut conn.con))
                            .and_then(Value::extract_error)
                        }
                        Err(ne) => {
                            fail_all(&mut record, i, ne);
                            continue 'nodes;
                        }
                    }
                }
                Err(e) => {
                    // The connection may have a reply in flight, or be dead: never reuse it.
                    conn.broken = true;
                    node.record_failure(&e.to_string());
                    record(cmd, i, Err(NodeError::new(&node.name, e.into())));
                    continue;
                }
            };

            if let Err(e) = &reply
                && is_read_only(e)
            {
                // A demoted master (now a replica) refuses writes: a failure of the node, whose
                // connections must all go so the pool reconnects (through Sentinel: to the new
                // master).
                conn.broken = true;
                node.record_failure(&e.to_string());
                record(cmd, i, Err(NodeError::new(&node.name, e.clone().into())));
                continue;
            }
            answered = true;
            let no_script = matches!(&reply, Err(e) if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoScript)));
            let reply = match (reply, fallback) {
                (Err(_), Some(f)) if no_script => {
                    log::debug!("redmutex: {} had no script loaded; sending EVAL", node.name);
                    load_scripts = true;
                    f.eval(&mut conn.con).inspect_err(|e| {
                        if is_read_only(e) {
                            node.record_failure(&e.to_string());
                        }
                        if e.is_io_error() || is_read_only(e) {
                            conn.broken = true;
                        }
                    })
                }
                (reply, _) => {
                    load_scripts |= no_script;
                    reply
                }
            };
            let vote = match reply {
                Ok(v) => classify(&v).ok_or_else(|| {
                    NodeError::new(&node.name, NodeCause::Unexpected(format!("{v:?}")))
                }),
                Err(e) => Err(NodeError::new(&node.name, e.into())),
            };
            record(cmd, i, vote);
        }
        if answered {
            node.record_success();
        }
        if load_scripts && !conn.broken {
            for script in crate::scripts::ALL {
                if let Err(e) = script.load(&mut conn.con) {
                    conn.broken |= e.is_io_error();
                }
            }
        }
    }
    written
}

/// Sends `packed` again on a fresh connection to `node` (see [`Node::reconnect`]), after
/// `dead` failed. `dead` goes back to the pool (to be dropped) first: with a pool of one, the
/// fresh connection needs its place.
fn resend(
    node: &Node,
    deadline: Instant,
    packed: &[u8],
    mut dead: PooledConnection<NodeManager>,
) -> Result<PooledConnection<NodeManager>, NodeError> {
    dead.broken = true;
    drop(dead);
    let mut conn = node.reconnect(deadline)?;
    log::debug!(
        "redmutex: {}: pooled connection was dead; retrying on a new one",
        node.name
    );
    match conn.con.send_packed_command(packed) {
        Ok(()) => Ok(conn),
        Err(e) => {
            conn.broken = true;
            node.record_failure(&e.to_string());
            Err(NodeError::new(&node.name, e.into()))
        }
    }
}

/// Whether a server error says the node is a replica (READONLY): a demoted master.
fn is_read_only(e: &redis::RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
}

/// The read timeout for a node when `left` remains of the round's I/O deadline: the I/O
/// timeout itself while at least half of it is left (the socket already has it: no system
/// call), else exactly what is left. So a round's reading phase lasts at most 1.5 times the I/O
/// timeout, and a healthy round makes no `setsockopt` calls.
pub(crate) fn read_timeout(left: Duration, io_timeout: Duration) -> Duration {
    if left >= io_timeout / 2 {
        io_timeout
    } else {
        left.max(MIN_TIMEOUT)
    }
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
    fn read_timeout_stays_put_until_half_the_budget_is_spent() {
        let io = 100 * MS;
        assert_eq!(read_timeout(100 * MS, io), io);
        assert_eq!(read_timeout(50 * MS, io), io);
        assert_eq!(read_timeout(49 * MS, io), 49 * MS);
        assert_eq!(read_timeout(Duration::ZERO, io), MS);
    }

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
        use Vote::{No, Yes};
        assert_eq!(set_reply(&Value::Okay), Some(Yes(0)));
        assert_eq!(set_reply(&Value::Nil), Some(No(0)));
        assert_eq!(set_reply(&Value::Int(1)), None);
        assert_eq!(int_reply(&Value::Int(1)), Some(Yes(0)));
        assert_eq!(int_reply(&Value::Int(0)), Some(No(0)));
        assert_eq!(int_reply(&Value::Int(2)), None);
        assert_eq!(int_reply(&Value::Okay), None);
        assert_eq!(release_reply(&Value::Int(2)), Some(Yes(1)));
        assert_eq!(release_reply(&Value::Int(1)), Some(Yes(0)));
        assert_eq!(release_reply(&Value::Int(0)), Some(No(0)));
        assert_eq!(release_reply(&Value::Int(3)), None);
        let arr = |g, c| Value::Array(vec![Value::Int(g), Value::Int(c)]);
        assert_eq!(acquire_reply(&arr(1, 41)), Some(Yes(41)));
        assert_eq!(acquire_reply(&arr(0, 7)), Some(No(7)));
        assert_eq!(acquire_reply(&arr(1, -1)), None);
        assert_eq!(acquire_reply(&Value::Okay), None);
    }

    #[test]
    fn tally_counts_votes_and_keeps_the_largest_number() {
        let mut t = Tally::default();
        t.count(0, Ok(Vote::Yes(3)));
        t.count(1, Ok(Vote::No(9)));
        t.count(2, Ok(Vote::Yes(5)));
        assert_eq!((t.yes, t.no, t.aux, t.refused), (2, 1, 9, 0b010));
    }
}

/// Properties of the quorum and validity arithmetic (contributed with the fault suite).
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn majority_is_strict_and_quorums_intersect(n in 1usize..=64) {
            let q = majority(n);
            prop_assert!(2 * q > n);
            prop_assert!(q <= n);
            prop_assert!(q == 1 || 2 * (q - 1) <= n);
        }

        #[test]
        fn drift_is_factor_times_ttl_plus_floor(ttl_ms in 1u64..(1 << 40), f in 0.0f64..1.0) {
            let ttl = Duration::from_millis(ttl_ms);
            let d = drift(ttl, f);
            prop_assert!(d >= DRIFT_FLOOR);
            prop_assert_eq!(d, ttl.mul_f64(f) + DRIFT_FLOOR);
            prop_assert!(d < ttl + DRIFT_FLOOR);
        }

        #[test]
        fn validity_is_checked_ttl_minus_elapsed_minus_drift(
            ttl_us in 0u64..u64::MAX / 4,
            elapsed_us in 0u64..u64::MAX / 4,
            drift_us in 0u64..u64::MAX / 4,
        ) {
            let ttl = Duration::from_micros(ttl_us);
            let elapsed = Duration::from_micros(elapsed_us);
            let d = Duration::from_micros(drift_us);
            let expected = i128::from(ttl_us) - i128::from(elapsed_us) - i128::from(drift_us);
            match validity(ttl, elapsed, d) {
                Some(v) => {
                    prop_assert!(expected > 0);
                    prop_assert_eq!(v.as_micros() as i128, expected);
                    prop_assert!(v < ttl);
                }
                None => prop_assert!(expected <= 0),
            }
        }

        #[test]
        fn validity_shrinks_as_the_round_grows(
            ttl_ms in 3u64..1_000_000,
            a in 0u64..2_000_000,
            b in 0u64..2_000_000,
        ) {
            let ttl = Duration::from_millis(ttl_ms);
            let d = drift(ttl, 0.01);
            let shorter = validity(ttl, Duration::from_millis(a.min(b)), d);
            let longer = validity(ttl, Duration::from_millis(a.max(b)), d);
            prop_assert!(longer <= shorter);
        }
    }
}

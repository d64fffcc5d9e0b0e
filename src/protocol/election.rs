//! Leader election, on the lease protocol: a candidate's attempt, a leader's proclamation, the
//! quorum read of who leads, and the observer's wait for the next change.
//!
//! # On the nodes
//!
//! A leader holds the election's name as a lock key (its token, with `PX`), exactly as a mutex
//! holder does: the same waiting loop takes it, the same keep-alive renews it, and a lock of
//! the same name (or any Redlock client) excludes it. Its **term** is a fencing token of the
//! name (the quorum max-register of [`fence`](super::acquire::fence)), so every term is above
//! every term issued before, and a lock's fencing tokens and the terms of an election on the
//! same name come from one counter. The grant reads each node's counter raised to the node's
//! clock (microseconds since the Unix epoch): a quorum max-register alone repeats a value when
//! the next grant's quorum is made of nodes that lost the counter (restarted without their data)
//! or missed its write-back; with the clock as a floor, a term also exceeds every term issued
//! earlier than the grant by more than the nodes' clock offsets. What the leader publishes is the **leader record** beside the lock key
//! (`<name>:redmutex:leader`, a hash of token, term, revision and value): written while the
//! lock key holds the leader's token, living exactly as long as it (the extend script extends
//! both, the release deletes both), and counting only while the lock key holds the record's
//! token. A node therefore *holds leader `(token, term)`* when its lock key and its record name
//! the same token; a leader *is* the leader when a quorum of nodes hold it.
//!
//! A campaign is three rounds: the grant (the acquire script: `SET NX PX` and the fencing
//! counter read in one step), the fencing write-back that issues the term, and the record's
//! installation (revision 1). Only when a quorum holds the record within the lease's validity
//! does the campaign return; otherwise what it took is released.
//!
//! # Reading and observing
//!
//! [`read`] asks every node for its lock key, record and expiry in one round, and reports a
//! leader only if a quorum of nodes hold the same `(token, term)`: a follower never sees a
//! leader that a quorum does not hold. Of its value it reports the revision that a quorum holds
//! (the quorum-th highest revision among those nodes), so a value that reached only a minority
//! (a proclamation under way, or one that failed) is not reported either.
//!
//! Every record write and every resignation is announced on `<name>:redmutex:elected`. An
//! observer ([`Watch`]) is subscribed to it on one node and is woken by the announcement; it
//! then reads a quorum (again, after short growing pauses, while the announced change has not
//! reached a quorum yet), and reports what it read only if it is newer, in `(term, revision)`
//! order, than what it last reported. Polling (every `poll` interval) is the fallback for a
//! subscription that failed or a node that stalls; a poll that finds the subscribed node
//! failing moves the subscription to another node. A leader whose lease simply ran out (it
//! crashed) is not announced: the next leader's installation is.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;

use super::acquire::{Attempt, Fenced, Grant, Request, Wait, conclude, mark_ms};
use super::inspect::Fingerprint;
use super::lease::{Announce, Lease, Target, Token, lock, millis, no_quorum, release_round};
use super::verdict::{Question, Verdict, decide};
use crate::command::Arg;
use crate::error::{Error, NodeCause, NodeError, Result};
use crate::round::{self, Call, Settle, Tally};
use crate::scripts;
use crate::shared::Shared;
use crate::waker::Sub;

/// The longest leader value (and run-once result) accepted, in bytes: these are small
/// announcements, read by every observer on every change.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

/// When an announcement is newer than what a quorum shows yet (the change is still reaching the
/// other nodes, which a loaded machine can delay), an observer reads again after a pause that
/// starts here and doubles up to [`SETTLE_MAX`], for [`SETTLE_FOR`] at most (then the change is
/// taken to have failed: a proclamation without a quorum, a campaign given back).
const SETTLE_FIRST: Duration = Duration::from_millis(2);
const SETTLE_MAX: Duration = Duration::from_millis(100);
const SETTLE_FOR: Duration = Duration::from_secs(2);
/// How often a wait with a cancel flag looks at it.
const CANCEL_SLICE: Duration = Duration::from_millis(20);
/// After a failed subscription, how long an observer polls before subscribing again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// What a leader publishes: its value, and the revision of it (1 at election, one more per
/// proclamation).
pub(crate) struct Published {
    value: Mutex<Arc<str>>,
    rev: AtomicU64,
}

impl Published {
    fn new(value: Arc<str>) -> Self {
        Self {
            value: Mutex::new(value),
            rev: AtomicU64::new(0),
        }
    }

    /// The value last published to a quorum.
    pub(crate) fn value(&self) -> Arc<str> {
        Arc::clone(&lock(&self.value))
    }

    /// Its revision.
    pub(crate) fn rev(&self) -> u64 {
        self.rev.load(Ordering::Acquire)
    }
}

impl Default for Published {
    /// What a token-level call's target needs: nothing (its scripts do not use it).
    fn default() -> Self {
        Self::new(Arc::from(""))
    }
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("value", &self.value())
            .field("rev", &self.rev())
            .finish()
    }
}

/// Checks a leader value (or a run's result): at most [`MAX_VALUE_LEN`] bytes.
pub(crate) fn check_value(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::InvalidArgument(format!(
            "the {what} is {} bytes long; at most {MAX_VALUE_LEN} are allowed",
            value.len()
        )));
    }
    Ok(())
}

/// One campaign attempt for `value`: the grant round (with the fencing counter), the term's
/// write-back, and the leader record's installation. `mark`: the caller will wait, so mark the
/// name as waited for.
pub(crate) fn attempt(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    mark: bool,
    value: &Arc<str>,
) -> Attempt<Lease> {
    if let Err(e) = shared.check_longest("ttl", req.ttl) {
        return Attempt::Fatal(e);
    }
    let name: &str = req.resource;
    let token = Token::new();
    let start = Instant::now();
    // SET NX PX, the fencing counter (raised to the node's clock) and the waiting mark in one
    // step.
    let keys = [
        Arg::Str(name),
        Arg::Joined(name, scripts::FENCE_SUFFIX),
        Arg::Joined(name, scripts::WAITING_SUFFIX),
    ];
    let args = [
        Arg::Str(token.as_str()),
        Arg::Int(millis(req.ttl)),
        Arg::Int(mark_ms(shared, mark)),
    ];
    let call = Call::Script {
        script: &scripts::LEADER_GRANT,
        keys: &keys,
        args: &args,
    };
    let tally = round::round(
        &shared.nodes,
        call,
        shared.nodes.all(),
        round::acquire_reply,
        Settle::Grant(shared.config.quorum),
    );
    // A leader always has a term.
    let grant = Grant {
        fenced: Some(Fenced::One(name)),
        ..req.grant()
    };
    let published = Arc::new(Published::new(Arc::clone(value)));
    match conclude(
        shared,
        &grant,
        Target::Leader(published),
        token,
        start,
        &tally,
    ) {
        Attempt::Won(lease, votes) => match install(&lease) {
            Ok(()) => Attempt::Won(lease, votes),
            Err(e) => {
                // Not a leader after all: give back the lock key (and whatever record landed),
                // waking the other candidates.
                let mask = shared.nodes.all();
                release_round(
                    shared,
                    &lease.target,
                    name,
                    lease.token.as_str(),
                    mask,
                    Announce::Yes,
                    lease.owing(),
                );
                lease.mark_ended();
                Attempt::Failed(e)
            }
        },
        other => other,
    }
}

/// Installs a new leader's record (revision 1) on a quorum, within its validity.
fn install(lease: &Lease) -> Result<()> {
    let Target::Leader(published) = &lease.target else {
        return Err(not_a_leader());
    };
    let value = published.value();
    let term = lease.fencing.unwrap_or(0);
    let started = Instant::now();
    match write(lease, term, 1, &value) {
        Ok(()) if Instant::now() < lease.deadline() => {
            published.rev.store(1, Ordering::Release);
            Ok(())
        }
        Ok(()) => Err(Error::TooLate {
            resource: lease.resource.to_string(),
            elapsed: started.elapsed(),
        }),
        Err(e) => Err(e),
    }
}

/// Publishes `value` as the leader's new value, under the lease's round lock (no renewal runs
/// meanwhile), within its validity. A loss the round shows is signalled.
pub(crate) fn proclaim(lease: &Lease, value: Arc<str>) -> Result<()> {
    let Target::Leader(published) = &lease.target else {
        return Err(not_a_leader());
    };
    let expired = || Error::Expired {
        resource: lease.resource.to_string(),
    };
    let slot = lease.slot();
    let result = if !slot.live || Instant::now() >= lease.deadline() {
        Err(expired())
    } else {
        // Each attempt takes a new revision, so that a late request of a failed one can never
        // bring its value back after a later one.
        let rev = published.rev.fetch_add(1, Ordering::AcqRel) + 1;
        match write(lease, lease.fencing.unwrap_or(0), rev, &value) {
            Ok(()) if Instant::now() < lease.deadline() => {
                *lock(&published.value) = value;
                Ok(())
            }
            Ok(()) => Err(expired()),
            Err(e) => Err(e),
        }
    };
    drop(slot);
    result.map_err(|e| lease.noting_loss(e))
}

/// One round of the record-writing script: revision `rev` of `value` in `term`.
fn write(lease: &Lease, term: u64, rev: u64, value: &str) -> Result<()> {
    let shared = &lease.shared;
    let name: &str = &lease.resource;
    let keys = [Arg::Str(name), Arg::Joined(name, scripts::LEADER_SUFFIX)];
    let args = [
        Arg::Str(lease.token.as_str()),
        Arg::Int(term),
        Arg::Int(rev),
        Arg::Str(value),
        Arg::Joined(name, scripts::ELECTED_SUFFIX),
    ];
    let call = Call::Script {
        script: &scripts::LEADER_WRITE,
        keys: &keys,
        args: &args,
    };
    // A revision read late is harmless: a record never goes back to a lower one.
    let tally = round::round(
        &shared.nodes,
        call,
        shared.nodes.all(),
        round::int_reply,
        Settle::Holds(shared.config.quorum),
    );
    log::debug!(
        "redmutex: leader record of {name:?}, term {term}, revision {rev}: {}/{} written, {} \
         failed",
        tally.yes,
        shared.nodes.len(),
        tally.failures.len()
    );
    match decide(shared, &tally, Question::Holds, None) {
        Verdict::Won(_) | Verdict::TooLate => Ok(()),
        Verdict::Refused => Err(Error::LockLost {
            resource: name.to_owned(),
        }),
        Verdict::Unknown => Err(no_quorum(shared, name, &tally)),
    }
}

fn not_a_leader() -> Error {
    Error::InvalidArgument("this lease is not an election's leadership".into())
}

/// The leader of an election, as a quorum of nodes hold it: from
/// [`Election::leader`](crate::Election::leader) and [`Observer`](crate::Observer).
///
/// It is a snapshot taken in one round: it may be stale as soon as it is returned. A leader is
/// reported only when a quorum of nodes hold its lock key and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The leader's term: its fencing token, above every term (and every fencing token of a
    /// lock of the same name) issued before it.
    pub term: u64,
    /// The value it published (at its campaign, or its last proclamation that a quorum holds).
    pub value: String,
    /// Which publication of the term `value` is: 1 at election, one more per proclamation.
    /// Changes come in `(term, revision)` order.
    pub revision: u64,
    /// The leader's fingerprint (of its token, never the token itself).
    pub holder: Fingerprint,
    /// How much longer a quorum of nodes hold its lease, by their clocks, less the round's time
    /// and the drift allowance: if the leader vanished now, no one else could lead before then.
    pub lease: Duration,
    /// How many nodes hold it.
    pub nodes: usize,
}

impl Leader {
    /// The order of changes: term, then revision.
    pub(crate) fn key(&self) -> (u64, u64) {
        (self.term, self.revision)
    }
}

/// What one node holds for an election.
struct NodeLeader {
    token: Vec<u8>,
    term: u64,
    rev: u64,
    value: String,
    pttl: u64,
}

/// What a read found.
pub(crate) struct Reading {
    /// The leader a quorum holds.
    pub(crate) leader: Option<Leader>,
    /// The nodes that failed to answer.
    pub(crate) failed: u64,
}

/// Reads the election `name` on every node (one round, no change): the leader a quorum holds,
/// if any. `ttl` is the election's lease time (for the drift allowance of the lease left).
///
/// `Err(NoQuorum)` when too few nodes answered to tell.
pub(crate) fn read(shared: &Shared, name: &str, ttl: Duration) -> Result<Reading> {
    let get = [Arg::Str("GET"), Arg::Str(name)];
    let record = [
        Arg::Str("HMGET"),
        Arg::Joined(name, scripts::LEADER_SUFFIX),
        Arg::Str("token"),
        Arg::Str("term"),
        Arg::Str("rev"),
        Arg::Str("value"),
    ];
    let pttl = [Arg::Str("PTTL"), Arg::Str(name)];
    let calls = [
        Call::Command(&get),
        Call::Command(&record),
        Call::Command(&pttl),
    ];
    let start = Instant::now();
    let replies = round::replies(&shared.nodes, &calls, shared.nodes.all()).per_node;
    let elapsed = start.elapsed();
    let mut tally = Tally::default();
    let mut failed = 0;
    let mut held = Vec::new();
    for (i, (node, replies)) in shared.nodes.iter().zip(replies).enumerate() {
        match parse(&node.name, &replies) {
            Ok(Some(h)) => {
                tally.yes += 1;
                held.push(h);
            }
            Ok(None) => tally.no += 1,
            Err(e) => {
                failed |= 1 << i;
                tally.failures.push(e);
            }
        }
    }
    let quorum = shared.config.quorum;
    let leader = elect(&mut held, quorum).map(|(group, nodes)| {
        let drift = shared.drift(ttl);
        let lease = Duration::from_millis(group.pttl)
            .saturating_sub(elapsed)
            .saturating_sub(drift);
        Leader {
            term: group.term,
            value: group.value.clone(),
            revision: group.rev,
            holder: Fingerprint::of(std::str::from_utf8(&group.token).unwrap_or_default()),
            lease,
            nodes,
        }
    });
    if leader.is_none() && tally.answered() < quorum {
        return Err(no_quorum(shared, name, &tally));
    }
    Ok(Reading { leader, failed })
}

/// The `(token, term)` a quorum of nodes hold, if any, as the node whose revision is the
/// quorum-th highest among them (its value and revision are held, or overtaken, by a quorum),
/// with the quorum-th longest expiry; and how many nodes hold it.
fn elect(held: &mut [NodeLeader], quorum: usize) -> Option<(&NodeLeader, usize)> {
    held.sort_by(|a, b| (&a.token, a.term).cmp(&(&b.token, b.term)));
    let mut start = 0;
    while start < held.len() {
        let first = held.get(start)?;
        let end = start
            + held
                .get(start..)?
                .iter()
                .take_while(|h| h.token == first.token && h.term == first.term)
                .count();
        if end - start >= quorum {
            let group = held.get_mut(start..end)?;
            let mut ttls: Vec<u64> = group.iter().map(|h| h.pttl).collect();
            ttls.sort_unstable_by(|a, b| b.cmp(a));
            let pttl = ttls.get(quorum - 1).copied().unwrap_or(0);
            group.sort_by_key(|h| std::cmp::Reverse(h.rev));
            let chosen = group.get_mut(quorum - 1)?;
            chosen.pttl = pttl;
            let nodes = end - start;
            return held.get(start + quorum - 1).map(|h| (h, nodes));
        }
        start = end;
    }
    None
}

/// One node's replies to `GET name`, `HMGET record token term rev value`, `PTTL name`:
/// `Some` when it holds a leader (its lock key and its record name the same token).
fn parse(
    node: &str,
    replies: &[Result<Value, NodeError>],
) -> std::result::Result<Option<NodeLeader>, NodeError> {
    let unexpected = |what: String| NodeError::new(node, NodeCause::Unexpected(what));
    let [lock, record, pttl] = replies else {
        let e = replies.iter().find_map(|r| r.as_ref().err()).cloned();
        return Err(e.unwrap_or_else(|| unexpected("missing replies".into())));
    };
    let (lock, record, pttl) = (
        lock.as_ref().map_err(Clone::clone)?,
        record.as_ref().map_err(Clone::clone)?,
        pttl.as_ref().map_err(Clone::clone)?,
    );
    let lock = match lock {
        Value::Nil => return Ok(None),
        Value::BulkString(b) => b,
        other => return Err(unexpected(format!("{other:?}"))),
    };
    let Value::Array(fields) = record else {
        return Err(unexpected(format!("{record:?}")));
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(b.clone()),
        _ => None,
    };
    let number = |v: Option<&Value>| {
        text(v)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(token), Some(term), Some(rev)) = (
        text(fields.first()),
        number(fields.get(1)),
        number(fields.get(2)),
    ) else {
        // A lock key without a record: a lock of the same name, or a campaign under way.
        return Ok(None);
    };
    if token != *lock {
        return Ok(None);
    }
    let value = text(fields.get(3))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let pttl = match pttl {
        Value::Int(ms) if *ms > 0 => u64::try_from(*ms).unwrap_or(0),
        Value::Int(_) => return Ok(None),
        other => return Err(unexpected(format!("{other:?}"))),
    };
    Ok(Some(NodeLeader {
        token,
        term,
        rev,
        value,
        pttl,
    }))
}

/// An observer's state: what it reported last, its subscription, and when it polls.
pub(crate) struct Watch {
    shared: Arc<Shared>,
    name: Arc<str>,
    ttl: Duration,
    channel: String,
    /// The `(term, revision)` last reported.
    last: Option<(u64, u64)>,
    /// The newest change announced and not yet seen on a quorum, since when, and the pause
    /// before the next read while it is not.
    announced: Option<(u64, u64)>,
    announced_at: Instant,
    settle: Duration,
    sub: Option<Sub>,
    /// After a failed subscription: poll until then.
    resubscribe_at: Option<Instant>,
    /// The node to try first for the next subscription.
    next_node: usize,
    /// The fallback poll interval.
    pub(crate) poll: Duration,
    /// When the next read is due (at once at first).
    read_at: Instant,
    /// Failed reads in a row.
    failures: u32,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("name", &self.name)
            .field("last", &self.last)
            .field("subscribed", &self.sub.is_some())
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl Watch {
    pub(crate) fn new(shared: Arc<Shared>, name: Arc<str>, ttl: Duration, poll: Duration) -> Self {
        let channel = format!("{name}{}", scripts::ELECTED_SUFFIX);
        Self {
            shared,
            name,
            ttl,
            channel,
            last: None,
            announced: None,
            announced_at: Instant::now(),
            settle: SETTLE_FIRST,
            sub: None,
            resubscribe_at: None,
            next_node: 0,
            poll,
            read_at: Instant::now(),
            failures: 0,
        }
    }

    /// The `(term, revision)` last reported.
    pub(crate) fn last(&self) -> Option<(u64, u64)> {
        self.last
    }

    /// Waits for a leader newer than the last one reported (the current one, the first time),
    /// as `wait` says.
    pub(crate) fn next(&mut self, wait: &Wait<'_>) -> Result<Leader> {
        let start = Instant::now();
        loop {
            if wait.cancelled() {
                return Err(Error::Cancelled {
                    resource: self.name.to_string(),
                    waited: start.elapsed(),
                });
            }
            // Subscribed before reading: a change after the read is announced to us.
            self.subscribe();
            let now = Instant::now();
            if now >= self.read_at {
                if let Some(leader) = self.look()? {
                    return Ok(leader);
                }
                continue;
            }
            if let Some(deadline) = wait.deadline()
                && now >= deadline
            {
                return Err(Error::Timeout {
                    resource: self.name.to_string(),
                    waited: start.elapsed(),
                });
            }
            let mut until = self.read_at;
            if let Some(deadline) = wait.deadline() {
                until = until.min(deadline);
            }
            let mut slice = until.saturating_duration_since(now);
            if wait.cancellable() {
                slice = slice.min(CANCEL_SLICE);
            }
            self.listen(slice);
        }
    }

    /// Reads a quorum: `Some` when it shows a leader newer than the last reported. Schedules
    /// the next read: soon if an announced change is not on a quorum yet, else a poll.
    fn look(&mut self) -> Result<Option<Leader>> {
        let reading = match read(&self.shared, &self.name, self.ttl) {
            Ok(reading) => {
                self.failures = 0;
                reading
            }
            Err(e) => {
                self.failures += 1;
                if self.failures > self.shared.config.max_retries {
                    return Err(e);
                }
                self.drop_sub_if_failed(self.shared.nodes.all());
                self.schedule(None);
                return Ok(None);
            }
        };
        self.drop_sub_if_failed(reading.failed);
        self.schedule(reading.leader.as_ref().map(Leader::key));
        match reading.leader {
            Some(leader) if self.last.is_none_or(|last| leader.key() > last) => {
                self.last = Some(leader.key());
                Ok(Some(leader))
            }
            _ => Ok(None),
        }
    }

    /// Schedules the next read after one that showed `seen`: soon (a growing pause) while an
    /// announced change is newer than it, for [`SETTLE_FOR`] at most; else a poll interval on.
    fn schedule(&mut self, seen: Option<(u64, u64)>) {
        let now = Instant::now();
        if let Some(a) = self.announced {
            if seen.is_some_and(|s| s >= a) || now >= self.announced_at + SETTLE_FOR {
                self.announced = None;
            } else {
                self.read_at = now + self.settle.min(self.poll);
                self.settle = (self.settle * 2).min(SETTLE_MAX);
                return;
            }
        }
        self.read_at = now + self.poll;
    }

    /// Drops the subscription when its node is among `failed`: it may not hear announcements.
    fn drop_sub_if_failed(&mut self, failed: u64) {
        if self
            .sub
            .as_ref()
            .is_some_and(|s| failed & (1 << s.node()) != 0)
        {
            self.sub = None;
            self.next_node += 1;
        }
    }

    /// Subscribes to the election's channel if not subscribed (and no recent attempt failed):
    /// on the first node, from `next_node` on, that is up and accepts it.
    fn subscribe(&mut self) {
        let now = Instant::now();
        if self.sub.is_some() || self.resubscribe_at.is_some_and(|t| t > now) {
            return;
        }
        let nodes = &self.shared.nodes;
        let n = nodes.len();
        let channels = [self.channel.clone()];
        for k in 0..n {
            let i = (self.next_node + k) % n;
            if nodes.get(i).is_some_and(crate::node::Node::is_down) {
                continue;
            }
            match self.shared.waker.subscribe(nodes, i, &channels) {
                Ok(sub) => {
                    self.sub = Some(sub);
                    self.next_node = i;
                    self.resubscribe_at = None;
                    // Anything may have changed before the subscription: look.
                    self.read_at = now;
                    return;
                }
                Err(e) => log::debug!(
                    "redmutex: cannot subscribe to the changes of {:?} on node {i} ({e})",
                    self.name
                ),
            }
        }
        self.resubscribe_at = Some(now + RESUBSCRIBE_AFTER);
    }

    /// Waits up to `timeout` for an announcement (or sleeps, unsubscribed). An announcement
    /// makes the next read due at once (and [`schedule`](Self::schedule) reads again soon while
    /// the announced change is not yet on a quorum).
    fn listen(&mut self, timeout: Duration) {
        let Some(sub) = self.sub.as_mut() else {
            std::thread::sleep(timeout);
            return;
        };
        match sub.listen(timeout) {
            Ok(None) => {}
            Ok(Some(message)) => {
                if let Some(a) = announcement(&message)
                    && self.last.is_none_or(|last| a > last)
                    && self.announced.is_none_or(|b| a > b)
                {
                    self.announced = Some(a);
                    self.announced_at = Instant::now();
                    self.settle = SETTLE_FIRST;
                }
                self.read_at = Instant::now();
            }
            Err(e) => {
                log::debug!(
                    "redmutex: subscription to the changes of {:?} failed ({e}); subscribing \
                     again",
                    self.name
                );
                self.sub = None;
                self.next_node += 1;
                self.read_at = Instant::now();
            }
        }
    }
}

/// The `(term, revision)` of an announcement (`<term>:<rev>`); `None` for a resignation.
fn announcement(message: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(message).ok()?;
    let (term, rev) = text.split_once(':')?;
    Some((term.parse().ok()?, rev.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(token: &str, term: u64, rev: u64, pttl: u64) -> NodeLeader {
        NodeLeader {
            token: token.as_bytes().to_vec(),
            term,
            rev,
            value: format!("{token}{rev}"),
            pttl,
        }
    }

    #[test]
    fn a_leader_needs_a_quorum_of_one_token_and_term() {
        let mut split = [node("a", 1, 1, 900), node("b", 2, 1, 900)];
        assert!(elect(&mut split, 2).is_none());
        let mut terms = [node("a", 1, 1, 900), node("a", 2, 1, 900)];
        assert!(elect(&mut terms, 2).is_none());
        let mut held = [
            node("b", 2, 1, 900),
            node("a", 1, 1, 500),
            node("a", 1, 1, 800),
        ];
        let (h, nodes) = elect(&mut held, 2).unwrap();
        assert_eq!((h.token.as_slice(), h.term, nodes), (b"a".as_slice(), 1, 2));
        // The lease a quorum holds: the second longest of the two.
        assert_eq!(h.pttl, 500);
    }

    #[test]
    fn the_value_is_the_revision_a_quorum_holds() {
        // A proclamation of revision 3 reached one node of three: revision 2 is reported.
        let mut held = [
            node("a", 4, 3, 900),
            node("a", 4, 2, 900),
            node("a", 4, 1, 900),
        ];
        let (h, nodes) = elect(&mut held, 2).unwrap();
        assert_eq!((h.rev, h.value.as_str(), nodes), (2, "a2", 3));
        // Once it reached two, it is.
        let mut held = [
            node("a", 4, 3, 900),
            node("a", 4, 3, 900),
            node("a", 4, 1, 900),
        ];
        assert_eq!(elect(&mut held, 2).unwrap().0.rev, 3);
    }

    #[test]
    fn announcements() {
        assert_eq!(announcement(b"7:2"), Some((7, 2)));
        assert_eq!(announcement(b"resigned"), None);
        assert_eq!(announcement(b"7:x"), None);
    }
}

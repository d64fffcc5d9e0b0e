//! One round: the only code that talks to the nodes for a lock operation.
//!
//! A round checks out one connection per node and writes the command(s) to each, then reads
//! the replies, so the round trips overlap on one thread. Every node's answer is a vote: yes, no,
//! or a failure; a failure never aborts the round. A round knows nothing of locks: it takes the
//! nodes (with their timeouts), the commands and a classifier that turns a reply into a vote.
//!
//! The common case is two short phases, [`write_phase`] and [`read_phase`]. Recovering a node
//! whose pooled connection turned out dead ([`recover`]) and re-sending a script to a node that
//! lost it ([`eval_fallback`]) are separate, cold paths.
//!
//! A recovered node may have run the commands before its connection went (a CLIENT KILL, a
//! proxy's reset, a crash with AOF): every command a round sends is safe to repeat. The
//! acquire scripts answer for their own earlier run (a grant to this call's token is a yes),
//! the bare `SET NX PX` goes again as [`scripts::SET_AGAIN`] (the same grant, or yes when the
//! key already holds this call's token), extends never shorten, and the tally names the nodes
//! sent to twice ([`Tally::resent`]): a take-back reaches them whatever they answered, and a
//! release's "not ours" from them counts as no answer ([`Tally::doubt_resent_refusals`]).
//!
//! Invariant: a connection that did not deliver every reply of the round is never used again,
//! on every path (an error, a timeout, a panic): it is marked broken from the moment the round
//! writes to it until its last reply is read, and the pool drops broken connections. A node
//! that failed to answer is recorded as failing, never as healthy.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use r2d2::PooledConnection;
use redis::{ErrorKind, ServerErrorKind, Value};

use crate::command::{self, Arg};
use crate::error::{NodeCause, NodeError};
use crate::node::{Ballot, Judge, MAX_NODES, MIN_TIMEOUT, Node, NodeManager, Nodes, Unread};
use crate::scripts::{self, Lua};

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
    /// No, because the node holds the name for another configuration (a semaphore of another
    /// permit count): the call is wrong, not the timing.
    Mismatch,
}

/// When a round may stop reading: as soon as the replies read settle its outcome, that is,
/// when every way the unread nodes could still answer (yes, no, or nothing) leads to the verdict
/// the replies in hand give (see `protocol::verdict::judge`, whose two questions these mirror).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Every reply is read (or times out): rounds whose caller weighs all the answers.
    All,
    /// "Is it ours now?" with this quorum (acquisitions): a quorum of yes (a quarantined node's
    /// yes does not count, as at vote time), or a verdict of no (held, or no quorum) that no
    /// late answer can turn.
    Grant(usize),
    /// "Does a quorum still hold our token?" with this quorum (extend, renew, release, fence):
    /// a quorum of yes, or a verdict of no (not held, or not known) no late answer can turn.
    Holds(usize),
}

impl Settle {
    /// Whether `t`, with `pending` nodes written to but not read yet, is settled.
    pub(crate) fn settled(self, nodes: &Nodes, t: &Tally, pending: usize) -> bool {
        if pending == 0 {
            return true;
        }
        match self {
            Self::All => false,
            Self::Grant(q) => {
                let doubted = nodes.doubted(t.given).count_ones() as usize;
                let yes = t.yes.saturating_sub(doubted);
                if yes >= q {
                    return true;
                }
                if yes + pending >= q {
                    return false;
                }
                // No win: refused once a quorum answered, unknown while it cannot.
                let answered = yes + t.no;
                answered >= q || answered + pending < q
            }
            Self::Holds(q) => {
                if t.yes >= q {
                    return true;
                }
                if t.yes + pending >= q {
                    return false;
                }
                // No win: refused while the yes and the failures cannot make a quorum even
                // with every unread node among them, unknown once they make one.
                let maybe = t.yes + t.failures.len();
                maybe + pending < q || maybe >= q
            }
        }
    }
}

/// The outcome of a round (of one command of a batch).
#[derive(Debug, Default, Clone)]
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
    /// Bit i set when node i's yes is counted in `yes` (for the restart quarantine, which
    /// discounts the yes of some nodes from an acquisition).
    pub(crate) given: u64,
    /// Bit i set when node i gave no useful answer (down, timed out, an error reply).
    pub(crate) failed: u64,
    /// Bit i set when node i was sent the round's commands a second time, on a fresh
    /// connection, after the first connection went: its first run may have been applied, so it
    /// is taken back whatever it answered.
    pub(crate) resent: u64,
    /// Bit i set when node i was left unread by an acquisition that could no longer win, its
    /// late grant (if any) taken back by the release its late read owes ([`acquisition`]):
    /// the caller's take-back skips it.
    pub(crate) deferred: u64,
    /// Nodes that refused the call as made for another configuration ([`Vote::Mismatch`]; also
    /// counted in `no`).
    pub(crate) mismatched: usize,
    /// The largest number that came with an answer (yes or no).
    pub(crate) aux: i64,
    /// The largest number that came with a yes.
    pub(crate) aux_yes: i64,
}

impl Tally {
    /// How many nodes were written to but not read when the round was decided (their replies
    /// are read later: see [`read_phase`]).
    pub(crate) const fn unread(&self) -> usize {
        (self.written & !(self.given | self.refused | self.failed)).count_ones() as usize
    }

    /// How many nodes answered at all.
    pub(crate) const fn answered(&self) -> usize {
        self.yes + self.no
    }

    /// The nodes that may hold what the round's command gave (to take back when it did not
    /// win): every node written to, except those that certainly did not apply it (they said
    /// no on their one and only run).
    pub(crate) const fn may_hold(&self) -> u64 {
        self.written & !(self.refused & !self.resent)
    }

    /// For a release: a "no" from a node sent the command twice says only that the token was
    /// not there for the second run, which the first run may have deleted; so it counts as no
    /// answer (a failure: the token may have been ours until then), never as "not ours".
    pub(crate) fn doubt_resent_refusals(&mut self, nodes: &Nodes) {
        let doubtful = self.refused & self.resent;
        if doubtful == 0 || self.mismatched > 0 {
            return;
        }
        for (i, node) in nodes.iter().enumerate() {
            let bit = 1 << i;
            if doubtful & bit != 0 {
                self.no = self.no.saturating_sub(1);
                self.refused &= !bit;
                self.failed |= bit;
                self.failures
                    .push(NodeError::new(&node.name, NodeCause::Resent));
            }
        }
    }

    fn count(&mut self, node: usize, vote: Result<Vote, NodeError>) {
        let bit = 1 << node;
        match vote {
            Ok(Vote::Yes(aux)) => {
                self.yes += 1;
                self.given |= bit;
                self.aux = self.aux.max(aux);
                self.aux_yes = self.aux_yes.max(aux);
            }
            Ok(Vote::No(aux)) => {
                self.no += 1;
                self.refused |= bit;
                self.aux = self.aux.max(aux);
            }
            Ok(Vote::Mismatch) => {
                self.no += 1;
                self.refused |= bit;
                self.mismatched += 1;
            }
            Err(e) => {
                self.failed |= bit;
                self.failures.push(e);
            }
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

/// EXISTS and the extend scripts answer 1 or 0 (a semaphore's, also -1: another permit count).
pub(crate) fn int_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Int(1) => Some(Vote::Yes(0)),
        Value::Int(0) => Some(Vote::No(0)),
        Value::Int(-1) => Some(Vote::Mismatch),
        _ => None,
    }
}

/// The release scripts answer 0 (not our token), 1 (deleted, or deleted by this token's
/// earlier run) or 2 (deleted, and clients were waiting for the lock); a semaphore's, also -1
/// (another permit count).
pub(crate) fn release_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Int(0) => Some(Vote::No(0)),
        Value::Int(n @ (1 | 2)) => Some(Vote::Yes(n - 1)),
        Value::Int(-1) => Some(Vote::Mismatch),
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

/// The fencing script answers the counter's previous value: every answer is an acknowledgement.
pub(crate) fn fence_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Int(prior) if *prior >= 0 => Some(Vote::Yes(*prior)),
        _ => None,
    }
}

/// One command of a round. Every command must be safe to repeat: a node whose connection went
/// before its reply was read is sent it again (see [`recover`]).
#[derive(Clone, Copy)]
pub(crate) enum Call<'a> {
    /// A plain command made of these arguments, safe to repeat as it is (a read, a `ZREM`).
    Command(&'a [Arg<'a>]),
    /// `SET key token NX PX ms`, the interoperable grant. Repeated, it would answer "no"
    /// against its own first run, so it goes again as [`scripts::SET_AGAIN`].
    SetNx {
        key: &'a str,
        token: &'a str,
        ms: u64,
    },
    /// A script, sent as EVALSHA (and as EVAL to a node that answers NOSCRIPT).
    Script {
        script: &'a Lua,
        keys: &'a [Arg<'a>],
        args: &'a [Arg<'a>],
    },
}

impl Call<'_> {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            Self::Command(args) => command::pack(out, args.iter().copied(), args.len()),
            Self::SetNx { key, token, ms } => {
                let args = [
                    Arg::Str("SET"),
                    Arg::Str(key),
                    Arg::Str(token),
                    Arg::Str("NX"),
                    Arg::Str("PX"),
                    Arg::Int(*ms),
                ];
                command::pack(out, args, 6);
            }
            Self::Script { script, keys, args } => command::pack_script(out, script, keys, args),
        }
    }

    /// Packs the call as it goes to a node that may have run it already: `SET NX` as the
    /// script that also says yes for this call's own token (as EVAL: the cold path needs no
    /// loaded script), everything else as it is.
    fn pack_again(&self, out: &mut Vec<u8>) {
        match self {
            Self::SetNx { key, token, ms } => {
                let keys = [Arg::Str(key)];
                let args = [Arg::Str(token), Arg::Int(*ms)];
                command::pack_call(out, "EVAL", scripts::SET_AGAIN.src, &keys, &args);
            }
            _ => self.pack(out),
        }
    }

    /// The call's script's bit ([`Lua::bit`]), 0 for a plain command.
    const fn script_bit(&self) -> u64 {
        match self {
            Self::Script { script, .. } => script.bit,
            Self::Command(_) | Self::SetNx { .. } => 0,
        }
    }

    /// Whether the call goes again in another form than the first time.
    const fn changes_again(&self) -> bool {
        matches!(self, Self::SetNx { .. })
    }

    /// Packs the call as `EVAL <source>`: a node that lost its script cache (a flush, a
    /// restart) runs it anyway, and EVAL needs no `SCRIPT LOAD` permission. `false` for a
    /// plain command.
    fn pack_eval(&self, out: &mut Vec<u8>) -> bool {
        match self {
            Self::Command(_) | Self::SetNx { .. } => false,
            Self::Script { script, keys, args } => {
                command::pack_call(out, "EVAL", script.src, keys, args);
                true
            }
        }
    }
}

/// Turns node `node`'s reply into a vote, and counts it in the node's statistics.
fn classified(
    nodes: &Nodes,
    node: usize,
    reply: Result<Value, NodeError>,
    classify: Classify,
) -> Result<Vote, NodeError> {
    let vote = reply.and_then(|v| {
        classify(&v).ok_or_else(|| {
            let name = nodes.get(node).map_or("?", |n| n.name.as_str());
            NodeError::new(name, NodeCause::Unexpected(format!("{v:?}")))
        })
    });
    if let Some(n) = nodes.get(node) {
        n.count(match vote {
            Ok(Vote::Yes(_)) => Ballot::Given,
            Ok(Vote::No(_) | Vote::Mismatch) => Ballot::Refused,
            Err(_) => Ballot::Failed,
        });
    }
    vote
}

/// Runs one command on the nodes in `mask`, reading until `settle` says the replies read
/// decide the round; the rest are read later, by their nodes' next checkouts or readers (see
/// [`read_phase`]).
pub(crate) fn round(
    nodes: &Nodes,
    call: Call<'_>,
    mask: u64,
    classify: Classify,
    settle: Settle,
) -> Tally {
    exchange_one(nodes, call, mask, classify, settle, None, None)
}

/// [`round`] for an acquisition (`Settle::Grant(quorum)`) whose take-back is `take_back`: a
/// node left unread once the round can no longer win (its yes votes and the nodes still
/// unread together below the quorum) is sent no take-back now; its late read owes it
/// `take_back` (for `life` from the round's writes: as long as the grant may live) if its
/// late reply is a grant, or none came. So a busy attempt
/// costs no round for the node it did not wait for. Those nodes are in [`Tally::deferred`].
pub(crate) fn acquisition(
    nodes: &Nodes,
    call: Call<'_>,
    mask: u64,
    classify: Classify,
    quorum: usize,
    take_back: Call<'_>,
    life: Duration,
) -> Tally {
    let owe = Owed {
        call: take_back,
        life,
    };
    exchange_one(
        nodes,
        call,
        mask,
        classify,
        Settle::Grant(quorum),
        None,
        Some((owe, quorum)),
    )
}

/// [`round`] for a release: a node whose reply is read late (its connection parked) and is
/// not a yes is owed the release again, for `life` from the round's writes (as long as the
/// lease may live), after every grant parked with it
/// before (see [`Node::owe_after`] for the replies the round reads itself). The release may
/// have overtaken an earlier round's grant there, failed to answer, or found the node's
/// script cache flushed (`NOSCRIPT`, which the round itself answers by sending the script:
/// see [`Reading::eval_fallback`]); a late "not ours" makes the repeat needless, and it costs
/// one command.
pub(crate) fn round_owing(
    nodes: &Nodes,
    call: Call<'_>,
    mask: u64,
    classify: Classify,
    settle: Settle,
    life: Duration,
) -> Tally {
    let owe = Owed { call, life };
    exchange_one(nodes, call, mask, classify, settle, Some(owe), None)
}

/// [`round`], and [`round_owing`] with `owe_unless_yes`.
fn exchange_one(
    nodes: &Nodes,
    call: Call<'_>,
    mask: u64,
    classify: Classify,
    settle: Settle,
    owe_unless_yes: Option<Owed<'_>>,
    owe_if_yes: Option<(Owed<'_>, usize)>,
) -> Tally {
    nodes.count_round();
    let tally = RefCell::new(Tally::default());
    let settled = |pending| settle.settled(nodes, &tally.borrow(), pending);
    let yes = || tally.borrow().yes;
    let decide = Decide {
        settled: &settled,
        late: (settle != Settle::All).then_some(classify),
        owe_unless_yes,
        late_for: None,
        owe_if_yes: owe_if_yes.map(|(o, quorum)| (o, quorum, &yes as &dyn Fn() -> usize)),
    };
    let sent = command::with_buffer(|buf| {
        call.pack(buf);
        exchange(nodes, buf, &[call], mask, &decide, &mut |_, node, reply| {
            tally
                .borrow_mut()
                .count(node, classified(nodes, node, reply, classify));
        })
    });
    let mut tally = tally.into_inner();
    tally.written = sent.written;
    tally.resent = sent.resent;
    tally.deferred = sent.deferred;
    tally
}

/// Each node's replies to a round's commands, for callers that read values rather than votes.
pub(crate) struct Replies {
    /// `per_node[node][command]`, empty for nodes outside the round's mask and for the nodes
    /// of `unread`.
    pub(crate) per_node: Vec<Vec<Result<Value, NodeError>>>,
    /// The nodes written to (see [`Tally::written`]).
    pub(crate) written: u64,
    /// The nodes sent the commands a second time (see [`Tally::resent`]).
    pub(crate) resent: u64,
    /// The nodes written to whose replies the round left parked ([`replies_until`]).
    pub(crate) unread: u64,
}

/// The replies a round has read so far: `[node][command]`, `None` while unread.
pub(crate) type ReadSoFar = [Vec<Option<Result<Value, NodeError>>>];
type ReadSoFarOwned = Vec<Vec<Option<Result<Value, NodeError>>>>;

/// Runs `calls` (pipelined) on the nodes in `mask` and returns each node's replies as they
/// came.
pub(crate) fn replies(nodes: &Nodes, calls: &[Call<'_>], mask: u64) -> Replies {
    replies_settling(nodes, calls, mask, None)
}

/// [`replies`] for a caller that judges the replies itself and knows when they decide the
/// round: reading stops once `settled(read so far, nodes unread)` says so (the rule of a
/// [`Settle`], written by the caller), and the unread nodes' connections are parked.
/// `late(node)`, asked at each parking (the round is settled by then), says how the late read
/// counts that node's late replies, and the release it owes the node after them unless they
/// count as a yes (see [`Unread`]). The caller learns which nodes were left unread
/// ([`Replies::unread`]): their commands may still be applied, and whatever they give must be
/// taken back or released like a reply read.
pub(crate) fn replies_until(
    nodes: &Nodes,
    calls: &[Call<'_>],
    mask: u64,
    settled: &dyn Fn(&ReadSoFar, usize) -> bool,
    late: &dyn Fn(usize) -> Late,
) -> Replies {
    replies_settling(nodes, calls, mask, Some((settled, late)))
}

/// How a parked connection's late replies count, and the release (packed, with how
/// long it is owed) the node is owed after them unless they count as a yes.
pub(crate) type Late = (Judge, Option<(Vec<u8>, Instant)>);

/// `call` packed as a release a node is owed ([`owe`], [`Late`]): as EVAL when a script.
pub(crate) fn packed_to_owe(call: Call<'_>) -> Vec<u8> {
    // The source and room for the keys and arguments: one allocation, where growing from
    // empty took eight (a parked release or take-back packs one on every round).
    let room = match call {
        Call::Script { script, .. } => script.src.len() + 512,
        Call::Command(_) | Call::SetNx { .. } => 256,
    };
    let mut packed = Vec::with_capacity(room);
    if !call.pack_eval(&mut packed) {
        call.pack(&mut packed);
    }
    packed
}

type Until<'a> = Option<(
    &'a dyn Fn(&ReadSoFar, usize) -> bool,
    &'a dyn Fn(usize) -> Late,
)>;

fn replies_settling(nodes: &Nodes, calls: &[Call<'_>], mask: u64, until: Until<'_>) -> Replies {
    nodes.count_round();
    let out: RefCell<ReadSoFarOwned> = RefCell::new(
        (0..nodes.len())
            .map(|_| (0..calls.len()).map(|_| None).collect())
            .collect(),
    );
    let settled = |pending| until.is_none_or(|(settled, _)| settled(&out.borrow(), pending));
    let decide = match until {
        Some((_, late)) => Decide {
            settled: &settled,
            // Only the gate of the hand-offs: `late_for` says how they count.
            late: Some(|_| None),
            owe_unless_yes: None,
            late_for: Some(late),
            owe_if_yes: None,
        },
        None => Decide::ALL,
    };
    let sent = command::with_buffer(|buf| {
        for call in calls {
            call.pack(buf);
        }
        // Indexed by command: replies re-sent as EVAL are recorded after the others.
        exchange(nodes, buf, calls, mask, &decide, &mut |cmd, node, reply| {
            if let Some(slot) = out.borrow_mut().get_mut(node).and_then(|r| r.get_mut(cmd)) {
                *slot = Some(reply);
            }
        })
    });
    let mut unread = 0;
    let per_node = out
        .into_inner()
        .into_iter()
        .zip(nodes.iter())
        .enumerate()
        .map(|(i, (replies, node))| {
            let bit = 1 << i;
            if mask & bit == 0 {
                return Vec::new();
            }
            // Every node written to gets a reply or a failure for each command, unless its
            // connection was parked.
            if sent.written & bit != 0 && !replies.is_empty() && replies.iter().all(Option::is_none)
            {
                unread |= bit;
                return Vec::new();
            }
            replies
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| {
                        Err(NodeError::new(
                            &node.name,
                            NodeCause::Unexpected("no reply".into()),
                        ))
                    })
                })
                .collect()
        })
        .collect();
    Replies {
        per_node,
        written: sent.written,
        resent: sent.resent,
        unread,
    }
}

/// Records that the nodes in `mask` are owed `call` (a release they could not be reached for):
/// each is sent it, as EVAL, before a round next uses a connection to it that has not sent it,
/// until `until` (see [`Node::owe`]). Cold path: a node failed.
#[cold]
pub(crate) fn owe(nodes: &Nodes, call: Call<'_>, mask: u64, until: Instant) {
    let packed = packed_to_owe(call);
    for (i, node) in nodes.iter().enumerate() {
        if mask & (1 << i) != 0 {
            node.owe(packed.clone(), until);
        }
    }
}

/// The nodes of `mask` with parked replies of earlier rounds still to read, each with
/// its mark (see [`Node::unread_mark`]): taken before a release, so that the release is owed
/// again after those replies ([`owe_after`]). Empty, without allocating, in the common case.
pub(crate) fn unread_marks(nodes: &Nodes, mask: u64) -> Vec<(usize, u64)> {
    let mut marks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if mask & (1 << i) != 0
            && let Some(mark) = node.unread_mark()
        {
            marks.push((i, mark));
        }
    }
    marks
}

/// Owes `call` (a release) to each node of `marks` once the replies parked with it up to the
/// mark have been read: a command of an earlier round still in flight there (an
/// acquisition decided without it) has then run, and the release runs after it, whichever
/// connections they went on. Cold path: a node answered slower than the round needed.
#[cold]
pub(crate) fn owe_after(nodes: &Nodes, call: Call<'_>, marks: &[(usize, u64)], until: Instant) {
    let packed = packed_to_owe(call);
    for &(i, mark) in marks {
        if let Some(node) = nodes.get(i) {
            node.owe_after(mark, packed.clone(), until);
        }
    }
}

/// Runs several commands on the nodes in `mask`, pipelined: one round trip for all of them.
/// Returns one tally per command; reads until `settle` settles every one of them.
pub(crate) fn batch(
    nodes: &Nodes,
    calls: &[Call<'_>],
    mask: u64,
    classify: Classify,
    settle: Settle,
) -> Vec<Tally> {
    nodes.count_round();
    let tallies: RefCell<Vec<Tally>> =
        RefCell::new((0..calls.len()).map(|_| Tally::default()).collect());
    let settled = |pending| {
        tallies
            .borrow()
            .iter()
            .all(|t| settle.settled(nodes, t, pending))
    };
    let decide = Decide {
        settled: &settled,
        late: (settle != Settle::All).then_some(classify),
        owe_unless_yes: None,
        late_for: None,
        owe_if_yes: None,
    };
    let sent = command::with_buffer(|buf| {
        for call in calls {
            call.pack(buf);
        }
        exchange(nodes, buf, calls, mask, &decide, &mut |cmd, node, reply| {
            if let Some(t) = tallies.borrow_mut().get_mut(cmd) {
                t.count(node, classified(nodes, node, reply, classify));
            }
        })
    });
    let mut tallies = tallies.into_inner();
    for t in &mut tallies {
        t.written = sent.written;
        t.resent = sent.resent;
    }
    tallies
}

/// When a round may stop reading, and how its late replies count.
struct Decide<'a> {
    /// Whether the replies recorded so far, with this many nodes unread, decide the round.
    settled: &'a dyn Fn(usize) -> bool,
    /// How a reply read late (parked) counts in its node's statistics; `None`: the round reads
    /// every reply itself.
    late: Option<Classify>,
    /// For a release: what its late "no" owes (see [`round_owing`]).
    owe_unless_yes: Option<Owed<'a>>,
    /// For a caller of [`replies_until`]: how node `i`'s late replies count, and what they owe
    /// (in place of `late` and `owe_unless_yes`).
    late_for: Option<&'a dyn Fn(usize) -> Late>,
    /// For an acquisition: its take-back, owed by a late yes once the round can no longer
    /// reach the quorum, and the yes votes read so far (see [`acquisition`]).
    owe_if_yes: Option<(Owed<'a>, usize, &'a dyn Fn() -> usize)>,
}

/// A release a parked node may be owed (packed as EVAL when parked), for `life` from the
/// round's writes: a release's late answer other than a yes, or a lost acquisition's late
/// grant, owes it.
#[derive(Clone, Copy)]
struct Owed<'a> {
    call: Call<'a>,
    life: Duration,
}

impl Owed<'_> {
    /// The release packed, and until when it is owed (`life` after `written`).
    fn packed(self, written: Instant) -> (Vec<u8>, Instant) {
        let until = written.checked_add(self.life).unwrap_or(written);
        (packed_to_owe(self.call), until)
    }
}

impl Decide<'static> {
    /// Reads every reply.
    const ALL: Self = Self {
        settled: &|pending| pending == 0,
        late: None,
        owe_unless_yes: None,
        late_for: None,
        owe_if_yes: None,
    };
}

/// Whether a node whose reply is due `due` after the writes (its smoothed round trip) is read
/// by the round, decided `elapsed` after them: only when its reply is probably there already.
/// Otherwise its connection is parked (see [`Node::hand_off`]), and the reply is read by the
/// node's next checkout, which on loopback and in one zone finds it there: the round does not
/// wait for it.
fn read_now(due: Duration, elapsed: Duration) -> bool {
    due <= elapsed
}

/// How a late reply counts in its node's statistics, as [`classified`] counts a round's.
fn ballot(classify: Classify, v: &Value) -> Ballot {
    match classify(v) {
        Some(Vote::Yes(_)) => Ballot::Given,
        Some(Vote::No(_) | Vote::Mismatch) => Ballot::Refused,
        None => Ballot::Failed,
    }
}

type Conn = PooledConnection<NodeManager>;

/// Clusters up to this size keep a round's connections on the stack; larger ones in a `Vec`
/// kept by the thread between its rounds ([`SPILL`]).
const INLINE_NODES: usize = 8;

thread_local! {
    /// The slots of this thread's last round on more than [`INLINE_NODES`] nodes, all empty,
    /// kept for its next one: allocating them for every round cost 9 nodes 2 allocations and
    /// 4.6 KB a cycle, the only ones besides the lease's and redis-rs's reader's. A nested
    /// round (none today) finds it taken and allocates its own.
    static SPILL: Cell<Vec<Option<Conn>>> = const { Cell::new(Vec::new()) };
}

/// Where replies go: `(command, node, reply)`. A reply is an error when the node failed to
/// answer, or answered with an error.
type Record<'r> = dyn FnMut(usize, usize, Result<Value, NodeError>) + 'r;

/// Which nodes a round wrote to.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    /// Written to (the commands may have been applied even if no reply was read).
    written: u64,
    /// Written to twice: on a fresh connection after the first one went.
    resent: u64,
    /// Parked owing the take-back if their late reply is a yes (see [`acquisition`]).
    deferred: u64,
}

/// The round: writes `packed` (the `calls`, packed) to every node in `mask`, then reads and
/// records every reply.
fn exchange(
    nodes: &Nodes,
    packed: &[u8],
    calls: &[Call<'_>],
    mask: u64,
    decide: &Decide<'_>,
    record: &mut Record<'_>,
) -> Sent {
    // One slot per node for the connections written to, on the stack for the usual cluster
    // sizes. Only `nodes.len()` slots are touched: a slot is 240 bytes, and setting up, moving
    // and dropping all `MAX_NODES` of them cost ~2,300 instructions a round (callgrind), more
    // than the rest of the round's own work.
    let mut inline: [Option<Conn>; INLINE_NODES] = Default::default();
    let mut spilled: Vec<Option<Conn>> = Vec::new();
    let sent = match inline.get_mut(..nodes.len()) {
        Some(slots) => slots,
        None => {
            spilled = SPILL.take();
            spilled.resize_with(nodes.len(), || None);
            spilled.as_mut_slice()
        }
    };
    let (written, fresh) = write_phase(nodes, packed, calls, mask, sent, record);
    let (recovered, deferred) = read_phase(nodes, packed, calls, sent, fresh, decide, record);
    if spilled.capacity() > 0 {
        // The read phase took every connection; whatever is left goes back to its pool now.
        spilled.clear();
        SPILL.set(spilled);
    }
    Sent {
        written,
        resent: fresh | recovered,
        deferred,
    }
}

/// Records `e` as the vote of node `node` for commands `from..count`.
fn fail_from(record: &mut Record<'_>, from: usize, count: usize, node: usize, e: &NodeError) {
    for cmd in from..count {
        record(cmd, node, Err(e.clone()));
    }
}

/// Checks out a connection per node and writes `packed` to it, before reading anything. The
/// pools connect in the background concurrently, so one checkout deadline serves all nodes.
/// Returns the nodes written to, and those whose connection was already replaced (not to be
/// recovered a second time).
fn write_phase(
    nodes: &Nodes,
    packed: &[u8],
    calls: &[Call<'_>],
    mask: u64,
    sent: &mut [Option<Conn>],
    record: &mut Record<'_>,
) -> (u64, u64) {
    let count = calls.len();
    let checkout_deadline = Instant::now() + nodes.connect_timeout;
    let (mut written, mut fresh) = (0, 0);
    for ((i, node), slot) in nodes.iter().enumerate().zip(sent.iter_mut()) {
        if mask & (1 << i) == 0 {
            continue;
        }
        let mut conn = match node.checkout(checkout_deadline) {
            Ok(conn) => conn,
            Err(e) => {
                fail_from(record, 0, count, i, &e);
                continue;
            }
        };
        written |= 1 << i;
        let sent_on = match conn.con.send_packed_command(packed) {
            Ok(()) => {
                conn.broken = true; // replies in flight: see `Reading::read`
                Ok(conn)
            }
            Err(e) if e.is_connection_dropped() => {
                // (Part of a large pipeline may have gone out before the error.)
                fresh |= 1 << i;
                recover(node, conn, packed, calls, checkout_deadline)
            }
            Err(e) => Err(failed(node, &mut conn, e)),
        };
        match sent_on {
            Ok(conn) => *slot = Some(conn),
            Err(e) => fail_from(record, 0, count, i, &e),
        }
    }
    (written, fresh)
}

/// Reads the nodes' replies against one shared deadline: a round's reading is bounded by one
/// I/O timeout (plus the slack of [`read_timeout`]) however many nodes are slow. Returns the
/// nodes that were sent the round again while reading, and those parked owing an
/// acquisition's take-back if their late reply is a yes ([`acquisition`]).
///
/// The nodes are read in the order their replies are expected in (healthy nodes first, by
/// smoothed round trip), and the round stops reading as soon as `decide` says the replies read
/// settle it. A node still unread then is read all the same when its reply is due by then
/// (see [`read_now`]); otherwise its connection, replies in flight, is parked with the node
/// ([`Node::hand_off`]): the node's next checkout, or its reader, reads them, counts them in
/// the node's statistics and health, and only then lets the connection carry anything else. A
/// node sent the round twice (its connection went) leaves nothing unread: its answers need
/// every reply to be judged.
fn read_phase(
    nodes: &Nodes,
    packed: &[u8],
    calls: &[Call<'_>],
    sent: &mut [Option<Conn>],
    fresh: u64,
    decide: &Decide<'_>,
    record: &mut Record<'_>,
) -> (u64, u64) {
    let written = Instant::now();
    let deadline = written + nodes.io_timeout;
    // The read order: by expected reply, a node backing off after a failure last.
    let mut order = [(0u8, Duration::ZERO); MAX_NODES];
    let mut len = 0;
    for (i, (slot, node)) in sent.iter().zip(nodes.iter()).enumerate() {
        if slot.is_some()
            && let (Some(place), Ok(index)) = (order.get_mut(len), u8::try_from(i))
        {
            let due = if node.is_down() {
                Duration::MAX
            } else {
                node.expected()
            };
            *place = (index, due);
            len += 1;
        }
    }
    let order = order.get_mut(..len).unwrap_or_default();
    order.sort_by_key(|&(_, due)| due);
    // The scripts the round sends: a node left unread must know them all.
    let scripts = calls.iter().fold(0, |bits, call| bits | call.script_bit());
    let mut pending = len;
    let mut resent = fresh;
    let mut settled = false;
    let mut recovered = 0;
    let mut deferred = 0;
    // The latest reading of the clock: each node's read ends with one (its round trip), and the
    // next node's read timeout and the hand-off check start from it rather than reading the
    // clock again (only the recording of a reply comes in between).
    let mut now = written;
    for &(i, due) in order.iter() {
        let i = usize::from(i);
        let (Some(slot), Some(node)) = (sent.get_mut(i), nodes.get(i)) else {
            continue;
        };
        let Some(mut conn) = slot.take() else {
            continue;
        };
        if settled
            && let Some(classify) = decide.late
            && !read_now(due, now.saturating_duration_since(written))
            && node.knows_scripts(scripts)
        {
            let (judge, owe_unless_yes) = match decide.late_for {
                Some(late_for) => late_for(i),
                None => (
                    Box::new(move |v: &Value| ballot(classify, v)) as Judge,
                    decide.owe_unless_yes.map(|o| o.packed(written)),
                ),
            };
            // A lost acquisition's take-back, owed only by a late yes.
            let owe_if_yes = decide
                .owe_if_yes
                .filter(|&(_, quorum, yes)| yes() + pending < quorum)
                .map(|(o, _, _)| o.packed(written));
            let deferring = owe_if_yes.is_some();
            let unread = Unread {
                conn,
                replies: calls.len(),
                scripts,
                written,
                deadline,
                judge,
                owe_unless_yes,
                owe_if_yes,
            };
            match node.hand_off(unread) {
                Ok(()) => {
                    pending -= 1;
                    if deferring {
                        deferred |= 1 << i;
                    }
                    continue;
                }
                Err(back) => conn = back.conn,
            }
        }
        let ctx = Reading {
            node,
            index: i,
            packed,
            calls,
            deadline,
            io_timeout: nodes.io_timeout,
        };
        let mut ended = Some(now);
        if ctx.read(conn, fresh & (1 << i) != 0, record, &mut ended) {
            recovered |= 1 << i;
            resent |= 1 << i;
        }
        now = ended.unwrap_or_else(Instant::now);
        pending -= 1;
        if !settled {
            settled = resent == 0 && (decide.settled)(pending);
        }
    }
    (recovered & !fresh, deferred)
}

/// What reading one node's replies needs.
struct Reading<'a> {
    node: &'a Node,
    index: usize,
    packed: &'a [u8],
    calls: &'a [Call<'a>],
    deadline: Instant,
    io_timeout: Duration,
}

impl Reading<'_> {
    /// Reads and records the replies of every command on `conn`. `recovered`: the connection
    /// already replaces a dead one. Returns whether the commands were sent again on a fresh
    /// connection (here, or before).
    ///
    /// `conn` arrives marked broken (it has replies in flight) and is marked sound only once
    /// every reply was read: whichever way reading stops (an error, a timeout, a panic in a
    /// caller's classifier), an unread connection is dropped, never pooled.
    ///
    /// `clock`: on the way in, a reading of the clock taken just before (no wait since), for
    /// the first reply's read timeout; on the way out, the instant every reply had been read,
    /// or `None` when reading stopped early.
    fn read(
        &self,
        mut conn: Conn,
        mut recovered: bool,
        record: &mut Record<'_>,
        clock: &mut Option<Instant>,
    ) -> bool {
        let mut before = clock.take();
        let count = self.calls.len();
        // Commands the node answered NOSCRIPT to (its script cache was flushed).
        let mut no_script: Vec<usize> = Vec::new();
        let mut cmd = 0;
        while cmd < count {
            // Only the first read may use the caller's instant: any later one (a recovery's
            // included) reads the clock.
            let reply = match self.recv(&mut conn, before.take()) {
                Ok(reply) => reply,
                Err(e) if cmd == 0 && !recovered && e.is_connection_dropped() => {
                    // Idle across a restart, or cut after the node ran the commands: nothing
                    // was read yet, so send everything again on a fresh connection, once, in
                    // the form that is safe to repeat.
                    recovered = true;
                    match recover(self.node, conn, self.packed, self.calls, self.deadline) {
                        Ok(fresh) => {
                            conn = fresh;
                            continue;
                        }
                        Err(e) => {
                            fail_from(record, 0, count, self.index, &e);
                            return recovered;
                        }
                    }
                }
                Err(e) => {
                    let e = failed(self.node, &mut conn, e);
                    fail_from(record, cmd, count, self.index, &e);
                    return recovered;
                }
            };
            match reply.extract_error() {
                Err(e) if is_read_only(&e) => {
                    // A demoted master (now a replica) refuses writes: a failure of the node,
                    // whose connections must all go so the pool reconnects (through Sentinel:
                    // to the new master).
                    let e = failed(self.node, &mut conn, e);
                    fail_from(record, cmd, count, self.index, &e);
                    return recovered;
                }
                Err(e) if is_no_script(&e) && self.calls.get(cmd).is_some_and(is_script) => {
                    no_script.push(cmd);
                }
                reply => record(cmd, self.index, self.reply(reply)),
            }
            cmd += 1;
        }
        if !no_script.is_empty() {
            let bits = no_script
                .iter()
                .filter_map(|&cmd| self.calls.get(cmd))
                .fold(0, |bits, call| bits | call.script_bit());
            let ran = self.eval_fallback(&mut conn, &no_script, record);
            // EVAL puts a script in the server's cache.
            self.node.note_scripts(bits, ran);
            if !ran {
                return recovered;
            }
        }
        // Every reply read: the connection may go back to the pool.
        conn.broken = false;
        // From the end of the round's writes (the read deadline's start) to now.
        let written = self.deadline.checked_sub(self.io_timeout);
        let end = Instant::now();
        let round_trip = written.map_or(Duration::ZERO, |t| end.saturating_duration_since(t));
        self.node.record_success(round_trip);
        *clock = Some(end);
        recovered
    }

    /// Reads one reply, with the read timeout of what is left of the round (from `now`, a
    /// reading of the clock taken just before, or the clock's).
    fn recv(&self, conn: &mut Conn, now: Option<Instant>) -> redis::RedisResult<Value> {
        let now = now.unwrap_or_else(Instant::now);
        let left = self.deadline.saturating_duration_since(now);
        conn.set_read_timeout(read_timeout(left, self.io_timeout))?;
        recv_reply(&mut conn.con)
    }

    fn reply(&self, reply: redis::RedisResult<Value>) -> Result<Value, NodeError> {
        reply.map_err(|e| NodeError::new(&self.node.name, e.into()))
    }

    /// Cold path: sends the scripts the node had lost again as `EVAL <source>` (which also
    /// caches them on the node) and reads their replies, within the round's deadline. No
    /// `SCRIPT LOAD`: it would cost round trips past the round's bound, and the user may not
    /// have the permission. Returns whether every reply was read.
    #[cold]
    fn eval_fallback(&self, conn: &mut Conn, cmds: &[usize], record: &mut Record<'_>) -> bool {
        log::debug!(
            "redmutex: {} had no script loaded; sending EVAL",
            self.node.name
        );
        let mut packed = Vec::new();
        for cmd in cmds {
            if let Some(call) = self.calls.get(*cmd) {
                call.pack_eval(&mut packed);
            }
        }
        if self.deadline <= Instant::now() {
            // Not the node's failure: it answered everything it was sent. The connection is
            // dropped all the same (`read` leaves it marked broken), and the node's health is
            // left alone.
            let e = NodeError::new(
                &self.node.name,
                redis::RedisError::from((ErrorKind::Io, "no time left in the round for EVAL"))
                    .into(),
            );
            for cmd in cmds {
                record(*cmd, self.index, Err(e.clone()));
            }
            return false;
        }
        if let Err(e) = conn.con.send_packed_command(&packed) {
            let e = failed(self.node, conn, e);
            for cmd in cmds {
                record(*cmd, self.index, Err(e.clone()));
            }
            return false;
        }
        for (n, cmd) in cmds.iter().enumerate() {
            match self.recv(conn, None) {
                Ok(reply) => {
                    let reply = reply.extract_error();
                    if let Err(e) = &reply
                        && is_read_only(e)
                    {
                        let e = failed(self.node, conn, e.clone());
                        for cmd in cmds.iter().skip(n) {
                            record(*cmd, self.index, Err(e.clone()));
                        }
                        return false;
                    }
                    record(*cmd, self.index, self.reply(reply));
                }
                Err(e) => {
                    let e = failed(self.node, conn, e);
                    for cmd in cmds.iter().skip(n) {
                        record(*cmd, self.index, Err(e.clone()));
                    }
                    return false;
                }
            }
        }
        true
    }
}

/// Notes an I/O failure on `conn`: the connection may have a reply in flight or be dead, so it
/// is never used again, and the node is marked failing.
fn failed(node: &Node, conn: &mut Conn, e: redis::RedisError) -> NodeError {
    conn.broken = true;
    node.record_failure(&e);
    NodeError::new(&node.name, e.into())
}

/// Cold path: sends the round's `calls` (`packed`) again on a fresh connection to `node` (see
/// [`Node::reconnect`]), after `dead` was found dead: the node restarted while it sat idle in
/// the pool, or the connection was cut after the node ran the commands (a CLIENT KILL, a
/// proxy's reset). So the calls go in the form that is safe to repeat ([`Call::pack_again`]).
/// `dead` goes back to the pool (to be dropped) first: with a pool of one, the fresh
/// connection needs its place.
#[cold]
fn recover(
    node: &Node,
    mut dead: Conn,
    packed: &[u8],
    calls: &[Call<'_>],
    deadline: Instant,
) -> Result<Conn, NodeError> {
    dead.broken = true;
    drop(dead);
    let mut conn = node.reconnect(deadline)?;
    log::debug!(
        "redmutex: {}: pooled connection was dead; retrying on a new one",
        node.name
    );
    let mut again = Vec::new();
    let packed = if calls.iter().any(Call::changes_again) {
        for call in calls {
            call.pack_again(&mut again);
        }
        &again[..]
    } else {
        packed
    };
    match conn.con.send_packed_command(packed) {
        Ok(()) => {
            conn.broken = true; // replies in flight: see `Reading::read`
            Ok(conn)
        }
        Err(e) => Err(failed(node, &mut conn, e)),
    }
}

/// Whether a NOSCRIPT answer to `call` can be cured by sending its source: a script (a `SET
/// NX` goes again as EVAL, which cannot meet NOSCRIPT).
fn is_script(call: &Call<'_>) -> bool {
    matches!(call, Call::Script { .. })
}

/// Whether a server error says the node is a replica (READONLY): a demoted master.
fn is_read_only(e: &redis::RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
}

/// Whether a server error says the node does not have the script.
fn is_no_script(e: &redis::RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoScript))
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
    fn a_node_whose_reply_is_there_is_read_by_the_round_a_later_one_parked() {
        // Loopback: due in 0.3 ms, decided after 0.1 ms: parked, read by the next round.
        assert!(!read_now(MS * 3 / 10, MS / 10));
        // Due by the time the round was decided: read.
        assert!(read_now(MS / 10, MS / 10));
        // Unknown round trip (zero): read.
        assert!(read_now(Duration::ZERO, MS));
        // 2, 2, 10, 40, 80 ms: decided at 10 ms, the 40 and 80 ms nodes are parked.
        assert!(!read_now(MS * 40, MS * 10));
        assert!(!read_now(Duration::MAX, MS * 10));
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
    fn a_take_back_reaches_every_node_that_may_have_applied_the_command() {
        let mut t = Tally {
            written: 0b1_1111,
            ..Tally::default()
        };
        t.count(0, Ok(Vote::Yes(0)));
        t.count(1, Ok(Vote::No(0)));
        t.count(2, Ok(Vote::No(0)));
        let e = NodeError::new("n3", NodeCause::Unexpected("x".into()));
        t.count(3, Err(e));
        // Node 4's reply was never read.
        assert_eq!(t.may_hold(), 0b1_1001);
        // Node 2 was sent the command twice: its "no" may be against its own first run.
        t.resent = 0b0_0100;
        assert_eq!(t.may_hold(), 0b1_1101);
        assert_eq!((t.given, t.refused, t.failed), (0b0001, 0b0110, 0b1000));
    }

    #[test]
    fn tally_counts_votes_and_keeps_the_largest_number() {
        let mut t = Tally::default();
        t.count(0, Ok(Vote::Yes(3)));
        t.count(1, Ok(Vote::No(9)));
        t.count(2, Ok(Vote::Yes(5)));
        assert_eq!((t.yes, t.no, t.aux, t.refused), (2, 1, 9, 0b010));
        assert_eq!(t.given, 0b101);
    }
}

/// The round's invariant against a real `redis-server` (started here, killed on drop): a
/// connection that did not deliver its reply is never used again, on every path.
#[cfg(test)]
mod invariant {
    use super::*;
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};

    /// A throw-away `redis-server` on a free loopback port.
    struct Server {
        child: Child,
        port: u16,
    }

    impl Server {
        fn start() -> Self {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let child = Command::new(
                std::env::var_os("REDMUTEX_REDIS_SERVER").unwrap_or_else(|| "redis-server".into()),
            )
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run scripts/install-redis.sh");
            let server = Self { child, port };
            let end = Instant::now() + Duration::from_secs(10);
            while server.admin().is_err() {
                assert!(Instant::now() < end, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
            server
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        fn admin(&self) -> redis::RedisResult<redis::Connection> {
            let con = redis::Client::open(self.url())?
                .get_connection_with_timeout(Duration::from_secs(2))?;
            con.set_read_timeout(Some(Duration::from_secs(2)))?;
            Ok(con)
        }

        fn clients(&self) -> String {
            redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut self.admin().unwrap())
                .unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Issue 10, defect 5. The pooled connection is found dead when its reply is read (the
    /// server closed it while it sat idle: the write succeeds, the read meets the end), the
    /// command is sent again on a fresh connection, and that connection's reply does not come
    /// within the I/O timeout (`BLPOP` blocks). The fresh connection must be retired, not put
    /// back in the pool with the reply in flight, and the node recorded as failing, not healthy.
    /// (In d6cbdaa's `exchange`, this path marked the node healthy and pooled the connection.)
    #[test]
    fn a_connection_that_lost_its_reply_after_a_resend_is_retired() {
        let server = Server::start();
        let spec = crate::node::NodeSpec::parse(server.url()).unwrap();
        let nodes = Nodes::connect(
            vec![spec],
            Duration::from_secs(1),
            Duration::from_millis(100),
            1,
            None,
            crate::node::Watch::default(),
        )
        .unwrap();
        let ping = [Arg::Str("PING")];
        let pong =
            |v: &Value| matches!(v, Value::SimpleString(s) if s == "PONG").then_some(Vote::Yes(0));
        assert_eq!(
            round(&nodes, Call::Command(&ping), 1, pong, Settle::All).yes,
            1
        );
        // The server closes the pooled connection while it sits idle.
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query(&mut server.admin().unwrap())
            .unwrap();
        let blpop = [Arg::Str("BLPOP"), Arg::Str("nothing"), Arg::Str("0.6")];
        let tally = round(
            &nodes,
            Call::Command(&blpop),
            1,
            |_| Some(Vote::Yes(0)),
            Settle::All,
        );
        assert_eq!(tally.yes, 0);
        assert!(
            tally.failures.first().is_some_and(NodeError::is_timeout),
            "{tally:?}"
        );
        let node = nodes.get(0).unwrap();
        assert!(
            node.is_down(),
            "a node whose reply was lost is recorded as healthy"
        );
        // The connection carrying the late reply is gone, not idle in the pool.
        std::thread::sleep(Duration::from_millis(100));
        let clients = server.clients();
        assert!(
            !clients.contains("cmd=blpop"),
            "the connection whose reply was lost was kept: {clients}"
        );
    }

    /// `replies` hands each command's reply back in its place, even when the node had lost a
    /// script and the script's reply came from the EVAL re-sent after the others. (Before,
    /// replies were appended as they were recorded: here `[PONG, 0]` instead of `[0, PONG]`.)
    #[test]
    fn replies_stay_in_command_order_after_a_script_is_resent() {
        let server = Server::start();
        let spec = crate::node::NodeSpec::parse(server.url()).unwrap();
        let nodes = Nodes::connect(
            vec![spec],
            Duration::from_secs(1),
            Duration::from_secs(1),
            1,
            None,
            crate::node::Watch::default(),
        )
        .unwrap();
        let ping = [Arg::Str("PING")];
        let pong =
            |v: &Value| matches!(v, Value::SimpleString(s) if s == "PONG").then_some(Vote::Yes(0));
        assert_eq!(
            round(&nodes, Call::Command(&ping), 1, pong, Settle::All).yes,
            1
        );
        // The node loses its scripts: the extend script meets NOSCRIPT and goes again as EVAL.
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut server.admin().unwrap())
            .unwrap();
        let keys = [Arg::Str("k")];
        let args = [Arg::Str("token"), Arg::Int(1000)];
        let extend = Call::Script {
            script: &crate::scripts::EXTEND,
            keys: &keys,
            args: &args,
        };
        let out = replies(&nodes, &[extend, Call::Command(&ping)], 1).per_node;
        let got: Vec<_> = out[0].iter().map(|r| r.as_ref().ok().cloned()).collect();
        assert_eq!(
            got,
            [
                Some(Value::Int(0)),
                Some(Value::SimpleString("PONG".into()))
            ],
            "{out:?}"
        );
    }

    /// A round that stops reading half-way through by a panic (here, in the classifier) drops
    /// its connection: pooled, the connection would hand the unread reply to the next round.
    /// (Before, only an I/O error marked a connection broken: the next round read "stale".)
    #[test]
    fn a_round_interrupted_by_a_panic_does_not_pool_its_connection() {
        let server = Server::start();
        let spec = crate::node::NodeSpec::parse(server.url()).unwrap();
        let nodes = Nodes::connect(
            vec![spec],
            Duration::from_secs(1),
            Duration::from_secs(1),
            1,
            None,
            crate::node::Watch::default(),
        )
        .unwrap();
        let ping = [Arg::Str("PING")];
        let stale = [Arg::Str("ECHO"), Arg::Str("stale")];
        let calls = [Call::Command(&ping), Call::Command(&stale)];
        let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch(
                &nodes,
                &calls,
                1,
                |_| panic!("a classifier panicked"),
                Settle::All,
            )
        }));
        assert!(interrupted.is_err());
        let fresh = [Arg::Str("ECHO"), Arg::Str("fresh")];
        let out = replies(&nodes, &[Call::Command(&fresh)], 1).per_node;
        let got = out[0][0].as_ref().ok().cloned();
        assert_eq!(got, Some(Value::BulkString(b"fresh".to_vec())), "{out:?}");
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

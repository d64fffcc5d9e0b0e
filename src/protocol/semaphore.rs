//! Semaphore acquisition: a permit is a quorum grant of one of `permits` slots, each slot an
//! ordinary Redlock lock on its own key (`<name>:redmutex:permit:<slot>`). So at most `permits`
//! holders exist, under exactly the assumptions that make one Redlock lock exclusive.
//!
//! One round asks every node for the first free slot in one order the client chose, so nodes
//! that agree on which slots are free (the usual case) grant the same slot, and the round wins
//! it; two clients that race for one slot end up with two slots in the same round. Each node
//! also reports the slots it found taken, so when the nodes disagree (a split), the next round
//! tries only the slots that can still reach a quorum, fewest taken first, instead of probing
//! slots one by one. A release announces the slot it freed, and a waiter woken by it tries that
//! slot first.
//!
//! Everything after the grant (the lease, its deadline rule, extend, keep-alive, loss, release,
//! wake-up) is the one lease protocol: [`Target::Permit`] names the slot.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;
use redis::Value;

use super::acquire::{Attempt, Grant, Request, lease_of, mark_ms};
use super::lease::{Announce, Lease, Owing, Target, Token, millis, no_quorum, release_round};
use super::verdict::{self, Question, Timing, Verdict, decide};
use crate::command::Arg;
use crate::error::{Error, NodeCause, NodeError};
use crate::node::{Ballot, Judge};
use crate::observe::Votes;
use crate::round::{self, Call, Tally};
use crate::scripts;
use crate::shared::Shared;

/// Rounds one attempt may make when the nodes disagree about which slots are free (a split):
/// each later round tries only the slots that can still reach a quorum.
const PROBES: usize = 3;

/// What a semaphore acquisition asks for: a lease of the semaphore's name (never fenced), and
/// its count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SemaphoreRequest<'a> {
    pub(crate) base: Request<'a>,
    pub(crate) permits: u32,
}

/// The slot a release announced (its decimal number), if it is one of ours.
pub(crate) fn announced_slot(message: Option<&[u8]>, permits: u32) -> Option<u32> {
    let slot: u32 = std::str::from_utf8(message?).ok()?.parse().ok()?;
    (slot < permits).then_some(slot)
}

/// One node's answer to the acquire script.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// It granted this slot, after finding `taken` taken.
    Granted { slot: u32, taken: Vec<u32> },
    /// No slot it tried was free (it tried every slot in `taken`).
    Full { taken: Vec<u32> },
    /// A mutex (or a multi-lock, or another Redlock client) holds the semaphore's name.
    NameHeld,
    /// The name key says the semaphore has another number of permits (this value).
    Mismatch(String),
}

/// Parses `{status, slot, taken}`.
fn parse(v: &Value, permits: u32) -> Option<Reply> {
    let Value::Array(items) = v else { return None };
    let [Value::Int(status), Value::Int(slot), taken] = items.as_slice() else {
        return None;
    };
    let text = match taken {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        Value::SimpleString(s) => s.as_str(),
        _ => return None,
    };
    let slots = || -> Option<Vec<u32>> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok().filter(|slot| *slot < permits))
            .collect()
    };
    match status {
        1 => {
            let slot = u32::try_from(*slot).ok().filter(|s| *s < permits)?;
            Some(Reply::Granted {
                slot,
                taken: slots()?,
            })
        }
        0 => Some(Reply::Full { taken: slots()? }),
        2 => Some(Reply::NameHeld),
        -1 => Some(Reply::Mismatch(text.to_owned())),
        _ => None,
    }
}

/// Which slots to ask for, in order: `list` first, then (when `scan_from` is some) every slot
/// from that one on.
struct Order {
    list: Vec<u32>,
    scan_from: Option<u32>,
}

impl Order {
    /// A first round: the announced slot (if any), then every slot from a random one on, so
    /// that contenders spread over the slots.
    fn first(permits: u32, hint: Option<u32>) -> Self {
        Self {
            list: hint.into_iter().collect(),
            scan_from: Some(rand::rng().random_range(0..permits)),
        }
    }
}

/// What the nodes reported taken in the last round: per slot, how many nodes refused it.
struct View {
    taken: Vec<usize>,
}

impl View {
    fn new(permits: u32) -> Self {
        Self {
            taken: vec![0; permits as usize],
        }
    }

    /// Counts one node's report: each slot it found taken (once, though a node may have tried
    /// a slot twice, from the list and from the scan).
    fn note(&mut self, slots: impl IntoIterator<Item = u32>) {
        let mut slots: Vec<u32> = slots.into_iter().collect();
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            if let Some(n) = self.taken.get_mut(slot as usize) {
                *n += 1;
            }
        }
    }

    /// The slots that can still reach a quorum (taken on at most `nodes - quorum` nodes), fewest
    /// taken first, in random order among equals.
    fn viable(&self, nodes: usize, quorum: usize) -> Order {
        let most = nodes.saturating_sub(quorum);
        let mut list: Vec<u32> = (0..self.taken.len())
            .filter(|s| self.taken.get(*s).is_some_and(|n| *n <= most))
            .filter_map(|s| u32::try_from(s).ok())
            .collect();
        // A random rotation, then a stable sort: equals stay in random (rotated) order.
        if !list.is_empty() {
            let turn = rand::rng().random_range(0..list.len());
            list.rotate_left(turn);
        }
        list.sort_by_key(|s| self.taken.get(*s as usize).copied().unwrap_or(usize::MAX));
        Self::order(list)
    }

    fn order(list: Vec<u32>) -> Order {
        Order {
            list,
            scan_from: None,
        }
    }
}

/// One attempt: up to [`PROBES`] rounds, each on the slots that can still be granted, trying
/// `hint` first (the slot a release announced, when one woke the waiter).
pub(crate) fn attempt(
    shared: &Arc<Shared>,
    req: &SemaphoreRequest<'_>,
    mark: bool,
    hint: Option<u32>,
) -> Attempt<Lease> {
    if let Err(e) = shared.check_longest("ttl", req.base.ttl) {
        return Attempt::Fatal(e);
    }
    let mut order = Order::first(req.permits, hint);
    let mut last_busy = (0, Votes::default());
    for _ in 0..PROBES {
        if order.list.is_empty() && order.scan_from.is_none() {
            break;
        }
        match probe(shared, req, mark, &order) {
            ControlFlow::Break(attempt) => return attempt,
            ControlFlow::Continue((view, busy, votes)) => {
                last_busy = (busy, votes);
                order = view.viable(shared.nodes.len(), shared.config.quorum);
            }
        }
    }
    Attempt::Busy {
        holders: last_busy.0,
        votes: last_busy.1,
        retry_in: None,
    }
}

/// What a probe found: `Break` with the attempt's outcome, or `Continue` when no slot reached a
/// quorum, with what the nodes reported taken and the nodes that had no free slot.
type Probe = ControlFlow<Attempt<Lease>, (View, u64, Votes)>;

/// How a node's reader counts a probe's late reply (a grant of `won`, the slot the round won
/// with, or of any slot when it did not win, as a vote given; any other answer as refused; a
/// reply that is not the script's as failed), as the probe counts the replies it read.
fn late_judge(permits: u32, won: Option<u32>) -> Judge {
    Box::new(move |v: &Value| match parse(v, permits) {
        Some(Reply::Granted { slot, .. }) if won.is_none_or(|w| w == slot) => Ballot::Given,
        Some(_) => Ballot::Refused,
        None => Ballot::Failed,
    })
}

/// Too many nodes say another permit count for a quorum to grant ours: the handle (or the
/// other clients) is misconfigured.
const fn misconfigured(mismatched: usize, nodes: usize, quorum: usize) -> bool {
    mismatched > nodes.saturating_sub(quorum)
}

/// The replies read so far, as the settle rule counts them.
struct Count {
    /// Per slot, the nodes that granted it, a quarantined node's grant not counted (as
    /// [`verdict::admitted`] does not count it at vote time).
    grants: Vec<usize>,
    /// Grants of quarantined nodes.
    doubted: usize,
    /// Nodes that answered at all (a grant, a full node, a held name, a mismatch).
    answered: usize,
    /// Nodes that said another permit count.
    mismatched: usize,
}

impl Count {
    /// Counts `votes` (node index, reply), with the grants of the nodes in `doubted` not
    /// counted.
    fn of<'v>(
        votes: impl IntoIterator<Item = (usize, &'v Result<Reply, NodeError>)>,
        doubted: u64,
        permits: u32,
    ) -> Self {
        let mut count = Self {
            grants: vec![0; permits as usize],
            doubted: 0,
            answered: 0,
            mismatched: 0,
        };
        for (i, vote) in votes {
            let Ok(reply) = vote else { continue };
            count.answered += 1;
            match reply {
                Reply::Granted { .. } if doubted & (1u64 << i) != 0 => count.doubted += 1,
                Reply::Granted { slot, .. } => {
                    if let Some(n) = count.grants.get_mut(*slot as usize) {
                        *n += 1;
                    }
                }
                Reply::Mismatch(_) => count.mismatched += 1,
                Reply::Full { .. } | Reply::NameHeld => {}
            }
        }
        count
    }

    /// The slot with a quorum of grants, if one has.
    fn winner(&self, quorum: usize) -> Option<u32> {
        let slot = self.grants.iter().position(|n| *n >= quorum)?;
        u32::try_from(slot).ok()
    }

    /// Whether these replies, with `pending` nodes of `nodes` unread, settle the probe: every
    /// way the unread nodes could answer (a grant of any slot, a refusal, a mismatch, or
    /// nothing) leads to the outcome these replies give. That is [`round::Settle::Grant`]'s
    /// rule, counted per slot: a node grants one slot at most, so one slot alone can reach a
    /// quorum, and a yes to one slot is a no to the others.
    ///
    /// - A win: some slot has a quorum of grants.
    /// - No win, once no slot can reach a quorum even with every unread node granting it;
    ///   then what the failure is must be settled too: the mismatches make the call
    ///   misconfigured (`Fatal`) once they are too many for a quorum, and cannot while every
    ///   unread node's mismatch would leave them few enough; otherwise the slots are held
    ///   (`Refused`: the next probe, or a wait) once a quorum answered, not counting the
    ///   quarantined nodes' grants (the verdict counts those of the winning slot as
    ///   failures), and not known (`NoQuorum`) while a quorum cannot answer even with every
    ///   unread node.
    fn settles(&self, nodes: usize, quorum: usize, pending: usize) -> bool {
        if pending == 0 {
            return true;
        }
        let most = self.grants.iter().copied().max().unwrap_or(0);
        if most >= quorum {
            return true;
        }
        if most + pending >= quorum {
            return false;
        }
        if misconfigured(self.mismatched, nodes, quorum) {
            return true;
        }
        if misconfigured(self.mismatched + pending, nodes, quorum) {
            return false;
        }
        let surely = self.answered - self.doubted;
        surely >= quorum || self.answered + pending < quorum
    }
}

/// The settle rule of a probe's round ([`Count::settles`]) on the replies read so far; `won`
/// is set to the winning slot when the round settles with one.
fn settled(
    shared: &Shared,
    read: &round::ReadSoFar,
    pending: usize,
    permits: u32,
    won: &Cell<Option<u32>>,
) -> bool {
    if pending == 0 {
        return true;
    }
    let votes: Vec<(usize, Result<Reply, NodeError>)> = read
        .iter()
        .enumerate()
        .filter_map(|(i, replies)| {
            let reply = replies.last()?.as_ref()?;
            let vote = match reply {
                Ok(v) => parse(v, permits)
                    .ok_or_else(|| NodeError::new("?", NodeCause::Unexpected(String::new()))),
                Err(e) => Err(e.clone()),
            };
            Some((i, vote))
        })
        .collect();
    let granting = votes
        .iter()
        .filter(|(_, v)| matches!(v, Ok(Reply::Granted { .. })))
        .fold(0u64, |m, (i, _)| m | (1u64 << i));
    let doubted = shared.nodes.doubted(granting);
    let count = Count::of(votes.iter().map(|(i, v)| (*i, v)), doubted, permits);
    let quorum = shared.config.quorum;
    let settles = count.settles(shared.nodes.len(), quorum, pending);
    if settles {
        won.set(count.winner(quorum));
    }
    settles
}

/// How long a take-back of a grant of `ttl` is owed: as long as the grant may live.
fn owed_until(shared: &Shared, ttl: Duration) -> Instant {
    Instant::now()
        .checked_add(ttl.saturating_add(shared.drift(ttl)))
        .unwrap_or_else(Instant::now)
}

/// The votes of a probe's round, counted: `votes[node]` is `None` for a node left unread.
struct Counted {
    /// The slot most nodes granted (at most one slot can have a quorum: a node grants one).
    best: u32,
    /// The votes on `best`: its grants are the yes, every other answer a no.
    tally: Tally,
    /// Nodes read that may hold our token on some slot (they granted one, or failed).
    granted: u64,
    /// Those of them that may hold it on a slot other than `best`.
    stray: u64,
    /// Nodes that had no free slot (or held the name for a lock, or another permit count).
    busy: u64,
    /// What the first node of another permit count holds, and how many said so.
    mismatch: Option<String>,
    mismatched: usize,
    /// The slots the nodes read found taken.
    view: View,
}

fn count_votes(votes: &[Option<Result<Reply, NodeError>>], permits: u32) -> Counted {
    let mut grants = vec![0usize; permits as usize];
    for vote in votes {
        if let Some(Ok(Reply::Granted { slot, .. })) = vote
            && let Some(n) = grants.get_mut(*slot as usize)
        {
            *n += 1;
        }
    }
    let best = (0..permits)
        .max_by_key(|s| grants.get(*s as usize).copied().unwrap_or(0))
        .unwrap_or(0);
    let mut c = Counted {
        best,
        tally: Tally::default(),
        granted: 0,
        stray: 0,
        busy: 0,
        mismatch: None,
        mismatched: 0,
        view: View::new(permits),
    };
    let tally = &mut c.tally;
    for (i, vote) in votes.iter().enumerate() {
        let bit = 1u64 << i;
        let Some(vote) = vote else { continue };
        match vote {
            Ok(Reply::Granted { slot, taken }) => {
                c.view.note(taken.iter().copied());
                c.granted |= bit;
                if *slot == best {
                    tally.yes += 1;
                    tally.given |= bit;
                } else {
                    tally.no += 1;
                    c.stray |= bit;
                }
            }
            Ok(Reply::Full { taken }) => {
                c.view.note(taken.iter().copied());
                tally.no += 1;
                c.busy |= bit;
            }
            Ok(Reply::NameHeld) => {
                c.view.note(0..permits);
                tally.no += 1;
                c.busy |= bit;
            }
            Ok(Reply::Mismatch(value)) => {
                tally.no += 1;
                c.view.note(0..permits);
                c.mismatched += 1;
                c.busy |= bit;
                c.mismatch.get_or_insert_with(|| value.clone());
            }
            Err(e) => {
                tally.failures.push(e.clone());
                c.granted |= bit;
                c.stray |= bit;
            }
        }
    }
    tally.refused = c.busy;
    c
}

/// One round of the acquire script with `order`, judged.
///
/// The round reads until the replies in hand settle it ([`Count::settles`]). A node left
/// unread may yet grant a slot, and what it grants is taken back once its reply has been read
/// (by its reader, on the connection just read), never by a round that would wait for it:
/// when the round won, its reader is owed the take-back of every other slot unless the late
/// reply grants the winning one (which the lease's release, sent to every node written to,
/// covers); when the round lost, the take-back of every slot is owed to the node after its
/// reply ([`round::owe_after`]), whatever it answers. Its report of the slots it found taken
/// comes too late to feed the next probe's order, which is made from the replies read.
fn probe(shared: &Arc<Shared>, req: &SemaphoreRequest<'_>, mark: bool, order: &Order) -> Probe {
    let name: &str = req.base.resource;
    let permits = req.permits;
    let token = Token::new();
    let list = order
        .list
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let keys = [Arg::Str(name), Arg::Joined(name, scripts::WAITING_SUFFIX)];
    let args = [
        Arg::Str(token.as_str()),
        Arg::Int(millis(req.base.ttl)),
        Arg::Int(mark_ms(shared, mark)),
        Arg::Int(u64::from(permits)),
        Arg::Joined(name, scripts::PERMIT_SUFFIX),
        Arg::Str(&list),
        Arg::Int(u64::from(order.scan_from.unwrap_or(permits))),
    ];
    let call = Call::Script {
        script: &scripts::PERMIT_ACQUIRE,
        keys: &keys,
        args: &args,
    };
    // The slot the round won with, once it is settled: a node left unread then is owed the
    // take-back of every other slot, unless its late reply is a grant of that one (the usual
    // case, which so costs nothing).
    let won = Cell::new(None);
    let late = |_node: usize| -> round::Late {
        match won.get() {
            Some(slot) => {
                let stray = Target::any_permit(permits, slot);
                let packed = stray.with_release(name, token.as_str(), true, round::packed_to_owe);
                (
                    late_judge(permits, Some(slot)),
                    Some((packed, owed_until(shared, req.base.ttl))),
                )
            }
            None => (late_judge(permits, None), None),
        }
    };
    let start = Instant::now();
    let replies = round::replies_until(
        &shared.nodes,
        &[call],
        shared.nodes.all(),
        &|read, pending| settled(shared, read, pending, permits, &won),
        &late,
    );
    let elapsed = start.elapsed();
    // Nodes sent the script a second time: they may hold a slot from the first run whatever
    // they answered (the script answers for a slot holding our token, but a slot freed between
    // the two runs may have been granted as well).
    let resent = replies.resent;
    let written = replies.written;
    let unread = replies.unread;
    let votes: Vec<Option<Result<Reply, NodeError>>> = shared
        .nodes
        .iter()
        .zip(replies.per_node)
        .enumerate()
        .map(|(i, (node, mut replies))| {
            if unread & (1u64 << i) != 0 {
                return None;
            }
            let reply = replies.pop().unwrap_or_else(|| {
                Err(NodeError::new(
                    &node.name,
                    NodeCause::Unexpected("no reply".into()),
                ))
            });
            Some(reply.and_then(|reply| {
                parse(&reply, permits).ok_or_else(|| {
                    NodeError::new(&node.name, NodeCause::Unexpected(format!("{reply:?}")))
                })
            }))
        })
        .collect();
    let Counted {
        best,
        tally,
        granted,
        stray,
        busy,
        mismatch,
        mismatched,
        view,
    } = count_votes(&votes, permits);
    for (node, vote) in shared.nodes.iter().zip(&votes) {
        // The node's vote counters, as every other round counts them (a node left unread is
        // counted by its reader).
        match vote {
            Some(Ok(Reply::Granted { slot, .. })) if *slot == best => node.count(Ballot::Given),
            Some(Ok(_)) => node.count(Ballot::Refused),
            Some(Err(_)) => node.count(Ballot::Failed),
            None => {}
        }
    }
    // Nodes that may hold our token: to take back if the round does not win; `stray`, those
    // that may hold it on a slot other than `best`.
    let granted = granted | resent;
    let stray = stray | resent;
    // The restart quarantine: a quarantined node's grant does not count (see
    // `verdict::admitted`); what it granted is taken back with the rest if the round loses.
    let admitted = verdict::admitted(shared, &tally);
    let tally: &Tally = &admitted;
    let timing = Timing {
        ttl: req.base.ttl,
        elapsed,
        drift: shared.drift(req.base.ttl),
    };
    log::debug!(
        "redmutex: acquire a permit of {name:?}: slot {best} {}/{} yes, {} no, {} failed, \
         {} unread, quorum {}, {elapsed:?}",
        tally.yes,
        shared.nodes.len(),
        tally.no,
        tally.failures.len(),
        unread.count_ones(),
        shared.config.quorum,
    );
    let verdict = decide(shared, tally, Question::Grant, Some(timing));
    // Takes back what the nodes of `mask` may hold on any slot but `except`: those left
    // unread are owed it after their reply is read (whatever they answer: the command has
    // then run), without a round that would wait for them; the others in one round now.
    let take_back = |except: u32, mask: u64| {
        let target = Target::any_permit(permits, except);
        let late = owe_after_reply(shared, &target, name, &token, mask & unread, req.base.ttl);
        let now = (mask & !unread) | late;
        if now != 0 {
            let owing = Owing {
                ttl: req.base.ttl,
                nodes: now,
            };
            release_round(
                shared,
                &target,
                name,
                token.as_str(),
                now,
                Announce::No,
                owing,
            );
        }
    };
    if let Some(value) = mismatch {
        // Another permit count on the nodes: a misconfiguration when they are too many for a
        // quorum to grant ours; a few stale name keys (left by an old configuration) are only
        // nodes that refuse, and a quorum elsewhere still grants.
        if misconfigured(mismatched, shared.nodes.len(), shared.config.quorum) {
            take_back(permits, granted | unread);
            return ControlFlow::Break(Attempt::Fatal(mismatch_error(name, permits, &value)));
        }
        log::warn!(
            "redmutex: semaphore {name:?}: {mismatched} node(s) say another permit count \
             ({value}); treating them as busy"
        );
    }
    let failure = match verdict {
        Verdict::Won(_) => {
            // The nodes left unread were handed the take-back of the other slots with their
            // replies (`late`), unless the round was settled without this winner (a quarantine
            // that ended in between): then they are owed it after their replies.
            let late = if won.get() == Some(best) { 0 } else { unread };
            take_back(best, stray | late);
            let grant = Grant {
                fenced: None,
                ..req.base.grant()
            };
            let target = Target::permit(permits, best);
            let lease = lease_of(shared, &grant, target, token, start, None, written);
            return ControlFlow::Break(Attempt::Won(lease, verdict::votes(shared, tally)));
        }
        Verdict::TooLate => Error::TooLate {
            resource: name.to_owned(),
            elapsed,
        },
        Verdict::Unknown => no_quorum(shared, name, tally),
        Verdict::Refused => {
            take_back(permits, granted | unread);
            return ControlFlow::Continue((view, busy, verdict::votes(shared, tally)));
        }
    };
    take_back(permits, granted | unread);
    ControlFlow::Break(Attempt::Failed(failure))
}

/// Owes `target`'s release of `token` to each node of `mask` whose reader still has replies
/// to read (the probe's among them), to run once they are read: the probe's command has then
/// run there, and what it granted is there to take back. Returns the nodes of `mask` whose
/// readers had already read everything: their reply came in the meantime, and the caller
/// takes back there at once.
fn owe_after_reply(
    shared: &Shared,
    target: &Target,
    name: &str,
    token: &Token,
    mask: u64,
    ttl: Duration,
) -> u64 {
    if mask == 0 {
        return 0;
    }
    let marks = round::unread_marks(&shared.nodes, mask);
    let marked = marks.iter().fold(0u64, |m, (i, _)| m | (1u64 << i));
    if !marks.is_empty() {
        let until = owed_until(shared, ttl);
        // Announced, as every owed release is: a slot that blocked others for a while may
        // have waiters by then.
        target.with_release(name, token.as_str(), true, |call| {
            round::owe_after(&shared.nodes, call, &marks, until);
        });
    }
    mask & !marked
}

/// The error for a name key that says another permit count.
fn mismatch_error(name: &str, permits: u32, value: &str) -> Error {
    // `redmutex:semaphore:<permits>:<held>`
    let theirs = value
        .strip_prefix(scripts::SEMAPHORE_VALUE_PREFIX)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or(value);
    Error::InvalidConfig(format!(
        "semaphore {name:?} is in use with {theirs} permits on the nodes; this handle has \
         {permits} (every client of one semaphore must use the same count)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(status: i64, slot: i64, taken: &str) -> Value {
        Value::Array(vec![
            Value::Int(status),
            Value::Int(slot),
            Value::BulkString(taken.as_bytes().to_vec()),
        ])
    }

    #[test]
    fn replies_parse() {
        assert_eq!(
            parse(&arr(1, 2, "0,1"), 4),
            Some(Reply::Granted {
                slot: 2,
                taken: vec![0, 1]
            })
        );
        assert_eq!(
            parse(&arr(1, 0, ""), 4),
            Some(Reply::Granted {
                slot: 0,
                taken: vec![]
            })
        );
        assert_eq!(
            parse(&arr(0, 0, "3,0,1,2"), 4),
            Some(Reply::Full {
                taken: vec![3, 0, 1, 2]
            })
        );
        assert_eq!(parse(&arr(2, 0, ""), 4), Some(Reply::NameHeld));
        assert_eq!(
            parse(&arr(-1, 0, "redmutex:semaphore:5:2"), 4),
            Some(Reply::Mismatch("redmutex:semaphore:5:2".into()))
        );
        // Out of range or malformed: not a vote.
        assert_eq!(parse(&arr(1, 4, ""), 4), None);
        assert_eq!(parse(&arr(0, 0, "1,9"), 4), None);
        assert_eq!(parse(&arr(0, 0, "x"), 4), None);
        assert_eq!(parse(&arr(7, 0, ""), 4), None);
        assert_eq!(parse(&Value::Okay, 4), None);
    }

    #[test]
    fn announced_slots_are_ours_only() {
        assert_eq!(announced_slot(Some(b"3"), 4), Some(3));
        assert_eq!(announced_slot(Some(b"4"), 4), None);
        assert_eq!(announced_slot(Some(b"a9993e36"), 4), None);
        assert_eq!(announced_slot(None, 4), None);
    }

    #[test]
    fn viable_slots_can_still_reach_a_quorum() {
        // 3 nodes, quorum 2: a slot taken on 2 nodes cannot be granted.
        let mut v = View::new(4);
        v.note([0, 1]);
        v.note([0, 2]);
        let order = v.viable(3, 2);
        assert!(order.scan_from.is_none());
        assert_eq!(order.list.len(), 3);
        assert_eq!(order.list[0], 3, "the slot free everywhere first");
        assert!(!order.list.contains(&0));
        let mut all = View::new(2);
        all.note([0, 1]);
        all.note([1, 0]);
        assert!(all.viable(3, 2).list.is_empty());
        // A node that tried a slot twice (listed first, then scanned) counts once.
        let mut twice = View::new(2);
        twice.note([1, 0, 1]);
        assert_eq!(twice.viable(3, 2).list.len(), 2);
    }

    /// A probe's outcome from its votes, as `probe` judges them: misconfigured, or the
    /// verdict on the best slot (quarantined nodes' grants of it counted as failures, as
    /// `verdict::admitted` counts them), with the slot when it won.
    fn outcome(votes: &[Option<Result<Reply, NodeError>>], doubted: u64, q: usize) -> String {
        let c = count_votes(votes, 3);
        if misconfigured(c.mismatched, votes.len(), q) {
            return "fatal".into();
        }
        let mut t = c.tally.clone();
        let d = doubted & t.given;
        t.yes -= d.count_ones() as usize;
        t.given &= !d;
        for _ in 0..d.count_ones() {
            t.failures
                .push(NodeError::new("d", NodeCause::Unexpected(String::new())));
        }
        match verdict::judge(&t, q, Question::Grant, None) {
            Verdict::Won(_) | Verdict::TooLate => format!("won {}", c.best),
            v => format!("{v:?}"),
        }
    }

    /// The round stops reading once `Count::settles` says so: the outcome it then gives must
    /// be the one every way the unread nodes could answer leads to. Checked exhaustively for 1
    /// to 5 nodes and 1 to 3 slots: every answer of every node (a grant of each slot, full, of
    /// another permit count, failed, or unread), with none, one or two nodes quarantined, and
    /// every completion of the unread.
    #[test]
    fn a_probe_settled_early_has_the_outcome_of_every_completion() {
        fn answers(permits: u32) -> Vec<Result<Reply, NodeError>> {
            let mut all: Vec<Result<Reply, NodeError>> = (0..permits)
                .map(|slot| {
                    Ok(Reply::Granted {
                        slot,
                        taken: vec![],
                    })
                })
                .collect();
            all.push(Ok(Reply::Full { taken: vec![] }));
            all.push(Ok(Reply::Mismatch("redmutex:semaphore:9:1".into())));
            all.push(Err(NodeError::new(
                "f",
                NodeCause::Unexpected(String::new()),
            )));
            all
        }
        /// Every way to fill in the `None`s with `answers`.
        fn completions(
            partial: &[Option<Result<Reply, NodeError>>],
            answers: &[Result<Reply, NodeError>],
        ) -> Vec<Vec<Option<Result<Reply, NodeError>>>> {
            let mut out = vec![Vec::new()];
            for vote in partial {
                let choices: Vec<Option<Result<Reply, NodeError>>> = match vote {
                    Some(v) => vec![Some(v.clone())],
                    None => answers.iter().cloned().map(Some).collect(),
                };
                out = out
                    .into_iter()
                    .flat_map(|done| {
                        choices.iter().map(move |c| {
                            let mut next = done.clone();
                            next.push(c.clone());
                            next
                        })
                    })
                    .collect();
            }
            out
        }
        let mut settled_early = 0;
        let mut checked = 0;
        for permits in 1u32..=3 {
            let answers = answers(permits);
            let states = answers.len() + 1; // the answers, and unread
            for n in 1usize..=5 {
                let q = n / 2 + 1;
                for doubted in [0u64, 0b1, 0b11] {
                    let assignments = states.pow(n as u32);
                    for mut code in 0..assignments {
                        let partial: Vec<Option<Result<Reply, NodeError>>> = (0..n)
                            .map(|_| {
                                let pick = code % states;
                                code /= states;
                                answers.get(pick).cloned()
                            })
                            .collect();
                        let pending = partial.iter().filter(|v| v.is_none()).count();
                        let read = partial
                            .iter()
                            .enumerate()
                            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)));
                        if !Count::of(read, doubted, permits).settles(n, q, pending) {
                            continue;
                        }
                        if pending > 0 {
                            settled_early += 1;
                        }
                        let now = outcome(&partial, doubted, q);
                        for full in completions(&partial, &answers) {
                            assert_eq!(
                                outcome(&full, doubted, q),
                                now,
                                "n={n} permits={permits} doubted={doubted:b}: settled at \
                                 {partial:?}, then {full:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(settled_early > 10_000, "{settled_early}");
        assert!(checked > 100_000, "{checked}");
    }

    /// The rule stops as soon as it may: at a quorum of grants of one slot with nodes unread,
    /// and at "no slot can win" once a quorum answered.
    #[test]
    fn a_probe_settles_at_the_quorum() {
        let grant = |slot| -> Result<Reply, NodeError> {
            Ok(Reply::Granted {
                slot,
                taken: vec![],
            })
        };
        let full: Result<Reply, NodeError> = Ok(Reply::Full { taken: vec![] });
        let of = |votes: &[Result<Reply, NodeError>], doubted| {
            Count::of(votes.iter().enumerate(), doubted, 3)
        };
        // 5 nodes, quorum 3.
        assert!(of(&[grant(1), grant(1), grant(1)], 0).settles(5, 3, 2));
        assert!(!of(&[grant(1), grant(1), grant(1)], 0b100).settles(5, 3, 2));
        assert!(!of(&[grant(1), grant(2), grant(1)], 0).settles(5, 3, 2));
        assert!(of(&[full.clone(), full.clone(), full], 0).settles(5, 3, 2));
        assert!(of(&[grant(0), grant(1), grant(2)], 0).settles(5, 3, 1));
        assert!(!of(&[grant(0), grant(1), grant(2)], 0).settles(5, 3, 2));
    }

    #[test]
    fn mismatch_names_both_counts() {
        let e = mismatch_error("jobs", 3, "redmutex:semaphore:5:1").to_string();
        assert!(e.contains("5 permits") && e.contains("has 3"), "{e}");
    }
}

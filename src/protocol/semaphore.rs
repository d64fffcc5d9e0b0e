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

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use rand::RngExt;
use redis::Value;

use super::acquire::{Attempt, Grant, Request, lease_of, mark_ms};
use super::lease::{Announce, Lease, Owing, Target, Token, millis, no_quorum, release_round};
use super::verdict::{self, Question, Timing, Verdict, decide};
use crate::command::Arg;
use crate::error::{Error, NodeCause, NodeError};
use crate::node::Ballot;
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

/// One round of the acquire script with `order`, judged.
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
    let start = Instant::now();
    let replies = round::replies(&shared.nodes, &[call], shared.nodes.all());
    let elapsed = start.elapsed();
    // Nodes sent the script a second time: they may hold a slot from the first run whatever
    // they answered (the script answers for a slot holding our token, but a slot freed between
    // the two runs may have been granted as well).
    let resent = replies.resent;
    let written = replies.written;
    let votes: Vec<std::result::Result<Reply, NodeError>> = shared
        .nodes
        .iter()
        .zip(replies.per_node)
        .map(|(node, mut replies)| {
            let reply = replies.pop().unwrap_or_else(|| {
                Err(NodeError::new(
                    &node.name,
                    NodeCause::Unexpected("no reply".into()),
                ))
            })?;
            parse(&reply, permits).ok_or_else(|| {
                NodeError::new(&node.name, NodeCause::Unexpected(format!("{reply:?}")))
            })
        })
        .collect();

    // The slot most nodes granted (at most one slot can have a quorum: a node grants one slot).
    let mut grants = vec![0usize; permits as usize];
    for vote in &votes {
        if let Ok(Reply::Granted { slot, .. }) = vote
            && let Some(n) = grants.get_mut(*slot as usize)
        {
            *n += 1;
        }
    }
    let best = (0..permits)
        .max_by_key(|s| grants.get(*s as usize).copied().unwrap_or(0))
        .unwrap_or(0);
    let mut tally = Tally::default();
    // Nodes that may hold our token (they granted a slot, or did not answer): to take back
    // if the round does not win; `stray`, those that may hold it on a slot other than `best`.
    let mut granted = resent;
    let mut stray = resent;
    let mut busy = 0u64;
    let mut mismatch = None;
    let mut mismatched = 0usize;
    let mut view = View::new(permits);
    for (i, vote) in votes.into_iter().enumerate() {
        let bit = 1u64 << i;
        if let Some(node) = shared.nodes.get(i) {
            // The node's vote counters, as every other round counts them.
            node.count(match &vote {
                Ok(Reply::Granted { slot, .. }) if *slot == best => Ballot::Given,
                Ok(_) => Ballot::Refused,
                Err(_) => Ballot::Failed,
            });
        }
        match vote {
            Ok(Reply::Granted { slot, taken }) => {
                view.note(taken);
                granted |= bit;
                if slot == best {
                    tally.yes += 1;
                    tally.given |= bit;
                } else {
                    tally.no += 1;
                    stray |= bit;
                }
            }
            Ok(Reply::Full { taken }) => {
                view.note(taken);
                tally.no += 1;
                busy |= bit;
            }
            Ok(Reply::NameHeld) => {
                view.note(0..permits);
                tally.no += 1;
                busy |= bit;
            }
            Ok(Reply::Mismatch(value)) => {
                tally.no += 1;
                view.note(0..permits);
                mismatched += 1;
                busy |= bit;
                mismatch.get_or_insert(value);
            }
            Err(e) => {
                tally.failures.push(e);
                granted |= bit;
                stray |= bit;
            }
        }
    }
    tally.refused = busy;
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
         quorum {}, {elapsed:?}",
        tally.yes,
        shared.nodes.len(),
        tally.no,
        tally.failures.len(),
        shared.config.quorum,
    );
    let verdict = decide(shared, tally, Question::Grant, Some(timing));
    let take_back = |except: u32, mask: u64| {
        if mask != 0 {
            let target = Target::any_permit(permits, except);
            let owing = Owing {
                ttl: req.base.ttl,
                nodes: mask,
            };
            release_round(
                shared,
                &target,
                name,
                token.as_str(),
                mask,
                Announce::No,
                owing,
            );
        }
    };
    if let Some(value) = mismatch {
        // Another permit count on the nodes: a misconfiguration when they are too many for a
        // quorum to grant ours; a few stale name keys (left by an old configuration) are only
        // nodes that refuse, and a quorum elsewhere still grants.
        if mismatched > shared.nodes.len().saturating_sub(shared.config.quorum) {
            take_back(permits, granted);
            return ControlFlow::Break(Attempt::Fatal(mismatch_error(name, permits, &value)));
        }
        log::warn!(
            "redmutex: semaphore {name:?}: {mismatched} node(s) say another permit count \
             ({value}); treating them as busy"
        );
    }
    let failure = match verdict {
        Verdict::Won(_) => {
            take_back(best, stray);
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
            take_back(permits, granted);
            return ControlFlow::Continue((view, busy, verdict::votes(shared, tally)));
        }
    };
    take_back(permits, granted);
    ControlFlow::Break(Attempt::Failed(failure))
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

    #[test]
    fn mismatch_names_both_counts() {
        let e = mismatch_error("jobs", 3, "redmutex:semaphore:5:1").to_string();
        assert!(e.contains("5 permits") && e.contains("has 3"), "{e}");
    }
}

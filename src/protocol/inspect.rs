//! A read-only look at a resource on every node: who holds it, for how long, and the quorum's
//! verdict. Plain reads (`GET`, `PTTL`), so a read-only user (a monitoring account) can
//! inspect; the token read is reduced at once to a fingerprint and never kept or shown.

use std::fmt;
use std::time::Duration;

use redis::Value;

use super::verdict::{Question, Verdict, judge};
use crate::command::Arg;
use crate::error::{NodeCause, NodeError};
use crate::round::{self, Call, Tally};
use crate::scripts;
use crate::shared::Shared;

/// Hex digits of the token's SHA1 kept in a fingerprint (48 bits: enough to tell holders
/// apart, useless to forge a token).
const FINGERPRINT_LEN: usize = 12;

/// The short public name of a lock token: the first 12 hex digits of its SHA1.
///
/// A token is a capability (whoever has it can release or extend the lock), so inspection and
/// logs show this instead. Compare it with [`Fingerprint::of`] your own token to see whether
/// you are the holder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of `token`.
    #[must_use]
    pub fn of(token: &str) -> Self {
        Self::from_sha1(&scripts::sha1_hex(token))
    }

    fn from_sha1(sha1: &str) -> Self {
        Self(sha1.chars().take(FINGERPRINT_LEN).collect())
    }

    /// The fingerprint as hex digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one node holds for a resource.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Holding {
    /// No lock key.
    Free,
    /// A lock key, with its holder's fingerprint and its remaining time to live (`None`: the
    /// key has no expiry, which no Redlock client sets).
    Held {
        /// The holder.
        holder: Fingerprint,
        /// How long the key lives on this node.
        ttl: Option<Duration>,
    },
    /// The name key of a semaphore ([`RedLockFactory::create_semaphore`]): permits of it are
    /// held on this node (a lock of the same name waits for them).
    ///
    /// [`RedLockFactory::create_semaphore`]: crate::RedLockFactory::create_semaphore
    Permits {
        /// The semaphore's permit count.
        permits: u32,
        /// How many of its permits this node counts as held.
        held: u32,
        /// How long the name key lives on this node.
        ttl: Option<Duration>,
    },
    /// The node did not answer.
    Failed(NodeError),
}

/// One node's part of an [`Inspection`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeView {
    /// The node's address (`host:port`, socket path or Sentinel group; never a password).
    pub node: String,
    /// What it holds.
    pub holding: Holding,
    /// The resource's fencing counter on this node, if it has one.
    pub fencing_counter: Option<u64>,
    /// How much longer the node is in its restart quarantine, if it is (see
    /// [`NodeStats::quarantine`](crate::NodeStats::quarantine)): its data may be younger than
    /// the longest TTL, so its "free" may be a lease it forgot, and the verdict does not count
    /// it as free (a key it holds is still seen as held).
    pub quarantined: Option<Duration>,
}

/// The verdict over the nodes: what an acquisition would find.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockState {
    /// A quorum holds one token: the lock is held.
    Held {
        /// The holder.
        holder: Fingerprint,
        /// How many nodes hold it.
        nodes: usize,
        /// How long a quorum of them still holds it (by the nodes' clocks; `None`: no expiry).
        ttl: Option<Duration>,
    },
    /// A quorum has no lock key: an acquisition would get it.
    Free {
        /// How many nodes are free.
        nodes: usize,
    },
    /// A quorum holds the name key of a semaphore of `permits` permits: permits are held, and
    /// a lock of the name waits for them.
    Permits {
        /// The semaphore's permit count.
        permits: u32,
        /// How many permits a quorum of those nodes counts as held, at least (the counts of
        /// single nodes can differ: a permit is held on a quorum, not on every node).
        held: u32,
        /// How many nodes hold the name key with this permit count.
        nodes: usize,
    },
    /// Enough nodes answered, but no token holds a quorum and too few nodes are free: nobody
    /// can take the lock until keys expire or are released.
    Split,
    /// Too few nodes answered to tell.
    Unknown {
        /// How many answered.
        answered: usize,
    },
}

/// What the nodes hold for a resource, from
/// [`RedLock::inspect`](crate::RedLock::inspect): for monitoring and scripts.
///
/// It is a snapshot taken in one round: it may be stale as soon as it is returned.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Inspection {
    /// The resource (the Redis key).
    pub resource: String,
    /// How many nodes must agree.
    pub quorum: usize,
    /// Each node's view, in the factory's node order.
    pub nodes: Vec<NodeView>,
    /// The verdict.
    pub state: LockState,
}

impl Inspection {
    /// The largest fencing counter of the resource on any node that answered.
    #[must_use]
    pub fn fencing_counter(&self) -> Option<u64> {
        self.nodes.iter().filter_map(|n| n.fencing_counter).max()
    }

    /// Whether `token` holds the lock on a quorum.
    #[must_use]
    pub fn is_held_by(&self, token: &str) -> bool {
        matches!(&self.state, LockState::Held { holder, .. } if *holder == Fingerprint::of(token))
    }
}

/// Reads `resource` on every node (one round, no change).
pub(crate) fn inspect(shared: &Shared, resource: &str) -> Inspection {
    let get = [Arg::Str("GET"), Arg::Str(resource)];
    let pttl = [Arg::Str("PTTL"), Arg::Str(resource)];
    let fence = [
        Arg::Str("GET"),
        Arg::Joined(resource, scripts::FENCE_SUFFIX),
    ];
    let calls = [
        Call::Command(&get),
        Call::Command(&pttl),
        Call::Command(&fence),
    ];
    let replies = round::replies(&shared.nodes, &calls, shared.nodes.all()).per_node;
    let mut nodes = Vec::with_capacity(replies.len());
    for (node, replies) in shared.nodes.iter().zip(replies) {
        let (holding, fencing_counter) = match parse(&node.name, &replies) {
            Ok(view) => view,
            Err(e) => (Holding::Failed(e), None),
        };
        nodes.push(NodeView {
            node: node.name.clone(),
            holding,
            fencing_counter,
            quarantined: node.quarantine_left(),
        });
        drop(replies); // the value (a token) goes with them
    }
    let quorum = shared.config.quorum;
    let state = verdict(&nodes, quorum);
    Inspection {
        resource: resource.to_owned(),
        quorum,
        nodes,
        state,
    }
}

/// One node's replies to `GET key`, `PTTL key`, `GET counter`.
fn parse(
    node: &str,
    replies: &[Result<Value, NodeError>],
) -> Result<(Holding, Option<u64>), NodeError> {
    let unexpected = |what: &str| NodeError::new(node, NodeCause::Unexpected(what.to_owned()));
    let [value, pttl, fence] = replies else {
        // Fewer replies: the node failed (every reply after a failure is that failure).
        let e = replies.iter().find_map(|r| r.as_ref().err()).cloned();
        return Err(e.unwrap_or_else(|| unexpected("missing replies")));
    };
    let (value, pttl, fence) = (value.as_ref(), pttl.as_ref(), fence.as_ref());
    let (value, pttl, fence) = (
        value.map_err(Clone::clone)?,
        pttl.map_err(Clone::clone)?,
        fence.map_err(Clone::clone)?,
    );
    let fence = match fence {
        Value::Nil => None,
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        other => return Err(unexpected(&format!("{other:?}"))),
    };
    let holding = match (value, pttl) {
        (Value::Nil, _) | (_, Value::Int(-2)) => Holding::Free,
        (Value::BulkString(value), Value::Int(ms)) => {
            let ttl = u64::try_from(*ms).ok().map(Duration::from_millis);
            let value = String::from_utf8_lossy(value);
            match permits(&value) {
                Some((permits, held)) => Holding::Permits { permits, held, ttl },
                None => Holding::Held {
                    holder: Fingerprint::from_sha1(&scripts::sha1_hex(&value)),
                    ttl,
                },
            }
        }
        (v, t) => return Err(unexpected(&format!("{v:?} {t:?}"))),
    };
    Ok((holding, fence))
}

/// The permit count and the held count of a semaphore's name key value
/// (`redmutex:semaphore:<permits>:<held>`), if it is one.
fn permits(value: &str) -> Option<(u32, u32)> {
    let rest = value.strip_prefix(scripts::SEMAPHORE_VALUE_PREFIX)?;
    let (permits, held) = rest.split_once(':')?;
    Some((permits.parse().ok()?, held.parse().ok()?))
}

/// The verdict, counted by the protocol's one judge: each candidate ("free", or each holder)
/// is a round in which the nodes showing it said yes. A candidate that a quorum shows wins; a
/// candidate that could still reach a quorum with the nodes that failed makes it unknown.
fn verdict(nodes: &[NodeView], quorum: usize) -> LockState {
    let tally = |yes: &dyn Fn(&Holding) -> bool| {
        let mut t = Tally::default();
        for n in nodes {
            match &n.holding {
                Holding::Failed(e) => t.failures.push(e.clone()),
                // A quarantined node's "free" may be a lease it forgot: it cannot tell.
                Holding::Free if n.quarantined.is_some() && yes(&n.holding) => {
                    let why = "quarantined: its \"free\" may be a lease it forgot".to_owned();
                    t.failures
                        .push(NodeError::new(&n.node, NodeCause::Quarantined(why)));
                }
                h if yes(h) => t.yes += 1,
                _ => t.no += 1,
            }
        }
        t
    };
    let free = tally(&|h| matches!(h, Holding::Free));
    let mut unknown = false;
    match judge(&free, quorum, Question::Holds, None) {
        Verdict::Won(_) => return LockState::Free { nodes: free.yes },
        Verdict::Unknown => unknown = true,
        _ => {}
    }
    // A semaphore's name, by its permit count (each node counts the permits it holds).
    let mut counts: Vec<u32> = Vec::new();
    for n in nodes {
        let Holding::Permits { permits, .. } = n.holding else {
            continue;
        };
        if counts.contains(&permits) {
            continue;
        }
        counts.push(permits);
        let of = |h: &Holding| matches!(h, Holding::Permits { permits: p, .. } if *p == permits);
        let named = tally(&of);
        match judge(&named, quorum, Question::Holds, None) {
            Verdict::Won(_) => {
                let mut held: Vec<u32> = nodes
                    .iter()
                    .filter_map(|n| match n.holding {
                        Holding::Permits {
                            permits: p, held, ..
                        } if p == permits => Some(held),
                        _ => None,
                    })
                    .collect();
                held.sort_unstable_by(|a, b| b.cmp(a));
                return LockState::Permits {
                    permits,
                    held: held.get(quorum.saturating_sub(1)).copied().unwrap_or(0),
                    nodes: named.yes,
                };
            }
            Verdict::Unknown => unknown = true,
            _ => {}
        }
    }
    let mut seen: Vec<&Fingerprint> = Vec::new();
    for n in nodes {
        let Holding::Held { holder, .. } = &n.holding else {
            continue;
        };
        if seen.contains(&holder) {
            continue;
        }
        seen.push(holder);
        let held = tally(&|h| matches!(h, Holding::Held { holder: x, .. } if x == holder));
        match judge(&held, quorum, Question::Holds, None) {
            Verdict::Won(_) => {
                return LockState::Held {
                    holder: holder.clone(),
                    nodes: held.yes,
                    ttl: quorum_ttl(nodes, holder, quorum),
                };
            }
            Verdict::Unknown => unknown = true,
            _ => {}
        }
    }
    if unknown {
        LockState::Unknown {
            answered: free.answered(),
        }
    } else {
        LockState::Split
    }
}

/// How long a quorum still holds `holder`'s key: the quorum-th longest TTL among its nodes
/// (`None`: no expiry).
fn quorum_ttl(nodes: &[NodeView], holder: &Fingerprint, quorum: usize) -> Option<Duration> {
    let mut ttls: Vec<Option<Duration>> = nodes
        .iter()
        .filter_map(|n| match &n.holding {
            Holding::Held { holder: x, ttl } if x == holder => Some(*ttl),
            _ => None,
        })
        .collect();
    // Longest first; `None` (no expiry) is the longest.
    ttls.sort_by(|a, b| match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, _) => std::cmp::Ordering::Less,
        (_, None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(a),
    });
    ttls.get(quorum.saturating_sub(1)).copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holding: Holding) -> NodeView {
        NodeView {
            node: "n".into(),
            holding,
            fencing_counter: None,
            quarantined: None,
        }
    }

    fn held(t: &str, ms: u64) -> Holding {
        Holding::Held {
            holder: Fingerprint::of(t),
            ttl: Some(Duration::from_millis(ms)),
        }
    }

    fn failed() -> Holding {
        Holding::Failed(NodeError::new("n", NodeCause::Unexpected(String::new())))
    }

    #[test]
    fn a_quarantined_nodes_free_is_not_evidence() {
        let mut nodes: Vec<NodeView> = [Holding::Free, Holding::Free, held("a", 5)]
            .into_iter()
            .map(view)
            .collect();
        nodes[1].quarantined = Some(Duration::from_secs(30));
        // One trusted "free", one that cannot tell, one holder: unknown, not free.
        assert_eq!(verdict(&nodes, 2), LockState::Unknown { answered: 2 });
        // A key a quarantined node holds is seen as held.
        nodes[1].holding = held("a", 5);
        assert!(matches!(
            verdict(&nodes, 2),
            LockState::Held { nodes: 2, .. }
        ));
    }

    #[test]
    fn verdicts() {
        let v = |hs: Vec<Holding>| verdict(&hs.into_iter().map(view).collect::<Vec<_>>(), 2);
        assert_eq!(
            v(vec![Holding::Free, Holding::Free, held("a", 5)]),
            LockState::Free { nodes: 2 }
        );
        assert_eq!(
            v(vec![held("a", 500), held("a", 900), held("a", 100)]),
            LockState::Held {
                holder: Fingerprint::of("a"),
                nodes: 3,
                ttl: Some(Duration::from_millis(500)),
            }
        );
        assert_eq!(
            v(vec![held("a", 5), held("b", 5), Holding::Free]),
            LockState::Split
        );
        assert_eq!(
            v(vec![held("a", 5), failed(), failed()]),
            LockState::Unknown { answered: 1 }
        );
        // A semaphore's name: the counts differ per node; a quorum counts at least 2.
        let permits = |held| Holding::Permits {
            permits: 5,
            held,
            ttl: None,
        };
        assert_eq!(
            v(vec![permits(3), permits(2), permits(1)]),
            LockState::Permits {
                permits: 5,
                held: 2,
                nodes: 3
            }
        );
        assert_eq!(
            v(vec![permits(3), Holding::Free, Holding::Free]),
            LockState::Free { nodes: 2 }
        );
    }

    #[test]
    fn a_semaphores_name_key_is_read_as_permits() {
        assert_eq!(permits("redmutex:semaphore:5:3"), Some((5, 3)));
        assert_eq!(permits("redmutex:semaphore:5"), None);
        assert_eq!(permits("token"), None);
    }

    #[test]
    fn fingerprints_are_short_sha1_prefixes() {
        assert_eq!(Fingerprint::of("abc").as_str(), "a9993e364706");
        assert_ne!(Fingerprint::of("a"), Fingerprint::of("b"));
    }
}

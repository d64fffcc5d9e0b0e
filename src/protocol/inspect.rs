//! A read-only look at a resource on every node: who holds it, for how long, and the quorum's
//! verdict. The token never leaves the nodes: they answer its SHA1, shortened here to a
//! fingerprint.

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
    let keys = [
        Arg::Str(resource),
        Arg::Joined(resource, scripts::FENCE_SUFFIX),
    ];
    let call = Call::Script {
        script: &scripts::INSPECT,
        keys: &keys,
        args: &[],
    };
    let replies = round::replies(&shared.nodes, call, shared.nodes.all());
    let mut nodes = Vec::with_capacity(replies.len());
    for (node, reply) in shared.nodes.iter().zip(replies) {
        let (holding, fencing_counter) = match reply {
            Some(Ok(v)) => parse(&v).unwrap_or_else(|| {
                let cause = NodeCause::Unexpected(format!("{v:?}"));
                (Holding::Failed(NodeError::new(&node.name, cause)), None)
            }),
            Some(Err(e)) => (Holding::Failed(e), None),
            None => continue,
        };
        nodes.push(NodeView {
            node: node.name.clone(),
            holding,
            fencing_counter,
        });
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

/// The inspect script's reply: `{sha1 or "", pttl, counter or -1}`.
fn parse(v: &Value) -> Option<(Holding, Option<u64>)> {
    let Value::Array(items) = v else { return None };
    let [Value::BulkString(sha1), Value::Int(pttl), Value::Int(fence)] = items.as_slice() else {
        return None;
    };
    let fence = u64::try_from(*fence).ok();
    let holding = if sha1.is_empty() || *pttl == -2 {
        Holding::Free
    } else {
        Holding::Held {
            holder: Fingerprint::from_sha1(std::str::from_utf8(sha1).ok()?),
            ttl: u64::try_from(*pttl).ok().map(Duration::from_millis),
        }
    };
    Some((holding, fence))
}

/// The verdict, counted by the protocol's one judge: "held by X" is a round in which the nodes
/// holding X said yes; "free" one in which the free nodes did.
fn verdict(nodes: &[NodeView], quorum: usize) -> LockState {
    let tally = |yes: &dyn Fn(&Holding) -> bool| {
        let mut t = Tally::default();
        for n in nodes {
            match &n.holding {
                Holding::Failed(e) => t.failures.push(e.clone()),
                h if yes(h) => t.yes += 1,
                _ => t.no += 1,
            }
        }
        t
    };
    let won = |t: &Tally| matches!(judge(t, quorum, Question::Grant, None), Verdict::Won(_));
    let free = tally(&|h| matches!(h, Holding::Free));
    if won(&free) {
        return LockState::Free { nodes: free.yes };
    }
    for n in nodes {
        if let Holding::Held { holder, .. } = &n.holding {
            let held = tally(&|h| matches!(h, Holding::Held { holder: x, .. } if x == holder));
            if won(&held) {
                // How long a quorum still holds it: the quorum-th longest TTL among its nodes.
                let mut ttls: Vec<Option<Duration>> = nodes
                    .iter()
                    .filter_map(|n| match &n.holding {
                        Holding::Held { holder: x, ttl } if x == holder => Some(*ttl),
                        _ => None,
                    })
                    .collect();
                // `None` (no expiry) sorts as the longest.
                ttls.sort_by(|a, b| match (a, b) {
                    (None, None) => std::cmp::Ordering::Equal,
                    (None, _) => std::cmp::Ordering::Less,
                    (_, None) => std::cmp::Ordering::Greater,
                    (Some(a), Some(b)) => b.cmp(a),
                });
                return LockState::Held {
                    holder: holder.clone(),
                    nodes: held.yes,
                    ttl: ttls.get(quorum - 1).copied().flatten(),
                };
            }
        }
    }
    match judge(&free, quorum, Question::Grant, None) {
        Verdict::Unknown => LockState::Unknown {
            answered: free.answered(),
        },
        _ => LockState::Split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holding: Holding) -> NodeView {
        NodeView {
            node: "n".into(),
            holding,
            fencing_counter: None,
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
    }

    #[test]
    fn fingerprints_are_short_sha1_prefixes() {
        assert_eq!(Fingerprint::of("abc").as_str(), "a9993e364706");
        assert_ne!(Fingerprint::of("a"), Fingerprint::of("b"));
    }
}

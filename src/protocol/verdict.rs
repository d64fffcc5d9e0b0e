//! The one decision of a round: did it win, lose, or not tell? Every operation (acquire, extend,
//! renew, release, fence, the token-level calls) counts its votes here, through [`decide`],
//! which also counts and traces the verdict.

use std::borrow::Cow;
use std::time::Duration;

use crate::error::{NodeCause, NodeError};
use crate::observe::{Votes, trace};
use crate::round::{self, Tally};
use crate::shared::Shared;

/// What a round decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A quorum said yes; for a round on a lease, early enough to leave this much validity
    /// (`ttl - elapsed - drift`; zero for rounds without a lease).
    Won(Duration),
    /// A quorum said yes, but the round took the whole validity.
    TooLate,
    /// The answer is known to be no (see [`Question`]).
    Refused,
    /// Too few nodes answered to tell.
    Unknown,
}

/// What a round asks; it decides how missing answers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Question {
    /// "Is the lock ours now?" (acquire). A quorum that answered without granting it means the
    /// lock is held elsewhere: `Refused`, even if some nodes failed (they may be the holder's).
    Grant,
    /// "Does a quorum still hold our token?" (extend, renew, release, token-level calls). It is
    /// `Refused` only when the nodes that said yes and those that failed (which may still hold
    /// it) cannot make a quorum together.
    Holds,
}

/// The timing of a round on a lease of `ttl`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) ttl: Duration,
    pub(crate) elapsed: Duration,
    pub(crate) drift: Duration,
}

/// Judges a round on `shared`'s nodes with its quorum ([`judge`]), counts the rounds that had
/// no quorum or came too late, and traces the round's votes (`tracing` feature).
pub(crate) fn decide(
    shared: &Shared,
    tally: &Tally,
    question: Question,
    timing: Option<Timing>,
) -> Verdict {
    let quorum = shared.config.quorum;
    let verdict = judge(tally, quorum, question, timing);
    let counters = &shared.observer.counters;
    let name = match verdict {
        Verdict::Won(_) => "won",
        Verdict::TooLate => {
            counters.too_late_rounds.incr();
            "too_late"
        }
        Verdict::Refused => "refused",
        Verdict::Unknown => {
            counters.no_quorum_rounds.incr();
            "no_quorum"
        }
    };
    let question = match question {
        Question::Grant => "grant",
        Question::Holds => "holds",
    };
    trace::round(
        question,
        tally.yes,
        tally.no,
        tally.failures.len(),
        tally.unread(),
        quorum,
        name,
    );
    verdict
}

/// The restart quarantine, at vote time: an acquisition round's tally without the yes votes
/// of the nodes that are quarantined, each of which becomes a failure that says why (a node
/// whose data may be younger than the longest TTL may have forgotten a lease another client
/// still holds on the other nodes, so its yes is no evidence that the lock is free). Every
/// acquisition, of any kind, is judged on this; rounds about a lease already held (extend,
/// renew, release) are not: a yes there says that our own token, written after the node
/// started, is on it, which is true whatever the node forgot before.
///
/// Borrowed as it is, after one atomic load per yes vote, when no node is quarantined.
pub(crate) fn admitted<'t>(shared: &Shared, tally: &'t Tally) -> Cow<'t, Tally> {
    let doubted = shared.nodes.doubted(tally.given);
    if doubted == 0 {
        return Cow::Borrowed(tally);
    }
    let mut counted = tally.clone();
    for (i, node) in shared.nodes.iter().enumerate() {
        let bit = 1u64 << i;
        if doubted & bit != 0 {
            counted.yes = counted.yes.saturating_sub(1);
            counted.given &= !bit;
            let why = node.discount();
            counted
                .failures
                .push(NodeError::new(&node.name, NodeCause::Quarantined(why)));
        }
    }
    Cow::Owned(counted)
}

/// A round's votes, for events.
pub(crate) fn votes(shared: &Shared, tally: &Tally) -> Votes {
    Votes::new(
        tally.yes,
        tally.no,
        tally.failures.len(),
        shared.config.quorum,
    )
}

/// Judges a round: the only place where votes become a decision.
pub(crate) fn judge(
    tally: &Tally,
    quorum: usize,
    question: Question,
    timing: Option<Timing>,
) -> Verdict {
    if tally.yes >= quorum {
        return match timing {
            None => Verdict::Won(Duration::ZERO),
            Some(t) => {
                round::validity(t.ttl, t.elapsed, t.drift).map_or(Verdict::TooLate, Verdict::Won)
            }
        };
    }
    let refused = match question {
        Question::Grant => tally.answered() >= quorum,
        Question::Holds => tally.yes + tally.failures.len() < quorum,
    };
    if refused {
        Verdict::Refused
    } else {
        Verdict::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{NodeCause, NodeError};

    fn tally(yes: usize, no: usize, failed: usize) -> Tally {
        Tally {
            yes,
            no,
            failures: (0..failed)
                .map(|i| NodeError::new(&format!("n{i}"), NodeCause::Unexpected(String::new())))
                .collect(),
            ..Tally::default()
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_quorum_of_yes_wins_with_what_is_left() {
        let t = Timing {
            ttl: 100 * MS,
            elapsed: 10 * MS,
            drift: 3 * MS,
        };
        assert_eq!(
            judge(&tally(2, 1, 0), 2, Question::Grant, Some(t)),
            Verdict::Won(87 * MS)
        );
        assert_eq!(
            judge(&tally(3, 0, 0), 2, Question::Holds, None),
            Verdict::Won(Duration::ZERO)
        );
        let slow = Timing {
            elapsed: 97 * MS,
            ..t
        };
        assert_eq!(
            judge(&tally(2, 0, 1), 2, Question::Grant, Some(slow)),
            Verdict::TooLate
        );
    }

    #[test]
    fn missing_answers_count_by_question() {
        // One yes, one no, one failure out of 3.
        assert_eq!(
            judge(&tally(1, 1, 1), 2, Question::Grant, None),
            Verdict::Refused
        );
        assert_eq!(
            judge(&tally(1, 1, 1), 2, Question::Holds, None),
            Verdict::Unknown
        );
        // Two failures: nobody can tell whether it is held.
        assert_eq!(
            judge(&tally(0, 1, 2), 2, Question::Grant, None),
            Verdict::Unknown
        );
        assert_eq!(
            judge(&tally(0, 1, 2), 2, Question::Holds, None),
            Verdict::Unknown
        );
        // No yes at all and one failure: our token is certainly gone.
        assert_eq!(
            judge(&tally(0, 2, 1), 2, Question::Holds, None),
            Verdict::Refused
        );
    }

    /// The round stops reading once `Settle` says so: the verdict it then gives must be the one
    /// every way the unread nodes could answer leads to. Checked exhaustively for 1 to 7 nodes:
    /// every split of the nodes into yes, no, failed and unread, every completion of the unread.
    #[test]
    fn a_round_settled_early_has_the_verdict_of_every_completion() {
        use crate::round::Settle;
        let specs = vec![crate::node::NodeSpec::parse("redis://127.0.0.1:1").unwrap()];
        let nodes = crate::node::Nodes::connect(
            specs,
            Duration::from_millis(50),
            Duration::from_millis(50),
            1,
            None,
            crate::node::Watch::default(),
        )
        .unwrap();
        let class = |v: Verdict| match v {
            Verdict::Won(_) | Verdict::TooLate => 0,
            Verdict::Refused => 1,
            Verdict::Unknown => 2,
        };
        let mut checked = 0;
        for n in 1usize..=7 {
            let q = n / 2 + 1;
            for (question, settle) in [
                (Question::Grant, Settle::Grant(q)),
                (Question::Holds, Settle::Holds(q)),
            ] {
                for yes in 0..=n {
                    for no in 0..=n - yes {
                        for failed in 0..=n - yes - no {
                            let pending = n - yes - no - failed;
                            let partial = tally(yes, no, failed);
                            if !settle.settled(&nodes, &partial, pending) {
                                continue;
                            }
                            let now = class(judge(&partial, q, question, None));
                            for py in 0..=pending {
                                for pn in 0..=pending - py {
                                    let pf = pending - py - pn;
                                    let full = tally(yes + py, no + pn, failed + pf);
                                    assert_eq!(
                                        class(judge(&full, q, question, None)),
                                        now,
                                        "{question:?} n={n} settled at {yes}/{no}/{failed} \
                                         with {pending} unread, then +{py}/{pn}/{pf}"
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
            // Settled as soon as a quorum said yes, whatever is unread.
            assert!(Settle::Grant(q).settled(&nodes, &tally(q, 0, 0), n - q));
            assert!(Settle::Holds(q).settled(&nodes, &tally(q, 0, 0), n - q));
        }
        assert!(checked > 800, "{checked}");
    }
}

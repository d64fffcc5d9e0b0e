//! The read-write lock, on the one lease protocol: its attempts (a reader's, a writer's) are
//! rounds of its own scripts, concluded by [`conclude`] (the verdict, the deadline rule, the
//! take-back of a split vote) and waited for by [`wait_for`] (wake-up, fairness, retries,
//! deadline, cancellation); a reader's lease is a [`Target::Reader`], a writer's a [`Target::Mutex`] (a
//! writer holds the lock key exactly as a mutex holder does). Only the downgrade is new: one
//! round that turns a writer's lease into a reader's.
//!
//! # Why a reader and a writer never both hold it
//!
//! On every node, one script decides atomically, and the lock key holds either a writer's token
//! or the readers' marker, never both. A reader holds a node while the marker is its own and
//! there is no readers' set (a lone reader: the marker's expiry is its lease), or while its score
//! in the set is in the future (and the marker lives until the largest score). A writer is let in
//! only when the key is free, or holds a marker with a set whose readers have all expired; a
//! reader only when the key is free or holds a marker. So no node ever holds a live writer and a
//! live reader at once. A reader's quorum and a writer's quorum share a node; each lease's
//! deadline is a lower bound on how long its quorum holds it (the deadline rule: a reader's
//! expiry on a node never moves earlier, not even when a lone reader is moved into the set), so
//! the two validities cannot overlap. A mutex, or any Redlock client, on the same name takes the
//! lock key with `SET NX`, which the marker refuses: it is a writer.
//!
//! # Writer preference
//!
//! A writer that waits records its intent on every attempt (a member of the name's writers set,
//! scored by when the intent ends unless renewed); while a live intent is there, readers are
//! refused. So a steady stream of readers cannot starve a writer: once the readers inside leave,
//! it gets in. A writer that dies while waiting stops renewing its intent, which expires within
//! [`intent_ttl`]; one that gives up withdraws it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::acquire::{Attempt, Request, Wait, conclude, mark_ms, wait_for, waiting_mark};
use super::lease::{
    Announce, Lease, Owing, Target, Token, millis, no_quorum, proven_until, release_round,
};
use super::verdict::{Question, Timing, Verdict, decide};
use crate::command::Arg;
use crate::error::{Error, Result};
use crate::queue::Mode;
use crate::round::{self, Call, Settle};
use crate::scripts;
use crate::shared::Shared;

/// How long a waiting writer's intent lasts unless a later attempt renews it: well past the
/// longest pause between two attempts of a waiting writer (a poll interval, plus a round that
/// may wait for a connection and then for the replies).
pub(crate) fn intent_ttl(shared: &Shared) -> Duration {
    waiting_mark(shared)
        .saturating_add(shared.nodes.connect_timeout)
        .saturating_add(shared.nodes.io_timeout.saturating_mul(2))
}

/// Takes a write lease, waiting as `wait` says, with writer preference: every attempt records
/// (or renews) this call's intent, which keeps new readers out. The intent is withdrawn when
/// the call gives up.
pub(crate) fn write(shared: &Arc<Shared>, req: &Request<'_>, wait: &Wait<'_>) -> Result<Lease> {
    let intent = Token::new();
    let name: &str = req.resource;
    let taken = wait_for(
        shared,
        name,
        &[name],
        (Mode::Exclusive, false),
        wait,
        |_, _| write_attempt(shared, req, Some(&intent)),
    );
    if taken.is_err() {
        // Readers it held back may come in now: tell them.
        withdraw(shared, req.resource, &intent, shared.nodes.all(), true);
    }
    taken
}

/// One reader's attempt. `mark`: the caller will wait if a writer holds it (or waits), so mark
/// the name as waited for.
pub(crate) fn read_attempt(shared: &Arc<Shared>, req: &Request<'_>, mark: bool) -> Attempt<Lease> {
    if let Err(e) = shared.check_longest("ttl", req.ttl) {
        return Attempt::Fatal(e);
    }
    let name: &str = req.resource;
    let token = Token::new();
    let keys = [
        Arg::Str(name),
        Arg::Joined(name, scripts::READERS_SUFFIX),
        Arg::Joined(name, scripts::WRITERS_SUFFIX),
        Arg::Joined(name, scripts::WAITING_SUFFIX),
    ];
    let args = [
        Arg::Str(token.as_str()),
        Arg::Int(millis(req.ttl)),
        Arg::Int(mark_ms(shared, mark)),
    ];
    let call = Call::Script {
        script: &scripts::READ,
        keys: &keys,
        args: &args,
    };
    let start = Instant::now();
    let tally = round::round(
        &shared.nodes,
        call,
        shared.nodes.all(),
        round::acquire_reply,
        Settle::Grant(shared.config.quorum),
    );
    match conclude(shared, &req.grant(), Target::Reader, token, start, &tally) {
        // Held back by waiting writers' intents (not by a writer): if they expire unrenewed
        // (the writer died), nothing announces it, so look again when the last one ends.
        Attempt::Busy { holders, votes, .. } => Attempt::Busy {
            holders,
            votes,
            retry_in: u64::try_from(tally.aux)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
        },
        other => other,
    }
}

/// One writer's attempt. `intent`: the id of a waiting call, which records its intent (and
/// marks the name as waited for) when refused; `None` for a single attempt.
pub(crate) fn write_attempt(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    intent: Option<&Token>,
) -> Attempt<Lease> {
    if let Err(e) = shared.check_longest("ttl", req.ttl) {
        return Attempt::Fatal(e);
    }
    let name: &str = req.resource;
    let token = Token::new();
    let intent_ms = intent.map_or(0, |_| millis(intent_ttl(shared)));
    let keys = [
        Arg::Str(name),
        Arg::Joined(name, scripts::READERS_SUFFIX),
        Arg::Joined(name, scripts::WRITERS_SUFFIX),
        Arg::Joined(name, scripts::WAITING_SUFFIX),
        Arg::Joined(name, scripts::FENCE_SUFFIX),
    ];
    let args = [
        Arg::Str(token.as_str()),
        Arg::Int(millis(req.ttl)),
        Arg::Int(mark_ms(shared, intent.is_some())),
        Arg::Str(intent.map_or("", Token::as_str)),
        Arg::Int(intent_ms),
    ];
    let call = Call::Script {
        script: &scripts::WRITE,
        keys: &keys,
        args: &args,
    };
    let start = Instant::now();
    let tally = round::round(
        &shared.nodes,
        call,
        shared.nodes.all(),
        round::acquire_reply,
        Settle::Grant(shared.config.quorum),
    );
    // On the wire a writer is a mutex holder: its extend and release are the mutex's.
    let outcome = conclude(shared, &req.grant(), Target::Mutex, token, start, &tally);
    if let (Attempt::Won(..), Some(intent)) = (&outcome, intent) {
        // Granted by a quorum: the nodes that refused recorded (or renewed) the intent, which
        // would keep readers out there after our release. (Those that granted withdrew it.)
        let refused = shared.nodes.all() & !tally.given;
        if refused != 0 {
            withdraw(shared, name, intent, refused, false);
        }
    }
    outcome
}

/// Withdraws a waiting writer's intent from the nodes in `mask` (best effort: an intent left
/// behind expires within [`intent_ttl`]). `announce`: the writer gave up, so the readers its
/// intent held back are told where no other intent (and no writer) keeps them out.
fn withdraw(shared: &Shared, name: &str, intent: &Token, mask: u64, announce: bool) {
    let keys = [
        Arg::Str(name),
        Arg::Joined(name, scripts::WRITERS_SUFFIX),
        Arg::Joined(name, scripts::WAITING_SUFFIX),
    ];
    let args = [
        Arg::Str(intent.as_str()),
        Arg::Joined(name, scripts::RELEASED_SUFFIX),
        Arg::Str(if announce { "1" } else { "0" }),
    ];
    let call = Call::Script {
        script: &scripts::WITHDRAW,
        keys: &keys,
        args: &args,
    };
    let tally = round::round(
        &shared.nodes,
        call,
        mask,
        round::int_reply,
        Settle::Holds(shared.config.quorum),
    );
    log::debug!(
        "redmutex: {name:?}: withdrew a writer's intent on {} nodes",
        tally.yes
    );
}

/// Turns the writer's lease `lease` into a reader's, with the same token, in one round: on
/// every node one script turns the lock key from our token into our (lone reader's) marker, for
/// no less time than the writer had, so no writer can take the lock in between. The caller
/// holds `lease`'s round lock, and retires it.
///
/// The reader's deadline is `start + ttl - drift` when a quorum converted in time (the deadline
/// rule, as for an acquisition). Otherwise the lock is released (both forms, best effort: what
/// is left expires with its TTL) and the error returned: a partial conversion leaves neither a
/// writer's nor a reader's lease that could be trusted.
pub(crate) fn downgrade(lease: &Lease) -> Result<Lease> {
    let shared = &lease.shared;
    let name: &str = &lease.resource;
    if Instant::now() >= lease.deadline() {
        unwind(shared, name, &lease.token, lease.owing());
        return Err(Error::Expired {
            resource: name.to_owned(),
        });
    }
    let ttl = lease.options.ttl;
    let keys = [Arg::Str(name), Arg::Joined(name, scripts::WAITING_SUFFIX)];
    let args = [
        Arg::Str(lease.token.as_str()),
        Arg::Int(millis(ttl)),
        Arg::Joined(name, scripts::RELEASED_SUFFIX),
    ];
    let call = Call::Script {
        script: &scripts::DOWNGRADE,
        keys: &keys,
        args: &args,
    };
    let start = Instant::now();
    // Every reply is read: a conversion left unread could land after the release that
    // follows a failed downgrade, and leave a reader's marker behind.
    let tally = round::round(
        &shared.nodes,
        call,
        shared.nodes.all(),
        round::release_reply,
        Settle::All,
    );
    let timing = Timing {
        ttl,
        elapsed: start.elapsed(),
        drift: shared.drift(ttl),
    };
    log::debug!(
        "redmutex: downgrade {name:?}: {}/{} converted, {} failed, {:?}",
        tally.yes,
        shared.nodes.len(),
        tally.failures.len(),
        timing.elapsed
    );
    let error = match decide(shared, &tally, Question::Holds, Some(timing)) {
        Verdict::Won(_) => {
            let deadline = proven_until(shared, start, ttl).unwrap_or(start);
            return Ok(Lease::new(
                Arc::clone(shared),
                Arc::clone(&lease.resource),
                Target::Reader,
                lease.token,
                None,
                lease.options,
                deadline,
            )
            .written_to(lease.written() | tally.written));
        }
        Verdict::TooLate => Error::TooLate {
            resource: name.to_owned(),
            elapsed: timing.elapsed,
        },
        Verdict::Refused => Error::LockLost {
            resource: name.to_owned(),
        },
        Verdict::Unknown => no_quorum(shared, name, &tally),
    };
    unwind(shared, name, &lease.token, lease.owing());
    Err(error)
}

/// Releases whatever `token` holds of the name, as a writer or as a reader, announcing it
/// (owed to the nodes of `owing` that cannot be reached).
fn unwind(shared: &Shared, name: &str, token: &Token, owing: Owing) {
    for target in [Target::Reader, Target::Mutex] {
        let tally = release_round(
            shared,
            &target,
            name,
            token.as_str(),
            shared.nodes.all(),
            Announce::Yes,
            owing,
        );
        log::debug!(
            "redmutex: {name:?}: released {target:?} on {} nodes",
            tally.yes
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::scripts;

    /// The scripts recognise the readers' marker by its prefix, written into each of them.
    #[test]
    fn every_script_knows_the_marker() {
        for src in [
            scripts::READ_SRC,
            scripts::READ_EXTEND_SRC,
            scripts::READ_RELEASE_SRC,
            scripts::WRITE_SRC,
            scripts::DOWNGRADE_SRC,
            scripts::WITHDRAW_SRC,
        ] {
            assert!(
                src.starts_with(&format!("local P = \"{}\"", scripts::READERS_MARKER)),
                "{src}"
            );
        }
    }
}

//! Run once, on the lease protocol: a run's attempt, its completion, and the read of its
//! record.
//!
//! A run of job `<name>` in epoch `<epoch>` is a lease on the run key
//! `<name>:redmutex:run:<epoch>`, taken like a mutex's lock key by a script that first looks for
//! the completion record (`<run key>:redmutex:done`): where the record exists, a node grants
//! nothing and says so. So, while the leases hold, at most one caller starts the run of an
//! epoch; waiting callers sleep on the run key's release channel, which the completion (or a
//! release without completion) wakes. The run's fencing token is the job name's fencing counter
//! (the quorum max-register every fenced lease uses), so tokens grow across every run of the
//! job.
//!
//! The completion writes the record (result, fencing token, the runner's time) while the run key
//! holds the runner's token, deletes the run key, and wakes those waiting, in one script per
//! node; it succeeds when a quorum applied it. A caller that finds a record on any node (a
//! quorum wrote it, or a completion under way reached that node) does not run: the work was
//! done, whatever became of the rest of the write.
//!
//! If the runner dies before its completion, nothing is recorded and its lease runs out: then
//! another caller may start the run. That is the limit, stated in the docs: at most one *start
//! per lease*; effects that must happen exactly once need an idempotent write, or a write
//! fenced by the run's token at the resource.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Value;

use super::acquire::{Attempt, Fenced, Grant, Request, conclude, mark_ms};
use super::lease::{Announce, Lease, Owing, Target, Token, millis, no_quorum, release_round};
use super::verdict::{Question, Verdict, decide, votes};
use crate::command::Arg;
use crate::error::{Error, NodeCause, NodeError, Result, RunRecord};
use crate::round::{self, Call, Settle, Tally, Vote};
use crate::scripts;
use crate::shared::Shared;

/// The aux value of a node's "no" that means "the record exists" (above any fencing counter,
/// which stays below 2^53).
const RAN: i64 = i64::MAX;

/// The run key of `epoch` of job `name`.
pub(crate) fn run_key(name: &str, epoch: &str) -> Arc<str> {
    Arc::from(format!("{name}{}{epoch}", scripts::RUN_INFIX))
}

/// The begin script answers `{1, counter}` (granted), `{0, counter}` (running elsewhere) or
/// `{2, 0}` (the record exists: a "no" carrying [`RAN`]).
fn begin_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Array(items) => match items.as_slice() {
            [Value::Int(1), Value::Int(c)] if *c >= 0 => Some(Vote::Yes(*c)),
            [Value::Int(0), Value::Int(c)] if *c >= 0 => Some(Vote::No(*c)),
            [Value::Int(2), _] => Some(Vote::No(RAN)),
            _ => None,
        },
        _ => None,
    }
}

/// The completion script answers 0 (not our run) or `{1 or 2, the completion's time in ms}`.
fn complete_reply(v: &Value) -> Option<Vote> {
    match v {
        Value::Int(0) => Some(Vote::No(0)),
        Value::Array(items) => match items.as_slice() {
            [Value::Int(1 | 2), Value::Int(at)] if *at >= 0 => Some(Vote::Yes(*at)),
            _ => None,
        },
        _ => None,
    }
}

/// One attempt to start the run of `key` (the run key of the request's job): the lease, with
/// its fencing token; busy while it runs elsewhere; [`Error::AlreadyRan`] (fatal: no wait cures
/// it) once it ran.
pub(crate) fn attempt(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    mark: bool,
    key: &Arc<str>,
    epoch: &Arc<str>,
    retention: Duration,
) -> Attempt<Lease> {
    if let Err(e) = shared.check_longest("ttl", req.ttl) {
        return Attempt::Fatal(e);
    }
    let name: &str = req.resource;
    let run: &str = key;
    let token = Token::new();
    let start = Instant::now();
    let keys = [
        Arg::Str(run),
        Arg::Joined(name, scripts::FENCE_SUFFIX),
        Arg::Joined(run, scripts::WAITING_SUFFIX),
        Arg::Joined(run, scripts::DONE_SUFFIX),
    ];
    let args = [
        Arg::Str(token.as_str()),
        Arg::Int(millis(req.ttl)),
        Arg::Int(mark_ms(shared, mark)),
    ];
    let call = Call::Script {
        script: &scripts::RUN_BEGIN,
        keys: &keys,
        args: &args,
    };
    // Every reply is read: one node's "it ran" (a completion that reached it) makes the
    // attempt `AlreadyRan`, even when a quorum would grant the run.
    let tally = round::round(
        &shared.nodes,
        call,
        shared.nodes.all(),
        begin_reply,
        Settle::All,
    );
    let target = Target::Run {
        key: Arc::clone(key),
        epoch: Arc::clone(epoch),
        retention,
    };
    if tally.aux == RAN {
        // It ran: give back what this round took (the nodes that said no on their one run
        // granted nothing), and say how it went.
        let mask = tally.may_hold();
        if mask != 0 {
            let owing = Owing {
                ttl: req.ttl,
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
        return match record(shared, name, key, epoch) {
            Ok(Some(record)) => Attempt::Fatal(Error::AlreadyRan {
                resource: name.to_owned(),
                record: Box::new(record),
            }),
            // The record expired meanwhile: look again.
            Ok(None) => Attempt::Busy {
                holders: 0,
                votes: votes(shared, &tally),
                retry_in: None,
            },
            Err(e) => Attempt::Failed(e),
        };
    }
    let grant = Grant {
        fenced: Some(Fenced::One(req.resource)),
        ..req.grant()
    };
    conclude(shared, &grant, target, token, start, &tally)
}

/// Completes the run `lease` holds with `result`: records it on a quorum, ends the run key and
/// wakes those waiting. Called under the lease's round lock, after it was retired.
///
/// `Err(NotHeld)` when a quorum is known not to hold the run any more (nothing trustworthy was
/// recorded; another caller may run it).
pub(crate) fn complete(lease: &Lease, result: &str) -> Result<RunRecord> {
    let Target::Run {
        key,
        epoch,
        retention,
    } = &lease.target
    else {
        return Err(Error::InvalidArgument(
            "this lease is not a run-once job's run".into(),
        ));
    };
    let shared = &lease.shared;
    let run: &str = key;
    let fencing = lease.fencing.unwrap_or(0);
    // One time for every node's record: the runner's clock, in ms since the Unix epoch.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis);
    let keys = [
        Arg::Str(run),
        Arg::Joined(run, scripts::WAITING_SUFFIX),
        Arg::Joined(run, scripts::DONE_SUFFIX),
    ];
    let args = [
        Arg::Str(lease.token.as_str()),
        Arg::Str(result),
        Arg::Int(millis(*retention)),
        Arg::Int(fencing),
        Arg::Joined(run, scripts::RELEASED_SUFFIX),
        Arg::Int(now),
    ];
    let call = Call::Script {
        script: &scripts::RUN_COMPLETE,
        keys: &keys,
        args: &args,
    };
    let tally = round::round(
        &shared.nodes,
        call,
        shared.nodes.all(),
        complete_reply,
        Settle::Holds(shared.config.quorum),
    );
    log::debug!(
        "redmutex: completed {run:?}: {}/{} recorded, {} failed",
        tally.yes,
        shared.nodes.len(),
        tally.failures.len()
    );
    match decide(shared, &tally, Question::Holds, None) {
        Verdict::Won(_) | Verdict::TooLate => Ok(RunRecord {
            epoch: epoch.to_string(),
            result: result.to_owned(),
            fencing_token: fencing,
            completed_at: at(i64::try_from(now).unwrap_or(0)),
        }),
        Verdict::Refused => Err(Error::NotHeld {
            resource: lease.resource.to_string(),
        }),
        Verdict::Unknown => Err(no_quorum(shared, &lease.resource, &tally)),
    }
}

/// A time in ms since the Unix epoch, as a `SystemTime`.
fn at(ms: i64) -> SystemTime {
    let ms = u64::try_from(ms).unwrap_or(0);
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// Reads the completion record of `key` (the run key of `epoch` of job `name`) on every node:
/// the record any node holds (a completion that reached a node was made after the work), or
/// `None` when a quorum answered without one.
///
/// `Err(NoQuorum)` when too few nodes answered, none with a record.
pub(crate) fn record(
    shared: &Shared,
    name: &str,
    key: &str,
    epoch: &str,
) -> Result<Option<RunRecord>> {
    let get = [
        Arg::Str("HMGET"),
        Arg::Joined(key, scripts::DONE_SUFFIX),
        Arg::Str("result"),
        Arg::Str("fencing"),
        Arg::Str("at"),
    ];
    let calls = [Call::Command(&get)];
    let replies = round::replies(&shared.nodes, &calls, shared.nodes.all()).per_node;
    let mut tally = Tally::default();
    let mut found: Option<RunRecord> = None;
    for (node, replies) in shared.nodes.iter().zip(replies) {
        match parse(&node.name, &replies, epoch) {
            Ok(Some(r)) => {
                tally.yes += 1;
                // The earliest completion, should there be two (a run after a lost lease).
                if found
                    .as_ref()
                    .is_none_or(|f| r.fencing_token < f.fencing_token)
                {
                    found = Some(r);
                }
            }
            Ok(None) => tally.no += 1,
            Err(e) => tally.failures.push(e),
        }
    }
    if found.is_none() && tally.answered() < shared.config.quorum {
        return Err(no_quorum(shared, name, &tally));
    }
    Ok(found)
}

/// One node's reply to `HMGET record result fencing at`.
fn parse(
    node: &str,
    replies: &[Result<Value, NodeError>],
    epoch: &str,
) -> std::result::Result<Option<RunRecord>, NodeError> {
    let unexpected = |what: String| NodeError::new(node, NodeCause::Unexpected(what));
    let reply = match replies.first() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(e.clone()),
        None => return Err(unexpected("no reply".into())),
    };
    let Value::Array(fields) = reply else {
        return Err(unexpected(format!("{reply:?}")));
    };
    let text = |i: usize| match fields.get(i) {
        Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    let Some(result) = text(0) else {
        return Ok(None);
    };
    let number = |i: usize| text(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    Ok(Some(RunRecord {
        epoch: epoch.to_owned(),
        result,
        fencing_token: u64::try_from(number(1)).unwrap_or(0),
        completed_at: at(number(2)),
    }))
}

/// Checks a run's epoch and retention.
pub(crate) fn check(key: &str, retention: Duration) -> Result<()> {
    crate::shared::check_name("run key (the job name, a separator and the epoch)", key)?;
    if retention.as_millis() == 0 || retention > crate::shared::MAX_TTL {
        return Err(Error::InvalidConfig(format!(
            "the retention of a run's record must be between 1 ms and {:?}, got {retention:?}",
            crate::shared::MAX_TTL
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_votes() {
        let arr = |a: i64, b: i64| Value::Array(vec![Value::Int(a), Value::Int(b)]);
        assert_eq!(begin_reply(&arr(1, 7)), Some(Vote::Yes(7)));
        assert_eq!(begin_reply(&arr(0, 7)), Some(Vote::No(7)));
        assert_eq!(begin_reply(&arr(2, 0)), Some(Vote::No(RAN)));
        assert_eq!(begin_reply(&Value::Int(1)), None);
        assert_eq!(complete_reply(&Value::Int(0)), Some(Vote::No(0)));
        assert_eq!(complete_reply(&arr(2, 1_000)), Some(Vote::Yes(1_000)));
        assert_eq!(complete_reply(&arr(0, 1_000)), None);
    }

    #[test]
    fn run_keys_start_with_the_job_name() {
        assert_eq!(
            &*run_key("cron:report", "2026-12-01"),
            "cron:report:redmutex:run:2026-12-01"
        );
        assert_eq!(&*run_key("migrate", ""), "migrate:redmutex:run:");
    }
}

//! `redmutex run --once KEY[@EPOCH]`: run the command at most once per job and epoch (the cron
//! case), recording its exit status on a quorum; a later run learns that it ran (exit 82) or
//! that it runs elsewhere (exit 83 when not waiting).
//!
//! The run is started with the library's `RunOnce::start_with` (cancelled by a signal), the
//! command is supervised by `run::run_then`, and the run is completed with the command's exit
//! status instead of being released.

use std::time::{Duration, Instant, SystemTime};

use redmutex::kind::Once;
use redmutex::{Error, Handle, LeaseGuard, RunGuard, RunRecord, Start, Wait};

use crate::cli::{NodeArgs, RunArgs};
use crate::exit::{Exit, Failure};
use crate::held::Describe;
use crate::{factory, human, listen, logger, run};

impl Describe for Once {
    fn env(_: &Handle<Self>, guard: &LeaseGuard<Self>) -> Vec<(&'static str, String)> {
        let mut env = vec![("REDMUTEX_EPOCH", guard.epoch().to_owned())];
        if let Some(t) = guard.fencing_token() {
            env.push(("REDMUTEX_FENCING_TOKEN", t.to_string()));
        }
        env
    }

    fn note(_: &Handle<Self>, guard: &LeaseGuard<Self>) -> String {
        format!(
            ", running epoch {:?}, fencing token {}",
            guard.epoch(),
            guard.fencing_token().unwrap_or(0)
        )
    }
}

/// `KEY@EPOCH` as the job and the epoch (after the last `@`); `KEY` alone is epoch `""`.
pub fn split(key: &str) -> (&str, &str) {
    key.rsplit_once('@').unwrap_or((key, ""))
}

/// `run --once`.
pub fn run_once(nodes: &NodeArgs, args: &RunArgs) -> Result<Exit, Failure> {
    let signals = listen()?;
    let factory = factory(nodes, Some(args.wait.ttl))?;
    let (name, epoch) = split(&args.key);
    // Keep-alive is on for run-once jobs: the run is renewed while the command runs.
    let job = factory
        .create_run_once(name)
        .with_retention(args.retention)
        .with_epoch(epoch);
    let cancel = signals.cancel_flag();
    let start = Instant::now();
    let started = match args.wait.limit() {
        Some(limit) if limit.is_zero() => job.try_start(epoch),
        Some(limit) => job.start_with(epoch, Wait::timeout(limit).cancel_on(cancel)),
        None => job.start_with(epoch, Wait::forever().cancel_on(cancel)),
    };
    let waited = start.elapsed();
    let run = match started {
        Ok(Start::Run(run)) => run,
        Ok(Start::Ran(record)) => {
            log::info!(
                "{:?} already ran: {} (fencing token {}, recorded {}); not running the command",
                args.key,
                record.result,
                record.fencing_token,
                ago(&record)
            );
            return Ok(Exit::AlreadyRan);
        }
        Ok(Start::Running) => {
            log::info!(
                "gave up on {:?} after {}: it is running elsewhere",
                args.key,
                human(waited)
            );
            return Ok(Exit::RunningElsewhere);
        }
        Err(Error::Cancelled { .. }) if signals.received().is_some() => {
            let sig = signals.received().unwrap_or(0);
            log::info!(
                "interrupted by {} after waiting {} for {:?}",
                crate::signals::name(sig),
                human(waited),
                args.key
            );
            return Ok(Exit::Signal(sig));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(sig) = signals.received() {
        // The signal came during the winning round: give the run back unrecorded.
        drop(run);
        return Ok(Exit::Signal(sig));
    }
    log::info!(
        "running {:?} after waiting {}{}",
        args.key,
        human(waited),
        Once::note(&job, &run)
    );
    run::run_then(args, &job, run, &signals, complete)
}

/// Records the command's end as the run's result; the exit status is the command's, unless
/// the record could not be written.
fn complete(run: RunGuard, child: Exit) -> Exit {
    let result = match child {
        Exit::Success => "exit 0".to_owned(),
        Exit::Child(code) => format!("exit {code}"),
        Exit::Signal(sig) => format!("killed by {}", crate::signals::name(sig)),
        other => format!("exit {}", other.code()),
    };
    let key = format!("{}@{}", run.resource(), run.epoch());
    match run.complete(&result) {
        Ok(record) => {
            log::info!(
                "recorded {key:?}: {} (fencing token {})",
                record.result,
                record.fencing_token
            );
            child
        }
        Err(e @ (Error::LockLost { .. } | Error::Expired { .. })) => {
            logger::error(&format!(
                "{e}: the run was not recorded, and may have overlapped another run"
            ));
            if child == Exit::Success {
                Exit::LostLease
            } else {
                child
            }
        }
        Err(e) => {
            logger::warn(&format!(
                "could not record {key:?} ({e}): another run may start it once its lease ends"
            ));
            if child == Exit::Success {
                crate::exit::exit_for(&e)
            } else {
                child
            }
        }
    }
}

/// How long ago a record was written, for messages.
fn ago(record: &RunRecord) -> String {
    match SystemTime::now().duration_since(record.completed_at) {
        Ok(d) => format!("{} ago", human(Duration::from_secs(d.as_secs()))),
        Err(_) => "just now".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_last_at_sign() {
        assert_eq!(
            split("backup@2026-12-01T03:00"),
            ("backup", "2026-12-01T03:00")
        );
        assert_eq!(split("a@b@c"), ("a@b", "c"));
        assert_eq!(split("migrate"), ("migrate", ""));
        assert_eq!(split("x@"), ("x", ""));
    }
}

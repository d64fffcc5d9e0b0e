//! `redmutex run`: hold the lock while a child runs.
//!
//! The child is spawned with `std::process::Command`, stays in redmutex's process group (as
//! with flock, so a terminal's ^C and ^Z reach it directly) and inherits stdin, stdout and
//! stderr. The main thread then waits for one of: the child exiting, a signal, or the lease
//! being lost. It only signals the child while the child has not been reaped (it is reaped
//! by `try_wait` on this same thread), so a recycled pid is never hit.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redmutex::{Error, Handle, LeaseGuard, LossReason};
use rustix::process::{Pid, Signal, kill_process};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT};

use crate::cli::RunArgs;
use crate::exit::{Exit, Failure};
use crate::held::Describe;
use crate::lease;
use crate::logger;
use crate::signals::{self, Event, Listener};

/// How often the child is polled when no event arrives (SIGCHLD usually wakes us first).
const POLL: Duration = Duration::from_millis(50);

/// Runs the child while holding `guard` (of `lock`: a lock, a side of a read-write lock, a
/// semaphore, or an election's leadership), and releases it when the child has ended.
pub fn run<K: Describe>(
    args: &RunArgs,
    lock: &Handle<K>,
    guard: LeaseGuard<K>,
    signals: &Listener,
) -> Result<Exit, Failure> {
    run_then(args, lock, guard, signals, |guard, child| {
        release(guard, Some(child))
    })
}

/// [`run`], ending the lease with `end` (given the child's exit) when the child ended while it
/// was still held: a release for `run`, the run's completion for `run --once`. A lease lost
/// meanwhile is released as [`run`] does.
pub fn run_then<K: Describe>(
    args: &RunArgs,
    lock: &Handle<K>,
    guard: LeaseGuard<K>,
    signals: &Listener,
    end: impl FnOnce(LeaseGuard<K>, Exit) -> Exit,
) -> Result<Exit, Failure> {
    let mut cmd = command(args);
    cmd.env("REDMUTEX_KEY", &args.key)
        .env("REDMUTEX_TOKEN", guard.token());
    // REDMUTEX_FENCING_TOKEN with --fencing; REDMUTEX_PERMIT(S) with --permits.
    cmd.envs(K::env(lock, &guard));
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            release(guard, None);
            return Err(spawn_failure(&program(args), &e));
        }
    };
    log::info!("started {:?} (pid {})", program(args), child.id());

    let held = Instant::now();
    lease::watch(&guard, &signals.tx);
    let outcome = supervise(&mut child, args, &signals.events);
    let status = match outcome.status {
        Ok(status) => status,
        Err(e) => {
            release(guard, None);
            return Err(Failure::new(
                Exit::OsError,
                format!("waiting for the command: {e}"),
            ));
        }
    };
    let child_exit = child_exit(status);
    log::info!(
        "the command ended ({}) after {}",
        describe(status),
        crate::human(held.elapsed())
    );
    if outcome.lost {
        release(guard, None);
        return Ok(Exit::LostLease);
    }
    Ok(end(guard, child_exit))
}

/// What the supervision loop saw.
struct Supervised {
    status: io::Result<ExitStatus>,
    lost: bool,
}

/// Waits for the child, passing on signals, and stops it if the lease is lost.
fn supervise(child: &mut Child, args: &RunArgs, events: &Receiver<Event>) -> Supervised {
    let pid = Pid::from_child(child);
    let terminal_signals = in_terminal_foreground();
    let mut lost = false;
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Supervised {
                    status: Ok(status),
                    lost,
                };
            }
            Ok(None) => {}
            Err(e) => {
                // Never leave the child running unlocked.
                let _ = child.kill();
                let status = child.wait().map_err(|_| e);
                return Supervised { status, lost };
            }
        }
        let now = Instant::now();
        let timeout = kill_at.map_or(POLL, |t| t.saturating_duration_since(now).min(POLL));
        match events.recv_timeout(timeout) {
            Ok(Event::Signal(SIGCHLD)) | Err(RecvTimeoutError::Timeout) => {}
            Ok(Event::Signal(sig)) => {
                if terminal_signals && (sig == SIGINT || sig == SIGHUP) {
                    log::info!(
                        "{} came from the terminal, which sent it to the command too",
                        signals::name(sig)
                    );
                } else {
                    log::info!("passing {} on to the command", signals::name(sig));
                    send(pid, sig);
                }
            }
            Ok(Event::Lost(reason)) => {
                if !lost {
                    lost = true;
                    logger::error(&lost_message(&args.key, reason));
                    send(pid, signal_hook::consts::SIGTERM);
                    kill_at = Some(Instant::now() + args.kill_after);
                }
            }
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
        }
        if !killed && kill_at.is_some_and(|t| Instant::now() >= t) {
            log::info!(
                "the command outlived --kill-after ({:?}): sending SIGKILL",
                args.kill_after
            );
            let _ = child.kill();
            killed = true;
        }
    }
}

fn lost_message(key: &str, reason: LossReason) -> String {
    format!("lost the lease on {key:?}: {reason}; stopping the command")
}

/// Sends `sig` to the child. It has not been reaped yet (only this thread reaps it), so the
/// pid is still its own; an error means it is already exiting.
fn send(pid: Pid, sig: i32) {
    if let Some(signal) = Signal::from_named_raw(sig)
        && let Err(e) = kill_process(pid, signal)
    {
        log::debug!("sending {} to the command: {e}", signals::name(sig));
    }
}

/// Whether redmutex is in the foreground process group of its controlling terminal: then the
/// terminal sends ^C (SIGINT) and hangup (SIGHUP) to the whole group, child included, and
/// passing them on would deliver them twice.
fn in_terminal_foreground() -> bool {
    std::fs::File::open("/dev/tty")
        .ok()
        .and_then(|tty| rustix::termios::tcgetpgrp(&tty).ok())
        .is_some_and(|fg| fg == rustix::process::getpgrp())
}

fn command(args: &RunArgs) -> Command {
    if let Some(shell) = &args.shell {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(shell);
        return cmd;
    }
    let mut argv = args.argv.iter();
    let mut cmd = Command::new(argv.next().map_or_else(OsString::new, Clone::clone));
    cmd.args(argv);
    cmd
}

fn program(args: &RunArgs) -> String {
    if args.shell.is_some() {
        return "sh".into();
    }
    args.argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn spawn_failure(program: &str, e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::NotFound {
        Failure::new(Exit::NotFound, format!("command not found: {program}"))
    } else {
        Failure::new(Exit::CannotRun, format!("cannot run {program}: {e}"))
    }
}

/// The command's end, for messages.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by {}", signals::name(sig)),
        (None, None) => format!("{status}"),
    }
}

fn child_exit(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(0), _) => Exit::Success,
        (Some(code), _) => Exit::Child(u8::try_from(code & 0xff).unwrap_or(u8::MAX)),
        (None, Some(sig)) => Exit::Signal(sig),
        (None, None) => Exit::Software,
    }
}

/// Releases the lock after the child ended with `child` (`None`: no child, or the lease was
/// already lost, so failures are not reported again), and decides the exit status.
fn release<K>(guard: LeaseGuard<K>, child: Option<Exit>) -> Exit {
    let key = guard.resource().to_owned();
    log::debug!(
        "releasing {key:?} with {} of its lease left",
        crate::human(guard.validity())
    );
    let result = guard.release();
    let Some(child) = child else {
        match result {
            Ok(()) => log::info!("released {key:?}"),
            Err(e) => log::info!("lease on {key:?} lost: {e}"),
        }
        return Exit::LostLease;
    };
    match result {
        Ok(()) => {
            log::info!("released {key:?}: it stayed held throughout");
            child
        }
        Err(e @ (Error::LockLost { .. } | Error::Expired { .. })) => {
            logger::error(&format!(
                "{e}: the command may have overlapped another holder"
            ));
            if child == Exit::Success {
                Exit::LostLease
            } else {
                child
            }
        }
        // The command ran under the lock, but the lock stays behind until its TTL ends: with
        // a command that succeeded, that is the outcome (an ACL that forbids the release
        // would otherwise go unnoticed, run after run).
        Err(e) if child == Exit::Success => {
            logger::error(&format!(
                "the command succeeded, but {key:?} could not be released ({e}); it expires \
                 with its TTL"
            ));
            crate::exit::exit_for(&e)
        }
        Err(e) => {
            logger::warn(&format!(
                "could not release {key:?} ({e}); it expires with its TTL"
            ));
            child
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_pass_through() {
        assert_eq!(child_exit(ExitStatus::from_raw(0)), Exit::Success);
        assert_eq!(child_exit(ExitStatus::from_raw(3 << 8)), Exit::Child(3));
        assert_eq!(child_exit(ExitStatus::from_raw(15)), Exit::Signal(15));
        assert_eq!(child_exit(ExitStatus::from_raw(9)), Exit::Signal(9));
    }

    #[test]
    fn spawn_errors() {
        let nf = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(spawn_failure("x", &nf).exit, Exit::NotFound);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(spawn_failure("x", &denied).exit, Exit::CannotRun);
    }
}

//! Acquisition: one attempt (a round, plus fencing), and the one waiting loop every blocking
//! acquisition goes through (wake-up, fairness, retries, deadline, cancellation).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::RngExt;

use super::lease::{Lease, LeaseOptions, Target, Token, millis, no_quorum, release_round};
use super::verdict::{Question, Timing, Verdict, judge};
use crate::command::Arg;
use crate::error::{Error, Result};
use crate::round::{self, Call, Tally};
use crate::scripts;
use crate::shared::Shared;

/// Fencing values are Lua numbers (doubles): exact up to 2^53.
const MAX_FENCE: u64 = 1 << 53;
/// Write-back rounds one grant may take when it finds a counter raised by someone else.
const FENCE_ROUNDS: usize = 4;
/// Bounds of the short look again after a wake-up that found the lock still held.
const SETTLE_MIN: Duration = Duration::from_millis(1);
const SETTLE_MAX: Duration = Duration::from_millis(20);

/// How long an acquisition may wait for a lock held elsewhere, and a flag that calls the wait
/// off: the argument of [`RedLock::acquire_with`](crate::RedLock::acquire_with).
///
/// # Examples
///
/// ```no_run
/// use std::sync::atomic::AtomicBool;
/// use std::time::Duration;
/// use redmutex::{RedLockFactory, Wait};
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001"])?;
/// let stop = AtomicBool::new(false); // set by a signal handler, another thread...
/// let guard = factory
///     .create_lock("jobs:42")
///     .acquire_with(Wait::timeout(Duration::from_secs(30)).cancel_on(&stop))?;
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct Wait<'a> {
    deadline: Option<Instant>,
    cancel: Option<&'a AtomicBool>,
}

impl<'a> Wait<'a> {
    /// Wait as long as the lock is held elsewhere.
    pub const fn forever() -> Self {
        Self {
            deadline: None,
            cancel: None,
        }
    }

    /// Wait at most about `timeout` (one more round may follow it). A timeout too long to
    /// represent is no timeout.
    pub fn timeout(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now().checked_add(timeout),
            cancel: None,
        }
    }

    /// Wait until `deadline` at most (one more round may follow it).
    pub const fn until(deadline: Instant) -> Self {
        Self {
            deadline: Some(deadline),
            cancel: None,
        }
    }

    /// Also stop waiting, with [`Error::Cancelled`], once `flag` is set (it is checked before
    /// every round and at least every 20 ms while waiting). A round under way is finished first
    /// (it is bounded by the connect and I/O timeouts), and a lock it took is released.
    pub const fn cancel_on<'b>(self, flag: &'b AtomicBool) -> Wait<'b> {
        Wait {
            deadline: self.deadline,
            cancel: Some(flag),
        }
    }

    /// The deadline, if any.
    #[must_use]
    pub const fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Acquire))
    }
}

/// The outcome of one attempt.
pub(crate) enum Attempt<T> {
    Won(T),
    /// Held elsewhere: a quorum answered without granting it. `holders`: the nodes that said
    /// no (they hold the lock being waited for).
    Busy {
        holders: u64,
    },
    /// Too few nodes answered, or the round was too slow.
    Failed(Error),
    /// An error that another attempt cannot cure (a semaphore used with another permit count):
    /// returned at once.
    Fatal(Error),
}

/// The waiting loop: runs `attempt` until it wins, the wait runs out or is cancelled, or
/// `max_retries + 1` attempts in a row fail.
///
/// `attempt(mark, woken_by)`: `mark` asks the attempt to mark `resource` as waited for, so that
/// its release is announced; `woken_by` is the payload of the release announcement that woke
/// this wait, if one did (a semaphore announces the permit it freed). Waiters are woken by the
/// releases of `members`: `[resource]`, or a multi-lock's resources.
pub(crate) fn wait_for<T>(
    shared: &Shared,
    resource: &str,
    members: &[&str],
    wait: &Wait<'_>,
    mut attempt: impl FnMut(bool, Option<&[u8]>) -> Attempt<T>,
) -> Result<T> {
    let start = Instant::now();
    let cancelled = || Error::Cancelled {
        resource: resource.to_owned(),
        waited: start.elapsed(),
    };
    if wait.cancelled() {
        return Err(cancelled());
    }
    let waker = &shared.waker;
    let wake = waker.enabled();
    if wake {
        // Fairness: we just released this lock to waiters; let one of them take it first.
        let grace = waker.grace_left(resource);
        if !grace.is_zero() {
            let grace = wait
                .deadline
                .map_or(grace, |d| grace.min(d.saturating_duration_since(start)));
            sleep(grace, wait.cancel);
        }
    }
    let mut seat = None;
    let mut failures = 0u32;
    // The first attempt is a bare `SET NX PX`, as fast as it gets; a busy one is followed at
    // once by one that marks the resource as waited for (after subscribing to its releases),
    // so that the holder's release is announced.
    let mut mark = false;
    // Set after a wake-up: the release that woke us was heard from one node, and may not have
    // reached the others yet when our attempt did. `message`: what the release announced.
    let mut woken = false;
    let mut message: Option<Vec<u8>> = None;
    loop {
        if wait.cancelled() {
            return Err(cancelled());
        }
        let attempt_start = Instant::now();
        let failed = match attempt(mark, message.take().as_deref()) {
            Attempt::Won(t) => return Ok(t),
            Attempt::Fatal(e) => return Err(e),
            Attempt::Busy { holders } if wake && !mark => {
                if seat.is_none() {
                    seat = Some(waker.enter(&shared.nodes, resource, members, holders));
                }
                mark = true;
                continue;
            }
            Attempt::Busy { .. } => {
                failures = 0;
                None
            }
            Attempt::Failed(e) => {
                failures += 1;
                if failures > shared.config.max_retries {
                    return Err(e);
                }
                Some(e)
            }
        };
        let mut pause = pause(shared);
        if woken && failed.is_none() {
            // Woken, yet still busy (both the bare and the marking attempt): the release may
            // still be on its way to the other nodes. Look again after a few round times
            // rather than a whole pause; a later release still wakes us sooner.
            let round = attempt_start.elapsed();
            pause = pause.min(round.saturating_mul(3).clamp(SETTLE_MIN, SETTLE_MAX));
        }
        if let Some(deadline) = wait.deadline {
            let now = Instant::now();
            if now >= deadline {
                return Err(failed.unwrap_or_else(|| Error::Timeout {
                    resource: resource.to_owned(),
                    waited: start.elapsed(),
                }));
            }
            // Sleep at most to the deadline, then make one last round.
            pause = pause.min(deadline - now);
        }
        let was_woken = woken;
        message = match (&seat, failed) {
            (Some(seat), None) => seat.wait(pause, wait.cancel),
            _ => {
                sleep(pause, wait.cancel);
                None
            }
        };
        woken = message.is_some();
        // Woken by a release: the lock is most likely free, so the next attempt is bare again.
        // (After the short look that follows a wake-up, the next attempt is bare too.)
        mark = wake && !woken && !was_woken;
    }
}

/// Sleeps for `d`, or until `cancel` is set.
fn sleep(d: Duration, cancel: Option<&AtomicBool>) {
    let Some(cancel) = cancel else {
        std::thread::sleep(d);
        return;
    };
    let end = Instant::now() + d;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || cancel.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// The pause between rounds: `retry_delay + uniform[0, retry_jitter)`.
pub(crate) fn pause(shared: &Shared) -> Duration {
    let c = &shared.config;
    let jitter = u64::try_from(c.retry_jitter.as_nanos()).unwrap_or(u64::MAX);
    let extra = if jitter == 0 {
        0
    } else {
        rand::rng().random_range(0..jitter)
    };
    c.retry_delay.saturating_add(Duration::from_nanos(extra))
}

/// How long a waiter's mark stays: well past the longest pause between its rounds.
pub(crate) fn waiting_mark(shared: &Shared) -> Duration {
    let c = &shared.config;
    c.retry_delay
        .saturating_add(c.retry_jitter)
        .saturating_mul(2)
        .saturating_add(Duration::from_millis(100))
}

/// What a mutex acquisition asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MutexRequest<'a> {
    pub(crate) resource: &'a Arc<str>,
    pub(crate) ttl: Duration,
    pub(crate) fencing: bool,
    pub(crate) keep_alive: bool,
    pub(crate) max_hold: Option<Duration>,
}

/// Takes a mutex, waiting as `wait` says.
pub(crate) fn acquire(
    shared: &Arc<Shared>,
    req: &MutexRequest<'_>,
    wait: &Wait<'_>,
) -> Result<Lease> {
    let start = Instant::now();
    let resource: &str = req.resource;
    let lease = wait_for(shared, resource, &[resource], wait, |mark, _| {
        attempt(shared, req, mark)
    })?;
    if wait.cancelled() {
        // Cancelled during the winning round: once the flag is set, no guard is handed out.
        let _ = lease.release();
        return Err(Error::Cancelled {
            resource: req.resource.to_string(),
            waited: start.elapsed(),
        });
    }
    Ok(lease)
}

/// Takes a mutex if one round can.
pub(crate) fn try_acquire(shared: &Arc<Shared>, req: &MutexRequest<'_>) -> Result<Option<Lease>> {
    match attempt(shared, req, false) {
        Attempt::Won(lease) => Ok(Some(lease)),
        Attempt::Busy { .. } => Ok(None),
        Attempt::Failed(e) | Attempt::Fatal(e) => Err(e),
    }
}

/// One acquisition round of a mutex (plus the fencing rounds when fencing is on). `mark`: the
/// caller will wait if the lock is busy, so mark the resource as waited for.
fn attempt(shared: &Arc<Shared>, req: &MutexRequest<'_>, mark: bool) -> Attempt<Lease> {
    let resource: &str = req.resource;
    let token = Token::new();
    let ttl_ms = millis(req.ttl);
    let start = Instant::now();
    let tally = if req.fencing || mark {
        // The acquire script: SET NX PX, plus the fencing counter and the waiting mark.
        let mark_ms = if mark {
            millis(waiting_mark(shared))
        } else {
            0
        };
        let keys = [
            Arg::Str(resource),
            Arg::Joined(resource, scripts::FENCE_SUFFIX),
            Arg::Joined(resource, scripts::WAITING_SUFFIX),
        ];
        let args = [
            Arg::Str(token.as_str()),
            Arg::Int(ttl_ms),
            Arg::Int(mark_ms),
        ];
        let call = Call::Script {
            script: &scripts::ACQUIRE,
            keys: &keys,
            args: &args,
        };
        round::round(
            &shared.nodes,
            call,
            shared.nodes.all(),
            round::acquire_reply,
        )
    } else {
        let args = [
            Arg::Str("SET"),
            Arg::Str(resource),
            Arg::Str(token.as_str()),
            Arg::Str("NX"),
            Arg::Str("PX"),
            Arg::Int(ttl_ms),
        ];
        round::round(
            &shared.nodes,
            Call::Command(&args),
            shared.nodes.all(),
            round::set_reply,
        )
    };
    let timing = Timing {
        ttl: req.ttl,
        elapsed: start.elapsed(),
        drift: shared.drift(req.ttl),
    };
    log::debug!(
        "redmutex: acquire {resource:?}: {}/{} yes, {} no, {} failed, quorum {}, {:?}",
        tally.yes,
        shared.nodes.len(),
        tally.no,
        tally.failures.len(),
        shared.config.quorum,
        timing.elapsed
    );
    let verdict = judge(&tally, shared.config.quorum, Question::Grant, Some(timing));
    let failure = match verdict {
        Verdict::Won(_) => {
            // Every SET was sent after `start`, so no key expires before `start + ttl` by the
            // nodes' clocks (give or take the drift).
            let deadline = start.checked_add(req.ttl - timing.drift).unwrap_or(start);
            let fencing = if req.fencing {
                fence(shared, resource, Fenced::One(resource), tally.aux, deadline).map(Some)
            } else {
                Ok(None)
            };
            match fencing {
                Ok(fencing) => {
                    let options = LeaseOptions {
                        ttl: req.ttl,
                        keep_alive: req.keep_alive,
                        hold_until: req.max_hold.and_then(|d| start.checked_add(d)),
                    };
                    return Attempt::Won(Lease::new(
                        Arc::clone(shared),
                        Arc::clone(req.resource),
                        Target::Mutex,
                        token,
                        fencing,
                        options,
                        deadline,
                    ));
                }
                Err(e) => Some(e),
            }
        }
        Verdict::TooLate => {
            log::warn!(
                "redmutex: {resource:?}: a quorum answered but the round took {:?} of a {:?} TTL",
                timing.elapsed,
                req.ttl
            );
            Some(Error::TooLate {
                resource: resource.to_owned(),
                elapsed: timing.elapsed,
            })
        }
        Verdict::Refused => None,
        Verdict::Unknown => Some(no_quorum(shared, resource, &tally)),
    };
    take_back(shared, resource, &token, &tally);
    match failure {
        Some(e) => Attempt::Failed(e),
        None => Attempt::Busy {
            holders: tally.refused,
        },
    }
}

/// Not acquired: takes back every SET that may have landed, in one round, so a split vote frees
/// the lock at once instead of blocking everyone for a TTL. Nodes that answered "no" certainly
/// did not set our token and are skipped. Nobody is woken: the lock is still held elsewhere.
fn take_back(shared: &Shared, resource: &str, token: &Token, tally: &Tally) {
    let mask = tally.written & !tally.refused;
    if mask != 0 {
        let released = release_round(
            shared,
            &Target::Mutex,
            resource,
            token.as_str(),
            mask,
            false,
        );
        log::debug!(
            "redmutex: released partial {resource:?} on {} nodes",
            released.yes
        );
    }
}

/// Whose fencing counters a grant raises.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fenced<'a> {
    /// A lock's resource (`<resource>:redmutex:fence`, reading 0.1's counter on first use).
    One(&'a str),
    /// A multi-lock's resources: one token above all their counters.
    Many(&'a [Arc<str>]),
}

impl Fenced<'_> {
    /// Hands `f` the fence call that raises the counters to at least `t`.
    fn with_call<R>(self, t: u64, f: impl FnOnce(Call<'_>) -> R) -> R {
        match self {
            Self::One(resource) => {
                let keys = [Arg::Joined(resource, scripts::FENCE_SUFFIX)];
                let args = [
                    Arg::Int(t),
                    Arg::Joined(scripts::LEGACY_FENCE_PREFIX, resource),
                ];
                f(Call::Script {
                    script: &scripts::FENCE,
                    keys: &keys,
                    args: &args,
                })
            }
            Self::Many(resources) => {
                let keys: Vec<Arg<'_>> = resources
                    .iter()
                    .map(|r| Arg::Joined(r, scripts::FENCE_SUFFIX))
                    .collect();
                let args = [Arg::Int(t)];
                f(Call::Script {
                    script: &scripts::MULTI_FENCE,
                    keys: &keys,
                    args: &args,
                })
            }
        }
    }
}

/// The fencing rounds of a quorum max-register: `seen` is the largest counter the grant's
/// round read. Writes `t = seen + 1` back (never lowering a counter); each node answers the
/// value it held before. `t` is issued only when a quorum acknowledged the write before
/// `deadline` (the end of the lease) and *no* acknowledging node already held `t` or more;
/// otherwise the write is repeated with one more than the largest value reported.
///
/// Why that is enough: an issued `t1` was written to a quorum W1 before its lease ended, and
/// every later grant happens after that. A later grant's write quorum W2 shares a node with W1,
/// where it lands after W1's write, so that node reports at least `t1`, and the later grant can
/// only issue a value above it. No ordering of the reads with the writes is assumed (a read of
/// a node taken early in a slow round, or a write-back delayed on its way, cannot produce a
/// repeat).
///
/// A multi-lock's token is one register over all its resources' counters ([`Fenced::Many`]):
/// `t` exceeds every counter read, is written to each, and each node answers the largest value
/// any of them held; the argument above holds for each resource.
pub(crate) fn fence(
    shared: &Shared,
    resource: &str,
    fenced: Fenced<'_>,
    seen: i64,
    deadline: Instant,
) -> Result<u64> {
    let out_of_range = |v: i64| Error::InvalidConfig(format!("fencing counter {v} out of range"));
    let next = |v: i64| {
        u64::try_from(v)
            .ok()
            .and_then(|v| v.checked_add(1))
            .filter(|t| *t < MAX_FENCE)
            .ok_or_else(|| out_of_range(v))
    };
    let mut t = next(seen)?;
    let started = Instant::now();
    for _ in 0..FENCE_ROUNDS {
        let tally = fenced.with_call(t, |call| {
            round::round(&shared.nodes, call, shared.nodes.all(), round::fence_reply)
        });
        if Instant::now() >= deadline {
            return Err(Error::TooLate {
                resource: resource.to_owned(),
                elapsed: started.elapsed(),
            });
        }
        match judge(&tally, shared.config.quorum, Question::Holds, None) {
            Verdict::Won(_) => {}
            _ => return Err(no_quorum(shared, resource, &tally)),
        }
        let prior = u64::try_from(tally.aux_yes).unwrap_or(0);
        if prior < t {
            return Ok(t);
        }
        log::debug!(
            "redmutex: {resource:?}: a node already held fencing counter {prior} >= {t}; \
             writing {} instead",
            prior + 1
        );
        t = next(tally.aux_yes)?;
    }
    Err(Error::TooLate {
        resource: resource.to_owned(),
        elapsed: started.elapsed(),
    })
}

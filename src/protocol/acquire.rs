//! Acquisition: one attempt (a round, plus fencing), and the one waiting loop every blocking
//! acquisition goes through (wake-up, fairness, retries, deadline, cancellation).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::RngExt;

use super::lease::{
    Announce, Lease, LeaseOptions, Owing, Target, Token, millis, no_quorum, proven_until,
    release_round,
};
use super::verdict::{Question, Timing, Verdict, admitted, decide, votes};
use crate::command::Arg;
use crate::error::{Error, Result};
use crate::observe::trace::OpSpan;
use crate::observe::{self, AcquireEvent, ContendedEvent, GiveUpEvent, Votes, Waiting};
use crate::queue::{Hold, Mode, Place, named};
use crate::round::{self, Call, Settle, Tally};
use crate::scripts;
use crate::shared::Shared;

/// Fencing values are Lua numbers (doubles): exact up to 2^53.
const MAX_FENCE: u64 = 1 << 53;
/// Write-back rounds one grant may take when it finds a counter raised by someone else.
const FENCE_ROUNDS: usize = 4;
/// Bounds of the short look again after a wake-up that found the lock still held.
const SETTLE_MIN: Duration = Duration::from_millis(1);
const SETTLE_MAX: Duration = Duration::from_millis(20);
/// A lock's waiter marks again (its waiting mark, its line's order set entry) once a third of
/// the mark's life ([`waiting_mark`]) has passed since it last marked, not on every attempt: the
/// attempts in between do not mark (a bare `SET NX PX` without fencing). Its next attempt comes
/// at most a pause (plus a deferral to another process, [`SETTLE_MAX`]) later, while the mark
/// lives two pauses and 100 ms: it does not lapse while the waiter waits (unless another client
/// marks the resource with a shorter life).
const MARK_FRESH: u32 = 3;

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

    /// Whether a cancel flag was given (a wait then looks at it every 20 ms).
    pub(crate) fn cancellable(&self) -> bool {
        self.cancel.is_some()
    }
}

/// What a waiting attempt marks on the nodes: whether to mark the resource as waited for (so
/// that its release is announced), and, for a lock, since when this waiter's local queue has
/// waited (microseconds of the wall clock, 0 for none): the marker keeps the earliest, and the
/// release announcement names it, so the longest-waiting process tries first.
///
/// `handover`: for a lock, the hand-over mark of this waiter's line, when the release just made
/// in its process left it on a node (`scripts::HANDOVER_RELEASE_SRC`): the attempt takes it
/// over (`scripts::TAKEOVER_SRC`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mark<'a> {
    pub(crate) on: bool,
    pub(crate) since: u64,
    pub(crate) handover: Option<&'a str>,
}

/// The outcome of one attempt.
pub(crate) enum Attempt<T> {
    /// Taken, with the winning round's votes.
    Won(T, Votes),
    /// Held elsewhere: a quorum answered without granting it. `holders`: the nodes that said
    /// no (they hold the lock being waited for). `retry_in`: what keeps it busy ends by itself
    /// then, with no release to announce it (a dead writer's intent), so a waiter tries again
    /// by then at the latest.
    Busy {
        holders: u64,
        votes: Votes,
        retry_in: Option<Duration>,
    },
    /// Too few nodes answered, or the round was too slow.
    Failed(Error),
    /// An error that another attempt cannot cure (a semaphore used with another permit count):
    /// returned at once.
    Fatal(Error),
}

/// What an acquisition hands out.
pub(crate) trait Acquired {
    /// Releases what a winning round took, when the wait was cancelled while that round ran:
    /// once the cancel flag is set, nothing is handed out.
    fn give_back(self);

    /// Won through the local queue: keeps `hold` until the lease ends.
    fn hold_in(&self, hold: Hold);
}

impl Acquired for Lease {
    fn give_back(self) {
        let _ = self.release();
    }

    fn hold_in(&self, hold: Hold) {
        self.keep_hold(hold);
    }
}

/// How far an acquisition got, for its statistics and events.
#[derive(Debug, Clone, Copy)]
struct Progress {
    start: Instant,
    /// Attempts made.
    rounds: u32,
    /// Whether an attempt found the lock held elsewhere.
    contended: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            rounds: 0,
            contended: false,
        }
    }
}

/// The waiting loop: runs `attempt` until it wins, the wait runs out or is cancelled, or
/// `max_retries + 1` attempts in a row fail.
///
/// `attempt(mark, woken_by)`: `mark` asks the attempt to mark `resource` as waited for, so that
/// its release is announced; `woken_by` is the payload of the release announcement that woke
/// this wait, if one did (a semaphore announces the permit it freed). Waiters are woken by the
/// releases of `members`: `[resource]`, or a multi-lock's resources.
///
/// Waiters of this factory line up in its local queue (`crate::queue`), in `mode`: only the
/// head of a line makes attempts.
///
/// Every blocking acquisition goes through here, so this is where it is counted, traced (a span
/// for the whole wait), reported to the event handler and, when slow, logged.
///
/// `takes_mark`: `attempt` takes a hand-over mark over ([`Mark::handover`]: a lock's does), so
/// the release before this waiter's turn in the line may leave one.
pub(crate) fn wait_for<T: Acquired>(
    shared: &Shared,
    resource: &str,
    members: &[&str],
    (mode, takes_mark): (Mode, bool),
    wait: &Wait<'_>,
    mut attempt: impl FnMut(Mark<'_>, Option<&[u8]>) -> Attempt<T>,
) -> Result<T> {
    let span = OpSpan::acquire(resource);
    let mut progress = Progress::new();
    let line = Line {
        members,
        mode,
        takes_mark,
        place: None,
    };
    let result =
        span.in_scope(|| wait_loop(shared, resource, line, wait, &mut progress, &mut attempt));
    finish(shared, resource, &span, &progress, result)
}

/// What a waiter waits for, and its place in the local queue once it has one.
struct Line<'a, 'q> {
    members: &'a [&'a str],
    mode: Mode,
    takes_mark: bool,
    place: Option<Place<'q>>,
}

/// [`wait_for`]'s loop.
fn wait_loop<'s, T: Acquired>(
    shared: &'s Shared,
    resource: &str,
    mut line: Line<'_, 's>,
    wait: &Wait<'_>,
    progress: &mut Progress,
    attempt: &mut impl FnMut(Mark<'_>, Option<&[u8]>) -> Attempt<T>,
) -> Result<(T, Votes)> {
    let start = progress.start;
    let members = line.members;
    let cancelled = || Error::Cancelled {
        resource: resource.to_owned(),
        waited: start.elapsed(),
    };
    let gave_up = |failed: Option<Error>| {
        if wait.cancelled() {
            cancelled()
        } else {
            failed.unwrap_or_else(|| Error::Timeout {
                resource: resource.to_owned(),
                waited: start.elapsed(),
            })
        }
    };
    if wait.cancelled() {
        return Err(cancelled());
    }
    let observer = &shared.observer;
    // Counts this acquisition as waiting once it found the lock held, until it returns.
    let mut _waiting = None;
    let mut contended = |progress: &mut Progress, votes: Votes| {
        if !progress.contended {
            progress.contended = true;
            _waiting = Some(Waiting::new(&observer.counters));
            observer.inline("on_contended", |h| {
                h.on_contended(&ContendedEvent { resource, votes });
            });
        }
    };
    let waker = &shared.waker;
    let queue = &shared.queue;
    let wake = waker.enabled();
    // Readers do not queue (`Mode::lined`).
    let lined = line.mode.lined();
    if lined && queue.occupied(members, line.mode) {
        // Others of this factory wait for it (or hold it): line up behind them, without a round.
        let place = line
            .place
            .insert(queue.join(resource, members, line.mode, line.takes_mark));
        contended(progress, Votes::default());
        if !place.wait_turn(wait.deadline, wait.cancel) {
            return Err(gave_up(None));
        }
    } else if wake {
        // Fairness: we just released this lock to waiters; let one of them take it first.
        let grace = waker.grace_left(members);
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
    // reached the others yet when our attempt did.
    let mut woken = false;
    // What the release that woke us announced.
    let mut message: Option<Vec<u8>> = None;
    // The hand-over mark the next attempt takes over, and until when it stands at the latest.
    let mut handover: Option<(Arc<str>, Instant)> = None;
    // A lock's waiter: until when the waiting mark (and its line's order set entry) that its
    // last marking attempt left stands well past the next attempt (see `MARK_FRESH`), and the
    // line's `since` it entered. Until then an attempt that would mark is a bare one: marking
    // again would only renew them. (A line that began to wait for another process after that
    // attempt enters the order set at its next attempt.)
    let mut marked: Option<(Instant, u64)> = None;
    loop {
        if wait.cancelled() {
            return Err(cancelled());
        }
        if let Some(place) = line.place.as_ref().filter(|p| p.held_here()) {
            // A lease won through our line is held in this process: its end wakes us directly
            // (or we look at the nodes after a pause, in case it ended unseen), so there is
            // nothing to mark or listen for.
            let mut pause = pause(shared);
            if let Some(deadline) = wait.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(gave_up(None));
                }
                pause = pause.min(left);
            }
            woken = place.wait_release(pause, wait.cancel);
            if wait.cancelled() {
                return Err(cancelled());
            }
            if woken {
                // Released here. Unless other processes wait and this line has had its turns,
                // try at once; otherwise hold back as a releaser does, so that one of them,
                // woken by the release's announcement, gets there first.
                // The release left our line's hand-over mark where others waited (never after
                // our line's last turn: that release announces instead).
                handover = place.take_mark();
                if !place.take_turn() {
                    // At least a short while, though we may come late to our turn.
                    let grace = waker.grace_left(members).max(SETTLE_MIN);
                    let grace = wait.deadline.map_or(grace, |d| {
                        grace.min(d.saturating_duration_since(Instant::now()))
                    });
                    sleep(grace, wait.cancel);
                    // Then listen and mark at once: a busy attempt needs no second one. The
                    // line waits for the others from now: that attempt enters it in the order
                    // set (and its next ones need not mark again soon).
                    if wake && seat.is_none() {
                        seat = Some(waker.enter(&shared.nodes, resource, members, 0));
                    }
                    place.held_elsewhere();
                    mark = wake;
                } else {
                    mark = false;
                }
            } else {
                mark = false;
            }
        }
        let attempt_start = Instant::now();
        progress.rounds = progress.rounds.saturating_add(1);
        let since = line.place.as_ref().map_or(0, Place::since);
        let fresh =
            marked.is_some_and(|(until, entered)| attempt_start < until && entered == since);
        let marking = mark && !fresh;
        if handover
            .as_ref()
            .is_some_and(|(_, until)| Instant::now() >= *until)
        {
            // Gone by itself: the next attempt is the usual one.
            handover = None;
        }
        let outcome = attempt(
            Mark {
                on: marking,
                since,
                handover: handover.as_ref().map(|(m, _)| &**m),
            },
            message.take().as_deref(),
        );
        if let Some(place) = &line.place {
            place.record_round(attempt_start.elapsed());
        }
        if let Attempt::Busy { votes, .. } = &outcome {
            contended(progress, *votes);
            if marking && line.takes_mark {
                // The nodes that refused it hold our mark for the waiting mark's life from now.
                marked = attempt_start
                    .checked_add(waiting_mark(shared) / MARK_FRESH)
                    .map(|until| (until, since));
            }
            if let Some(place) = line.place.as_ref().filter(|p| !p.held_here()) {
                place.held_elsewhere();
            }
            if lined && line.place.is_none() {
                // Held elsewhere: join the line (at its head, unless others got there first).
                let place =
                    line.place
                        .insert(queue.join(resource, members, line.mode, line.takes_mark));
                if place.is_head() {
                    // Unless its own lease is held here, the line waits for another process from
                    // now: its marking attempt, next, enters it in the order set.
                    if !place.held_here() {
                        place.held_elsewhere();
                    }
                } else {
                    if !place.wait_turn(wait.deadline, wait.cancel) {
                        return Err(gave_up(None));
                    }
                    // Our turn: the one before us just won (then it is held here, and we wait
                    // for its release at the top of the loop) or gave up.
                    mark = false;
                    woken = false;
                    continue;
                }
            }
        }
        // A lease won through our line is held in this process: we wait for its end at the top
        // of the loop, with nothing to mark or listen for.
        let here = line.place.as_ref().is_some_and(Place::held_here);
        // Set by a busy attempt whose obstacle ends by itself, unannounced.
        let mut ends = None;
        let failed = match outcome {
            Attempt::Won(t, _) if wait.cancelled() => {
                // Cancelled during the winning round: once the flag is set, no guard is
                // handed out.
                t.give_back();
                return Err(cancelled());
            }
            Attempt::Won(t, votes) => {
                if let Some(hold) = line.place.take().and_then(|p| p.won(line.mode)) {
                    t.hold_in(hold);
                }
                return Ok((t, votes));
            }
            // Held in another process: listen for its release (subscribed before the marking
            // attempt, so that a release after it is heard), and mark.
            // (Not after a bare attempt made while our mark stands: it needs no renewal yet.)
            Attempt::Busy { holders, .. }
                if wake && !here && (!(mark || fresh) || seat.is_none()) =>
            {
                if seat.is_none() {
                    seat = Some(waker.enter(&shared.nodes, resource, members, holders));
                }
                mark = true;
                continue;
            }
            Attempt::Busy { retry_in, .. } => {
                failures = 0;
                ends = retry_in;
                None
            }
            Attempt::Fatal(e) => return Err(e),
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
        if let Some(ends) = ends {
            // Just after it ended (the nodes' clocks may run a little behind ours).
            pause = pause.min(ends.saturating_add(SETTLE_MIN));
        }
        if let Some((_, until)) = &handover {
            // A take-over found it busy: a node the mark did not reach yet, or our mark where the
            // attempt did not take it over. It goes by itself by `until`: look again just after.
            let left = until.saturating_duration_since(Instant::now());
            // (A waiter whose attempts do not take it over, a writer, waits for it to go.)
            pause = pause.min(left.saturating_add(SETTLE_MIN));
        }
        if let Some(deadline) = wait.deadline {
            let now = Instant::now();
            if now >= deadline {
                return Err(gave_up(failed));
            }
            // Sleep at most to the deadline, then make one last round.
            pause = pause.min(deadline - now);
        }
        if here && failed.is_none() {
            continue;
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
        if woken {
            observer.counters.wakeups.incr();
        }
        if let (Some(place), Some(named)) = (&line.place, message.as_deref().and_then(named))
            && named != place.since()
        {
            // The release names another process as the one that waited longest: let it try
            // first (a few round times; we try after it all the same). Found busy then, we
            // wait for the next release rather than look again soon.
            let round = attempt_start.elapsed();
            let defer = round.saturating_mul(3).clamp(SETTLE_MIN, SETTLE_MAX);
            let defer = wait.deadline.map_or(defer, |d| {
                defer.min(d.saturating_duration_since(Instant::now()))
            });
            sleep(defer, wait.cancel);
            woken = false;
        }
        // Woken by a release: the lock is most likely free, so the next attempt is bare again.
        // (After the short look that follows a wake-up, the next attempt is bare too.) The head
        // of a local queue marks at once: others of its process wait behind it, and a busy
        // attempt then needs no second one.
        mark = wake && (line.place.is_some() || (!woken && !was_woken));
    }
}

/// Counts, traces, reports and (when slow) logs how an acquisition ended.
fn finish<T>(
    shared: &Shared,
    resource: &str,
    span: &OpSpan,
    progress: &Progress,
    result: Result<(T, Votes)>,
) -> Result<T> {
    let waited = progress.start.elapsed();
    let observer = &shared.observer;
    let rounds = progress.rounds;
    span.rounds(rounds);
    let slow = observer.slow_acquire.filter(|t| waited >= *t);
    match result {
        Ok((t, votes)) => {
            observer.counters.acquired(waited, progress.contended);
            span.outcome("acquired");
            if let Some(threshold) = slow {
                log::warn!(
                    "redmutex: acquiring {resource:?} took {waited:?} ({rounds} rounds{}), over \
                     the slow-acquire threshold of {threshold:?}",
                    if progress.contended {
                        "; it was held elsewhere"
                    } else {
                        ""
                    }
                );
            }
            observer.inline("on_acquire", |h| {
                h.on_acquire(&AcquireEvent {
                    resource,
                    waited,
                    rounds,
                    contended: progress.contended,
                    votes,
                });
            });
            Ok(t)
        }
        Err(e) => {
            observer.counters.gave_up(&e);
            span.outcome(observe::outcome(&e));
            if let Some(threshold) = slow {
                log::warn!(
                    "redmutex: gave up on {resource:?} after {waited:?} ({rounds} rounds), over \
                     the slow-acquire threshold of {threshold:?}: {e}"
                );
            }
            observer.inline("on_give_up", |h| {
                h.on_give_up(&GiveUpEvent {
                    resource,
                    waited,
                    rounds,
                    error: &e,
                });
            });
            Err(e)
        }
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

/// The waiting mark's lifetime in ms as the acquire scripts take it: 0 (don't mark) unless
/// `mark`.
pub(crate) fn mark_ms(shared: &Shared, mark: bool) -> u64 {
    if mark {
        millis(waiting_mark(shared))
    } else {
        0
    }
}

/// What an acquisition asks for, whatever its kind: the lease's name and settings. A kind adds
/// its own to it (a semaphore's count, a multi-lock's resources).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// The lease name (a lock's resource; a semaphore's, read-write lock's or multi-lock's name).
    pub(crate) resource: &'a Arc<str>,
    pub(crate) ttl: Duration,
    pub(crate) fencing: bool,
    pub(crate) keep_alive: bool,
    pub(crate) max_hold: Option<Duration>,
}

/// One attempt that does not wait, of any kind of lease: `Ok(None)` when the lock is held
/// elsewhere. Counted, traced and reported like a waiting acquisition.
pub(crate) fn try_once<T>(
    shared: &Shared,
    resource: &str,
    attempt: impl FnOnce() -> Attempt<T>,
) -> Result<Option<T>> {
    let span = OpSpan::acquire(resource);
    let mut progress = Progress::new();
    progress.rounds = 1;
    let result = match span.in_scope(attempt) {
        Attempt::Won(t, votes) => Ok((t, votes)),
        Attempt::Busy { .. } => {
            shared.observer.counters.busy.incr();
            span.rounds(1);
            span.outcome("busy");
            return Ok(None);
        }
        Attempt::Failed(e) | Attempt::Fatal(e) => Err(e),
    };
    finish(shared, resource, &span, &progress, result).map(Some)
}

/// One acquisition round of a mutex (plus the fencing rounds when fencing is on). `mark`: the
/// caller will wait if the lock is busy, so mark the resource as waited for (see [`Mark`]).
pub(crate) fn attempt(shared: &Arc<Shared>, req: &Request<'_>, mark: Mark<'_>) -> Attempt<Lease> {
    let Mark {
        on: mark,
        since,
        handover,
    } = mark;
    if let Err(e) = shared.check_longest("ttl", req.ttl) {
        return Attempt::Fatal(e);
    }
    let resource: &str = req.resource;
    let token = Token::new();
    let ttl_ms = millis(req.ttl);
    let start = Instant::now();
    let tally = if handover.is_some() || req.fencing || mark {
        // The acquire script: SET NX PX, plus the fencing counter and the waiting mark; or,
        // taking the release's hand-over mark over, the take-over script, which also grants on
        // the mark (and takes one argument more).
        let keys = [
            Arg::Str(resource),
            Arg::Joined(resource, scripts::FENCE_SUFFIX),
            Arg::Joined(resource, scripts::WAITING_SUFFIX),
            Arg::Joined(resource, scripts::ORDER_SUFFIX),
        ];
        // ARGV: token, TTL, marker ms, since, then the take-over's hand-over mark and fencing
        // flag, or the acquire script's fencing flag (the counter is read only for a fencing
        // token).
        let fencing = if req.fencing { "1" } else { "0" };
        let args = [
            Arg::Str(token.as_str()),
            Arg::Int(ttl_ms),
            Arg::Int(mark_ms(shared, mark)),
            Arg::Int(since),
            Arg::Str(handover.unwrap_or(fencing)),
            Arg::Str(fencing),
        ];
        let (script, args) = match handover {
            Some(_) => (&scripts::TAKEOVER, &args[..]),
            None => (&scripts::ACQUIRE, &args[..5]),
        };
        let call = Call::Script {
            script,
            keys: &keys,
            args,
        };
        acquisition_round(shared, req, &token, call, round::acquire_reply)
    } else {
        let call = Call::SetNx {
            key: resource,
            token: token.as_str(),
            ms: ttl_ms,
        };
        acquisition_round(shared, req, &token, call, round::set_reply)
    };
    conclude(shared, &req.grant(), Target::Mutex, token, start, &tally)
}

/// A mutex's acquisition round (`call`, with `token`): a node it leaves unread
/// once it has lost is owed the take-back only if its late reply is a grant (see
/// `round::acquisition`), so a busy attempt sends no take-back round for it.
fn acquisition_round(
    shared: &Shared,
    req: &Request<'_>,
    token: &Token,
    call: Call<'_>,
    classify: round::Classify,
) -> Tally {
    // As long as the grant may live: the TTL, plus the drift.
    let life = req.ttl.saturating_add(shared.drift(req.ttl));
    Target::Mutex.with_release(req.resource, token.as_str(), false, |take_back| {
        round::acquisition(
            &shared.nodes,
            call,
            shared.nodes.all(),
            classify,
            shared.config.quorum,
            take_back,
            life,
        )
    })
}

/// What a won round makes into a lease, whatever the kind of lease: the name, the lease's
/// settings, and whose fencing counters a grant raises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant<'a> {
    /// The name errors, logs and wake-ups use.
    pub(crate) name: &'a Arc<str>,
    pub(crate) ttl: Duration,
    pub(crate) keep_alive: bool,
    pub(crate) max_hold: Option<Duration>,
    /// `None`: no fencing token.
    pub(crate) fenced: Option<Fenced<'a>>,
}

impl Request<'_> {
    /// The grant of a lease on this request's resource.
    pub(crate) fn grant(&self) -> Grant<'_> {
        Grant {
            name: self.resource,
            ttl: self.ttl,
            keep_alive: self.keep_alive,
            max_hold: self.max_hold,
            fenced: self.fencing.then_some(Fenced::One(self.resource)),
        }
    }
}

/// The lease a round that won at `start` made: its deadline is `start + ttl - drift` (every
/// grant was sent after `start`, so no node lets it go before `start + ttl` by its clock, give or
/// take the drift). The one place a lease is made from a winning round.
pub(crate) fn lease_of(
    shared: &Arc<Shared>,
    grant: &Grant<'_>,
    target: Target,
    token: Token,
    start: Instant,
    fencing: Option<u64>,
    written: u64,
) -> Lease {
    let deadline = proven_until(shared, start, grant.ttl).unwrap_or(start);
    let options = LeaseOptions {
        ttl: grant.ttl,
        keep_alive: grant.keep_alive,
        hold_until: grant.max_hold.and_then(|d| start.checked_add(d)),
    };
    Lease::new(
        Arc::clone(shared),
        Arc::clone(grant.name),
        target,
        token,
        fencing,
        options,
        deadline,
    )
    .written_to(written)
}

/// Concludes an acquisition round of any kind of lease, sent at `start` with `token` for
/// `target`: the verdict (the one judge), and then the lease (with its fencing token when asked
/// for) or, when it did not win, the take-back of whatever the round may have granted.
pub(crate) fn conclude(
    shared: &Arc<Shared>,
    grant: &Grant<'_>,
    target: Target,
    token: Token,
    start: Instant,
    tally: &Tally,
) -> Attempt<Lease> {
    let resource: &str = grant.name;
    let timing = Timing {
        ttl: grant.ttl,
        elapsed: start.elapsed(),
        drift: shared.drift(grant.ttl),
    };
    // The restart quarantine: a quarantined node's yes does not count (it becomes a failure
    // that says why). The take-back still goes to every node the round may have written to.
    let admitted = admitted(shared, tally);
    let counted: &Tally = &admitted;
    log::debug!(
        "redmutex: acquire {resource:?} ({target:?}): {}/{} yes, {} no, {} failed, quorum {}, {:?}",
        counted.yes,
        shared.nodes.len(),
        counted.no,
        counted.failures.len(),
        shared.config.quorum,
        timing.elapsed
    );
    let verdict = decide(shared, counted, Question::Grant, Some(timing));
    let failure = match verdict {
        Verdict::Won(_) => {
            let fencing = match grant.fenced {
                Some(fenced) => {
                    let deadline = proven_until(shared, start, grant.ttl).unwrap_or(start);
                    fence(shared, resource, fenced, tally.aux, deadline).map(Some)
                }
                None => Ok(None),
            };
            match fencing {
                Ok(fencing) => {
                    let lease =
                        lease_of(shared, grant, target, token, start, fencing, tally.written);
                    return Attempt::Won(lease, votes(shared, counted));
                }
                Err(e) => Some(e),
            }
        }
        Verdict::TooLate => {
            log::warn!(
                "redmutex: {resource:?}: a quorum answered but the round took {:?} of a {:?} TTL",
                timing.elapsed,
                grant.ttl
            );
            Some(Error::TooLate {
                resource: resource.to_owned(),
                elapsed: timing.elapsed,
            })
        }
        Verdict::Refused => None,
        Verdict::Unknown => Some(no_quorum(shared, resource, counted)),
    };
    take_back(shared, &target, resource, &token, tally, grant.ttl);
    match failure {
        Some(e) => Attempt::Failed(e),
        None => Attempt::Busy {
            holders: tally.refused,
            votes: votes(shared, counted),
            retry_in: None,
        },
    }
}

/// Not acquired: takes back every grant that may have landed, in one round, so a split vote
/// frees the lock at once instead of blocking everyone for a TTL. That is every node the
/// command was written to ([`Tally::may_hold`]), except those that answered "no" to their one
/// run (they certainly did not grant it): a node sent the command a second time may have
/// granted it the first time, whatever it answered, and one that gave no answer may grant it
/// yet (a node that cannot be reached is owed the take-back: see [`release_round`]). Nobody is
/// woken: the lock is still held elsewhere.
fn take_back(
    shared: &Shared,
    target: &Target,
    resource: &str,
    token: &Token,
    tally: &Tally,
    ttl: Duration,
) {
    // A node left unread owes the take-back itself if its late reply is a grant.
    let mask = tally.may_hold() & !tally.deferred;
    if mask != 0 {
        let owing = Owing { ttl, nodes: mask };
        let released = release_round(
            shared,
            target,
            resource,
            token.as_str(),
            mask,
            Announce::No,
            owing,
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
            round::round(
                &shared.nodes,
                call,
                shared.nodes.all(),
                round::fence_reply,
                Settle::Holds(shared.config.quorum),
            )
        });
        if Instant::now() >= deadline {
            return Err(Error::TooLate {
                resource: resource.to_owned(),
                elapsed: started.elapsed(),
            });
        }
        match decide(shared, &tally, Question::Holds, None) {
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

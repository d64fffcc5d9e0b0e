//! The local queue: in this process (this factory), the waiters for one resource line up in
//! arrival order, and only the one at the head of the line talks to the nodes.
//!
//! - A waiter joins its resource's line when it finds the lock held elsewhere, or at once (before
//!   any round) when others of this factory already wait for it or hold it through the line.
//!   Behind the head, a waiter sleeps on a condition variable of its own, sends nothing, and
//!   holds no connection; it gives up at its deadline or when its cancel flag is set (looked at
//!   every 20 ms), and leaving the line wakes the next one.
//! - The head runs the protocol's waiting loop: its own rounds, with its own token and fencing
//!   token. When it wins, the next waiter becomes the head.
//! - An exclusive lease (a lock's, a writer's, a multi-lock's) won through the line is *held
//!   here*: the next head knows the lock is taken in this process, so it neither marks the
//!   resource nor listens for a release announcement; the lease's end (release, loss, leak, drop)
//!   wakes it directly, and it makes its attempt at once: a hand-over within the process costs one
//!   round, with no publish and no poll. It still looks at the nodes every poll interval, in case
//!   the lease ended without a release it could see.
//! - A lock's release to the next waiter of its line, where others wait, leaves the line's
//!   hand-over mark in the key instead of deleting it ([`Hold::hand_over`],
//!   `scripts::HANDOVER_RELEASE_SRC`), for a few rounds ([`MARK_MAX`] at most); the next head's
//!   attempt takes it over ([`Place::take_mark`], `scripts::TAKEOVER_SRC`), so another process
//!   never finds the lock free between two holders of the line.
//! - Fairness across processes: a release through the line that found a waiting mark (another
//!   process's: this line's head does not mark while the lock is held here) tells the line
//!   ([`Hold::others_waited`]). A line keeps at most [`MAX_TURNS`] such turns in a row; then the
//!   release is announced and the head holds back a few round times before its attempt, so that
//!   the others, woken by the announcement, get there first. The order among them is the nodes'
//!   (`scripts::ACQUIRE_SRC`: the line's [`since`](Place::since) is its place there).
//!
//! A semaphore's line is apart from the lock, read-write and multi-lock lines of the same name
//! ([`Mode::Permit`]); a permit won through it is not "held here" (other permits may be free),
//! so the next waiter tries at once. Writers share their name's line with a lock of that name
//! (a writer is a lock holder on the nodes). Readers, election candidates and run-once waiters
//! do not queue ([`Mode::lined`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::scripts;

/// Turns a line may take in a row while other processes wait (their waiting marks are on the
/// resource); then its head holds back once.
pub(crate) const MAX_TURNS: u32 = 16;
/// How often a queued waiter with a cancel flag looks at it.
const CANCEL_SLICE: Duration = Duration::from_millis(20);
/// Lines kept at least before a sweep of those nobody uses.
const SWEEP_MIN: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How an acquisition takes its lease: what its line is, and what a win through it means for
/// those behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One holder at a time (a lock, a writer, a multi-lock): a win is held here.
    Exclusive,
    /// A reader: others may hold it too, so the next waiter tries at once.
    Shared,
    /// A semaphore's permit: a line of its own, and the next waiter tries at once.
    Permit,
    /// Waits on the nodes by itself, without a line: an election's candidate (a term usually
    /// lasts long, and a candidate that takes over must read the election as it finds it) and a
    /// run-once job's waiter (all of them wait for one completion, which ends every wait at
    /// once: there is nothing to take in turns).
    Alone,
}

impl Mode {
    /// Whether waiters of this mode line up. Readers do not: a waiting writer's intent keeps
    /// new readers out on the nodes, so a reader queued ahead of that writer here would wait
    /// for the intent to expire, and the writer for its turn behind the reader. Each waiting
    /// reader waits on the nodes as it would without the queue (and a writer's or a lock's line
    /// is not held up by them).
    pub(crate) const fn lined(self) -> bool {
        !matches!(self, Self::Shared | Self::Alone)
    }

    /// Lines of different classes never mix.
    const fn class(self) -> u8 {
        match self {
            Self::Exclusive | Self::Shared | Self::Alone => 0,
            Self::Permit => 1,
        }
    }
}

/// A line's key: the names whose releases end the wait (a resource, a multi-lock's resources)
/// and the class.
type Key = (Box<[Box<str>]>, u8);

fn key(members: &[&str], mode: Mode) -> Key {
    (
        members.iter().map(|m| Box::from(*m)).collect(),
        mode.class(),
    )
}

/// What the operator sees of one line ([`Queue::lines`]).
#[derive(Debug, Clone)]
pub(crate) struct LineView {
    /// The resource (or a multi-lock's name).
    pub(crate) name: Arc<str>,
    /// Waiters in the line, its head included.
    pub(crate) waiting: usize,
    /// Exclusive leases won through the line and held now.
    pub(crate) held: usize,
}

/// The per-factory local queue: one line per resource waited for.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    lines: Mutex<Lines>,
    /// Waiters in lines plus leases held through them: while 0, an acquisition looks no further.
    live: Arc<AtomicUsize>,
    /// Attempts a head made at once on a release in this process (no announcement, no poll).
    handed: AtomicU64,
    /// Times a head held back for other processes after [`MAX_TURNS`] turns.
    yields: AtomicU64,
}

#[derive(Debug, Default)]
struct Lines {
    map: HashMap<Key, Arc<Line>>,
    /// Sweep the unused lines once the map is this long.
    sweep_at: usize,
}

#[derive(Debug)]
struct Line {
    name: Arc<str>,
    /// The line's hand-over mark (`scripts::HANDOVER_PREFIX` and a random id): the value a
    /// quiet release of a lock won through the line leaves in the lock key for the next head.
    mark: Arc<str>,
    state: Mutex<LineState>,
}

#[derive(Debug, Default)]
struct LineState {
    /// The waiters in arrival order (the head first), each with the condition variable it sleeps
    /// on (all of them under `state`) and whether its attempts take a hand-over mark over.
    waiters: VecDeque<(u64, Arc<Condvar>, bool)>,
    next_ticket: u64,
    /// Exclusive leases won through this line and not ended yet.
    held: usize,
    /// Turns taken in a row while other processes waited.
    streak: u32,
    /// The last lease held through the line found, at its release, that others waited (their
    /// waiting mark): read and cleared by the next head's [`Place::take_turn`].
    others_waited: bool,
    /// Since when (microseconds of the wall clock) this line has waited for a lock held by
    /// another process; 0 while it has not since it last won.
    since: u64,
    /// The last lease's release left the line's hand-over mark on a node: read and cleared by
    /// the next head's [`Place::take_mark`].
    marked: bool,
    /// How long the head's last attempt round took: the hand-over mark's life is a few of them.
    round: Duration,
}

impl LineState {
    fn live(&self) -> bool {
        !self.waiters.is_empty() || self.held > 0
    }

    fn is_head(&self, ticket: u64) -> bool {
        self.waiters.front().is_some_and(|(t, _, _)| *t == ticket)
    }

    fn wake_head(&self) {
        if let Some((_, cv, _)) = self.waiters.front() {
            cv.notify_one();
        }
    }
}

impl Queue {
    /// Whether others of this factory wait for (or hold, through the line) what `members` name:
    /// then a new acquisition joins the line before any round. One atomic load while no line is
    /// in use.
    pub(crate) fn occupied(&self, members: &[&str], mode: Mode) -> bool {
        if self.live.load(Ordering::Acquire) == 0 {
            return false;
        }
        let key = key(members, mode);
        let line = lock(&self.lines).map.get(&key).cloned();
        line.is_some_and(|l| lock(&l.state).live())
    }

    /// Joins the line of `members` (named `name`), at its end. `takes_mark`: this waiter's
    /// attempts take a hand-over mark over (a lock's do: `scripts::TAKEOVER_SRC`), so the
    /// release before its turn may leave one.
    pub(crate) fn join(
        &self,
        name: &str,
        members: &[&str],
        mode: Mode,
        takes_mark: bool,
    ) -> Place<'_> {
        let key = key(members, mode);
        let line = {
            let mut lines = lock(&self.lines);
            if lines.map.len() >= lines.sweep_at.max(SWEEP_MIN) {
                lines.map.retain(|_, l| lock(&l.state).live());
                lines.sweep_at = lines.map.len().saturating_mul(2);
            }
            Arc::clone(lines.map.entry(key).or_insert_with(|| {
                Arc::new(Line {
                    name: Arc::from(name),
                    mark: Arc::from(format!(
                        "{}{:032x}",
                        scripts::HANDOVER_PREFIX,
                        rand::random::<u128>()
                    )),
                    state: Mutex::default(),
                })
            }))
        };
        let cv = Arc::new(Condvar::new());
        let ticket = {
            let mut state = lock(&line.state);
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state
                .waiters
                .push_back((ticket, Arc::clone(&cv), takes_mark));
            ticket
        };
        self.live.fetch_add(1, Ordering::AcqRel);
        Place {
            queue: self,
            line,
            ticket,
            cv,
            done: false,
        }
    }

    /// The lines in use now, for the stats.
    pub(crate) fn lines(&self) -> Vec<LineView> {
        let lines: Vec<Arc<Line>> = lock(&self.lines).map.values().cloned().collect();
        let mut views: Vec<LineView> = lines
            .iter()
            .filter_map(|l| {
                let state = lock(&l.state);
                state.live().then(|| LineView {
                    name: Arc::clone(&l.name),
                    waiting: state.waiters.len(),
                    held: state.held,
                })
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// Attempts heads made at once on a release in this process.
    pub(crate) fn handed(&self) -> u64 {
        self.handed.load(Ordering::Relaxed)
    }

    /// Times a head held back for other processes.
    pub(crate) fn yields(&self) -> u64 {
        self.yields.load(Ordering::Relaxed)
    }
}

/// The shortest and the longest life of a hand-over mark.
const MARK_MIN: Duration = Duration::from_millis(10);
/// See [`MARK_MIN`]: a mark whose next head is gone blocks others at most this long.
pub(crate) const MARK_MAX: Duration = Duration::from_millis(20);

/// How long a hand-over mark lives: four of the line's attempt rounds, 10 to 20 ms (the next
/// head's take-over comes a round after the release, plus the time to wake its thread).
fn mark_life(round: Duration) -> Duration {
    round.saturating_mul(4).clamp(MARK_MIN, MARK_MAX)
}

/// Microseconds since the Unix epoch by the wall clock (at least 2, below 2^53: the markers'
/// Lua numbers are exact there, and 1 is an unnamed marker).
fn wall_micros() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    micros.clamp(2, (1 << 53) - 1)
}

/// Who a release announcement names as the longest-waiting process (`<sha1> <since>`, see
/// `scripts::RELEASE_SRC`): `None` when it names nobody.
pub(crate) fn named(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let (_, since) = text.split_once(' ')?;
    since.parse().ok().filter(|s| *s > 1)
}

/// A waiter's place in a line; leaving it (on drop, whatever the reason) wakes the next one.
#[derive(Debug)]
pub(crate) struct Place<'q> {
    queue: &'q Queue,
    line: Arc<Line>,
    ticket: u64,
    cv: Arc<Condvar>,
    /// Left the line by winning.
    done: bool,
}

impl Place<'_> {
    /// Whether this waiter is at the head of its line.
    pub(crate) fn is_head(&self) -> bool {
        lock(&self.line.state).is_head(self.ticket)
    }

    /// Sleeps on this waiter's condition variable until `ready` holds, `deadline` passes or
    /// `cancel` is set: whether `ready` held.
    fn sleep_until(
        &self,
        mut ready: impl FnMut(&mut LineState) -> bool,
        deadline: Option<Instant>,
        cancel: Option<&AtomicBool>,
    ) -> bool {
        let mut state = lock(&self.line.state);
        loop {
            if ready(&mut state) {
                return true;
            }
            if cancel.is_some_and(|c| c.load(Ordering::Acquire)) {
                return false;
            }
            let mut slice = Duration::MAX;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                slice = left;
            }
            if cancel.is_some() {
                slice = slice.min(CANCEL_SLICE);
            }
            state = if slice == Duration::MAX {
                self.cv.wait(state).unwrap_or_else(PoisonError::into_inner)
            } else {
                self.cv
                    .wait_timeout(state, slice)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            };
        }
    }

    /// Waits for this waiter's turn at the head, until `deadline` or `cancel`: whether it came.
    pub(crate) fn wait_turn(&self, deadline: Option<Instant>, cancel: Option<&AtomicBool>) -> bool {
        let ticket = self.ticket;
        self.sleep_until(|s| s.is_head(ticket), deadline, cancel)
    }

    /// Whether an exclusive lease won through this line is held in this process now.
    pub(crate) fn held_here(&self) -> bool {
        lock(&self.line.state).held > 0
    }

    /// At the head: waits up to `timeout` (or until `cancel`) for the leases held here to end:
    /// whether they did.
    pub(crate) fn wait_release(&self, timeout: Duration, cancel: Option<&AtomicBool>) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        self.sleep_until(|s| s.held == 0, deadline, cancel)
    }

    /// At the head, after a release here: takes the turn (`true`), or, after [`MAX_TURNS`] in a
    /// row while others waited (the releases found their marks: [`Hold::others_waited`]), says
    /// to hold back first (`false`).
    pub(crate) fn take_turn(&self) -> bool {
        self.queue.handed.fetch_add(1, Ordering::Relaxed);
        let mut state = lock(&self.line.state);
        let others_wait = std::mem::take(&mut state.others_waited);
        if !others_wait {
            state.streak = 0;
            return true;
        }
        if state.streak >= MAX_TURNS {
            state.streak = 0;
            drop(state);
            self.queue.yields.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        state.streak += 1;
        true
    }

    /// At the head, after a release here that it takes at once ([`take_turn`](Self::take_turn)):
    /// the line's hand-over mark, when that release left it on a node (the attempt then takes
    /// it over: `scripts::TAKEOVER_SRC`), and until when at the latest it stands.
    pub(crate) fn take_mark(&self) -> Option<(Arc<str>, Instant)> {
        let mut state = lock(&self.line.state);
        std::mem::take(&mut state.marked).then(|| {
            (
                Arc::clone(&self.line.mark),
                Instant::now() + mark_life(state.round),
            )
        })
    }

    /// Records how long the head's attempt round took (the hand-over mark lives a few rounds).
    pub(crate) fn record_round(&self, round: Duration) {
        lock(&self.line.state).round = round;
    }

    /// The lock was found held by another process: the turns in a row start again, and the
    /// line's wait for the other process starts now unless it had already.
    pub(crate) fn held_elsewhere(&self) {
        let mut state = lock(&self.line.state);
        state.streak = 0;
        if state.since == 0 {
            state.since = wall_micros();
        }
    }

    /// Since when the line has waited for another process (0: it has not since it last won).
    pub(crate) fn since(&self) -> u64 {
        lock(&self.line.state).since
    }

    /// Won: leaves the line and hands the head on. An exclusive lease is then held here until
    /// the returned [`Hold`] is dropped.
    pub(crate) fn won(mut self, mode: Mode) -> Option<Hold> {
        self.done = true;
        let mut state = lock(&self.line.state);
        state.waiters.retain(|(t, _, _)| *t != self.ticket);
        let since = std::mem::take(&mut state.since);
        let hold = (mode == Mode::Exclusive).then(|| {
            state.held += 1;
            // The place's count passes to the hold.
            Hold {
                line: Arc::clone(&self.line),
                live: Arc::clone(&self.queue.live),
                since,
            }
        });
        state.wake_head();
        drop(state);
        if hold.is_none() {
            self.queue.live.fetch_sub(1, Ordering::AcqRel);
        }
        hold
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = lock(&self.line.state);
        let was_head = state.is_head(self.ticket);
        state.waiters.retain(|(t, _, _)| *t != self.ticket);
        if was_head {
            state.wake_head();
        }
        drop(state);
        self.queue.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a quiet release leaves for the next waiter of its line ([`Hold::hand_over`]).
#[derive(Debug, Clone)]
pub(crate) struct HandOver {
    /// The line's hand-over mark (`scripts::HANDOVER_PREFIX` and the line's id).
    pub(crate) mark: Arc<str>,
    /// Its life, ms.
    pub(crate) ms: u64,
    /// The release before this lease's found others waiting (the line is taking its turns in a
    /// row while they wait, at most [`MAX_TURNS`]): this release leaves the mark without
    /// looking for their waiting mark again, and counts as finding it. If they stopped waiting
    /// meanwhile, the line holds back once at the end of its turns for nothing.
    pub(crate) blind: bool,
}

/// An exclusive lease won through a line, held in this process: dropping it (at the lease's end)
/// wakes the line's head.
#[derive(Debug)]
pub(crate) struct Hold {
    line: Arc<Line>,
    live: Arc<AtomicUsize>,
    /// The line's [`since`](Place::since) when the lease was won (0: it had not waited for
    /// another process): the lease's release removes that entry from the order set.
    since: u64,
}

impl Hold {
    /// The line's place in the order set when it won this lease (0: none), for the release to
    /// remove on every node (see `scripts::RELEASE_SRC`).
    pub(crate) fn since(&self) -> u64 {
        self.since
    }

    /// The lease's release found others waiting (their waiting mark on the nodes); `marked`:
    /// it left the line's hand-over mark (see [`hand_over`](Self::hand_over)).
    pub(crate) fn others_waited(&self, marked: bool) {
        let mut state = lock(&self.line.state);
        state.others_waited = true;
        state.marked |= marked;
    }

    /// When the next waiter takes the lock at once at this lease's end
    /// ([`next_takes_it`](Self::next_takes_it)) and its attempts take a hand-over mark over:
    /// the line's mark and its life in ms, for the release to leave on the nodes that find
    /// others waiting (`scripts::HANDOVER_RELEASE_SRC`). `None` otherwise (a release after
    /// [`MAX_TURNS`] turns announces and leaves no mark: no process keeps the lock).
    pub(crate) fn hand_over(&self) -> Option<HandOver> {
        let state = lock(&self.line.state);
        let (_, _, takes_mark) = state.waiters.front()?;
        (*takes_mark && state.streak < MAX_TURNS).then(|| {
            let ms = mark_life(state.round).as_millis();
            HandOver {
                mark: Arc::clone(&self.line.mark),
                ms: u64::try_from(ms).unwrap_or(u64::MAX),
                // This lease was won on a turn taken while others waited.
                blind: state.streak > 0,
            }
        })
    }

    /// Whether the next waiter in line takes the lock at once when this lease ends: there is
    /// one, and its line has not had [`MAX_TURNS`] turns in a row while others waited (see
    /// [`Place::take_turn`]).
    pub(crate) fn next_takes_it(&self) -> bool {
        let state = lock(&self.line.state);
        !state.waiters.is_empty() && state.streak < MAX_TURNS
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut state = lock(&self.line.state);
        state.held = state.held.saturating_sub(1);
        if state.held == 0 {
            state.wake_head();
        }
        drop(state);
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn waiters_take_turns_in_arrival_order_and_a_leaver_hands_the_head_on() {
        let q = Queue::default();
        assert!(!q.occupied(&["r"], Mode::Exclusive));
        let a = q.join("r", &["r"], Mode::Exclusive, true);
        let b = q.join("r", &["r"], Mode::Exclusive, true);
        let c = q.join("r", &["r"], Mode::Exclusive, true);
        assert!(q.occupied(&["r"], Mode::Exclusive));
        assert!(
            !q.occupied(&["r"], Mode::Permit),
            "a semaphore's line is apart"
        );
        assert!(a.is_head() && !b.is_head() && !c.is_head());
        // b gives up (timeout) behind the head: nothing changes for the others.
        assert!(!b.wait_turn(Some(Instant::now()), None));
        drop(b);
        let hold = a
            .won(Mode::Exclusive)
            .expect("an exclusive win is held here");
        assert!(c.is_head());
        assert!(c.held_here());
        assert!(!c.wait_release(Duration::from_millis(1), None));
        thread::scope(|s| {
            let waiter = s.spawn(move || {
                let released = c.wait_release(Duration::from_secs(30), None);
                (released, c.won(Mode::Shared).is_none())
            });
            drop(hold);
            assert_eq!(waiter.join().unwrap(), (true, true));
        });
        assert!(!q.occupied(&["r"], Mode::Exclusive));
        assert_eq!(q.live.load(Ordering::Acquire), 0);
        assert!(q.lines().is_empty());
    }

    #[test]
    fn a_head_that_leaves_wakes_the_next_and_a_cancel_flag_ends_the_wait() {
        let q = Queue::default();
        let a = q.join("r", &["r"], Mode::Exclusive, true);
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            let b = s.spawn(|| {
                let b = q.join("r", &["r"], Mode::Exclusive, true);
                b.wait_turn(None, None)
            });
            let c = s.spawn(|| {
                let c = q.join("r", &["r"], Mode::Exclusive, true);
                c.wait_turn(None, Some(&stop))
            });
            // Both queued behind a.
            assert!(crate::queue::tests::until(|| q.lines()[0].waiting == 3));
            stop.store(true, Ordering::Release);
            assert!(!c.join().unwrap(), "cancelled");
            drop(a);
            assert!(b.join().unwrap(), "the head's leaving made b the head");
        });
        assert_eq!(q.live.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_line_keeps_at_most_max_turns_in_a_row_while_others_wait() {
        let q = Queue::default();
        let a = q.join("r", &["r"], Mode::Exclusive, true);
        let others = |waited: bool| lock(&a.line.state).others_waited = waited;
        let kept = (0..2 * MAX_TURNS + 2)
            .filter(|_| {
                others(true);
                a.take_turn()
            })
            .count();
        assert_eq!(kept, 2 * MAX_TURNS as usize);
        assert_eq!(q.yields(), 2);
        assert!(
            (0..3 * MAX_TURNS).all(|_| a.take_turn()),
            "nobody else waited"
        );
    }

    #[test]
    fn a_hand_over_mark_is_left_only_for_a_taker_that_takes_its_turn() {
        let q = Queue::default();
        let a = q.join("r", &["r"], Mode::Exclusive, true);
        let hold = a.won(Mode::Exclusive).expect("held here");
        assert!(hold.hand_over().is_none(), "nobody in line");
        let writer = q.join("r", &["r"], Mode::Exclusive, false);
        let lock_waiter = q.join("r", &["r"], Mode::Exclusive, true);
        assert!(
            hold.hand_over().is_none(),
            "a writer is next: it takes no mark over"
        );
        drop(writer);
        let HandOver { mark, ms, blind } = hold.hand_over().expect("a lock's waiter is next");
        assert!(mark.starts_with(scripts::HANDOVER_PREFIX));
        assert!((10..=20).contains(&ms), "{ms} ms");
        assert!(!blind, "no turn was taken while others waited");
        hold.others_waited(true);
        drop(hold);
        assert!(lock_waiter.take_turn());
        assert_eq!(lock_waiter.take_mark().map(|(m, _)| m), Some(mark));
        assert!(lock_waiter.take_mark().is_none(), "read once");
        // Won on a turn taken while others waited: its release leaves the mark without looking.
        let hold = lock_waiter.won(Mode::Exclusive).expect("held here");
        let _next = q.join("r", &["r"], Mode::Exclusive, true);
        assert!(hold.hand_over().is_some_and(|h| h.blind));
        // After MAX_TURNS turns in a row while others wait, the release leaves no mark.
        lock(&hold.line.state).streak = MAX_TURNS;
        assert!(!hold.next_takes_it());
        assert!(hold.hand_over().is_none());
    }

    /// Polls `f` for up to 30 s.
    fn until(mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if f() {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
        false
    }
}

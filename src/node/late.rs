//! Replies a round left unread: a round decides as soon as the replies it has read settle its
//! outcome, and parks the connections still carrying replies with their node. A parked
//! connection carries no other command before its replies are read, so a late reply is never
//! taken for another command's. They are read by whichever comes first:
//! - the node's next checkout, once the reply is due (the node's smoothed round trip after the
//!   writes), or at once when the pool has no idle connection: on loopback and in one zone the
//!   reply is there by then, and reading it costs what reading it in the round would have,
//!   without the wait;
//! - the node's own reader (one thread per node, started on its first parking), once the
//!   connection has been parked for [`LINGER`]: a node far slower than the quorum, or one no
//!   round uses for a while, is read all the same, within the round's deadline.
//!
//! Either counts the replies in the node's statistics and health as the round would have,
//! pays the node's owed releases, and only then lets the connection carry anything else.
//!
//! What a late reply may have done (a late "yes" to an acquisition that lost, or to one
//! released since) is undone with the node's owed releases: a release that went to the node
//! while a connection parked before it was still unread is also owed *after* that one's
//! replies ([`Node::owe_after`]), so the node runs it once more after the late command,
//! whichever connection either went on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use r2d2::PooledConnection;
use redis::{ErrorKind, ServerErrorKind, Value};

use super::{Ballot, Health, MIN_TIMEOUT, Node, NodeManager};
use crate::error::{NodeErrorKind, describe, is_interrupted};

/// The most parked connections a node may have unread at once; past that, a round reads its
/// replies itself (a node that answers slower than rounds come cannot pile them up).
const MAX_UNREAD: u64 = 64;

/// How long a parked connection waits for a checkout before the node's reader reads it: long
/// enough that a service running rounds back to back reads every late reply in its next round
/// (and the reader sleeps), short enough that an idle one still counts them promptly.
const LINGER: Duration = Duration::from_millis(2);

/// A read of a parked connection that took at least this long waited for its reply, which
/// arrived as it ended: its round trip is a true sample (see [`late_sample`]).
const WAITED: Duration = Duration::from_micros(50);

/// How a late reply counts in its node's statistics.
pub(crate) type Judge = Box<dyn Fn(&Value) -> Ballot + Send>;

type Conn = PooledConnection<NodeManager>;

/// A connection whose replies a round did not read.
pub(crate) struct Unread {
    pub(crate) conn: Conn,
    /// How many replies it still owes.
    pub(crate) replies: usize,
    /// The scripts its commands run ([`crate::scripts::Lua::bit`]): forgotten by the node on a
    /// late `NOSCRIPT`, so that the next round reads such a reply itself (and answers it with
    /// `EVAL`).
    pub(crate) scripts: u64,
    /// When the round's commands were written (a late reply's round trip starts there).
    pub(crate) written: Instant,
    /// The round's deadline: a reply not read by then is the node's failure, as in a round.
    pub(crate) deadline: Instant,
    pub(crate) judge: Judge,
    /// A release to owe the node (until the instant) if a late reply is not a yes: this
    /// round was itself a release that may have overtaken an earlier round's grant on its way
    /// to the node (see [`Node::owe_after`]). It is owed once every connection parked before
    /// this one has been read too, so the grant has landed by then.
    pub(crate) owe_unless_yes: Option<(Vec<u8>, Instant)>,
    /// A take-back to owe the node (until the instant) if a late reply is a yes, or none
    /// comes: this round was an acquisition that had lost when it left the node unread, and
    /// sent it no take-back (see `round::acquisition`).
    pub(crate) owe_if_yes: Option<(Vec<u8>, Instant)>,
}

/// A parked connection.
struct Job {
    unread: Unread,
    /// Its place in the node's sequence of parkings.
    seq: u64,
    /// When a checkout may read it without waiting long: its reply is due.
    due: Instant,
}

/// A release owed to the node once the parkings up to `after` have been read.
#[derive(Debug)]
struct After {
    after: u64,
    packed: Vec<u8>,
    until: Instant,
}

/// What the node's reader is doing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ReaderState {
    /// Not started yet (or it could not be).
    #[default]
    Absent,
    /// Being started by a parking round.
    Starting,
    /// Waiting, with nothing parked: a parking must wake it.
    Idle,
    /// Reading, or sleeping until the oldest parked connection is its to read.
    Awake,
}

/// The node's parkings: how many were made and read, the connections parked, and the
/// releases waiting for them.
#[derive(Default)]
struct Book {
    handed: u64,
    /// Every parking up to this one has been read.
    read: u64,
    /// Parkings above `read` read already (readers finish out of order).
    read_ahead: Vec<u64>,
    parked: VecDeque<Job>,
    waiting: Vec<After>,
    reader: ReaderState,
    /// The node is gone: the reader reads what is parked, then ends.
    closed: bool,
}

impl Book {
    fn mark_read(&mut self, seq: u64) {
        if seq != self.read + 1 {
            self.read_ahead.push(seq);
            return;
        }
        self.read = seq;
        while let Some(at) = self.read_ahead.iter().position(|&s| s == self.read + 1) {
            self.read_ahead.swap_remove(at);
            self.read += 1;
        }
    }
}

/// A node's parked connections, shared by its rounds and its reader.
#[derive(Default)]
pub(super) struct Late {
    book: Mutex<Book>,
    /// How many connections are parked (`book.parked.len()`), for a checkout's quick look.
    parked: AtomicUsize,
    /// Wakes an idle reader.
    wake: Condvar,
}

impl std::fmt::Debug for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let book = lock(&self.book);
        write!(f, "Late {{ handed: {}, read: {} }}", book.handed, book.read)
    }
}

impl Late {
    /// The node is being dropped: its reader reads what is parked, then ends. Without a reader
    /// (its start failed), the caller gets what is parked to read.
    fn close(&self) -> Vec<Job> {
        let mut book = lock(&self.book);
        book.closed = true;
        let orphans = if book.reader == ReaderState::Absent {
            self.parked.store(0, Ordering::Relaxed);
            book.parked.drain(..).collect()
        } else {
            Vec::new()
        };
        drop(book);
        self.wake.notify_all();
        orphans
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Node {
    /// Parks `unread` with the node (see the module's documentation); gives it back when it
    /// cannot be (too many unread already, the node is being dropped, or its reader could not
    /// be started): the round then reads it itself.
    pub(crate) fn hand_off(&self, unread: Unread) -> Result<(), Box<Unread>> {
        let late = &self.health.late;
        let mut book = lock(&late.book);
        if book.closed || book.handed - book.read >= MAX_UNREAD {
            return Err(Box::new(unread));
        }
        if book.reader == ReaderState::Absent {
            // Started once per node, outside the lock (a thread's start is a system call).
            book.reader = ReaderState::Starting;
            drop(book);
            let health = Arc::clone(&self.health);
            let io_timeout = self.io_timeout;
            let started = std::thread::Builder::new()
                .name(format!("redmutex-late-{}", self.health.index))
                .spawn(move || read_parked(&health, io_timeout));
            book = lock(&late.book);
            if started.is_err() {
                book.reader = ReaderState::Absent;
                return Err(Box::new(unread));
            }
            if book.reader == ReaderState::Starting {
                book.reader = ReaderState::Awake;
            }
        }
        let seq = book.handed + 1;
        book.handed = seq;
        // A node whose replies come within `LINGER` (loopback, one zone) is read by the next
        // checkout whenever it comes: the wait is short, the next round goes on the same
        // connection (after the late commands, in order), and the read's sample keeps the
        // node's round trip honest. A farther node's connection waits until its reply is due.
        let expected = self.expected();
        let due = if expected <= LINGER {
            unread.written
        } else {
            unread.written + expected
        };
        book.parked.push_back(Job { unread, seq, due });
        late.parked.store(book.parked.len(), Ordering::Relaxed);
        if book.reader == ReaderState::Idle {
            book.reader = ReaderState::Awake;
            drop(book);
            late.wake.notify_one();
        }
        Ok(())
    }

    /// A parked connection of the current generation for a checkout, its replies read (and
    /// counted, and the node's owed releases paid on it): the oldest one, when its reply is
    /// due or `now` is `None` (the pool has no idle connection: the wait for the reply is the
    /// shortest one). `None` when there is none to take, or reading it failed (the node's
    /// failure is then recorded, as a round's would be).
    pub(super) fn parked(&self, generation: u64, now: Option<Instant>) -> Option<Conn> {
        let job = {
            let mut book = lock(&self.health.late.book);
            let front = book.parked.front()?;
            if front.unread.conn.generation < generation || now.is_some_and(|now| now < front.due) {
                return None;
            }
            let job = book.parked.pop_front()?;
            self.health
                .late
                .parked
                .store(book.parked.len(), Ordering::Relaxed);
            job
        };
        read_late(&self.health, job, self.io_timeout)
    }

    /// Whether a connection is parked (a checkout's quick look, without reading the clock).
    pub(super) fn has_parked(&self) -> bool {
        self.health.late.parked.load(Ordering::Relaxed) != 0
    }

    /// The node is being dropped: its reader reads what is parked (each within its round's
    /// deadline), then ends; with no reader, this thread reads it.
    pub(super) fn close_parked(&self) {
        for job in self.health.late.close() {
            drop(read_late(&self.health, job, self.io_timeout));
        }
    }

    /// A mark for [`owe_after`](Self::owe_after): `Some` while parked connections of this node
    /// are unread (a command sent now may reach the node before theirs), `None` when there
    /// are none.
    pub(crate) fn unread_mark(&self) -> Option<u64> {
        let book = lock(&self.health.late.book);
        (book.read < book.handed).then_some(book.handed)
    }

    /// Owes the node `packed` (see [`Node::owe`]) once the parkings up to `mark` have been
    /// read: the commands they carried have then run, so the release runs after them. At once
    /// when they have been read already.
    pub(crate) fn owe_after(&self, mark: u64, packed: Vec<u8>, until: Instant) {
        let mut book = lock(&self.health.late.book);
        if book.read >= mark {
            drop(book);
            self.health.owe(packed, until);
        } else {
            book.waiting.push(After {
                after: mark,
                packed,
                until,
            });
        }
    }
}

/// The node's reader: reads each parked connection no checkout took within [`LINGER`], and
/// once the node is dropped, every one left, then ends.
fn read_parked(health: &Health, io_timeout: Duration) {
    let late = &health.late;
    let mut book = lock(&late.book);
    loop {
        let now = Instant::now();
        let ripe = match book.parked.front() {
            None if book.closed => return,
            None => {
                book.reader = ReaderState::Idle;
                book = late.wake.wait(book).unwrap_or_else(PoisonError::into_inner);
                book.reader = ReaderState::Awake;
                continue;
            }
            Some(job) => book.closed || job.unread.written + LINGER <= now,
        };
        if !ripe {
            let wait = book
                .parked
                .front()
                .map_or(LINGER, |job| (job.unread.written + LINGER) - now);
            book = late
                .wake
                .wait_timeout(book, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        }
        let Some(job) = book.parked.pop_front() else {
            continue;
        };
        late.parked.store(book.parked.len(), Ordering::Relaxed);
        drop(book);
        drop(read_late(health, job, io_timeout));
        book = lock(&late.book);
    }
}

/// Reads one parked connection's replies by its round's deadline, counts them, pays the
/// releases that waited for them (and any the node is owed) on it, and gives it back when it
/// is sound (`None` when it failed, and was dropped).
fn read_late(health: &Health, job: Job, io_timeout: Duration) -> Option<Conn> {
    let Job {
        mut unread, seq, ..
    } = job;
    health.late_replies.fetch_add(1, Ordering::Relaxed);
    let mut failure = None;
    // Releases this connection's replies call for (see `Unread::owe_unless_yes`).
    let mut owing: Vec<After> = Vec::new();
    let start = Instant::now();
    for _ in 0..unread.replies {
        let left = unread.deadline.saturating_duration_since(Instant::now());
        let reply = unread
            .conn
            .set_read_timeout(left.max(MIN_TIMEOUT))
            .and_then(|()| recv(&mut unread.conn.con));
        match reply {
            Ok(Value::ServerError(e)) if e.kind() == Some(ServerErrorKind::ReadOnly) => {
                failure = Some(redis::RedisError::from((
                    ErrorKind::Server(ServerErrorKind::ReadOnly),
                    "late reply: READONLY",
                )));
                break;
            }
            Ok(v) => {
                if let Value::ServerError(e) = &v
                    && e.kind() == Some(ServerErrorKind::NoScript)
                {
                    health.note_scripts(unread.scripts, false);
                }
                let ballot = (unread.judge)(&v);
                let owed = if ballot == Ballot::Given {
                    unread.owe_if_yes.take()
                } else {
                    unread.owe_unless_yes.take()
                };
                if let Some((packed, until)) = owed {
                    owing.push(After {
                        after: seq,
                        packed,
                        until,
                    });
                }
                count(health, ballot);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    match failure {
        None => {
            unread.conn.broken = false;
            let end = Instant::now();
            health.answered(late_sample(health, unread.written, start, end));
        }
        Some(e) => {
            count(health, Ballot::Failed);
            // A release that got no answer may not have run, or run before the grant; an
            // acquisition that got none may have granted.
            let owed = [unread.owe_unless_yes.take(), unread.owe_if_yes.take()];
            for (packed, until) in owed.into_iter().flatten() {
                owing.push(After {
                    after: seq,
                    packed,
                    until,
                });
            }
            note_failure(health, &unread.conn, &e);
        }
    }
    let due = {
        let mut book = lock(&health.late.book);
        book.mark_read(seq);
        book.waiting.append(&mut owing);
        let read = book.read;
        let (due, kept): (Vec<After>, Vec<After>) = std::mem::take(&mut book.waiting)
            .into_iter()
            .partition(|a| a.after <= read);
        book.waiting = kept;
        due
    };
    for a in due {
        health.owe(a.packed, a.until);
    }
    if unread.conn.broken {
        return None;
    }
    // Pays what the node is owed at once on this connection, whose replies are read (the late
    // commands ran): the node may see no other round for a while.
    if unread.conn.owed_seen < health.owed_next.load(Ordering::Acquire)
        && let Err(e) = super::pay_owed_on(health, &mut unread.conn, io_timeout)
    {
        note_failure(health, &unread.conn, &e);
        return None;
    }
    Some(unread.conn)
}

/// The round trip sample of a late read that started at `start` and ended at `end`, of
/// commands written at `written`: the whole time when the read waited for the reply (which
/// then arrived as it ended); otherwise the reply was there at `start`, which bounds the round
/// trip from above: a sample only when that bound is below the node's smoothed round trip, so
/// an estimate raised by one slow moment comes down again even while every one of the node's
/// replies is read late (without it, the node would look slower than it is for good, and its
/// parked connections would wait for a due time long past).
fn late_sample(
    health: &Health,
    written: Instant,
    start: Instant,
    end: Instant,
) -> Option<Duration> {
    if end.saturating_duration_since(start) >= WAITED {
        return Some(end.saturating_duration_since(written));
    }
    let bound = start.saturating_duration_since(written);
    (bound < expected(health)).then_some(bound)
}

/// Marks the node failing after an I/O error of a late read on `conn` (a signal's interruption
/// is not the node's failure), as a round's failure would.
fn note_failure(health: &Health, conn: &Conn, e: &redis::RedisError) {
    // A connection opened before the node's last failure failing too is old news: that failure
    // was recorded, and a node up again since (restarted, say) must not be marked down by the
    // connections it dropped (before, its parked ones made it flap down and up once more).
    if !is_interrupted(e) && conn.generation >= health.generation.load(Ordering::Acquire) {
        health.failed(NodeErrorKind::of(e), &describe(e));
    }
}

fn count(health: &Health, ballot: Ballot) {
    let counter = match ballot {
        Ballot::Given => &health.given,
        Ballot::Refused => &health.refused,
        Ballot::Failed => &health.failed_votes,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads one reply, skipping RESP3 push messages.
fn recv(con: &mut redis::Connection) -> redis::RedisResult<Value> {
    loop {
        match con.recv_response()? {
            Value::Push { .. } => {}
            v => return Ok(v),
        }
    }
}

/// How long the node's replies are expected to take (its smoothed round trip; zero before the
/// first), for the order a round reads the nodes in.
pub(super) fn expected(health: &Health) -> Duration {
    Duration::from_nanos(health.round_trip.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Watch;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_late_read_samples_its_round_trip_only_when_it_says_something() {
        let h = Health::new("127.0.0.1:1".into(), 0, None, Watch::default());
        let t0 = Instant::now();
        // Waited from 1 ms to 5 ms: the reply came at 5 ms.
        assert_eq!(late_sample(&h, t0, t0 + MS, t0 + MS * 5), Some(MS * 5));
        h.answered(Some(MS * 5));
        // There already at 8 ms: says nothing below a 5 ms estimate.
        assert_eq!(late_sample(&h, t0, t0 + MS * 8, t0 + MS * 8), None);
        // There already at 2 ms: the round trip was at most 2 ms, below the estimate.
        assert_eq!(late_sample(&h, t0, t0 + MS * 2, t0 + MS * 2), Some(MS * 2));
    }

    #[test]
    fn parkings_read_out_of_order_count_as_read_once_every_earlier_one_is() {
        let mut book = Book {
            handed: 4,
            ..Book::default()
        };
        book.mark_read(2);
        book.mark_read(4);
        assert_eq!(book.read, 0);
        book.mark_read(1);
        assert_eq!(book.read, 2);
        book.mark_read(3);
        assert_eq!(book.read, 4);
        assert!(book.read_ahead.is_empty());
    }
}

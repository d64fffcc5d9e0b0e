//! Replies a round left unread: a round decides as soon as the replies it has read settle its
//! outcome, and hands the connections still carrying replies to their node's own reader (one
//! thread per node, started on the node's first such hand-off). The reader reads them within
//! the round's deadline, counts them in the node's statistics and health as the round would
//! have, and only then lets the connection go back to the pool: a connection never carries a
//! command before the replies it owes were read, so a late reply is never taken for another
//! command's.
//!
//! What a late reply may have done (a late "yes" to an acquisition that lost, or to one
//! released since) is undone with the node's owed releases: a release that went to the node
//! while a hand-off sent before it was still unread is also owed *after* that hand-off
//! ([`Node::owe_after`]), so the node runs it once more after the late command, whichever
//! connection either went on.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use r2d2::PooledConnection;
use redis::{ErrorKind, ServerErrorKind, Value};

use super::{Ballot, Health, MIN_TIMEOUT, Node, NodeManager};
use crate::error::{NodeErrorKind, describe, is_interrupted};

/// The most hand-offs a node's reader may have unread at once; past that, a round reads its
/// replies itself (a node that answers slower than rounds come cannot pile them up).
const MAX_UNREAD: u64 = 64;

/// How a late reply counts in its node's statistics.
pub(crate) type Judge = Box<dyn Fn(&Value) -> Ballot + Send>;

/// A connection whose replies a round did not read.
pub(crate) struct Unread {
    pub(crate) conn: PooledConnection<NodeManager>,
    /// How many replies it still owes.
    pub(crate) replies: usize,
    /// When the round's commands were written (a late reply's round trip starts there).
    pub(crate) written: Instant,
    /// The round's deadline: a reply not read by then is the node's failure, as in a round.
    pub(crate) deadline: Instant,
    pub(crate) judge: Judge,
    /// A release to owe the node (until the instant) if a late reply is not a yes: this
    /// round was itself a release that may have overtaken an earlier round's grant on its way
    /// to the node (see [`Node::owe_after`]). Every earlier hand-off of the node has been read
    /// when this one is, so the grant has landed by then.
    pub(crate) owe_unless_yes: Option<(Vec<u8>, Instant)>,
}

/// A hand-off in the reader's queue.
struct Job {
    unread: Unread,
    /// Its place in the node's sequence of hand-offs.
    seq: u64,
}

/// A release owed to the node once the hand-offs up to `after` have been read.
#[derive(Debug)]
struct After {
    after: u64,
    packed: Vec<u8>,
    until: Instant,
}

/// The node's hand-offs: how many were made and read, and the releases waiting for them.
#[derive(Default, Debug)]
pub(super) struct Book {
    handed: u64,
    read: u64,
    waiting: Vec<After>,
}

/// The node's reader: the sending end of its queue, once started.
#[derive(Default)]
pub(super) struct Reader {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Node {
    /// Hands `unread` to the node's reader; gives it back when the reader cannot take it (a
    /// pool of one connection, too many unread already, or no thread could be started): the
    /// round then reads it itself.
    pub(crate) fn hand_off(&self, unread: Unread) -> Result<(), Box<Unread>> {
        // A pool of one connection: the next round would wait for the reader anyway.
        if self.pool.max_size() <= 1 {
            return Err(Box::new(unread));
        }
        let mut queue = lock(&self.reader.queue);
        let mut book = lock(&self.health.late);
        if book.handed - book.read >= MAX_UNREAD {
            return Err(Box::new(unread));
        }
        if queue.is_none() {
            let (tx, rx) = mpsc::channel::<Job>();
            let health = Arc::clone(&self.health);
            let io_timeout = self.io_timeout;
            let started = std::thread::Builder::new()
                .name(format!("redmutex-late-{}", self.health.index))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        read_late(&health, job, io_timeout);
                    }
                });
            if started.is_err() {
                return Err(Box::new(unread));
            }
            *queue = Some(tx);
        }
        let seq = book.handed + 1;
        let job = Job { unread, seq };
        let Some(tx) = queue.as_ref() else {
            return Err(Box::new(job.unread));
        };
        match tx.send(job) {
            Ok(()) => {
                book.handed = seq;
                Ok(())
            }
            Err(mpsc::SendError(job)) => {
                *queue = None;
                Err(Box::new(job.unread))
            }
        }
    }

    /// A mark for [`owe_after`](Self::owe_after): `Some` while hand-offs of this node are
    /// unread (a command sent now may reach the node before theirs), `None` when there are none.
    pub(crate) fn unread_mark(&self) -> Option<u64> {
        let book = lock(&self.health.late);
        (book.read < book.handed).then_some(book.handed)
    }

    /// Owes the node `packed` (see [`Node::owe`]) once the hand-offs up to `mark` have been
    /// read: the commands they carried have then run, so the release runs after them. At once
    /// when they have been read already.
    pub(crate) fn owe_after(&self, mark: u64, packed: Vec<u8>, until: Instant) {
        let mut book = lock(&self.health.late);
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

/// The reader's work on one hand-off: reads its replies by its deadline, counts them, puts the
/// connection back (or drops it, when it failed), then owes the releases that waited for it.
fn read_late(health: &Health, job: Job, io_timeout: Duration) {
    let Job { mut unread, seq } = job;
    let mut failure = None;
    // Releases this hand-off's replies call for (see `Unread::owe_unless_yes`).
    let mut owing: Vec<After> = Vec::new();
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
                let ballot = (unread.judge)(&v);
                if ballot != Ballot::Given
                    && let Some((packed, until)) = unread.owe_unless_yes.take()
                {
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
            health.answered(unread.written.elapsed());
        }
        Some(e) => {
            count(health, Ballot::Failed);
            // A release that got no answer may not have run, or run before the grant.
            if let Some((packed, until)) = unread.owe_unless_yes.take() {
                owing.push(After {
                    after: seq,
                    packed,
                    until,
                });
            }
            note_failure(health, &e);
        }
    }
    let due = {
        let mut book = lock(&health.late);
        book.read = seq;
        let (mut due, kept): (Vec<After>, Vec<After>) = std::mem::take(&mut book.waiting)
            .into_iter()
            .partition(|a| a.after <= seq);
        book.waiting = kept;
        due.append(&mut owing);
        due
    };
    let owing = !due.is_empty();
    for a in due {
        health.owe(a.packed, a.until);
    }
    // Pays them at once on this connection, whose replies are read (the late commands ran):
    // the node may see no other round for a while.
    if owing
        && !unread.conn.broken
        && let Err(e) = super::pay_owed_on(health, &mut unread.conn, io_timeout)
    {
        note_failure(health, &e);
    }
    drop(unread);
}

/// Marks the node failing after an I/O error of its reader (a signal's interruption is not the
/// node's failure), as a round's failure would.
fn note_failure(health: &Health, e: &redis::RedisError) {
    if !is_interrupted(e) {
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

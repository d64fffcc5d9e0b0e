//! Wake-up on release: a waiting `acquire` sleeps until the holder's release is announced,
//! instead of polling.
//!
//! The release script publishes on the resource's own channel (`<resource>:redmutex:released`)
//! in the same round trip as the delete, but only when a waiter has marked the resource (so an
//! uncontended release publishes nothing). In this process, the waiters of one resource share a
//! *room*: one subscription to that channel on one node (a node that answered "busy", so it
//! holds the lock the waiters wait for). Whichever waiter finds the subscription free reads it
//! itself, blocking on the socket: when the release arrives, that thread is already running and
//! goes straight to its attempt (no hand-over between threads). The others sleep on the room's
//! condition variable and take over the reading when it is free.
//!
//! A multi-lock's room listens to the channels of all its resources (one `SUBSCRIBE` of them all),
//! so the release of any of them, by a plain lock or another multi-lock, wakes it. A room is
//! known by the channels it listens to, never by a display name: a lock that happens to be
//! named like a multi-lock (`"[a, b]"`) has a room of its own.
//!
//! A room subscribes when its first waiter enters (before that waiter's marking attempt, so a
//! release that follows the attempt is heard) and unsubscribes when its last waiter leaves; the
//! connection is then parked for the next room. No thread of its own, nothing per resource
//! beyond the waiting, and nothing outside the resource's names: an ACL limited to an
//! application's key prefix (`&app:*`) allows the channel. The randomised poll stays as the
//! fallback for lost messages, a subscription that failed, and holders using other clients.
//!
//! Fairness: a waiting client marks the resource as waited for (a short-lived key written by
//! the acquire script when the lock is busy); the release script reports the mark, and a
//! releaser that saw it holds back briefly before taking the same resource again, so a waiter
//! that was woken gets there first. The hold-back is kept per resource.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::Value;

use crate::command::{self, Arg};
use crate::node::{MIN_TIMEOUT, Nodes};
use crate::scripts::RELEASED_SUFFIX;

/// Bounds of the pause a releaser observes before re-taking a lock others wait for.
const GRACE_MIN: Duration = Duration::from_millis(1);
const GRACE_MAX: Duration = Duration::from_millis(20);
/// How often a wait with a cancel flag looks at it.
const CANCEL_SLICE: Duration = Duration::from_millis(20);
/// After a failed subscription, how long a room polls before trying again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// Unsubscribed connections kept per node for the next room.
const PARKED_PER_NODE: usize = 2;
/// Rooms subscribed at once at most, per factory: past that, new rooms poll. This bounds the
/// connections a factory opens to `pool size + MAX_SUBSCRIBED + 2 per node`.
const MAX_SUBSCRIBED: usize = 256;
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A hold-back: the members it is for, and when it ends.
type Grace = (Box<[Box<str>]>, Instant);

/// Whether a grace's key names exactly `members`.
fn same(key: &[Box<str>], members: &[&str]) -> bool {
    key.len() == members.len() && key.iter().zip(members).all(|(k, m)| **k == **m)
}

/// A connection subscribed to a room's release channels (or to an election's changes, for an
/// observer).
pub(crate) struct Sub {
    con: redis::Connection,
    node: usize,
    read_timeout: Duration,
}

impl Sub {
    /// The node it is subscribed on.
    pub(crate) fn node(&self) -> usize {
        self.node
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> redis::RedisResult<()> {
        let timeout = timeout.max(MIN_TIMEOUT);
        if timeout != self.read_timeout {
            self.con.set_read_timeout(Some(timeout))?;
            self.read_timeout = timeout;
        }
        Ok(())
    }

    /// Waits up to `timeout` for a release message: `Ok(Some(payload))` when one came.
    ///
    /// Through `PubSub::get_message`, not `Connection::recv_response`: after a read timeout,
    /// `recv_response` counts a reply as owed and silently skips the next message, which would
    /// drop the release announced after every poll.
    pub(crate) fn listen(&mut self, timeout: Duration) -> redis::RedisResult<Option<Vec<u8>>> {
        self.set_read_timeout(timeout)?;
        let mut pubsub = self.con.as_pubsub();
        let message = pubsub.get_message();
        // Dropping a `PubSub` unsubscribes (with a round trip); the subscription must live on
        // with the connection. It holds nothing else to leak (its message queue is empty).
        std::mem::forget(pubsub);
        match message {
            Ok(message) => Ok(Some(message.get_payload_bytes().to_vec())),
            Err(e) if e.is_timeout() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The kind of a pub/sub reply (`message`, `subscribe`, `unsubscribe`), RESP2 or RESP3.
fn kind(v: &Value) -> Option<&[u8]> {
    let items = match v {
        Value::Array(items) => items.as_slice(),
        Value::Push { kind, .. } => {
            return Some(match kind {
                redis::PushKind::Message => b"message",
                redis::PushKind::Subscribe => b"subscribe",
                redis::PushKind::Unsubscribe => b"unsubscribe",
                _ => b"other",
            });
        }
        _ => return None,
    };
    match items.first() {
        Some(Value::BulkString(k)) => Some(k.as_slice()),
        Some(Value::SimpleString(k)) => Some(k.as_bytes()),
        _ => None,
    }
}

/// The waiters of one resource in this process.
#[derive(Default)]
struct Room {
    state: Mutex<RoomState>,
    changed: Condvar,
}

#[derive(Default)]
struct RoomState {
    waiters: usize,
    /// The subscription, when no waiter is reading it.
    sub: Option<Sub>,
    /// A waiter is reading the subscription now.
    reading: bool,
    /// A waiter is subscribing now; others entering wait for it.
    subscribing: bool,
    /// After a failed subscription: poll until then.
    retry_at: Option<Instant>,
}

impl RoomState {
    fn subscribed(&self) -> bool {
        self.sub.is_some() || self.reading
    }
}

/// The per-factory wake-up service.
pub(crate) struct Waker {
    enabled: bool,
    /// The rooms, by the release channels they listen to.
    rooms: Mutex<HashMap<Vec<String>, Arc<Room>>>,
    /// Per node: connections whose subscription was dropped (an UNSUBSCRIBE may still be on
    /// its way back), for the next room.
    parked: Vec<Mutex<Vec<redis::Connection>>>,
    /// Per set of members (a resource, or a multi-lock's resources): until when this process
    /// holds back from re-taking it. Only those released to waiters in the last few round
    /// trips: a short list.
    graces: Mutex<Vec<Grace>>,
    /// `graces.len()`, read without the lock (the uncontended path looks only at this).
    grace_count: AtomicUsize,
    /// Rooms with a subscription (or subscribing) now.
    subscribed: AtomicUsize,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("enabled", &self.enabled)
            .field("rooms", &lock(&self.rooms).len())
            .finish_non_exhaustive()
    }
}

impl Waker {
    pub(crate) fn new(enabled: bool, nodes: usize) -> Self {
        Self {
            enabled,
            rooms: Mutex::default(),
            parked: (0..nodes).map(|_| Mutex::default()).collect(),
            graces: Mutex::default(),
            grace_count: AtomicUsize::new(0),
            subscribed: AtomicUsize::new(0),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Joins the waiters of `resource`, woken by the releases of `members` (the resource
    /// itself, or each resource of a multi-lock). The first one subscribes to the members'
    /// release channels on one of the nodes in `busy` (they hold the lock that will be
    /// released), and every waiter returns only once that subscription is in place (or
    /// failed), so a release after the caller's next attempt is heard.
    pub(crate) fn enter<'w>(
        &'w self,
        nodes: &'w Nodes,
        resource: &str,
        members: &[&str],
        busy: u64,
    ) -> Seat<'w> {
        let channels: Vec<String> = members
            .iter()
            .map(|m| format!("{m}{RELEASED_SUFFIX}"))
            .collect();
        let room = {
            let mut rooms = lock(&self.rooms);
            let room = match rooms.get(&channels) {
                Some(room) => Arc::clone(room),
                None => {
                    let room = Arc::new(Room::default());
                    rooms.insert(channels.clone(), Arc::clone(&room));
                    room
                }
            };
            lock(&room.state).waiters += 1;
            room
        };
        let seat = Seat {
            waker: self,
            nodes,
            resource: Arc::from(resource),
            channels,
            room,
            busy,
        };
        let limit = nodes.connect_timeout + nodes.io_timeout.saturating_mul(2);
        let end = Instant::now() + limit;
        let mut state = lock(&seat.room.state);
        while state.subscribing {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = seat
                .room
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(seat.ensure_subscribed(state));
        seat
    }

    /// Opens (or reuses) a connection to node `i` subscribed to `channels`, within the node's
    /// timeouts.
    pub(crate) fn subscribe(
        &self,
        nodes: &Nodes,
        i: usize,
        channels: &[String],
    ) -> redis::RedisResult<Sub> {
        let io = nodes.io_timeout;
        let parked = self.parked.get(i).and_then(|p| lock(p).pop());
        let (mut con, reused) = match parked {
            Some(con) => (con, true),
            None => {
                let node = nodes.get(i).ok_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Client, "no such node"))
                })?;
                let con = node.source.connect(nodes.connect_timeout)?;
                (con, false)
            }
        };
        let result = (|| {
            con.set_write_timeout(Some(io))?;
            con.set_read_timeout(Some(io))?;
            let mut packed = Vec::new();
            let args =
                std::iter::once(Arg::Str("SUBSCRIBE")).chain(channels.iter().map(|c| Arg::Str(c)));
            command::pack(&mut packed, args, 1 + channels.len());
            con.send_packed_command(&packed)?;
            // A parked connection may first deliver what was in flight when its last room
            // unsubscribed (messages, the UNSUBSCRIBE confirmation): skip to our confirmations,
            // one per channel.
            let end = Instant::now() + io;
            let mut confirmed = 0;
            loop {
                let reply = con.recv_response()?;
                if let Value::ServerError(e) = &reply {
                    return Err(redis::RedisError::from(e.clone()));
                }
                if kind(&reply) == Some(b"subscribe".as_slice()) {
                    confirmed += 1;
                    if confirmed >= channels.len() {
                        return Ok(());
                    }
                }
                if Instant::now() >= end {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no subscription confirmation",
                    )));
                }
            }
        })();
        match result {
            Ok(()) => Ok(Sub {
                con,
                node: i,
                read_timeout: io,
            }),
            Err(e) if reused && (e.is_io_error() || e.is_connection_dropped()) => {
                // The parked connection went stale: once more on a new one.
                drop(con);
                self.subscribe(nodes, i, channels)
            }
            Err(e) => Err(e),
        }
    }

    /// Drops a subscription: sends UNSUBSCRIBE without waiting for the reply (one write) and
    /// parks the connection for the next room, which skips the reply.
    fn park(&self, mut sub: Sub) {
        let mut packed = Vec::new();
        command::pack(&mut packed, [Arg::Str("UNSUBSCRIBE")], 1);
        if sub.con.send_packed_command(&packed).is_err() {
            return;
        }
        if let Some(parked) = self.parked.get(sub.node) {
            let mut parked = lock(parked);
            if parked.len() < PARKED_PER_NODE {
                parked.push(sub.con);
            }
        }
    }

    /// We released `members` (a resource, or a multi-lock's resources) while others waited
    /// for them: hold back from re-taking them for a few round trips (`round` is how long the
    /// release took).
    pub(crate) fn released_to_waiters(&self, members: &[&str], round: Duration) {
        if !self.enabled {
            return;
        }
        let grace = round.saturating_mul(3).clamp(GRACE_MIN, GRACE_MAX);
        let now = Instant::now();
        let mut graces = lock(&self.graces);
        graces.retain(|(key, until)| *until > now && !same(key, members));
        graces.push((members.iter().map(|m| Box::from(*m)).collect(), now + grace));
        self.grace_count.store(graces.len(), Ordering::Release);
    }

    /// How long this process should still hold back from re-taking `members`.
    pub(crate) fn grace_left(&self, members: &[&str]) -> Duration {
        if self.grace_count.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        lock(&self.graces)
            .iter()
            .find(|(key, _)| same(key, members))
            .map_or(Duration::ZERO, |(_, until)| {
                until.saturating_duration_since(Instant::now())
            })
    }
}

/// One waiter's place in its resource's room; leaving it (on drop) unsubscribes the room when
/// it was the last waiter.
pub(crate) struct Seat<'w> {
    waker: &'w Waker,
    nodes: &'w Nodes,
    resource: Arc<str>,
    /// The release channels that wake this room (also the room's key).
    channels: Vec<String>,
    room: Arc<Room>,
    /// Nodes that answered "busy": where to subscribe.
    busy: u64,
}

impl Seat<'_> {
    /// Subscribes the room if nobody has (and no recent attempt failed). Called with the room's
    /// state locked; returns it locked.
    fn ensure_subscribed<'s>(
        &'s self,
        mut state: MutexGuard<'s, RoomState>,
    ) -> MutexGuard<'s, RoomState> {
        let now = Instant::now();
        if state.subscribed() || state.subscribing || state.retry_at.is_some_and(|t| t > now) {
            return state;
        }
        if self.waker.subscribed.fetch_add(1, Ordering::AcqRel) >= MAX_SUBSCRIBED {
            self.waker.subscribed.fetch_sub(1, Ordering::AcqRel);
            state.retry_at = Some(now + RESUBSCRIBE_AFTER);
            return state;
        }
        state.subscribing = true;
        drop(state);
        // A node that answered "busy" first (it holds the lock), then any node that is up.
        let n = self.nodes.len();
        let order = (0..n)
            .filter(|i| self.busy & (1 << i) != 0)
            .chain((0..n).filter(|i| self.busy & (1 << i) == 0));
        let mut result = Err(None);
        for i in order {
            if self.nodes.get(i).is_some_and(crate::node::Node::is_down) {
                continue;
            }
            match self.waker.subscribe(self.nodes, i, &self.channels) {
                Ok(sub) => {
                    result = Ok(sub);
                    break;
                }
                Err(e) => result = Err(Some(e)),
            }
        }
        let mut state = lock(&self.room.state);
        state.subscribing = false;
        match result {
            Ok(sub) => {
                state.sub = Some(sub);
                state.retry_at = None;
            }
            Err(e) => {
                self.waker.subscribed.fetch_sub(1, Ordering::AcqRel);
                if let Some(e) = e {
                    log::debug!(
                        "redmutex: cannot subscribe to the releases of {:?} ({e}); polling",
                        self.resource
                    );
                }
                state.retry_at = Some(Instant::now() + RESUBSCRIBE_AFTER);
            }
        }
        self.room.changed.notify_all();
        state
    }

    /// Sleeps until a release of the resource is heard (`Some` of the announcement's
    /// payload), `timeout` passes or `cancel` is set (`None`).
    pub(crate) fn wait(&self, timeout: Duration, cancel: Option<&AtomicBool>) -> Option<Vec<u8>> {
        let end = Instant::now() + timeout;
        let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Acquire));
        let mut state = self.ensure_subscribed(lock(&self.room.state));
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || cancelled() {
                return None;
            }
            let slice = if cancel.is_some() {
                left.min(CANCEL_SLICE)
            } else {
                left
            };
            if let Some(mut sub) = state.sub.take() {
                state.reading = true;
                drop(state);
                let heard = sub.listen(slice);
                state = lock(&self.room.state);
                state.reading = false;
                match heard {
                    Ok(heard) => {
                        state.sub = Some(sub);
                        if heard.is_some() {
                            return heard;
                        }
                    }
                    Err(e) => {
                        log::debug!(
                            "redmutex: subscription for {:?} failed ({e}); subscribing again",
                            self.resource
                        );
                        drop(sub);
                        self.waker.subscribed.fetch_sub(1, Ordering::AcqRel);
                        state = self.ensure_subscribed(state);
                    }
                }
            } else {
                state = self
                    .room
                    .changed
                    .wait_timeout(state, slice)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        let sub = {
            let mut rooms = lock(&self.waker.rooms);
            let mut state = lock(&self.room.state);
            state.waiters -= 1;
            if state.waiters > 0 {
                drop(state);
                drop(rooms);
                // Someone else reads the subscription from now on. Notified with no lock held: a
                // waiter woken while this thread still held the room's lock would block on it at
                // once, and this thread's unlock would have to wake it a second time.
                self.room.changed.notify_one();
                return;
            }
            if rooms
                .get(&self.channels)
                .is_some_and(|r| Arc::ptr_eq(r, &self.room))
            {
                rooms.remove(&self.channels);
            }
            state.sub.take()
        };
        if let Some(sub) = sub {
            self.waker.subscribed.fetch_sub(1, Ordering::AcqRel);
            self.waker.park(sub);
        }
    }
}

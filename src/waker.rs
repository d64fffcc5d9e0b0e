//! Wake-up on release: waiters sleep until a release is announced instead of polling.
//!
//! The release script publishes the resource name on one channel in the same round trip as the
//! delete. Each factory keeps one subscriber connection per node (a thread each, started by the
//! first waiting `acquire`), shared by every waiter in the process. Waiters sleep on one of a
//! fixed set of shards (resource hash), so notifying takes no global lock and no per-resource
//! bookkeeping. A waiter reads its shard's sequence number *before* each attempt, so a release
//! that lands between the attempt and the wait is never missed; the randomised poll stays as
//! a fallback for lost messages and holders using other clients.
//!
//! Fairness: a waiting client marks the resource as waited for (a short-lived key written by
//! the acquire script when the lock is busy); the release script reports the mark, and a
//! releaser that saw it holds back briefly before taking the same lock again, so a waiter
//! that was woken gets there first.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::factory::Shared;
use crate::lease::lock;
use crate::node::Source;
use crate::scripts::RELEASE_CHANNEL;

const SHARDS: usize = 64;
/// How often a subscriber wakes to see whether its factory is gone.
const POLL_STOP: Duration = Duration::from_millis(250);
/// Longest pause between reconnection attempts of a subscriber.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Bounds of the pause a releaser observes before re-taking a lock others wait for.
const GRACE_MIN: Duration = Duration::from_millis(1);
const GRACE_MAX: Duration = Duration::from_millis(20);

/// The releases a shard has heard of.
#[derive(Default)]
struct Releases {
    /// Bumped by every release announced for a resource of this shard.
    seq: u64,
    /// The id of the last one (a prefix of the released token's SHA1): each node announces the
    /// same release; only the first announcement wakes a waiter.
    last: [u8; 16],
}

#[derive(Default)]
struct Shard {
    /// Bumped by every release announced for a resource of this shard.
    seq: Mutex<Releases>,
    changed: Condvar,
    /// Nanoseconds after the epoch until which a releaser of a resource of this shard holds
    /// back (0: none).
    grace_until: AtomicU64,
}

/// The per-factory wake-up service.
pub(crate) struct Waker {
    enabled: bool,
    shards: Vec<Shard>,
    epoch: Instant,
    hasher: std::hash::RandomState,
    /// Subscribers started (once).
    started: std::sync::Once,
    /// Subscribers currently subscribed.
    ready: AtomicUsize,
    ready_changed: Condvar,
    ready_lock: Mutex<()>,
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waker")
            .field("enabled", &self.enabled)
            .field("subscribed", &self.ready.load(Ordering::Relaxed))
            .finish()
    }
}

impl Waker {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            epoch: Instant::now(),
            hasher: std::hash::RandomState::new(),
            started: std::sync::Once::new(),
            ready: AtomicUsize::new(0),
            ready_changed: Condvar::new(),
            ready_lock: Mutex::new(()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    fn shard(&self, resource: &[u8]) -> Option<&Shard> {
        let mut h = self.hasher.build_hasher();
        h.write(resource);
        let i = usize::try_from(h.finish() % SHARDS as u64).unwrap_or(0);
        self.shards.get(i)
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts the subscribers on first use and waits (up to `timeout`, that first time only)
    /// until one is subscribed, so the first waits are not pure polls. Later subscribers and
    /// reconnections happen in the background.
    pub(crate) fn subscribe(&self, shared: &Arc<Shared>, timeout: Duration) {
        self.started.call_once(|| {
            for (i, node) in shared.nodes.iter().enumerate() {
                let weak = Arc::downgrade(shared);
                let source = Arc::clone(&node.source);
                let connect_timeout = shared.config.connect_timeout;
                let name = format!("redmutex-sub-{i}");
                if let Err(e) = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || subscriber(&weak, &source, connect_timeout))
                {
                    log::warn!("redmutex: cannot start a subscriber thread: {e}");
                }
            }
            let end = Instant::now() + timeout;
            let mut guard = lock(&self.ready_lock);
            while self.ready.load(Ordering::Acquire) == 0 {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                guard = self
                    .ready_changed
                    .wait_timeout(guard, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        });
    }

    fn set_ready(&self, up: bool) {
        let _guard = lock(&self.ready_lock);
        if up {
            self.ready.fetch_add(1, Ordering::AcqRel);
        } else {
            self.ready.fetch_sub(1, Ordering::AcqRel);
        }
        self.ready_changed.notify_all();
    }

    /// The release sequence number of `resource`'s shard: read it before an attempt, wait on
    /// it after.
    pub(crate) fn seq(&self, resource: &str) -> u64 {
        self.shard(resource.as_bytes())
            .map_or(0, |s| lock(&s.seq).seq)
    }

    /// Sleeps until a release is announced for `resource`'s shard after `seen`, or `timeout`
    /// passes. Returns whether a release woke it.
    pub(crate) fn wait(&self, resource: &str, seen: u64, timeout: Duration) -> bool {
        let Some(shard) = self.shard(resource.as_bytes()) else {
            std::thread::sleep(timeout);
            return false;
        };
        let end = Instant::now() + timeout;
        let mut seq = lock(&shard.seq);
        while seq.seq == seen {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            seq = shard
                .changed
                .wait_timeout(seq, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// A release was announced: `message` is the released token's SHA1 (40 hex digits), then
    /// the resource. Wakes one waiter of the resource's shard: only one can take the lock, and
    /// waking all would make them collide (the others still see the new sequence number when
    /// their own wait ends). Repeated announcements of one release (one per node) are dropped.
    fn notify(&self, message: &[u8]) {
        let (Some(id), Some(resource)) = (message.get(..16), message.get(40..)) else {
            return;
        };
        let Some(shard) = self.shard(resource) else {
            return;
        };
        let mut releases = lock(&shard.seq);
        if releases.last == id {
            return;
        }
        releases.last.copy_from_slice(id);
        releases.seq += 1;
        drop(releases);
        shard.changed.notify_one();
    }

    /// We released `resource` while others waited for it: hold back from re-taking it for a
    /// few round trips (`round` is how long the release took).
    pub(crate) fn released_to_waiters(&self, resource: &str, round: Duration) {
        if !self.enabled {
            return;
        }
        if let Some(shard) = self.shard(resource.as_bytes()) {
            let grace = round.saturating_mul(3).clamp(GRACE_MIN, GRACE_MAX);
            let until = self
                .now_nanos()
                .saturating_add(u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX));
            shard.grace_until.store(until, Ordering::Release);
        }
    }

    /// How long this process should still hold back from re-taking `resource`.
    pub(crate) fn grace_left(&self, resource: &str) -> Duration {
        let Some(shard) = self.shard(resource.as_bytes()) else {
            return Duration::ZERO;
        };
        let until = shard.grace_until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.now_nanos()))
    }
}

/// One node's subscriber: subscribes to the release channel and wakes the waiters of each
/// announced resource; reconnects with back-off (to the current master, for a Sentinel node);
/// exits when the factory is gone.
fn subscriber(shared: &Weak<Shared>, source: &Source, connect_timeout: Duration) {
    let mut backoff = Duration::from_millis(50);
    while shared.strong_count() > 0 {
        let result = source.connect(connect_timeout).and_then(|mut con| {
            con.set_read_timeout(Some(POLL_STOP))?;
            con.set_write_timeout(Some(connect_timeout))?;
            let mut pubsub = con.as_pubsub();
            pubsub.subscribe(RELEASE_CHANNEL)?;
            backoff = Duration::from_millis(50);
            if let Some(s) = shared.upgrade() {
                s.waker.set_ready(true);
            }
            let result = listen(shared, &mut pubsub);
            if let Some(s) = shared.upgrade() {
                s.waker.set_ready(false);
            }
            result
        });
        if let Err(e) = result {
            log::debug!("redmutex: subscriber: {e}; reconnecting in {backoff:?}");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

fn listen(shared: &Weak<Shared>, pubsub: &mut redis::PubSub<'_>) -> redis::RedisResult<()> {
    loop {
        match pubsub.get_message() {
            Ok(msg) => match shared.upgrade() {
                Some(s) => s.waker.notify(msg.get_payload_bytes()),
                None => return Ok(()),
            },
            Err(e) if e.is_timeout() => {
                if shared.strong_count() == 0 {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

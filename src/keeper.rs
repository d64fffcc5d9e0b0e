//! The keep-alive thread: one per factory, a timer heap of leases to renew (or to watch for
//! expiry). Renewals due together go to the lease protocol as one batch (one pipelined round
//! trip for the lot); the protocol judges each and settles its deadline. This thread never runs
//! user code: loss callbacks run on the factory's callback thread.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::protocol::lease::{self, Lease, LossReason, Renewal, lock};
use crate::shared::Shared;

/// Renewals sent in one pipeline at most.
const MAX_BATCH: usize = 1024;
/// Leases due within this much of the first are renewed in the same batch.
const BATCH_SLACK: Duration = Duration::from_millis(5);
/// The soonest a failed renewal is retried.
const MIN_RETRY: Duration = Duration::from_millis(10);

/// What the keeper does when an entry is due.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Task {
    /// Extend the lease by its TTL.
    Renew,
    /// Signal the loss (for this reason) once the validity has ended.
    Watch(LossReason),
}

struct Entry {
    lease: Arc<Lease>,
    task: Task,
    due: Instant,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    entries: HashMap<u64, Entry>,
    next_id: u64,
    running: bool,
    stop: bool,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

/// The per-factory keep-alive service. Every handle (factory, lock, guard) holds it; when the
/// last one goes, the thread stops.
#[derive(Default)]
pub(crate) struct Keeper {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("leases", &lock(&self.inner.state).entries.len())
            .finish()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        lock(&self.inner.state).stop = true;
        self.inner.changed.notify_all();
    }
}

/// What every handle of a factory (the factory, its locks, their guards) holds: the shared state
/// and the keep-alive service. When the last handle goes, the keep-alive thread stops.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) shared: Arc<Shared>,
    pub(crate) keeper: Keeper,
}

/// When to renew a lease of `ttl` after a successful renewal: at a third of the TTL, so two
/// more attempts fit before it runs out.
pub(crate) fn renew_after(ttl: Duration) -> Duration {
    ttl / 3
}

impl Keeper {
    /// Schedules `task` for `lease` at `due`, starting the thread if needed. Returns the entry's
    /// id, for [`remove`](Self::remove).
    pub(crate) fn add(
        &self,
        shared: &Arc<Shared>,
        lease: Arc<Lease>,
        task: Task,
        due: Instant,
    ) -> u64 {
        let mut state = lock(&self.inner.state);
        state.next_id += 1;
        let id = state.next_id;
        state.entries.insert(id, Entry { lease, task, due });
        state.heap.push(Reverse((due, id)));
        // The thread sleeps until the earliest entry: wake it only if this one comes first.
        let first = state.heap.peek() == Some(&Reverse((due, id)));
        if !state.running {
            state.running = true;
            let inner = Arc::clone(&self.inner);
            let shared = Arc::downgrade(shared);
            let spawned = std::thread::Builder::new()
                .name("redmutex-keeper".into())
                .spawn(move || inner.run(&shared));
            if let Err(e) = spawned {
                state.running = false;
                log::warn!("redmutex: cannot start the keep-alive thread: {e}");
            }
        }
        drop(state);
        if first {
            self.inner.changed.notify_one();
        }
        id
    }

    /// Forgets an entry. After this returns, the thread starts no new work on it (a round
    /// already under way is excluded by the lease's round lock, and finds the lease retired).
    pub(crate) fn remove(&self, id: u64) {
        lock(&self.inner.state).entries.remove(&id);
    }
}

impl Inner {
    fn run(&self, shared: &Weak<Shared>) {
        loop {
            let Some(batch) = self.next_batch() else {
                return;
            };
            // The factory and every guard are gone: nothing left to keep alive.
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut renew = Vec::new();
            let mut ids = Vec::new();
            for (id, entry) in batch {
                match entry.task {
                    Task::Renew => {
                        ids.push(id);
                        renew.push(entry.lease);
                    }
                    Task::Watch(reason) => self.watch(id, entry.lease, reason),
                }
            }
            if renew.is_empty() {
                continue;
            }
            let results = lease::renew(&shared, &renew);
            let now = Instant::now();
            for ((id, lease), result) in ids.into_iter().zip(renew).zip(results) {
                let ttl = lease.options.ttl;
                let next = match result {
                    Renewal::Renewed(ttl) => (Task::Renew, now + renew_after(ttl)),
                    Renewal::Retry => {
                        let left = lease.validity();
                        let retry = (ttl / 10).min(left / 3).max(MIN_RETRY);
                        (Task::Renew, now + retry)
                    }
                    Renewal::HoldLimit => (Task::Watch(LossReason::HoldLimit), lease.deadline()),
                    Renewal::Done => continue,
                };
                self.put_back(id, lease, next.0, next.1);
            }
        }
    }

    /// Waits for the next due entries; `None` when asked to stop.
    fn next_batch(&self) -> Option<Vec<(u64, Entry)>> {
        let mut state = lock(&self.state);
        loop {
            if state.stop {
                state.running = false;
                return None;
            }
            let now = Instant::now();
            match state.heap.peek() {
                None => {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(Reverse((due, _))) if *due > now => {
                    let wait = *due - now;
                    state = self
                        .changed
                        .wait_timeout(state, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                Some(_) => break,
            }
        }
        let horizon = Instant::now() + BATCH_SLACK;
        let mut batch = Vec::new();
        while batch.len() < MAX_BATCH {
            match state.heap.peek() {
                Some(Reverse((due, _))) if *due <= horizon => {}
                _ => break,
            }
            let Some(Reverse((due, id))) = state.heap.pop() else {
                break;
            };
            // Skip heap items of removed or rescheduled entries.
            if state.entries.get(&id).is_some_and(|e| e.due == due)
                && let Some(entry) = state.entries.remove(&id)
            {
                batch.push((id, entry));
            }
        }
        Some(batch)
    }

    /// A watched lease is due: signal its loss if it ran out (no lock held), or look again at
    /// its deadline.
    fn watch(&self, id: u64, lease: Arc<Lease>, reason: LossReason) {
        let live = match lease.live_now() {
            Some(live) => live,
            // A round is under way on it: look again soon.
            None => {
                self.put_back(id, lease, Task::Watch(reason), Instant::now() + MIN_RETRY);
                return;
            }
        };
        if !live {
            return;
        }
        if lease.validity().is_zero() {
            lease.mark_lost(reason);
        } else {
            let due = lease.deadline();
            self.put_back(id, lease, Task::Watch(reason), due);
        }
    }

    /// Schedules an entry again after work on it. (A lease retired meanwhile is found so when
    /// next due, and dropped.)
    fn put_back(&self, id: u64, lease: Arc<Lease>, task: Task, due: Instant) {
        let mut state = lock(&self.state);
        state.entries.insert(id, Entry { lease, task, due });
        state.heap.push(Reverse((due, id)));
    }
}

//! The keep-alive thread: one per factory, a timer heap of leases to renew (or to watch for
//! expiry), renewed in batches: all renewals due together go out as one pipeline per node, one
//! round trip for the lot.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::command::{self, Arg};
use crate::error::Error;
use crate::factory::Shared;
use crate::lease::{Lease, LossReason, lock};
use crate::round::{fan_out_batch, int_reply};
use crate::scripts;

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

/// The per-factory keep-alive service.
#[derive(Default)]
pub(crate) struct Keeper {
    state: Mutex<State>,
    changed: Condvar,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("leases", &lock(&self.state).entries.len())
            .finish()
    }
}

impl Keeper {
    /// Schedules `task` for `lease` at `due`, starting the thread if needed. Returns the entry's
    /// id, for [`remove`](Self::remove).
    pub(crate) fn add(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        lease: Arc<Lease>,
        task: Task,
        due: Instant,
    ) -> u64 {
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        state.entries.insert(id, Entry { lease, task, due });
        state.heap.push(Reverse((due, id)));
        if !state.running {
            state.running = true;
            let keeper = Arc::clone(self);
            let shared = Arc::downgrade(shared);
            let spawned = std::thread::Builder::new()
                .name("redmutex-keeper".into())
                .spawn(move || keeper.run(&shared));
            if let Err(e) = spawned {
                state.running = false;
                log::warn!("redmutex: cannot start the keep-alive thread: {e}");
            }
        }
        drop(state);
        self.changed.notify_one();
        id
    }

    /// Forgets an entry. After this returns, the thread starts no new work on it (work already
    /// under way is excluded by the lease's `live` lock).
    pub(crate) fn remove(&self, id: u64) {
        lock(&self.state).entries.remove(&id);
    }

    /// Asks the thread to exit (the factory is gone).
    pub(crate) fn shutdown(&self) {
        lock(&self.state).stop = true;
        self.changed.notify_all();
    }

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
            for (id, entry) in batch {
                match entry.task {
                    Task::Renew => renew.push((id, entry.lease)),
                    Task::Watch(reason) => self.watch(id, &entry.lease, reason),
                }
            }
            for (id, lease, next) in renew_all(&shared, renew) {
                if let Some((task, due)) = next {
                    self.put_back(id, lease, task, due);
                }
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
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                Some(Reverse((due, _))) if *due > now => {
                    let wait = *due - now;
                    state = self
                        .changed
                        .wait_timeout(state, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    fn watch(&self, id: u64, lease: &Arc<Lease>, reason: LossReason) {
        if !lock(&lease.live).live {
            return;
        }
        if lease.validity().is_zero() {
            lease.mark_lost(reason);
        } else {
            self.put_back(id, Arc::clone(lease), Task::Watch(reason), lease.deadline());
        }
    }

    /// Schedules an entry again after work on it, unless its lease ended meanwhile. (A release
    /// that slips in after this check leaves a stale entry, dropped when next due.)
    fn put_back(&self, id: u64, lease: Arc<Lease>, task: Task, due: Instant) {
        if !lock(&lease.live).live {
            return;
        }
        let mut state = lock(&self.state);
        state.entries.insert(id, Entry { lease, task, due });
        state.heap.push(Reverse((due, id)));
    }
}

/// What to do next with a lease: renew or watch it again at some instant; `None` drops it.
type Next = Option<(Task, Instant)>;

/// Renews a batch of leases in one pipelined round. Returns, for each lease still to be kept,
/// what to do next; leases lost or released meanwhile are left out.
fn renew_all(shared: &Shared, leases: Vec<(u64, Arc<Lease>)>) -> Vec<(u64, Arc<Lease>, Next)> {
    let now = Instant::now();
    let mut out = Vec::with_capacity(leases.len());
    // Hold every lease's `live` lock for the round: a release waits for it, never races it.
    let mut live = Vec::with_capacity(leases.len());
    let mut packed = Vec::new();
    for (id, lease) in &leases {
        let guard = lock(&lease.live);
        if !guard.live {
            continue;
        }
        let Some(ttl) = renewal_ttl(lease, now) else {
            // The hold limit is reached: let the lease run out, then signal.
            let watch = Some((Task::Watch(LossReason::HoldLimit), lease.deadline()));
            out.push((*id, Arc::clone(lease), watch));
            continue;
        };
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        command::pack_script(
            &mut packed,
            &scripts::EXTEND,
            &[Arg::Str(&lease.resource)],
            &[Arg::Str(lease.token.as_str()), Arg::Int(ms)],
        );
        live.push((*id, lease, ttl, lease.deadline(), guard));
    }
    if live.is_empty() {
        return out;
    }
    let start = Instant::now();
    let tallies = fan_out_batch(shared, &packed, live.len(), shared.all, int_reply);
    let end = Instant::now();
    let elapsed = end - start;
    for ((id, lease, ttl, old_deadline, guard), tally) in live.into_iter().zip(tallies) {
        let yes = tally.yes;
        let next = match lease.extended(tally, ttl, elapsed, end, old_deadline) {
            Ok(()) => {
                log::debug!("redmutex: renewed {:?} for {ttl:?}", lease.resource);
                (Task::Renew, end + renew_after(ttl))
            }
            // Nodes failing or slow: try again soon, while validity lasts.
            Err(Error::NoQuorum { .. } | Error::TooLate { .. })
                if Instant::now() < lease.deadline() =>
            {
                let left = lease.deadline().saturating_duration_since(Instant::now());
                let retry = (ttl / 10).min(left / 3).max(MIN_RETRY);
                log::debug!(
                    "redmutex: renewal of {:?} failed ({yes} yes); retry in {retry:?}",
                    lease.resource
                );
                (Task::Renew, Instant::now() + retry)
            }
            Err(e) => {
                // Lost: the callbacks run user code, so not under the lease's lock.
                drop(guard);
                if matches!(
                    lease.noting_loss(e),
                    Error::NoQuorum { .. } | Error::TooLate { .. }
                ) {
                    lease.mark_lost(LossReason::Expired);
                }
                continue;
            }
        };
        drop(guard);
        out.push((id, Arc::clone(lease), Some(next)));
    }
    out
}

/// When to renew a lease of `ttl` after a successful renewal: at a third of the TTL, so two
/// more attempts fit before it runs out.
pub(crate) fn renew_after(ttl: Duration) -> Duration {
    ttl / 3
}

/// The TTL to renew with: the lease's own, shortened to end at the hold limit; `None` once a
/// renewal would add less than a tenth of the TTL before the limit (the lease then runs out at
/// or a little before the limit, and the keeper signals `HoldLimit`). Renewing for a sliver
/// would gain nothing and, on a slow round, turn a hold limit into an expiry.
fn renewal_ttl(lease: &Lease, now: Instant) -> Option<Duration> {
    let ttl = lease.options.ttl;
    match lease.options.hold_until {
        None => Some(ttl),
        Some(limit) => {
            let left = limit.saturating_duration_since(now);
            let gain = left.saturating_sub(lease.validity());
            (gain >= ttl / 10).then(|| ttl.min(left))
        }
    }
}

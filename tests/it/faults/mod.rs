//! Fault injection with a recorded history: nodes crash, stall, restart or flap
//! ([`nodes`], [`soak`]), the network between client and nodes black-holes, partitions, slows
//! down or splits the vote ([`network`]), and lock holders are killed or frozen ([`process`]),
//! while workers loop acquire → critical section → release. Each scenario prints its figures
//! (`cargo test --all-features --test it faults:: -- --nocapture`) and checks the history
//! (`support::history`): no two critical sections on one resource overlap.
//!
//! This module holds what the scenarios share: the settings of the fault suite and the
//! minority-fault scenario runner.

mod election;
mod network;
mod nodes;
mod process;
mod rwlock;
mod soak;
mod synchronizers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::history::{self, Check, Record, Workload, percentile, run_workers};
use crate::support::proxy::Proxy;
use crate::support::{self, RedisCluster};
use redmutex::{RedLockFactory, RedLockFactoryBuilder};

/// The suite's lease: short, so leases turn over many times during a scenario.
const TTL: Duration = Duration::from_secs(1);

/// The suite's I/O timeout: a faulty node costs a round little.
const IO_TIMEOUT: Duration = Duration::from_millis(150);

/// The suite's connect timeout: what a partitioned node's probe costs, and how long a first
/// round waits for the connections (300 ms was too short for that once on a loaded machine:
/// all three connects timed out and the first acquisition failed).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The suite's retries: a worker rides out a fault instead of giving up.
const RETRIES: u32 = 10;

/// The suite's retry jitter (docs/reliability.md's figures were measured with it).
const RETRY_JITTER: Duration = Duration::from_millis(10);

/// Generous bound on one round under a minority fault, for a loaded 2-core machine: a round
/// costs at most a checkout wait plus one I/O timeout.
const ROUND_BOUND: Duration = Duration::from_millis(2000);

/// The fault suite's settings on top of the shared preset (`support::builder`): [`TTL`],
/// [`IO_TIMEOUT`], [`CONNECT_TIMEOUT`], [`RETRIES`] and [`RETRY_JITTER`], for the given nodes
/// (the nodes themselves, or proxies in front of them). Every scenario and worker of the suite
/// starts from these.
fn settings(nodes: Vec<String>) -> RedLockFactoryBuilder {
    support::builder()
        .nodes(nodes)
        .ttl(TTL)
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .max_retries(RETRIES)
        .retry_jitter(RETRY_JITTER)
}

/// [`settings`] with the restart quarantine on (the preset switches it off), bounded by the
/// suite's [`TTL`]: a node restarted empty sits out `TTL` + drift from its start.
fn quarantined_settings(nodes: Vec<String>) -> RedLockFactoryBuilder {
    settings(nodes).restart_quarantine(true).longest_ttl(TTL)
}

/// How long a node restarted at once stays quarantined, at most: its start (by its uptime,
/// which counts whole seconds: up to 1 s late) + [`TTL`] + drift, with a margin.
const QUARANTINE_BOUND: Duration = Duration::from_millis(2500);

/// Waits until `factory` can take a lock: the fresh nodes' own quarantine (they are younger
/// than the longest TTL when the scenario starts) is over.
fn wait_out_quarantine(factory: &RedLockFactory) {
    let lock = factory.create_lock("faults:quarantine:warmup");
    assert!(
        support::deadline_loop(Duration::from_secs(20), || {
            lock.try_acquire().ok().flatten().is_some()
        }),
        "the fresh nodes' quarantine never ended: {:?}",
        factory.stats().nodes
    );
}

/// A thread that makes one uncontended round after another on its own key and times each
/// `try_acquire`: how long a round takes while faults come and go.
struct Prober {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<(Duration, bool)>>,
}

impl Prober {
    fn start(factory: &RedLockFactory, key: &str, fault: &Arc<AtomicBool>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let lock = factory.create_lock(key);
        let (stop2, fault) = (Arc::clone(&stop), Arc::clone(fault));
        let handle = thread::spawn(move || {
            let mut rounds = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                let during = fault.load(Ordering::SeqCst);
                let t0 = Instant::now();
                let got = lock.try_acquire();
                rounds.push((t0.elapsed(), during));
                if let Ok(Some(g)) = got {
                    let _ = g.release();
                }
                thread::sleep(Duration::from_millis(10));
            }
            rounds
        });
        Self { stop, handle }
    }

    /// Stops and returns the round times during faults.
    fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        let rounds = self.handle.join().unwrap();
        rounds.into_iter().filter(|r| r.1).map(|r| r.0).collect()
    }
}

/// Runs the workers for `total` while `schedule` injects and heals faults (it gets the fault
/// flag to raise while a fault is on, and returns how many faults it injected). Then prints
/// and checks everything a minority-fault scenario promises.
fn minority_scenario(
    name: &str,
    factory: &RedLockFactory,
    total: Duration,
    schedule: impl FnOnce(&AtomicBool) -> usize + Send,
) {
    scenario(
        name,
        factory,
        &Workload::new(name, 4, 2, total),
        1,
        schedule,
    );
}

/// [`minority_scenario`] with the workers' load given (what they take, how many threads,
/// their roles: readers and writers of a read-write lock), and at most `k` holders of one
/// resource at once (1 for locks, multi-locks and read-write locks, whose readers may share;
/// the permits for a semaphore). Returns the run and its check.
fn scenario(
    name: &str,
    factory: &RedLockFactory,
    work: &Workload,
    k: usize,
    schedule: impl FnOnce(&AtomicBool) -> usize + Send,
) -> (history::Run, Check) {
    let witness = RedisCluster::start(1);
    let fault = Arc::new(AtomicBool::new(false));
    let prober = Prober::start(factory, &format!("{name}:probe"), &fault);
    let (run, faults) = thread::scope(|s| {
        let injector = s.spawn(|| schedule(&fault));
        let run = run_workers(factory, witness.port(0), work, &fault);
        (run, injector.join().unwrap())
    });
    let rounds = prober.finish();
    let probe_p99 = percentile(&rounds, 99.0);
    let probe_max = percentile(&rounds, 100.0);
    let readers = if work.roles.is_empty() {
        String::new()
    } else {
        format!(" | {}", history::shared_figures(&run.records))
    };
    let checked = if k == 1 {
        history::check(&run.records)
    } else {
        history::check_at_most(&run.records, k)
    };
    let check = history::report_checked(
        name,
        &run,
        faults,
        &format!(
            "probe rounds during faults: n={} p99={probe_p99:?} max={probe_max:?}{readers}",
            rounds.len()
        ),
        checked,
    );
    history::assert_clean(&check);
    assert!(faults > 0, "no fault was injected");
    // Progress continued during the faults, without errors: a minority is not needed.
    let during = run.latencies(Some(true)).len();
    assert!(during > 0, "no acquisition while the fault was on");
    // (Allow a rare give-up: on a loaded 2-core machine a healthy node can time out too, and
    // then a round meets two failures out of three.)
    assert!(
        run.error_count() * 100 <= check.sections,
        "errors: {:?} for {} acquisitions",
        run.errors,
        check.sections
    );
    // A round is bounded by the I/O (and checkout) timeout, never by the fault.
    assert!(!rounds.is_empty());
    assert!(probe_p99 <= ROUND_BOUND, "p99 round {probe_p99:?}");
    assert!(
        probe_max <= ROUND_BOUND * 3,
        "slowest round {probe_max:?} during faults"
    );
    (run, check)
}

/// Waits `d` while the fault is on.
fn fault_for(fault: &AtomicBool, d: Duration) {
    fault.store(true, Ordering::SeqCst);
    thread::sleep(d);
    fault.store(false, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------------------------
// The fault schedules the scenarios share. Each takes the fault flag to raise while its fault is
// on and returns how many faults it injected.

/// Crashes 2 of 5 nodes (1 and 3, SIGKILL) after 0.5 s and keeps them down for `down`; then, if
/// `restart`, starts them again, empty (with `down` longer than the TTL: the delayed restart
/// that keeps Redlock safe), or else leaves them down.
fn crash_two_of_five(
    cluster: &RedisCluster,
    fault: &AtomicBool,
    down: Duration,
    restart: bool,
) -> usize {
    thread::sleep(Duration::from_millis(500));
    fault.store(true, Ordering::SeqCst);
    cluster.kill(1);
    cluster.kill(3);
    thread::sleep(down);
    if restart {
        cluster.restart(1);
        cluster.restart(3);
    }
    fault.store(false, Ordering::SeqCst);
    2
}

/// Freezes node 2 (SIGSTOP) twice, for 1.5 s each, 0.4 s apart.
fn stall_node_2_twice(cluster: &RedisCluster, fault: &AtomicBool) -> usize {
    for _ in 0..2 {
        thread::sleep(Duration::from_millis(400));
        cluster.stop(2);
        fault_for(fault, Duration::from_millis(1500));
        cluster.cont(2);
    }
    2
}

/// Partitions a minority of 5 nodes away (their proxies cut: resets) twice, for 1.5 s each, a
/// different minority each time: {3, 4}, then {0, 1}.
fn partition_two_minorities(proxies: &[Proxy], fault: &AtomicBool) -> usize {
    assert_eq!(proxies.len(), 5);
    let mut faults = 0;
    for cut in [[3, 4], [0, 1]] {
        thread::sleep(Duration::from_millis(400));
        for i in cut {
            proxies[i].cut();
        }
        fault_for(fault, Duration::from_millis(1500));
        for i in cut {
            proxies[i].heal();
        }
        faults += 2;
    }
    faults
}

/// Each node in turn, `gap` after the last one came back, is SIGKILLed, kept down for longer
/// than any lease it may have granted (TTL + 0.3 s) and restarted empty: the delayed restart.
/// No new crash starts after `last_start` from now. Returns the restarts.
fn delayed_restarts(
    cluster: &RedisCluster,
    fault: &AtomicBool,
    gap: Duration,
    last_start: Duration,
) -> usize {
    let end = Instant::now() + last_start;
    let mut n = 0;
    while Instant::now() < end {
        thread::sleep(gap);
        fault.store(true, Ordering::SeqCst);
        cluster.kill(n % cluster.len());
        thread::sleep(TTL + Duration::from_millis(300));
        cluster.restart(n % cluster.len());
        fault.store(false, Ordering::SeqCst);
        n += 1;
    }
    n
}

/// Each node in turn, every `gap` until `last_start`, is SIGKILLed and started again at once,
/// empty: the restart Redlock alone cannot survive, which the restart quarantine makes safe.
/// The fault flag stays up while the restarted node is quarantined ([`QUARANTINE_BOUND`]), so
/// one node at most sits out at a time and the others make a quorum.
fn immediate_restarts(
    cluster: &RedisCluster,
    fault: &AtomicBool,
    gap: Duration,
    last_start: Duration,
) -> usize {
    let end = Instant::now() + last_start;
    let mut n = 0;
    while Instant::now() < end {
        thread::sleep(gap);
        fault.store(true, Ordering::SeqCst);
        cluster.restart(n % cluster.len());
        thread::sleep(QUARANTINE_BOUND);
        fault.store(false, Ordering::SeqCst);
        n += 1;
    }
    n
}

#[test]
fn checker_finds_overlaps_and_fencing_disorder() {
    let rec = |w: &str, start, end, fencing, valid| Record {
        worker: w.into(),
        resource: "r".into(),
        start,
        end,
        fencing,
        valid_at_end: valid,
        release_ok: true,
        acquire: Duration::ZERO,
        during_fault: false,
        shared: false,
    };
    let clean = [rec("a", 1, 2, Some(1), true), rec("b", 3, 6, Some(2), true)];
    let c = history::check(&clean);
    assert!(c.violations.is_empty() && c.fencing_violations.is_empty());
    // b starts inside a long section a; c inside b's.
    let overlapping = [
        rec("a", 1, 10, Some(1), true),
        rec("b", 4, 5, Some(3), true),
        rec("c", 7, 8, Some(2), true),
        rec("d", 9, 12, None, false),
    ];
    let c = history::check(&overlapping);
    assert_eq!(c.violations.len(), 2, "{c:?}");
    assert_eq!(c.overrun_overlaps.len(), 1, "{c:?}");
    assert_eq!(c.overruns, 1);
    assert_eq!(c.fencing_violations.len(), 1, "{c:?}");
    let line = overlapping[1].to_line();
    assert_eq!(Record::from_line(&line), overlapping[1]);
}

#[test]
fn checker_counts_holders_against_the_permits() {
    let rec = |w: &str, start, end, valid| Record {
        worker: w.into(),
        resource: "s".into(),
        start,
        end,
        fencing: None,
        valid_at_end: valid,
        release_ok: true,
        acquire: Duration::ZERO,
        during_fault: false,
        shared: false,
    };
    // Two at once at most: fine for 2 permits, two violations for a lock.
    let two = [
        rec("a", 1, 10, true),
        rec("b", 2, 5, true),
        rec("c", 6, 9, true),
    ];
    let c = history::check_at_most(&two, 2);
    assert!(c.violations.is_empty(), "{c:?}");
    assert_eq!(c.most_at_once, 2);
    assert_eq!(history::check(&two).violations.len(), 2);
    // A third inside both: one violation; an overrun third is an overrun overlap.
    let three = [
        rec("a", 1, 10, true),
        rec("b", 2, 8, true),
        rec("c", 3, 4, true),
    ];
    let c = history::check_at_most(&three, 2);
    assert_eq!((c.violations.len(), c.most_at_once), (1, 3), "{c:?}");
    let overrun = [
        rec("a", 1, 10, true),
        rec("b", 2, 8, true),
        rec("c", 3, 4, false),
    ];
    let c = history::check_at_most(&overrun, 2);
    assert_eq!(
        (c.violations.len(), c.overrun_overlaps.len()),
        (0, 1),
        "{c:?}"
    );
    // Sections that touch only at their ends (end tick < start tick) do not overlap.
    let chain: Vec<Record> = (0..5)
        .map(|i| rec("x", 2 * i + 1, 2 * i + 2, true))
        .collect();
    assert_eq!(history::check_at_most(&chain, 1).most_at_once, 1);
}

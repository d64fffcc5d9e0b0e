//! Fault injection with a recorded history: nodes crash, stall, vanish behind a black hole or a
//! partition, restart, slow down or split the vote, while workers loop acquire → critical
//! section → release. Each scenario prints its figures (`cargo test --test faults --
//! --nocapture`) and checks the history: no two critical sections on one resource overlap.

mod process;
mod soak;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::history::{self, Record, Witness, Workload, percentile, run_workers};
use crate::support::proxy::Proxy;
use crate::support::{AOF_ARGS, RedisCluster, deadline_loop};
use redmutex::{Error, RedLockFactory, RedLockFactoryBuilder};

const TTL: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_millis(150);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Generous bound on one round under a minority fault, for a loaded 2-core machine: a round
/// costs at most a checkout wait plus one I/O timeout.
const ROUND_BOUND: Duration = Duration::from_millis(2000);

fn builder(urls: Vec<String>) -> RedLockFactoryBuilder {
    RedLockFactory::builder()
        .nodes(urls)
        .ttl(TTL)
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .retry_delay(Duration::from_millis(5))
        .retry_jitter(Duration::from_millis(10))
        .max_retries(10)
}

fn factory(urls: Vec<String>) -> RedLockFactory {
    builder(urls).build().unwrap()
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
    let witness = RedisCluster::start(1);
    let fault = Arc::new(AtomicBool::new(false));
    let work = Workload::new(name, 4, 2, total);
    let prober = Prober::start(factory, &format!("{name}:probe"), &fault);
    let (run, faults) = thread::scope(|s| {
        let injector = s.spawn(|| schedule(&fault));
        let run = run_workers(factory, witness.port(0), &work, &fault);
        (run, injector.join().unwrap())
    });
    let rounds = prober.finish();
    let probe_p99 = percentile(&rounds, 99.0);
    let probe_max = percentile(&rounds, 100.0);
    let check = history::report(
        name,
        &run,
        faults,
        &format!(
            "probe rounds during faults: n={} p99={probe_p99:?} max={probe_max:?}",
            rounds.len()
        ),
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
}

/// Waits `d` while the fault is on.
fn fault_for(fault: &AtomicBool, d: Duration) {
    fault.store(true, Ordering::SeqCst);
    thread::sleep(d);
    fault.store(false, Ordering::SeqCst);
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
fn minority_crash_progress_continues() {
    let cluster = RedisCluster::start(5);
    let factory = factory(cluster.urls());
    minority_scenario(
        "minority_crash",
        &factory,
        Duration::from_secs(6),
        |fault| {
            thread::sleep(Duration::from_millis(500));
            fault.store(true, Ordering::SeqCst);
            cluster.kill(1);
            cluster.kill(3);
            // Delayed restart: down for longer than the TTL, so no acquired key is forgotten.
            thread::sleep(TTL + Duration::from_millis(1500));
            cluster.restart(1);
            cluster.restart(3);
            fault.store(false, Ordering::SeqCst);
            2
        },
    );
}

#[test]
fn minority_stall_progress_continues() {
    let cluster = RedisCluster::start(3);
    let factory = factory(cluster.urls());
    minority_scenario(
        "minority_stall",
        &factory,
        Duration::from_secs(5),
        |fault| {
            let mut faults = 0;
            for _ in 0..2 {
                thread::sleep(Duration::from_millis(400));
                cluster.stop(2);
                fault_for(fault, Duration::from_millis(1500));
                cluster.cont(2);
                faults += 1;
            }
            faults
        },
    );
}

#[test]
fn minority_blackholed_progress_continues() {
    let cluster = RedisCluster::start(3);
    let proxies: Vec<Proxy> = (0..3).map(|i| Proxy::start(cluster.port(i))).collect();
    let factory = factory(proxies.iter().map(Proxy::url).collect());
    minority_scenario(
        "minority_blackhole",
        &factory,
        Duration::from_secs(5),
        |fault| {
            let mut faults = 0;
            for _ in 0..2 {
                thread::sleep(Duration::from_millis(400));
                proxies[0].blackhole();
                fault_for(fault, Duration::from_millis(1500));
                proxies[0].heal();
                faults += 1;
            }
            faults
        },
    );
    let c = proxies[0].counters();
    eprintln!("[figures] minority_blackhole proxy 0: {c:?}");
    assert!(c.bytes_dropped > 0, "{c:?}");
}

#[test]
fn minority_partitioned_progress_continues() {
    let cluster = RedisCluster::start(5);
    let proxies: Vec<Proxy> = (0..5).map(|i| Proxy::start(cluster.port(i))).collect();
    let factory = factory(proxies.iter().map(Proxy::url).collect());
    minority_scenario(
        "minority_partition",
        &factory,
        Duration::from_secs(5),
        |fault| {
            let mut faults = 0;
            for round in 0..2 {
                thread::sleep(Duration::from_millis(400));
                // A different minority each time: {3, 4}, then {0, 1}.
                let cut = if round == 0 { [3, 4] } else { [0, 1] };
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
        },
    );
    let refused: u64 = proxies.iter().map(|p| p.counters().refused).sum();
    let reset: u64 = proxies.iter().map(|p| p.counters().reset).sum();
    eprintln!("[figures] minority_partition proxies: refused={refused} reset={reset}");
    assert!(refused + reset > 0);
}

#[test]
fn majority_unavailable_every_call_errs_within_its_bound_then_service_resumes() {
    let cluster = RedisCluster::start(3);
    let proxy = Proxy::start(cluster.port(0));
    let urls = vec![proxy.url(), cluster.url(1), cluster.url(2)];
    let factory = builder(urls).max_retries(3).build().unwrap();
    let held = factory
        .create_lock("majority:held")
        .with_ttl(Duration::from_secs(60))
        .acquire()
        .unwrap();

    // Node 0 black-holed, node 1 frozen: one node of three answers.
    proxy.blackhole();
    cluster.stop(1);
    let calls = Mutex::new(Vec::<(&'static str, Duration, String)>::new());
    let bound = Duration::from_secs(8);
    thread::scope(|s| {
        for t in 0..3 {
            let (factory, calls) = (&factory, &calls);
            s.spawn(move || {
                let lock = factory.create_lock(format!("majority:{t}"));
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end {
                    let timed = |what: &'static str, f: &dyn Fn() -> Result<(), Error>| {
                        let t0 = Instant::now();
                        let outcome = f();
                        let took = t0.elapsed();
                        let shown = match outcome {
                            Ok(()) => "Ok".to_owned(),
                            Err(e) => format!("{}: {e}", history::kind(&e)),
                        };
                        calls.lock().unwrap().push((what, took, shown));
                    };
                    timed("try_acquire", &|| lock.try_acquire().map(|_| ()));
                    timed("acquire", &|| lock.acquire().map(|_| ()));
                    timed("acquire_timeout", &|| {
                        lock.acquire_timeout(Duration::from_millis(500)).map(|_| ())
                    });
                    timed("is_locked", &|| lock.is_locked().map(|_| ()));
                }
            });
        }
    });
    let t0 = Instant::now();
    let extend = held.extend(TTL);
    let release = held.release();
    let guard_calls = t0.elapsed();
    let calls = calls.into_inner().unwrap();
    let slowest = calls.iter().map(|c| c.1).max().unwrap();
    eprintln!(
        "[figures] majority_unavailable: calls={} slowest={slowest:?} extend+release={guard_calls:?} \
         sample error: {}",
        calls.len(),
        calls[0].2
    );
    for (what, took, shown) in &calls {
        assert!(*took <= bound, "{what} took {took:?}");
        assert!(shown.starts_with("NoQuorum"), "{what}: {shown}");
        // Node 2 answers; on a loaded machine it may time out now and then too.
        assert!(
            shown.contains("1 of 3 nodes answered, 2 must agree")
                || shown.contains("0 of 3 nodes answered, 2 must agree"),
            "{shown}"
        );
    }
    assert!(matches!(extend, Err(Error::NoQuorum { .. })), "{extend:?}");
    assert!(
        matches!(release, Err(Error::NoQuorum { .. })),
        "{release:?}"
    );
    assert!(guard_calls <= bound);

    // The nodes come back: service resumes by itself, same factory, no restart of anything.
    proxy.heal();
    cluster.cont(1);
    let lock = factory.create_lock("majority:after");
    let t0 = Instant::now();
    assert!(
        deadline_loop(Duration::from_secs(20), || matches!(
            lock.try_acquire(),
            Ok(Some(_))
        )),
        "service did not resume"
    );
    eprintln!(
        "[figures] majority_unavailable: service resumed {:?} after the nodes returned",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Node restarts: the known limit of Redlock, shown deterministically.

/// Client A holds `key` on nodes {0, 1} of 3 (node 2 is occupied by someone else while A
/// acquires, then freed).
fn hold_on_nodes_0_and_1(
    cluster: &RedisCluster,
    a: &RedLockFactory,
    key: &str,
) -> redmutex::RedLockGuard {
    assert_eq!(
        cluster.cmd(2, &["SET", key, "someone-else", "PX", "60000"]),
        "OK"
    );
    let guard = a
        .create_lock(key)
        .try_acquire()
        .unwrap()
        .expect("2 of 3 is a quorum");
    assert_eq!(cluster.cmd(0, &["GET", key]), guard.token());
    assert_eq!(cluster.cmd(1, &["GET", key]), guard.token());
    assert_eq!(cluster.cmd(2, &["DEL", key]), "1");
    guard
}

#[test]
fn immediate_empty_restart_breaks_mutual_exclusion() {
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let mut w = Witness::connect(witness.port(0));
    let ttl = Duration::from_secs(10);
    let a = builder(cluster.urls()).ttl(ttl).build().unwrap();
    let b = builder(cluster.urls()).ttl(ttl).build().unwrap();

    let guard_a = hold_on_nodes_0_and_1(&cluster, &a, "restart:empty");
    let a_start = w.tick();
    // Node 1 crashes and comes back at once, empty: it forgot A's key.
    cluster.restart(1);
    // B's pooled connection to node 1 died with the old process: B's first round may count
    // node 1 as failed; the next one reconnects. All of this is well within A's 10 s lease.
    let lock_b = b.create_lock("restart:empty");
    let mut guard_b = None;
    assert!(
        deadline_loop(Duration::from_secs(5), || {
            guard_b = lock_b.try_acquire().unwrap();
            guard_b.is_some()
        }),
        "B never got nodes 1 and 2"
    );
    let guard_b = guard_b.unwrap();
    let b_start = w.tick();
    // Two holders, both within their validity.
    assert!(guard_a.is_valid() && guard_b.is_valid());
    assert_ne!(guard_a.token(), guard_b.token());
    let b_end = w.tick();
    let a_end = w.tick();
    let record = |who: &str, start, end, valid| Record {
        worker: who.into(),
        resource: "restart:empty".into(),
        start,
        end,
        fencing: None,
        valid_at_end: valid,
        release_ok: false,
        acquire: Duration::ZERO,
        during_fault: true,
    };
    let records = [
        record("A", a_start, a_end, guard_a.is_valid()),
        record("B", b_start, b_end, guard_b.is_valid()),
    ];
    let check = history::check(&records);
    eprintln!(
        "[figures] immediate_empty_restart: violations={} (expected 1: the known limit)",
        check.violations.len()
    );
    assert_eq!(check.violations.len(), 1, "the overlap was not observed");
    // A learns it at release: only node 0 still had its token (LockLost), or A's stale
    // connection to node 1 failed and A cannot tell (NoQuorum). Never Ok.
    let released = guard_a.release();
    assert!(
        matches!(
            released,
            Err(Error::LockLost { .. } | Error::NoQuorum { .. })
        ),
        "{released:?}"
    );
    guard_b.release().unwrap();
}

#[test]
fn delayed_restart_keeps_mutual_exclusion() {
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let mut w = Witness::connect(witness.port(0));
    let a = factory(cluster.urls());
    let b = factory(cluster.urls());

    let guard_a = hold_on_nodes_0_and_1(&cluster, &a, "restart:delayed");
    let a_start = w.tick();
    let a_end = w.tick();
    let a_valid = guard_a.is_valid();
    cluster.kill(1);
    // While node 1 is down, B cannot get a quorum: node 0 still has A's key.
    let lock_b = b.create_lock("restart:delayed");
    assert!(lock_b.try_acquire().unwrap().is_none());
    // The rule: keep the node down until every lease it may have granted has expired.
    assert!(deadline_loop(Duration::from_secs(10), || !guard_a
        .is_valid()
        && cluster.cmd(0, &["EXISTS", "restart:delayed"]) == "0"));
    let down_for = Instant::now();
    cluster.restart(1);
    let guard_b = lock_b.acquire().unwrap();
    let b_start = w.tick();
    assert!(!guard_a.is_valid(), "A's lease outlived the restart delay");
    let b_end = w.tick();
    let records = [
        Record {
            worker: "A".into(),
            resource: "restart:delayed".into(),
            start: a_start,
            end: a_end,
            fencing: None,
            valid_at_end: a_valid,
            release_ok: false,
            acquire: Duration::ZERO,
            during_fault: true,
        },
        Record {
            worker: "B".into(),
            resource: "restart:delayed".into(),
            start: b_start,
            end: b_end,
            fencing: None,
            valid_at_end: guard_b.is_valid(),
            release_ok: true,
            acquire: Duration::ZERO,
            during_fault: true,
        },
    ];
    let check = history::check(&records);
    eprintln!(
        "[figures] delayed_restart: violations={} restart took {:?}",
        check.violations.len(),
        down_for.elapsed()
    );
    history::assert_clean(&check);
    assert!(matches!(guard_a.release(), Err(Error::Expired { .. })));
    guard_b.release().unwrap();
}

#[test]
fn immediate_restart_with_aof_always_keeps_mutual_exclusion() {
    let cluster = RedisCluster::start_with_args(3, AOF_ARGS);
    let ttl = Duration::from_secs(10);
    let a = builder(cluster.urls()).ttl(ttl).build().unwrap();
    let b = builder(cluster.urls()).ttl(ttl).build().unwrap();
    let guard_a = hold_on_nodes_0_and_1(&cluster, &a, "restart:aof");
    cluster.restart(1); // SIGKILL, then reload from the fsynced AOF
    assert_eq!(cluster.cmd(1, &["GET", "restart:aof"]), guard_a.token());
    assert!(
        b.create_lock("restart:aof")
            .try_acquire()
            .unwrap()
            .is_none()
    );
    assert!(guard_a.is_valid());
    // A's pooled connection to node 1 died with the old process; once A has reconnected, A
    // sees its lock on a quorum again and releases it normally.
    let lock_a = a.create_lock("restart:aof");
    assert!(deadline_loop(Duration::from_secs(5), || {
        matches!(lock_a.is_locked(), Ok(true))
    }));
    guard_a.release().unwrap();
    b.create_lock("restart:aof")
        .try_acquire()
        .unwrap()
        .expect("free after A's release")
        .release()
        .unwrap();
}

/// A history run over nodes with AOF `appendfsync always`, restarted immediately (SIGKILL)
/// again and again: no overlap.
#[test]
fn aof_nodes_restarted_at_once_under_load_no_overlap() {
    let cluster = RedisCluster::start_with_args(3, AOF_ARGS);
    let factory = factory(cluster.urls());
    let witness = RedisCluster::start(1);
    let fault = Arc::new(AtomicBool::new(false));
    let work = Workload::new("aof_restarts", 4, 2, Duration::from_secs(5));
    let (run, faults) = thread::scope(|s| {
        let injector = s.spawn(|| {
            let mut n = 0;
            let end = Instant::now() + Duration::from_millis(4500);
            while Instant::now() < end {
                thread::sleep(Duration::from_millis(300));
                fault.store(true, Ordering::SeqCst);
                cluster.restart(n % 3);
                fault.store(false, Ordering::SeqCst);
                n += 1;
            }
            n
        });
        let run = run_workers(&factory, witness.port(0), &work, &fault);
        (run, injector.join().unwrap())
    });
    let check = history::report("aof_restarts", &run, faults, "");
    history::assert_clean(&check);
    assert!(check.sections > 0);
}

// ---------------------------------------------------------------------------------------------
// Slow quorum and split votes.

#[test]
fn slow_quorum_is_never_acquired_and_leaves_no_key() {
    let cluster = RedisCluster::start(3);
    let proxies: Vec<Proxy> = (0..3).map(|i| Proxy::start(cluster.port(i))).collect();
    // TTL 10 s but a 0.9 drift factor: a round slower than ~1 s leaves no validity, while the
    // keys themselves would live 10 s, so finding none proves the cleanup, not the expiry.
    let factory = RedLockFactory::builder()
        .nodes(proxies.iter().map(Proxy::url))
        .ttl(Duration::from_secs(10))
        .clock_drift_factor(0.9)
        .io_timeout(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(2))
        .retry_delay(Duration::from_millis(10))
        .max_retries(1)
        .build()
        .unwrap();
    factory
        .create_lock("warm")
        .acquire()
        .unwrap()
        .release()
        .unwrap();
    for p in &proxies {
        p.set_latency_down(Duration::from_millis(1200));
    }
    let lock = factory.create_lock("slow");
    let t0 = Instant::now();
    let once = lock.try_acquire();
    let once_took = t0.elapsed();
    match &once {
        Err(Error::TooLate { elapsed, .. }) => assert!(*elapsed >= Duration::from_millis(1000)),
        other => panic!("expected TooLate, got {other:?}"),
    }
    for i in 0..3 {
        assert_eq!(
            cluster.cmd(i, &["DBSIZE"]),
            "0",
            "node {i} kept a partial key"
        );
    }
    let t0 = Instant::now();
    let looped = lock.acquire();
    let looped_took = t0.elapsed();
    assert!(matches!(looped, Err(Error::TooLate { .. })), "{looped:?}");
    for i in 0..3 {
        assert_eq!(
            cluster.cmd(i, &["DBSIZE"]),
            "0",
            "node {i} kept a partial key"
        );
    }
    eprintln!(
        "[figures] slow_quorum: try_acquire -> TooLate in {once_took:?}; acquire (2 rounds) -> \
         TooLate in {looped_took:?}; keys left 0"
    );
    for p in &proxies {
        p.set_latency_down(Duration::ZERO);
    }
    lock.try_acquire()
        .unwrap()
        .expect("fast again")
        .release()
        .unwrap();
}

/// Three clients, each with its own proxies to 5 nodes: fast to its own nodes, slow (requests
/// delayed) to the others, so each wins a minority in the same instant.
struct SplitSetup {
    cluster: RedisCluster,
    /// Client c's proxy to node i is `proxies[c * 5 + i]`.
    proxies: Vec<Proxy>,
    clients: Vec<RedLockFactory>,
}

fn split_setup(delay: Duration) -> SplitSetup {
    let cluster = RedisCluster::start(5);
    let fast: [&[usize]; 3] = [&[0, 1], &[2, 3], &[4]];
    let mut proxies = Vec::new();
    let mut clients = Vec::new();
    for own in fast {
        let mine: Vec<Proxy> = (0..5).map(|i| Proxy::start(cluster.port(i))).collect();
        let f = RedLockFactory::builder()
            .nodes(mine.iter().map(Proxy::url))
            .ttl(Duration::from_secs(10))
            .io_timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(2))
            .retry_delay(Duration::from_millis(50))
            .retry_jitter(Duration::from_millis(50))
            .build()
            .unwrap();
        f.create_lock("warm").acquire().unwrap().release().unwrap();
        for (i, p) in mine.iter().enumerate() {
            if !own.contains(&i) {
                // Requests and replies both delayed: every client's slow SETs land (and are
                // refused) before any client's round ends and its cleanup runs.
                p.set_latency(delay);
            }
        }
        proxies.extend(mine);
        clients.push(f);
    }
    SplitSetup {
        cluster,
        proxies,
        clients,
    }
}

#[test]
fn split_vote_partial_locks_are_released_in_the_same_round() {
    let setup = split_setup(Duration::from_millis(800));
    let mut split_seen = 0;
    for attempt in 0..5 {
        let barrier = Barrier::new(3);
        let outcomes: Vec<bool> = thread::scope(|s| {
            let handles: Vec<_> = setup
                .clients
                .iter()
                .map(|f| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let lock = f.create_lock("split");
                        barrier.wait();
                        match lock.try_acquire().unwrap() {
                            Some(g) => {
                                g.release().unwrap();
                                true
                            }
                            None => false,
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        if outcomes.iter().any(|won| *won) {
            eprintln!("split attempt {attempt}: a client won outright (scheduling skew); again");
            continue;
        }
        split_seen += 1;
        // Nobody won, and every partial lock is already gone: the cleanup ran in each
        // client's own call (the keys' TTL is 10 s).
        let left: Vec<String> = (0..5).map(|i| setup.cluster.cmd(i, &["DBSIZE"])).collect();
        assert!(left.iter().all(|n| n == "0"), "partial keys left: {left:?}");
        break;
    }
    assert_eq!(split_seen, 1, "the split vote was never constructed");
    // Free at once for anybody.
    let direct = RedLockFactory::new(setup.cluster.urls()).unwrap();
    let g = direct.create_lock("split").try_acquire().unwrap();
    assert!(
        g.is_some(),
        "the lock is not free right after the split vote"
    );
    eprintln!(
        "[figures] split_vote: all partial keys released in the same call; lock free at once"
    );
}

#[test]
fn split_vote_contenders_all_get_the_lock_long_before_a_ttl() {
    let setup = split_setup(Duration::from_millis(300));
    let barrier = Barrier::new(3);
    let t0 = Instant::now();
    // The first round splits the vote; then the network turns symmetric, as it usually is, and
    // the contenders compete on retry delay and jitter alone.
    let healer = thread::spawn({
        let proxies: Vec<_> = setup.proxies.iter().map(Proxy::handle).collect();
        move || {
            thread::sleep(Duration::from_millis(400));
            for p in proxies {
                p.set_latency(Duration::ZERO);
            }
        }
    });
    let waits: Vec<Duration> = thread::scope(|s| {
        let handles: Vec<_> = setup
            .clients
            .iter()
            .map(|f| {
                let barrier = &barrier;
                s.spawn(move || {
                    let lock = f.create_lock("split:loop");
                    barrier.wait();
                    let start = Instant::now();
                    let g = lock.acquire_timeout(Duration::from_secs(30)).unwrap();
                    let waited = start.elapsed();
                    g.release().unwrap();
                    waited
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = t0.elapsed();
    healer.join().unwrap();
    eprintln!(
        "[figures] split_vote_loop: waits {waits:?}, all three served in {total:?} (TTL 10 s)"
    );
    // Without the cleanup, a split vote blocks everybody for the 10 s TTL.
    assert!(total < Duration::from_secs(8), "{total:?}");
}

// ---------------------------------------------------------------------------------------------
// Connection churn.

/// Client connections on node `i`, not counting the one asking.
fn clients(cluster: &RedisCluster, i: usize) -> usize {
    cluster.cmd(i, &["CLIENT", "LIST"]).lines().count() - 1
}

#[test]
fn connection_churn_pools_recover_and_leak_nothing() {
    const POOL: u32 = 4;
    const FACTORIES: usize = 2; // two independent pools per node, as two processes would have
    // AOF with fsync always: a node restarted at once keeps its keys, so churn is safe.
    let cluster = RedisCluster::start_with_args(3, AOF_ARGS);
    let witness = RedisCluster::start(1);
    let factories: Vec<RedLockFactory> = (0..FACTORIES)
        .map(|_| builder(cluster.urls()).pool_size(POOL).build().unwrap())
        .collect();
    let fault = Arc::new(AtomicBool::new(false));
    let mut most_clients = 0;
    let (runs, restarts) = thread::scope(|s| {
        let injector = s.spawn(|| {
            let mut n = 0;
            let end = Instant::now() + Duration::from_secs(6);
            while Instant::now() < end {
                thread::sleep(Duration::from_millis(300));
                fault.store(true, Ordering::SeqCst);
                cluster.restart(n % 3);
                fault.store(false, Ordering::SeqCst);
                n += 1;
                for i in 0..3 {
                    most_clients = most_clients.max(clients(&cluster, i));
                }
            }
            n
        });
        let runs: Vec<_> = factories
            .iter()
            .enumerate()
            .map(|(k, f)| {
                let fault = &fault;
                let witness = witness.port(0);
                s.spawn(move || {
                    // More threads than pooled connections: checkouts wait and must not fail.
                    let mut work = Workload::new("churn", 6, 3, Duration::from_secs(6));
                    work.name = format!("f{k}");
                    run_workers(f, witness, &work, fault)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>();
        (runs, injector.join().unwrap())
    });
    let mut run = history::Run::default();
    for r in runs {
        run.records.extend(r.records);
        for (k, n) in r.errors {
            *run.errors.entry(k).or_default() += n;
        }
        run.slowest_call = run.slowest_call.max(r.slowest_call);
    }
    // Each factory: its pool, plus one pub/sub connection per node for wake-up on release.
    let bound = (POOL as usize + 1) * FACTORIES;
    let after: Vec<usize> = (0..3).map(|i| clients(&cluster, i)).collect();
    let check = history::report(
        "connection_churn",
        &run,
        restarts,
        &format!(
            "client connections per node: most seen {most_clients}, after {after:?}, bound {bound}"
        ),
    );
    history::assert_clean(&check);
    assert!(restarts >= 10, "only {restarts} restarts");
    assert!(check.sections > 20, "{} acquisitions", check.sections);
    assert!(
        most_clients <= bound,
        "{most_clients} connections on a node"
    );
    assert!(after.iter().all(|&n| n <= bound), "{after:?}");
    // The pools recovered: every factory gets locks at once again.
    for f in &factories {
        let lock = f.create_lock("churn:after");
        assert!(deadline_loop(Duration::from_secs(5), || matches!(
            lock.try_acquire(),
            Ok(Some(_))
        )));
    }
}

//! Nodes that crash, stall and restart under load: a minority down or frozen costs nothing
//! but a bounded round; an empty node restarted at once breaks mutual exclusion (Redlock's
//! known limit, shown deterministically), a delayed restart or an AOF fsynced on every write
//! keeps it; pools recover from connection churn and leak nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    TTL, crash_two_of_five, immediate_restarts, minority_scenario, quarantined_settings, settings,
    stall_node_2_twice, wait_out_quarantine,
};
use crate::support::history::{self, Record, Witness, Workload, run_workers};
use crate::support::{AOF_ARGS, RedisCluster, deadline_loop};
use redmutex::{Error, RedLockFactory};

#[test]
fn minority_crash_progress_continues() {
    let cluster = RedisCluster::start(5);
    let factory = settings(cluster.urls()).build().unwrap();
    minority_scenario(
        "minority_crash",
        &factory,
        Duration::from_secs(6),
        // Delayed restart: down for longer than the TTL, so no acquired key is forgotten.
        |fault| crash_two_of_five(&cluster, fault, TTL + Duration::from_millis(1500), true),
    );
}

#[test]
fn minority_stall_progress_continues() {
    let cluster = RedisCluster::start(3);
    let factory = settings(cluster.urls()).build().unwrap();
    minority_scenario(
        "minority_stall",
        &factory,
        Duration::from_secs(5),
        |fault| stall_node_2_twice(&cluster, fault),
    );
}

/// Each node in turn restarted at once, empty, with no delay, under load: with the restart
/// quarantine on, no two holders ever overlap (the restarted node's yes does not count until
/// every lease it may have forgotten has expired), and the other two nodes keep the lock going.
#[test]
fn immediate_empty_restarts_with_the_quarantine_no_overlap() {
    let cluster = RedisCluster::start(3);
    let factory = quarantined_settings(cluster.urls()).build().unwrap();
    wait_out_quarantine(&factory);
    minority_scenario(
        "immediate_restart",
        &factory,
        Duration::from_secs(9),
        |fault| {
            immediate_restarts(
                &cluster,
                fault,
                Duration::from_millis(300),
                Duration::from_secs(6),
            )
        },
    );
    let stats = factory.stats();
    let restarts: u64 = stats.nodes.iter().map(|n| n.restarts).sum();
    let discounted: u64 = stats.nodes.iter().map(|n| n.votes_discounted).sum();
    eprintln!(
        "[figures] immediate_restart: restarts seen={restarts} yes votes discounted={discounted}"
    );
    assert!(restarts >= 2, "{:?}", stats.nodes);
}

// ---------------------------------------------------------------------------------------------
// Node restarts: the known limit of Redlock (with the restart quarantine off), shown
// deterministically.

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

/// With the restart quarantine off (the preset's setting, as before issue 16), an empty node
/// restarted at once hands a second client the lock: Redlock's known limit. (With the
/// quarantine on, `quarantine::issue_16_an_empty_restart_at_once_grants_no_second_holder`.)
#[test]
fn immediate_empty_restart_breaks_mutual_exclusion() {
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let mut w = Witness::connect(witness.port(0));
    let ttl = Duration::from_secs(10);
    let a = settings(cluster.urls()).ttl(ttl).build().unwrap();
    let b = settings(cluster.urls()).ttl(ttl).build().unwrap();

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
        shared: false,
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

/// A holds on nodes {0, 1}; node 1 crashes and stays down until A's lease has expired
/// everywhere, then comes back empty, and B takes the lock (the restart quarantine off: the
/// delayed-restart rule alone keeps it safe). A's critical section runs from its
/// acquisition until after B's section has begun, so the two sections do overlap on the witness
/// clock: the history is clean only because A's lease had ended by then (an overrun, not a
/// violation). Had B got in while A was still valid, the same history would show a violation.
#[test]
fn delayed_restart_keeps_mutual_exclusion() {
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let mut w = Witness::connect(witness.port(0));
    let a = settings(cluster.urls()).build().unwrap();
    let b = settings(cluster.urls()).build().unwrap();

    let guard_a = hold_on_nodes_0_and_1(&cluster, &a, "restart:delayed");
    let a_start = w.tick();
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
    // A's section ends only now, after B's began: whether A was still valid decides.
    let a_end = w.tick();
    let a_valid = guard_a.is_valid();
    let b_end = w.tick();
    let record = |who: &str, start, end, valid, release_ok| Record {
        worker: who.into(),
        resource: "restart:delayed".into(),
        start,
        end,
        fencing: None,
        valid_at_end: valid,
        release_ok,
        acquire: Duration::ZERO,
        during_fault: true,
        shared: false,
    };
    let records = [
        record("A", a_start, a_end, a_valid, false),
        record("B", b_start, b_end, guard_b.is_valid(), true),
    ];
    let check = history::check(&records);
    eprintln!(
        "[figures] delayed_restart: violations={} overrun_overlaps={} restart took {:?}",
        check.violations.len(),
        check.overrun_overlaps.len(),
        down_for.elapsed()
    );
    history::assert_clean(&check);
    // The sections did overlap on the witness clock: the checker saw the pair, and only A's
    // expired lease kept it from being a violation.
    assert_eq!(check.overrun_overlaps.len(), 1, "{check:?}");
    assert!(!a_valid, "A's lease outlived the restart delay");
    assert!(matches!(guard_a.release(), Err(Error::Expired { .. })));
    guard_b.release().unwrap();
}

#[test]
fn immediate_restart_with_aof_always_keeps_mutual_exclusion() {
    let cluster = RedisCluster::start_with_args(3, AOF_ARGS);
    let ttl = Duration::from_secs(10);
    let a = settings(cluster.urls()).ttl(ttl).build().unwrap();
    let b = settings(cluster.urls()).ttl(ttl).build().unwrap();
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
    let factory = settings(cluster.urls()).build().unwrap();
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
        .map(|_| settings(cluster.urls()).pool_size(POOL).build().unwrap())
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
    // Each factory: its pool, plus for wake-up on release one subscription per resource being
    // waited for (3 here) and at most 2 unsubscribed connections kept per node for reuse.
    let bound = (POOL as usize + 3 + 2) * FACTORIES;
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
    // Each node restarted twice at least: one restart every 300 ms plus the restart's own time,
    // which with AOF grows on a loaded machine (8 in the 6 s once, with both cores busy).
    assert!(restarts >= 6, "only {restarts} restarts");
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

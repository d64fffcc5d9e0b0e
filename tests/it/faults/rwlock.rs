//! The read-write lock under faults, history-checked: readers, writers and a mutex holder on the
//! same names while a minority of nodes crashes, stalls or is partitioned away, and while nodes
//! are killed and restarted after the TTL (the delayed restart). A writer (or the mutex holder)
//! must never be with anyone else; readers may share. Each scenario prints its figures
//! (`cargo test --all-features --test it faults::rwlock:: -- --nocapture`).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{
    TTL, crash_two_of_five, delayed_restarts, immediate_restarts, partition_two_minorities,
    quarantined_settings, scenario, settings, stall_node_2_twice, wait_out_quarantine,
};
use crate::support::RedisCluster;
use crate::support::history::{self, Record, Role, Workload};
use crate::support::proxy::Proxy;

/// Six workers on two names: four readers, a writer and a mutex holder (a writer too).
fn workload(name: &str, total: Duration) -> Workload {
    let mut work = Workload::new(name, 6, 2, total);
    work.roles = vec![
        Role::Read,
        Role::Write,
        Role::Read,
        Role::Read,
        Role::Mutex,
        Role::Read,
    ];
    work
}

/// What every read-write scenario checks besides the minority-fault promises (which include a
/// clean history): readers and writers both got in, and readers really shared.
fn assert_mixed(records: &[Record]) {
    let shared = records.iter().filter(|r| r.shared).count();
    assert!(shared > 10, "only {shared} read sections");
    assert!(
        records.len() - shared > 10,
        "only {} write sections",
        records.len() - shared
    );
    assert!(
        history::max_concurrent_readers(records) >= 2,
        "readers never shared"
    );
}

/// Runs a read-write scenario (fencing on: writers' tokens must grow in witness order) and
/// checks it.
fn rw_scenario(
    name: &str,
    nodes: Vec<String>,
    total: Duration,
    schedule: impl FnOnce(&AtomicBool) -> usize + Send,
) {
    let factory = settings(nodes).fencing(true).build().unwrap();
    rw_scenario_on(name, &factory, total, schedule);
}

/// [`rw_scenario`] on a factory of the caller's.
fn rw_scenario_on(
    name: &str,
    factory: &redmutex::RedLockFactory,
    total: Duration,
    schedule: impl FnOnce(&AtomicBool) -> usize + Send,
) {
    let (run, _) = scenario(name, factory, &workload(name, total), 1, schedule);
    assert_mixed(&run.records);
    // Every exclusive section (writer, mutex holder) carries a token, so the order the checker
    // verified covers all of them.
    let unfenced: Vec<&Record> = run
        .records
        .iter()
        .filter(|r| !r.shared && r.fencing.is_none())
        .collect();
    assert!(
        unfenced.is_empty(),
        "{} exclusive sections without a token, first: {:?}",
        unfenced.len(),
        unfenced.first()
    );
}

#[test]
fn checker_lets_readers_share_but_never_a_writer() {
    let rec = |w: &str, start, end, shared, valid| Record {
        worker: w.into(),
        resource: "r".into(),
        start,
        end,
        fencing: None,
        valid_at_end: valid,
        release_ok: true,
        acquire: Duration::ZERO,
        during_fault: false,
        shared,
    };
    // Readers overlapping each other, a writer after them: clean.
    let clean = [
        rec("r1", 1, 10, true, true),
        rec("r2", 2, 5, true, true),
        rec("r3", 4, 12, true, true),
        rec("w", 13, 14, false, true),
        rec("r4", 15, 16, true, true),
    ];
    let c = history::check(&clean);
    assert!(
        c.violations.is_empty() && c.overrun_overlaps.is_empty(),
        "{c:?}"
    );
    assert_eq!(history::max_concurrent_readers(&clean), 3);
    // A writer inside a long read; a reader inside a write; a writer inside a write; an
    // overrun reader overlapping a writer.
    let bad = [
        rec("r1", 1, 10, true, true),
        rec("w1", 5, 6, false, true),
        rec("w2", 20, 30, false, true),
        rec("r2", 21, 22, true, true),
        rec("w3", 25, 26, false, true),
        rec("r3", 29, 40, true, false),
    ];
    let c = history::check(&bad);
    assert_eq!(c.violations.len(), 3, "{c:?}");
    assert_eq!(c.overrun_overlaps.len(), 1, "{c:?}");
    let line = bad[3].to_line();
    assert_eq!(Record::from_line(&line), bad[3]);
}

#[test]
fn rw_minority_crash_no_writer_with_anyone() {
    let cluster = RedisCluster::start(5);
    rw_scenario(
        "rw_minority_crash",
        cluster.urls(),
        Duration::from_secs(6),
        // Delayed restart: down for longer than the TTL.
        |fault| crash_two_of_five(&cluster, fault, TTL + Duration::from_millis(1500), true),
    );
}

#[test]
fn rw_minority_stall_no_writer_with_anyone() {
    let cluster = RedisCluster::start(3);
    rw_scenario(
        "rw_minority_stall",
        cluster.urls(),
        Duration::from_secs(5),
        |fault| stall_node_2_twice(&cluster, fault),
    );
}

#[test]
fn rw_minority_partition_no_writer_with_anyone() {
    let cluster = RedisCluster::start(5);
    let proxies: Vec<Proxy> = (0..5).map(|i| Proxy::start(cluster.port(i))).collect();
    rw_scenario(
        "rw_minority_partition",
        proxies.iter().map(Proxy::url).collect(),
        Duration::from_secs(5),
        |fault| partition_two_minorities(&proxies, fault),
    );
}

/// Each node in turn is killed and kept down for longer than the TTL, then restarted empty
/// (the delayed restart that keeps Redlock safe without persistence): readers' entries and
/// writers' keys it forgot had expired anyway.
#[test]
fn rw_delayed_restarts_no_writer_with_anyone() {
    let cluster = RedisCluster::start(3);
    rw_scenario(
        "rw_delayed_restart",
        cluster.urls(),
        Duration::from_secs(8),
        // The last crash starts 2 TTLs before the 7 s mark, so the run ends with every node up.
        |fault| {
            let last_start = Duration::from_millis(7_000) - TTL * 2;
            delayed_restarts(&cluster, fault, Duration::from_millis(300), last_start)
        },
    );
}

/// Each node in turn is killed and restarted at once, empty, with no delay: with the restart
/// quarantine on, no writer is ever with anyone (a restarted node's yes to a reader or a
/// writer does not count until every lease it may have forgotten has expired).
#[test]
fn rw_immediate_restarts_with_the_quarantine_no_writer_with_anyone() {
    let cluster = RedisCluster::start(3);
    let factory = quarantined_settings(cluster.urls())
        .fencing(true)
        .build()
        .unwrap();
    wait_out_quarantine(&factory);
    rw_scenario_on(
        "rw_immediate_restart",
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
}

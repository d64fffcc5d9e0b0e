//! The semaphore and the multi-lock under the faults a lock is tested under: a minority of
//! nodes crashed, a node restarted empty after a delay longer than the TTL (again and again),
//! a node stalled, a minority partitioned. Each run records every critical section with the
//! witness and checks the history: never more than `permits` valid holders of a semaphore,
//! never a multi-lock holder overlapping any holder (multi-lock or plain lock) of one of its
//! resources. docs/reliability.md, "Semaphore and multi-lock", has the figures.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{
    TTL, crash_two_of_five, delayed_restarts, immediate_restarts, partition_two_minorities,
    quarantined_settings, settings, stall_node_2_twice, wait_out_quarantine,
};
use crate::support::RedisCluster;
use crate::support::history::{self, Kind, Workload};
use crate::support::proxy::Proxy;

/// The semaphore's permits in these runs, and its workers: more than twice as many, so that
/// every permit is in use most of the time.
const PERMITS: u32 = 2;
const SEMAPHORE_THREADS: usize = 5;

/// How long each run lasts.
const RUN: Duration = Duration::from_secs(5);

fn semaphore_work(name: &str) -> Workload {
    let mut work = Workload::new(name, SEMAPHORE_THREADS, 1, RUN);
    work.kind = Kind::Semaphore(PERMITS);
    work.hold = Duration::from_millis(2);
    work
}

/// Two threads take multi-locks over pairs of 3 resources, two take plain locks on one.
fn multi_work(name: &str) -> Workload {
    let mut work = Workload::new(name, 4, 3, RUN);
    work.kind = Kind::MultiAndLocks;
    work
}

enum Fault {
    /// 2 of 5 nodes SIGKILLed and left down.
    Crash,
    /// Each node of 3 in turn SIGKILLed and restarted empty after TTL + 0.3 s.
    DelayedRestart,
    /// Each node of 3 in turn SIGKILLed and restarted empty at once, the restart quarantine on.
    ImmediateRestart,
    /// 1 of 3 nodes SIGSTOPped twice for 1.5 s.
    Stall,
    /// The proxies of 2 of 5 nodes cut (RST), twice for 1.5 s, different minorities.
    Partition,
}

/// [`super::scenario`], keeping its check.
fn checked_scenario(
    name: &str,
    factory: &redmutex::RedLockFactory,
    work: &Workload,
    k: usize,
    schedule: impl FnOnce(&std::sync::atomic::AtomicBool) -> usize + Send,
) -> history::Check {
    super::scenario(name, factory, work, k, schedule).1
}

/// Runs `work` against a cluster suffering `fault`, and checks at most `k` holders at once.
fn scenario(name: &str, fault: &Fault, work: &Workload, k: usize) -> history::Check {
    match fault {
        Fault::Crash => {
            let cluster = RedisCluster::start(5);
            let factory = settings(cluster.urls()).build().unwrap();
            checked_scenario(name, &factory, work, k, |fault| {
                crash_two_of_five(&cluster, fault, RUN - Duration::from_millis(1000), false)
            })
        }
        Fault::DelayedRestart => {
            let cluster = RedisCluster::start(3);
            let factory = settings(cluster.urls()).build().unwrap();
            checked_scenario(name, &factory, work, k, |fault| {
                let last_start = RUN - TTL - Duration::from_millis(500);
                delayed_restarts(&cluster, fault, Duration::from_millis(200), last_start)
            })
        }
        Fault::ImmediateRestart => {
            let cluster = RedisCluster::start(3);
            let factory = quarantined_settings(cluster.urls()).build().unwrap();
            wait_out_quarantine(&factory);
            checked_scenario(name, &factory, work, k, |fault| {
                let last_start = RUN - Duration::from_secs(2);
                immediate_restarts(&cluster, fault, Duration::from_millis(200), last_start)
            })
        }
        Fault::Stall => {
            let cluster = RedisCluster::start(3);
            let factory = settings(cluster.urls()).build().unwrap();
            checked_scenario(name, &factory, work, k, |fault| {
                stall_node_2_twice(&cluster, fault)
            })
        }
        Fault::Partition => {
            let cluster = RedisCluster::start(5);
            let proxies: Vec<Proxy> = (0..5).map(|i| Proxy::start(cluster.port(i))).collect();
            let factory = settings(proxies.iter().map(Proxy::url).collect())
                .build()
                .unwrap();
            checked_scenario(name, &factory, work, k, |fault| {
                partition_two_minorities(&proxies, fault)
            })
        }
    }
}

fn semaphore(name: &str, fault: &Fault) {
    let check = scenario(name, fault, &semaphore_work(name), PERMITS as usize);
    // The history is clean, and the permits really were held together.
    history::assert_clean(&check);
    assert_eq!(
        check.most_at_once, PERMITS as usize,
        "the semaphore never had {PERMITS} holders at once"
    );
}

fn multi(name: &str, fault: &Fault) {
    let check = scenario(name, fault, &multi_work(name), 1);
    history::assert_clean(&check);
    assert_eq!(check.most_at_once, 1);
}

#[test]
fn semaphore_minority_crash() {
    semaphore("sem_crash", &Fault::Crash);
}

#[test]
fn semaphore_delayed_restarts() {
    semaphore("sem_delayed_restart", &Fault::DelayedRestart);
}

#[test]
fn semaphore_immediate_restarts_with_the_quarantine() {
    semaphore("sem_immediate_restart", &Fault::ImmediateRestart);
}

#[test]
fn semaphore_minority_stall() {
    semaphore("sem_stall", &Fault::Stall);
}

#[test]
fn semaphore_minority_partition() {
    semaphore("sem_partition", &Fault::Partition);
}

#[test]
fn multi_lock_and_locks_minority_crash() {
    multi("multi_crash", &Fault::Crash);
}

#[test]
fn multi_lock_and_locks_delayed_restarts() {
    multi("multi_delayed_restart", &Fault::DelayedRestart);
}

#[test]
fn multi_lock_and_locks_minority_stall() {
    multi("multi_stall", &Fault::Stall);
}

#[test]
fn multi_lock_and_locks_minority_partition() {
    multi("multi_partition", &Fault::Partition);
}

/// Fencing on: a multi-lock's token is above every token of each of its resources, so with the
/// plain locks' tokens, each resource's tokens increase in witness order (checked by the history
/// checker per resource) while a node stalls.
#[test]
fn multi_lock_and_locks_fenced_tokens_increase_per_resource() {
    let name = "multi_fenced_stall";
    let cluster = RedisCluster::start(3);
    let factory = settings(cluster.urls()).fencing(true).build().unwrap();
    let (run, check) = super::scenario(name, &factory, &multi_work(name), 1, |fault| {
        stall_node_2_twice(&cluster, fault)
    });
    history::assert_clean(&check);
    // Every section is exclusive (multi-lock or plain lock) and fenced: the order checked above
    // covers them all, not only those that happened to carry a token.
    let unfenced = run.records.iter().filter(|r| r.fencing.is_none()).count();
    assert_eq!(
        unfenced,
        0,
        "{unfenced} of {} sections without a token",
        run.records.len()
    );
}

/// A fault-free control for the checker itself: the same semaphore run with twice the permits
/// the workers believe in would be caught (the checker is given `PERMITS - 1`).
#[test]
fn the_checker_catches_more_holders_than_permits() {
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let factory = settings(cluster.urls()).build().unwrap();
    let mut work = semaphore_work("sem_control");
    work.duration = Duration::from_secs(2);
    let run = history::run_workers(
        &factory,
        witness.port(0),
        &work,
        &std::sync::Arc::new(AtomicBool::new(false)),
    );
    let check = history::check_at_most(&run.records, PERMITS as usize - 1);
    assert!(
        !check.violations.is_empty(),
        "{PERMITS} holders at once went unnoticed"
    );
}

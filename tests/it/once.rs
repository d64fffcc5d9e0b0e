//! Run once: the first caller of an epoch runs it and records its result on a quorum; the
//! others learn that it ran (with the record) or is running, and wait for it or not; a runner
//! that dies without completing lets another run after its lease; records expire after the
//! retention. The race of many processes is in `faults::election`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster, WAIT_LIMIT};
use redmutex::{Error, MAX_VALUE_LEN, Outcome, RedLockFactory, Start};

fn factory(cluster: &RedisCluster, ttl: Duration) -> RedLockFactory {
    support::factory(cluster).ttl(ttl).build().unwrap()
}

#[test]
fn the_first_caller_runs_and_the_others_get_its_record() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster, Duration::from_secs(10));
    let job = f.create_run_once("once:basic");
    assert_eq!(job.record("e1").unwrap(), None);
    let ran = job
        .run("e1", |run| {
            assert_eq!(run.epoch(), "e1");
            assert!(run.fencing_token().is_some());
            "done: 3 rows".to_owned()
        })
        .unwrap();
    let Outcome::Ran(record) = ran else {
        panic!("{ran:?}")
    };
    assert_eq!(record.result, "done: 3 rows");
    assert_eq!(record.epoch, "e1");
    let other = factory(&cluster, Duration::from_secs(10)).create_run_once("once:basic");
    let again = other.run("e1", |_| panic!("ran a second time")).unwrap();
    let Outcome::AlreadyRan(seen) = again else {
        panic!("{again:?}")
    };
    assert_eq!(seen.result, record.result);
    assert_eq!(seen.fencing_token, record.fencing_token);
    assert_eq!(other.record("e1").unwrap().unwrap().result, "done: 3 rows");
    assert!(matches!(other.try_start("e1").unwrap(), Start::Ran(_)));
    // The handle's own acquire family says so as an error.
    assert!(matches!(
        other.with_epoch("e1").try_acquire(),
        Err(Error::AlreadyRan { .. })
    ));
    // Another epoch is another run, with a larger fencing token.
    let Outcome::Ran(next) = job.run("e2", |_| "ok".to_owned()).unwrap() else {
        panic!("e2 did not run")
    };
    assert!(next.fencing_token > record.fencing_token);
    // What is left: each epoch's record, and the job's fencing counter; no run key.
    let mut keys = cluster.keys(0);
    keys.sort();
    assert_eq!(
        keys,
        [
            "once:basic:redmutex:fence",
            "once:basic:redmutex:run:e1:redmutex:done",
            "once:basic:redmutex:run:e2:redmutex:done",
        ]
    );
    // The record lives for the retention (a day by default).
    let pttl: i64 = cluster
        .cmd(0, &["PTTL", "once:basic:redmutex:run:e1:redmutex:done"])
        .parse()
        .unwrap();
    assert!(pttl > 23 * 3600 * 1000, "{pttl}");
}

#[test]
fn callers_learn_it_is_running_and_waiters_are_woken_by_its_completion() {
    let cluster = RedisCluster::start(3);
    // A long TTL: a waiter that gets the record within seconds was woken by the completion.
    let ttl = Duration::from_secs(30);
    let job = factory(&cluster, ttl).create_run_once("once:wait");
    let Start::Run(run) = job.try_start("slot").unwrap() else {
        panic!("the first caller runs")
    };
    let other = factory(&cluster, ttl).create_run_once("once:wait");
    assert!(matches!(other.try_start("slot").unwrap(), Start::Running));
    assert!(matches!(
        other
            .start_with("slot", redmutex::Wait::timeout(Duration::from_millis(200)))
            .unwrap(),
        Start::Running
    ));
    cluster.clear_waiting("once:wait:redmutex:run:slot");
    let waiter = thread::spawn(move || {
        let start = other.start("slot").unwrap();
        (Instant::now(), start)
    });
    cluster.wait_waiting("once:wait:redmutex:run:slot");
    let completed = Instant::now();
    let record = run.complete("exit 0").unwrap();
    let (woken, start) = waiter.join().unwrap();
    let Start::Ran(seen) = start else {
        panic!("{start:?}")
    };
    assert_eq!(seen, record);
    let took = woken.saturating_duration_since(completed);
    eprintln!("[figures] run-once waiter learnt the record {took:?} after the completion");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_run_given_up_or_crashed_runs_again_after_its_lease() {
    let cluster = RedisCluster::start(3);
    let ttl = Duration::from_millis(800);
    let f = support::factory(&cluster).ttl(ttl).build().unwrap();
    let job = f.create_run_once("once:crash").with_keep_alive(false);
    // Given up: dropped without completing, it is released at once.
    let Start::Run(run) = job.try_start("e").unwrap() else {
        panic!()
    };
    let first = run.fencing_token().unwrap();
    drop(run);
    let Start::Run(run) = job.try_start("e").unwrap() else {
        panic!("a run released unrecorded runs again")
    };
    let second = run.fencing_token().unwrap();
    assert!(second > first);
    // Crashed: its lease is left to run out (as a SIGKILLed runner's).
    let _token = run.leak();
    assert!(matches!(job.try_start("e").unwrap(), Start::Running));
    let t0 = Instant::now();
    let Start::Run(run) = job.start("e").unwrap() else {
        panic!("after the lease, another caller runs it")
    };
    assert!(t0.elapsed() < WAIT_LIMIT);
    assert!(run.fencing_token().unwrap() > second);
    run.complete("second try").unwrap();
    assert_eq!(job.record("e").unwrap().unwrap().result, "second try");
}

#[test]
fn a_run_whose_lease_was_lost_is_not_recorded() {
    let cluster = RedisCluster::start(3);
    let job = factory(&cluster, Duration::from_secs(10)).create_run_once("once:lost");
    let Start::Run(run) = job.try_start("e").unwrap() else {
        panic!()
    };
    for i in 0..3 {
        cluster.cmd(i, &["DEL", "once:lost:redmutex:run:e"]);
    }
    assert!(matches!(run.complete("late"), Err(Error::LockLost { .. })));
    assert_eq!(job.record("e").unwrap(), None);
    assert!(matches!(job.try_start("e").unwrap(), Start::Run(_)));
}

#[test]
fn records_expire_after_the_retention() {
    let cluster = RedisCluster::start(3);
    let job = factory(&cluster, Duration::from_secs(10))
        .create_run_once("once:retention")
        .with_retention(Duration::from_millis(300));
    assert!(matches!(
        job.run("e", |_| "one".into()).unwrap(),
        Outcome::Ran(_)
    ));
    assert!(matches!(
        job.run("e", |_| "two".into()).unwrap(),
        Outcome::AlreadyRan(_)
    ));
    assert!(support::deadline_loop(WAIT_LIMIT, || job
        .record("e")
        .unwrap()
        .is_none()));
    let Outcome::Ran(r) = job.run("e", |_| "three".into()).unwrap() else {
        panic!("after the retention the epoch runs again")
    };
    assert_eq!(r.result, "three");
}

#[test]
fn a_record_on_a_minority_is_enough_not_to_run() {
    let cluster = RedisCluster::start(3);
    let job = factory(&cluster, Duration::from_secs(10)).create_run_once("once:partial");
    // A completion that reached node 2 only (its runner was cut off after it).
    cluster.cmd(
        2,
        &[
            "HSET",
            "once:partial:redmutex:run:e:redmutex:done",
            "result",
            "half",
            "fencing",
            "9",
            "at",
            "1700000000000",
        ],
    );
    let start = job.try_start("e").unwrap();
    let Start::Ran(record) = start else {
        panic!("{start:?}")
    };
    assert_eq!((record.result.as_str(), record.fencing_token), ("half", 9));
    // Nothing taken on the other nodes.
    assert_eq!(cluster.nodes_with("once:partial:redmutex:run:e"), 0);
}

#[test]
fn threads_racing_for_an_epoch_start_it_once() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster, Duration::from_secs(10));
    let runs = Arc::new(AtomicUsize::new(0));
    for epoch in 0..10 {
        let barrier = Arc::new(Barrier::new(6));
        let workers: Vec<_> = (0..6)
            .map(|_| {
                let job = f.create_run_once("once:race");
                let (barrier, runs) = (Arc::clone(&barrier), Arc::clone(&runs));
                thread::spawn(move || {
                    barrier.wait();
                    job.run(epoch.to_string(), |_| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(5));
                        "ok".into()
                    })
                    .unwrap()
                })
            })
            .collect();
        let outcomes: Vec<Outcome> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let ran = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Ran(_)))
            .count();
        assert_eq!(ran, 1, "epoch {epoch}: {outcomes:?}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 10);
}

#[test]
fn bad_epochs_results_and_retentions_are_errors() {
    let f = RedLockFactory::new([support::dead_url()]).unwrap();
    let job = f.create_run_once("j");
    let huge = "e".repeat(redmutex::MAX_RESOURCE_LEN);
    assert!(matches!(
        job.try_start(huge.as_str()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        job.with_retention(Duration::ZERO).try_start("e"),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        f.create_run_once("").record("e"),
        Err(Error::InvalidArgument(_))
    ));
    let cluster = RedisCluster::start(1);
    let job = factory(&cluster, Duration::from_secs(10)).create_run_once("j");
    let Start::Run(run) = job.try_start("e").unwrap() else {
        panic!()
    };
    let long = "r".repeat(MAX_VALUE_LEN + 1);
    assert!(matches!(
        run.complete(&long),
        Err(Error::InvalidArgument(_))
    ));
    // The run was released unrecorded: it runs again.
    assert!(matches!(job.try_start("e").unwrap(), Start::Run(_)));
}

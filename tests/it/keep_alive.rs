//! Keep-alive: leases renewed while guards live, one thread per factory, loss signalled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster, deadline_loop};
use redmutex::{Error, LossReason, RedLockFactory};

/// A short lease, renewed every 200 ms, so a few seconds cover many renewals.
const TTL: Duration = Duration::from_millis(600);
/// A renewal round must stay a small fraction of the TTL.
const IO_TIMEOUT: Duration = Duration::from_millis(100);

/// A factory of `cluster` with keep-alive, [`TTL`] and [`IO_TIMEOUT`].
fn kept_alive(cluster: &RedisCluster) -> RedLockFactory {
    support::short_factory(cluster)
        .keep_alive(true)
        .ttl(TTL)
        .io_timeout(IO_TIMEOUT)
        .build()
        .unwrap()
}

#[test]
fn kept_alive_lease_outlives_its_ttl_many_times() {
    let cluster = RedisCluster::start(3);
    let factory = kept_alive(&cluster);
    let guard = factory.create_lock("ka:k").acquire().unwrap();
    let start = Instant::now();
    // Four TTLs: without renewal the keys would be gone after one.
    while start.elapsed() < Duration::from_millis(2_400) {
        assert!(guard.is_valid(), "lease ran out at {:?}", start.elapsed());
        assert!(guard.is_valid());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A quorum holds it (a node whose renewal came too late on a loaded machine has let the
    // key expire there, and a renewal does not bring it back: still a valid lease).
    let holding = (0..3)
        .filter(|&i| cluster.cmd(i, &["GET", "ka:k"]) == guard.token())
        .count();
    assert!(holding >= 2, "the token on {holding} nodes of 3");
    let signal = guard.loss_signal();
    guard.release().unwrap();
    // Released without loss: the signal says so and never fires.
    assert_eq!(signal.wait_timeout(Duration::from_secs(5)), None);
    assert!(!signal.is_lost());
    // Nothing renews a released lock.
    assert!(deadline_loop(Duration::from_secs(3), || {
        (0..3).all(|i| cluster.cmd(i, &["EXISTS", "ka:k"]) == "0")
    }));
}

#[test]
fn keys_deleted_from_outside_are_signalled_once() {
    let cluster = RedisCluster::start(3);
    let factory = kept_alive(&cluster);
    let guard = factory.create_lock("ka:lost").acquire().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    guard.loss_signal().on_loss(move |reason| {
        assert_eq!(reason, LossReason::TokenGone);
        c.fetch_add(1, Ordering::SeqCst);
    });
    let signal = guard.loss_signal();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = signal.clone();
    std::thread::spawn(move || tx.send(waiter.wait()).unwrap());

    for i in 0..3 {
        cluster.cmd(i, &["DEL", "ka:lost"]);
    }
    // The next renewal (a third of the TTL) finds the token gone.
    let reason = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(reason, Some(LossReason::TokenGone));
    assert!(!guard.is_valid());
    assert_eq!(signal.reason(), Some(LossReason::TokenGone));
    assert!(deadline_loop(Duration::from_secs(5), || calls
        .load(Ordering::SeqCst)
        == 1));
    // A callback added after the loss runs at once.
    let late = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&late);
    guard.loss_signal().on_loss(move |_| {
        l.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(late.load(Ordering::SeqCst), 1);
    assert!(matches!(guard.release(), Err(Error::LockLost { .. })));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the callback fired more than once"
    );
}

#[test]
fn majority_down_lets_the_lease_run_out_and_says_so() {
    let cluster = RedisCluster::start(3);
    let factory = kept_alive(&cluster);
    let guard = factory.create_lock("ka:down").acquire().unwrap();
    let signal = guard.loss_signal();
    cluster.kill(0);
    cluster.kill(1);
    // No renewal can succeed from now on: the lease ends at the deadline the guard has now.
    let start = Instant::now();
    let left = guard.validity();
    assert!(
        !left.is_zero(),
        "setup: the lease had run out before the nodes were killed"
    );
    assert_eq!(
        signal.wait_timeout(Duration::from_secs(10)),
        Some(LossReason::Expired)
    );
    let after = start.elapsed();
    // Not before the lease ran out (a failed renewal is no loss yet), and not much after.
    assert!(
        after >= left,
        "signalled after {after:?}, with {left:?} left"
    );
    assert!(
        after < left + Duration::from_secs(3),
        "signalled after {after:?}, with {left:?} left"
    );
    assert!(!guard.is_valid());
}

#[test]
fn minority_down_does_not_lose_the_lease() {
    let cluster = RedisCluster::start(3);
    let factory = kept_alive(&cluster);
    let guard = factory.create_lock("ka:minority").acquire().unwrap();
    cluster.kill(2);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2_000) {
        assert!(guard.is_valid(), "lost at {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.release().unwrap();
}

#[test]
fn hold_limit_stops_renewal_and_signals() {
    let cluster = RedisCluster::start(3);
    let factory = kept_alive(&cluster);
    let lock = factory
        .create_lock("ka:limit")
        .with_max_hold(Duration::from_millis(1_500));
    let start = Instant::now();
    let guard = lock.acquire().unwrap();
    let signal = guard.loss_signal();
    assert_eq!(
        signal.wait_timeout(Duration::from_secs(10)),
        Some(LossReason::HoldLimit)
    );
    let held = start.elapsed();
    assert!(
        held >= Duration::from_millis(1_200),
        "ended early: {held:?}"
    );
    assert!(held < Duration::from_secs(6), "ended late: {held:?}");
    assert!(deadline_loop(Duration::from_secs(3), || {
        (0..3).all(|i| cluster.cmd(i, &["EXISTS", "ka:limit"]) == "0")
    }));
}

#[test]
fn plain_guard_signal_fires_when_the_lease_runs_out() {
    let cluster = RedisCluster::start(1);
    let factory = support::defaults(cluster.urls()).build().unwrap();
    let guard = factory
        .create_lock("plain:k")
        .with_ttl(Duration::from_millis(300))
        .acquire()
        .unwrap();
    let signal = guard.loss_signal();
    assert!(!signal.is_lost());
    assert_eq!(
        signal.wait_timeout(Duration::from_secs(10)),
        Some(LossReason::Expired)
    );
    assert!(!guard.is_valid());
}

#[test]
fn thousands_of_guards_one_thread() {
    const GUARDS: usize = 2_000;
    let cluster = RedisCluster::start(3);
    let factory = support::short_factory(&cluster)
        .keep_alive(true)
        .ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    let guards: Vec<_> = (0..GUARDS)
        .map(|i| factory.create_lock(format!("many:{i}")).acquire().unwrap())
        .collect();
    let start = Instant::now();
    // Two TTLs: every lease must have been renewed at least once, none may run out.
    while start.elapsed() < Duration::from_secs(4) {
        let lost = guards.iter().filter(|g| !g.is_valid()).count();
        assert_eq!(lost, 0, "{lost} leases ran out at {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let pttl: i64 = cluster.cmd(0, &["PTTL", "many:0"]).parse().unwrap();
    assert!(pttl > 0, "pttl {pttl}");
    let keepers = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "redmutex-keeper")
        .count();
    // Other tests in this binary may have their own factories' keepers, never one per guard.
    assert!((1..10).contains(&keepers), "{keepers} keeper threads");
    drop(guards);
    assert!(deadline_loop(Duration::from_secs(5), || {
        cluster.cmd(0, &["DBSIZE"]) == "0"
    }));
}

//! The multi-lock on healthy nodes: every resource in one round, all or nothing; exclusion of
//! (and by) plain locks and other multi-locks on any member; a node counts only if it holds
//! every key; wake-up by the release of any member. (Fault runs with the history checker are
//! in `faults::synchronizers`.)

use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster};
use redmutex::{Error, LossReason};

#[test]
fn every_resource_in_one_round_with_the_locks_own_keys() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let names: Vec<String> = (0..8).rev().map(|i| format!("multi:r{i}")).collect();
    let multi = factory.create_multi_lock(names.iter().map(String::as_str));
    let sorted: Vec<&str> = multi.resources().iter().map(|r| &**r).collect();
    assert!(sorted.windows(2).all(|w| w[0] < w[1]), "{sorted:?}");
    // Warm the pools, then count the scripts the nodes run for one acquisition.
    multi.acquire().unwrap().release().unwrap();
    for i in 0..3 {
        cluster.cmd(i, &["CONFIG", "RESETSTAT"]);
    }
    let guard = multi.acquire().unwrap();
    for i in 0..3 {
        assert_eq!(
            cluster.calls(i, "evalsha"),
            1,
            "node {i}: one round, not eight"
        );
    }
    assert!(guard.is_valid() && guard.validity() > Duration::from_secs(9));
    assert_eq!(guard.resources().len(), 8);
    for name in &names {
        // Each resource's key holds the token, as a lock's would, with the TTL.
        assert_eq!(cluster.holders(name, guard.token()), 3, "{name}");
        let pttl: i64 = cluster.cmd(1, &["PTTL", name]).parse().unwrap();
        assert!((9_000..=10_000).contains(&pttl), "{name}: {pttl}");
        // A lock of any member is excluded.
        assert!(
            factory
                .create_lock(name.as_str())
                .try_acquire()
                .unwrap()
                .is_none()
        );
        assert!(factory.create_lock(name.as_str()).is_locked().unwrap());
    }
    guard.release().unwrap();
    for i in 0..3 {
        assert_eq!(cluster.keys(i), Vec::<String>::new(), "node {i}");
    }
}

#[test]
fn all_or_nothing_and_excluded_by_any_member_holder() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let multi = factory.create_multi_lock(["m2:a", "m2:b", "m2:c"]);
    // A lock holds one member: the multi-lock takes nothing.
    let b = factory.create_lock("m2:b").acquire().unwrap();
    assert!(multi.try_acquire().unwrap().is_none());
    assert!(matches!(
        multi.acquire_timeout(Duration::from_millis(200)),
        Err(Error::Timeout { .. })
    ));
    for i in 0..3 {
        assert_eq!(cluster.keys(i), ["m2:b"], "node {i} kept a partial set");
    }
    // Another Redlock client's key (a raw SET NX PX) excludes it too.
    b.release().unwrap();
    for i in 0..3 {
        cluster.cmd(
            i,
            &["SET", "m2:c", "someone-elses-token", "NX", "PX", "60000"],
        );
    }
    assert!(multi.try_acquire().unwrap().is_none());
    for i in 0..3 {
        cluster.cmd(i, &["DEL", "m2:c"]);
    }
    // Held: locks of each member, and multi-locks sharing one, are excluded; a disjoint one
    // is not.
    let g = multi.try_acquire().unwrap().expect("free");
    for name in ["m2:a", "m2:b", "m2:c"] {
        assert!(factory.create_lock(name).try_acquire().unwrap().is_none());
    }
    let overlapping = factory.create_multi_lock(["m2:c", "m2:d"]);
    assert!(overlapping.try_acquire().unwrap().is_none());
    assert!((0..3).all(|i| cluster.cmd(i, &["EXISTS", "m2:d"]) == "0"));
    let disjoint = factory.create_multi_lock(["m2:d", "m2:e"]);
    disjoint
        .try_acquire()
        .unwrap()
        .expect("disjoint")
        .release()
        .unwrap();
    // A semaphore of a member's name waits for it too.
    assert!(
        factory
            .create_semaphore("m2:a", 3)
            .try_acquire()
            .unwrap()
            .is_none()
    );
    g.release().unwrap();
    overlapping
        .try_acquire()
        .unwrap()
        .expect("free now")
        .release()
        .unwrap();
}

#[test]
fn a_node_counts_only_if_it_holds_every_resource() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let multi = factory.create_multi_lock(["m3:a", "m3:b"]);
    let g = multi.acquire().unwrap();
    // One key deleted on node 0: nodes 1 and 2 still hold the whole set, a quorum.
    cluster.cmd(0, &["DEL", "m3:a"]);
    g.extend(Duration::from_secs(20)).unwrap();
    // Node 0 was not extended (it did not hold the set): its part keeps the old expiry.
    let pttl_0: i64 = cluster.cmd(0, &["PTTL", "m3:b"]).parse().unwrap();
    let pttl_1: i64 = cluster.cmd(1, &["PTTL", "m3:b"]).parse().unwrap();
    assert!(pttl_0 <= 10_000 && pttl_1 > 19_000, "{pttl_0} {pttl_1}");
    // The same on node 1: no quorum holds the set any more.
    cluster.cmd(1, &["DEL", "m3:b"]);
    assert!(matches!(
        g.extend(Duration::from_secs(20)),
        Err(Error::LockLost { .. })
    ));
    assert!(!g.is_valid());
    assert!(matches!(g.release(), Err(Error::LockLost { .. })));
    // The release cleaned up the parts left on nodes 0 and 1, and the set on node 2.
    for i in 0..3 {
        assert_eq!(cluster.keys(i), Vec::<String>::new(), "node {i}");
    }
}

#[test]
fn the_release_of_any_member_wakes_a_waiting_multi_lock_and_the_other_way_round() {
    let cluster = RedisCluster::start(3);
    let holder = support::factory(&cluster).build().unwrap();
    // Waiters that would poll only every 10 s: a hand-over within 3 s is a wake-up (a
    // generous bound for a loaded machine, still far from a poll).
    let waiter = support::factory(&cluster)
        .retry_delay(Duration::from_secs(10))
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    for member in ["m4:a", "m4:b", "m4:c"] {
        // A lock holds one member; a multi-lock over all three waits for it.
        let held = holder.create_lock(member).acquire().unwrap();
        cluster.clear_waiting(member);
        let multi = waiter.create_multi_lock(["m4:a", "m4:b", "m4:c"]);
        let waiting = thread::spawn(move || {
            let g = multi.acquire_timeout(Duration::from_secs(20)).unwrap();
            (Instant::now(), g)
        });
        // The multi-lock marks the member it found taken as waited for.
        cluster.wait_waiting(member);
        let released = Instant::now();
        held.release().unwrap();
        let (acquired, g) = waiting.join().unwrap();
        let gap = acquired.saturating_duration_since(released);
        assert!(gap < Duration::from_secs(3), "{member}: {gap:?}");

        // The multi-lock holds it now; a lock waiting for the member is woken by its release.
        cluster.clear_waiting(member);
        let lock = waiter.create_lock(member);
        let waiting = thread::spawn(move || {
            let g = lock.acquire_timeout(Duration::from_secs(20)).unwrap();
            (Instant::now(), g)
        });
        cluster.wait_waiting(member);
        let released = Instant::now();
        g.release().unwrap();
        let (acquired, g) = waiting.join().unwrap();
        let gap = acquired.saturating_duration_since(released);
        assert!(
            gap < Duration::from_secs(3),
            "{member}, the other way: {gap:?}"
        );
        g.release().unwrap();
    }
}

#[test]
fn multi_lock_leases_extend_keep_alive_and_signal_their_loss() {
    let cluster = RedisCluster::start(3);
    let factory = support::short_factory(&cluster)
        .ttl(Duration::from_millis(600))
        .build()
        .unwrap();
    let multi = factory.create_multi_lock(["m5:a", "m5:b"]);
    // Token-level calls, as from another process.
    let token = multi.acquire().unwrap().leak();
    assert!(multi.extend_token(&token, Duration::from_secs(30)).unwrap() > Duration::from_secs(29));
    assert!(multi.try_acquire().unwrap().is_none());
    multi.release_token(&token).unwrap();
    assert!(matches!(
        multi.release_token(&token),
        Err(Error::NotHeld { .. })
    ));

    // Keep-alive holds a 600 ms lease for 2 s; deleting a member's key is signalled.
    let kept = multi.with_keep_alive(true).acquire().unwrap();
    let lost = kept.loss_signal();
    thread::sleep(Duration::from_secs(2));
    assert!(kept.is_valid() && !lost.is_lost());
    assert_eq!(cluster.holders("m5:b", kept.token()), 3);
    for i in 0..3 {
        cluster.cmd(i, &["DEL", "m5:b"]);
    }
    assert_eq!(
        lost.wait_timeout(Duration::from_secs(3)),
        Some(LossReason::TokenGone)
    );
    assert!(matches!(kept.release(), Err(Error::LockLost { .. })));
}

#[test]
fn fencing_tokens_increase_per_resource_across_locks_and_multi_locks() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).fencing(true).build().unwrap();
    let lock = |name: &str| {
        let g = factory.create_lock(name).acquire().unwrap();
        let t = g.fencing_token().unwrap();
        g.release().unwrap();
        t
    };
    let multi = |names: &[&str]| {
        let g = factory
            .create_multi_lock(names.iter().copied())
            .acquire()
            .unwrap();
        let t = g.fencing_token().unwrap();
        g.release().unwrap();
        t
    };
    let a1 = lock("m6:a");
    let ab = multi(&["m6:a", "m6:b"]);
    let b1 = lock("m6:b");
    let bc = multi(&["m6:b", "m6:c"]);
    let c1 = lock("m6:c");
    let a2 = lock("m6:a");
    let abc = multi(&["m6:a", "m6:b", "m6:c"]);
    // Each resource's tokens increase, whoever issued them.
    assert!(a1 < ab && ab < a2 && a2 < abc, "a: {a1} {ab} {a2} {abc}");
    assert!(ab < b1 && b1 < bc && bc < abc, "b: {ab} {b1} {bc} {abc}");
    assert!(bc < c1 && c1 < abc, "c: {bc} {c1} {abc}");
    // The multi-lock raised every member's counter to its token.
    for r in ["m6:a", "m6:b", "m6:c"] {
        let counter = format!("{r}:redmutex:fence");
        assert_eq!(cluster.cmd(0, &["GET", &counter]), abc.to_string(), "{r}");
    }
    // Off unless asked for.
    let plain = support::factory(&cluster).build().unwrap();
    let g = plain.create_multi_lock(["m6:a"]).acquire().unwrap();
    assert_eq!(g.fencing_token(), None);
    let g2 = plain
        .create_multi_lock(["m6:z"])
        .with_fencing(true)
        .acquire()
        .unwrap();
    assert!(g2.fencing_token().is_some());
    drop((g, g2));
}

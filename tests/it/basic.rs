//! The lock's behaviour on healthy nodes: 1, 3, 5 and 9 of them.

use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster, deadline_loop};
use redmutex::{Error, RedLockGuard};

fn lifecycle(n: usize) {
    let cluster = RedisCluster::start(n);
    let factory = support::factory(&cluster).build().unwrap();
    assert_eq!(factory.quorum(), n / 2 + 1);
    let lock = factory.create_lock("basic:k");
    assert!(!lock.is_locked().unwrap());

    let guard = lock.acquire().unwrap();
    assert!(guard.is_valid());
    assert!(guard.validity() > Duration::from_secs(9));
    assert!(guard.validity() <= Duration::from_secs(10));
    assert_eq!(guard.resource(), "basic:k");
    // Every node holds our token under the resource name, with the TTL.
    assert_eq!(cluster.holders("basic:k", guard.token()), n);
    let pttl: i64 = cluster.cmd(0, &["PTTL", "basic:k"]).parse().unwrap();
    assert!((9_000..=10_000).contains(&pttl), "pttl {pttl}");
    assert!(lock.is_locked().unwrap());

    // Held: try_acquire says so at once, without an error.
    assert!(lock.try_acquire().unwrap().is_none());
    // The failed attempt left nothing of its own behind.
    assert_eq!(cluster.holders("basic:k", guard.token()), n);

    lock.release(guard).unwrap();
    assert_eq!(cluster.nodes_with("basic:k"), 0);
    assert!(!lock.is_locked().unwrap());
    let again = lock.try_acquire().unwrap().expect("free after release");
    again.release().unwrap();
}

#[test]
fn lifecycle_one_node() {
    lifecycle(1);
}

#[test]
fn lifecycle_three_nodes() {
    lifecycle(3);
}

#[test]
fn lifecycle_five_nodes() {
    lifecycle(5);
}

/// More nodes than a round keeps on the stack (8): the connections spill to a `Vec`.
#[test]
fn lifecycle_nine_nodes() {
    lifecycle(9);
}

#[test]
fn design_card_line_holds_until_scope_end() -> Result<(), Error> {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    {
        let _g = factory.create_lock("k").acquire()?;
        assert!(factory.create_lock("k").is_locked()?);
        assert!(factory.create_lock("k").try_acquire()?.is_none());
    }
    assert!(!factory.create_lock("k").is_locked()?);
    Ok(())
}

#[test]
fn drop_releases_and_let_underscore_releases_at_once() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let lock = factory.create_lock(String::from("drop:k"));
    let g = lock.acquire().unwrap();
    drop(g);
    assert_eq!(cluster.nodes_with("drop:k"), 0);
    #[allow(clippy::let_underscore_must_use, let_underscore_drop)]
    let _ = lock.acquire().unwrap();
    assert_eq!(cluster.nodes_with("drop:k"), 0);
}

#[test]
fn acquire_timeout_expires_while_held_and_succeeds_when_freed() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let lock = factory.create_lock("timeout:k");
    let held = lock.acquire().unwrap();

    let start = Instant::now();
    match lock.acquire_timeout(Duration::from_millis(300)) {
        Err(Error::Timeout { resource, waited }) => {
            assert_eq!(resource, "timeout:k");
            assert!(waited >= Duration::from_millis(300), "{waited:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300));
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A zero timeout is one round.
    assert!(matches!(
        lock.acquire_timeout(Duration::ZERO),
        Err(Error::Timeout { .. })
    ));

    // Released by another thread while we wait: we get it well before the timeout.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        held.release().unwrap();
    });
    let g = lock.acquire_timeout(Duration::from_secs(20)).unwrap();
    releaser.join().unwrap();
    assert!(g.is_valid());
}

#[test]
fn lock_expires_after_ttl_and_stale_guard_cannot_touch_the_new_holder() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let lock = factory
        .create_lock("expiry:k")
        .with_ttl(Duration::from_millis(300));
    let stale = lock.acquire().unwrap();
    assert!(stale.validity() <= Duration::from_millis(300));

    // Nobody releases: after the TTL the keys are gone and the guard knows it.
    assert!(deadline_loop(Duration::from_secs(10), || !stale.is_valid()
        && cluster.nodes_with("expiry:k") == 0));
    assert_eq!(stale.validity(), Duration::ZERO);

    let other = factory
        .create_lock("expiry:k")
        .with_ttl(Duration::from_secs(10))
        .acquire()
        .unwrap();
    let before: i64 = cluster.cmd(0, &["PTTL", "expiry:k"]).parse().unwrap();

    // The stale guard can neither extend nor release the new holder's lock.
    assert!(matches!(
        stale.extend(Duration::from_secs(60)),
        Err(Error::Expired { .. })
    ));
    match stale.release() {
        Err(Error::Expired { resource }) => assert_eq!(resource, "expiry:k"),
        other => panic!("expected Expired, got {other:?}"),
    }
    assert_eq!(cluster.holders("expiry:k", other.token()), 3);
    let after: i64 = cluster.cmd(0, &["PTTL", "expiry:k"]).parse().unwrap();
    assert!(
        after <= before,
        "the stale guard extended the new holder's key"
    );
    other.release().unwrap();
}

#[test]
fn extend_moves_the_deadline_and_the_keys() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let guard = factory
        .create_lock("extend:k")
        .with_ttl(Duration::from_millis(500))
        .acquire()
        .unwrap();
    guard.extend(Duration::from_secs(30)).unwrap();
    assert!(guard.validity() > Duration::from_secs(29));
    for i in 0..3 {
        let pttl: i64 = cluster.cmd(i, &["PTTL", "extend:k"]).parse().unwrap();
        assert!(pttl > 29_000, "node {i}: pttl {pttl}");
    }
    // Extending never shortens: the nodes keep their longer expiry, and so does the guard.
    guard.extend(Duration::from_secs(2)).unwrap();
    assert!(guard.validity() > Duration::from_secs(28));
    for i in 0..3 {
        let pttl: i64 = cluster.cmd(i, &["PTTL", "extend:k"]).parse().unwrap();
        assert!(pttl > 28_000, "node {i}: pttl {pttl}");
    }
    assert!(matches!(
        guard.extend(Duration::ZERO),
        Err(Error::InvalidConfig(_))
    ));
    guard.release().unwrap();
}

#[test]
fn lost_lock_is_reported_by_extend_and_release() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let lock = factory.create_lock("lost:k");
    let guard = lock.acquire().unwrap();
    // Someone deletes the key behind our back on a majority.
    cluster.cmd(0, &["DEL", "lost:k"]);
    cluster.cmd(1, &["SET", "lost:k", "someone-else"]);
    assert!(matches!(
        guard.extend(Duration::from_secs(10)),
        Err(Error::LockLost { .. })
    ));
    assert!(!guard.is_valid(), "a lost lock must not look valid");
    assert!(matches!(guard.release(), Err(Error::LockLost { .. })));
    // The other client's value was not touched.
    assert_eq!(cluster.cmd(1, &["GET", "lost:k"]), "someone-else");
}

#[test]
fn release_after_validity_but_with_keys_intact_is_ok() {
    // The keys outlive the validity by the drift allowance: still ours on every node.
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster)
        .clock_drift_factor(0.5)
        .build()
        .unwrap();
    let guard = factory
        .create_lock("late:k")
        .with_ttl(Duration::from_millis(2_000))
        .acquire()
        .unwrap();
    assert!(guard.validity() <= Duration::from_millis(1_000));
    assert!(deadline_loop(Duration::from_secs(5), || !guard.is_valid()));
    assert_eq!(cluster.holders("late:k", guard.token()), 3);
    guard.release().unwrap();
}

#[test]
fn drop_during_panic_releases() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let f2 = factory.clone();
    let result = std::thread::spawn(move || {
        let _g = f2.create_lock("panic:k").acquire().unwrap();
        panic!("boom while holding the lock");
    })
    .join();
    assert!(result.is_err());
    assert_eq!(cluster.nodes_with("panic:k"), 0);
    assert!(
        factory
            .create_lock("panic:k")
            .try_acquire()
            .unwrap()
            .is_some()
    );
}

#[test]
fn guard_moves_to_another_thread_and_releases_there() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let guard: RedLockGuard = factory.create_lock("send:k").acquire().unwrap();
    std::thread::spawn(move || guard.release().unwrap())
        .join()
        .unwrap();
    assert_eq!(cluster.nodes_with("send:k"), 0);
}

#[test]
fn resource_names_are_binary_safe_keys() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster).build().unwrap();
    for name in [
        "with space",
        "ünïcödé/ключ",
        "a\r\nSET x y\r\n",
        "*3\r\n$3",
        "\u{0}nul",
    ] {
        let g = factory.create_lock(name).try_acquire().unwrap().unwrap();
        assert!(factory.create_lock(name).is_locked().unwrap(), "{name:?}");
        g.release().unwrap();
        assert!(!factory.create_lock(name).is_locked().unwrap(), "{name:?}");
    }
    assert_eq!(cluster.cmd(0, &["DBSIZE"]), "0");
}

#[test]
fn tokens_are_unique_per_acquisition() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster).build().unwrap();
    let lock = factory.create_lock("tokens:k");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let g = lock.acquire().unwrap();
        assert_eq!(g.token().len(), 40);
        assert!(seen.insert(g.token().to_owned()));
    }
}

#[test]
fn scripts_flushed_on_a_node_fall_back_to_loading() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let lock = factory.create_lock("noscript:k");
    let g = lock.acquire().unwrap();
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["SCRIPT", "FLUSH"]), "OK");
    }
    g.extend(Duration::from_secs(5)).unwrap();
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["SCRIPT", "FLUSH"]), "OK");
    }
    g.release().unwrap();
    // The release is decided at the quorum: a node whose `NOSCRIPT` is read after the round
    // (its connection parked) is owed the release as `EVAL`, paid as soon as it is read: well
    // before the key's own expiry (5 s).
    assert!(
        support::deadline_loop(Duration::from_secs(2), || cluster.nodes_with("noscript:k")
            == 0),
        "the key was left on {} nodes",
        cluster.nodes_with("noscript:k")
    );
}

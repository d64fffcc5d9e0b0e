//! Nodes that crash, stop, restart or were never there: the lock keeps working with a majority,
//! and every call returns within its bound without one. (The short timeouts of
//! `support::short_builder`: the bounds count what each timeout costs.)

use std::time::{Duration, Instant};

use crate::support::proxy::Proxy;
use crate::support::{self, RedisCluster, dead_url, deadline_loop};
use redmutex::{Error, RedLockFactory};

/// Warms every pool with one full cycle.
fn warm(factory: &RedLockFactory) {
    factory
        .create_lock("warm")
        .acquire()
        .unwrap()
        .release()
        .unwrap();
}

/// Runs `cycles` acquire/release cycles and returns the slowest one.
fn cycles(factory: &RedLockFactory, key: &str, cycles: usize) -> Duration {
    let lock = factory.create_lock(key);
    let mut worst = Duration::ZERO;
    for _ in 0..cycles {
        let start = Instant::now();
        let g = lock.acquire().unwrap();
        g.release().unwrap();
        worst = worst.max(start.elapsed());
    }
    worst
}

#[test]
fn minority_killed_locks_still_work_within_the_io_bound() {
    let cluster = RedisCluster::start(5);
    let factory = support::short_factory(&cluster).build().unwrap();
    warm(&factory);
    cluster.kill(1);
    cluster.kill(3);
    let worst = cycles(&factory, "minority:kill", 30);
    // Generous bound for a loaded machine; without node health a round would wait on the dead
    // nodes every time, and without timeouts it would hang.
    assert!(worst < Duration::from_secs(3), "slowest cycle {worst:?}");
}

#[test]
fn minority_stopped_locks_still_work_within_the_io_bound() {
    let cluster = RedisCluster::start(3);
    let factory = support::short_factory(&cluster).build().unwrap();
    warm(&factory);
    cluster.stop(2);
    let start = Instant::now();
    let worst = cycles(&factory, "minority:stop", 30);
    let total = start.elapsed();
    assert!(worst < Duration::from_secs(3), "slowest cycle {worst:?}");
    // The stopped node costs about one I/O timeout now and then (a probe), not one per round.
    assert!(total < Duration::from_secs(10), "30 cycles took {total:?}");
    cluster.cont(2);
}

#[test]
fn node_down_at_build_does_not_fail_or_block_the_build() {
    let cluster = RedisCluster::start(2);
    let mut urls = cluster.urls();
    urls.push(dead_url());
    let start = Instant::now();
    let factory = support::short_builder().nodes(urls).build().unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    let g = factory.create_lock("down-at-build").acquire().unwrap();
    g.release().unwrap();
}

#[test]
fn majority_dead_gives_a_clear_error_within_a_bound_then_recovers() {
    let cluster = RedisCluster::start(3);
    let factory = support::short_factory(&cluster).build().unwrap();
    warm(&factory);
    let lock = factory.create_lock("majority");
    let held = lock.acquire().unwrap();
    cluster.kill(0);
    cluster.kill(1);

    // acquire: a few failed rounds, then the error, naming each dead node.
    let start = Instant::now();
    let err = lock.acquire().unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "acquire took {took:?}");
    match &err {
        Error::NoQuorum {
            answered,
            needed,
            nodes,
            failures,
            ..
        } => {
            assert_eq!((*needed, *nodes), (2, 3));
            assert!(*answered <= 1);
            let named: Vec<&str> = failures.iter().map(|f| f.node()).collect();
            for i in 0..2 {
                let addr = format!("127.0.0.1:{}", cluster.port(i));
                assert!(named.contains(&addr.as_str()), "{addr} not in {named:?}");
            }
        }
        other => panic!("expected NoQuorum, got {other:?}"),
    }
    assert!(
        err.to_string().contains("1 of 3 nodes answered") || err.to_string().contains("0 of 3")
    );

    // Every other entry point also returns a clear error, fast.
    let start = Instant::now();
    assert!(matches!(lock.try_acquire(), Err(Error::NoQuorum { .. })));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_secs(30)),
        Err(Error::NoQuorum { .. })
    ));
    assert!(matches!(lock.is_locked(), Err(Error::NoQuorum { .. })));
    assert!(matches!(
        held.extend(Duration::from_secs(10)),
        Err(Error::NoQuorum { .. })
    ));
    assert!(matches!(held.release(), Err(Error::NoQuorum { .. })));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );

    // The nodes come back (empty): service resumes by itself, same factory.
    cluster.restart(0);
    cluster.restart(1);
    let mut last = None;
    let recovered = deadline_loop(Duration::from_secs(20), || match lock.try_acquire() {
        Ok(Some(g)) => {
            g.release().unwrap();
            true
        }
        other => {
            last = Some(format!("{other:?}"));
            false
        }
    });
    assert!(recovered, "no recovery; last attempt: {last:?}");
}

#[test]
fn pools_recover_after_every_node_restarts() {
    let cluster = RedisCluster::start(3);
    let factory = support::short_factory(&cluster).build().unwrap();
    warm(&factory);
    for round in 0..3 {
        for i in 0..3 {
            cluster.restart(i);
        }
        let lock = factory.create_lock("restart");
        assert!(
            deadline_loop(Duration::from_secs(20), || matches!(
                lock.try_acquire(),
                Ok(Some(_))
            )),
            "no recovery after restart {round}"
        );
    }
}

#[test]
fn round_slower_than_the_ttl_is_not_acquired_and_leaves_nothing() {
    let cluster = RedisCluster::start(3);
    // Node 2 is stopped and node 1's replies take 250 ms: the quorum needs node 1, so the round
    // outlasts the 100 ms lease (the I/O timeout is longer than the TTL). (A round decides at
    // the quorum: with nodes 0 and 1 quick, node 2 alone could not make it slow.)
    let slow = Proxy::start(cluster.port(1));
    let factory = support::short_builder()
        .nodes([cluster.url(0), slow.url(), cluster.url(2)])
        .io_timeout(Duration::from_millis(400))
        .ttl(Duration::from_millis(100))
        .build()
        .unwrap();
    warm(&factory);
    cluster.stop(2);
    slow.set_latency_down(Duration::from_millis(250));
    let lock = factory.create_lock("slow-round");
    match lock.try_acquire() {
        Err(Error::TooLate { elapsed, .. }) => assert!(elapsed >= Duration::from_millis(100)),
        other => panic!("expected TooLate, got {other:?}"),
    }
    // The two live nodes said yes, and both were cleaned up in the same call.
    for i in 0..2 {
        assert_eq!(cluster.cmd(i, &["EXISTS", "slow-round"]), "0", "node {i}");
    }
    cluster.cont(2);
    // The stopped node may have applied the SET late; its key expires with the TTL.
    assert!(deadline_loop(Duration::from_secs(5), || {
        cluster.cmd(2, &["EXISTS", "slow-round"]) == "0"
    }));
}

#[test]
fn split_vote_is_released_at_once() {
    // Two clients each hold a different node of three: neither has a quorum. A third client's
    // round must still see the lock free again within a retry, not after a TTL.
    let cluster = RedisCluster::start(3);
    cluster.cmd(0, &["SET", "split", "client-a", "PX", "60000"]);
    let factory = support::short_factory(&cluster).build().unwrap();
    let lock = factory.create_lock("split");
    // Node 0 says no, nodes 1 and 2 say yes: a quorum, acquired.
    let g = lock.try_acquire().unwrap().expect("2 of 3 is a quorum");
    g.release().unwrap();
    // Now two nodes say no: not acquired, and our SET on node 2 is taken back: at once, or,
    // when the round was decided before node 2's grant was read, as soon as it is read (by
    // the node's next round or, within a few ms, its reader), far within the lease's TTL.
    cluster.cmd(1, &["SET", "split", "client-b", "PX", "60000"]);
    assert!(lock.try_acquire().unwrap().is_none());
    assert!(
        support::deadline_loop(Duration::from_secs(2), || cluster
            .cmd(2, &["EXISTS", "split"])
            == "0"),
        "our grant was left on node 2"
    );
    assert_eq!(cluster.cmd(0, &["GET", "split"]), "client-a");
    assert_eq!(cluster.cmd(1, &["GET", "split"]), "client-b");
}

#[test]
fn every_node_dead_from_the_start() {
    let factory = support::short_builder()
        .nodes([dead_url(), dead_url(), dead_url()])
        .build()
        .unwrap();
    let start = Instant::now();
    let err = factory.create_lock("k").acquire().unwrap_err();
    assert!(
        matches!(err, Error::NoQuorum { answered: 0, .. }),
        "{err:?}"
    );
    assert_eq!(err.node_errors().len(), 3);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn idle_connections_across_restarts_are_retried_once_on_fresh_ones() {
    // Every node restarts (keeping its data, AOF) while the pools sit idle: the pooled
    // connections are all dead. The release must still reach the nodes in the same call.
    let cluster = RedisCluster::start_with_args(3, support::AOF_ARGS);
    // One connection per node: no background connect (to top up idle connections) can be under
    // way while a node restarts. One that fails marks the node down, and a down node is skipped
    // until r2d2's next reconnection (a separate, known delay of up to half the connect timeout).
    let factory = support::short_factory(&cluster)
        .pool_size(1)
        .build()
        .unwrap();
    warm(&factory);
    let guard = factory.create_lock("restarted").acquire().unwrap();
    for i in 0..3 {
        cluster.restart_with_aof(i);
        assert_eq!(
            cluster.cmd(i, &["GET", "restarted"]),
            guard.token(),
            "node {i}"
        );
    }
    guard.release().unwrap();
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["EXISTS", "restarted"]), "0", "node {i}");
    }
    // And the next acquisition too.
    for i in 0..3 {
        cluster.restart_with_aof(i);
    }
    let g = factory.create_lock("restarted").try_acquire().unwrap();
    assert!(g.is_some(), "busy after the restarts");
}

/// A fresh factory's first contact with a node that is down reports the connect failure
/// itself; "skipped while backing off" is for a node that worked and then failed. (It said
/// "skipped while backing off after a failure" on the very first call.)
#[test]
fn a_first_contact_with_a_dead_node_reports_its_connect_failure() {
    let factory = support::short_builder()
        .node(dead_url())
        .max_retries(0)
        .build()
        .unwrap();
    for _ in 0..2 {
        let e = factory.create_lock("first").try_acquire().unwrap_err();
        let node = &e.node_errors()[0];
        assert!(!node.is_backing_off(), "{e}");
        assert!(!e.to_string().contains("backing off"), "{e}");
        assert!(e.to_string().contains("refused"), "{e}");
    }

    // A node that answered, then died: skipped while it backs off, and said so.
    let cluster = RedisCluster::start(1);
    let factory = support::short_factory(&cluster).build().unwrap();
    warm(&factory);
    cluster.kill(0);
    let lock = factory.create_lock("later");
    assert!(deadline_loop(Duration::from_secs(10), || lock
        .try_acquire()
        .is_err_and(|e| e.node_errors()[0].is_backing_off()
            && e.to_string().contains("skipped while backing off"))));
}

/// A release that cannot tell: 3 of 5 nodes answer, but only 1 still holds the token, and the
/// 2 stopped ones might. The error says how many said yes. (It said "3 of 5 nodes answered, 3
/// must agree", which reads as if a quorum had agreed.)
#[test]
fn a_failed_release_says_how_many_nodes_still_held_the_token() {
    let cluster = RedisCluster::start(5);
    let factory = support::short_factory(&cluster).build().unwrap();
    warm(&factory);
    let g = factory.create_lock("release:count").acquire().unwrap();
    for i in [1, 2] {
        cluster.cmd(i, &["DEL", "release:count"]);
    }
    cluster.stop(3);
    cluster.stop(4);
    let e = g.release().unwrap_err();
    cluster.cont(3);
    cluster.cont(4);
    assert!(matches!(e, Error::NoQuorum { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("1 of 5 nodes said yes, 3 must; 2 said no, 2 failed"),
        "{text}"
    );
}

//! The token-level and cancellable API (issue 11): a lease handed out as its token and ended or
//! extended by resource and token from another factory (another process, in real use), the
//! read-only inspection, and an acquisition called off with a flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redmutex::{Error, Fingerprint, Holding, LockState, Wait};

use crate::support::{self, RedisCluster};

/// The retry delay of a waiter that should not be seen to poll during a test.
const SLOW_POLL: Duration = Duration::from_secs(10);

fn pttl(cluster: &RedisCluster, i: usize, key: &str) -> i64 {
    cluster.cmd(i, &["PTTL", key]).parse().unwrap()
}

#[test]
fn a_leaked_lease_is_released_by_its_token_from_another_factory() {
    let cluster = RedisCluster::start(3);
    let here = support::factory(&cluster).build().unwrap();
    let there = support::factory(&cluster).build().unwrap();
    let token = here.create_lock("tok:k").acquire().unwrap().leak();
    // Leaked: still held on every node, and nobody else gets it.
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["GET", "tok:k"]), token);
    }
    assert!(there.create_lock("tok:k").try_acquire().unwrap().is_none());
    // A waiter of a third factory is woken by the release by token.
    let waiter = support::factory(&cluster)
        .retry_delay(Duration::from_secs(3))
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    thread::scope(|s| {
        let waiting = s.spawn(|| {
            let g = waiter.create_lock("tok:k").acquire().unwrap();
            (Instant::now(), g)
        });
        // The waiter marked the resource as waited for: it is waiting.
        cluster.wait_waiting("tok:k");
        let released = Instant::now();
        there.create_lock("tok:k").release_token(&token).unwrap();
        let (got, g) = waiting.join().unwrap();
        let delay = got.saturating_duration_since(released);
        eprintln!("[figures] release_token woke a waiter after {delay:?} (poll 3 s)");
        assert!(delay < Duration::from_secs(1), "not woken: {delay:?}");
        g.release().unwrap();
    });
    // The same token again: not held any more.
    assert!(matches!(
        there.create_lock("tok:k").release_token(&token),
        Err(Error::NotHeld { .. })
    ));
}

#[test]
fn extend_by_token_lengthens_never_shortens_and_reports_the_validity() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).build().unwrap();
    let lock = f.create_lock("tok:ext").with_ttl(Duration::from_secs(2));
    let token = lock.acquire().unwrap().leak();
    let validity = lock.extend_token(&token, Duration::from_secs(30)).unwrap();
    assert!(validity > Duration::from_secs(29) && validity < Duration::from_secs(30));
    for i in 0..3 {
        assert!(pttl(&cluster, i, "tok:ext") > 29_000);
    }
    // Shorter than what the nodes hold: they keep it.
    lock.extend_token(&token, Duration::from_secs(1)).unwrap();
    for i in 0..3 {
        assert!(pttl(&cluster, i, "tok:ext") > 28_000);
    }
    lock.release_token(&token).unwrap();
}

#[test]
fn a_wrong_token_changes_nothing_and_says_so() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).build().unwrap();
    let lock = f.create_lock("tok:wrong");
    let g = lock.acquire().unwrap();
    let before: Vec<i64> = (0..3).map(|i| pttl(&cluster, i, "tok:wrong")).collect();
    let wrong = "0".repeat(40);
    assert!(matches!(
        lock.release_token(&wrong),
        Err(Error::NotHeld { .. })
    ));
    assert!(matches!(
        lock.extend_token(&wrong, Duration::from_secs(60)),
        Err(Error::NotHeld { .. })
    ));
    for (i, before) in before.iter().enumerate() {
        assert_eq!(cluster.cmd(i, &["GET", "tok:wrong"]), g.token());
        assert!(
            pttl(&cluster, i, "tok:wrong") <= *before,
            "node {i} extended"
        );
    }
    let e = lock.release_token(&wrong).unwrap_err().to_string();
    assert!(e.contains("not held with this token"), "{e}");
    assert!(!e.contains(&wrong) && !e.contains(g.token()), "{e}");
    g.release().unwrap();
}

#[test]
fn inspect_names_the_holder_by_fingerprint_and_judges_the_quorum() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).fencing(true).build().unwrap();
    let lock = f.create_lock("tok:see");
    assert!(matches!(
        lock.inspect().unwrap().state,
        LockState::Free { nodes: 3 }
    ));
    let g = lock.acquire().unwrap();
    let seen = lock.inspect().unwrap();
    assert!(seen.is_held_by(g.token()));
    let LockState::Held { holder, nodes, ttl } = &seen.state else {
        panic!("{:?}", seen.state);
    };
    assert_eq!(*holder, Fingerprint::of(g.token()));
    assert_eq!(*nodes, 3);
    assert!(ttl.is_some_and(|t| t > Duration::from_secs(9)));
    assert_eq!(seen.fencing_counter(), g.fencing_token());
    let shown = format!("{seen:?}");
    assert!(!shown.contains(g.token()), "the token leaked: {shown}");
    // Another holder on one node, ours on two: still held by us; a dead node is reported.
    cluster.cmd(2, &["SET", "tok:see", "someone-else"]);
    cluster.kill(1);
    let seen = lock.inspect().unwrap();
    assert!(matches!(seen.nodes[1].holding, Holding::Failed(_)));
    assert!(
        matches!(seen.state, LockState::Unknown { answered: 2 }),
        "one of ours, one foreign, one dead: {:?}",
        seen.state
    );
    drop(g);
}

#[test]
fn a_cancelled_wait_ends_at_once_with_its_own_error() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).build().unwrap();
    let lock = f.create_lock("tok:cancel");
    let held = lock.acquire().unwrap();
    let stop = AtomicBool::new(false);
    // Already set: no round at all.
    let set = AtomicBool::new(true);
    assert!(matches!(
        lock.acquire_with(Wait::forever().cancel_on(&set)),
        Err(Error::Cancelled { .. })
    ));
    // A waiter that polls only every 10 s: a flag looked at only between its rounds would
    // end the wait up to 10 s late; the library looks at it at least every 20 ms.
    let slow = support::factory(&cluster)
        .retry_delay(SLOW_POLL)
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let waiter = slow.create_lock("tok:cancel");
    thread::scope(|s| {
        let waiting = s.spawn(|| {
            let r = waiter.acquire_with(Wait::forever().cancel_on(&stop));
            (Instant::now(), r)
        });
        cluster.wait_waiting("tok:cancel");
        let cancelled = Instant::now();
        stop.store(true, Ordering::Release);
        let (ended, r) = waiting.join().unwrap();
        let took = ended.saturating_duration_since(cancelled);
        eprintln!("[figures] a cancelled wait ended {took:?} after the flag was set");
        assert!(matches!(r, Err(Error::Cancelled { .. })), "{r:?}");
        // Generous for a loaded machine, and far below the 10 s poll.
        assert!(took < Duration::from_secs(2), "{took:?}");
    });
    // A deadline: Timeout, not Cancelled.
    let r = lock.acquire_with(Wait::until(Instant::now() + Duration::from_millis(100)));
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    held.release().unwrap();
}

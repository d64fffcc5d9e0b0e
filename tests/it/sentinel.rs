//! Sentinel-managed nodes over real processes: each group is a master, a replica and three
//! sentinels (`redis-server --sentinel`) on loopback. The lock works through a group, follows
//! its failover without rebuilding the factory, leaves a demoted master for the new one,
//! refuses a replica, and a factory of three groups keeps working while one fails over.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::sentinel::SentinelGroup;
use crate::support::{self, RedisCluster, deadline_loop};
use redmutex::{Error, RedLockFactory, SentinelNode};

/// Generous bound on a failover with 1 s down-after on a loaded machine (the sentinels may
/// need a second election after the 3 s failover timeout).
const FAILOVER_LIMIT: Duration = Duration::from_secs(90);

/// Generous for a loaded machine: a connection through Sentinel asks a sentinel first, then
/// checks the master's role.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// Waiters poll every 20 to 40 ms: gentler than the preset while a group fails over.
const RETRY: Duration = Duration::from_millis(20);

fn node(group: &SentinelGroup) -> SentinelNode {
    SentinelNode::new(group.name(), group.sentinel_addrs())
}

/// Takes and releases `key` once; true if it worked.
fn cycle(factory: &RedLockFactory, key: &str) -> bool {
    match factory.create_lock(key).try_acquire() {
        Ok(Some(g)) => g.release().is_ok(),
        _ => false,
    }
}

#[test]
fn lock_follows_a_failover_without_rebuilding_the_factory() {
    let group = SentinelGroup::start("solo");
    // The URL form.
    let factory = support::builder()
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .retry_delay(RETRY)
        .retry_jitter(RETRY)
        .node(group.url())
        .build()
        .unwrap();

    let g = factory.create_lock("k").acquire().unwrap();
    let master = group.master();
    assert_eq!(
        master.cmd(&["GET", "k"]),
        g.token(),
        "the key is on the master"
    );
    g.release().unwrap();
    assert_eq!(master.cmd(&["EXISTS", "k"]), "0");

    let old = group.kill_master();
    let killed = Instant::now();
    // While the group has no master the node is a failure, named without secrets.
    match factory.create_lock("k").try_acquire() {
        Err(Error::NoQuorum { failures, .. }) => {
            let name = failures[0].node();
            assert!(name.starts_with("sentinel:solo@127.0.0.1:"), "{name}");
        }
        Ok(Some(_)) => panic!("acquired with the only master dead"),
        other => panic!("unexpected {other:?}"),
    }

    let recovered = deadline_loop(FAILOVER_LIMIT, || cycle(&factory, "k"));
    let took = killed.elapsed();
    assert!(
        recovered,
        "no lock within {FAILOVER_LIMIT:?} of killing the master"
    );
    println!("sentinel: locks work again {took:?} after the master was killed");

    // The lock may work before every sentinel has the new configuration (the node asks the
    // next sentinel when one names the dead master).
    let (new, _) = group
        .wait_failover(old, FAILOVER_LIMIT)
        .expect("the sentinels agree on a new master");
    assert_ne!(new, old, "the sentinels promoted the replica");
    let g = factory.create_lock("k2").acquire().unwrap();
    let master = group.data_on(new).unwrap();
    assert_eq!(master.cmd(&["GET", "k2"]), g.token());
    drop(g);
}

#[test]
fn demoted_master_is_left_for_the_new_one_and_replicas_are_refused() {
    let group = SentinelGroup::start("swap");
    let factory = support::builder()
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .retry_delay(RETRY)
        .retry_jitter(RETRY)
        .sentinel_node(node(&group))
        .build()
        .unwrap();
    assert!(cycle(&factory, "warm"), "lock through the group");
    let (m, r) = (group.data(0), group.data(1));
    assert_eq!(group.master_port(), Some(m.port()));

    // Swap the roles behind the sentinels' back: the pooled connections to the old master stay
    // open (nobody kills them), and it now answers writes with READONLY.
    for s in 0..3 {
        let _ = group
            .sentinel(s)
            .try_cmd(&["SENTINEL", "REMOVE", group.name()]);
    }
    assert_eq!(r.cmd(&["REPLICAOF", "NO", "ONE"]), "OK");
    let r_port = r.port().to_string();
    assert_eq!(m.cmd(&["REPLICAOF", "127.0.0.1", &r_port]), "OK");
    // Stale sentinels still name the old master, which is a replica now.
    group.repoint(m.port());

    // The old connections meet READONLY and are retired; reconnections find a replica where
    // the sentinels say the master is, and refuse it as a connection error.
    let mut read_only = false;
    let refused = deadline_loop(Duration::from_secs(10), || {
        match factory.create_lock("k").try_acquire() {
            Err(e @ Error::NoQuorum { .. }) => {
                let text = e.to_string();
                read_only |= text.contains("ReadOnly") || text.contains("READONLY");
                text.contains("not a master")
            }
            other => panic!("a replica granted the lock: {other:?}"),
        }
    });
    // Without retiring the connections on READONLY the node would keep using them and never
    // reconnect; the READONLY itself may not show in an error (a background reconnection can
    // overwrite the node's last error first).
    assert!(refused, "a replica must be refused as a connection error");
    println!("sentinel: demoted master, READONLY reported: {read_only}");

    // The sentinels learn the truth: the node reconnects to the new master by itself.
    let start = Instant::now();
    group.repoint(r.port());
    assert!(deadline_loop(Duration::from_secs(20), || cycle(
        &factory, "k"
    )));
    println!(
        "sentinel: recovered {:?} after the sentinels were fixed",
        start.elapsed()
    );
    let g = factory.create_lock("k3").acquire().unwrap();
    assert_eq!(r.cmd(&["GET", "k3"]), g.token());
}

#[test]
fn three_groups_keep_the_lock_through_one_failover() {
    let groups: Vec<SentinelGroup> = std::thread::scope(|s| {
        let handles: Vec<_> = ["ga", "gb", "gc"]
            .into_iter()
            .map(|name| s.spawn(move || SentinelGroup::start(name)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // A 2 s TTL: a lock whose release could not be confirmed during the failover (see below)
    // is free again well within the other worker's 10 s wait.
    let factory = support::builder()
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .retry_delay(RETRY)
        .retry_jitter(RETRY)
        .ttl(Duration::from_secs(2))
        .sentinel_node(node(&groups[0]))
        .sentinel_node(node(&groups[1]))
        .node(groups[2].url())
        .build()
        .unwrap();
    assert_eq!(factory.quorum(), 2);
    assert!(cycle(&factory, "warm"));

    // Two threads take turns on one lock while group 0's master dies and is replaced: every
    // acquisition must succeed (two groups of three answer), with no overlap and no hang.
    let stop = AtomicBool::new(false);
    let inside = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let mut killed_at = None;
    let mut recovery = None;
    let slowest = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let lock = factory.create_lock("shared");
                    let mut slowest = Duration::ZERO;
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let g = lock
                            .acquire_timeout(Duration::from_secs(10))
                            .expect("the quorum of groups keeps the lock available");
                        assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                        std::thread::sleep(Duration::from_millis(2));
                        inside.store(false, Ordering::SeqCst);
                        match g.release() {
                            // Group 0's master died while we held the lock, and one of the
                            // other groups never had our key (a rival's key, whose release
                            // had not reached it yet, was there when we acquired): 1 yes, 1
                            // no, 1 failed cannot tell. The key expires with the TTL.
                            Ok(()) | Err(Error::NoQuorum { .. }) => {}
                            Err(e) => panic!("release: {e}"),
                        }
                        slowest = slowest.max(start.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    slowest
                })
            })
            .collect();

        std::thread::sleep(Duration::from_millis(300));
        let old = groups[0].kill_master();
        let t0 = Instant::now();
        killed_at = Some(t0);
        // Recovered when a lock taken now is on group 0's new master.
        let back = deadline_loop(FAILOVER_LIMIT, || {
            let Some(port) = groups[0].master_port().filter(|p| *p != old) else {
                return false;
            };
            let Ok(Some(g)) = factory.create_lock("probe").try_acquire() else {
                return false;
            };
            let on_new = groups[0]
                .data_on(port)
                .is_some_and(|n| n.try_cmd(&["GET", "probe"]).is_ok_and(|v| v == g.token()));
            drop(g);
            on_new
        });
        recovery = back.then(|| t0.elapsed());
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap_or_default()
    });
    let recovery = recovery.unwrap_or_else(|| {
        panic!(
            "group 0 did not come back within the limit; its first sentinel's log:\n{}",
            groups[0].sentinel(0).log()
        )
    });
    let total = killed_at.map(|t| t.elapsed()).unwrap_or_default();
    println!(
        "sentinel: 3 groups, group 0 failed over: node back after {recovery:?}; {} cycles in \
         {total:?}, slowest {slowest:?}",
        done.load(Ordering::Relaxed)
    );
    assert!(done.load(Ordering::Relaxed) > 0);
    assert!(
        slowest < Duration::from_secs(10),
        "slowest cycle {slowest:?}"
    );
}

#[test]
fn a_stopped_sentinel_costs_one_bounded_attempt_at_most() {
    let group = SentinelGroup::start("frozen");
    // The first sentinel asked is frozen: it accepts connections and never answers.
    group.sentinel(0).stop();
    let factory = support::builder()
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .sentinel_node(node(&group))
        .build()
        .unwrap();
    let mut slowest = Duration::ZERO;
    let worked = deadline_loop(Duration::from_secs(10), || {
        let start = Instant::now();
        let ok = cycle(&factory, "k");
        slowest = slowest.max(start.elapsed());
        ok
    });
    group.sentinel(0).cont();
    assert!(worked, "the other sentinels were not asked");
    println!("sentinel: first sentinel frozen; slowest attempt {slowest:?}");
    assert!(
        slowest < Duration::from_secs(5),
        "slowest attempt {slowest:?}"
    );
}

#[test]
fn plain_and_sentinel_nodes_mix() {
    let plain = RedisCluster::start(2);
    let group = SentinelGroup::start("mixed");
    let factory = support::builder()
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .retry_delay(RETRY)
        .retry_jitter(RETRY)
        .node(plain.url(0))
        .sentinel_node(node(&group).db(2))
        .node(plain.url(1))
        .build()
        .unwrap();
    let g = factory.create_lock("m").acquire().unwrap();
    assert_eq!(plain.cmd(0, &["GET", "m"]), g.token());
    assert_eq!(plain.cmd(1, &["GET", "m"]), g.token());
    // Database 2 on the group's master (a script may SELECT for itself).
    let in_db2 = "redis.call('SELECT', 2) return redis.call('GET', KEYS[1])";
    let master = group.master();
    assert_eq!(master.cmd(&["EVAL", in_db2, "1", "m"]), g.token());
    assert_eq!(master.cmd(&["EXISTS", "m"]), "0", "database 0 stays empty");
    g.release().unwrap();

    // Dead plain node: the other plain node and the group still make a quorum.
    plain.kill(0);
    assert!(deadline_loop(Duration::from_secs(10), || cycle(
        &factory, "m"
    )));
    // Waiting works, and the release wakes the waiter (the wake-up subscribes through the
    // sentinels too): it polls only every 5 s, so a prompt hand-over is a wake-up.
    let slow = support::builder()
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .retry_delay(Duration::from_secs(5))
        .retry_jitter(Duration::ZERO)
        .node(plain.url(0))
        .sentinel_node(node(&group).db(2))
        .node(plain.url(1))
        .build()
        .unwrap();
    let g = factory.create_lock("w").acquire().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let got = slow
                .create_lock("w")
                .acquire_timeout(Duration::from_secs(20));
            (Instant::now(), got)
        });
        // Its mark on the live plain node (node 0 is dead) says it is waiting.
        plain.wait_waiting("w");
        let released = Instant::now();
        g.release().unwrap();
        let (acquired, got) = waiter.join().unwrap();
        assert!(got.is_ok(), "{got:?}");
        let gap = acquired.saturating_duration_since(released);
        assert!(gap < Duration::from_secs(1), "hand-over took {gap:?}");
    });

    // Duplicate groups are refused, whatever the form.
    let twice = support::builder()
        .sentinel_node(node(&group))
        .node(group.url())
        .build()
        .unwrap_err();
    assert!(twice.to_string().contains("twice"), "{twice}");
}

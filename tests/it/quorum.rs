//! A round decides at the quorum (issue 21): it returns once the replies it has read settle
//! its outcome, not when the slowest node has answered. The tests put the nodes behind the
//! delay proxy, at different distances, except one on plain loopback, where the last reply is
//! read by the node's next round.
//!
//! What must hold besides the speed: a late reply is read and counted for its own command (the
//! node's statistics, and never as the reply of a later command on the same connection), and a
//! late "yes" to an attempt that lost is taken back.

use std::time::{Duration, Instant};

use crate::support::proxy::{Proxy, bulk, contains};
use crate::support::{RedisCluster, builder, deadline_loop};

/// Three nodes behind proxies that delay each direction by `one_way[i]`.
fn cluster_at(one_way: [Duration; 3]) -> (RedisCluster, Vec<Proxy>) {
    let cluster = RedisCluster::start(3);
    let proxies: Vec<Proxy> = (0..3)
        .map(|i| {
            let p = Proxy::start(cluster.port(i));
            p.set_latency(one_way[i]);
            p
        })
        .collect();
    (cluster, proxies)
}

const MS: Duration = Duration::from_millis(1);

/// Node `i`'s votes given, refused and failed so far.
fn votes(f: &redmutex::RedLockFactory, i: usize) -> (u64, u64, u64) {
    let s = &f.stats().nodes[i];
    (s.votes_given, s.votes_refused, s.votes_failed)
}

/// Runs `cycle` `warm_ups` times, then `cycles` times timed, and returns the timed cycles'
/// durations, sorted. Node 2 (the slow one) answers each of a cycle's two rounds, read late or
/// not; after each cycle, the count of its answers (given or refused, never failed) must reach the
/// rounds run so far within `read_within`: its late replies are read and counted, and their
/// connections are free again before the next cycle.
fn timed_cycles(
    f: &redmutex::RedLockFactory,
    (warm_ups, cycles): (u64, u64),
    read_within: Duration,
    mut cycle: impl FnMut(),
) -> Vec<Duration> {
    const ROUNDS_PER_CYCLE: u64 = 2;
    let all_read = |rounds: u64| {
        let answered = || {
            let (given, refused, _) = votes(f, 2);
            given + refused
        };
        deadline_loop(read_within, || answered() >= rounds)
            && answered() == rounds
            && votes(f, 2).2 == 0
    };
    for _ in 0..warm_ups {
        cycle();
    }
    let warm = ROUNDS_PER_CYCLE * warm_ups;
    assert!(all_read(warm), "node 2's votes: {:?}", votes(f, 2));
    let mut times = Vec::new();
    for n in 1..=cycles {
        let start = Instant::now();
        cycle();
        times.push(start.elapsed());
        // The slow node's two late replies (the acquire's and the release's) are read and
        // counted as its votes; neither as a failure.
        assert!(
            all_read(warm + ROUNDS_PER_CYCLE * n),
            "late replies not counted: {:?}",
            votes(f, 2)
        );
    }
    times.sort();
    times
}

/// With nodes at 0, 2 and 150 ms one way, an acquire + release cycle takes about two round
/// trips of the second-fastest node (the quorum's slowest), not two of the slowest: well under
/// one slowest round trip (300 ms), where waiting for every node took over 600 ms. The slowest
/// node's replies are still read, late, and counted in its statistics.
///
/// Between cycles the test waits for those late replies: until they are read, their
/// connections are not free for another round (a cycle every few ms against a 300 ms node would
/// need more connections than the pool holds, and a round then waits for one).
#[test]
fn the_cycle_follows_the_quorums_slowest_node() {
    let (cluster, proxies) = cluster_at([Duration::ZERO, MS * 2, MS * 150]);
    let f = builder()
        .nodes(proxies.iter().map(|p| p.url()))
        .io_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let lock = f.create_lock("quorum-cycle");
    // Warm-up: the round trips are learnt, and each pool holds a few connections. Node 2
    // answers every round (a yes, or a "not ours" to a release that overtook its acquisition
    // on another connection: the release is then owed to it again after the acquisition):
    // its answers' count says when they have all been read.
    let cycles = timed_cycles(&f, (3, 7), Duration::from_secs(10), || {
        let guard = lock.acquire().unwrap();
        guard.release().unwrap();
    });
    let p50 = cycles[cycles.len() / 2];
    assert!(
        p50 < MS * 300,
        "cycle p50 {p50:?} (all: {cycles:?}): the round waited for the slowest node"
    );
    // Nothing is left behind on the slow node, whatever order its commands ran in.
    assert!(
        deadline_loop(Duration::from_secs(10), || cluster
            .cmd(2, &["EXISTS", "quorum-cycle"])
            == "0"),
        "a grant was left on node 2"
    );
}

/// With nodes at 0, 0 and 100 ms one way and two connections per node, runs `warm_up` once,
/// then `cycle` (an acquire, an extend and a release) three times on one factory, and checks
/// that the slow node's statistics count each of its nine answers, none as a failure: a
/// connection whose replies a round left unread carries the next command only after they were
/// read, so no command is ever given another's reply. Returns the cluster, to look at what is
/// left.
fn each_late_reply_is_its_own_commands(
    warm_up: impl Fn(&redmutex::RedLockFactory),
    cycle: impl Fn(&redmutex::RedLockFactory),
) -> RedisCluster {
    let (cluster, proxies) = cluster_at([Duration::ZERO, Duration::ZERO, MS * 100]);
    let f = builder()
        .nodes(proxies.iter().map(|p| p.url()))
        .pool_size(2)
        .io_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Warm-up: the slow node's round trip is learnt (its two yes votes read).
    warm_up(&f);
    assert!(deadline_loop(Duration::from_secs(10), || votes(&f, 2).0 >= 2));
    let before = votes(&f, 2);
    for _ in 0..3 {
        cycle(&f);
    }
    let answered = || {
        let (given, refused, _) = votes(&f, 2);
        given + refused - before.0 - before.1
    };
    assert!(
        deadline_loop(Duration::from_secs(10), || answered() >= 9),
        "the slow node's replies: {before:?} -> {:?}",
        votes(&f, 2)
    );
    assert_eq!(answered(), 9, "{before:?} -> {:?}", votes(&f, 2));
    assert_eq!(votes(&f, 2).2, before.2, "a reply counted as a failure");
    cluster
}

/// A lock's rounds decided on the two fast nodes: with two connections per node, the
/// acquire's and the extend's go to the slow node's reader, and the release waits for one of
/// them, which then carries it. Each command gets its own reply (read as another's, an
/// acquire's "OK" or an extend's reply would fail a release or an extend, or count as a
/// failure), and the slow node's statistics count all nine answers.
#[test]
fn a_round_right_after_one_decided_early_gets_its_own_replies() {
    let lock = |f: &redmutex::RedLockFactory| f.create_lock("quorum-own-replies");
    each_late_reply_is_its_own_commands(
        |f| drop(lock(f).acquire().unwrap()),
        |f| {
            let guard = lock(f).acquire().unwrap();
            guard.extend(Duration::from_secs(20)).unwrap();
            guard.release().unwrap();
        },
    );
}

/// The lock is held elsewhere on the two fast nodes; the slow node is free, and the attempt's
/// `SET NX` reaches it only after the attempt has lost on the fast nodes and sent its
/// take-back (the proxy holds the `SET` for 1.5 s, not the release, which so arrives
/// first and finds nothing). The late grant must still be taken back, not left to block the
/// slow node for the whole TTL.
#[test]
fn a_late_yes_of_a_lost_attempt_is_taken_back() {
    let (cluster, proxies) = cluster_at([Duration::ZERO, Duration::ZERO, MS * 20]);
    let f = builder()
        .nodes(proxies.iter().map(|p| p.url()))
        .ttl(Duration::from_secs(30))
        .io_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let lock = f.create_lock("quorum-take-back");
    // Warm-up: round trips learnt (the slow node's is the longest). Its release may be read
    // late: wait for both of node 2's yes votes, so that the next one counted is the SET's.
    drop(lock.acquire().unwrap());
    assert!(deadline_loop(Duration::from_secs(10), || votes(&f, 2).0 >= 2));
    for i in 0..2 {
        assert_eq!(
            cluster.cmd(
                i,
                &["SET", "quorum-take-back", "someone-else", "PX", "30000"]
            ),
            "OK"
        );
    }
    proxies[2].delay_requests_if(|req| contains(req, b"\r\nNX\r\n"), MS * 1500);
    let given = votes(&f, 2).0;
    assert!(lock.try_acquire().unwrap().is_none(), "held on a quorum");
    // The late SET lands on node 2, answers yes (counted), and is deleted after it.
    assert!(
        deadline_loop(Duration::from_secs(10), || votes(&f, 2).0 > given),
        "the late yes was never read"
    );
    assert!(
        deadline_loop(Duration::from_secs(10), || cluster
            .cmd(2, &["EXISTS", "quorum-take-back"])
            == "0"),
        "the late grant was left on node 2: {}",
        cluster.cmd(2, &["GET", "quorum-take-back"])
    );
    proxies[2].clear_rules();
}

/// A late reply that never comes is the node's failure, as in a round: the round decided on
/// the fast nodes and returned well within the I/O timeout, and the slow node's reader, at
/// the round's deadline, counts a failed vote and marks the node down.
#[test]
fn a_late_reply_that_never_comes_marks_its_node_down() {
    let (_cluster, proxies) = cluster_at([Duration::ZERO, Duration::ZERO, MS * 20]);
    let io_timeout = Duration::from_millis(1500);
    let f = builder()
        .nodes(proxies.iter().map(|p| p.url()))
        .io_timeout(io_timeout)
        .build()
        .unwrap();
    let lock = f.create_lock("quorum-silent");
    // Warm-up: node 2's round trip is learnt (its two yes votes read).
    drop(lock.acquire().unwrap());
    assert!(deadline_loop(Duration::from_secs(10), || votes(&f, 2).0 >= 2));
    assert!(f.stats().nodes[2].up);
    proxies[2].blackhole();
    let start = Instant::now();
    let guard = lock.acquire().unwrap();
    let took = start.elapsed();
    assert!(
        took < io_timeout,
        "the acquire waited for the silent node: {took:?}"
    );
    assert!(
        deadline_loop(Duration::from_secs(10), || !f.stats().nodes[2].up),
        "the silent node is still up: {:?}",
        f.stats().nodes[2]
    );
    assert!(votes(&f, 2).2 >= 1, "no failed vote: {:?}", votes(&f, 2));
    proxies[2].heal();
    guard.release().unwrap();
}

// The semaphore: its round decides once one slot has a quorum of grants, or once no slot can
// reach one whatever the unread nodes answer.

/// The keys a semaphore `name` of `permits` leaves on node `i` (its slots and its name key).
fn semaphore_keys(cluster: &RedisCluster, i: usize, name: &str, permits: u32) -> Vec<String> {
    let mut keys: Vec<String> = (0..permits)
        .map(|slot| format!("{name}:redmutex:permit:{slot}"))
        .collect();
    keys.push(name.to_owned());
    keys.into_iter()
        .filter(|k| cluster.cmd(i, &["EXISTS", k]) == "1")
        .collect()
}

/// With nodes at 0, 2 and 250 ms one way, a permit's acquire + release cycle takes about two
/// round trips of the second-fastest node (the quorum's slowest), not the slowest node's
/// 500 ms: well under half of it, where reading every reply took over 500 ms for the acquire
/// alone. The slow node grants the winning slot late, after the lease was released (the
/// release reached it first, on another connection): that grant is released once its reply
/// has been read, and the node's late replies count in its statistics.
#[test]
fn a_semaphore_cycle_follows_the_quorums_slowest_node() {
    let (cluster, proxies) = cluster_at([Duration::ZERO, MS * 2, MS * 250]);
    let f = builder()
        .nodes(proxies.iter().map(|p| p.url()))
        .io_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let sem = f.create_semaphore("quorum-sem-cycle", 2);
    // Node 2 answers each round (the acquire and the release, read late or not): its answers'
    // count says when they have all been read (the warm-up also learns the round trips).
    let cycles = timed_cycles(&f, (2, 5), Duration::from_secs(20), || {
        let permit = sem.acquire().unwrap();
        permit.release().unwrap();
    });
    let p50 = cycles[cycles.len() / 2];
    assert!(
        p50 < MS * 250,
        "cycle p50 {p50:?} (all: {cycles:?}): the round waited for the slowest node"
    );
    // Nothing is left behind on the slow node, whatever order its commands ran in.
    assert!(
        deadline_loop(Duration::from_secs(10), || semaphore_keys(
            &cluster,
            2,
            "quorum-sem-cycle",
            2
        )
        .is_empty()),
        "a grant was left on node 2: {:?}",
        semaphore_keys(&cluster, 2, "quorum-sem-cycle", 2)
    );
}

/// The same for a semaphore's rounds (a grant's `{1, slot, taken}` read as another command's
/// reply would fail an extend or a release, or count as a failure); nothing is left on the
/// slow node once its replies are read.
#[test]
fn a_round_right_after_a_semaphore_round_decided_early_gets_its_own_replies() {
    let name = "quorum-sem-own-replies";
    let sem = |f: &redmutex::RedLockFactory| f.create_semaphore(name, 3);
    let cluster = each_late_reply_is_its_own_commands(
        |f| drop(sem(f).acquire().unwrap()),
        |f| {
            let permit = sem(f).acquire().unwrap();
            permit.extend(Duration::from_secs(20)).unwrap();
            permit.release().unwrap();
        },
    );
    assert!(
        deadline_loop(Duration::from_secs(10), || semaphore_keys(
            &cluster, 2, name, 3
        )
        .is_empty()),
        "left on node 2: {:?}",
        semaphore_keys(&cluster, 2, name, 3)
    );
}

/// The semaphore's one slot is held elsewhere on the two fast nodes; the slow node is free,
/// and the attempt's acquire script reaches it only after the attempt has lost on the fast
/// nodes (the proxy holds the script, recognised by its TTL argument, for 1.5 s). The attempt
/// returns without waiting for it, and the late grant is taken back once its reply is read,
/// not left to block the slow node's slot for the TTL.
#[test]
fn a_late_grant_of_a_lost_permit_attempt_is_taken_back() {
    let (cluster, proxies) = cluster_at([Duration::ZERO, Duration::ZERO, MS * 20]);
    let f = builder()
        .nodes(proxies.iter().map(|p| p.url()))
        .ttl(Duration::from_secs(30))
        .io_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let name = "quorum-sem-take-back";
    let sem = f.create_semaphore(name, 1);
    // Warm-up: round trips learnt; both of node 2's yes votes read.
    drop(sem.acquire().unwrap());
    assert!(deadline_loop(Duration::from_secs(10), || votes(&f, 2).0 >= 2));
    let slot = format!("{name}:redmutex:permit:0");
    for i in 0..2 {
        assert_eq!(
            cluster.cmd(i, &["SET", &slot, "someone-else", "PX", "30000"]),
            "OK"
        );
        assert_eq!(
            cluster.cmd(i, &["SET", name, "redmutex:semaphore:1:1", "PX", "30000"]),
            "OK"
        );
    }
    let hold = MS * 1500;
    proxies[2].delay_requests_if(|req| contains(req, &bulk("30000")), hold);
    let given = votes(&f, 2).0;
    let start = Instant::now();
    assert!(sem.try_acquire().unwrap().is_none(), "held on a quorum");
    let took = start.elapsed();
    assert!(
        took < hold,
        "the attempt waited for the slow node: {took:?}"
    );
    // The late grant lands on node 2, answers yes (counted), and is taken back after it.
    assert!(
        deadline_loop(Duration::from_secs(10), || votes(&f, 2).0 > given),
        "the late grant was never read"
    );
    assert!(
        deadline_loop(Duration::from_secs(10), || semaphore_keys(
            &cluster, 2, name, 1
        )
        .is_empty()),
        "the late grant was left on node 2: {:?}",
        semaphore_keys(&cluster, 2, name, 1)
    );
    proxies[2].clear_rules();
}

/// A won attempt's slow node grants another slot than the winning one (its winning slot is
/// taken there): the two fast nodes grant slot 0 (slot 1 is taken on them), and the round
/// decides on them; node 2, where slot 0 is taken, grants slot 1 late. That grant is taken
/// back once its reply is read, while the permit on slot 0 is held; the permit's release then
/// leaves nothing of ours on any node.
#[test]
fn a_late_grant_of_another_slot_than_the_winning_one_is_taken_back() {
    let (cluster, proxies) = cluster_at([Duration::ZERO, Duration::ZERO, MS * 300]);
    let f = builder()
        .nodes(proxies.iter().map(|p| p.url()))
        .ttl(Duration::from_secs(30))
        .io_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let name = "quorum-sem-stray";
    let sem = f.create_semaphore(name, 2);
    // Warm-up: round trips learnt; both of node 2's yes votes read.
    drop(sem.acquire().unwrap());
    assert!(deadline_loop(Duration::from_secs(10), || votes(&f, 2).0 >= 2));
    let slot = |s: u32| format!("{name}:redmutex:permit:{s}");
    for (i, taken) in [(0, 1), (1, 1), (2, 0)] {
        assert_eq!(
            cluster.cmd(i, &["SET", &slot(taken), "someone-else", "PX", "30000"]),
            "OK"
        );
    }
    let refused = votes(&f, 2).1;
    let start = Instant::now();
    let permit = sem.acquire().unwrap();
    let took = start.elapsed();
    assert_eq!(permit.slot(), 0);
    assert!(
        took < MS * 600,
        "the attempt waited for the slow node: {took:?}"
    );
    // Node 2's late grant of slot 1 is read (counted as a refusal of the winning slot, as the
    // round counts a grant of another slot), then taken back; slot 0 there is still the other
    // holder's.
    assert!(
        deadline_loop(Duration::from_secs(10), || votes(&f, 2).1 > refused),
        "the late grant was never read: {:?}",
        votes(&f, 2)
    );
    assert!(
        deadline_loop(Duration::from_secs(10), || cluster
            .cmd(2, &["EXISTS", &slot(1)])
            == "0"),
        "the late grant of slot 1 was left on node 2: {}",
        cluster.cmd(2, &["GET", &slot(1)])
    );
    assert_eq!(cluster.cmd(2, &["GET", &slot(0)]), "someone-else");
    for i in 0..2 {
        assert_eq!(cluster.cmd(i, &["GET", &slot(0)]), permit.token());
    }
    permit.release().unwrap();
    for i in 0..3 {
        assert!(
            deadline_loop(Duration::from_secs(10), || {
                (0..2).all(|s| {
                    cluster.cmd(i, &["GET", &slot(s)]) == "someone-else"
                        || cluster.cmd(i, &["EXISTS", &slot(s)]) == "0"
                }) && cluster.cmd(i, &["EXISTS", name]) == "0"
            }),
            "left on node {i}: {:?}",
            semaphore_keys(&cluster, i, name, 2)
        );
    }
}

/// On loopback too, a round decides at the quorum: over 300 cycles on three plain nodes, some
/// rounds are decided before a node's replies were read (`late_replies`), whose connection is
/// parked until the node's next round reads them. Once the cycles stop, every reply has been
/// read and counted all the same (the last ones by the nodes' readers: no round comes): each
/// node answered both rounds of every cycle, none as a failure, and no key is left. With a
/// pool of one connection per node too, where the next round must read the parked one.
#[test]
fn on_loopback_a_round_decides_at_the_quorum_and_reads_every_late_reply() {
    const CYCLES: u64 = 300;
    let cluster = RedisCluster::start(3);
    // Client connections on node `i`, not counting the one asking.
    let clients = |i: usize| cluster.cmd(i, &["CLIENT", "LIST"]).lines().count() - 1;
    let before: Vec<usize> = (0..3).map(clients).collect();
    // Every connection the factory opened is closed again, within a bound.
    let all_closed = |what: &str| {
        assert!(
            deadline_loop(Duration::from_secs(10), || (0..3)
                .map(clients)
                .eq(before.iter().copied())),
            "{what}: connections left open: {:?}, before {before:?}",
            (0..3).map(clients).collect::<Vec<_>>()
        );
    };
    for pool in [1, 4] {
        let f = builder()
            .nodes(cluster.urls())
            .pool_size(pool)
            .build()
            .unwrap();
        let name = format!("quorum-loopback-{pool}");
        let lock = f.create_lock(name.as_str());
        for _ in 0..CYCLES {
            let guard = lock.acquire().unwrap();
            guard.release().unwrap();
        }
        let answered = |i: usize| {
            let (given, refused, _) = votes(&f, i);
            given + refused
        };
        assert!(
            deadline_loop(Duration::from_secs(10), || (0..3)
                .all(|i| answered(i) >= 2 * CYCLES)),
            "pool {pool}: late replies never read: {:?}",
            (0..3).map(|i| votes(&f, i)).collect::<Vec<_>>()
        );
        for i in 0..3 {
            assert_eq!(
                answered(i),
                2 * CYCLES,
                "pool {pool}, node {i}: {:?}",
                votes(&f, i)
            );
            assert_eq!(votes(&f, i).2, 0, "pool {pool}, node {i}: a failed vote");
            assert_eq!(
                cluster.cmd(i, &["EXISTS", &name]),
                "0",
                "pool {pool}: key left on node {i}"
            );
        }
        let late: u64 = f.stats().nodes.iter().map(|n| n.late_replies).sum();
        assert!(late > 0, "pool {pool}: every round waited for every node");
        // Dropping the factory (and the lock, which shares its nodes) closes every
        // connection, parked ones included.
        drop(lock);
        drop(f);
        all_closed(&format!("pool {pool}"));
    }
    // Dropped right after its last round, with connections still parked: its nodes' readers
    // read them, and every connection closes all the same.
    let f = builder().nodes(cluster.urls()).build().unwrap();
    let lock = f.create_lock("quorum-loopback-drop");
    for _ in 0..50 {
        lock.acquire().unwrap().release().unwrap();
    }
    drop(lock);
    drop(f);
    all_closed("dropped right after its last round");
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["EXISTS", "quorum-loopback-drop"]), "0");
    }
}

/// A busy attempt on loopback is decided by the two nodes that said no, and leaves the third
/// unread: it sends that node no take-back (the late reply is a "no" too), so 300 attempts at
/// a lock held elsewhere cost no script run on any node; a late grant would still be taken
/// back (`a_late_yes_of_a_lost_attempt_is_taken_back`).
#[test]
fn a_busy_attempt_sends_no_take_back_to_the_node_it_left_unread() {
    let cluster = RedisCluster::start(3);
    for i in 0..3 {
        assert_eq!(
            cluster.cmd(i, &["SET", "quorum-busy", "someone-else"]),
            "OK"
        );
    }
    let f = builder().nodes(cluster.urls()).build().unwrap();
    let lock = f.create_lock("quorum-busy");
    let scripts = || {
        (0..3)
            .map(|i| cluster.calls(i, "evalsha") + cluster.calls(i, "eval"))
            .sum::<u64>()
    };
    let before = scripts();
    for _ in 0..300 {
        assert!(lock.try_acquire().unwrap().is_none());
    }
    let answered = |i: usize| {
        let (given, refused, _) = votes(&f, i);
        given + refused
    };
    assert!(
        deadline_loop(Duration::from_secs(10), || (0..3)
            .all(|i| answered(i) >= 300)),
        "late replies never read"
    );
    let late: u64 = f.stats().nodes.iter().map(|n| n.late_replies).sum();
    assert!(late > 0, "every attempt waited for every node");
    assert_eq!(
        scripts() - before,
        0,
        "take-backs were sent ({late} late replies)"
    );
}

//! Restart quarantine (issue 16): a node restarted empty does not count as a "yes" for an
//! acquisition until every lease it may have forgotten has expired.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, AOF_ARGS, RedisCluster, deadline_loop};
use redmutex::event::NodeWarningEvent;
use redmutex::{Error, HandleEvent, NodeErrorKind, NodeWarning, QuarantineCause};

/// The scenario's lease, as in the issue: 4 s.
const TTL: Duration = Duration::from_secs(4);

/// The tests' preset with the quarantine on (it is off in `support::builder`), bounded by the
/// scenario's TTL: a node restarted without durable persistence sits out `TTL` + drift.
fn quarantined(cluster: &RedisCluster) -> redmutex::RedLockFactoryBuilder {
    support::factory(cluster)
        .restart_quarantine(true)
        .longest_ttl(TTL)
}

/// Waits until every node of `cluster` has been up for longer than `age` (by its own
/// `uptime_in_seconds`, which counts whole seconds).
fn wait_until_older_than(cluster: &RedisCluster, age: Duration) {
    let uptime = |i: usize| -> u64 {
        let info = cluster.cmd(i, &["INFO", "server"]);
        info.lines()
            .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
            .and_then(|s| s.trim().parse().ok())
            .unwrap()
    };
    assert!(
        deadline_loop(age + Duration::from_secs(20), || {
            (0..cluster.len()).all(|i| Duration::from_secs(uptime(i)) > age)
        }),
        "the nodes never got older than {age:?}"
    );
}

/// The issue's scenario, exactly: 3 nodes without persistence, all up for longer than the TTL.
/// While A takes the lock, node 2 refuses writes (`min-replicas-to-write`), so A holds nodes 0
/// and 1. Node 1 is killed and restarted empty at once. B, with the same settings, asks every
/// 50 ms while A's guard is valid: it must never get the lock (before the quarantine, it got it
/// on every try). Once A's lease has run out, B gets the lock within the TTL plus a short bound.
#[test]
fn issue_16_an_empty_restart_at_once_grants_no_second_holder() {
    let cluster = RedisCluster::start(3);
    let settings = || quarantined(&cluster).ttl(TTL);
    wait_until_older_than(&cluster, TTL + Duration::from_secs(1));
    let a = settings().build().unwrap();
    let b = settings().build().unwrap();

    // Node 2 refuses writes while A takes the lock.
    cluster.cmd(2, &["CONFIG", "SET", "min-replicas-to-write", "1"]);
    let guard_a = a
        .create_lock("q:issue")
        .try_acquire()
        .unwrap()
        .expect("nodes 0 and 1 are a quorum");
    let a_expiry = Instant::now() + guard_a.validity();
    cluster.cmd(2, &["CONFIG", "SET", "min-replicas-to-write", "0"]);
    assert_eq!(cluster.cmd(1, &["GET", "q:issue"]), guard_a.token());
    // Node 1 crashes and comes back at once, empty.
    cluster.restart(1);
    assert_eq!(cluster.cmd(1, &["EXISTS", "q:issue"]), "0");

    let lock_b = b.create_lock("q:issue");
    let (mut tries, mut granted) = (0, 0);
    while guard_a.is_valid() {
        tries += 1;
        if let Ok(Some(g)) = lock_b.try_acquire() {
            granted += 1;
            assert!(guard_a.is_valid() || Instant::now() >= a_expiry);
            g.release().ok();
        }
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("[figures] issue_16: B granted on {granted} of {tries} tries while A was valid");
    assert!(tries > 10, "too few tries: {tries}");
    assert_eq!(granted, 0, "a second holder while A's guard was valid");
    // It was the quarantine that refused B: node 1's yes votes did not count.
    let node1 = &b.stats().nodes[1];
    assert!(node1.votes_discounted > 0, "{node1:?}");
    assert!(
        node1.quarantine.is_some() && node1.durable == Some(false),
        "{node1:?}"
    );

    // A's lease has run out: B gets the lock within the TTL plus a short bound.
    let bound = TTL + Duration::from_secs(2);
    let mut guard_b = None;
    assert!(
        deadline_loop(bound, || {
            guard_b = lock_b.try_acquire().ok().flatten();
            guard_b.is_some()
        }),
        "B did not get the lock within {bound:?} after A's lease ran out"
    );
    eprintln!(
        "[figures] issue_16: B got the lock {:?} after A's lease ran out",
        Instant::now().saturating_duration_since(a_expiry)
    );
    drop(guard_a);
}

/// Holds the writes of node `i` back (`min-replicas-to-write`): it answers every write with an
/// error, a failed vote.
fn refuse_writes(cluster: &RedisCluster, i: usize, refuse: bool) {
    let n = if refuse { "1" } else { "0" };
    cluster.cmd(i, &["CONFIG", "SET", "min-replicas-to-write", n]);
}

/// An event handler that keeps every node warning.
#[derive(Default)]
struct Warnings(Mutex<Vec<(usize, NodeWarning)>>);

impl HandleEvent for Warnings {
    fn on_node_warning(&self, e: &NodeWarningEvent<'_>) {
        self.0.lock().unwrap().push((e.index, e.warning.clone()));
    }
}

impl Warnings {
    fn seen(&self) -> Vec<(usize, NodeWarning)> {
        self.0.lock().unwrap().clone()
    }
}

/// A fresh cluster of durable nodes (AOF, `appendfsync always`, which the server says through
/// `INFO persistence` and `CONFIG GET`) grants the lock at once, with the default longest TTL
/// of 60 s; the same cluster without persistence does not, and says why.
#[test]
fn a_fresh_cluster_of_durable_nodes_grants_at_once_and_a_fresh_empty_one_says_why_not() {
    let durable = RedisCluster::start_with_args(3, AOF_ARGS);
    let f = support::factory(&durable)
        .restart_quarantine(true)
        .build()
        .unwrap();
    let g = f
        .create_lock("q:fresh")
        .try_acquire()
        .unwrap()
        .expect("durable nodes vote at once");
    g.release().unwrap();
    assert!(
        f.stats()
            .nodes
            .iter()
            .all(|n| n.durable == Some(true) && n.quarantine.is_none())
    );

    let empty = RedisCluster::start(3);
    let f = support::factory(&empty)
        .restart_quarantine(true)
        .max_retries(0)
        .build()
        .unwrap();
    let e = f.create_lock("q:fresh").try_acquire().unwrap_err();
    assert!(matches!(e, Error::NoQuorum { .. }), "{e:?}");
    let quarantined: Vec<_> = e
        .node_errors()
        .iter()
        .filter(|n| n.is_quarantined())
        .collect();
    assert_eq!(quarantined.len(), 3, "{e}");
    assert_eq!(quarantined[0].kind(), NodeErrorKind::Quarantined);
    let message = e.to_string();
    assert!(
        message.contains("quarantine") && message.contains("longest_ttl"),
        "{message}"
    );
    let stats = f.stats();
    for n in &stats.nodes {
        let left = n
            .quarantine
            .expect("a fresh node without persistence is quarantined");
        assert!(
            left > Duration::from_secs(55) && left <= Duration::from_secs(61),
            "{n:?}"
        );
        assert_eq!(n.quarantine_cause, Some(QuarantineCause::Young));
        assert!(n.votes_discounted >= 1 && n.votes_given >= 1, "{n:?}");
    }
    // The failed round took back what the quarantined nodes granted.
    assert_eq!(empty.nodes_with("q:fresh"), 0);
}

/// A durable node killed and restarted at once keeps the lock key and votes at once: with
/// node 0 refusing writes, a second client needs node 1 (just restarted) and node 2, and gets
/// the lock as soon as the holder releases it.
#[test]
fn a_durable_node_restarted_at_once_keeps_its_key_and_votes_at_once() {
    let cluster = RedisCluster::start_with_args(3, AOF_ARGS);
    let a = support::factory(&cluster)
        .restart_quarantine(true)
        .build()
        .unwrap();
    let b = support::factory(&cluster)
        .restart_quarantine(true)
        .build()
        .unwrap();
    let guard = a
        .create_lock("q:durable")
        .try_acquire()
        .unwrap()
        .expect("free");
    cluster.restart(1);
    assert_eq!(cluster.cmd(1, &["GET", "q:durable"]), guard.token());
    let lock_b = b.create_lock("q:durable");
    // Held: refused (after B's pool reconnects to the restarted node), never granted.
    assert!(deadline_loop(Duration::from_secs(10), || {
        matches!(lock_b.try_acquire(), Ok(None))
    }));
    guard.release().unwrap_or_else(|e| panic!("{e}"));
    // Now only node 1 (restarted seconds ago) and node 2 take writes: B's grant needs node 1.
    refuse_writes(&cluster, 0, true);
    let mut got = None;
    assert!(
        deadline_loop(Duration::from_secs(10), || {
            got = lock_b.try_acquire().ok().flatten();
            got.is_some()
        }),
        "the restarted durable node did not vote: {:?}",
        b.stats().nodes[1]
    );
    let node1 = &b.stats().nodes[1];
    assert_eq!(node1.durable, Some(true), "{node1:?}");
    assert!(
        node1.quarantine.is_none() && node1.votes_discounted == 0,
        "{node1:?}"
    );
    refuse_writes(&cluster, 0, false);
}

/// A restarted node's quarantine ends at its start + the longest TTL + drift (its uptime counts
/// whole seconds, so up to a second later), not before: with node 0 refusing writes, the lock
/// can only be had with node 1's vote.
#[test]
fn the_quarantine_ends_when_it_should() {
    let longest = Duration::from_secs(2);
    let cluster = RedisCluster::start(3);
    let warnings = Arc::new(Warnings::default());
    let f = support::factory(&cluster)
        .restart_quarantine(true)
        .longest_ttl(longest)
        .ttl(longest)
        .max_retries(0)
        .event_handler(Arc::clone(&warnings))
        .build()
        .unwrap();
    // Out of the fresh cluster's quarantine first.
    let lock = f.create_lock("q:ends");
    assert!(deadline_loop(Duration::from_secs(10), || {
        lock.try_acquire().ok().flatten().is_some()
    }));
    refuse_writes(&cluster, 0, true);
    let node1_port = format!(":{}", cluster.port(1));
    let restarted = Instant::now();
    cluster.restart(1);
    let up = Instant::now();
    // Until start + longest TTL + drift, node 1's yes does not count.
    let mut first = None;
    while first.is_none() {
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "the quarantine never ended"
        );
        match lock.try_acquire() {
            Ok(Some(g)) => {
                first = Some(restarted.elapsed());
                drop(g);
            }
            Ok(None) => panic!("nobody holds the lock"),
            // Refused for node 1: quarantined (or, at first, its pooled connection found dead).
            Err(e) => assert!(
                e.node_errors()
                    .iter()
                    .any(|n| n.node().ends_with(&node1_port)),
                "{e}"
            ),
        }
        thread::sleep(Duration::from_millis(20));
    }
    let first = first.unwrap();
    let drift = longest.mul_f64(0.01) + Duration::from_millis(2);
    eprintln!(
        "[figures] quarantine: first grant {first:?} after the restart (longest TTL {longest:?})"
    );
    // Not before the node's start + longest + drift (it started after `restarted`, and up to
    // `up - restarted` later)...
    assert!(first >= longest + drift, "granted after {first:?}");
    // ...and not much later: the uptime's whole seconds, counted a second younger, make the
    // estimate up to 2 s late, plus a loaded machine's slack.
    assert!(
        first
            <= (up - restarted) + longest + drift + Duration::from_secs(2) + Duration::from_secs(2),
        "granted only after {first:?}"
    );
    let node1 = &f.stats().nodes[1];
    assert!(
        node1.quarantine.is_none() && node1.votes_discounted > 0,
        "{node1:?}"
    );
    assert_eq!((node1.restarts, node1.quarantines), (1, 2), "{node1:?}");
    // The restart was reported as an event.
    assert!(
        deadline_loop(Duration::from_secs(5), || {
            warnings.seen().iter().any(|(i, w)| {
                *i == 1
                    && matches!(
                        w,
                        NodeWarning::Quarantined {
                            cause: QuarantineCause::Restarted,
                            ..
                        }
                    )
            })
        }),
        "{:?}",
        warnings.seen()
    );
    refuse_writes(&cluster, 0, false);
}

/// A node with `maxmemory` and `allkeys-lru` can evict a held lock: flagged in its stats, with
/// an event and a warning in the log, when the factory connects.
#[test]
fn a_node_that_evicts_keys_is_flagged() {
    let _logs = support::logs::capture();
    let cluster = RedisCluster::start(3);
    cluster.cmd(2, &["CONFIG", "SET", "maxmemory", "100mb"]);
    cluster.cmd(2, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let warnings = Arc::new(Warnings::default());
    let f = support::factory(&cluster)
        .event_handler(Arc::clone(&warnings))
        .build()
        .unwrap();
    f.create_lock("q:evicts")
        .try_acquire()
        .unwrap()
        .unwrap()
        .release()
        .unwrap();
    let stats = f.stats();
    assert_eq!(stats.nodes[2].evicts.as_deref(), Some("allkeys-lru"));
    assert_eq!(stats.nodes[0].evicts, None);
    assert!(
        deadline_loop(Duration::from_secs(5), || {
            warnings.seen().iter().any(|(i, w)| {
            *i == 2 && matches!(w, NodeWarning::Evicts { policy, maxmemory } if policy == "allkeys-lru" && *maxmemory == 100 << 20)
        })
        }),
        "{:?}",
        warnings.seen()
    );
    let port = cluster.port(2).to_string();
    assert!(
        support::logs::records()
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains(&port) && l.contains("allkeys-lru")),
        "no warning logged"
    );
}

/// Every kind of acquisition counts a quarantined node's yes as no yes: the issue's scenario
/// for a semaphore permit, a read lock, a write lock and a multi-lock.
#[test]
fn every_kind_of_acquisition_ignores_a_quarantined_yes() {
    let cluster = RedisCluster::start(3);
    let settings = || quarantined(&cluster).ttl(TTL).max_retries(0);
    wait_until_older_than(&cluster, TTL + Duration::from_secs(1));
    let a = settings().build().unwrap();
    let b = settings().build().unwrap();
    // A holds one of each on nodes 0 and 1.
    refuse_writes(&cluster, 2, true);
    let permit = a
        .create_semaphore("q:sem", 1)
        .try_acquire()
        .unwrap()
        .expect("free");
    let writer = a.create_rwlock("q:rw").try_write().unwrap().expect("free");
    let reader = a.create_rwlock("q:ro").try_read().unwrap().expect("free");
    let multi = a
        .create_multi_lock(["q:m1", "q:m2"])
        .try_acquire()
        .unwrap()
        .expect("free");
    refuse_writes(&cluster, 2, false);
    cluster.restart(1);
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut rounds = 0;
    while Instant::now() < deadline {
        rounds += 1;
        assert!(
            b.create_semaphore("q:sem", 1)
                .try_acquire()
                .ok()
                .flatten()
                .is_none()
        );
        assert!(b.create_rwlock("q:rw").try_write().ok().flatten().is_none());
        assert!(b.create_rwlock("q:rw").try_read().ok().flatten().is_none());
        assert!(b.create_rwlock("q:ro").try_write().ok().flatten().is_none());
        assert!(
            b.create_multi_lock(["q:m2", "q:m1"])
                .try_acquire()
                .ok()
                .flatten()
                .is_none()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(permit.is_valid() && writer.is_valid() && reader.is_valid() && multi.is_valid());
    let node1 = &b.stats().nodes[1];
    assert!(node1.votes_discounted >= rounds, "{node1:?}");
    // Today's code, for comparison: the same B with the quarantine off gets them all.
    let off = support::factory(&cluster).ttl(TTL).build().unwrap();
    let taken = deadline_loop(Duration::from_secs(2), || {
        off.create_semaphore("q:sem", 1)
            .try_acquire()
            .ok()
            .flatten()
            .is_some()
    });
    eprintln!("[figures] quarantine off: a second permit holder: {taken}");
    assert!(
        taken,
        "without the quarantine the empty restart hands out a second permit"
    );
}

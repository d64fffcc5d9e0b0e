//! The semaphore on healthy nodes: at most `permits` holders, each on its own slot; wake-up
//! with the freed slot; one count per name; exclusion with a lock of the same name; permits
//! that expire like leases; fairness; and convergence when the nodes disagree. (Fault runs with
//! the history checker are in `faults::synchronizers`.)

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster, deadline_loop};
use redmutex::{Error, LossReason, MAX_PERMITS, SemaphorePermit};

fn slot_key(name: &str, slot: u32) -> String {
    format!("{name}:redmutex:permit:{slot}")
}

#[test]
fn permits_are_granted_up_to_the_count_each_on_its_own_slot() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let sem = factory.create_semaphore("sem:basic", 3);
    assert_eq!((sem.resource(), sem.permits()), ("sem:basic", 3));
    let permits: Vec<SemaphorePermit> = (0..3)
        .map(|_| sem.try_acquire().unwrap().expect("a free permit"))
        .collect();
    let slots: HashSet<u32> = permits.iter().map(SemaphorePermit::slot).collect();
    assert_eq!(slots.len(), 3, "two permits on one slot: {slots:?}");
    for p in &permits {
        assert!(p.is_valid() && p.validity() > Duration::from_secs(9));
        assert_eq!(p.resource(), "sem:basic");
        // The slot is an ordinary lock key, held on every node with the token.
        assert_eq!(
            cluster.holders(&slot_key("sem:basic", p.slot()), p.token()),
            3
        );
    }
    // The name key says the count, and how many are held.
    assert_eq!(
        cluster.holders("sem:basic", "redmutex:semaphore:3:3"),
        3,
        "name key"
    );

    // Full: no fourth holder, and the failed attempt left nothing behind.
    assert!(sem.try_acquire().unwrap().is_none());
    assert!(matches!(
        sem.acquire_timeout(Duration::from_millis(200)),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(cluster.holders("sem:basic", "redmutex:semaphore:3:3"), 3);

    // A release frees exactly its slot, which the next holder gets.
    let mut permits = permits.into_iter();
    let first = permits.next().unwrap();
    let freed = first.slot();
    first.release().unwrap();
    let next = sem.try_acquire().unwrap().expect("the freed permit");
    assert_eq!(next.slot(), freed);
    drop(next);
    for p in permits {
        p.release().unwrap();
    }
    // The last release takes the name key with it.
    assert_eq!(cluster.all_keys(), Vec::<String>::new());
}

#[test]
fn a_release_wakes_a_waiter_which_takes_the_freed_slot() {
    let cluster = RedisCluster::start(3);
    let holder = support::factory(&cluster).build().unwrap();
    // Waiters that would poll only every 5 s: a prompt hand-over is a wake-up.
    let waiter = support::factory(&cluster)
        .retry_delay(Duration::from_secs(5))
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let sem = holder.create_semaphore("sem:wake", 2);
    for round in 0..4 {
        let mut held: Vec<SemaphorePermit> = (0..2).map(|_| sem.acquire().unwrap()).collect();
        // The last round's waiter left its mark behind.
        cluster.clear_waiting("sem:wake");
        let waiting = waiter.create_semaphore("sem:wake", 2);
        let handle = thread::spawn(move || {
            let p = waiting.acquire_timeout(Duration::from_secs(20)).unwrap();
            (Instant::now(), p)
        });
        // The waiter found every slot taken and subscribed to the name's releases.
        cluster.wait_waiting("sem:wake");
        let freed = held.remove(round % 2);
        let slot = freed.slot();
        let released = Instant::now();
        freed.release().unwrap();
        let (acquired, p) = handle.join().unwrap();
        let gap = acquired.saturating_duration_since(released);
        assert!(gap < Duration::from_secs(2), "round {round}: {gap:?}");
        assert_eq!(p.slot(), slot, "round {round}");
        p.release().unwrap();
        drop(held);
    }
}

#[test]
fn another_permit_count_for_one_name_is_a_clear_error() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let three = factory.create_semaphore("sem:count", 3);
    let five = factory.create_semaphore("sem:count", 5);
    let p = three.acquire().unwrap();
    for result in [
        five.try_acquire().map(|_| ()),
        five.acquire().map(|_| ()),
        five.acquire_timeout(Duration::from_secs(5)).map(|_| ()),
    ] {
        match result {
            Err(Error::InvalidConfig(m)) => {
                assert!(m.contains("3 permits") && m.contains("has 5"), "{m}");
            }
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
    // Nothing of the refused attempts stayed behind.
    assert_eq!(cluster.holders("sem:count", "redmutex:semaphore:3:1"), 3);
    p.release().unwrap();
    // Once no permit is held, the name is free for another count.
    let p5 = five.try_acquire().unwrap().expect("free");
    assert!(matches!(three.try_acquire(), Err(Error::InvalidConfig(_))));
    p5.release().unwrap();
}

#[test]
fn a_lock_and_a_semaphore_of_one_name_exclude_each_other() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let sem = factory.create_semaphore("shared:name", 2);
    let lock = factory.create_lock("shared:name");

    // Permits held: the lock waits.
    let p = sem.acquire().unwrap();
    assert!(lock.try_acquire().unwrap().is_none());
    assert!(lock.is_locked().unwrap());
    // A waiting lock is woken by the last permit's release: it polls only every 5 s, so a
    // prompt hand-over is a wake-up.
    let slow = support::factory(&cluster)
        .retry_delay(Duration::from_secs(5))
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let waiting = {
        let lock = slow.create_lock("shared:name");
        thread::spawn(move || {
            let g = lock.acquire_timeout(Duration::from_secs(20));
            (Instant::now(), g)
        })
    };
    cluster.wait_waiting("shared:name");
    let released = Instant::now();
    p.release().unwrap();
    let (acquired, g) = waiting.join().unwrap();
    let g = g.expect("the lock after the permits");
    let gap = acquired.saturating_duration_since(released);
    assert!(gap < Duration::from_secs(1), "hand-over took {gap:?}");
    // Lock held: the permits wait.
    assert!(sem.try_acquire().unwrap().is_none());
    assert!(matches!(
        sem.acquire_timeout(Duration::from_millis(200)),
        Err(Error::Timeout { .. })
    ));
    g.release().unwrap();
    sem.try_acquire()
        .unwrap()
        .expect("free after the lock")
        .release()
        .unwrap();
}

#[test]
fn a_crashed_holder_frees_its_permit_at_its_ttl() {
    let cluster = RedisCluster::start(3);
    let ttl = Duration::from_secs(1);
    let factory = support::short_factory(&cluster).ttl(ttl).build().unwrap();
    let sem = factory.create_semaphore("sem:crash", 1);
    // A holder that vanishes without releasing (its process crashed): nothing on the wire
    // tells it apart from a leaked permit.
    let crashed = sem.acquire().unwrap();
    let taken = Instant::now();
    let _token = crashed.leak();
    assert!(sem.try_acquire().unwrap().is_none());
    let p = sem.acquire_timeout(Duration::from_secs(10)).unwrap();
    let after = taken.elapsed();
    assert!(after >= ttl - Duration::from_millis(50), "{after:?}");
    assert!(after < ttl + Duration::from_secs(2), "{after:?}");
    p.release().unwrap();
}

#[test]
fn a_holder_paused_past_its_ttl_sees_its_permit_invalid() {
    let cluster = RedisCluster::start(3);
    let factory = support::short_factory(&cluster)
        .ttl(Duration::from_millis(500))
        .build()
        .unwrap();
    let sem = factory.create_semaphore("sem:pause", 1);
    let paused = sem.acquire().unwrap();
    thread::sleep(Duration::from_millis(700)); // "paused" past its TTL
    assert!(!paused.is_valid());
    let next = sem.try_acquire().unwrap().expect("the permit expired");
    assert!(matches!(
        paused.extend(Duration::from_secs(1)),
        Err(Error::Expired { .. })
    ));
    assert!(matches!(paused.release(), Err(Error::Expired { .. })));
    // The new holder's permit is intact.
    assert_eq!(cluster.holders(&slot_key("sem:pause", 0), next.token()), 3);
    next.release().unwrap();
}

#[test]
fn permits_extend_keep_alive_and_signal_their_loss() {
    let cluster = RedisCluster::start(3);
    let factory = support::short_factory(&cluster)
        .ttl(Duration::from_millis(600))
        .build()
        .unwrap();
    let sem = factory.create_semaphore("sem:lease", 2);
    // Extend: the slot and the name key both live at least as long.
    let p = sem.acquire().unwrap();
    p.extend(Duration::from_secs(30)).unwrap();
    assert!(p.validity() > Duration::from_secs(29));
    for key in [slot_key("sem:lease", p.slot()), "sem:lease".into()] {
        let pttl: i64 = cluster.cmd(0, &["PTTL", &key]).parse().unwrap();
        assert!(pttl > 29_000, "{key}: {pttl}");
    }
    // Token-level calls, as from another process.
    let token = p.leak();
    assert!(sem.extend_token(&token, Duration::from_secs(40)).unwrap() > Duration::from_secs(39));
    sem.release_token(&token).unwrap();
    assert!(matches!(
        sem.release_token(&token),
        Err(Error::NotHeld { .. })
    ));

    // Keep-alive holds a 600 ms permit for 2 s; deleting its slot is signalled.
    let kept = sem.with_keep_alive(true).acquire().unwrap();
    let lost = kept.loss_signal();
    thread::sleep(Duration::from_secs(2));
    assert!(kept.is_valid() && !lost.is_lost());
    let key = slot_key("sem:lease", kept.slot());
    for i in 0..3 {
        cluster.cmd(i, &["DEL", &key]);
    }
    assert_eq!(
        lost.wait_timeout(Duration::from_secs(3)),
        Some(LossReason::TokenGone)
    );
    assert!(!kept.is_valid());
    assert!(matches!(kept.release(), Err(Error::LockLost { .. })));
}

#[test]
fn nodes_that_disagree_about_free_slots_still_grant_in_one_call() {
    // Node 0 has slots {0, 1} free, node 1 {1, 2}, node 2 {2, 0} (the others are held by a
    // stranger): every slot is free on a quorum, but whatever slot a round starts from, the
    // nodes may each grant a different one. The attempt must converge (the nodes' reports
    // point it to a slot that can win) and take back what it got elsewhere.
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let name = "sem:split";
    let taken = [[2], [0], [1]];
    for _ in 0..10 {
        for (i, slots) in taken.iter().enumerate() {
            for s in slots {
                cluster.cmd(i, &["SET", &slot_key(name, *s), "stranger", "PX", "60000"]);
            }
        }
        let p = factory
            .create_semaphore(name, 3)
            .try_acquire()
            .unwrap()
            .expect("every slot is free on a quorum");
        // Ours on exactly the nodes where the slot was free, and nowhere else: within 3 s
        // (under a third of the TTL), as a round decided at the quorum may leave a node's reply
        // (a grant of another slot) to the node's reader, which takes that grant back once it
        // has read it, a moment after the call returned.
        let ours = || -> usize {
            (0..3)
                .map(|s| cluster.holders(&slot_key(name, s), p.token()))
                .sum()
        };
        support::deadline_loop(Duration::from_secs(3), || ours() == 2);
        assert_eq!(ours(), 2, "slot {}", p.slot());
        // The name key counts one permit where it was granted, and is gone where it was
        // taken back.
        let counts = || -> Vec<String> {
            (0..3)
                .map(|i| cluster.cmd(i, &["GET", "sem:split"]))
                .collect()
        };
        let granted = |counts: &[String]| {
            counts
                .iter()
                .filter(|c| *c == "redmutex:semaphore:3:1")
                .count()
        };
        support::deadline_loop(Duration::from_secs(3), || granted(&counts()) == 2);
        let counts = counts();
        assert_eq!(granted(&counts), 2, "name keys {counts:?}");
        p.release().unwrap();
        for i in 0..3 {
            cluster.cmd(i, &["FLUSHALL"]);
        }
    }
}

#[test]
fn twice_as_many_threads_as_permits_all_get_permits() {
    let cluster = RedisCluster::start(3);
    // The library's own poll (50 ms + up to 50 ms): hand-overs must come from wake-ups and the
    // releaser's hold-back, not from fast polling.
    let factory = support::defaults(cluster.urls()).build().unwrap();
    const PERMITS: u32 = 3;
    let threads = 2 * PERMITS as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<usize> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let sem = factory.create_semaphore("sem:fair", PERMITS);
                let stop = Arc::clone(&stop);
                s.spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let p = sem.acquire_timeout(Duration::from_secs(10)).unwrap();
                        thread::sleep(Duration::from_millis(5));
                        p.release().unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: usize = counts.iter().sum();
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    eprintln!(
        "[figures] semaphore fairness: {threads} threads on {PERMITS} permits, 5 ms holds, 4 s: \
         per thread {counts:?} (total {total}, least/most {:.2})",
        min as f64 / max as f64
    );
    let mean = total / threads;
    assert!(min > 0, "a thread never got a permit: {counts:?}");
    assert!(min * 4 >= mean, "a thread starved: {counts:?}");
}

#[test]
fn the_number_of_holders_never_exceeds_the_permits_under_contention() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    const PERMITS: u32 = 2;
    let inside = std::sync::atomic::AtomicUsize::new(0);
    let most = std::sync::atomic::AtomicUsize::new(0);
    let slots = std::sync::Mutex::new(BTreeMap::<u32, usize>::new());
    thread::scope(|s| {
        for _ in 0..6 {
            let sem = factory.create_semaphore("sem:count-in", PERMITS);
            let (inside, most, slots) = (&inside, &most, &slots);
            s.spawn(move || {
                let end = Instant::now() + Duration::from_secs(2);
                while Instant::now() < end {
                    let p = sem.acquire_timeout(Duration::from_secs(10)).unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    *slots.lock().unwrap().entry(p.slot()).or_default() += 1;
                    thread::sleep(Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    p.release().unwrap();
                }
            });
        }
    });
    let most = most.load(Ordering::SeqCst);
    assert!(most <= PERMITS as usize, "{most} holders at once");
    assert_eq!(most, PERMITS as usize, "the permits were never all used");
    let slots = slots.into_inner().unwrap();
    assert_eq!(
        slots.keys().copied().collect::<Vec<_>>(),
        [0, 1],
        "{slots:?}"
    );
    assert!(deadline_loop(Duration::from_secs(2), || cluster
        .all_keys()
        .is_empty()));
}

#[test]
fn the_permit_count_is_bounded() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster).build().unwrap();
    let big = factory.create_semaphore("sem:big", MAX_PERMITS);
    let p = big.try_acquire().unwrap().expect("free");
    assert!(p.slot() < MAX_PERMITS);
    p.release().unwrap();
    assert!(matches!(
        factory
            .create_semaphore("sem:big", MAX_PERMITS + 1)
            .try_acquire(),
        Err(Error::InvalidArgument(_))
    ));
}

/// A permit's acquisition round counts in each node's vote statistics, as a lock's does: one
/// yes per node for the grant, one for the release. A round decided at the quorum leaves a
/// slower node's reply to that node's reader, which counts it a little later (seen on a loaded
/// machine: `(1, 0, 0)` read at once), so the counts are awaited, and must then be exact.
#[test]
fn permit_rounds_count_in_the_nodes_votes() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    let sem = factory.create_semaphore("sem:votes", 2);
    sem.try_acquire()
        .unwrap()
        .expect("a free permit")
        .release()
        .unwrap();
    let counts = || -> Vec<(u64, u64, u64)> {
        factory
            .stats()
            .nodes
            .iter()
            .map(|n| (n.votes_given, n.votes_refused, n.votes_failed))
            .collect()
    };
    support::deadline_loop(Duration::from_secs(10), || {
        counts().iter().all(|c| *c == (2, 0, 0))
    });
    assert_eq!(counts(), vec![(2, 0, 0); 3], "{:?}", factory.stats().nodes);
}

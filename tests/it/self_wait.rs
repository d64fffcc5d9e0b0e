//! Waits that a read lease of the calling thread blocks (issue 17, item 6): a lock, a
//! multi-lock or a semaphore of the name, as the write lock already was, are refused at once
//! with `Error::WouldDeadlock` instead of waiting for themselves; and waits for a lease another
//! thread of the process holds, which must wait, never be refused (a guard moved to another
//! thread and used there, or handed over, is that thread's business).
//!
//! The first two tests use only calls that existed before the fix, so that they run on that
//! code too (where they failed: see each test).

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster};
use redmutex::{Error, RedLockFactory};

/// How long a refused call may take on a loaded machine: it makes no round at all, and the
/// waits below are longer, so a call that waited instead cannot pass.
const AT_ONCE: Duration = Duration::from_secs(2);
/// The wait of the calls that must be refused.
const WAIT: Duration = Duration::from_secs(4);
/// Upper bound for a wait that must end: catches hangs.
const SOON: Duration = Duration::from_secs(20);

/// Keep-alive on (a self-wait would never end) and slow polls (a refusal after a round and a
/// pause would take seconds).
fn factory(cluster: &RedisCluster) -> RedLockFactory {
    support::factory(cluster)
        .keep_alive(true)
        .retry_delay(Duration::from_secs(2))
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap()
}

fn refused(what: &str, call: impl FnOnce() -> Result<(), Error>) {
    let t0 = Instant::now();
    let result = call();
    let took = t0.elapsed();
    match result {
        Err(Error::WouldDeadlock { .. }) => {}
        other => panic!("{what}: {other:?} after {took:?}, not WouldDeadlock"),
    }
    assert!(took < AT_ONCE, "{what} took {took:?}");
}

// Before the fix each of these calls waited the whole 4 s and failed with `Timeout`
// ("lock: Err(Timeout { resource: \"sw:read\", waited: 4.0s }) after 4.0s, not WouldDeadlock").
#[test]
fn issue_17_a_reader_asking_for_a_lock_a_multi_lock_or_a_semaphore_of_its_name_is_refused() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster);
    let name = "sw:read";
    let r = f.create_rwlock(name).read().unwrap();
    refused("lock", || {
        f.create_lock(name).acquire_timeout(WAIT).map(drop)
    });
    refused("multi-lock", || {
        f.create_multi_lock(["sw:other", name])
            .acquire_timeout(WAIT)
            .map(drop)
    });
    refused("semaphore", || {
        f.create_semaphore(name, 3).acquire_timeout(WAIT).map(drop)
    });
    // A single attempt does not wait: busy, not an error.
    assert!(f.create_lock(name).try_acquire().unwrap().is_none());
    // Refused before any round: nobody marked the name as waited for.
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["EXISTS", "sw:read:redmutex:waiting"]), "0");
    }
    // Another thread of the process waits (it is not its read lock), and another factory is
    // another client.
    thread::scope(|s| {
        let other = s.spawn(|| {
            f.create_lock(name)
                .acquire_timeout(Duration::from_millis(300))
        });
        assert!(matches!(other.join().unwrap(), Err(Error::Timeout { .. })));
    });
    let g = factory(&cluster);
    assert!(matches!(
        g.create_lock(name)
            .acquire_timeout(Duration::from_millis(300)),
        Err(Error::Timeout { .. })
    ));
    drop(r);
    f.create_lock(name).acquire().unwrap().release().unwrap();
}

// Before the fix the first thread's `write()` failed at once: "called `Result::unwrap()` on an
// `Err` value: WouldDeadlock { resource: \"sw:moved\" }".
#[test]
fn issue_17_a_read_guard_moved_to_another_thread_lets_the_first_thread_wait_for_it() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster);
    let lock = f.create_rwlock("sw:moved");
    let r = lock.read().unwrap();
    let (used, seen) = mpsc::channel();
    let reader = thread::spawn(move || {
        assert!(r.is_valid());
        used.send(()).unwrap();
        thread::sleep(Duration::from_millis(300));
        drop(r);
    });
    seen.recv_timeout(SOON).unwrap();
    // The read guard is the other thread's now: this thread waits for it, and gets in once
    // it is dropped.
    let t0 = Instant::now();
    let w = lock.write().unwrap();
    assert!(t0.elapsed() < SOON);
    reader.join().unwrap();
    w.release().unwrap();
}

#[test]
fn a_guard_handed_over_before_it_is_moved_lets_the_sender_wait_for_it() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster);
    let lock = f.create_rwlock("sw:handed");
    let (tx, rx) = mpsc::channel();
    tx.send(lock.read().unwrap().hand_over()).unwrap();
    let reader = thread::spawn(move || {
        let r = rx.recv().unwrap();
        thread::sleep(Duration::from_millis(300));
        r.release().unwrap();
    });
    let w = lock.writer().acquire_timeout(SOON).unwrap();
    reader.join().unwrap();
    w.release().unwrap();
}

#[test]
fn a_lease_another_thread_holds_is_waited_for_whatever_its_kind() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster);
    let (held, taken) = mpsc::channel();
    thread::scope(|s| {
        let holder = s.spawn(|| {
            let p = f.create_semaphore("sw:busy", 1).acquire().unwrap();
            let r = f.create_rwlock("sw:busy2").read().unwrap();
            held.send(()).unwrap();
            thread::sleep(Duration::from_millis(300));
            drop((p, r));
        });
        taken.recv_timeout(SOON).unwrap();
        let m = f
            .create_multi_lock(["sw:busy", "sw:busy2"])
            .acquire_timeout(SOON)
            .unwrap();
        m.release().unwrap();
        holder.join().unwrap();
    });
}

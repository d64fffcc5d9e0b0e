//! The lease API written once (issue 19): a function generic over any held lease, and one over
//! any handle that takes leases, each used with all five kinds of guard, against what the nodes
//! hold.

use std::time::Duration;

use crate::support::{self, RedisCluster};
use redmutex::kind::Acquire;
use redmutex::{Error, Handle, LeaseGuard, RedLockFactory};

const TTL: Duration = Duration::from_secs(5);
const LONGER: Duration = Duration::from_secs(30);
/// Upper bound for a wait that must end: catches hangs.
const SOON: Duration = Duration::from_secs(20);

fn factory(cluster: &RedisCluster) -> RedLockFactory {
    support::factory(cluster).ttl(TTL).build().unwrap()
}

/// The smallest expiry of `keys` over a quorum (2 of 3) of the nodes, in ms.
fn quorum_pttl(cluster: &RedisCluster, keys: &[String]) -> u64 {
    let mut per_node: Vec<u64> = (0..3)
        .map(|i| {
            keys.iter()
                .map(|k| cluster.cmd(i, &["PTTL", k]).parse::<i64>().unwrap())
                .map(|ms| u64::try_from(ms).unwrap_or(0))
                .min()
                .unwrap()
        })
        .collect();
    per_node.sort_unstable();
    per_node[1]
}

/// What code that holds a lease of any kind does with it: ask, extend, watch. Returns the
/// validity after the extension.
fn extend_whatever_is_held<K>(lease: &LeaseGuard<K>) -> Duration {
    assert!(lease.is_valid(), "{}", lease.resource());
    assert_eq!(lease.token().len(), 40);
    let signal = lease.loss_signal();
    lease.extend(LONGER).unwrap();
    assert!(!signal.is_lost());
    let validity = lease.validity();
    assert!(validity > LONGER - Duration::from_secs(5), "{validity:?}");
    validity
}

/// What code that has a handle of any kind does with it: take a lease, hand it out as a
/// token, extend and release it by token, from the handle alone.
fn by_token<K: Acquire>(handle: &Handle<K>) {
    let token = handle.acquire_timeout(SOON).unwrap().leak();
    let proven = handle.extend_token(&token, LONGER).unwrap();
    assert!(proven > LONGER - Duration::from_secs(5), "{proven:?}");
    handle.release_token(&token).unwrap();
    assert!(
        matches!(handle.release_token(&token), Err(Error::NotHeld { .. })),
        "{}",
        handle.resource()
    );
}

#[test]
fn a_function_generic_over_any_held_lease_takes_all_five_guard_kinds() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster);
    let lock = f.create_lock("api:lock").acquire().unwrap();
    let read = f.create_rwlock("api:read").read().unwrap();
    let write = f.create_rwlock("api:write").write().unwrap();
    let permit = f.create_semaphore("api:sem", 2).acquire().unwrap();
    let multi = f.create_multi_lock(["api:m1", "api:m2"]).acquire().unwrap();

    let held: [(Duration, Vec<String>); 5] = [
        (extend_whatever_is_held(&lock), vec!["api:lock".into()]),
        // A lone reader: the lock key holds its marker, with its own expiry.
        (extend_whatever_is_held(&read), vec!["api:read".into()]),
        (extend_whatever_is_held(&write), vec!["api:write".into()]),
        (
            extend_whatever_is_held(&permit),
            vec![format!("api:sem:redmutex:permit:{}", permit.slot())],
        ),
        (
            extend_whatever_is_held(&multi),
            vec!["api:m1".into(), "api:m2".into()],
        ),
    ];
    // The nodes hold every lease at least as long as its guard believes.
    for (validity, keys) in &held {
        let pttl = quorum_pttl(&cluster, keys);
        assert!(
            Duration::from_millis(pttl) >= *validity,
            "{keys:?}: the nodes hold {pttl} ms, the guard believes {validity:?}"
        );
    }
    // Every kind releases the same way.
    lock.release().unwrap();
    read.release().unwrap();
    write.release().unwrap();
    permit.release().unwrap();
    multi.release().unwrap();
    for (_, keys) in &held {
        for k in keys {
            assert_eq!(cluster.cmd(0, &["EXISTS", k]), "0", "{k}");
        }
    }
}

#[test]
fn a_function_generic_over_any_handle_takes_all_five_kinds() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster);
    by_token(&f.create_lock("api:t:lock"));
    let rw = f.create_rwlock("api:t:rw");
    by_token(&rw.reader());
    by_token(&rw.writer());
    by_token(&f.create_semaphore("api:t:sem", 3));
    by_token(&f.create_multi_lock(["api:t:m1", "api:t:m2"]));
    // And the handle's builders are every kind's.
    let short = Duration::from_secs(2);
    assert_eq!(f.create_lock("k").with_ttl(short).ttl(), short);
    assert_eq!(f.create_rwlock("k").with_ttl(short).reader().ttl(), short);
    assert_eq!(f.create_semaphore("k", 2).with_ttl(short).ttl(), short);
    assert_eq!(f.create_multi_lock(["k"]).with_ttl(short).ttl(), short);
}

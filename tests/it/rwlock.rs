//! The read-write lock on healthy nodes: readers share and a writer excludes everyone, a mutex on
//! the same name is a writer, each reader's lease is its own, a waiting writer keeps new
//! readers out (and a dead one stops doing so), upgrade is refused and downgrade is atomic, the
//! deadline rule holds for readers, and every key is the name plus a suffix. Faults are in
//! `faults::rwlock`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::history::{
    self, Record, Witness, max_concurrent_readers, percentile, shared_figures,
};
use crate::support::worker::{self, Worker};
use crate::support::{self, RedisCluster, deadline_loop, port_cmd};
use crate::test_name;
use redmutex::{Error, LossReason, RedLockFactory, Wait};

const READERS: &str = ":redmutex:readers";
const MARKER: &str = "redmutex:readers:";

/// Upper bound for what should happen "at once" or "soon" on a loaded machine: catches hangs.
const SOON: Duration = Duration::from_secs(10);

/// The retry delay of a waiter that must be woken, not get in by polling: every bound on a
/// wake-up is well below it.
const WAKE_POLL: Duration = Duration::from_secs(5);

fn zcard(cluster: &RedisCluster, i: usize, key: &str) -> usize {
    cluster.cmd(i, &["ZCARD", key]).parse().unwrap()
}

/// The node's clock, in ms (`TIME`).
fn server_ms(cluster: &RedisCluster, i: usize) -> u64 {
    let t = cluster.cmd(i, &["TIME"]);
    let (s, us) = t.split_once('\n').unwrap();
    s.parse::<u64>().unwrap() * 1000 + us.parse::<u64>().unwrap() / 1000
}

/// A reader's score on node `i` (ms, the node's clock), if it is in the readers' set.
fn score(cluster: &RedisCluster, i: usize, name: &str, token: &str) -> Option<u64> {
    let s = cluster.cmd(i, &["ZSCORE", &format!("{name}{READERS}"), token]);
    (s != "(nil)").then(|| s.parse().unwrap())
}

/// Reads, atomically on one node, its clock and the instant (both ms) until which it holds
/// `token` as a reader of `name`, in either form (a lone reader's marker and its expiry, or a
/// live score in the readers' set with the marker in place): `{now, expiry or -1}`. The
/// marker's expiry is `PEXPIRETIME` (Redis 7; `TIME` + `PTTL` before): the sum comes out early
/// by however long the node is preempted between the two calls, tens of milliseconds once on
/// a loaded machine.
const EXPIRY_LUA: &str = "local P = 'redmutex:readers:' \
    local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) \
    local v = redis.call('GET', KEYS[1]) \
    if not v or string.sub(v, 1, #P) ~= P then return {now, -1} end \
    if v == P .. ARGV[1] and redis.call('EXISTS', KEYS[2]) == 0 then \
        local e = redis.pcall('PEXPIRETIME', KEYS[1]) \
        if type(e) ~= 'number' then e = now + redis.call('PTTL', KEYS[1]) end \
        return {now, e} end \
    local s = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0') \
    if s > now then return {now, s} end return {now, -1}";

/// `(node clock, reader's expiry)` on a connection, from [`EXPIRY_LUA`].
fn reader_expiry(con: &mut redis::Connection, name: &str, token: &str) -> (u64, Option<u64>) {
    let (now, expiry): (u64, i64) = redis::cmd("EVAL")
        .arg(EXPIRY_LUA)
        .arg(2)
        .arg(name)
        .arg(format!("{name}{READERS}"))
        .arg(token)
        .query(con)
        .unwrap();
    (now, u64::try_from(expiry).ok())
}

/// A reader's expiry on node `i`, in either form.
fn expiry(cluster: &RedisCluster, i: usize, name: &str, token: &str) -> Option<u64> {
    let mut con = crate::support::client::connect(cluster.port(i), SOON).unwrap();
    reader_expiry(&mut con, name, token).1
}

/// Every key on node `i`, sorted.
fn keys(cluster: &RedisCluster, i: usize) -> Vec<String> {
    let mut k: Vec<String> = cluster
        .cmd(i, &["KEYS", "*"])
        .lines()
        .map(str::to_owned)
        .collect();
    k.sort();
    k
}

fn empty(cluster: &RedisCluster) -> bool {
    (0..cluster.len()).all(|i| cluster.cmd(i, &["DBSIZE"]) == "0")
}

/// A second factory on the same nodes: another process, as far as the lock can tell.
fn other(cluster: &RedisCluster) -> RedLockFactory {
    support::factory(cluster).build().unwrap()
}

#[test]
fn readers_share_and_a_writer_excludes_everyone() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).build().unwrap();
    let probe = other(&cluster).create_rwlock("rw:basic");
    let lock = f.create_rwlock("rw:basic");
    assert_eq!(lock.resource(), "rw:basic");

    let readers: Vec<_> = (0..3)
        .map(|_| lock.try_read().unwrap().expect("readers share"))
        .collect();
    for r in &readers {
        assert!(r.is_valid() && r.validity() > Duration::from_secs(9));
        assert_eq!(r.resource(), "rw:basic");
    }
    for i in 0..3 {
        // The lock key holds the readers' marker, living as long as the longest reader.
        assert!(cluster.cmd(i, &["GET", "rw:basic"]).starts_with(MARKER));
        assert_eq!(zcard(&cluster, i, "rw:basic:redmutex:readers"), 3);
        let pttl: u64 = cluster.cmd(i, &["PTTL", "rw:basic"]).parse().unwrap();
        assert!((9_000..=10_000).contains(&pttl), "{pttl}");
    }
    assert!(probe.try_write().unwrap().is_none());
    assert!(
        probe
            .writer()
            .acquire_timeout(Duration::from_millis(100))
            .is_err_and(|e| matches!(e, Error::Timeout { .. }))
    );
    let mut readers = readers.into_iter();
    readers.next().unwrap().release().unwrap();
    readers.next().unwrap().release().unwrap();
    // One reader left: still no writer.
    assert!(probe.try_write().unwrap().is_none());
    readers.next().unwrap().release().unwrap();
    // The last reader out leaves nothing behind (the waiting marks of the refused writer
    // expire by themselves within a few hundred ms).
    assert!(
        deadline_loop(SOON, || empty(&cluster)),
        "{:?}",
        keys(&cluster, 0)
    );

    let w = lock.try_write().unwrap().expect("free");
    assert!(w.is_valid() && w.validity() > Duration::from_secs(9));
    assert_eq!(w.fencing_token(), None);
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["GET", "rw:basic"]), w.token());
    }
    assert!(probe.try_read().unwrap().is_none());
    assert!(probe.try_write().unwrap().is_none());
    assert!(
        probe
            .reader()
            .acquire_timeout(Duration::from_millis(100))
            .is_err_and(|e| matches!(e, Error::Timeout { .. }))
    );
    w.release().unwrap();
    let r = probe.try_read().unwrap().expect("free after the writer");
    drop(r);
    assert!(
        deadline_loop(SOON, || empty(&cluster)),
        "{:?}",
        keys(&cluster, 0)
    );
}

#[test]
fn every_key_is_the_name_plus_a_suffix_and_expires() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).fencing(true).build().unwrap();
    let name = "app:rw:keys";
    let lock = f.create_rwlock(name);
    let snapshot = |seen: &mut std::collections::BTreeSet<String>| {
        for i in 0..3 {
            seen.extend(keys(&cluster, i));
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    // Two readers (the set of readers), a writer waiting for them (its intent, the waiting
    // mark), then a fenced writer (the counter).
    let r1 = lock.read().unwrap();
    let r2 = other(&cluster).create_rwlock(name).read().unwrap();
    thread::scope(|s| {
        let waiting = s.spawn(|| {
            other(&cluster)
                .create_rwlock(name)
                .writer()
                .acquire_timeout(Duration::from_millis(500))
                .map(drop)
        });
        assert!(deadline_loop(SOON, || (0..3).all(|i| zcard(
            &cluster,
            i,
            &format!("{name}:redmutex:writers")
        ) == 1)));
        snapshot(&mut seen);
        assert!(matches!(
            waiting.join().unwrap(),
            Err(Error::Timeout { .. })
        ));
    });
    drop((r1, r2));
    let w = lock.write().unwrap();
    assert_eq!(w.fencing_token(), Some(1));
    snapshot(&mut seen);
    drop(w);
    assert!(
        seen.iter()
            .all(|k| k.starts_with("app:rw:keys:") || k == name),
        "{seen:?}"
    );
    for suffix in [
        ":redmutex:readers",
        ":redmutex:writers",
        ":redmutex:waiting",
    ] {
        assert!(
            seen.contains(&format!("{name}{suffix}")),
            "{suffix}: {seen:?}"
        );
    }
    // Every key but the fencing counter expires by itself (the counter must outlive the lock).
    assert!(
        deadline_loop(SOON, || (0..3)
            .all(|i| keys(&cluster, i) == [format!("{name}:redmutex:fence")])),
        "{:?}",
        keys(&cluster, 0)
    );
}

#[test]
fn a_mutex_on_the_same_name_is_a_writer() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).fencing(true).build().unwrap();
    let g = other(&cluster);
    let rw = f.create_rwlock("rw:mixed");
    let mutex = g.create_lock("rw:mixed");

    // A mutex holder keeps readers and writers out.
    let m = mutex.try_acquire().unwrap().expect("free");
    assert!(rw.try_read().unwrap().is_none());
    assert!(rw.try_write().unwrap().is_none());
    drop(m);

    // Readers keep a mutex out, and any Redlock client's bare SET NX.
    let r = rw.try_read().unwrap().expect("free");
    assert!(mutex.try_acquire().unwrap().is_none());
    assert!(mutex.is_locked().unwrap());
    for i in 0..3 {
        assert_eq!(
            cluster.cmd(i, &["SET", "rw:mixed", "redsync-token", "NX", "PX", "1000"]),
            "(nil)"
        );
    }
    // A waiting mutex is woken by the last reader's release: it polls only every 5 s, so
    // getting in well within a second of the release is the wake-up, not a poll.
    let slow = support::factory(&cluster)
        .retry_delay(WAKE_POLL)
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let waiting_mutex = slow.create_lock("rw:mixed");
    for i in 0..3 {
        assert_eq!(
            cluster.cmd(i, &["EXISTS", "rw:mixed:redmutex:waiting"]),
            "0"
        );
    }
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            waiting_mutex
                .acquire_timeout(WAKE_POLL * 4)
                .map(|g| (g, Instant::now()))
        });
        // It is waiting (subscribed, then marked the name as waited for) on every node.
        assert!(
            deadline_loop(SOON, || (0..3).all(|i| cluster
                .cmd(i, &["EXISTS", "rw:mixed:redmutex:waiting"])
                == "1")),
            "the mutex never marked itself as waiting"
        );
        let left = Instant::now();
        drop(r);
        let (m, got) = waiter.join().unwrap().unwrap();
        // Not before the reader left, and well before the next poll.
        let after = got
            .checked_duration_since(left)
            .expect("the mutex got in while the reader held");
        eprintln!(
            "[figures] rw: a waiting mutex got in {after:?} after the last reader's release \
             (polls {WAKE_POLL:?} apart)"
        );
        assert!(after < Duration::from_secs(1), "{after:?}");
        drop(m);
    });

    // A writer keeps a mutex out; fencing tokens grow across both.
    let w = rw.try_write().unwrap().expect("free");
    assert!(mutex.try_acquire().unwrap().is_none());
    let t1 = w.fencing_token().unwrap();
    drop(w);
    let m = mutex.with_fencing(true).try_acquire().unwrap().unwrap();
    let t2 = m.fencing_token().unwrap();
    drop(m);
    let t3 = rw.try_write().unwrap().unwrap().fencing_token().unwrap();
    assert!(t1 < t2 && t2 < t3, "{t1} {t2} {t3}");
}

/// A history over one name taken as a mutex, as a reader and as a writer by several threads:
/// no writer (or mutex holder) is ever with anyone else, and readers really share.
#[test]
fn mixed_modes_history_no_writer_with_anyone() {
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let factory = support::factory(&cluster).fencing(true).build().unwrap();
    let mut work = history::Workload::new("rw:mixed-history", 6, 1, Duration::from_secs(3));
    work.hold = Duration::from_millis(2);
    work.roles = vec![
        history::Role::Read,
        history::Role::Write,
        history::Role::Read,
        history::Role::Mutex,
        history::Role::Read,
        history::Role::Read,
    ];
    let run = history::run_workers(
        &factory,
        witness.port(0),
        &work,
        &Arc::new(AtomicBool::new(false)),
    );
    let check = history::report("rw_mixed_healthy", &run, 0, &shared_figures(&run.records));
    history::assert_clean(&check);
    // Enough of each kind to mean something. Readers get in less on a loaded machine: a
    // writer and a mutex holder cycling with 2 ms holds are nearly always waiting, which keeps
    // new readers out (writer preference), and 13 shared sections in 3 s were seen with both
    // cores busy.
    let kinds = |shared: bool| run.records.iter().filter(|r| r.shared == shared).count();
    assert!(
        kinds(true) > 5 && kinds(false) > 5,
        "{} / {}",
        kinds(true),
        kinds(false)
    );
    assert!(
        max_concurrent_readers(&run.records) >= 2,
        "readers never shared"
    );
    assert_eq!(run.error_count(), 0, "{:?}", run.errors);
}

#[test]
fn reader_expiries_come_from_the_nodes_clock() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster)
        .ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    let g = support::factory(&cluster)
        .ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    let before: Vec<u64> = (0..3).map(|i| server_ms(&cluster, i)).collect();
    // A lone reader is the marker itself, with its own expiry.
    let r1 = f.create_rwlock("rw:clock").read().unwrap();
    let mid: Vec<u64> = (0..3).map(|i| server_ms(&cluster, i)).collect();
    for i in 0..3 {
        assert_eq!(
            cluster.cmd(i, &["GET", "rw:clock"]),
            format!("{MARKER}{}", r1.token())
        );
        let e = expiry(&cluster, i, "rw:clock", r1.token()).unwrap();
        assert!(
            before[i] + 5_000 <= e && e <= mid[i] + 5_000,
            "node {i}: lone reader's expiry {e}"
        );
        assert_eq!(
            cluster.cmd(i, &["EXISTS", "rw:clock:redmutex:readers"]),
            "0"
        );
    }
    // A second reader: both in the set, scored by the node's TIME (the first one's expiry
    // unchanged, or a millisecond later).
    let r2 = g.create_rwlock("rw:clock").read().unwrap();
    let after: Vec<u64> = (0..3).map(|i| server_ms(&cluster, i)).collect();
    for i in 0..3 {
        let s1 = score(&cluster, i, "rw:clock", r1.token()).unwrap();
        let s2 = score(&cluster, i, "rw:clock", r2.token()).unwrap();
        assert!(
            before[i] + 5_000 <= s1 && s1 <= mid[i] + 5_000 + 2,
            "node {i}: moved reader's score {s1}"
        );
        assert!(
            mid[i] + 5_000 <= s2 && s2 <= after[i] + 5_000,
            "node {i}: expiry {s2} not within TIME + ttl [{}, {}]",
            mid[i] + 5_000,
            after[i] + 5_000
        );
        // The marker lives exactly as long as the longest reader: its expiry, PTTL plus the
        // node's clock when it answered, which lies between the clock read before and after
        // (on a loaded machine those two reads can be many milliseconds apart).
        let t0 = server_ms(&cluster, i);
        let pttl: u64 = cluster.cmd(i, &["PTTL", "rw:clock"]).parse().unwrap();
        let t1 = server_ms(&cluster, i);
        assert!(
            t0 + pttl <= s2 + 2 && s2 <= t1 + pttl + 2,
            "marker expiry in [{}, {}] vs reader {s2}",
            t0 + pttl,
            t1 + pttl
        );
    }
}

#[test]
fn each_readers_lease_is_its_own() {
    if let Some(spec) = worker::spec() {
        return rw_worker(&spec);
    }
    // A crashed reader (a worker process, SIGKILLed) with a 1.5 s lease, and a live reader
    // kept alive (renewed every 200 ms, on the same keys) for 4 s: the crashed reader's entry
    // ends after its own 1.5 s, and the writer gets in as soon as the live reader leaves.
    let cluster = RedisCluster::start(3);
    let coordinator = RedisCluster::start(1);
    let mut crashed = Worker::spawn(
        test_name!(each_readers_lease_is_its_own),
        &spec(
            "read",
            coordinator.port(0),
            1_500,
            "rw:own",
            &cluster.urls(),
        ),
    );
    let dead = wait_for_token(&coordinator, &mut crashed);
    crashed.kill();
    let killed = Instant::now();
    let f = support::short_factory(&cluster)
        .ttl(Duration::from_millis(600))
        .keep_alive(true)
        .build()
        .unwrap();
    let live = f.create_rwlock("rw:own").read().unwrap();
    // The writer polls only every 5 s: if its first round after the live reader left were
    // refused (a lease still counted), it would get in seconds later, not at once.
    let probe = support::factory(&cluster)
        .retry_delay(WAKE_POLL)
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap()
        .create_rwlock("rw:own");
    assert!(probe.try_write().unwrap().is_none());
    // The dead reader's entry is still live on the nodes until its own expiry...
    assert!((0..3).all(|i| score(&cluster, i, "rw:own", &dead).is_some()));
    thread::sleep(Duration::from_millis(2_500).saturating_sub(killed.elapsed()));
    // ... which has passed, although the live reader renewed its lease (and the keys) since.
    for i in 0..3 {
        let now = server_ms(&cluster, i);
        let dead_until = score(&cluster, i, "rw:own", &dead).unwrap_or(0);
        assert!(dead_until < now, "node {i}: the crashed reader lives on");
        let live_until = score(&cluster, i, "rw:own", live.token()).unwrap();
        assert!(
            live_until > now,
            "node {i}: the live reader was not renewed"
        );
    }
    assert!(live.is_valid());
    assert!(
        probe.try_write().unwrap().is_none(),
        "the live reader holds"
    );
    live.release().unwrap();
    let t0 = Instant::now();
    let w = probe.writer().acquire_timeout(WAKE_POLL * 4).unwrap();
    let took = t0.elapsed();
    eprintln!(
        "[figures] rw each reader its own: writer in {took:?} after the live reader left (the \
         crashed reader expired {:?} after its kill; the writer polls {WAKE_POLL:?} apart)",
        Duration::from_millis(1_500)
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(w);
}

/// The spec of an [`rw_worker`]: `<mode>;<coordinator port>;<ttl ms>;<name>;<url>,<url>,...`.
fn spec(mode: &str, coordinator: u16, ttl_ms: u64, name: &str, urls: &[String]) -> String {
    format!("{mode};{coordinator};{ttl_ms};{name};{}", urls.join(","))
}

/// The worker side of the tests that need a holder to die: `read` takes a read lock and holds
/// it until killed; `write` announces it is about to wait, then waits for the write lock until
/// killed. Each pushes its token (or `waiting`) to the coordinator's `held` list.
fn rw_worker(spec: &str) {
    let p: Vec<&str> = spec.split(';').collect();
    let coordinator: u16 = p[1].parse().unwrap();
    let ttl = Duration::from_millis(p[2].parse().unwrap());
    let urls: Vec<&str> = p[4].split(',').collect();
    // The waiting writer's intent outlives its last attempt by a time that grows with its
    // timeouts: short ones, so that the test waiting for it to expire is short too.
    let builder = if p[0] == "write" {
        support::short_builder()
    } else {
        support::builder()
    };
    let f = builder.nodes(urls).ttl(ttl).build().unwrap();
    let lock = f.create_rwlock(p[3]);
    let cmd = Duration::from_secs(5);
    match p[0] {
        "read" => {
            let r = lock.read().unwrap();
            port_cmd(coordinator, &["RPUSH", "held", r.token()], cmd).unwrap();
            loop {
                thread::sleep(Duration::from_millis(100));
            }
        }
        "write" => {
            port_cmd(coordinator, &["RPUSH", "held", "waiting"], cmd).unwrap();
            let w = lock.write();
            panic!("the writer should have been killed while waiting: {w:?}");
        }
        other => panic!("unknown worker mode {other}"),
    }
}

fn wait_for_token(coordinator: &RedisCluster, worker: &mut Worker) -> String {
    let mut token = String::new();
    assert!(
        deadline_loop(SOON * 2, || {
            assert!(worker.try_wait().is_none(), "the worker died");
            token = coordinator.cmd(0, &["LINDEX", "held", "0"]);
            token != "(nil)"
        }),
        "the worker never got going"
    );
    token
}

#[test]
fn a_waiting_writer_keeps_new_readers_out_and_gets_in_when_they_leave() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).build().unwrap();
    let g = other(&cluster);
    let lock = f.create_rwlock("rw:pref");
    let r = lock.read().unwrap();
    let reader2 = g.create_rwlock("rw:pref");
    assert!(reader2.try_read().unwrap().is_some(), "no writer waits yet");
    thread::scope(|s| {
        let writer = s.spawn(|| {
            let t0 = Instant::now();
            g.create_rwlock("rw:pref")
                .writer()
                .acquire_timeout(SOON)
                .map(|w| (w, t0.elapsed()))
        });
        // The writer's intent is on the nodes, and new readers are refused.
        assert!(deadline_loop(SOON, || (0..3).all(|i| zcard(
            &cluster,
            i,
            "rw:pref:redmutex:writers"
        ) == 1)));
        assert!(
            reader2.try_read().unwrap().is_none(),
            "a reader got past a waiting writer"
        );
        assert!(
            reader2
                .reader()
                .acquire_timeout(Duration::from_millis(200))
                .is_err_and(|e| matches!(e, Error::Timeout { .. }))
        );
        thread::sleep(Duration::from_millis(100));
        let left = Instant::now();
        r.release().unwrap();
        let (w, _waited) = writer.join().unwrap().unwrap();
        let after = left.elapsed();
        eprintln!(
            "[figures] rw preference: the waiting writer got in {after:?} after the reader left"
        );
        assert!(after < Duration::from_secs(1), "{after:?}");
        // Its intent went with its grant (on a node the grant missed, with its expiry).
        assert!(deadline_loop(SOON, || (0..3).all(|i| zcard(
            &cluster,
            i,
            "rw:pref:redmutex:writers"
        ) == 0)));
        drop(w);
    });
    assert!(reader2.try_read().unwrap().is_some());
}

#[test]
fn a_writer_that_gives_up_lets_readers_in_at_once() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).build().unwrap();
    let g = other(&cluster);
    let r = f.create_rwlock("rw:giveup").read().unwrap();
    let writer = g.create_rwlock("rw:giveup");
    assert!(matches!(
        writer.writer().acquire_timeout(Duration::from_millis(200)),
        Err(Error::Timeout { .. })
    ));
    // Withdrawn: nothing keeps readers out.
    assert!((0..3).all(|i| zcard(&cluster, i, "rw:giveup:redmutex:writers") == 0));
    assert!(g.create_rwlock("rw:giveup").try_read().unwrap().is_some());
    // Cancelled: the same.
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let w = s.spawn(|| {
            writer
                .writer()
                .acquire_with(Wait::forever().cancel_on(&stop))
        });
        assert!(deadline_loop(SOON, || (0..3).all(|i| zcard(
            &cluster,
            i,
            "rw:giveup:redmutex:writers"
        ) == 1)));
        stop.store(true, Ordering::Release);
        assert!(matches!(w.join().unwrap(), Err(Error::Cancelled { .. })));
    });
    assert!((0..3).all(|i| zcard(&cluster, i, "rw:giveup:redmutex:writers") == 0));
    assert!(g.create_rwlock("rw:giveup").try_read().unwrap().is_some());
    drop(r);
}

#[test]
fn a_dead_waiting_writers_intent_expires() {
    if let Some(spec) = worker::spec() {
        return rw_worker(&spec);
    }
    let cluster = RedisCluster::start(3);
    let coordinator = RedisCluster::start(1);
    let f = support::factory(&cluster).build().unwrap();
    let r = f.create_rwlock("rw:deadwriter").read().unwrap();
    let mut writer = Worker::spawn(
        test_name!(a_dead_waiting_writers_intent_expires),
        &spec(
            "write",
            coordinator.port(0),
            10_000,
            "rw:deadwriter",
            &cluster.urls(),
        ),
    );
    wait_for_token(&coordinator, &mut writer);
    assert!(deadline_loop(SOON * 2, || (0..3).all(|i| zcard(
        &cluster,
        i,
        "rw:deadwriter:redmutex:writers"
    ) == 1)));
    let reader = other(&cluster).create_rwlock("rw:deadwriter");
    assert!(reader.try_read().unwrap().is_none());
    writer.kill();
    let killed = Instant::now();
    // The intent lasts (with the writer's settings: `support::short_builder`) 2 × (5 + 5) +
    // 100 ms + connect 300 ms + 2 × I/O 200 ms = 820 ms after the writer's last attempt.
    let got = reader.reader().acquire_timeout(SOON).unwrap();
    let after = killed.elapsed();
    eprintln!(
        "[figures] rw dead waiting writer: readers let in {after:?} after its kill (intent 820 ms)"
    );
    assert!(after <= Duration::from_millis(2_000), "{after:?}");
    drop(got);
    drop(r);
}

/// The measured bound behind "writers are not starved": four reader threads, each holding for
/// `HOLD` and taking the lock again at once, staggered so that three or four readers are always
/// inside (the lock is never free). A writer asks; it gets in once the readers inside have left,
/// within `HOLD` plus a few rounds. A plain mutex waiter in the same stream (no preference) is
/// measured for contrast. The bound is generous for a loaded machine (a writer waited 2.06 s
/// once with both cores busy, against a 600 ms bound), and still far below `SOON`, the wait
/// after which a starved writer would give up.
#[test]
fn a_writer_is_not_starved_by_overlapping_readers() {
    const HOLD: Duration = Duration::from_millis(100);
    const BOUND: Duration = Duration::from_secs(4);
    const TRIALS: usize = 8;
    const CONTROL: Duration = Duration::from_millis(500);
    let cluster = RedisCluster::start(3);
    let readers_factory = support::factory(&cluster).build().unwrap();
    let writers = other(&cluster);
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let (waits, mutex_waits) = thread::scope(|s| {
        for t in 0..4u32 {
            let (f, stop, reads) = (&readers_factory, &stop, &reads);
            s.spawn(move || {
                thread::sleep(HOLD / 4 * t);
                let lock = f.create_rwlock("rw:starve");
                while !stop.load(Ordering::Acquire) {
                    let r = lock.reader().acquire_timeout(SOON).unwrap();
                    thread::sleep(HOLD);
                    reads.fetch_add(1, Ordering::Relaxed);
                    r.release().unwrap();
                }
            });
        }
        thread::sleep(HOLD * 3);
        let mut waits = Vec::new();
        let mut mutex_waits = Vec::new();
        let lock = writers.create_rwlock("rw:starve");
        let mutex = writers.create_lock("rw:starve");
        let mut busy = 0;
        for _ in 0..TRIALS {
            // The lock is held by readers when the writer asks (a single round says so).
            busy += usize::from(lock.try_write().unwrap().is_none());
            let t0 = Instant::now();
            let w = lock.writer().acquire_timeout(SOON).unwrap();
            waits.push(t0.elapsed());
            drop(w);
            thread::sleep(HOLD * 2);
            let t0 = Instant::now();
            mutex_waits.push(mutex.acquire_timeout(CONTROL).map(|_| t0.elapsed()));
            thread::sleep(HOLD * 2);
        }
        stop.store(true, Ordering::Release);
        // Most of the time on a quiet machine; on a loaded one the readers' overlap breaks
        // more often (3 of 8 once, with both cores busy), and a trial with the lock free
        // measures a wait of one round, within the bound all the same.
        assert!(
            busy * 4 >= TRIALS,
            "readers held the lock only {busy} of {TRIALS} times"
        );
        (waits, mutex_waits)
    });
    let p50 = percentile(&waits, 50.0);
    let max = percentile(&waits, 100.0);
    let mutex_in: Vec<Duration> = mutex_waits
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .copied()
        .collect();
    eprintln!(
        "[figures] rw starvation: {TRIALS} writers among 4 readers holding {HOLD:?} each \
         (overlapping, {} reads): writer waited p50={p50:?} max={max:?} (bound {BOUND:?}); \
         a plain mutex waiter got in {} of {TRIALS} times within {CONTROL:?}",
        reads.load(Ordering::Relaxed),
        mutex_in.len()
    );
    assert!(max <= BOUND, "a writer waited {max:?}: {waits:?}");
}

#[test]
fn upgrade_is_refused_at_once() {
    let cluster = RedisCluster::start(3);
    // Polls 5 s apart: a refusal that came only after a round and a wait would take seconds.
    let f = support::factory(&cluster)
        .retry_delay(WAKE_POLL)
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let lock = f.create_rwlock("rw:upgrade");
    let r = lock.read().unwrap();
    type Call<'a> = &'a dyn Fn() -> Result<(), Error>;
    let calls: [(&str, Call<'_>); 5] = [
        ("write", &|| lock.write().map(drop)),
        ("try_write", &|| lock.try_write().map(drop)),
        ("write_timeout", &|| {
            lock.writer().acquire_timeout(SOON).map(drop)
        }),
        ("write_with", &|| {
            lock.writer().acquire_with(Wait::forever()).map(drop)
        }),
        // Another handle of the same lock, from the same factory: the same.
        ("clone", &|| f.create_rwlock("rw:upgrade").write().map(drop)),
    ];
    for (what, call) in calls {
        let t0 = Instant::now();
        let e = call().unwrap_err();
        let took = t0.elapsed();
        assert!(matches!(e, Error::WouldDeadlock { .. }), "{what}: {e:?}");
        assert!(e.to_string().contains("cannot be upgraded"), "{e}");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }
    // Refused before any round: no intent keeps readers out.
    assert!((0..3).all(|i| zcard(&cluster, i, "rw:upgrade:redmutex:writers") == 0));
    assert!(lock.try_read().unwrap().is_some());
    // Another thread may wait for the write lock (it is not this thread's read lock)...
    thread::scope(|s| {
        let w = s.spawn(|| {
            lock.writer()
                .acquire_timeout(Duration::from_millis(150))
                .map(drop)
        });
        assert!(matches!(w.join().unwrap(), Err(Error::Timeout { .. })));
    });
    // ... and this thread may once it has let go of its read lock.
    drop(r);
    lock.write().unwrap().release().unwrap();
    eprintln!("[figures] rw upgrade: refused in under 1 s (polls {WAKE_POLL:?} apart), 0 rounds");
}

#[test]
fn downgrade_turns_the_writer_into_a_reader_in_one_step() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster)
        .ttl(Duration::from_secs(5))
        .keep_alive(true)
        .build()
        .unwrap();
    let probe = other(&cluster).create_rwlock("rw:down");
    let lock = f.create_rwlock("rw:down");
    let w = lock.write().unwrap();
    let token = w.token().to_owned();
    let lost = w.loss_signal();
    let r = w.downgrade().unwrap();
    assert_eq!(r.token(), token);
    assert!(r.is_valid() && r.validity() > Duration::from_secs(4));
    // The write guard's signal ended as after a release.
    assert_eq!(lost.wait_timeout(Duration::from_secs(1)), None);
    for i in 0..3 {
        // Our lone reader's marker, for at least as long as the writer had.
        assert_eq!(
            cluster.cmd(i, &["GET", "rw:down"]),
            format!("{MARKER}{token}")
        );
        let pttl: u64 = cluster.cmd(i, &["PTTL", "rw:down"]).parse().unwrap();
        assert!(pttl > 4_000, "{pttl}");
    }
    assert!(probe.try_write().unwrap().is_none());
    let r2 = probe.try_read().unwrap().expect("readers may join");
    // The read guard is a reader like any other: it is renewed (keep-alive carried over),
    // extended, released; now this thread holds a read lock, so it may not write.
    assert!(matches!(lock.try_write(), Err(Error::WouldDeadlock { .. })));
    thread::sleep(Duration::from_secs(2));
    assert!(r.validity() > Duration::from_secs(3), "{:?}", r.validity());
    r.extend(Duration::from_secs(8)).unwrap();
    r.release().unwrap();
    // (A third factory: this thread reads through `probe`'s.)
    let writer = other(&cluster).create_rwlock("rw:down");
    assert!(writer.try_write().unwrap().is_none(), "r2 still reads");
    drop(r2);
    assert!(writer.try_write().unwrap().is_some());
}

/// Downgrade under contention, history-checked: a thread writes, ticks, downgrades, reads and
/// ticks; its write section [a, b] and its read section [b, c] (from the tick before the
/// downgrade) must meet no writer, and the write section no reader, while other threads write,
/// read and take the mutex on the same name the whole time.
#[test]
fn downgrade_lets_no_writer_or_reader_slip_in() {
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let f = support::factory(&cluster).build().unwrap();
    let stop = AtomicBool::new(false);
    let records = Mutex::new(Vec::new());
    let contenders = thread::scope(|s| {
        let mut work = history::Workload::new("rw:downgrade", 4, 1, Duration::from_secs(3));
        work.resources = vec!["rw:downgrade".into()];
        work.hold = Duration::from_millis(1);
        work.roles = vec![
            history::Role::Read,
            history::Role::Write,
            history::Role::Read,
            history::Role::Mutex,
        ];
        let contenders = {
            let (f, w) = (&f, witness.port(0));
            s.spawn(move || history::run_workers(f, w, &work, &Arc::new(AtomicBool::new(false))))
        };
        let downgrader = s.spawn(|| {
            let mut witness = Witness::connect(witness.port(0));
            let lock = f.create_rwlock("rw:downgrade");
            let mut n = 0;
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end && !stop.load(Ordering::Acquire) {
                let t0 = Instant::now();
                let Ok(w) = lock.writer().acquire_timeout(SOON) else {
                    continue;
                };
                let took = t0.elapsed();
                let a = witness.tick();
                thread::sleep(Duration::from_millis(1));
                let write_valid = w.is_valid();
                let b = witness.tick();
                let r = w.downgrade().unwrap();
                thread::sleep(Duration::from_millis(1));
                let c = witness.tick();
                let read_valid = r.is_valid();
                let release_ok = r.release().is_ok();
                let rec = |start, end, valid, shared| Record {
                    worker: "downgrader".into(),
                    resource: "rw:downgrade".into(),
                    start,
                    end,
                    fencing: None,
                    valid_at_end: valid,
                    release_ok,
                    acquire: took,
                    during_fault: false,
                    shared,
                };
                let mut rs = records.lock().unwrap();
                rs.push(rec(a, b, write_valid, false));
                rs.push(rec(b, c, read_valid, true));
                n += 1;
            }
            n
        });
        let n = downgrader.join().unwrap();
        stop.store(true, Ordering::Release);
        (contenders.join().unwrap(), n)
    });
    let (mut run, downgrades) = contenders;
    run.records.extend(records.into_inner().unwrap());
    let check = history::report(
        "rw_downgrade",
        &run,
        0,
        &format!("downgrades={downgrades} {}", shared_figures(&run.records)),
    );
    history::assert_clean(&check);
    assert!(downgrades >= 5, "only {downgrades} downgrades");
    assert!(run.records.len() > downgrades * 2 + 10);
}

#[test]
fn a_reader_is_kept_alive_and_its_loss_is_signalled() {
    let cluster = RedisCluster::start(3);
    let f = support::short_factory(&cluster)
        .ttl(Duration::from_millis(600))
        .keep_alive(true)
        .build()
        .unwrap();
    let lock = f.create_rwlock("rw:alive");
    // A lone reader, then (its marker deleted from outside) a reader among others (its entry
    // removed from outside): keep-alive renews each, and the next renewal finds it gone.
    for lone in [true, false] {
        let company = (!lone).then(|| other(&cluster).create_rwlock("rw:alive").read().unwrap());
        let r = lock.read().unwrap();
        let lost = r.loss_signal();
        let (tx, rx) = std::sync::mpsc::channel();
        r.loss_signal()
            .on_loss(move |reason| tx.send(reason).unwrap());
        thread::sleep(Duration::from_millis(1_500));
        assert!(
            r.is_valid(),
            "keep-alive did not renew the reader (lone: {lone})"
        );
        assert!(!lost.is_lost());
        for i in 0..3 {
            if lone {
                cluster.cmd(i, &["DEL", "rw:alive"]);
            } else {
                cluster.cmd(i, &["ZREM", "rw:alive:redmutex:readers", r.token()]);
            }
        }
        assert_eq!(lost.wait_timeout(SOON), Some(LossReason::TokenGone));
        assert_eq!(rx.recv_timeout(SOON).unwrap(), LossReason::TokenGone);
        assert!(!r.is_valid());
        assert!(matches!(r.release(), Err(Error::LockLost { .. })));
        drop(company);
    }
}

#[test]
fn a_readers_extend_never_shortens_and_a_failed_one_changes_nothing() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    let lock = f.create_rwlock("rw:extend");
    // A lone reader (its marker), then one among others (its score).
    for lone in [true, false] {
        let company = (!lone).then(|| other(&cluster).create_rwlock("rw:extend").read().unwrap());
        let r = lock.read().unwrap();
        let expiries = || -> Vec<u64> {
            (0..3)
                .map(|i| expiry(&cluster, i, "rw:extend", r.token()).unwrap())
                .collect()
        };
        let first = expiries();
        let validity = r.validity();
        // Shorter: the nodes keep their expiry, and so does the guard.
        r.extend(Duration::from_secs(2)).unwrap();
        let same = expiries();
        assert!(
            same.iter().zip(&first).all(|(s, f)| s.abs_diff(*f) <= 2),
            "{same:?} vs {first:?}"
        );
        assert!(r.validity() > Duration::from_secs(9) && r.validity() <= validity);
        // Longer: both grow.
        r.extend(Duration::from_secs(30)).unwrap();
        let longer = expiries();
        assert!(longer.iter().zip(&first).all(|(l, f)| *l >= f + 19_000));
        assert!(r.validity() > Duration::from_secs(29));
        for i in 0..3 {
            let pttl: u64 = cluster.cmd(i, &["PTTL", "rw:extend"]).parse().unwrap();
            assert!(pttl > 29_000, "the marker did not follow: {pttl}");
        }
        // Two nodes frozen: no quorum, and the guard's validity does not move.
        cluster.stop(1);
        cluster.stop(2);
        let before = r.validity();
        assert!(matches!(
            r.extend(Duration::from_secs(60)),
            Err(Error::NoQuorum { .. })
        ));
        assert!(r.validity() <= before);
        cluster.cont(1);
        cluster.cont(2);
        let _ = r.release();
        drop(company);
        // Let the nodes' connections recover before the next round of the loop.
        assert!(deadline_loop(SOON, || lock
            .try_read()
            .is_ok_and(|r| r.is_some())));
        for i in 0..3 {
            cluster.cmd(i, &["FLUSHALL"]);
        }
    }
}

#[test]
fn a_waiting_writer_is_woken_by_the_last_readers_release() {
    let cluster = RedisCluster::start(3);
    // Polls 5 s apart: only a wake-up is fast.
    let f = support::factory(&cluster)
        .retry_delay(Duration::from_secs(5))
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let g = other(&cluster);
    let lock = g.create_rwlock("rw:wake");
    let readers: Vec<_> = (0..2).map(|_| lock.read().unwrap()).collect();
    thread::scope(|s| {
        let writer = s.spawn(|| {
            let w = f
                .create_rwlock("rw:wake")
                .writer()
                .acquire_timeout(SOON)
                .unwrap();
            (w, Instant::now())
        });
        assert!(deadline_loop(SOON, || (0..3).all(|i| zcard(
            &cluster,
            i,
            "rw:wake:redmutex:writers"
        ) == 1)));
        // Its intent comes with its first round; its waiting mark comes after it subscribed
        // to the releases, so from then on a release wakes it (a bare sleep here let the
        // release come first on a loaded machine, and the writer then waited for its poll).
        cluster.wait_waiting("rw:wake");
        let mut readers = readers.into_iter();
        readers.next().unwrap().release().unwrap();
        let last = Instant::now();
        readers.next().unwrap().release().unwrap();
        let (w, got) = writer.join().unwrap();
        let delay = got.duration_since(last);
        eprintln!(
            "[figures] rw wake-up: the writer got in {delay:?} after the last reader's release (polls 5 s apart)"
        );
        assert!(delay < Duration::from_millis(2_500), "{delay:?}");
        drop(w);
    });
}

// ---------------------------------------------------------------------------------------------
// The deadline rule for readers, as a property (as tests/it/deadline_rule.rs does for the
// mutex): a read guard's deadline never exceeds what a quorum of nodes holds for its token.

mod deadline {
    use super::*;
    use crate::support::proxy::{Proxy, ProxyHandle, fault, heal_all};
    use proptest::prelude::*;
    use redmutex::RwLockReadGuard;

    const SLACK: Duration = Duration::from_millis(25);

    #[derive(Debug, Clone, Copy)]
    enum Action {
        Extend(u64),
        Pause(u64),
        /// Another reader comes and goes (it moves the marker, never our entry).
        Neighbour,
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            (50u64..3_000).prop_map(Action::Extend),
            (20u64..300).prop_map(Action::Pause),
            Just(Action::Neighbour),
        ]
    }

    /// Until when a quorum (2 of 3) of nodes holds `token` as a reader of `name`, on this
    /// process's clock: each node is read atomically ([`EXPIRY_LUA`]), and its expiry placed
    /// after its own reply (an upper bound: a sampler stalled by a loaded machine cannot make up
    /// a violation, while a real one, the length of a lease, still shows).
    fn quorum_expiry(cons: &mut [redis::Connection], name: &str, token: &str) -> Instant {
        let sent = Instant::now();
        let mut held: Vec<Instant> = cons
            .iter_mut()
            .filter_map(|con| {
                let (now, expiry) = reader_expiry(con, name, token);
                let replied = Instant::now();
                expiry
                    .filter(|e| *e > now)
                    .map(|e| replied + Duration::from_millis(e - now))
            })
            .collect();
        held.sort_unstable_by(|a, b| b.cmp(a));
        held.get(1).copied().unwrap_or(sent)
    }

    /// Compares the read guard's deadline with the nodes until `stop`, counting the samples in
    /// `taken` as it goes; returns the worst excess seen.
    fn sample(
        guard: &RwLockReadGuard,
        cons: &mut [redis::Connection],
        stop: &AtomicBool,
        taken: &AtomicUsize,
    ) -> Option<Duration> {
        let mut worst: Option<Duration> = None;
        while !stop.load(Ordering::Acquire) {
            let deadline = Instant::now() + guard.validity();
            let held = quorum_expiry(cons, guard.resource(), guard.token());
            taken.fetch_add(1, Ordering::Release);
            if deadline > held + SLACK {
                let excess = deadline - held;
                worst = Some(worst.map_or(excess, |w| w.max(excess)));
            }
            thread::sleep(Duration::from_millis(2));
        }
        worst
    }

    /// The sampler itself can fail: read guards whose leases were shortened behind their backs
    /// on every node (a lone reader's marker, then a reader's score) are caught.
    #[test]
    fn the_sampler_sees_a_read_guard_believing_too_much() {
        let cluster = RedisCluster::start(3);
        let f = support::factory(&cluster)
            .ttl(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut cons: Vec<redis::Connection> = (0..3)
            .map(|i| crate::support::client::connect(cluster.port(i), SOON).unwrap())
            .collect();
        let lone = f.create_rwlock("rw:sanity").read().unwrap();
        for i in 0..3 {
            cluster.cmd(i, &["PEXPIRE", "rw:sanity", "1000"]);
        }
        let check = |guard: &RwLockReadGuard, cons: &mut [redis::Connection]| {
            let stop = AtomicBool::new(false);
            let taken = AtomicUsize::new(0);
            thread::scope(|s| {
                let sampler = s.spawn(|| sample(guard, cons, &stop, &taken));
                let sampled = deadline_loop(SOON, || taken.load(Ordering::Acquire) >= 5);
                stop.store(true, Ordering::Release);
                assert!(
                    sampled,
                    "the sampler took {} samples",
                    taken.load(Ordering::Acquire)
                );
                sampler.join().unwrap()
            })
        };
        let excess = check(&lone, &mut cons).expect("a 29 s excess went unnoticed (lone)");
        assert!(excess > Duration::from_secs(25), "{excess:?}");
        drop(lone);
        for i in 0..3 {
            cluster.cmd(i, &["FLUSHALL"]);
        }
        let first = other(&cluster).create_rwlock("rw:sanity").read().unwrap();
        let second = f.create_rwlock("rw:sanity").read().unwrap();
        for i in 0..3 {
            let soon = (server_ms(&cluster, i) + 1_000).to_string();
            cluster.cmd(
                i,
                &["ZADD", "rw:sanity:redmutex:readers", &soon, second.token()],
            );
        }
        let excess = check(&second, &mut cons).expect("a 29 s excess went unnoticed (set)");
        assert!(excess > Duration::from_secs(25), "{excess:?}");
        drop((first, second));
    }

    #[test]
    fn a_read_guards_deadline_never_exceeds_what_a_quorum_holds() {
        let cluster = RedisCluster::start(3);
        let proxies: Vec<Proxy> = (0..3).map(|i| Proxy::start(cluster.port(i))).collect();
        let handles: Vec<ProxyHandle> = proxies.iter().map(Proxy::handle).collect();
        // I/O timeout: below the faults' smallest delay (150 ms), so every fault outlasts it,
        // with room for a loaded machine's proxied round trips (as in `deadline_rule`).
        let factory = RedLockFactory::builder()
            .restart_quarantine(false)
            .nodes(proxies.iter().map(Proxy::url))
            .io_timeout(Duration::from_millis(140))
            .connect_timeout(Duration::from_millis(500))
            .keep_alive(true)
            .build()
            .unwrap();
        // How long a case waits for the lock once the last case's faults are healed: generous,
        // for a loaded machine on which many proxied rounds miss the I/O timeout.
        const RECOVERY: Duration = Duration::from_secs(15);
        let neighbours = support::factory(&cluster).build().unwrap();
        let connect = || -> Vec<redis::Connection> {
            (0..3)
                .map(|i| crate::support::client::connect(cluster.port(i), SOON).unwrap())
                .collect()
        };
        let case = AtomicUsize::new(0);
        let total = AtomicUsize::new(0);
        let skipped = AtomicUsize::new(0);
        let config = ProptestConfig {
            cases: 16,
            max_shrink_iters: 8,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(
            ttl_ms in 300u64..1_500,
            steps in prop::collection::vec((fault(), action()), 2..6),
        )| {
            heal_all(&handles);
            let n = case.fetch_add(1, Ordering::Relaxed);
            let name = format!("rw:deadline:{n}");
            let lock = factory
                .create_rwlock(name.as_str())
                .with_ttl(Duration::from_millis(ttl_ms));
            // A node that failed often in the last case backs off for up to 2 s, a blocking
            // acquisition failing at once meanwhile (seen: 3 of 16 cases skipped on a quiet
            // machine, "no quorum ... skipped while backing off" on 2 of 3 nodes): try again
            // until the nodes have recovered, as `deadline_rule` does.
            let reader = lock.reader();
            let got = support::acquire_recovering(RECOVERY, |left| reader.acquire_timeout(left));
            let Ok(guard) = got else {
                // Nodes still recovering after RECOVERY: nothing to check (counted, and
                // bounded below).
                skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            };
            let mut cons = connect();
            let stop = AtomicBool::new(false);
            let taken = AtomicUsize::new(0);
            let worst = thread::scope(|s| {
                let sampler = s.spawn(|| sample(&guard, &mut cons, &stop, &taken));
                for (fault, action) in &steps {
                    fault.apply(&handles);
                    match *action {
                        Action::Extend(ms) => {
                            let _ = guard.extend(Duration::from_millis(ms));
                        }
                        Action::Pause(ms) => thread::sleep(Duration::from_millis(ms)),
                        Action::Neighbour => {
                            if let Ok(Some(r)) = neighbours
                                .create_rwlock(name.as_str())
                                .with_ttl(Duration::from_millis(200))
                                .try_read()
                            {
                                drop(r);
                            }
                        }
                    }
                    heal_all(&handles);
                }
                thread::sleep(Duration::from_millis(450));
                stop.store(true, Ordering::Release);
                sampler.join().unwrap()
            });
            total.fetch_add(taken.load(Ordering::Acquire), Ordering::Relaxed);
            let _ = guard.release();
            prop_assert!(
                worst.is_none(),
                "the read guard believed {worst:?} more than a quorum held; steps {steps:?}"
            );
        });
        let samples = total.load(Ordering::Relaxed);
        let (cases, skipped) = (
            case.load(Ordering::Relaxed),
            skipped.load(Ordering::Relaxed),
        );
        eprintln!(
            "[figures] rw deadline rule (readers): {samples} samples over {cases} cases \
             ({skipped} skipped: no lock), 0 violations"
        );
        assert!(samples > 100, "the sampler barely ran ({samples} samples)");
        // A case that could not take the lock checked nothing: only a rare one may.
        assert!(
            skipped <= 2,
            "{skipped} of {cases} cases never got the lock"
        );
    }
}

/// The minimal ACL of operations.md: the mutex's commands plus the read-write lock's
/// (`TIME` and the sorted-set commands its scripts call), on the application's prefix.
#[test]
fn an_acl_user_limited_to_the_prefix_and_the_documented_commands_can_use_it() {
    const MUTEX: &[&str] = &[
        "+set",
        "+get",
        "+del",
        "+pexpire",
        "+pttl",
        "+exists",
        "+evalsha",
        "+eval",
        "+script|load",
        "+ping",
        "+publish",
        "+subscribe",
        "+unsubscribe",
    ];
    const RW: &[&str] = &[
        "+time",
        "+pexpireat",
        "+zadd",
        "+zrange",
        "+zrem",
        "+zremrangebyscore",
        "+zcount",
        "+zscore",
    ];
    let cluster = RedisCluster::start(3);
    let user = |commands: &[&str]| {
        for i in 0..3 {
            let mut args = vec!["ACL", "SETUSER", "locker", "reset", "on", ">pw", "-@all"];
            args.extend_from_slice(&["~app:*", "&app:*"]);
            args.extend_from_slice(commands);
            assert_eq!(cluster.cmd(i, &args), "OK");
        }
    };
    let factory = || {
        support::builder()
            .nodes((0..3).map(|i| format!("redis://locker:pw@127.0.0.1:{}", cluster.port(i))))
            .max_retries(0)
            .build()
            .unwrap()
    };
    // The mutex's commands alone: a reader that joins another is refused with a clear error.
    user(MUTEX);
    let (f, g) = (factory(), factory());
    let lone = f.create_rwlock("app:rw").read().unwrap();
    let e = g.create_rwlock("app:rw").try_read().unwrap_err();
    assert!(matches!(e, Error::NoQuorum { .. }), "{e:?}");
    assert!(e.to_string().contains("can't run this command"), "{e}");
    drop(lone);
    // With the read-write lock's commands: every path (both forms of readers, a waiting writer's
    // intent, a downgrade, extend, release).
    let mut all = MUTEX.to_vec();
    all.extend_from_slice(RW);
    user(&all);
    let (f, g) = (factory(), factory());
    let r1 = f.create_rwlock("app:rw").read().unwrap();
    let r2 = g.create_rwlock("app:rw").read().unwrap();
    r2.extend(Duration::from_secs(20)).unwrap();
    assert!(matches!(
        g.create_rwlock("app:rw")
            .writer()
            .acquire_timeout(Duration::from_millis(100)),
        Err(Error::WouldDeadlock { .. })
    ));
    thread::scope(|s| {
        let w = s.spawn(|| {
            factory()
                .create_rwlock("app:rw")
                .writer()
                .acquire_timeout(SOON)
        });
        assert!(deadline_loop(SOON, || (0..3).all(|i| zcard(
            &cluster,
            i,
            "app:rw:redmutex:writers"
        ) == 1)));
        r1.release().unwrap();
        r2.release().unwrap();
        let r = w.join().unwrap().unwrap().downgrade().unwrap();
        r.extend(Duration::from_secs(5)).unwrap();
        r.release().unwrap();
    });
}

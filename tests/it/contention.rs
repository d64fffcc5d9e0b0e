//! Mutual exclusion under contention: many threads, many keys, several processes. A witness
//! counts who is inside each critical section; it must never see two.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::support::worker::{self, Worker};
use crate::support::{self, RedisCluster, deadline_loop, port_cmd};
use crate::test_name;

/// Contenders poll hard: a retry every 1 to 5 ms.
const POLL: Duration = Duration::from_millis(1);
const POLL_JITTER: Duration = Duration::from_millis(4);
/// Generous timeouts for a loaded 2-core machine: this suite is about exclusion, not faults.
const IO_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on each witness command of the worker processes.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(5);

/// `threads` threads take `key_count` keys in turn, `rounds` times each; returns the
/// acquisitions per key. Panics if any key ever had two holders.
fn run_threads(n_nodes: usize, threads: usize, key_count: usize, rounds: usize) -> Vec<usize> {
    let cluster = RedisCluster::start(n_nodes);
    let factory = support::factory(&cluster)
        .retry_delay(POLL)
        .retry_jitter(POLL_JITTER)
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .unwrap();
    let inside: Arc<Vec<AtomicUsize>> =
        Arc::new((0..key_count).map(|_| AtomicUsize::new(0)).collect());
    let count: Arc<Vec<AtomicUsize>> =
        Arc::new((0..key_count).map(|_| AtomicUsize::new(0)).collect());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let factory = factory.clone();
            let inside = Arc::clone(&inside);
            let count = Arc::clone(&count);
            thread::spawn(move || {
                for r in 0..rounds {
                    let k = (t + r) % key_count;
                    let g = factory
                        .create_lock(format!("contention:{k}"))
                        .acquire()
                        .unwrap();
                    let before = inside[k].fetch_add(1, Ordering::SeqCst);
                    assert_eq!(before, 0, "two holders of key {k}");
                    thread::sleep(Duration::from_micros(200));
                    inside[k].fetch_sub(1, Ordering::SeqCst);
                    count[k].fetch_add(1, Ordering::SeqCst);
                    g.release().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Nothing left behind: the locks are gone, and the short-lived waiting marks expire.
    for i in 0..n_nodes {
        assert!(
            deadline_loop(Duration::from_secs(10), || cluster.cmd(i, &["DBSIZE"])
                == "0"),
            "node {i} kept keys: {}",
            cluster.cmd(i, &["KEYS", "*"])
        );
    }
    count.iter().map(|c| c.load(Ordering::SeqCst)).collect()
}

#[test]
fn many_threads_one_key_one_node() {
    let counts = run_threads(1, 8, 1, 25);
    assert_eq!(counts, [200]);
}

#[test]
fn many_threads_one_key_three_nodes() {
    let counts = run_threads(3, 8, 1, 25);
    assert_eq!(counts, [200]);
}

#[test]
fn many_threads_one_key_five_nodes() {
    let counts = run_threads(5, 6, 1, 20);
    assert_eq!(counts, [120]);
}

#[test]
fn many_threads_many_keys() {
    let counts = run_threads(3, 12, 4, 20);
    assert_eq!(counts.iter().sum::<usize>(), 240);
}

// ---------------------------------------------------------------------------------------------
// Several processes: the test runs itself again as the workers (`support::worker`). The
// witness is a separate Redis node: INCR on entry must return 1, and every entry is logged with
// the worker id.

/// One contending process. `spec` is `<id>;<rounds>;<witness port>;<url>,<url>,...`.
fn contend(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let (id, rounds, witness) = (parts[0], parts[1].parse::<usize>().unwrap(), parts[2]);
    let witness: u16 = witness.parse().unwrap();
    let factory = support::builder()
        .nodes(parts[3].split(','))
        .retry_delay(POLL)
        .retry_jitter(POLL_JITTER)
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .unwrap();
    let lock = factory.create_lock("processes");
    for _ in 0..rounds {
        let g = lock.acquire().unwrap();
        let n = port_cmd(witness, &["INCR", "inside"], WITNESS_TIMEOUT).unwrap();
        assert_eq!(n, "1", "worker {id}: {n} holders inside");
        port_cmd(witness, &["RPUSH", "log", id], WITNESS_TIMEOUT).unwrap();
        thread::sleep(Duration::from_millis(1));
        port_cmd(witness, &["DECR", "inside"], WITNESS_TIMEOUT).unwrap();
        g.release().unwrap();
    }
}

#[test]
fn several_processes_one_key() {
    if let Some(spec) = worker::spec() {
        return contend(&spec);
    }
    const WORKERS: usize = 4;
    const ROUNDS: usize = 25;
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let children: Vec<Worker> = (0..WORKERS)
        .map(|id| {
            let spec = format!(
                "{id};{ROUNDS};{};{}",
                witness.port(0),
                cluster.urls().join(",")
            );
            Worker::spawn(test_name!(several_processes_one_key), &spec)
        })
        .collect();
    for mut child in children {
        let status = child.wait();
        assert!(status.success(), "a worker process failed: {status}");
    }
    assert_eq!(witness.cmd(0, &["GET", "inside"]), "0");
    let log = witness.cmd(0, &["LRANGE", "log", "0", "-1"]);
    let mut per_worker: HashMap<&str, usize> = HashMap::new();
    for id in log.lines() {
        *per_worker.entry(id).or_default() += 1;
    }
    assert_eq!(
        per_worker.values().sum::<usize>(),
        WORKERS * ROUNDS,
        "{per_worker:?}"
    );
    assert_eq!(per_worker.len(), WORKERS);
    for i in 0..3 {
        assert!(deadline_loop(Duration::from_secs(10), || cluster
            .cmd(i, &["DBSIZE"])
            == "0"));
    }
}

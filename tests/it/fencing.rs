//! Fencing tokens: every grant of a resource gets a number larger than every earlier grant's,
//! in the order a witness saw the critical sections, across threads, processes, node kills and
//! delayed restarts.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::worker::{self, Worker};
use crate::support::{self, RedisCluster, deadline_loop, port_cmd};
use crate::test_name;

/// The lease of the fenced locks here; a killed node stays down longer than this.
const TTL: Duration = Duration::from_secs(2);
/// Nodes are killed under the workers: an acquisition rides out many failed rounds.
const RETRIES: u32 = 20;
/// Bound on each witness command of the worker processes.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a worker process's rounds, failed acquisitions included (30 rounds take a few
/// seconds, the node kills add about 5 s): past it, the worker fails.
const WORKER_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn tokens_increase_and_are_off_unless_asked_for() {
    let cluster = RedisCluster::start(3);
    let fenced = support::factory(&cluster)
        .fencing(true)
        .ttl(TTL)
        .max_retries(RETRIES)
        .build()
        .unwrap();
    let mut last = 0;
    for _ in 0..10 {
        let g = fenced.create_lock("fence:seq").acquire().unwrap();
        let t = g.fencing_token().unwrap();
        assert!(t > last, "{t} after {last}");
        last = t;
    }
    // The counter is its own key, on (at least) a quorum of nodes; the lock key is unchanged.
    let on_nodes: Vec<String> = (0..3)
        .map(|i| cluster.cmd(i, &["GET", "fence:seq:redmutex:fence"]))
        .collect();
    assert!(
        on_nodes.iter().filter(|v| **v == last.to_string()).count() >= 2,
        "{on_nodes:?}"
    );
    let plain = support::defaults(cluster.urls()).build().unwrap();
    let g = plain.create_lock("fence:seq").acquire().unwrap();
    assert_eq!(g.fencing_token(), None);
    drop(g);
    // Per lock.
    let g = plain
        .create_lock("fence:seq")
        .with_fencing(true)
        .acquire()
        .unwrap();
    assert_eq!(g.fencing_token(), Some(last + 1));
}

#[test]
fn diverged_counters_still_give_a_larger_token() {
    // The counter-example for "max of per-node INCRs": A=10, B=1, C=6. A quorum max-register
    // must never hand out a token below one already issued.
    let cluster = RedisCluster::start(3);
    for (i, v) in [(0, "10"), (1, "1"), (2, "6")] {
        cluster.cmd(i, &["SET", "div:redmutex:fence", v]);
    }
    let f = support::factory(&cluster)
        .fencing(true)
        .ttl(TTL)
        .max_retries(RETRIES)
        .build()
        .unwrap();
    let t1 = f
        .create_lock("div")
        .acquire()
        .unwrap()
        .fencing_token()
        .unwrap();
    assert_eq!(t1, 11);
    // The write-back reached the other nodes: a quorum without node 0 still sees 11.
    cluster.stop(0);
    let t2 = f
        .create_lock("div")
        .acquire()
        .unwrap()
        .fencing_token()
        .unwrap();
    assert!(t2 > t1, "{t2} <= {t1}");
    cluster.cont(0);
}

#[test]
fn a_paused_holders_token_is_smaller_than_the_next() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster)
        .fencing(true)
        .ttl(TTL)
        .max_retries(RETRIES)
        .build()
        .unwrap();
    let stale = f
        .create_lock("pause")
        .with_ttl(Duration::from_millis(300))
        .acquire()
        .unwrap();
    // The holder "pauses" past its lease; someone else takes the lock.
    assert!(deadline_loop(Duration::from_secs(5), || !stale.is_valid()));
    let next = f.create_lock("pause").acquire().unwrap();
    assert!(next.fencing_token() > stale.fencing_token());
    // The resource would reject the stale holder's late write.
    let resource_max = next.fencing_token().unwrap();
    assert!(stale.fencing_token().unwrap() < resource_max);
}

#[test]
fn threads_tokens_follow_the_witness_order() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster)
        .fencing(true)
        .ttl(TTL)
        .max_retries(RETRIES)
        .build()
        .unwrap();
    let history = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let f = f.clone();
            let history = Arc::clone(&history);
            thread::spawn(move || {
                for _ in 0..15 {
                    let g = f.create_lock("fence:threads").acquire().unwrap();
                    // The witness: the order in which critical sections ran.
                    history.lock().unwrap().push(g.fencing_token().unwrap());
                    g.release().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let history = history.lock().unwrap();
    assert_eq!(history.len(), 90);
    assert!(history.windows(2).all(|w| w[0] < w[1]), "{history:?}");
}

// Several processes (the test runs itself again as the workers, `support::worker`), with node
// kills and delayed restarts. The witness is a separate Redis node: each critical section
// appends its token to a list; the list must be increasing.

/// One worker process. `spec` is `<rounds>;<witness port>;<url>,<url>,...`.
fn fenced_worker(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let rounds: usize = parts[0].parse().unwrap();
    let witness: u16 = parts[1].parse().unwrap();
    let f = support::builder()
        .nodes(parts[2].split(','))
        .fencing(true)
        .ttl(TTL)
        .max_retries(RETRIES)
        .build()
        .unwrap();
    let lock = f.create_lock("fence:procs");
    let deadline = Instant::now() + WORKER_LIMIT;
    let (mut done, mut failed, mut last_error) = (0, 0, None);
    while done < rounds {
        assert!(
            Instant::now() < deadline,
            "worker: {done} of {rounds} rounds in {WORKER_LIMIT:?} ({failed} acquisitions \
             failed, the last with {last_error:?})"
        );
        // Nodes are being killed: a failed acquisition is retried (until the deadline).
        let g = match lock.acquire() {
            Ok(g) => g,
            Err(e) => {
                failed += 1;
                last_error = Some(e);
                continue;
            }
        };
        let t = g.fencing_token().unwrap().to_string();
        let n = port_cmd(witness, &["INCR", "inside"], WITNESS_TIMEOUT).unwrap();
        assert_eq!(n, "1", "two holders inside");
        port_cmd(witness, &["RPUSH", "tokens", &t], WITNESS_TIMEOUT).unwrap();
        port_cmd(witness, &["DECR", "inside"], WITNESS_TIMEOUT).unwrap();
        let _ = g.release();
        done += 1;
    }
}

#[test]
fn processes_tokens_follow_the_witness_order_through_kills_and_delayed_restarts() {
    if let Some(spec) = worker::spec() {
        return fenced_worker(&spec);
    }
    const WORKERS: usize = 3;
    const ROUNDS: usize = 30;
    // AOF keeps the counters of a crashed node; the restart is delayed past the TTL (2 s).
    let cluster = RedisCluster::start_with_args(3, support::AOF_ARGS);
    let witness = RedisCluster::start(1);
    let spec = format!("{ROUNDS};{};{}", witness.port(0), cluster.urls().join(","));
    let test =
        test_name!(processes_tokens_follow_the_witness_order_through_kills_and_delayed_restarts);
    let mut children: Vec<Worker> = (0..WORKERS).map(|_| Worker::spawn(test, &spec)).collect();
    // The workers give up after WORKER_LIMIT; this one is for a worker that hangs.
    let deadline = Instant::now() + WORKER_LIMIT + Duration::from_secs(30);
    let count = || {
        witness
            .cmd(0, &["LLEN", "tokens"])
            .parse::<usize>()
            .unwrap_or(0)
    };
    // Crash one node a third of the way in; bring it back (with its AOF) after the TTL.
    assert!(deadline_loop(Duration::from_secs(60), || count() >= 20));
    cluster.kill(1);
    std::thread::sleep(Duration::from_millis(2_500));
    cluster.restart_with_aof(1);
    assert!(deadline_loop(Duration::from_secs(60), || count() >= 50));
    cluster.kill(2);
    std::thread::sleep(Duration::from_millis(2_500));
    cluster.restart_with_aof(2);
    for child in &mut children {
        let Some(status) = child.wait_within(deadline.saturating_duration_since(Instant::now()))
        else {
            child.kill();
            panic!("worker {} did not end in time (hung?)", child.id());
        };
        assert!(status.success(), "a worker failed: {status}");
    }
    let tokens: Vec<u64> = witness
        .cmd(0, &["LRANGE", "tokens", "0", "-1"])
        .lines()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(tokens.len(), WORKERS * ROUNDS);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// Issue 18 (commands per acquisition): a lock without fencing tokens does not read its
/// fencing counter, even in the attempts of a wait (the acquire script, which marks the
/// resource as waited for). Before, those attempts read it all the same, for nothing: a counter
/// key that is not a number (here, another application's key of that name) made their replies
/// malformed, and a waiting acquisition failed.
#[test]
fn a_lock_without_fencing_does_not_read_the_counter_while_it_waits() {
    const RESOURCE: &str = "fencing:unread";
    let cluster = RedisCluster::start(3);
    let counter = format!("{RESOURCE}:redmutex:fence");
    let waiting = format!("{RESOURCE}:redmutex:waiting");
    for i in 0..3 {
        cluster.cmd(i, &["SET", &counter, "not a number"]);
    }
    let holder_factory = support::factory(&cluster).build().unwrap();
    let waiter_factory = support::factory(&cluster).max_retries(2).build().unwrap();
    let holder = holder_factory.create_lock(RESOURCE).acquire().unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let g = waiter_factory
                .create_lock(RESOURCE)
                .acquire_timeout(Duration::from_secs(60))?;
            let token = g.fencing_token();
            g.release().map(|()| token)
        });
        // The waiter's marking attempt ran on every node.
        assert!(
            deadline_loop(Duration::from_secs(30), || (0..3)
                .all(|i| cluster.cmd(i, &["EXISTS", &waiting]) == "1")),
            "the waiter never marked the resource"
        );
        holder.release().unwrap();
        let token = waiter.join().unwrap().expect("the waiting acquisition");
        assert_eq!(token, None, "no fencing token was asked for");
    });
    // Untouched.
    assert_eq!(cluster.cmd(0, &["GET", &counter]), "not a number");
}

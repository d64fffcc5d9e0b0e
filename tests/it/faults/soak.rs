//! A bounded soak with one node flapping, alone in a process of its own (the test runs itself
//! again, `support::worker`) so that the memory it samples is its own, not that of the other
//! tests of this binary. `REDMUTEX_SOAK_SECS` sets its length (default 30, at most 60).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::support::history::{self, Workload, run_workers};
use crate::support::{RedisCluster, deadline_loop};
use crate::support::{client, worker};
use crate::test_name;

const TTL: Duration = Duration::from_secs(1);

/// Lists, atomically on one node, how many keys it has and those without a positive TTL (each as
/// `<key> <PTTL>`).
const KEYS_WITHOUT_EXPIRY_LUA: &str = "local keys = redis.call('KEYS', '*') local bad = {} \
    for _, k in ipairs(keys) do local t = redis.call('PTTL', k) \
    if t < 0 then bad[#bad + 1] = k .. ' ' .. t end end return {#keys, bad}";

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn soak_one_node_flapping() {
    if worker::spec().is_none() {
        let out = worker::run_alone(test_name!(soak_one_node_flapping), "soak");
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprint!("{stderr}");
        assert!(
            out.status.success(),
            "the soak process failed ({}):\n{stderr}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        return;
    }
    let secs: u64 = std::env::var("REDMUTEX_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
        .clamp(5, 60);
    let duration = Duration::from_secs(secs);
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let factory = super::settings(cluster.urls())
        .pool_size(16)
        .build()
        .unwrap();
    let fault = Arc::new(AtomicBool::new(false));
    let stop = AtomicBool::new(false);
    let mut work = Workload::new("soak", 16, 64, duration);
    // Records go to the witness, so this process's memory is the library's, not the history's.
    work.push_to_witness = true;
    let (mut run, flaps, rss, (keys_seen, without_expiry)) = thread::scope(|s| {
        // Node 2 flaps: frozen for a while, then killed and kept down past the TTL (the
        // delayed-restart rule), then restarted empty.
        let flapper = s.spawn(|| {
            let mut flaps = 0;
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(700));
                cluster.stop(2);
                fault.store(true, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(500));
                cluster.cont(2);
                fault.store(false, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(700));
                fault.store(true, Ordering::SeqCst);
                cluster.kill(2);
                thread::sleep(TTL + Duration::from_millis(200));
                cluster.restart(2);
                fault.store(false, Ordering::SeqCst);
                flaps += 2;
            }
            flaps
        });
        let sampler = s.spawn(|| {
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                samples.push(rss_kib());
                thread::sleep(Duration::from_millis(500));
            }
            samples
        });
        // Every key the lock writes expires by itself: while the workers run, the keys on the
        // two nodes that never fail are looked at again and again (on node 2 a key may be lost,
        // never kept forever, and the node is often frozen or down).
        let expiries = s.spawn(|| {
            let mut cons: Vec<redis::Connection> = (0..2)
                .map(|i| client::connect(cluster.port(i), Duration::from_secs(5)).unwrap())
                .collect();
            let (mut seen, mut without_expiry) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                for (i, con) in cons.iter_mut().enumerate() {
                    let (n, bad): (usize, Vec<String>) = redis::cmd("EVAL")
                        .arg(KEYS_WITHOUT_EXPIRY_LUA)
                        .arg(0)
                        .query(con)
                        .unwrap();
                    seen += n;
                    without_expiry.extend(bad.into_iter().map(|k| format!("node {i}: {k}")));
                }
                thread::sleep(Duration::from_millis(300));
            }
            (seen, without_expiry)
        });
        let run = run_workers(&factory, witness.port(0), &work, &fault);
        stop.store(true, Ordering::SeqCst);
        (
            run,
            flapper.join().unwrap(),
            sampler.join().unwrap(),
            expiries.join().unwrap(),
        )
    });
    // Memory: after a warm-up fifth of the run, resident memory stays flat.
    let warm = rss[rss.len() / 5];
    let last = *rss.last().unwrap();
    let peak = *rss.iter().max().unwrap();
    run.records = history::fetch(witness.port(0));
    let series: Vec<u64> = rss.iter().step_by(4).map(|k| k / 1024).collect();
    eprintln!("[figures] soak VmRSS MiB every 2 s: {series:?}");
    // No key left once the TTL has passed.
    let drained = deadline_loop(TTL + Duration::from_secs(3), || {
        (0..3).all(|i| cluster.cmd(i, &["DBSIZE"]) == "0")
    });
    let check = history::report(
        "soak",
        &run,
        flaps,
        &format!(
            "{secs} s, 16 threads, 64 keys; VmRSS KiB warm={warm} last={last} peak={peak} \
             keys looked at during the run: {keys_seen}, without an expiry: {}; keys left \
             after TTL: {}",
            without_expiry.len(),
            if drained { 0 } else { 1 }
        ),
    );
    history::assert_clean(&check);
    assert!(drained, "keys leaked on the nodes");
    assert!(
        without_expiry.is_empty(),
        "keys without an expiry during the run: {without_expiry:?}"
    );
    // The check above looked at real keys (a few hundred rounds of dozens of keys).
    assert!(keys_seen > 100, "only {keys_seen} keys looked at");
    assert!(flaps > 0);
    assert!(check.sections > 1000, "{} acquisitions", check.sections);
    assert!(
        last.saturating_sub(warm) <= 16 * 1024,
        "resident memory grew from {warm} KiB to {last} KiB"
    );
}

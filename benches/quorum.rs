//! The quorum benchmark (issue 21): a round decides when a quorum has answered, not when the
//! slowest node has.
//!
//! `cargo bench --bench quorum` starts its own local `redis-server` nodes (the test harness in
//! tests/it/support) and prints one table plus one JSON line per result. `-- --quick` is a
//! short run; run as a test (`cargo test --benches`) it makes one tiny pass. Nothing here
//! asserts anything about speed.
//!
//! Scenarios:
//! 1. `distances`: 5 nodes behind the tests' delay proxy, each direction delayed by 1, 1, 5, 20
//!    and 40 ms (round trips of about 2, 2, 10, 40 and 80 ms). The `acquire()` + `release()`
//!    cycle's p50 and p90, against the third-fastest round trip (the quorum's slowest: a cycle
//!    is two rounds, so about 2x it is the limit) and the slowest round trip (what a client
//!    that waits for every node pays per round). The same with the slowest node stopped
//!    (SIGSTOP: it never answers) and killed (its connections refused), and the floor (raw
//!    commands written to every node, every reply read) for the wait-for-all cycle. With all
//!    nodes up and with the slowest stopped, also a semaphore's permit (of 4) acquired and
//!    released: its round decides at the quorum too.
//! 2. `loopback`: the uncontended cycle at 1, 3 and 5 local nodes against the overlapped floor
//!    (benches/support/floor.rs), runs alternated, in cycles per second and as a ratio. With
//!    `QUORUM_PEER` set to a command, it is run in the same alternation as
//!    `$QUORUM_PEER <seconds> <port>...` and must print its cycles per second (another client,
//!    e.g. node-redlock, installed outside the repository): the three are then measured on the
//!    same nodes in the same run.

// The integration tests' harness (redis-server processes and the delay proxy).
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod common;
// Only the cycle of the floor is used here.
#[allow(dead_code)]
#[path = "support/floor.rs"]
mod floor;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use redmutex::RedLockFactory;

use common::RedisCluster;
use common::proxy::Proxy;
use floor::Floor;

/// One-way delays of the `distances` scenario's nodes.
const ONE_WAY_MS: [u64; 5] = [1, 1, 5, 20, 40];
const TTL: Duration = Duration::from_secs(10);

struct Settings {
    mode: &'static str,
    /// Cycles measured per `distances` case.
    cycles: usize,
    /// Runs (alternated) and their length for `loopback`.
    runs: usize,
    run: Duration,
}

impl Settings {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        if has("--quick") {
            Self {
                mode: "quick",
                cycles: 60,
                runs: 3,
                run: Duration::from_millis(700),
            }
        } else if has("--bench") {
            // `cargo bench` passes `--bench`; `cargo test --benches` does not.
            Self::full()
        } else {
            Self {
                mode: "smoke",
                cycles: 5,
                runs: 1,
                run: Duration::from_millis(100),
            }
        }
    }

    fn full() -> Self {
        Self {
            mode: "full",
            cycles: 200,
            runs: 5,
            run: Duration::from_secs(2),
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median PING round trip through `url` (one connection, after one warm-up PING).
fn ping_rtt(url: &str) -> Duration {
    let client = redis::Client::open(url).expect("node URL");
    let mut con = client.get_connection().expect("connect through the proxy");
    let _: String = redis::cmd("PING").query(&mut con).expect("PING");
    let mut rtts: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let _: String = redis::cmd("PING").query(&mut con).expect("PING");
            t.elapsed()
        })
        .collect();
    rtts.sort();
    percentile(&rtts, 0.5)
}

/// `n` acquire + release cycles of one lock; the sorted durations.
fn cycles(factory: &RedLockFactory, key: &str, n: usize) -> Vec<Duration> {
    let lock = factory.create_lock(key);
    let mut out: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let guard = lock.acquire().expect("acquire");
            guard.release().expect("release");
            t.elapsed()
        })
        .collect();
    out.sort();
    out
}

/// `n` acquire + release cycles of a permit of a semaphore of 4; the sorted durations.
fn semaphore_cycles(factory: &RedLockFactory, key: &str, n: usize) -> Vec<Duration> {
    let sem = factory.create_semaphore(key, 4);
    let mut out: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let permit = sem.acquire().expect("acquire a permit");
            permit.release().expect("release the permit");
            t.elapsed()
        })
        .collect();
    out.sort();
    out
}

/// `n` floor cycles (every reply read); the sorted durations.
fn floor_cycles(urls: &[String], key: &str, n: usize) -> Vec<Duration> {
    let mut floor = Floor::connect(urls, TTL);
    floor.cycle(key);
    let mut out: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            floor.cycle(key);
            t.elapsed()
        })
        .collect();
    out.sort();
    out
}

struct Row {
    scenario: String,
    p50: Duration,
    p90: Duration,
    third: Duration,
    slowest: Duration,
}

fn distances(s: &Settings, out: &mut Vec<Row>) {
    let cluster = RedisCluster::start(ONE_WAY_MS.len());
    let proxies: Vec<Proxy> = ONE_WAY_MS
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = Proxy::start(cluster.port(i));
            p.set_latency(Duration::from_millis(*d));
            p
        })
        .collect();
    let urls: Vec<String> = proxies.iter().map(|p| p.url()).collect();
    let mut rtts: Vec<Duration> = urls.iter().map(|u| ping_rtt(u)).collect();
    rtts.sort();
    let third = rtts[2];
    let slowest = rtts[rtts.len() - 1];
    let factory = RedLockFactory::builder()
        .nodes(urls.clone())
        .restart_quarantine(false)
        .io_timeout(Duration::from_millis(500))
        .build()
        .expect("factory");
    // Warm-up: the round trips are learnt and the pools grow to what the slow nodes' readers
    // keep busy.
    let _ = cycles(&factory, "quorum-bench", 30);
    let mut row = |scenario: &str, c: Vec<Duration>, third: Duration, slowest: Duration| {
        out.push(Row {
            scenario: scenario.to_owned(),
            p50: percentile(&c, 0.5),
            p90: percentile(&c, 0.9),
            third,
            slowest,
        });
    };
    row(
        "distances: all up",
        cycles(&factory, "quorum-bench", s.cycles),
        third,
        slowest,
    );
    let _ = semaphore_cycles(&factory, "quorum-bench-sem", 10);
    row(
        "distances: semaphore, all up",
        semaphore_cycles(&factory, "quorum-bench-sem", s.cycles),
        third,
        slowest,
    );
    row(
        "distances: floor (every reply)",
        floor_cycles(&urls, "quorum-floor", s.cycles.min(40)),
        third,
        slowest,
    );
    // The slowest node stopped: it never answers (its round trip is then the I/O timeout).
    cluster.stop(ONE_WAY_MS.len() - 1);
    let _ = cycles(&factory, "quorum-bench", 10);
    row(
        "distances: slowest stopped",
        cycles(&factory, "quorum-bench", s.cycles),
        third,
        rtts[rtts.len() - 2],
    );
    row(
        "distances: semaphore, stopped",
        semaphore_cycles(&factory, "quorum-bench-sem", s.cycles),
        third,
        rtts[rtts.len() - 2],
    );
    cluster.cont(ONE_WAY_MS.len() - 1);
    // Killed: its connections are refused.
    cluster.kill(ONE_WAY_MS.len() - 1);
    let _ = cycles(&factory, "quorum-bench", 10);
    row(
        "distances: slowest killed",
        cycles(&factory, "quorum-bench", s.cycles),
        third,
        rtts[rtts.len() - 2],
    );
}

/// Runs the peer command (see the module's doc) on `ports` for `run`; its cycles per second.
fn peer(cmd: &str, run: Duration, ports: &[u16]) -> Option<f64> {
    let mut parts = cmd.split_whitespace();
    let out = std::process::Command::new(parts.next()?)
        .args(parts)
        .arg(format!("{}", run.as_secs_f64()))
        .args(ports.iter().map(u16::to_string))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Per node count: the library's, the floor's and the peer's (if any) cycles per second.
fn loopback(s: &Settings) -> Vec<(usize, f64, f64, Option<f64>)> {
    let mut rows = Vec::new();
    for n in [1, 3, 5] {
        let cluster = RedisCluster::start(n);
        let urls = cluster.urls();
        let factory = RedLockFactory::builder()
            .nodes(urls.clone())
            .restart_quarantine(false)
            .build()
            .expect("factory");
        let lock = factory.create_lock("quorum-loopback");
        let mut floor = Floor::connect(&urls, TTL);
        let (mut lib, mut raw, mut other) = (Vec::new(), Vec::new(), Vec::new());
        let peer_cmd = std::env::var("QUORUM_PEER").ok();
        let ports: Vec<u16> = (0..n).map(|i| cluster.port(i)).collect();
        // Warm-up of both.
        let end = Instant::now() + s.run / 2;
        while Instant::now() < end {
            drop(lock.acquire().expect("acquire"));
            floor.cycle("quorum-floor");
        }
        for _ in 0..s.runs {
            let rate = |f: &mut dyn FnMut()| {
                let start = Instant::now();
                let mut k = 0u64;
                while start.elapsed() < s.run {
                    f();
                    k += 1;
                }
                k as f64 / start.elapsed().as_secs_f64()
            };
            raw.push(rate(&mut || floor.cycle("quorum-floor")));
            lib.push(rate(&mut || {
                lock.acquire().expect("acquire").release().expect("release");
            }));
            if let Some(v) = peer_cmd.as_deref().and_then(|c| peer(c, s.run, &ports)) {
                other.push(v);
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let other = (!other.is_empty()).then(|| median(other));
        rows.push((n, median(lib), median(raw), other));
    }
    rows
}

fn main() {
    let s = Settings::from_args();
    let mut rows = Vec::new();
    distances(&s, &mut rows);
    let mut table = String::new();
    let _ = writeln!(
        table,
        "quorum bench ({}): one-way delays {ONE_WAY_MS:?} ms",
        s.mode
    );
    let _ = writeln!(
        table,
        "{:<32} {:>9} {:>9} {:>12} {:>12} {:>10}",
        "scenario", "p50 ms", "p90 ms", "3rd RTT ms", "slowest ms", "p50/3rd"
    );
    for r in &rows {
        let _ = writeln!(
            table,
            "{:<32} {:>9.2} {:>9.2} {:>12.2} {:>12.2} {:>10.2}",
            r.scenario,
            ms(r.p50),
            ms(r.p90),
            ms(r.third),
            ms(r.slowest),
            r.p50.as_secs_f64() / r.third.as_secs_f64()
        );
    }
    let lb = loopback(&s);
    let _ = writeln!(table, "loopback: uncontended cycle vs the overlapped floor");
    let _ = writeln!(
        table,
        "{:<8} {:>14} {:>14} {:>12} {:>12} {:>12}",
        "nodes", "cycles/s", "floor/s", "floor/cycle", "peer/s", "cycle/peer"
    );
    for (n, lib, raw, other) in &lb {
        let (o, r) = other.map_or((String::from("-"), String::from("-")), |o| {
            (format!("{o:.0}"), format!("{:.3}", lib / o))
        });
        let _ = writeln!(
            table,
            "{n:<8} {lib:>14.0} {raw:>14.0} {:>12.3} {o:>12} {r:>12}",
            raw / lib
        );
    }
    print!("{table}");
    for r in &rows {
        println!(
            "{{\"bench\":\"quorum\",\"scenario\":\"{}\",\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"third_rtt_ms\":{:.3},\"slowest_rtt_ms\":{:.3}}}",
            r.scenario,
            ms(r.p50),
            ms(r.p90),
            ms(r.third),
            ms(r.slowest)
        );
    }
    for (n, lib, raw, other) in &lb {
        let other = other.map_or(String::from("null"), |o| format!("{o:.0}"));
        println!(
            "{{\"bench\":\"quorum\",\"scenario\":\"loopback\",\"nodes\":{n},\"cycles_per_s\":{lib:.0},\"floor_per_s\":{raw:.0},\"peer_per_s\":{other}}}"
        );
    }
}

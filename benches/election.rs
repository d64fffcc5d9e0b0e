//! Figures for leader election (docs/benchmarks.md, "Leader election"):
//!
//! 1. `takeover`: a leader process is SIGKILLed while a follower (this process, its own factory)
//!    campaigns; the time from the kill to the follower's `campaign` returning, against the TTL.
//!    The leader renews every TTL/3, so its lease has between 2/3 of a TTL and a whole TTL left
//!    when it dies; nothing announces a death, so the follower notices by its retry polls
//!    (`retry_delay + jitter`, 50–100 ms by default). The kill comes at a random moment of the
//!    renewal cycle.
//! 2. `resign`: the leader resigns while a follower waits; the time from the `resign` call to the
//!    follower's `campaign` returning, against one raw round trip (`PING`) measured in the same
//!    run (the follower is woken by the release, then makes its three rounds).
//! 3. `observe`: an observer (its own factory) of an election whose leader proclaims a new value
//!    every few milliseconds; the time from `proclaim` returning to the observer's `wait`
//!    returning with that value (it may be zero: the observer can see the value before the
//!    leader's call returns), and from the proclaim call to the observer, against the round
//!    trip. Also the observer's delay after a takeover (a new leader's campaign returning).
//!
//! Prints one JSON line per result, and asserts nothing about speed.
//! `cargo bench --bench election [-- --quick]`; run as a test it makes a tiny pass.

// The integration tests' harness (starts and stops redis-server processes).
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rand::RngExt;
use redmutex::RedLockFactory;

/// Set in the leader process this bench starts: `<ttl ms>;<name>;<url>,...`.
const LEADER_ENV: &str = "REDMUTEX_BENCH_LEADER";

struct Mode {
    name: &'static str,
    ttls: Vec<Duration>,
    takeovers: usize,
    resigns: usize,
    proclaims: usize,
}

fn mode() -> Mode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--quick") {
        Mode {
            name: "quick",
            ttls: vec![Duration::from_secs(1)],
            takeovers: 3,
            resigns: 20,
            proclaims: 200,
        }
    } else if args.iter().any(|a| a == "--bench") {
        Mode {
            name: "full",
            ttls: vec![Duration::from_secs(1), Duration::from_secs(3)],
            takeovers: 10,
            resigns: 100,
            proclaims: 2_000,
        }
    } else {
        Mode {
            name: "smoke",
            ttls: vec![Duration::from_millis(500)],
            takeovers: 1,
            resigns: 2,
            proclaims: 10,
        }
    }
}

/// The library's defaults with `ttl`, and the restart quarantine off: the bench's nodes are
/// fresh (with it on, none would count for the longest TTL).
fn factory(urls: &[String], ttl: Duration) -> RedLockFactory {
    RedLockFactory::builder()
        .restart_quarantine(false)
        .nodes(urls.iter().map(String::as_str))
        .ttl(ttl)
        .build()
        .unwrap()
}

/// The leader process: campaign, say so on stdout, then lead until killed (a minute at most).
fn lead(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let ttl = Duration::from_millis(parts[0].parse().unwrap());
    let urls: Vec<String> = parts[2].split(',').map(str::to_owned).collect();
    let f = factory(&urls, ttl);
    let leader = f.create_election(parts[1]).campaign("doomed").unwrap();
    println!("leading {}", leader.term());
    // Until killed; should the bench die first, not for ever.
    thread::sleep(Duration::from_secs(60));
    drop(leader);
}

/// The 1-minute load average (from /proc/loadavg), or NaN.
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The median of one raw `PING` round trip to node 0.
fn round_trip(port: u16) -> Duration {
    let mut con = common::client::connect(port, Duration::from_secs(5)).unwrap();
    let mut v: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let _: String = redis::cmd("PING").query(&mut con).unwrap();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn quartiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration, Duration) {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (at(0.25), at(0.5), at(0.75), at(1.0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits until the follower marked the name as waited for on node 0 (it waits for the release).
fn wait_for_waiter(cluster: &common::RedisCluster, name: &str) {
    let mark = format!("{name}:redmutex:waiting");
    let end = Instant::now() + Duration::from_secs(10);
    while cluster.cmd(0, &["EXISTS", &mark]) != "1" && Instant::now() < end {
        thread::sleep(Duration::from_millis(1));
    }
}

fn takeover(m: &Mode, cluster: &common::RedisCluster) {
    let urls = cluster.urls();
    let exe = std::env::current_exe().unwrap();
    for &ttl in &m.ttls {
        let mut takes = Vec::new();
        for trial in 0..m.takeovers {
            let name = format!("bench:takeover:{}:{trial}", ttl.as_millis());
            let mut child = Command::new(&exe)
                .env(
                    LEADER_ENV,
                    format!("{};{name};{}", ttl.as_millis(), urls.join(",")),
                )
                .stdout(Stdio::piped())
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("leading"), "{line:?}");
            let f = factory(&urls, ttl);
            let election = f.create_election(name.as_str());
            let (tx, rx) = mpsc::channel();
            let follower = thread::spawn(move || {
                let leader = election.campaign("next").unwrap();
                tx.send(Instant::now()).unwrap();
                leader.resign().unwrap();
            });
            wait_for_waiter(cluster, &name);
            // A random moment of the leader's renewal cycle.
            let wait = rand::rng().random_range(0..u64::try_from(ttl.as_millis()).unwrap() / 3);
            thread::sleep(Duration::from_millis(wait));
            let killed = Instant::now();
            child.kill().unwrap();
            child.wait().unwrap();
            let took = rx.recv().unwrap().saturating_duration_since(killed);
            follower.join().unwrap();
            takes.push(took);
        }
        let (p25, p50, p75, max) = quartiles(takes.clone());
        let min = *takes.iter().min().unwrap();
        println!(
            "{{\"scenario\":\"takeover\",\"mode\":\"{}\",\"nodes\":3,\"ttl_ms\":{},\"trials\":{},\
             \"min_ms\":{:.1},\"p25_ms\":{:.1},\"p50_ms\":{:.1},\"p75_ms\":{:.1},\"max_ms\":{:.1},\
             \"p50_over_ttl\":{:.3},\"max_over_ttl\":{:.3},\"load\":{}}}",
            m.name,
            ttl.as_millis(),
            takes.len(),
            ms(min),
            ms(p25),
            ms(p50),
            ms(p75),
            ms(max),
            p50.as_secs_f64() / ttl.as_secs_f64(),
            max.as_secs_f64() / ttl.as_secs_f64(),
            load()
        );
    }
}

fn resign(m: &Mode, cluster: &common::RedisCluster) {
    let urls = cluster.urls();
    let rtt = round_trip(cluster.port(0));
    let ttl = Duration::from_secs(10);
    let a = factory(&urls, ttl);
    let b = factory(&urls, ttl);
    let mut handovers = Vec::new();
    for trial in 0..m.resigns {
        let name = format!("bench:resign:{trial}");
        let leader = a.create_election(name.as_str()).campaign("a").unwrap();
        let election = b.create_election(name.as_str());
        let (tx, rx) = mpsc::channel();
        let follower = thread::spawn(move || {
            let next = election.campaign("b").unwrap();
            tx.send(Instant::now()).unwrap();
            next.resign().unwrap();
        });
        wait_for_waiter(cluster, &name);
        let resigned = Instant::now();
        leader.resign().unwrap();
        handovers.push(rx.recv().unwrap().saturating_duration_since(resigned));
        follower.join().unwrap();
    }
    let (p25, p50, p75, max) = quartiles(handovers);
    println!(
        "{{\"scenario\":\"resign\",\"mode\":\"{}\",\"nodes\":3,\"trials\":{},\"round_trip_ms\":{:.3},\
         \"p25_ms\":{:.3},\"p50_ms\":{:.3},\"p75_ms\":{:.3},\"max_ms\":{:.3},\
         \"p50_over_round_trip\":{:.1},\"load\":{}}}",
        m.name,
        m.resigns,
        ms(rtt),
        ms(p25),
        ms(p50),
        ms(p75),
        ms(max),
        p50.as_secs_f64() / rtt.as_secs_f64(),
        load()
    );
}

fn observe(m: &Mode, cluster: &common::RedisCluster) {
    let urls = cluster.urls();
    let rtt = round_trip(cluster.port(0));
    let ttl = Duration::from_secs(10);
    let a = factory(&urls, ttl);
    let watcher = factory(&urls, ttl);
    let name = "bench:observe";
    let leader = a.create_election(name).campaign("v0").unwrap();
    let mut observer = watcher.create_election(name).observe();
    let first = observer.wait().unwrap();
    assert_eq!(first.value, "v0");
    let (tx, rx) = mpsc::channel::<(u64, Instant)>();
    let watching = thread::spawn(move || {
        while let Ok(l) = observer.wait() {
            let at = Instant::now();
            if tx.send((l.revision, at)).is_err() || l.value == "last" {
                break;
            }
        }
    });
    let (mut after_return, mut after_call, mut rounds) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=m.proclaims {
        let value = if i == m.proclaims {
            "last".to_owned()
        } else {
            format!("v{i}")
        };
        let called = Instant::now();
        leader.proclaim(value).unwrap();
        let returned = Instant::now();
        let rev = leader.revision();
        // Wait for the observer to report this revision before the next proclamation.
        let at = loop {
            let (seen, at) = rx.recv().unwrap();
            if seen >= rev {
                break at;
            }
        };
        after_return.push(at.saturating_duration_since(returned));
        after_call.push(at.saturating_duration_since(called));
        rounds.push(returned - called);
    }
    watching.join().unwrap();
    let (_, r50, _, _) = quartiles(rounds);
    let (c25, c50, c75, cmax) = quartiles(after_call);
    let (_, a50, a75, amax) = quartiles(after_return);
    println!(
        "{{\"scenario\":\"observe\",\"mode\":\"{}\",\"nodes\":3,\"changes\":{},\
         \"round_trip_ms\":{:.3},\"proclaim_p50_ms\":{:.3},\"from_call_p25_ms\":{:.3},\
         \"from_call_p50_ms\":{:.3},\"from_call_p75_ms\":{:.3},\"from_call_max_ms\":{:.3},\
         \"after_return_p50_ms\":{:.3},\"after_return_p75_ms\":{:.3},\"after_return_max_ms\":{:.3},\
         \"from_call_p50_over_round_trip\":{:.1},\"load\":{}}}",
        m.name,
        m.proclaims,
        ms(rtt),
        ms(r50),
        ms(c25),
        ms(c50),
        ms(c75),
        ms(cmax),
        ms(a50),
        ms(a75),
        ms(amax),
        c50.as_secs_f64() / rtt.as_secs_f64(),
        load()
    );
    drop(leader);
}

fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn main() {
    if let Ok(spec) = std::env::var(LEADER_ENV) {
        return lead(&spec);
    }
    let m = mode();
    let cluster = common::RedisCluster::start(3);
    if wanted("resign") {
        resign(&m, &cluster);
    }
    if wanted("observe") {
        observe(&m, &cluster);
    }
    if wanted("takeover") {
        takeover(&m, &cluster);
    }
}

//! The peers benchmark (issue 21): redmutex's uncontended cycle, the overlapped floor and other
//! Redlock clients' cycles, measured in one run on the same nodes, in paired rounds.
//!
//! Run it with `bash scripts/bench-peers.sh`, which installs the peers (node-redlock, under
//! `target/peers/`) and sets `REDMUTEX_PEERS`. Without that variable this bench prints one line
//! and measures nothing (so `cargo bench -- --quick` in CI needs no Node.js).
//!
//! `REDMUTEX_PEERS` is a `;`-separated list of `name=command`. Each command is started once per
//! node count as `command --serve PORT...` and must connect to `127.0.0.1:PORT...`, warm up,
//! print `ready`, then answer every line `SECONDS` on its stdin with its cycles per second over
//! a run of that length (one key, acquire + release, one client), and exit at the end of its
//! stdin (benches/peers/node-redlock.js does).
//!
//! Five local nodes are started (the tests' harness, killed on drop); the 1- and 3-node cases use
//! the first one and three of them. Per node count, after a warm-up of every client, `--rounds`
//! rounds (default 25; `--quick`: 5) each run every client for `--secs` seconds (default 0.5;
//! quick 0.4), in an order rotated by one each round, so that every client meets the same
//! machine load. Each figure is the median over the rounds, and every ratio is paired: taken
//! within one round, then the median over the rounds, with the middle half of them (p25–p75)
//! beside it; the JSON lines also give the lowest and highest round.
//!
//! - `floor`: benches/support/floor.rs, raw `SET NX PX` and compare-and-delete written to every
//!   node before any reply is read, one open connection per node, nothing else.
//! - `redmutex`: `acquire()` + `release()` with the library's defaults (the restart quarantine
//!   on, its bound the bench's TTL, measured once the fresh nodes' quarantine has ended), as the
//!   `cycle` scenario of benches/redlock.rs, but with the tests' longer timeouts (2 s: their value
//!   changes neither the commands nor which replies a round waits for; node-redlock has none).

// The integration tests' harness (redis-server processes).
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod common;
// Only the cycle of the floor is used here.
#[allow(dead_code)]
#[path = "support/floor.rs"]
mod floor;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use redmutex::RedLockFactory;

use common::RedisCluster;
use floor::Floor;

const TTL: Duration = Duration::from_secs(10);
const NODE_COUNTS: [usize; 3] = [1, 3, 5];

struct Settings {
    mode: &'static str,
    rounds: usize,
    run: Duration,
}

impl Settings {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .map(|v| {
                    v.parse::<f64>()
                        .unwrap_or_else(|_| panic!("{flag} takes a number, not {v:?}"))
                })
        };
        let quick = args.iter().any(|a| a == "--quick");
        let (mode, rounds, secs) = if quick {
            ("quick", 5, 0.4)
        } else {
            ("full", 25, 0.5)
        };
        Self {
            mode,
            rounds: value("--rounds").map_or(rounds, |r| r.max(1.0) as usize),
            run: Duration::from_secs_f64(value("--secs").unwrap_or(secs).max(0.05)),
        }
    }
}

/// A peer client's process (see the module's doc), killed and reaped on drop.
struct Peer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn start(name: &str, cmd: &str, ports: &[u16]) -> Self {
        let mut words = cmd.split_whitespace();
        let program = words
            .next()
            .unwrap_or_else(|| panic!("REDMUTEX_PEERS: {name} has no command"));
        let mut child = Command::new(program)
            .args(words)
            .arg("--serve")
            .args(ports.iter().map(u16::to_string))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start peer {name} ({cmd}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
        };
        let ready = peer.line(Duration::from_secs(60));
        assert_eq!(ready, "ready", "peer {name} did not start");
        peer
    }

    /// The next line the peer prints, within `limit`.
    fn line(&mut self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(line) => line.trim().to_owned(),
            Err(_) => panic!(
                "peer {} printed nothing within {limit:?} (exit status: {:?}); its stderr is above",
                self.name,
                self.child.try_wait()
            ),
        }
    }

    /// One run of `run`; the peer's cycles per second.
    fn rate(&mut self, run: Duration) -> f64 {
        let stdin = self.stdin.as_mut().expect("peer stdin");
        writeln!(stdin, "{}", run.as_secs_f64())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("peer {} stopped reading: {e}", self.name));
        let line = self.line(run * 10 + Duration::from_secs(30));
        line.parse()
            .unwrap_or_else(|_| panic!("peer {} printed {line:?}, not cycles/s", self.name))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The end of its stdin ends it; a kill makes sure.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The library's defaults with [`TTL`] and the restart quarantine on (its longest TTL the
/// bench's), once the quarantine of the bench's fresh nodes has ended on every node; the tests'
/// timeouts (the library's 100 ms I/O timeout is missed on a loaded 2-core machine: seen at load
/// 10, a release's `NoQuorum` ended a run).
fn quarantined_factory(urls: &[String]) -> RedLockFactory {
    let factory = RedLockFactory::builder()
        .nodes(urls.iter().map(String::as_str))
        .ttl(TTL)
        .longest_ttl(TTL)
        .io_timeout(common::IO_TIMEOUT)
        .connect_timeout(common::CONNECT_TIMEOUT)
        .build()
        .expect("factory");
    let lock = factory.create_lock("peers:quarantine:probe");
    let start = Instant::now();
    loop {
        let voting = factory
            .stats()
            .nodes
            .iter()
            .all(|n| n.durable.is_some() && n.quarantine.is_none());
        if voting && let Ok(Some(g)) = lock.try_acquire() {
            g.release().expect("release");
            return factory;
        }
        assert!(
            start.elapsed() < TTL + Duration::from_secs(30),
            "the fresh nodes' restart quarantine did not end"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` for `run`; calls per second.
fn rate(run: Duration, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    let mut k = 0u64;
    while start.elapsed() < run {
        f();
        k += 1;
    }
    k as f64 / start.elapsed().as_secs_f64()
}

/// Quantiles of a set of figures.
struct Spread {
    median: f64,
    p25: f64,
    p75: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p25: at(0.25),
            p75: at(0.75),
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    /// `median [p25–p75]`.
    fn text(&self) -> String {
        format!("{:.3} [{:.2}–{:.2}]", self.median, self.p25, self.p75)
    }

    /// `"name":median,"name_p25":..,"name_p75":..,"name_min":..,"name_max":..`.
    fn json(&self, name: &str, decimals: usize) -> String {
        let Self {
            median,
            p25,
            p75,
            min,
            max,
        } = self;
        format!(
            "\"{name}\":{median:.decimals$},\"{name}_p25\":{p25:.decimals$},\"{name}_p75\":{p75:.decimals$},\"{name}_min\":{min:.decimals$},\"{name}_max\":{max:.decimals$}"
        )
    }
}

/// One node count's result: every client's cycles per second, round by round
/// (`[0]` the floor, `[1]` redmutex, then the peers).
struct Case {
    nodes: usize,
    names: Vec<String>,
    rates: Vec<Vec<f64>>,
}

fn measure(s: &Settings, cluster: &RedisCluster, n: usize, peers: &[(String, String)]) -> Case {
    let urls = &cluster.urls()[..n];
    let ports: Vec<u16> = (0..n).map(|i| cluster.port(i)).collect();
    let factory = quarantined_factory(urls);
    let lock = factory.create_lock("peers:redmutex");
    let mut floor = Floor::connect(urls, TTL);
    let mut peers: Vec<Peer> = peers
        .iter()
        .map(|(name, cmd)| Peer::start(name, cmd, &ports))
        .collect();
    let mut names = vec![String::from("floor"), String::from("redmutex")];
    names.extend(peers.iter().map(|p| p.name.clone()));
    let clients = names.len();
    // One run of client `c`.
    let mut one = |c: usize, run: Duration| -> f64 {
        match c {
            0 => rate(run, &mut || floor.cycle("peers:floor")),
            1 => rate(run, &mut || {
                lock.acquire().expect("acquire").release().expect("release");
            }),
            _ => peers[c - 2].rate(run),
        }
    };
    for c in 0..clients {
        one(c, s.run);
    }
    let mut rates = vec![Vec::with_capacity(s.rounds); clients];
    for round in 0..s.rounds {
        for i in 0..clients {
            let c = (i + round) % clients;
            rates[c].push(one(c, s.run));
        }
    }
    Case {
        nodes: n,
        names,
        rates,
    }
}

fn main() {
    let Ok(peers) = std::env::var("REDMUTEX_PEERS") else {
        println!("peers bench: REDMUTEX_PEERS is not set; run `bash scripts/bench-peers.sh`");
        return;
    };
    let peers: Vec<(String, String)> = peers
        .split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (name, cmd) = p
                .split_once('=')
                .unwrap_or_else(|| panic!("REDMUTEX_PEERS: {p:?} is not name=command"));
            (name.trim().to_owned(), cmd.trim().to_owned())
        })
        .collect();
    let s = Settings::from_args();
    let cluster = RedisCluster::start(*NODE_COUNTS.iter().max().expect("node counts"));
    let cases: Vec<Case> = NODE_COUNTS
        .iter()
        .map(|&n| measure(&s, &cluster, n, &peers))
        .collect();
    println!(
        "peers bench ({}): {} paired rounds of {:.2} s per client and node count; cycles/s",
        s.mode,
        s.rounds,
        s.run.as_secs_f64()
    );
    println!(
        "(× floor = floor cycles/s ÷ client cycles/s within a round, 1.00 = as fast as the floor; \
         redmutex ÷ client > 1 = redmutex faster; median [middle half] over the rounds)"
    );
    println!(
        "{:<6} {:<18} {:>10} {:>22} {:>22}",
        "nodes", "client", "cycles/s", "× floor", "redmutex ÷ client"
    );
    let paired = |a: &[f64], b: &[f64]| Spread::of(a.iter().zip(b).map(|(x, y)| x / y).collect());
    let mut json = Vec::new();
    for case in &cases {
        for (c, name) in case.names.iter().enumerate() {
            let rate = Spread::of(case.rates[c].clone());
            let to_floor = paired(&case.rates[0], &case.rates[c]);
            let vs = paired(&case.rates[1], &case.rates[c]);
            let vs_text = if c >= 2 { vs.text() } else { String::from("-") };
            println!(
                "{:<6} {name:<18} {:>10.0} {:>22} {vs_text:>22}",
                case.nodes,
                rate.median,
                to_floor.text()
            );
            json.push(format!(
                "{{\"bench\":\"peers\",\"nodes\":{},\"client\":\"{name}\",\"rounds\":{},{},{},{}}}",
                case.nodes,
                case.rates[c].len(),
                rate.json("cycles_per_s", 0),
                to_floor.json("ratio_to_floor", 3),
                vs.json("redmutex_over_client", 3)
            ));
        }
    }
    for line in json {
        println!("{line}");
    }
}

//! Contention at scale (issue 18): many waiters on one lock, in one process and in several, next
//! to the uncontended cycle measured in the same run.
//!
//! Every scenario is 3 nodes, one key, library defaults (the restart quarantine off: the nodes
//! are fresh), each holder sleeping [`HOLD`] inside the lock:
//!
//! | scenario | waiters |
//! |---|---|
//! | `1x4`, `1x16`, `1x64`, `1x128` | one process of 4, 16, 64, 128 threads |
//! | `4x16` | four processes of 16 threads each |
//!
//! Each waiter runs in a worker process (this binary run again, `REDMUTEX_CONTENTION_WORKER`
//! set), so the one-process and the four-process rows pay the same costs; the workers start
//! together on the parent's word and run for the same time. Per scenario:
//!
//! - `acq_per_sec`, and its ratio to `ideal = 1 / (hold + cycle)` (`cycle`: the p50 of an
//!   uncontended acquire + release, timed by this process just before the scenario) and to the
//!   `1x4` row of the same run;
//! - the wait (one `acquire` call, from the call to the guard) p50 and p99, and the p99 against
//!   `2 × W × (hold + cycle)` for `W` waiters (the target for the 64-waiter rows: at most 1);
//! - the turns of the least and the most lucky thread, and their ratio (target: at least 0.5);
//! - the Redis commands node 0 ran per acquisition: the `calls` of `INFO commandstats`, summed
//!   over every command but `INFO` itself (which only this process sends), from before the
//!   workers start to after they end; commands run by scripts count (a script's `redis.call`s
//!   are counted as commands, and its `EVALSHA` as one more). Target for the 64-waiter rows: at
//!   most 1.5× the `1x4` figure of the same run;
//! - `errors`: failed `acquire` calls other than the timeout that ends a worker's run;
//! - in the JSON lines only: the local queue's hand-overs within a process
//!   (`handovers_per_acq`, from `Stats::local_handovers`) and its yields to other processes
//!   (`yields_per_acq`, `Stats::queue_yields`), the release announcements that woke a waiter
//!   (`wakeups_per_acq`), and the least against the most turns of one process
//!   (`process_least_vs_most`).
//!
//! `cargo bench --bench contention [-- --quick] [--secs S] [--runs N] [--only NAME]
//! [--breakdown]` (`--breakdown`: also each command's calls per acquisition on node 0); run as a
//! test (`cargo test --benches`) it makes one tiny pass. It prints a table and one JSON line per
//! scenario, with the machine's load average (`/proc/loadavg`) at the start and the end, and
//! asserts nothing about speed: the figures are ratios measured in one run on a machine that
//! may be shared.

// The integration tests' harness (starts and stops redis-server processes).
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use redmutex::{Error, RedLockFactory};

/// The environment variable that makes this binary a worker: `<threads>;<key>;<url>,<url>...`.
const WORKER_ENV: &str = "REDMUTEX_CONTENTION_WORKER";
/// How long a holder keeps the lock.
const HOLD: Duration = Duration::from_millis(1);
/// Nodes of every scenario.
const NODES: usize = 3;
/// The scenarios: (processes, threads per process).
const SCENARIOS: [(usize, usize); 5] = [(1, 4), (1, 16), (1, 64), (4, 16), (1, 128)];

#[derive(Debug, Clone)]
struct Settings {
    mode: &'static str,
    runs: usize,
    secs: f64,
    only: Option<String>,
    /// `--breakdown`: also print, per scenario, each command's calls per acquisition.
    breakdown: bool,
}

impl Settings {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let bench = args.iter().any(|a| a == "--bench");
        let quick = args.iter().any(|a| a == "--quick");
        let mut s = if quick {
            Self {
                mode: "quick",
                runs: 1,
                secs: 2.0,
                only: None,
                breakdown: false,
            }
        } else if bench {
            Self {
                mode: "full",
                runs: 3,
                secs: 4.0,
                only: None,
                breakdown: false,
            }
        } else {
            Self {
                mode: "smoke",
                runs: 1,
                secs: 0.3,
                only: None,
                breakdown: false,
            }
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--runs" => s.runs = parse::<usize>(it.next(), "--runs N").max(1),
                "--secs" => s.secs = parse::<f64>(it.next(), "--secs S").max(0.1),
                "--only" => s.only = Some(parse(it.next(), "--only NAME")),
                "--breakdown" => s.breakdown = true,
                _ => {}
            }
        }
        s
    }
}

fn parse<T: std::str::FromStr>(v: Option<&String>, usage: &str) -> T {
    v.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("usage: {usage}"))
}

fn progress(msg: &str) {
    eprintln!("[contention] {msg}");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// The nearest-rank `q` quantile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The library's defaults, on the bench's fresh nodes (the restart quarantine off).
fn factory(urls: &[String]) -> RedLockFactory {
    common::defaults(urls.iter().map(String::as_str))
        .build()
        .expect("factory")
}

// ---------------------------------------------------------------------------
// The worker: `threads` threads contending for `key` from the parent's "go" on.
// ---------------------------------------------------------------------------

/// What one worker thread saw.
struct ThreadRun {
    turns: u64,
    /// Each acquisition's wait, µs.
    waits: Vec<u64>,
    errors: u64,
}

fn worker(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let threads: usize = parts[0].parse().expect("worker threads");
    let key = parts[1].to_owned();
    let urls: Vec<String> = parts[2].split(',').map(str::to_owned).collect();
    let fac = factory(&urls);
    // Warm up: every thread once through the lock, so the pools hold their connections and
    // the scripts are loaded.
    thread::scope(|scope| {
        for _ in 0..threads.min(8) {
            scope.spawn(|| {
                let g = fac
                    .create_lock(format!("{key}:warmup"))
                    .acquire_timeout(Duration::from_secs(30))
                    .expect("warm-up acquire");
                g.release().expect("warm-up release");
            });
        }
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").expect("stdout");
    out.flush().expect("stdout");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    let millis: u64 = line
        .trim()
        .strip_prefix("go ")
        .and_then(|m| m.parse().ok())
        .expect("go <ms>");
    let end = Instant::now() + Duration::from_millis(millis);
    let runs: Vec<ThreadRun> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lock = fac.create_lock(key.as_str());
                scope.spawn(move || {
                    let mut run = ThreadRun {
                        turns: 0,
                        waits: Vec::with_capacity(1024),
                        errors: 0,
                    };
                    loop {
                        let asked = Instant::now();
                        if asked >= end {
                            break;
                        }
                        match lock.acquire_timeout(end - asked) {
                            Ok(guard) => {
                                let waited = asked.elapsed();
                                thread::sleep(HOLD);
                                if guard.release().is_err() {
                                    run.errors += 1;
                                }
                                run.turns += 1;
                                run.waits
                                    .push(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));
                            }
                            Err(Error::Timeout { .. }) => break,
                            Err(_) => run.errors += 1,
                        }
                    }
                    run
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("contender panicked"))
            .collect()
    });
    let join =
        |v: &mut dyn Iterator<Item = u64>| v.map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    writeln!(out, "turns {}", join(&mut runs.iter().map(|r| r.turns))).expect("stdout");
    writeln!(out, "errors {}", runs.iter().map(|r| r.errors).sum::<u64>()).expect("stdout");
    writeln!(
        out,
        "waits {}",
        join(&mut runs.iter().flat_map(|r| r.waits.iter().copied()))
    )
    .expect("stdout");
    let stats = fac.stats();
    writeln!(
        out,
        "stats rounds={} wakeups={} handovers={} yields={}",
        stats.rounds, stats.wakeups, stats.local_handovers, stats.queue_yields
    )
    .expect("stdout");
    out.flush().expect("stdout");
}

/// A worker process, killed on drop if it still runs.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(threads: usize, key: &str, urls: &[String]) -> Self {
        let spec = format!("{threads};{key};{}", urls.join(","));
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .env(WORKER_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("worker stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("worker output");
        assert!(!line.is_empty(), "a worker ended early");
        line.trim_end().to_owned()
    }

    fn go(&mut self, run: Duration) {
        let stdin = self.stdin.as_mut().expect("worker stdin");
        writeln!(stdin, "go {}", run.as_millis()).expect("worker stdin");
        stdin.flush().expect("worker stdin");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

/// Commands node 0 has run so far, by `INFO commandstats`, by command, every command but
/// `INFO`.
fn commands(cluster: &common::RedisCluster) -> BTreeMap<String, u64> {
    let info = cluster.cmd(0, &["INFO", "commandstats"]);
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest
                .split_once("calls=")?
                .1
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// What node 0 ran between two [`commands`] readings, by command.
fn commands_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The p50 of an uncontended acquire + release over `run` (µs).
fn cycle_p50(fac: &RedLockFactory, key: &str, run: Duration) -> f64 {
    let lock = fac.create_lock(key);
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < run {
        let t = Instant::now();
        let g = lock.acquire().expect("uncontended acquire");
        g.release().expect("release");
        samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    samples.sort_unstable();
    percentile(&samples, 0.5) / 1e3
}

/// One run of one scenario.
#[derive(Debug, Clone, Default)]
struct Run {
    acq_per_sec: f64,
    cycle_us: f64,
    wait_p50_us: f64,
    wait_p99_us: f64,
    least: f64,
    most: f64,
    commands_per_acq: f64,
    errors: f64,
    rounds_per_acq: f64,
    wakeups_per_acq: f64,
    handovers_per_acq: f64,
    yields_per_acq: f64,
    /// The least and the most turns of one process (equal with one process).
    process_least_vs_most: f64,
    acquisitions: u64,
    /// The commands node 0 ran, by command.
    by_command: BTreeMap<String, u64>,
}

fn scenario(
    cluster: &common::RedisCluster,
    solo: &RedLockFactory,
    processes: usize,
    threads: usize,
    run: Duration,
    n: usize,
) -> Run {
    let urls = &cluster.urls()[..NODES];
    let key = format!("bench:contention:{processes}x{threads}:{n}");
    let mut workers: Vec<Worker> = (0..processes)
        .map(|_| Worker::spawn(threads, &key, urls))
        .collect();
    for w in &mut workers {
        assert_eq!(w.line(), "ready");
    }
    let cycle_us = cycle_p50(solo, &format!("{key}:solo"), Duration::from_millis(300));
    let before = commands(cluster);
    for w in &mut workers {
        w.go(run);
    }
    let mut turns: Vec<u64> = Vec::new();
    let mut waits: Vec<u64> = Vec::new();
    let mut errors = 0u64;
    let (mut rounds, mut wakeups, mut handovers, mut yields) = (0u64, 0u64, 0u64, 0u64);
    let mut process_turns: Vec<u64> = Vec::new();
    for w in &mut workers {
        loop {
            let line = w.line();
            let (tag, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let numbers = || {
                rest.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<u64>().expect("a number"))
            };
            match tag {
                "turns" => {
                    process_turns.push(numbers().sum());
                    turns.extend(numbers());
                }
                "errors" => errors += rest.parse::<u64>().expect("errors"),
                "waits" => waits.extend(numbers()),
                "stats" => {
                    for kv in rest.split(' ') {
                        match kv.split_once('=') {
                            Some(("rounds", v)) => rounds += v.parse::<u64>().unwrap_or(0),
                            Some(("wakeups", v)) => wakeups += v.parse::<u64>().unwrap_or(0),
                            Some(("handovers", v)) => {
                                handovers += v.parse::<u64>().unwrap_or(0);
                            }
                            Some(("yields", v)) => yields += v.parse::<u64>().unwrap_or(0),
                            _ => {}
                        }
                    }
                    break;
                }
                other => panic!("unexpected worker line {other:?}"),
            }
        }
    }
    // Every thread stops asking at the end of the run (a call under way then ends within a
    // round): the run's length is the time the acquisitions were made in.
    let wall = run;
    let by_command = commands_between(&before, &commands(cluster));
    drop(workers);
    waits.sort_unstable();
    let acquisitions: u64 = turns.iter().sum();
    let per_acq = |x: u64| x as f64 / acquisitions.max(1) as f64;
    Run {
        acq_per_sec: acquisitions as f64 / wall.as_secs_f64(),
        cycle_us,
        wait_p50_us: percentile(&waits, 0.5),
        wait_p99_us: percentile(&waits, 0.99),
        least: turns.iter().copied().min().unwrap_or(0) as f64,
        most: turns.iter().copied().max().unwrap_or(0) as f64,
        commands_per_acq: per_acq(by_command.values().sum()),
        errors: errors as f64,
        rounds_per_acq: per_acq(rounds),
        wakeups_per_acq: per_acq(wakeups),
        handovers_per_acq: per_acq(handovers),
        yields_per_acq: per_acq(yields),
        process_least_vs_most: process_turns.iter().copied().min().unwrap_or(0) as f64
            / process_turns.iter().copied().max().unwrap_or(0).max(1) as f64,
        acquisitions,
        by_command,
    }
}

/// A scenario's figures over its runs (medians), with its targets.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    waiters: usize,
    figures: BTreeMap<&'static str, f64>,
}

impl Row {
    fn get(&self, k: &str) -> f64 {
        self.figures.get(k).copied().unwrap_or(f64::NAN)
    }

    fn json(&self) -> String {
        let mut s = format!(
            "{{\"scenario\":\"contended-{}\",\"nodes\":{NODES},\"waiters\":{}",
            self.name, self.waiters
        );
        for (k, v) in &self.figures {
            if v.is_finite() {
                let _ = write!(s, ",\"{k}\":{}", (v * 1000.0).round() / 1000.0);
            } else {
                let _ = write!(s, ",\"{k}\":null");
            }
        }
        s.push('}');
        s
    }
}

fn main() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker(&spec);
        return;
    }
    let s = Settings::from_args();
    let started = Instant::now();
    let load_start = loadavg();
    progress(&format!(
        "mode {}: {} run(s) of {} s per scenario, hold {HOLD:?}, {NODES} nodes; load {load_start}",
        s.mode, s.runs, s.secs
    ));
    let cluster = common::RedisCluster::start(NODES);
    let urls = cluster.urls();
    let solo = factory(&urls);
    cycle_p50(&solo, "bench:contention:warmup", Duration::from_millis(200));
    let run = Duration::from_secs_f64(s.secs);
    let picked: Vec<(usize, usize)> = SCENARIOS
        .into_iter()
        .filter(|(p, t)| {
            s.only
                .as_ref()
                .is_none_or(|o| format!("{p}x{t}") == *o || (*p, *t) == (1, 4))
        })
        .collect();
    let mut runs: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    for n in 0..s.runs {
        // A rotating order, so that the rows meet the same machine load on the whole.
        for k in 0..picked.len() {
            let (p, t) = picked[(n + k) % picked.len()];
            progress(&format!("run {}: {p} process(es) x {t} threads", n + 1));
            runs.entry((p, t))
                .or_default()
                .push(scenario(&cluster, &solo, p, t, run, n));
        }
    }
    let hold_us = HOLD.as_secs_f64() * 1e6;
    let mut rows: Vec<Row> = picked
        .iter()
        .map(|&(p, t)| {
            let rs = &runs[&(p, t)];
            let m = |f: fn(&Run) -> f64| median(rs.iter().map(f).collect());
            let waiters = p * t;
            let mut figures = BTreeMap::new();
            let cycle = m(|r| r.cycle_us);
            figures.insert("acq_per_sec", m(|r| r.acq_per_sec));
            figures.insert("cycle_us", cycle);
            figures.insert(
                "vs_ideal",
                median(
                    rs.iter()
                        .map(|r| r.acq_per_sec * (hold_us + r.cycle_us) / 1e6)
                        .collect(),
                ),
            );
            figures.insert("wait_p50_ms", m(|r| r.wait_p50_us) / 1e3);
            figures.insert("wait_p99_ms", m(|r| r.wait_p99_us) / 1e3);
            figures.insert(
                "wait_p99_vs_bound",
                median(
                    rs.iter()
                        .map(|r| r.wait_p99_us / (2.0 * waiters as f64 * (hold_us + r.cycle_us)))
                        .collect(),
                ),
            );
            figures.insert("least_turns", m(|r| r.least));
            figures.insert("most_turns", m(|r| r.most));
            figures.insert(
                "least_vs_most",
                median(rs.iter().map(|r| r.least / r.most.max(1.0)).collect()),
            );
            figures.insert("commands_per_acq", m(|r| r.commands_per_acq));
            figures.insert("rounds_per_acq", m(|r| r.rounds_per_acq));
            figures.insert("wakeups_per_acq", m(|r| r.wakeups_per_acq));
            figures.insert("handovers_per_acq", m(|r| r.handovers_per_acq));
            figures.insert("yields_per_acq", m(|r| r.yields_per_acq));
            figures.insert("process_least_vs_most", m(|r| r.process_least_vs_most));
            figures.insert("errors", m(|r| r.errors));
            Row {
                name: format!("{p}x{t}"),
                waiters,
                figures,
            }
        })
        .collect();
    // Ratios to the 1x4 row, run by run.
    let base = runs.get(&(1, 4)).cloned().unwrap_or_default();
    for (row, &(p, t)) in rows.iter_mut().zip(&picked) {
        let rs = &runs[&(p, t)];
        let paired =
            |f: fn(&Run) -> f64| median(rs.iter().zip(&base).map(|(r, b)| f(r) / f(b)).collect());
        row.figures.insert("rate_vs_1x4", paired(|r| r.acq_per_sec));
        row.figures
            .insert("commands_vs_1x4", paired(|r| r.commands_per_acq));
    }
    let load_end = loadavg();
    println!();
    println!(
        "redmutex contention benchmark, {} mode, medians of {} run(s) of {} s, {NODES} nodes, hold \
         {HOLD:?}, {} CPU(s), load {load_start} at the start and {load_end} at the end, {:.0} s",
        s.mode,
        s.runs,
        s.secs,
        thread::available_parallelism().map_or(0, usize::from),
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "| waiters | acq/s | vs 1x4 | vs ideal | cycle µs | wait p50 / p99 ms | p99 vs bound | \
         least / most | commands/acq | vs 1x4 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} / {:.1} | {:.2} | {:.0} / {:.0} ({:.2}) \
             | {:.1} | {:.2} |",
            r.name,
            r.get("acq_per_sec"),
            r.get("rate_vs_1x4"),
            r.get("vs_ideal"),
            r.get("cycle_us"),
            r.get("wait_p50_ms"),
            r.get("wait_p99_ms"),
            r.get("wait_p99_vs_bound"),
            r.get("least_turns"),
            r.get("most_turns"),
            r.get("least_vs_most"),
            r.get("commands_per_acq"),
            r.get("commands_vs_1x4"),
        );
    }
    println!();
    // The targets of the 64-waiter rows.
    for r in rows.iter().filter(|r| r.waiters == 64) {
        let check = |ok: bool| if ok { "ok" } else { "MISSED" };
        println!(
            "targets {}: rate >= 0.95 of 1x4: {} ({:.2}); wait p99 <= 2 x 64 x (hold + cycle): {} \
             ({:.2}); least >= half the most: {} ({:.2}); commands <= 1.5 x 1x4: {} ({:.2})",
            r.name,
            check(r.get("rate_vs_1x4") >= 0.95),
            r.get("rate_vs_1x4"),
            check(r.get("wait_p99_vs_bound") <= 1.0),
            r.get("wait_p99_vs_bound"),
            check(r.get("least_vs_most") >= 0.5),
            r.get("least_vs_most"),
            check(r.get("commands_vs_1x4") <= 1.5),
            r.get("commands_vs_1x4"),
        );
    }
    println!();
    if s.breakdown {
        // Each command's calls per acquisition on node 0, over all the runs of a scenario.
        for &(p, t) in &picked {
            let rs = &runs[&(p, t)];
            let acquisitions = rs.iter().map(|r| r.acquisitions).sum::<u64>().max(1) as f64;
            let mut total: BTreeMap<&str, u64> = BTreeMap::new();
            for r in rs {
                for (k, v) in &r.by_command {
                    *total.entry(k).or_default() += v;
                }
            }
            let parts: Vec<String> = total
                .iter()
                .map(|(k, v)| format!("{k} {:.2}", *v as f64 / acquisitions))
                .collect();
            println!("commands/acq {p}x{t}: {}", parts.join(", "));
        }
        println!();
    }
    for r in &rows {
        println!("{}", r.json());
    }
}

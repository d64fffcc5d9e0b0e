//! The redmutex benchmark: the lock against the raw Redis round trip (issue 7).
//!
//! `cargo bench` starts its own local `redis-server` nodes (the test harness in
//! tests/it/support), runs every scenario a few times, and prints one table plus one JSON line per
//! result. `cargo bench -- --quick` is the short run CI uses (under a minute). Run as a test
//! (`cargo test --benches`) it makes one tiny pass over every scenario. Nothing here asserts
//! anything about speed: the numbers are for people, and only the ratios to the floor, measured
//! in the same run, are meant to be compared across machines.
//!
//! Scenarios (docs/benchmarks.md explains each figure):
//! 1. `ping`, `floor`: one raw PING round trip, and the floor cycle (`SET key tok NX PX ttl`,
//!    then the compare-and-delete script by EVALSHA) over one already-open connection per node,
//!    written to every node before any reply is read. No library: the physical limit.
//! 2. `cycle`: `acquire()` + `release()` of one key by one thread (library defaults);
//!    `cycle-nowake`: the same with `wake_on_release(false)`. Scenarios 1 to 3 run at 1, 3, 5,
//!    7 and 9 nodes ([`NODE_COUNTS`]).
//! 3. `busy`, `busy-split`: `try_acquire()` of a lock held elsewhere on every node, and on a bare
//!    majority only (our SET lands on the minority and is taken back in a second round).
//! 4. `contended-*`: 4 threads on one key over 3 nodes, each holding it ~1 ms.
//! 5. `many-keys`, `many-keys-floor`: 1, 2, 4 threads on distinct keys.
//! 6. `footprint`: allocations per cycle, and the threads and RSS of a process holding many
//!    guards.
//!
//! Options (after `--`): `--quick`, `--runs N`, `--secs S` (length of one run), `--no-svg`,
//! `--profile cycle|nowake|floor|busy N` (only N operations on 3 nodes, or K with
//! `--nodes K`, for callgrind, DHAT or strace; collect inside `redlock::profiled`).

// The integration tests' harness (starts and stops redis-server processes); the benchmark
// uses a small part of it.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod common;
#[path = "support/floor.rs"]
mod floor;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use redmutex::{Error, RedLockFactory};

use floor::Floor;
use redmutex_bench_alloc as alloc;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// The TTL of the uncontended and contended locks (the library's default).
const TTL: Duration = Duration::from_secs(10);
/// The TTL of the keys that make a lock busy: longer than any run.
const HOLDER_TTL: Duration = Duration::from_secs(3600);
/// The TTL of the footprint's guards.
const FOOTPRINT_TTL: Duration = Duration::from_secs(60);
/// The retry delay and jitter of the "fair" contended comparison (the floor uses the same).
const FAIR_DELAY: Duration = Duration::from_millis(1);
const FAIR_JITTER: Duration = Duration::from_millis(1);
/// How long a contended holder keeps the lock.
const HOLD: Duration = Duration::from_millis(1);
const CONTENDERS: usize = 4;
const NODE_COUNTS: [usize; 5] = [1, 3, 5, 7, 9];
const MANY_KEYS_THREADS: [usize; 3] = [1, 2, 4];

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Settings {
    /// "full", "quick" or "smoke".
    mode: &'static str,
    runs: usize,
    /// Runs of the contended and many-keys scenarios (longer each).
    long_runs: usize,
    /// Length of one run of a single-thread scenario.
    run: Duration,
    /// Length of one contended or many-keys run.
    long_run: Duration,
    warmup: Duration,
    /// Guards held by the footprint scenario.
    guards: usize,
    svg: bool,
    profile: Option<(String, u64)>,
    /// Nodes of the profiling mode (`--nodes K`, default 3).
    profile_nodes: usize,
}

impl Settings {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let bench = args.iter().any(|a| a == "--bench");
        let quick = args.iter().any(|a| a == "--quick");
        let mut s = if quick {
            Self {
                mode: "quick",
                runs: 5,
                long_runs: 3,
                run: Duration::from_millis(100),
                long_run: Duration::from_millis(600),
                warmup: Duration::from_millis(50),
                guards: 2_000,
                svg: false,
                profile: None,
                profile_nodes: 3,
            }
        } else if bench {
            Self {
                mode: "full",
                runs: 21,
                long_runs: 7,
                run: Duration::from_millis(250),
                long_run: Duration::from_millis(1_500),
                warmup: Duration::from_millis(200),
                guards: 10_000,
                svg: true,
                profile: None,
                profile_nodes: 3,
            }
        } else {
            Self {
                mode: "smoke",
                runs: 1,
                long_runs: 1,
                run: Duration::from_millis(30),
                long_run: Duration::from_millis(100),
                warmup: Duration::from_millis(10),
                guards: 100,
                svg: false,
                profile: None,
                profile_nodes: 3,
            }
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--runs" => {
                    s.runs = parse::<usize>(it.next(), "--runs N").max(1);
                    s.long_runs = s.runs.div_ceil(3);
                }
                "--secs" => {
                    let secs: f64 = parse(it.next(), "--secs S");
                    s.run = Duration::from_secs_f64(secs.max(0.01));
                    s.long_run = s.run * 6;
                }
                "--no-svg" => s.svg = false,
                "--profile" => {
                    let what: String = parse(it.next(), "--profile cycle|nowake|floor|busy N");
                    let n: u64 = parse(it.next(), "--profile cycle|nowake|floor|busy N");
                    s.profile = Some((what, n));
                }
                "--nodes" => s.profile_nodes = parse(it.next(), "--nodes K (with --profile)"),
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

// ---------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------

/// One run of a scenario: operations per second and the per-operation latency percentiles.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Run {
    /// From per-operation times (ns) and the wall time of the run.
    fn from_samples(samples: &mut [u64], ops: usize, wall: Duration) -> Self {
        samples.sort_unstable();
        Self {
            ops_per_sec: ops as f64 / wall.as_secs_f64(),
            p50_us: percentile(samples, 0.50) / 1e3,
            p99_us: percentile(samples, 0.99) / 1e3,
        }
    }
}

/// The `q` quantile (nearest rank) of sorted samples.
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

/// Runs `op` back to back for `run` and times each call.
fn time_ops(run: Duration, mut op: impl FnMut()) -> Run {
    let cap = usize::try_from(run.as_micros() / 20).unwrap_or(1 << 20);
    let mut samples = Vec::with_capacity(cap.clamp(64, 1 << 22));
    let start = Instant::now();
    let mut t = start;
    loop {
        op();
        let now = Instant::now();
        samples.push(u64::try_from((now - t).as_nanos()).unwrap_or(u64::MAX));
        t = now;
        if now - start >= run {
            break;
        }
    }
    let ops = samples.len();
    Run::from_samples(&mut samples, ops, t - start)
}

/// One result line of the report.
#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    nodes: usize,
    threads: usize,
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    /// How many times slower than the floor at the same node count (and thread count), as the
    /// median of the runs' paired ratios: floor ops/s ÷ this scenario's ops/s.
    ratio_to_floor: Option<f64>,
    /// Scenario-specific figures, e.g. `allocs_per_op`.
    extra: Vec<(&'static str, f64)>,
}

impl Row {
    fn new(scenario: &str, nodes: usize, threads: usize, runs: &[Run]) -> Self {
        Self {
            scenario: scenario.to_owned(),
            nodes,
            threads,
            ops_per_sec: median(runs.iter().map(|r| r.ops_per_sec).collect()),
            p50_us: median(runs.iter().map(|r| r.p50_us).collect()),
            p99_us: median(runs.iter().map(|r| r.p99_us).collect()),
            ratio_to_floor: None,
            extra: Vec::new(),
        }
    }

    /// Sets the ratio from runs paired with the floor's runs of the same round.
    fn vs_floor(mut self, floor: &[Run], runs: &[Run]) -> Self {
        let mut ratios: Vec<f64> = floor
            .iter()
            .zip(runs)
            .map(|(f, r)| f.ops_per_sec / r.ops_per_sec)
            .collect();
        self.ratio_to_floor = Some(median(ratios.clone()));
        if ratios.len() >= 4 && !std::ptr::eq(floor, runs) {
            // The middle half of the paired ratios: how much to trust the median.
            ratios.sort_by(f64::total_cmp);
            let q = |p: f64| ratios[((ratios.len() - 1) as f64 * p).round() as usize];
            self.extra.push(("ratio_p25", q(0.25)));
            self.extra.push(("ratio_p75", q(0.75)));
        }
        self
    }

    fn with(mut self, key: &'static str, value: f64) -> Self {
        self.extra.push((key, value));
        self
    }

    fn json(&self) -> String {
        let mut s = format!(
            "{{\"scenario\":\"{}\",\"nodes\":{},\"threads\":{},\"ops_per_sec\":{},\"p50_us\":{},\"p99_us\":{},\"ratio_to_floor\":{}",
            self.scenario,
            self.nodes,
            self.threads,
            num(self.ops_per_sec, 1),
            num(self.p50_us, 1),
            num(self.p99_us, 1),
            self.ratio_to_floor.map_or("null".to_owned(), |r| num(r, 3)),
        );
        for (k, v) in &self.extra {
            let _ = write!(s, ",\"{k}\":{}", num(*v, 3));
        }
        s.push('}');
        s
    }
}

/// A JSON number (`null` for NaN), with at most `decimals` decimals.
fn num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "null".to_owned();
    }
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A figure for the table: thousands separated, fewer decimals as it grows.
fn human(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    if v >= 1000.0 {
        let n = v.round() as u64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

// ---------------------------------------------------------------------------
// Scenarios 1-3: single thread, by node count
// ---------------------------------------------------------------------------

/// The library's defaults with `ttl`, on the bench's fresh, throw-away nodes: the restart
/// quarantine off (with it on, every node younger than the longest TTL would not count). The
/// single-thread cycle is measured with it on instead ([`quarantined_factory`]).
fn factory(urls: &[String], ttl: Duration) -> RedLockFactory {
    common::defaults(urls.iter().map(String::as_str))
        .ttl(ttl)
        .build()
        .expect("factory")
}

/// The library's defaults with [`TTL`] and the restart quarantine on (its longest TTL the
/// bench's [`TTL`]), once the quarantine of the bench's fresh nodes has ended: the path every
/// default factory takes, with its vote-time check, measured by the single-thread cycle.
fn quarantined_factory(urls: &[String]) -> RedLockFactory {
    let fac = RedLockFactory::builder()
        .nodes(urls.iter().map(String::as_str))
        .ttl(TTL)
        .longest_ttl(TTL)
        .build()
        .expect("factory");
    let start = Instant::now();
    let lock = fac.create_lock("bench:quarantine:probe");
    loop {
        let stats = fac.stats();
        let voting = stats
            .nodes
            .iter()
            .all(|n| n.durable.is_some() && n.quarantine.is_none());
        if voting && let Ok(Some(g)) = lock.try_acquire() {
            g.release().expect("release");
            break;
        }
        assert!(
            start.elapsed() < TTL + Duration::from_secs(30),
            "the fresh nodes' restart quarantine did not end: {:?}",
            stats.nodes
        );
        thread::sleep(Duration::from_millis(100));
    }
    if start.elapsed() > Duration::from_secs(1) {
        progress(&format!(
            "waited {:.1} s for the fresh nodes' restart quarantine to end",
            start.elapsed().as_secs_f64()
        ));
    }
    fac
}

fn fair_factory(urls: &[String]) -> RedLockFactory {
    RedLockFactory::builder()
        .restart_quarantine(false)
        .nodes(urls.iter().map(String::as_str))
        .ttl(TTL)
        .retry_delay(FAIR_DELAY)
        .retry_jitter(FAIR_JITTER)
        .build()
        .expect("factory")
}

/// Allocations (on this thread) per call of `op`, averaged over `n` calls.
fn allocs_per_op(n: u64, mut op: impl FnMut()) -> (f64, f64) {
    let (a, b) = (alloc::thread_allocs(), alloc::thread_bytes());
    for _ in 0..n {
        op();
    }
    let allocs = (alloc::thread_allocs() - a) as f64 / n as f64;
    let bytes = (alloc::thread_bytes() - b) as f64 / n as f64;
    (allocs, bytes)
}

struct SingleThread {
    rows: Vec<Row>,
    /// Median PING round trip (µs) per node count.
    ping_us: HashMap<usize, f64>,
}

fn single_thread(s: &Settings, urls: &[String]) -> SingleThread {
    let mut rows = Vec::new();
    let mut ping_us = HashMap::new();
    for n in NODE_COUNTS {
        let urls = &urls[..n];
        progress(&format!("single thread, {n} node(s)"));
        let mut floor = Floor::connect(urls, TTL);
        let fac = quarantined_factory(urls);
        let cycle_key = format!("bench:cycle:{n}");
        let floor_key = format!("bench:floor:{n}");
        let lock = fac.create_lock(cycle_key.as_str());
        // The same cycle without wake-on-release, whose acquire runs a script instead of SET.
        let nowake_fac = RedLockFactory::builder()
            .restart_quarantine(false)
            .nodes(urls.iter().map(String::as_str))
            .ttl(TTL)
            .wake_on_release(false)
            .build()
            .expect("factory");
        let nowake = nowake_fac.create_lock(format!("bench:nowake:{n}"));
        let busy = fac.create_lock(format!("bench:busy:{n}"));
        let split = fac.create_lock(format!("bench:split:{n}"));
        // Someone else holds `busy` on every node, and `split` on a bare majority only, for
        // longer than the whole benchmark.
        let mut holder = Floor::connect(urls, HOLDER_TTL);
        let token = *b"someone-else-holds-this-lock-00000000000";
        let all = holder.all();
        assert_eq!(holder.set(all, busy.resource(), &token), all);
        let majority = (1u64 << (n / 2 + 1)) - 1;
        if n > 1 {
            assert_eq!(holder.set(majority, split.resource(), &token), majority);
        }

        let lib_cycle = || {
            let g = lock.acquire().expect("uncontended acquire");
            g.release().expect("release");
        };
        let nowake_cycle = || {
            let g = nowake.acquire().expect("uncontended acquire");
            g.release().expect("release");
        };
        let busy_try = || {
            let got = busy.try_acquire().expect("try_acquire on a busy lock");
            assert!(got.is_none(), "a lock held elsewhere was acquired");
        };
        let split_try = || {
            let got = split.try_acquire().expect("try_acquire on a busy lock");
            assert!(got.is_none(), "a lock held elsewhere was acquired");
        };

        // Warm up: pools connected, scripts loaded, caches hot.
        time_ops(s.warmup, || floor.cycle(&floor_key));
        time_ops(s.warmup, lib_cycle);
        time_ops(s.warmup, nowake_cycle);
        time_ops(s.warmup, busy_try);

        let (mut ping, mut fl, mut lib, mut nw, mut bz, mut sp) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        // Short runs, interleaved and in a rotating order, so that the floor and the library
        // meet the same machine load; each ratio pairs runs of the same round.
        for r in 0..s.runs {
            for k in 0..6 {
                match (r + k) % 6 {
                    0 => ping.push(time_ops(s.run, || floor.ping())),
                    1 => fl.push(time_ops(s.run, || floor.cycle(&floor_key))),
                    2 => lib.push(time_ops(s.run, lib_cycle)),
                    3 => nw.push(time_ops(s.run, nowake_cycle)),
                    4 => bz.push(time_ops(s.run, busy_try)),
                    _ if n > 1 => sp.push(time_ops(s.run, split_try)),
                    _ => {}
                }
            }
        }

        let count = if s.mode == "smoke" { 20 } else { 1_000 };
        let (floor_allocs, _) = allocs_per_op(count, || floor.cycle(&floor_key));
        let (lib_allocs, lib_bytes) = allocs_per_op(count, lib_cycle);
        let (nowake_allocs, _) = allocs_per_op(count, nowake_cycle);
        let (busy_allocs, _) = allocs_per_op(count, busy_try);

        let ping_row = Row::new("ping", n, 1, &ping);
        ping_us.insert(n, ping_row.p50_us);
        rows.push(ping_row);
        let floor_row = Row::new("floor", n, 1, &fl).vs_floor(&fl, &fl);
        let rtts = floor_row.p50_us / ping_us[&n];
        rows.push(
            floor_row
                .with("allocs_per_op", floor_allocs)
                .with("p50_in_pings", rtts),
        );
        rows.push(
            Row::new("cycle", n, 1, &lib)
                .vs_floor(&fl, &lib)
                .with("allocs_per_op", lib_allocs)
                .with("alloc_bytes_per_op", lib_bytes),
        );
        rows.push(
            Row::new("cycle-nowake", n, 1, &nw)
                .vs_floor(&fl, &nw)
                .with("allocs_per_op", nowake_allocs),
        );
        rows.push(
            Row::new("busy", n, 1, &bz)
                .vs_floor(&fl, &bz)
                .with("allocs_per_op", busy_allocs),
        );
        if n > 1 {
            rows.push(Row::new("busy-split", n, 1, &sp).vs_floor(&fl, &sp));
        }
    }
    SingleThread { rows, ping_us }
}

// ---------------------------------------------------------------------------
// Scenario 4: contended
// ---------------------------------------------------------------------------

/// One holding of the contended lock.
#[derive(Debug, Clone, Copy)]
struct Holding {
    thread: usize,
    /// When the holder started asking for the lock.
    asked: Instant,
    /// When `acquire` returned.
    acquired: Instant,
    /// When the holder began to release it (the end of its critical section).
    releasing: Instant,
    /// When its `release` returned.
    released: Instant,
}

#[derive(Debug, Clone, Copy, Default)]
struct Contended {
    run: Run,
    share_to_other: f64,
    other_p50_us: f64,
    other_p99_us: f64,
    /// Handoffs to a different thread, from the holder's `release` returning to the next
    /// holder's `acquire` returning (0 when the acquire returned first).
    after_release_p50_us: f64,
    /// Of those, the share (%) whose `acquire` returned before the `release` did.
    before_release_pct: f64,
    /// The p50 of an uncontended 3-node cycle timed just before this run (NaN for the floor).
    cycle_p50_us: f64,
    wait_p99_us: f64,
    min_per_thread: f64,
    max_per_thread: f64,
    overlaps: f64,
    errors: f64,
}

/// Turns every thread's holdings into the contended figures. A handoff is the time from the
/// start of a release to the return of the next `acquire`, by whichever thread; the handoffs to
/// another thread are also timed from the return of the release.
fn analyse(mut all: Vec<Holding>, wall: Duration, errors: usize) -> Contended {
    all.sort_by_key(|h| h.acquired);
    let mut gaps = Vec::new();
    let mut other = Vec::new();
    let mut after_release = Vec::new();
    let mut before_release = 0;
    let mut overlaps = 0;
    for w in all.windows(2) {
        if w[1].acquired < w[0].releasing {
            overlaps += 1; // two holders at once: must never happen
        }
        let gap = u64::try_from(
            w[1].acquired
                .saturating_duration_since(w[0].releasing)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        gaps.push(gap);
        if w[1].thread != w[0].thread {
            other.push(gap);
            if w[1].acquired < w[0].released {
                before_release += 1;
            }
            after_release.push(
                u64::try_from(
                    w[1].acquired
                        .saturating_duration_since(w[0].released)
                        .as_nanos(),
                )
                .unwrap_or(u64::MAX),
            );
        }
    }
    let mut waits: Vec<u64> = all
        .iter()
        .map(|h| u64::try_from((h.acquired - h.asked).as_nanos()).unwrap_or(u64::MAX))
        .collect();
    waits.sort_unstable();
    other.sort_unstable();
    after_release.sort_unstable();
    let mut per_thread = [0usize; CONTENDERS];
    for h in &all {
        per_thread[h.thread] += 1;
    }
    let handoffs = gaps.len();
    Contended {
        run: Run::from_samples(&mut gaps, all.len(), wall),
        share_to_other: if handoffs == 0 {
            f64::NAN
        } else {
            other.len() as f64 / handoffs as f64 * 100.0
        },
        other_p50_us: percentile(&other, 0.50) / 1e3,
        other_p99_us: percentile(&other, 0.99) / 1e3,
        after_release_p50_us: percentile(&after_release, 0.50) / 1e3,
        before_release_pct: if other.is_empty() {
            f64::NAN
        } else {
            f64::from(before_release) / other.len() as f64 * 100.0
        },
        cycle_p50_us: f64::NAN,
        wait_p99_us: percentile(&waits, 0.99) / 1e3,
        min_per_thread: per_thread.iter().copied().min().unwrap_or(0) as f64,
        max_per_thread: per_thread.iter().copied().max().unwrap_or(0) as f64,
        overlaps: f64::from(overlaps),
        errors: errors as f64,
    }
}

fn contended_library(fac: &RedLockFactory, key: &str, run: Duration) -> Contended {
    let start = Instant::now();
    let end = start + run;
    let results: Vec<(Vec<Holding>, usize)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..CONTENDERS)
            .map(|thread| {
                scope.spawn(move || {
                    let lock = fac.create_lock(key);
                    let mut held = Vec::with_capacity(4096);
                    let mut errors = 0;
                    loop {
                        let asked = Instant::now();
                        if asked >= end {
                            break;
                        }
                        match lock.acquire_timeout(end - asked) {
                            Ok(guard) => {
                                let acquired = Instant::now();
                                thread::sleep(HOLD);
                                let releasing = Instant::now();
                                if guard.release().is_err() {
                                    errors += 1;
                                }
                                held.push(Holding {
                                    thread,
                                    asked,
                                    acquired,
                                    releasing,
                                    released: Instant::now(),
                                });
                            }
                            Err(Error::Timeout { .. }) => break,
                            Err(_) => errors += 1,
                        }
                    }
                    (held, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("contender panicked"))
            .collect()
    });
    let wall = start.elapsed();
    let errors = results.iter().map(|r| r.1).sum();
    analyse(
        results.into_iter().flat_map(|r| r.0).collect(),
        wall,
        errors,
    )
}

fn contended_floor(urls: &[String], key: &str, run: Duration) -> Contended {
    let start = Instant::now();
    let end = start + run;
    let results: Vec<Vec<Holding>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..CONTENDERS)
            .map(|thread| {
                scope.spawn(move || {
                    let mut floor = Floor::connect(urls, TTL);
                    let mut held = Vec::with_capacity(4096);
                    let mut jitter = 0x9e37_79b9_7f4a_7c15_u64 ^ thread as u64;
                    let mut asked = Instant::now();
                    while Instant::now() < end {
                        let Some(tok) = floor.try_lock(key) else {
                            // The same retry policy as the fair library run.
                            jitter ^= jitter << 13;
                            jitter ^= jitter >> 7;
                            jitter ^= jitter << 17;
                            let extra = jitter % FAIR_JITTER.as_nanos() as u64;
                            thread::sleep(FAIR_DELAY + Duration::from_nanos(extra));
                            continue;
                        };
                        let acquired = Instant::now();
                        thread::sleep(HOLD);
                        let releasing = Instant::now();
                        let all = floor.all();
                        floor.del(all, key, &tok);
                        held.push(Holding {
                            thread,
                            asked,
                            acquired,
                            releasing,
                            released: Instant::now(),
                        });
                        asked = Instant::now();
                    }
                    held
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("contender panicked"))
            .collect()
    });
    let wall = start.elapsed();
    analyse(results.into_iter().flatten().collect(), wall, 0)
}

fn contended_row(name: &str, runs: &[Contended], floor: &[Contended], ping_us: f64) -> Row {
    let pick = |f: fn(&Contended) -> f64| median(runs.iter().map(f).collect());
    let plain: Vec<Run> = runs.iter().map(|c| c.run).collect();
    let floor_runs: Vec<Run> = floor.iter().map(|c| c.run).collect();
    let row = Row::new(name, 3, CONTENDERS, &plain).vs_floor(&floor_runs, &plain);
    let p50 = row.p50_us;
    let mut row = row
        .with("share_to_other_pct", pick(|c| c.share_to_other))
        .with("handoff_other_p50_us", pick(|c| c.other_p50_us))
        .with("handoff_other_p99_us", pick(|c| c.other_p99_us))
        .with("handoff_p50_in_pings", p50 / ping_us)
        .with(
            "handoff_after_release_p50_us",
            pick(|c| c.after_release_p50_us),
        );
    if runs.iter().any(|c| c.cycle_p50_us.is_finite()) {
        // Each run's ratio to the cycle timed just before it; the median of those.
        row = row.with("cycle_p50_us", pick(|c| c.cycle_p50_us)).with(
            "handoff_vs_cycle",
            pick(|c| c.after_release_p50_us / c.cycle_p50_us),
        );
    }
    row.with("before_release_pct", pick(|c| c.before_release_pct))
        .with("wait_p99_us", pick(|c| c.wait_p99_us))
        .with("min_per_thread", pick(|c| c.min_per_thread))
        .with("max_per_thread", pick(|c| c.max_per_thread))
        .with("overlaps", pick(|c| c.overlaps))
        .with("errors", pick(|c| c.errors))
}

fn contended(s: &Settings, urls: &[String], ping_us: f64) -> Vec<Row> {
    let urls = &urls[..3];
    progress("contended, 4 threads on one key, 3 nodes");
    let fair = fair_factory(urls);
    let default = factory(urls, TTL);
    // The uncontended cycle the handoff is compared with, timed just before each library run
    // (the machine's load drifts between the single-thread scenarios and these).
    let solo_factory = factory(urls, TTL);
    let solo = solo_factory.create_lock("bench:contended:solo");
    let solo_cycle = || {
        let g = solo.acquire().expect("uncontended acquire");
        g.release().expect("release");
    };
    // Warm up both factories' pools (4 connections per node each).
    contended_library(&fair, "bench:contended:fair", s.warmup);
    contended_library(&default, "bench:contended:default", s.warmup);
    time_ops(s.warmup, solo_cycle);
    let paired = |fac: &RedLockFactory, key: &str| {
        let cycle = time_ops(s.run, solo_cycle);
        Contended {
            cycle_p50_us: cycle.p50_us,
            ..contended_library(fac, key, s.long_run)
        }
    };
    let (mut fl, mut fa, mut de) = (vec![], vec![], vec![]);
    for _ in 0..s.long_runs {
        fl.push(contended_floor(urls, "bench:contended:floor", s.long_run));
        fa.push(paired(&fair, "bench:contended:fair"));
        de.push(paired(&default, "bench:contended:default"));
    }
    vec![
        contended_row("contended-floor-1ms", &fl, &fl, ping_us),
        contended_row("contended-1ms", &fa, &fl, ping_us),
        contended_row("contended-default", &de, &fl, ping_us),
    ]
}

// ---------------------------------------------------------------------------
// Scenario 5: many keys
// ---------------------------------------------------------------------------

/// `threads` threads each cycling their own key for `run`; aggregate ops/s and the merged
/// latency percentiles.
fn many_keys_run<'a>(
    threads: usize,
    run: Duration,
    op: &(dyn Fn(usize) -> Box<dyn FnMut() + 'a> + Sync),
) -> Run {
    let start = Instant::now();
    let per_thread: Vec<Vec<u64>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut f = op(t);
                    let mut samples = Vec::with_capacity(1 << 16);
                    let begin = Instant::now();
                    let mut last = begin;
                    while last - begin < run {
                        f();
                        let now = Instant::now();
                        samples.push(u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX));
                        last = now;
                    }
                    samples
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    let wall = start.elapsed();
    let mut all: Vec<u64> = per_thread.into_iter().flatten().collect();
    let ops = all.len();
    Run::from_samples(&mut all, ops, wall)
}

fn many_keys(s: &Settings, urls: &[String]) -> Vec<Row> {
    let urls = &urls[..3];
    let fac = factory(urls, TTL);
    let mut rows = Vec::new();
    for threads in MANY_KEYS_THREADS {
        progress(&format!("many keys, {threads} thread(s), 3 nodes"));
        let floor_op = |t: usize| -> Box<dyn FnMut() + '_> {
            let mut floor = Floor::connect(urls, TTL);
            let key = format!("bench:many:floor:{t}");
            Box::new(move || floor.cycle(&key))
        };
        let lib_op = |t: usize| -> Box<dyn FnMut() + '_> {
            let lock = fac.create_lock(format!("bench:many:{t}"));
            Box::new(move || {
                let g = lock.acquire().expect("uncontended acquire");
                g.release().expect("release");
            })
        };
        many_keys_run(threads, s.warmup, &lib_op);
        let (mut fl, mut lib) = (vec![], vec![]);
        for _ in 0..s.long_runs {
            fl.push(many_keys_run(threads, s.long_run / 3, &floor_op));
            lib.push(many_keys_run(threads, s.long_run / 3, &lib_op));
        }
        rows.push(Row::new("many-keys-floor", 3, threads, &fl).vs_floor(&fl, &fl));
        rows.push(Row::new("many-keys", 3, threads, &lib).vs_floor(&fl, &lib));
    }
    rows
}

// ---------------------------------------------------------------------------
// Scenario 6: footprint
// ---------------------------------------------------------------------------

fn os_threads() -> f64 {
    std::fs::read_dir("/proc/self/task").map_or(f64::NAN, |d| d.count() as f64)
}

fn rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn footprint(s: &Settings, urls: &[String]) -> Row {
    let urls = &urls[..3];
    progress(&format!("footprint: holding {} guards, 3 nodes", s.guards));
    // The factories of earlier scenarios are gone, but their background threads notice only
    // at their next wake-up: wait until the count settles.
    let mut idle = os_threads();
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(300));
        let now = os_threads();
        if now == idle {
            break;
        }
        idle = now;
    }
    let fac = factory(urls, FOOTPRINT_TTL);
    // Connected and warm before counting.
    for _ in 0..50 {
        drop(
            fac.create_lock("bench:hold:warm")
                .acquire()
                .expect("acquire"),
        );
    }
    let threads_before = os_threads();
    let rss_before = rss_kib();
    let heap_before = alloc::live_bytes();
    let locks: Vec<_> = (0..s.guards)
        .map(|i| fac.create_lock(format!("bench:hold:{i}")))
        .collect();
    let mut samples = Vec::with_capacity(s.guards);
    let mut guards = Vec::with_capacity(s.guards);
    let start = Instant::now();
    for lock in &locks {
        let t = Instant::now();
        guards.push(lock.acquire().expect("acquire a held guard"));
        samples.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let run = Run::from_samples(&mut samples, s.guards, start.elapsed());
    let threads_after = os_threads();
    let rss_after = rss_kib();
    let heap_after = alloc::live_bytes();
    let n = s.guards as f64;
    let row = Row::new("footprint", 3, 1, &[run])
        .with("guards", n)
        .with("os_threads_no_factory", idle)
        .with("os_threads_before", threads_before)
        .with("os_threads_holding", threads_after)
        .with("rss_kib_before", rss_before)
        .with("rss_kib_holding", rss_after)
        .with(
            "heap_bytes_per_guard",
            (heap_after as f64 - heap_before as f64) / n,
        );
    drop(guards); // each guard releases its key
    row
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | nodes | threads | ops/s | p50 µs | p99 µs | × floor | notes |\n|---|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for r in rows {
        let notes: Vec<String> = r
            .extra
            .iter()
            .map(|(k, v)| format!("{k} {}", human(*v)))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.nodes,
            r.threads,
            human(r.ops_per_sec),
            human(r.p50_us),
            human(r.p99_us),
            r.ratio_to_floor
                .map_or("-".to_owned(), |x| format!("{x:.2}")),
            notes.join(", "),
        );
    }
    out
}

fn find<'a>(rows: &'a [Row], scenario: &str, nodes: usize) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.nodes == nodes)
}

/// A hand-rolled SVG: cycle latency by node count (floor vs library) and contended throughput.
fn svg(rows: &[Row], title: &str) -> String {
    let (w, h) = (900.0, 400.0);
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>
"##,
        w / 2.0
    );
    let bar_panel = |s: &mut String,
                     x0: f64,
                     heading: &str,
                     unit: &str,
                     groups: &[(String, Vec<(f64, &str)>)],
                     legend: &[(&str, &str)],
                     ratio_of: Option<usize>| {
        let (pw, ph, top) = (380.0, 270.0, 70.0);
        let max = groups
            .iter()
            .flat_map(|g| g.1.iter().map(|b| b.0))
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.15;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="50" text-anchor="middle" font-size="13">{heading}</text>"#,
            x0 + pw / 2.0
        );
        // Axis and grid.
        for i in 0..=4 {
            let v = max * f64::from(i) / 4.0;
            let y = top + ph - ph * f64::from(i) / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                x0 + pw,
                x0 - 4.0,
                y + 4.0,
                human(v)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle" fill="#555">{unit}</text>"##,
            x0 - 48.0,
            top + ph / 2.0,
            x0 - 48.0,
            top + ph / 2.0
        );
        let gw = pw / groups.len() as f64;
        for (gi, (label, bars)) in groups.iter().enumerate() {
            let bw = (gw * 0.7) / bars.len() as f64;
            let gx = x0 + gw * gi as f64 + gw * 0.15;
            for (bi, (v, color)) in bars.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let bh = ph * v / max;
                let x = gx + bw * bi as f64;
                let y = top + ph - bh;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                    bw - 2.0,
                    x + bw / 2.0 - 1.0,
                    y - 3.0,
                    human(*v)
                );
            }
            if let Some(base) = ratio_of
                && bars.len() > base + 1
            {
                let ratio = bars[base + 1].0 / bars[base].0;
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">{ratio:.2}× floor</text>"##,
                    gx + gw * 0.35,
                    top + ph + 34.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                gx + gw * 0.35,
                top + ph + 18.0
            );
        }
        for (i, (name, color)) in legend.iter().enumerate() {
            let lx = x0 + 10.0 + 125.0 * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
                top + ph + 46.0,
                lx + 14.0,
                top + ph + 55.0
            );
        }
    };
    let (floor_c, lib_c, def_c, nowake_c) = ("#9aa5b1", "#2b6cb0", "#dd6b20", "#63b3ed");
    let latency: Vec<(String, Vec<(f64, &str)>)> = NODE_COUNTS
        .iter()
        .map(|&n| {
            let v = |sc: &str| find(rows, sc, n).map_or(f64::NAN, |r| 1e6 / r.ops_per_sec);
            (
                format!("{n} node{}", if n == 1 { "" } else { "s" }),
                vec![
                    (v("floor"), floor_c),
                    (v("cycle"), lib_c),
                    (v("cycle-nowake"), nowake_c),
                ],
            )
        })
        .collect();
    bar_panel(
        &mut s,
        70.0,
        "Uncontended acquire + release (mean µs per cycle; lower is better)",
        "µs per cycle",
        &latency,
        &[
            ("floor (raw Redis)", floor_c),
            ("redmutex", lib_c),
            ("no wake-up", nowake_c),
        ],
        Some(0),
    );
    let acq = |sc: &str| find(rows, sc, 3).map_or(f64::NAN, |r| r.ops_per_sec);
    let contended = vec![
        (
            "1 ms retry".to_owned(),
            vec![
                (acq("contended-floor-1ms"), floor_c),
                (acq("contended-1ms"), lib_c),
            ],
        ),
        (
            "defaults".to_owned(),
            vec![(acq("contended-default"), def_c)],
        ),
    ];
    bar_panel(
        &mut s,
        510.0,
        "4 threads, one key, 3 nodes, 1 ms hold (acquisitions/s)",
        "acquisitions/s",
        &contended,
        &[
            ("floor", floor_c),
            ("redmutex", lib_c),
            ("redmutex defaults", def_c),
        ],
        None,
    );
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------
// Profiling mode
// ---------------------------------------------------------------------------

/// Only `n` operations of one kind on `nodes` nodes (3 unless `--nodes K`), after a warm-up, so
/// a profiler sees little else.
fn profile(what: &str, n: u64, nodes: usize) {
    let cluster = common::RedisCluster::start(nodes);
    let urls = cluster.urls();
    let fac = quarantined_factory(&urls);
    let nowake = RedLockFactory::builder()
        .restart_quarantine(false)
        .nodes(urls.iter().map(String::as_str))
        .wake_on_release(false)
        .build()
        .expect("factory");
    let lock = if what == "nowake" {
        nowake.create_lock("bench:profile")
    } else {
        fac.create_lock("bench:profile")
    };
    let mut floor = Floor::connect(&urls, TTL);
    let busy = fac.create_lock("bench:profile:busy");
    let mut holder = Floor::connect(&urls, HOLDER_TTL);
    let all = holder.all();
    holder.set(all, busy.resource(), b"someone-else");
    for _ in 0..200 {
        floor.cycle("bench:profile:floor");
        drop(lock.acquire().expect("acquire"));
    }
    let mut op = || match what {
        "floor" => floor.cycle("bench:profile:floor"),
        "busy" => assert!(busy.try_acquire().expect("try_acquire").is_none()),
        _ => {
            let g = lock.acquire().expect("acquire");
            g.release().expect("release");
        }
    };
    for i in 0..cluster.len() {
        cluster.cmd(i, &["CONFIG", "RESETSTAT"]);
    }
    let start = Instant::now();
    let (allocs, bytes) = allocs_per_op(1, || profiled(n, &mut op));
    let (allocs, bytes) = (allocs / n as f64, bytes / n as f64);
    println!(
        "{what}: {n} ops in {:?}, {allocs:.1} allocations ({bytes:.0} bytes) per op",
        start.elapsed()
    );
    // The server's side of it: time per command on node 0 (Lua scripts run inside EVALSHA).
    for line in cluster.cmd(0, &["INFO", "commandstats"]).lines() {
        if let Some(stat) = line.strip_prefix("cmdstat_") {
            println!("  node 0 {stat}");
        }
    }
}

/// The measured loop of the profiling mode, never inlined so that a profiler can collect
/// only inside it: `valgrind --tool=callgrind --toggle-collect='redlock::profiled'`.
#[inline(never)]
fn profiled(n: u64, op: &mut dyn FnMut()) {
    for _ in 0..n {
        op();
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let s = Settings::from_args();
    if let Some((what, n)) = &s.profile {
        profile(what, *n, s.profile_nodes);
        return;
    }
    let started = Instant::now();
    progress(&format!(
        "mode {}: {} short run(s) per single-thread scenario, {} per threaded one; starting {} \
         redis-server nodes",
        s.mode,
        s.runs,
        s.long_runs,
        NODE_COUNTS[NODE_COUNTS.len() - 1]
    ));
    let cluster = common::RedisCluster::start(NODE_COUNTS[NODE_COUNTS.len() - 1]);
    let urls = cluster.urls();

    let single = single_thread(&s, &urls);
    let mut rows = single.rows;
    let ping3 = single.ping_us.get(&3).copied().unwrap_or(f64::NAN);
    rows.extend(contended(&s, &urls, ping3));
    rows.extend(many_keys(&s, &urls));
    rows.push(footprint(&s, &urls));

    let version = cluster.cmd(0, &["INFO", "server"]);
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    println!();
    println!(
        "redmutex benchmark, {} mode, medians of {} (threaded: {}) runs, redis {version}, {} CPU(s), {:.0} s",
        s.mode,
        s.runs,
        s.long_runs,
        thread::available_parallelism().map_or(0, usize::from),
        started.elapsed().as_secs_f64()
    );
    println!();
    print!("{}", table(&rows));
    println!();
    for r in &rows {
        println!("{}", r.json());
    }
    if s.svg {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.svg");
        let title = format!(
            "redmutex vs the raw Redis floor (redis {version}, loopback, {} CPUs; ratios are the claim)",
            thread::available_parallelism().map_or(0, usize::from)
        );
        match std::fs::write(path, svg(&rows, &title)) {
            Ok(()) => progress(&format!("wrote {path}")),
            Err(e) => progress(&format!("could not write {path}: {e}")),
        }
    }
}

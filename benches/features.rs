//! Figures for the features beyond a mutex (docs/features.md):
//!
//! 1. `fencing`: the cost of fencing tokens: an acquire + release cycle with fencing on against
//!    the same cycle with it off, interleaved run by run on the same 3 nodes (the expected
//!    price is one more round trip per acquisition).
//! 2. `keep-alive`: how many kept-alive guards one factory sustains with no lease running out:
//!    10,000 guards with a 30 s TTL over 3 nodes, held for longer than the TTL, watching every
//!    guard's validity (the quick mode uses a 3 s TTL, so that several renewal rounds happen in
//!    a few seconds).
//! 3. `observability`: the cost of the statistics (always on): an uncontended acquire + release
//!    cycle against the floor (the same commands with no library: `SET NX PX` on every node,
//!    then the compare-and-delete script, over one open connection per node, written to every
//!    node before any reply is read, as in benches/redlock.rs); and, with the `metrics`
//!    feature, the same cycle with a `MetricsHandler` and a Prometheus recorder installed
//!    against the cycle without them. Runs are interleaved in a rotating order, and each
//!    figure is the median of the per-run paired ratios.
//!
//! 3. `rwlock`: the cost of the read-write lock's scripts: a read cycle (read + release: a lone
//!    reader), a read cycle while another reader holds the lock (the readers' sorted set), and a
//!    write cycle (write + release), against the mutex cycle, interleaved run by run (in a
//!    rotating order) on the same 3 nodes; the claim is the read cycle within 1.2× the mutex's.
//!
//! 4. `semaphore-cycle`: an uncontended permit cycle (acquire + release of a semaphore of 4
//!    permits) against the mutex cycle, interleaved run by run on the same 3 nodes (both are
//!    one round to take and one to release: the target is within 1.2×).
//! 5. `multi-lock-8`: a multi-lock of 8 resources against one mutex cycle, interleaved (one
//!    round for the 8, not eight: the target is within 1.3×).
//!    Both also report the CPU time node 0 spends per cycle (`INFO cpu` before and after a few
//!    thousand cycles): on a machine whose cores the client and the nodes share, that is where
//!    the difference goes.
//! 6. `semaphore-contended`: 8 threads on 4 permits, each holding its permit 1 ms, with the
//!    library's defaults (wake-up on release): acquisitions per second against
//!    `permits / (hold + one uncontended mutex cycle)`, the mutex cycle measured just before
//!    each run (the target is at least 0.85 of it).
//!
//! The mutex cycle is measured by this file's own `rate` (no code is shared with
//! `benches/redlock.rs`, which has its own floor and cycle: its floor is not needed here, since
//! every figure is a ratio to the library's mutex cycle measured in the same run).
//!
//! Prints one JSON line per result, and asserts nothing about speed.
//! `cargo bench --bench features [-- --quick] [NAME]` (NAME: run only the scenarios whose name
//! contains it); run as a test it makes a tiny pass.

// The integration tests' harness (starts and stops redis-server processes); the benchmark
// uses a small part of it.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod common;
// The floor, as the `redlock` bench measures it; this bench uses only its cycle.
#[allow(dead_code)]
#[path = "support/floor.rs"]
mod floor;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redmutex::RedLockFactory;

use floor::Floor;

struct Mode {
    name: &'static str,
    runs: usize,
    run: Duration,
    /// Runs of each variant of the observability scenario, and the length of one.
    obs_runs: usize,
    obs_run: Duration,
    /// Length of one contended run.
    contended: Duration,
    /// Cycles over which a node's CPU time per cycle is measured.
    cpu_ops: u32,
    guards: usize,
    ttl: Duration,
    hold: Duration,
}

fn mode() -> Mode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--quick") {
        Mode {
            name: "quick",
            runs: 5,
            run: Duration::from_millis(300),
            obs_runs: 11,
            obs_run: Duration::from_millis(100),
            contended: Duration::from_secs(1),
            cpu_ops: 2_000,
            guards: 10_000,
            ttl: Duration::from_secs(3),
            hold: Duration::from_secs(7),
        }
    } else if args.iter().any(|a| a == "--bench") {
        Mode {
            name: "full",
            runs: 15,
            run: Duration::from_millis(500),
            obs_runs: 61,
            obs_run: Duration::from_millis(150),
            contended: Duration::from_secs(2),
            cpu_ops: 5_000,
            guards: 10_000,
            ttl: Duration::from_secs(30),
            hold: Duration::from_secs(40),
        }
    } else {
        // `cargo test --benches`: a smoke pass.
        Mode {
            name: "smoke",
            runs: 1,
            run: Duration::from_millis(50),
            obs_runs: 1,
            obs_run: Duration::from_millis(50),
            contended: Duration::from_millis(100),
            cpu_ops: 50,
            guards: 100,
            ttl: Duration::from_secs(1),
            hold: Duration::from_secs(2),
        }
    }
}

/// Acquire + release cycles per second on `lock`'s factory for `run`.
fn cycles(factory: &RedLockFactory, key: &str, run: Duration) -> f64 {
    let lock = factory.create_lock(key);
    rate(run, || lock.acquire().unwrap().release().unwrap())
}

/// How many times per second `op` runs, run back to back for `run`.
fn rate(run: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < run {
        op();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// The 1-minute load average (from /proc/loadavg), or NaN.
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Node 0's CPU time (user + system, from `INFO cpu`), in microseconds.
fn server_cpu_us(cluster: &common::RedisCluster) -> f64 {
    let info = cluster.cmd(0, &["INFO", "cpu"]);
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    (field("used_cpu_user:") + field("used_cpu_sys:")) * 1e6
}

/// The CPU time one node spends per `op` (node 0, over `n` ops): where the time of a cycle
/// goes when the client and the nodes share the machine's cores.
fn server_us_per_op(cluster: &common::RedisCluster, n: u32, mut op: impl FnMut()) -> f64 {
    let before = server_cpu_us(cluster);
    for _ in 0..n {
        op();
    }
    (server_cpu_us(cluster) - before) / f64::from(n)
}

/// `op` against the mutex cycle, interleaved run by run (alternating which goes first):
/// returns the medians of the mutex's and `op`'s rates and of the paired ratios mutex ÷ op.
fn against_mutex(
    m: &Mode,
    factory: &RedLockFactory,
    key: &str,
    mut op: impl FnMut(),
) -> (f64, f64, f64) {
    let lock = factory.create_lock(key);
    let mut mutex = || lock.acquire().unwrap().release().unwrap();
    rate(Duration::from_millis(50), &mut mutex);
    rate(Duration::from_millis(50), &mut op);
    let (mut base, mut other, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..m.runs {
        let (a, b) = if i % 2 == 0 {
            let a = rate(m.run, &mut mutex);
            (a, rate(m.run, &mut op))
        } else {
            let b = rate(m.run, &mut op);
            (rate(m.run, &mut mutex), b)
        };
        base.push(a);
        other.push(b);
        ratios.push(a / b);
    }
    (median(base), median(other), median(ratios))
}

fn semaphore_cycle(m: &Mode, cluster: &common::RedisCluster) {
    let factory = common::defaults(cluster.urls()).build().unwrap();
    let sem = factory.create_semaphore("bench:sem:cycle", 4);
    let before = load();
    let (mutex, permit, ratio) = against_mutex(m, &factory, "bench:sem:mutex", || {
        sem.acquire().unwrap().release().unwrap();
    });
    let lock = factory.create_lock("bench:sem:mutex");
    let cpu_mutex = server_us_per_op(cluster, m.cpu_ops, || {
        lock.acquire().unwrap().release().unwrap();
    });
    let cpu_permit = server_us_per_op(cluster, m.cpu_ops, || {
        sem.acquire().unwrap().release().unwrap();
    });
    println!(
        "{{\"scenario\":\"semaphore-cycle\",\"mode\":\"{}\",\"nodes\":3,\"permits\":4,\
         \"threads\":1,\"mutex_cycles_per_sec\":{mutex:.1},\"permit_cycles_per_sec\":{permit:.1},\
         \"ratio_to_mutex\":{ratio:.3},\"target\":1.2,\"node_cpu_us_per_mutex_cycle\":{cpu_mutex:.1},\
         \"node_cpu_us_per_permit_cycle\":{cpu_permit:.1},\"load_before\":{before},\"load_after\":{}}}",
        m.name,
        load()
    );
}

fn multi_lock(m: &Mode, cluster: &common::RedisCluster) {
    let factory = common::defaults(cluster.urls()).build().unwrap();
    let multi = factory.create_multi_lock((0..8).map(|i| format!("bench:multi:{i}")));
    let before = load();
    let (mutex, eight, ratio) = against_mutex(m, &factory, "bench:multi:mutex", || {
        multi.acquire().unwrap().release().unwrap();
    });
    let lock = factory.create_lock("bench:multi:mutex");
    let cpu_mutex = server_us_per_op(cluster, m.cpu_ops, || {
        lock.acquire().unwrap().release().unwrap();
    });
    let cpu_multi = server_us_per_op(cluster, m.cpu_ops, || {
        multi.acquire().unwrap().release().unwrap();
    });
    println!(
        "{{\"scenario\":\"multi-lock-8\",\"mode\":\"{}\",\"nodes\":3,\"resources\":8,\
         \"threads\":1,\"mutex_cycles_per_sec\":{mutex:.1},\"multi_cycles_per_sec\":{eight:.1},\
         \"ratio_to_mutex\":{ratio:.3},\"target\":1.3,\"node_cpu_us_per_mutex_cycle\":{cpu_mutex:.1},\
         \"node_cpu_us_per_multi_cycle\":{cpu_multi:.1},\"load_before\":{before},\"load_after\":{}}}",
        m.name,
        load()
    );
}

/// 8 threads on 4 permits, 1 ms holds: acquisitions per second, and the mean time a permit
/// was really held (a 1 ms sleep takes a little longer).
fn contended_permits(factory: &RedLockFactory, run: Duration) -> (f64, Duration, u64) {
    const THREADS: usize = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let held_ns = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let sem = factory.create_semaphore("bench:sem:contended", 4);
                let (stop, held_ns) = (Arc::clone(&stop), Arc::clone(&held_ns));
                s.spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let p = sem.acquire().unwrap();
                        let t = Instant::now();
                        std::thread::sleep(Duration::from_millis(1));
                        held_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        p.release().unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wall = start.elapsed();
    let total: u64 = counts.iter().sum();
    let least = counts.iter().copied().min().unwrap_or(0);
    let hold = Duration::from_nanos(held_ns.load(Ordering::Relaxed) / total.max(1));
    (total as f64 / wall.as_secs_f64(), hold, least)
}

fn semaphore_contended(m: &Mode, cluster: &common::RedisCluster) {
    const PERMITS: f64 = 4.0;
    let factory = common::defaults(cluster.urls()).build().unwrap();
    let lock = factory.create_lock("bench:sem:contended:mutex");
    let mut mutex = || lock.acquire().unwrap().release().unwrap();
    rate(Duration::from_millis(50), &mut mutex);
    contended_permits(&factory, Duration::from_millis(100));
    let before = load();
    let (mut ratios, mut ratios_measured, mut rates, mut cycles, mut holds) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut least = u64::MAX;
    let (mut scripts, mut acquisitions) = (0u64, 0f64);
    for _ in 0..m.runs {
        let cycle = 1.0 / rate(m.run, &mut mutex);
        let before = cluster.calls(0, "evalsha");
        let (per_sec, hold, fewest) = contended_permits(&factory, m.contended);
        scripts += cluster.calls(0, "evalsha") - before;
        acquisitions += per_sec * m.contended.as_secs_f64();
        // The limit with a nominal 1 ms hold, and with the hold really measured.
        let limit = PERMITS / (0.001 + cycle);
        let limit_measured = PERMITS / (hold.as_secs_f64() + cycle);
        ratios.push(per_sec / limit);
        ratios_measured.push(per_sec / limit_measured);
        rates.push(per_sec);
        cycles.push(cycle * 1e6);
        holds.push(hold.as_secs_f64() * 1e6);
        least = least.min(fewest);
    }
    println!(
        "{{\"scenario\":\"semaphore-contended\",\"mode\":\"{}\",\"nodes\":3,\"permits\":4,\
         \"threads\":8,\"hold_ms\":1,\"acquisitions_per_sec\":{:.1},\"mutex_cycle_us\":{:.1},\
         \"measured_hold_us\":{:.1},\"ratio_to_limit\":{:.3},\"ratio_to_limit_measured_hold\":{:.3},\
         \"target\":0.85,\"fewest_per_thread\":{least},\"node_scripts_per_acquisition\":{:.2},\
         \"load_before\":{before},\"load_after\":{}}}",
        m.name,
        median(rates),
        median(cycles),
        median(holds),
        median(ratios),
        median(ratios_measured),
        scripts as f64 / acquisitions.max(1.0),
        load()
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn fencing(m: &Mode, cluster: &common::RedisCluster) {
    let plain = common::defaults(cluster.urls()).build().unwrap();
    let fenced = RedLockFactory::builder()
        .restart_quarantine(false)
        .nodes(cluster.urls())
        .fencing(true)
        .build()
        .unwrap();
    // Warm both pools.
    cycles(&plain, "bench:fence:plain", Duration::from_millis(50));
    cycles(&fenced, "bench:fence:on", Duration::from_millis(50));
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..m.runs {
        // Alternate which goes first, so both meet the same load.
        let (a, b) = if i % 2 == 0 {
            let a = cycles(&plain, "bench:fence:plain", m.run);
            (a, cycles(&fenced, "bench:fence:on", m.run))
        } else {
            let b = cycles(&fenced, "bench:fence:on", m.run);
            (cycles(&plain, "bench:fence:plain", m.run), b)
        };
        off.push(a);
        on.push(b);
        ratios.push(a / b);
    }
    let (off, on, ratio) = (median(off), median(on), median(ratios));
    println!(
        "{{\"scenario\":\"fencing\",\"mode\":\"{}\",\"nodes\":3,\"threads\":1,\
         \"cycles_per_sec_off\":{off:.1},\"cycles_per_sec_on\":{on:.1},\
         \"ratio_on_to_off\":{ratio:.3},\"extra_us_per_cycle\":{:.1}}}",
        m.name,
        (1e6 / on) - (1e6 / off)
    );
}

fn keep_alive(m: &Mode, cluster: &common::RedisCluster) {
    let factory = RedLockFactory::builder()
        .restart_quarantine(false)
        .nodes(cluster.urls())
        .keep_alive(true)
        .ttl(m.ttl)
        .build()
        .unwrap();
    let acquiring = Instant::now();
    let guards: Vec<_> = (0..m.guards)
        .map(|i| {
            factory
                .create_lock(format!("bench:ka:{i}"))
                .acquire()
                .unwrap()
        })
        .collect();
    let acquired_in = acquiring.elapsed();
    let start = Instant::now();
    let mut min_validity = m.ttl;
    let mut lost = 0;
    let mut checks = 0u32;
    while start.elapsed() < m.hold {
        for g in &guards {
            let v = g.validity();
            min_validity = min_validity.min(v);
            if v.is_zero() {
                lost += 1;
            }
        }
        checks += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every key must still be there, with its TTL renewed.
    let pttl: i64 = cluster
        .cmd(0, &["PTTL", "bench:ka:0"])
        .parse()
        .unwrap_or(-2);
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
    println!(
        "{{\"scenario\":\"keep-alive\",\"mode\":\"{}\",\"nodes\":3,\"guards\":{},\
         \"ttl_ms\":{},\"held_ms\":{},\"renewal_rounds_per_guard\":{},\"leases_lost\":{lost},\
         \"min_validity_ms\":{},\"checks\":{checks},\"pttl_first_key_ms\":{pttl},\
         \"acquire_all_ms\":{},\"process_threads\":{threads}}}",
        m.name,
        m.guards,
        m.ttl.as_millis(),
        start.elapsed().as_millis(),
        start.elapsed().as_millis() / (m.ttl.as_millis() / 3).max(1),
        min_validity.as_millis(),
        acquired_in.as_millis(),
    );
    drop(guards);
}

/// Read cycles, write cycles and mutex cycles per second, interleaved run by run.
fn rwlock(m: &Mode, cluster: &common::RedisCluster) {
    let factory = common::defaults(cluster.urls()).build().unwrap();
    let mutex = factory.create_lock("bench:rw:mutex");
    let rw = factory.create_rwlock("bench:rw");
    let among = factory.create_rwlock("bench:rw:among");
    // Another process's reader, holding all along (kept alive).
    let other = RedLockFactory::builder()
        .restart_quarantine(false)
        .nodes(cluster.urls())
        .keep_alive(true)
        .build()
        .unwrap();
    let _holder = other.create_rwlock("bench:rw:among").read().unwrap();
    let kinds: [(&str, &dyn Fn()); 4] = [
        ("mutex", &|| mutex.acquire().unwrap().release().unwrap()),
        ("read", &|| rw.read().unwrap().release().unwrap()),
        ("write", &|| rw.write().unwrap().release().unwrap()),
        ("read-among", &|| among.read().unwrap().release().unwrap()),
    ];
    let run = |f: &dyn Fn(), d: Duration| {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < d {
            f();
            n += 1;
        }
        f64::from(n) / start.elapsed().as_secs_f64()
    };
    for (_, f) in &kinds {
        run(*f, Duration::from_millis(50)); // warm the pools and the script caches
    }
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut ratios: [Vec<f64>; 4] = Default::default();
    for i in 0..m.runs {
        let mut this = [0.0; 4];
        // Rotate which goes first, so that each meets the same load.
        for k in (0..4).map(|j| (i + j) % 4) {
            this[k] = run(kinds[k].1, m.run);
        }
        for ((r, q), v) in rates.iter_mut().zip(&mut ratios).zip(this) {
            r.push(v);
            // Time per cycle relative to the mutex's: > 1 is slower.
            q.push(this[0] / v);
        }
    }
    let [_, read_ratios, write_ratios, among_ratios] = ratios;
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: usize| v.get(v.len() * q / 4).copied().unwrap_or(f64::NAN);
        (at(1), at(2), at(3))
    };
    let (r25, read, r75) = quartiles(read_ratios);
    let (_, write, _) = quartiles(write_ratios);
    let (_, among, _) = quartiles(among_ratios);
    let [mutex_rate, read_rate, write_rate, among_rate] = rates.map(median);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "null".into());
    println!(
        "{{\"scenario\":\"rwlock\",\"mode\":\"{}\",\"nodes\":3,\"threads\":1,\"runs\":{},\
         \"cycles_per_sec_mutex\":{mutex_rate:.1},\"cycles_per_sec_read\":{read_rate:.1},\
         \"cycles_per_sec_write\":{write_rate:.1},\"ratio_read_to_mutex\":{read:.3},\
         \"ratio_read_p25\":{r25:.3},\"ratio_read_p75\":{r75:.3},\
         \"ratio_write_to_mutex\":{write:.3},\"cycles_per_sec_read_among\":{among_rate:.1},\
         \"ratio_read_among_to_mutex\":{among:.3},\"load_average\":{load}}}",
        m.name, m.runs
    );
}

/// Whether to run the scenario `name`: every one, unless a name (or part of one) is given.
fn wanted(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// One operation of a benchmark variant.
type Op<'a> = Box<dyn FnMut() + 'a>;

/// The median and the quartiles of `v`.
fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((v.len().saturating_sub(1)) as f64 * q).round() as usize;
        v.get(i).copied().unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.25), at(0.75))
}

/// The cost of the statistics (against the floor) and of the `metrics` handler with a
/// recorder (against the same cycle without).
fn observability(m: &Mode, cluster: &common::RedisCluster) {
    let urls = cluster.urls();
    let load_before = load();
    let mut floor = Floor::connect(&urls, Duration::from_secs(10));
    let plain = common::defaults(&urls).build().unwrap();
    let plain_lock = plain.create_lock("bench:obs:plain");
    #[cfg(feature = "metrics")]
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    #[cfg(feature = "metrics")]
    let measured = RedLockFactory::builder()
        .restart_quarantine(false)
        .nodes(&urls)
        .event_handler(redmutex::MetricsHandler::new())
        .build()
        .unwrap();
    #[cfg(feature = "metrics")]
    let measured_lock = measured.create_lock("bench:obs:metrics");
    // The variants: (name, one operation). The floor is first; every run measures all of them,
    // in a rotating order, so they meet the same load.
    let mut variants: Vec<(&str, Op<'_>)> = vec![
        ("floor", Box::new(|| floor.cycle("bench:obs:floor"))),
        (
            "cycle",
            Box::new(|| plain_lock.acquire().unwrap().release().unwrap()),
        ),
    ];
    #[cfg(feature = "metrics")]
    variants.push((
        "cycle-metrics",
        Box::new(|| measured_lock.acquire().unwrap().release().unwrap()),
    ));
    for (_, op) in &mut variants {
        rate(Duration::from_millis(50), op);
    }
    let n = variants.len();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n];
    for r in 0..m.obs_runs {
        for k in 0..n {
            let i = (r + k) % n;
            if let Some((_, op)) = variants.get_mut(i) {
                rates[i].push(rate(m.obs_run, op));
            }
        }
    }
    drop(variants);
    let load_after = load();
    // Paired per run: how much slower the cycle is than the floor, and the measured cycle than
    // the plain one.
    let paired = |slow: usize, fast: usize| -> Vec<f64> {
        rates[fast]
            .iter()
            .zip(&rates[slow])
            .map(|(f, s)| f / s)
            .collect()
    };
    let median = |i: usize| quartiles(rates[i].clone()).0;
    let (r, p25, p75) = quartiles(paired(1, 0));
    println!(
        "{{\"scenario\":\"observability\",\"mode\":\"{}\",\"nodes\":3,\"threads\":1,\
         \"runs\":{},\"floor_per_sec\":{:.1},\"cycle_per_sec\":{:.1},\
         \"ratio_cycle_to_floor\":{r:.3},\"ratio_p25\":{p25:.3},\"ratio_p75\":{p75:.3},\
         \"load_before\":{load_before},\"load_after\":{load_after}}}",
        m.name,
        m.obs_runs,
        median(0),
        median(1),
    );
    #[cfg(feature = "metrics")]
    {
        let (r, p25, p75) = quartiles(paired(2, 1));
        let acquisitions = prometheus
            .render()
            .lines()
            .find_map(|l| {
                l.strip_prefix("redmutex_acquisitions_total ")?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0);
        println!(
            "{{\"scenario\":\"metrics\",\"mode\":\"{}\",\"nodes\":3,\"threads\":1,\
             \"runs\":{},\"cycle_per_sec\":{:.1},\"cycle_metrics_per_sec\":{:.1},\
             \"ratio_on_to_off\":{r:.3},\"ratio_p25\":{p25:.3},\"ratio_p75\":{p75:.3},\
             \"recorded_acquisitions\":{acquisitions},\"load_before\":{load_before},\
             \"load_after\":{load_after}}}",
            m.name,
            m.obs_runs,
            median(1),
            median(2),
        );
    }
}

fn main() {
    let m = mode();
    let cluster = common::RedisCluster::start(3);
    if wanted("observability") {
        observability(&m, &cluster);
    }
    if wanted("fencing") {
        fencing(&m, &cluster);
    }
    if wanted("keep-alive") {
        keep_alive(&m, &cluster);
    }
    if wanted("rwlock") {
        rwlock(&m, &cluster);
    }
    if wanted("semaphore-cycle") {
        semaphore_cycle(&m, &cluster);
    }
    if wanted("multi-lock-8") {
        multi_lock(&m, &cluster);
    }
    if wanted("semaphore-contended") {
        semaphore_contended(&m, &cluster);
    }
}

//! A Jepsen-style history of critical sections, and a checker for it.
//!
//! Workers (threads here, or other processes writing to the witness) loop
//! acquire → critical section → release and record each critical section. Its start and end are
//! ticks of a shared witness clock: `INCR` on a separate Redis node, which is linearizable, so
//! if one critical section really ended before another began, its end tick is smaller than the
//! other's start tick. Two records of one resource whose tick intervals intersect therefore
//! really overlapped (the checker has no false positives).
//!
//! A record also says whether the holder's lease was still valid at its end tick: Redlock only
//! promises mutual exclusion to holders that stop before their validity ends, so an overlap
//! involving a holder that overran its lease is counted apart (an "overrun") rather than as a
//! violation. When the lock hands out fencing tokens, the checker also asserts that they
//! increase in witness order.
//!
//! Read-write locks: a reader's section is marked `shared`. Shared sections may overlap each
//! other; a section that is not shared (a writer's, a mutex holder's) overlaps nothing: a writer
//! is never with anyone else.
//!
//! The same checker counts holders for synchronizers that admit more than one: with a
//! semaphore of `k` permits, no tick may lie inside more than `k` valid sections of its name
//! ([`check_at_most`]). A multi-lock's section is recorded once per resource it holds, so the
//! mutex check of each resource covers the multi-lock holders and the plain lock holders of that
//! resource together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redmutex::{
    Error, MultiLock, MultiLockGuard, RedLock, RedLockFactory, RedLockGuard, RwLock,
    RwLockReadGuard, RwLockWriteGuard, Semaphore, SemaphorePermit,
};

/// The witness key incremented for every tick.
pub const CLOCK_KEY: &str = "witness:clock";
/// The witness list other processes push their records to (one [`Record::to_line`] each).
pub const HISTORY_KEY: &str = "witness:history";

/// How long the witness may take to connect or to answer one command.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(10);

/// A persistent connection to the witness node.
pub struct Witness {
    con: redis::Connection,
}

impl Witness {
    /// Connects to the witness node on `127.0.0.1:port` (connect, reads and writes bounded
    /// by 10 s).
    ///
    /// # Panics
    /// If the node cannot be reached.
    pub fn connect(port: u16) -> Self {
        let con = super::client::connect(port, WITNESS_TIMEOUT)
            .unwrap_or_else(|e| panic!("witness on port {port}: {e}"));
        Self { con }
    }

    /// One tick of the shared clock.
    ///
    /// # Panics
    /// If the witness does not answer with an integer.
    pub fn tick(&mut self) -> u64 {
        redis::cmd("INCR")
            .arg(CLOCK_KEY)
            .query(&mut self.con)
            .unwrap_or_else(|e| panic!("witness INCR: {e}"))
    }

    /// Appends a record to the shared history list (for workers in other processes).
    ///
    /// # Panics
    /// On I/O errors or an error reply.
    pub fn push(&mut self, record: &Record) {
        let _len: u64 = redis::cmd("RPUSH")
            .arg(HISTORY_KEY)
            .arg(record.to_line())
            .query(&mut self.con)
            .unwrap_or_else(|e| panic!("witness RPUSH: {e}"));
    }
}

/// One critical section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Who held the lock (`p<pid>/t<thread>`).
    pub worker: String,
    /// The resource (lock name).
    pub resource: String,
    /// Witness tick taken right after the lock was acquired.
    pub start: u64,
    /// Witness tick taken right before the lock was released.
    pub end: u64,
    /// The fencing token of the acquisition, when the lock hands them out.
    pub fencing: Option<u64>,
    /// Whether the guard was still valid after the end tick.
    pub valid_at_end: bool,
    /// Whether the release reported the lock as still ours.
    pub release_ok: bool,
    /// How long the acquisition took.
    pub acquire: Duration,
    /// Whether a fault was active when the acquisition started.
    pub during_fault: bool,
    /// A reader's section (of a read-write lock): it may overlap other shared sections, never
    /// an exclusive one.
    pub shared: bool,
}

impl Record {
    /// A `;`-separated line (worker and resource names must not contain `;`).
    pub fn to_line(&self) -> String {
        format!(
            "{};{};{};{};{};{};{};{};{};{}",
            self.worker,
            self.resource,
            self.start,
            self.end,
            self.fencing
                .map_or_else(|| "-".to_owned(), |f| f.to_string()),
            u8::from(self.valid_at_end),
            u8::from(self.release_ok),
            self.acquire.as_micros(),
            u8::from(self.during_fault),
            u8::from(self.shared),
        )
    }

    /// Parses [`Self::to_line`].
    ///
    /// # Panics
    /// On a malformed line.
    pub fn from_line(line: &str) -> Self {
        let f: Vec<&str> = line.split(';').collect();
        assert_eq!(f.len(), 10, "bad history line {line:?}");
        Self {
            worker: f[0].to_owned(),
            resource: f[1].to_owned(),
            start: f[2].parse().unwrap(),
            end: f[3].parse().unwrap(),
            fencing: (f[4] != "-").then(|| f[4].parse().unwrap()),
            valid_at_end: f[5] == "1",
            release_ok: f[6] == "1",
            acquire: Duration::from_micros(f[7].parse().unwrap()),
            during_fault: f[8] == "1",
            shared: f[9] == "1",
        }
    }
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Check {
    /// Critical sections checked.
    pub sections: usize,
    /// Pairs of overlapping sections whose holders were both within their validity: a broken
    /// mutual exclusion.
    pub violations: Vec<(Record, Record)>,
    /// Overlapping pairs where at least one holder had overrun its lease (outside Redlock's
    /// promise; reported, not a violation).
    pub overrun_overlaps: Vec<(Record, Record)>,
    /// Sections whose holder's validity had ended by the end tick.
    pub overruns: usize,
    /// Consecutive sections (witness order) whose fencing tokens did not increase.
    pub fencing_violations: Vec<(Record, Record)>,
    /// The most valid sections of one resource open at one tick (1 for a working lock; up to
    /// `k` for a semaphore of `k` permits).
    pub most_at_once: usize,
}

/// Checks that no two critical sections on the same resource overlap, and that fencing tokens
/// (where present) increase in witness order.
pub fn check(records: &[Record]) -> Check {
    let mut by_resource: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        assert!(r.start < r.end, "a section ends before it starts: {r:?}");
        by_resource.entry(&r.resource).or_default().push(r);
    }
    let mut out = Check {
        sections: records.len(),
        overruns: records.iter().filter(|r| !r.valid_at_end).count(),
        most_at_once: most_at_once(records),
        ..Check::default()
    };
    for sections in by_resource.values_mut() {
        sections.sort_by_key(|r| r.start);
        // The sections reaching furthest so far, of any kind and exclusive only, among all and
        // among those valid at their end: a later section that starts before one's end overlaps
        // it. An exclusive section may overlap nothing; a shared one no exclusive section.
        let mut furthest = Furthest::default();
        for &r in sections.iter() {
            let (valid, any) = if r.shared {
                (furthest.valid_exclusive, furthest.exclusive)
            } else {
                (furthest.valid_any, furthest.any)
            };
            if let Some(f) = valid.filter(|f| r.valid_at_end && r.start < f.end) {
                out.violations.push((f.clone(), r.clone()));
            } else if let Some(f) = any.filter(|f| r.start < f.end) {
                out.overrun_overlaps.push((f.clone(), r.clone()));
            }
            furthest.add(r);
        }
        let fenced: Vec<&&Record> = sections.iter().filter(|r| r.fencing.is_some()).collect();
        for w in fenced.windows(2) {
            if w[1].fencing <= w[0].fencing {
                out.fencing_violations
                    .push(((*w[0]).clone(), (*w[1]).clone()));
            }
        }
    }
    out
}

/// The sections of one resource that reach furthest so far, by kind.
#[derive(Default, Clone, Copy)]
struct Furthest<'r> {
    any: Option<&'r Record>,
    exclusive: Option<&'r Record>,
    valid_any: Option<&'r Record>,
    valid_exclusive: Option<&'r Record>,
}

impl<'r> Furthest<'r> {
    fn add(&mut self, r: &'r Record) {
        let further = |slot: &mut Option<&'r Record>| {
            if slot.is_none_or(|f| r.end > f.end) {
                *slot = Some(r);
            }
        };
        further(&mut self.any);
        if r.valid_at_end {
            further(&mut self.valid_any);
        }
        if !r.shared {
            further(&mut self.exclusive);
            if r.valid_at_end {
                further(&mut self.valid_exclusive);
            }
        }
    }
}

/// Checks that no tick lies inside more than `k` sections of one resource whose holders were
/// within their validity (a semaphore of `k` permits). A tick inside more than `k` sections of
/// which at most `k` were valid is an overrun overlap. Each violation is reported as the pair of
/// the section that started over the limit and the earliest-starting section it overlapped.
pub fn check_at_most(records: &[Record], k: usize) -> Check {
    let mut by_resource: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        assert!(r.start < r.end, "a section ends before it starts: {r:?}");
        by_resource.entry(&r.resource).or_default().push(r);
    }
    let mut out = Check {
        sections: records.len(),
        overruns: records.iter().filter(|r| !r.valid_at_end).count(),
        most_at_once: most_at_once(records),
        ..Check::default()
    };
    for sections in by_resource.values_mut() {
        sections.sort_by_key(|r| r.start);
        let mut open: Vec<&Record> = Vec::new();
        for &r in sections.iter() {
            // Ticks are unique: a section that ended before `r` started is closed.
            open.retain(|o| o.end > r.start);
            open.push(r);
            if open.len() <= k {
                continue;
            }
            let pair = (open[0].clone(), r.clone());
            if open.iter().filter(|o| o.valid_at_end).count() > k {
                out.violations.push(pair);
            } else {
                out.overrun_overlaps.push(pair);
            }
        }
    }
    out
}

/// The most sections of one resource, valid at their end, open at one tick.
fn most_at_once(records: &[Record]) -> usize {
    let mut events: BTreeMap<(&str, u64), i64> = BTreeMap::new();
    for r in records.iter().filter(|r| r.valid_at_end) {
        *events.entry((&r.resource, r.start)).or_default() += 1;
        *events.entry((&r.resource, r.end)).or_default() -= 1;
    }
    let (mut most, mut now, mut resource) = (0, 0i64, "");
    for ((res, _), delta) in events {
        if res != resource {
            (resource, now) = (res, 0);
        }
        now += delta;
        most = most.max(usize::try_from(now).unwrap_or(0));
    }
    most
}

/// The most shared sections (readers' sections) that overlap one another at one tick.
pub fn max_concurrent_readers(records: &[Record]) -> usize {
    let mut edges: Vec<(u64, i64)> = records
        .iter()
        .filter(|r| r.shared)
        .flat_map(|r| [(r.start, 1), (r.end, -1)])
        .collect();
    edges.sort_unstable();
    let (mut now, mut most) = (0i64, 0i64);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    usize::try_from(most).unwrap()
}

/// Extra figures for a history with readers: shared and exclusive sections, most readers at
/// once.
pub fn shared_figures(records: &[Record]) -> String {
    let shared = records.iter().filter(|r| r.shared).count();
    format!(
        "shared sections={shared} exclusive sections={} most readers at once={}",
        records.len() - shared,
        max_concurrent_readers(records)
    )
}

/// The `p`-th percentile (0..=100) of `values`, or zero when empty.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut v = values.to_vec();
    v.sort();
    let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// How a run of workers is shaped.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Worker threads.
    pub threads: usize,
    /// Resource names the workers take in turn.
    pub resources: Vec<String>,
    /// Wall-time bound of the run.
    pub duration: Duration,
    /// Bound on critical sections per thread.
    pub max_per_thread: usize,
    /// Time spent inside each critical section (between the two ticks).
    pub hold: Duration,
    /// Bound on each acquisition (`acquire_timeout`).
    pub acquire_timeout: Duration,
    /// Prefix of the worker names.
    pub name: String,
    /// Push each record to the witness's history list instead of keeping it in memory (for
    /// long runs that measure this process's memory); read them back with [`fetch`].
    pub push_to_witness: bool,
    /// What the workers take.
    pub kind: Kind,
    /// With [`Kind::Lock`]: what each thread takes of its resource: thread `t` has role
    /// `roles[t % roles.len()]`; empty: every thread takes the mutex.
    pub roles: Vec<Role>,
}

/// What a worker thread takes of each resource (with [`Kind::Lock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The mutex (`create_lock`).
    Mutex,
    /// A read lock of the read-write lock (`create_rwlock`): a shared section.
    Read,
    /// The write lock of the read-write lock.
    Write,
}

/// What the workers of a run take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A lock on one resource at a time.
    Lock,
    /// A permit of a semaphore with this many permits, named after one resource at a time.
    Semaphore(u32),
    /// Even threads take multi-locks over two of the resources (each pair in turn), odd threads
    /// take plain locks on one resource: records are per resource, so one check covers both.
    MultiAndLocks,
}

/// Something a worker takes.
enum Taker {
    Lock(RedLock),
    Read(RwLock),
    Write(RwLock),
    Semaphore(Semaphore),
    Multi(MultiLock),
}

/// What a worker holds.
enum Held {
    Lock(RedLockGuard),
    Read(RwLockReadGuard),
    Write(RwLockWriteGuard),
    Permit(SemaphorePermit),
    Multi(MultiLockGuard),
}

impl Taker {
    fn acquire_timeout(&self, d: Duration) -> Result<Held, Error> {
        Ok(match self {
            Self::Lock(l) => Held::Lock(l.acquire_timeout(d)?),
            Self::Read(l) => Held::Read(l.reader().acquire_timeout(d)?),
            Self::Write(l) => Held::Write(l.writer().acquire_timeout(d)?),
            Self::Semaphore(s) => Held::Permit(s.acquire_timeout(d)?),
            Self::Multi(m) => Held::Multi(m.acquire_timeout(d)?),
        })
    }

    /// The resources a section of this taker is recorded under.
    fn resources(&self) -> Vec<String> {
        match self {
            Self::Lock(l) => vec![l.resource().to_owned()],
            Self::Read(l) | Self::Write(l) => vec![l.resource().to_owned()],
            Self::Semaphore(s) => vec![s.resource().to_owned()],
            Self::Multi(m) => m.resources().iter().map(|r| r.to_string()).collect(),
        }
    }
}

impl Held {
    fn is_valid(&self) -> bool {
        match self {
            Self::Lock(g) => g.is_valid(),
            Self::Read(g) => g.is_valid(),
            Self::Write(g) => g.is_valid(),
            Self::Permit(p) => p.is_valid(),
            Self::Multi(g) => g.is_valid(),
        }
    }

    fn fencing_token(&self) -> Option<u64> {
        match self {
            Self::Lock(g) => g.fencing_token(),
            Self::Write(g) => g.fencing_token(),
            Self::Multi(g) => g.fencing_token(),
            Self::Read(_) | Self::Permit(_) => None,
        }
    }

    fn release(self) -> bool {
        match self {
            Self::Lock(g) => g.release().is_ok(),
            Self::Read(g) => g.release().is_ok(),
            Self::Write(g) => g.release().is_ok(),
            Self::Permit(p) => p.release().is_ok(),
            Self::Multi(g) => g.release().is_ok(),
        }
    }
}

/// The takers of worker thread `t`.
fn takers(factory: &RedLockFactory, work: &Workload, t: usize) -> Vec<Taker> {
    let r = &work.resources;
    match work.kind {
        Kind::Lock => {
            let role = if work.roles.is_empty() {
                Role::Mutex
            } else {
                work.roles[t % work.roles.len()]
            };
            r.iter()
                .map(|r| match role {
                    Role::Mutex => Taker::Lock(factory.create_lock(r.as_str())),
                    Role::Read => Taker::Read(factory.create_rwlock(r.as_str())),
                    Role::Write => Taker::Write(factory.create_rwlock(r.as_str())),
                })
                .collect()
        }
        Kind::Semaphore(k) => r
            .iter()
            .map(|r| Taker::Semaphore(factory.create_semaphore(r.as_str(), k)))
            .collect(),
        Kind::MultiAndLocks if t.is_multiple_of(2) && r.len() > 1 => (0..r.len())
            .map(|i| {
                let pair = [r[i].as_str(), r[(i + 1) % r.len()].as_str()];
                Taker::Multi(factory.create_multi_lock(pair))
            })
            .collect(),
        Kind::MultiAndLocks => r
            .iter()
            .map(|r| Taker::Lock(factory.create_lock(r.as_str())))
            .collect(),
    }
}

impl Workload {
    /// `threads` threads over `resources` resources named `<prefix>:<i>`.
    pub fn new(prefix: &str, threads: usize, resources: usize, duration: Duration) -> Self {
        Self {
            threads,
            resources: (0..resources).map(|i| format!("{prefix}:{i}")).collect(),
            duration,
            max_per_thread: 100_000,
            hold: Duration::from_micros(500),
            acquire_timeout: Duration::from_secs(10),
            name: format!("p{}", std::process::id()),
            push_to_witness: false,
            kind: Kind::Lock,
            roles: Vec::new(),
        }
    }
}

/// What a run produced.
#[derive(Debug, Default)]
pub struct Run {
    /// Every critical section.
    pub records: Vec<Record>,
    /// Failed acquisitions by error kind.
    pub errors: BTreeMap<String, usize>,
    /// How long each failed call took.
    pub error_latencies: Vec<Duration>,
    /// The longest any acquisition call took (successful or not).
    pub slowest_call: Duration,
}

impl Run {
    /// Acquisition latencies, all or only those that started during a fault.
    pub fn latencies(&self, during_fault: Option<bool>) -> Vec<Duration> {
        self.records
            .iter()
            .filter(|r| during_fault.is_none_or(|f| r.during_fault == f))
            .map(|r| r.acquire)
            .collect()
    }

    /// Failed acquisitions, all kinds.
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }
}

/// Every record pushed to the witness on `127.0.0.1:port` so far.
///
/// # Panics
/// If the witness cannot be read or holds a malformed line.
pub fn fetch(port: u16) -> Vec<Record> {
    let mut con = super::client::connect(port, Duration::from_secs(30)).unwrap();
    let lines: Vec<String> = redis::cmd("LRANGE")
        .arg(HISTORY_KEY)
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    lines.iter().map(|l| Record::from_line(l)).collect()
}

/// A short name for an error's kind.
pub fn kind(e: &Error) -> &'static str {
    match e {
        Error::NoQuorum { .. } => "NoQuorum",
        Error::TooLate { .. } => "TooLate",
        Error::Timeout { .. } => "Timeout",
        Error::Expired { .. } => "Expired",
        Error::LockLost { .. } => "LockLost",
        Error::InvalidConfig(_) => "InvalidConfig",
        Error::InvalidArgument(_) => "InvalidArgument",
        _ => "other",
    }
}

/// Runs `work` against `factory` on `work.threads` threads, each with its own witness
/// connection; `fault` marks the acquisitions that start while a fault is injected.
pub fn run_workers(
    factory: &RedLockFactory,
    witness_port: u16,
    work: &Workload,
    fault: &Arc<AtomicBool>,
) -> Run {
    let end = Instant::now() + work.duration;
    let slowest = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..work.threads)
        .map(|t| {
            let factory = factory.clone();
            let work = work.clone();
            let fault = Arc::clone(fault);
            let slowest = Arc::clone(&slowest);
            thread::spawn(move || {
                let mut witness = Witness::connect(witness_port);
                let mut run = Run::default();
                let locks = takers(&factory, &work, t);
                for i in 0..work.max_per_thread {
                    if Instant::now() >= end {
                        break;
                    }
                    let lock = &locks[(t + i) % locks.len()];
                    let during_fault = fault.load(Ordering::SeqCst);
                    let t0 = Instant::now();
                    let got = lock.acquire_timeout(work.acquire_timeout);
                    let took = t0.elapsed();
                    slowest.fetch_max(took.as_micros() as u64, Ordering::SeqCst);
                    match got {
                        Ok(g) => {
                            let start = witness.tick();
                            if !work.hold.is_zero() {
                                thread::sleep(work.hold);
                            }
                            let end_tick = witness.tick();
                            let valid_at_end = g.is_valid();
                            let fencing = g.fencing_token();
                            let shared = matches!(g, Held::Read(_));
                            let release_ok = g.release();
                            for resource in lock.resources() {
                                let record = Record {
                                    worker: format!("{}/t{t}", work.name),
                                    resource,
                                    start,
                                    end: end_tick,
                                    fencing,
                                    valid_at_end,
                                    release_ok,
                                    acquire: took,
                                    during_fault,
                                    shared,
                                };
                                if work.push_to_witness {
                                    witness.push(&record);
                                } else {
                                    run.records.push(record);
                                }
                            }
                        }
                        Err(e) => {
                            *run.errors.entry(kind(&e).to_owned()).or_default() += 1;
                            run.error_latencies.push(took);
                            // Do not spin on a dead cluster.
                            thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut total = Run::default();
    for h in handles {
        let run = h.join().expect("a worker thread panicked");
        total.records.extend(run.records);
        for (k, n) in run.errors {
            *total.errors.entry(k).or_default() += n;
        }
        total.error_latencies.extend(run.error_latencies);
    }
    total.slowest_call = Duration::from_micros(slowest.load(Ordering::SeqCst));
    total
}

/// Prints a run's figures on one line (visible with `--nocapture`) and returns the check.
pub fn report(scenario: &str, run: &Run, faults: usize, extra: &str) -> Check {
    report_checked(scenario, run, faults, extra, check(&run.records))
}

/// [`report`] with the check made by the caller ([`check_at_most`], say).
pub fn report_checked(
    scenario: &str,
    run: &Run,
    faults: usize,
    extra: &str,
    check: Check,
) -> Check {
    let during = run.latencies(Some(true));
    let all = run.latencies(None);
    eprintln!(
        "[figures] {scenario}: acquisitions={} faults={faults} violations={} overruns={} \
         overrun_overlaps={} fencing_violations={} most_at_once={} errors={:?} acquire p50={:?} \
         p99={:?} max={:?} | during faults: n={} p99={:?} max={:?} | slowest call={:?}{}{extra}",
        check.sections,
        check.violations.len(),
        check.overruns,
        check.overrun_overlaps.len(),
        check.fencing_violations.len(),
        check.most_at_once,
        run.errors,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        percentile(&all, 100.0),
        during.len(),
        percentile(&during, 99.0),
        percentile(&during, 100.0),
        run.slowest_call,
        if extra.is_empty() { "" } else { " | " },
    );
    check
}

/// Asserts a clean history: no violations, no fencing violations.
///
/// # Panics
/// When the history shows broken mutual exclusion.
pub fn assert_clean(check: &Check) {
    assert!(
        check.violations.is_empty(),
        "mutual exclusion broken {} times, first: {:?}",
        check.violations.len(),
        check.violations.first()
    );
    assert!(
        check.fencing_violations.is_empty(),
        "fencing tokens out of order: {:?}",
        check.fencing_violations.first()
    );
}

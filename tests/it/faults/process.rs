//! Faults of the lock holders themselves, with real processes: a holder killed with SIGKILL, a
//! holder frozen with SIGSTOP past its lease, and a history recorded by several processes while
//! a node stalls. Each test runs itself again as its workers (`support::worker`), which do
//! their part in [`fault_worker`]. Every factory here hands out fencing tokens.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::history::{self, Record, Witness, Workload, run_workers};
use crate::support::worker::{self, Worker};
use crate::support::{RedisCluster, deadline_loop, port_cmd, send_signal};
use crate::test_name;
use redmutex::Error;

const CMD: Duration = Duration::from_secs(5);

fn outcome(r: Result<(), Error>) -> &'static str {
    match r {
        Ok(()) => "Ok",
        Err(e) => history::kind(&e),
    }
}

/// The worker side. `spec` is `<mode>;<witness port>;<ttl ms>;<arg>;<url>,<url>,...`.
fn fault_worker(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let (mode, witness, ttl, arg) = (parts[0], parts[1], parts[2], parts[3]);
    let witness: u16 = witness.parse().unwrap();
    let ttl = Duration::from_millis(ttl.parse().unwrap());
    let urls: Vec<String> = parts[4].split(',').map(str::to_owned).collect();
    let factory = super::settings(urls)
        .ttl(ttl)
        // Fencing tokens on: the history checker asserts they grow in witness order.
        .fencing(true)
        .build()
        .unwrap();
    match mode {
        // Take the lock, say so, and hold it until killed.
        "hold" => {
            let g = factory.create_lock(arg).acquire().unwrap();
            port_cmd(witness, &["RPUSH", "held", g.token()], CMD).unwrap();
            loop {
                thread::sleep(Duration::from_millis(100));
            }
        }
        // Take the lock, say so, wait for "go" (the parent freezes us meanwhile), then report
        // what the guard says and does.
        "pause" => {
            let g = factory.create_lock(arg).acquire().unwrap();
            port_cmd(witness, &["RPUSH", "held", g.token()], CMD).unwrap();
            assert!(deadline_loop(Duration::from_secs(60), || {
                port_cmd(witness, &["GET", "go"], CMD).unwrap() == "1"
            }));
            let valid = g.is_valid();
            let extend = outcome(g.extend(ttl));
            let release = outcome(g.release());
            let report = format!("valid={valid};extend={extend};release={release}");
            port_cmd(witness, &["RPUSH", "result", &report], CMD).unwrap();
        }
        // Record a history for `arg` milliseconds and push it to the witness.
        "history" => {
            let mut work =
                Workload::new("procs", 2, 2, Duration::from_millis(arg.parse().unwrap()));
            work.name = format!("p{}", std::process::id());
            let run = run_workers(&factory, witness, &work, &Arc::new(AtomicBool::new(false)));
            let mut w = Witness::connect(witness);
            for r in &run.records {
                w.push(r);
            }
            assert_eq!(run.error_count(), 0, "{:?}", run.errors);
        }
        // 16 threads on one resource for `arg` milliseconds (they queue in this process's
        // local queue): push the history, and the failed acquisitions as one line.
        "crowd" => {
            let mut work =
                Workload::new("crowd", 16, 1, Duration::from_millis(arg.parse().unwrap()));
            work.name = format!("p{}", std::process::id());
            let run = run_workers(&factory, witness, &work, &Arc::new(AtomicBool::new(false)));
            let mut w = Witness::connect(witness);
            for r in &run.records {
                w.push(r);
            }
            port_cmd(
                witness,
                &["RPUSH", "errors", &format!("{:?}", run.errors)],
                CMD,
            )
            .unwrap();
        }
        other => panic!("unknown worker mode {other:?}"),
    }
}

/// Starts a worker for `test` (a `test_name!`) in `mode` (see [`fault_worker`]).
fn spawn_worker(
    test: &str,
    mode: &str,
    witness: u16,
    ttl: Duration,
    arg: &str,
    urls: &[String],
) -> Worker {
    let spec = format!(
        "{mode};{witness};{};{arg};{}",
        ttl.as_millis(),
        urls.join(",")
    );
    Worker::spawn(test, &spec)
}

fn wait_held(witness: &RedisCluster, child: &mut Worker) -> String {
    let mut token = String::new();
    let ok = deadline_loop(Duration::from_secs(20), || {
        assert!(child.try_wait().is_none(), "the worker died");
        token = witness.cmd(0, &["LINDEX", "held", "0"]);
        token != "(nil)"
    });
    assert!(ok, "the worker never took the lock");
    token
}

#[test]
fn holder_crash_others_get_the_lock_within_about_one_ttl() {
    if let Some(spec) = worker::spec() {
        return fault_worker(&spec);
    }
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let ttl = Duration::from_secs(3);
    let urls = cluster.urls();
    let mut child = spawn_worker(
        test_name!(holder_crash_others_get_the_lock_within_about_one_ttl),
        "hold",
        witness.port(0),
        ttl,
        "crash",
        &urls,
    );
    let token = wait_held(&witness, &mut child);
    let holding = (0..3)
        .filter(|&i| cluster.cmd(i, &["GET", "crash"]) == token)
        .count();
    assert!(holding >= 2, "the worker's token is on {holding} nodes");

    let f = super::settings(urls)
        .ttl(Duration::from_secs(10))
        .fencing(true)
        .build()
        .unwrap();
    let lock = f.create_lock("crash");
    child.kill(); // SIGKILL: no release, no unwinding
    let killed = Instant::now();
    // The dead holder's lease still runs: nobody gets the lock before it expires.
    assert!(lock.try_acquire().unwrap().is_none());
    let g = lock.acquire_timeout(Duration::from_secs(20)).unwrap();
    let after = killed.elapsed();
    eprintln!("[figures] holder_crash: lock taken over {after:?} after SIGKILL (TTL {ttl:?})");
    assert!(after <= ttl + Duration::from_secs(3), "{after:?}");
    g.release().unwrap();
}

#[test]
fn holder_paused_past_its_ttl_cannot_touch_the_new_holder() {
    if let Some(spec) = worker::spec() {
        return fault_worker(&spec);
    }
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let urls = cluster.urls();
    let ttl = Duration::from_secs(1);
    let mut child = spawn_worker(
        test_name!(holder_paused_past_its_ttl_cannot_touch_the_new_holder),
        "pause",
        witness.port(0),
        ttl,
        "paused",
        &urls,
    );
    let old_token = wait_held(&witness, &mut child);
    let pid = child.id();
    send_signal(pid, "-STOP");
    // Frozen past its lease: the keys expire on the nodes.
    assert!(deadline_loop(Duration::from_secs(10), || {
        (0..3).all(|i| cluster.cmd(i, &["EXISTS", "paused"]) == "0")
    }));
    let f = super::settings(urls)
        .ttl(Duration::from_secs(30))
        .fencing(true)
        .build()
        .unwrap();
    let g = f
        .create_lock("paused")
        .acquire_timeout(Duration::from_secs(10))
        .unwrap();
    assert_ne!(g.token(), old_token);
    // Thaw the old holder and let it act on its stale guard.
    send_signal(pid, "-CONT");
    witness.cmd(0, &["SET", "go", "1"]);
    let mut result = String::new();
    assert!(deadline_loop(Duration::from_secs(20), || {
        result = witness.cmd(0, &["LINDEX", "result", "0"]);
        result != "(nil)"
    }));
    let status = child.wait();
    assert!(status.success(), "worker failed: {status}");
    eprintln!("[figures] holder_paused: the thawed holder reports {result}");
    assert_eq!(result, "valid=false;extend=Expired;release=Expired");
    // The new holder's key is intact on every node.
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["GET", "paused"]), g.token(), "node {i}");
    }
    assert!(g.is_valid());
    g.release().unwrap();
}

#[test]
fn several_processes_and_threads_while_a_node_stalls_no_overlap() {
    if let Some(spec) = worker::spec() {
        return fault_worker(&spec);
    }
    const PROCESSES: usize = 3;
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let urls = cluster.urls();
    let run_ms = 4000;
    let children: Vec<Worker> = (0..PROCESSES)
        .map(|_| {
            spawn_worker(
                test_name!(several_processes_and_threads_while_a_node_stalls_no_overlap),
                "history",
                witness.port(0),
                Duration::from_secs(1),
                &run_ms.to_string(),
                &urls,
            )
        })
        .collect();
    // This process is one more worker group, with a node stalling twice meanwhile.
    let f = super::settings(urls)
        .ttl(Duration::from_secs(1))
        .fencing(true)
        .build()
        .unwrap();
    let mut work = Workload::new("procs", 2, 2, Duration::from_millis(run_ms));
    work.name = format!("p{}", std::process::id());
    let fault = Arc::new(AtomicBool::new(false));
    let (local, faults) = thread::scope(|s| {
        let injector = s.spawn(|| {
            for _ in 0..2 {
                thread::sleep(Duration::from_millis(700));
                cluster.stop(2);
                fault.store(true, std::sync::atomic::Ordering::SeqCst);
                thread::sleep(Duration::from_millis(800));
                cluster.cont(2);
                fault.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            2
        });
        let run = run_workers(&f, witness.port(0), &work, &fault);
        (run, injector.join().unwrap())
    });
    let (run, _) = merged_history(
        children,
        local,
        &witness,
        "processes_and_threads",
        faults,
        &String::new,
    );
    assert_eq!(run.error_count(), 0, "{:?}", run.errors);
}

/// 64 waiters for one lock in 4 processes (16 threads each, lined up in each process's local
/// queue), while one node stalls and then another: no two holders, and fencing tokens grow
/// in witness order.
#[test]
fn sixty_four_waiters_in_four_processes_under_node_faults_no_overlap() {
    if let Some(spec) = worker::spec() {
        return fault_worker(&spec);
    }
    const PROCESSES: usize = 3;
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let urls = cluster.urls();
    let run_ms = 5000;
    let children: Vec<Worker> = (0..PROCESSES)
        .map(|_| {
            spawn_worker(
                test_name!(sixty_four_waiters_in_four_processes_under_node_faults_no_overlap),
                "crowd",
                witness.port(0),
                Duration::from_secs(1),
                &run_ms.to_string(),
                &urls,
            )
        })
        .collect();
    // This process is the fourth crowd, with the faults meanwhile.
    let f = super::settings(urls)
        .ttl(Duration::from_secs(1))
        .fencing(true)
        .build()
        .unwrap();
    let mut work = Workload::new("crowd", 16, 1, Duration::from_millis(run_ms));
    work.name = format!("p{}", std::process::id());
    let fault = Arc::new(AtomicBool::new(false));
    let (local, faults) = thread::scope(|s| {
        let injector = s.spawn(|| {
            thread::sleep(Duration::from_millis(800));
            // A stalled node: its votes time out.
            cluster.stop(2);
            fault.store(true, std::sync::atomic::Ordering::SeqCst);
            thread::sleep(Duration::from_millis(1000));
            cluster.cont(2);
            fault.store(false, std::sync::atomic::Ordering::SeqCst);
            thread::sleep(Duration::from_millis(600));
            // Then another node stalls.
            cluster.stop(1);
            fault.store(true, std::sync::atomic::Ordering::SeqCst);
            thread::sleep(Duration::from_millis(800));
            cluster.cont(1);
            fault.store(false, std::sync::atomic::Ordering::SeqCst);
            2
        });
        let run = run_workers(&f, witness.port(0), &work, &fault);
        (run, injector.join().unwrap())
    });
    let (_, check) = merged_history(
        children,
        local,
        &witness,
        "crowd_under_faults",
        faults,
        &|| {
            let errors = witness.cmd(0, &["LRANGE", "errors", "0", "-1"]);
            format!(" worker errors={errors}")
        },
    );
    assert!(check.sections >= 200, "only {} sections", check.sections);
}

/// Waits for the worker processes (each must succeed), merges the sections they pushed to the
/// witness into this process's `local` run, and checks the whole history: no overlap, fencing
/// tokens in witness order, every section with a token, and sections from every process (the
/// children and this one). `extra` is called once the workers are done, for the report line.
fn merged_history(
    children: Vec<Worker>,
    local: history::Run,
    witness: &RedisCluster,
    scenario: &str,
    faults: usize,
    extra: &dyn Fn() -> String,
) -> (history::Run, history::Check) {
    let processes = children.len() + 1;
    for mut c in children {
        let status = c.wait();
        assert!(status.success(), "a worker process failed: {status}");
    }
    let mut run = local;
    let pushed = witness.cmd(0, &["LRANGE", history::HISTORY_KEY, "0", "-1"]);
    run.records.extend(pushed.lines().map(Record::from_line));
    let workers: std::collections::HashSet<&str> = run
        .records
        .iter()
        .map(|r| r.worker.split('/').next().unwrap())
        .collect();
    let check = history::report(
        scenario,
        &run,
        faults,
        &format!("processes={}{}", workers.len(), extra()),
    );
    history::assert_clean(&check);
    assert!(
        run.records.iter().all(|r| r.fencing.is_some()),
        "a section without a token"
    );
    assert_eq!(workers.len(), processes, "{workers:?}");
    (run, check)
}

//! The `redmutex` command, run as a real process (`CARGO_BIN_EXE_redmutex`, as fd's tests do)
//! against real redis-server nodes.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use redmutex::Fingerprint;

use crate::support::sentinel::SentinelGroup;
use crate::support::{ChildGuard, RedisCluster, RedisNode, dead_url, deadline_loop, waiting_marks};

// `doctor`: the checks of the nodes, and their exit codes.
mod doctor;
// `run -s` and `run -x`: the read-write lock.
mod rw;
// `elect`, `leader` and `run --once`.
mod election;

/// Upper bound for anything that should end "at once" or "soon": catches hangs, not speed.
const SOON: Duration = Duration::from_secs(20);

const LOST: i32 = 79;

/// The `--io-timeout` and `--connect-timeout` of [`redmutex`], in seconds: generous, as the
/// library tests' preset (`support::IO_TIMEOUT`), since no CLI test is about a node that is
/// slow to answer (dead nodes refuse at once). With the defaults (0.1 s and 0.5 s), a loaded
/// machine's late reply showed a live node as failed.
pub(crate) const TIMEOUT_SECS: &str = "2";

/// `redmutex` with the cluster's nodes, [`TIMEOUT_SECS`], and nothing from the caller's
/// environment that would change its behaviour. It runs in its own process group, so it is
/// never in a terminal's foreground group and passes SIGINT on as it would under a
/// supervisor.
pub(crate) fn redmutex(nodes: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redmutex"));
    cmd.env_remove("REDMUTEX_NODES")
        .env_remove("REDMUTEX_TOKEN")
        .env_remove("REDMUTEX_LONGEST_TTL")
        .env_remove("REDMUTEX_DURABLE_NODES")
        // The tests' nodes are fresh: without the off switch, every run would first wait out
        // the restart quarantine (see `support::builder`).
        .env("REDMUTEX_NO_RESTART_QUARANTINE", "1")
        .args([
            "--io-timeout",
            TIMEOUT_SECS,
            "--connect-timeout",
            TIMEOUT_SECS,
        ])
        .process_group(0);
    for n in nodes {
        cmd.arg("--node").arg(n);
    }
    cmd
}

/// Bound on one `redmutex` run of [`run_ok`]: catches hangs, not speed (no run there waits
/// longer than a few seconds by design).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `cmd` to its end (at most [`RUN_LIMIT`]: then it is killed and the test fails) and
/// returns its output.
pub(crate) fn run_ok(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (out, _) = ChildGuard::spawn(cmd)
        .output_within(RUN_LIMIT)
        .unwrap_or_else(|| panic!("{cmd:?} did not end within {RUN_LIMIT:?}"));
    out
}

/// Spawns `cmd` (a [`redmutex`]) under a [`ChildGuard`]: it and whatever it started are
/// killed when the guard is dropped, also when the test fails.
pub(crate) fn spawn(cmd: &mut Command) -> ChildGuard {
    ChildGuard::spawn(cmd)
}

pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits for `child` to end within `limit`; kills it (and its group) and fails the test
/// otherwise.
pub(crate) fn wait_for(child: &mut ChildGuard, limit: Duration) -> ExitStatus {
    child.wait_within(limit).unwrap_or_else(|| {
        child.kill();
        panic!("redmutex did not end within {limit:?}")
    })
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

fn wait_held(cluster: &RedisCluster, key: &str) {
    assert!(
        deadline_loop(SOON, || cluster.nodes_with(key) == cluster.len()),
        "{key} never got held"
    );
}

pub(crate) fn wait_file(path: &Path) {
    assert!(
        deadline_loop(SOON, || path.exists()),
        "{} never appeared",
        path.display()
    );
}

/// Takes `key` with `redmutex acquire` and returns the token.
fn acquire(cluster: &RedisCluster, key: &str, ttl: &str) -> String {
    let o = run_ok(redmutex(&cluster.urls()).args(["acquire", "--ttl", ttl, key]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let token = stdout(&o).trim().to_owned();
    assert_eq!(token.len(), 40, "{token:?}");
    token
}

#[test]
fn runs_never_overlap() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    let log = dir.join("log");
    let script = format!(
        "echo start $$ >> {log}; sleep 0.05; echo end $$ >> {log}",
        log = log.display()
    );
    let mut children: Vec<ChildGuard> = (0..4)
        .map(|_| {
            spawn(
                redmutex(&cluster.urls())
                    .args(["run", "--ttl", "5", "cli:overlap", "-c", &script])
                    .stdin(Stdio::null()),
            )
        })
        .collect();
    for c in &mut children {
        let status = wait_for(c, Duration::from_secs(60));
        assert_eq!(status.code(), Some(0));
    }
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    for pair in lines.chunks(2) {
        let start = pair[0].strip_prefix("start ").expect(&text);
        let end = pair[1].strip_prefix("end ").expect(&text);
        assert_eq!(start, end, "runs overlapped:\n{text}");
    }
    assert_eq!(cluster.nodes_with("cli:overlap"), 0, "lock left behind");
}

#[test]
fn exit_status_env_and_release() {
    let cluster = RedisCluster::start(3);
    let out = cluster.node(0).dir().join("env");
    let script = format!(
        "echo $REDMUTEX_KEY $REDMUTEX_TOKEN ${{REDMUTEX_FENCING_TOKEN-unset}} > {}; exit 3",
        out.display()
    );
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "cli:env", "-c", &script]));
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let env = fs::read_to_string(&out).unwrap();
    let fields: Vec<&str> = env.split_whitespace().collect();
    assert_eq!(fields[0], "cli:env");
    assert_eq!(fields[1].len(), 40);
    assert_eq!(fields[2], "unset");
    assert_eq!(cluster.nodes_with("cli:env"), 0, "not released");

    // With --fencing: a number that grows with each acquisition.
    let fence = |n: &str| -> u64 {
        let out = cluster.node(0).dir().join(format!("fence{n}"));
        let script = format!("echo $REDMUTEX_FENCING_TOKEN > {}", out.display());
        let o =
            run_ok(redmutex(&cluster.urls()).args(["run", "--fencing", "cli:env", "-c", &script]));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        fs::read_to_string(&out).unwrap().trim().parse().unwrap()
    };
    let (first, second) = (fence("1"), fence("2"));
    assert!(second > first, "{first} then {second}");

    // A command given after `--`, with its own flags.
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "cli:env", "--", "sh", "-c", "exit 0"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Killed by a signal: 128 + N.
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "cli:env", "-c", "kill -KILL $$"]));
    assert_eq!(code(&o), 128 + 9, "{}", stderr(&o));
    assert_eq!(cluster.nodes_with("cli:env"), 0, "not released");

    // Cannot run / not found.
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "cli:env", "--", "/nonexistent/x"]));
    assert_eq!(code(&o), 127);
    assert_eq!(
        stderr(&o),
        "redmutex: error: command not found: /nonexistent/x\n"
    );
    let dir = cluster.node(0).dir().display().to_string();
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "cli:env", "--", &dir]));
    assert_eq!(code(&o), 126, "{}", stderr(&o));
    assert_eq!(cluster.nodes_with("cli:env"), 0, "not released");
}

#[test]
fn the_lease_is_renewed_while_the_command_runs() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    let (ready, done) = (dir.join("ready"), dir.join("done"));
    let script = format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
        ready.display(),
        done.display()
    );
    let mut child =
        spawn(redmutex(&cluster.urls()).args(["run", "--ttl", "2", "cli:renew", "-c", &script]));
    wait_file(&ready);
    // The lock stays held on every node for more than twice its TTL: it is renewed.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            cluster.nodes_with("cli:renew"),
            3,
            "after {:?}",
            start.elapsed()
        );
        assert_eq!(child.try_wait(), None, "redmutex ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "-n", "cli:renew", "true"]));
    assert_eq!(code(&o), 1, "the lock was free: {}", stderr(&o));
    fs::write(&done, "").unwrap();
    assert_eq!(wait_for(&mut child, SOON).code(), Some(0));
    assert_eq!(cluster.nodes_with("cli:renew"), 0);
}

#[test]
fn nonblock_and_wait_give_the_conflict_code() {
    let cluster = RedisCluster::start(3);
    let token = acquire(&cluster, "cli:busy", "60");

    let start = Instant::now();
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "-n", "cli:busy", "true"]));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "a conflict is silent without -v");
    assert!(start.elapsed() < SOON);

    let o = run_ok(redmutex(&cluster.urls()).args(["run", "-n", "-E", "42", "cli:busy", "true"]));
    assert_eq!(code(&o), 42);
    let o =
        run_ok(redmutex(&cluster.urls()).args(["run", "-w", "0", "-E", "43", "cli:busy", "true"]));
    assert_eq!(code(&o), 43);

    let start = Instant::now();
    let o = run_ok(redmutex(&cluster.urls()).args([
        "-v", "run", "-w", "0.4", "-E", "7", "cli:busy", "--", "echo", "ran",
    ]));
    let waited = start.elapsed();
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "the command ran without the lock");
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(waited < SOON, "{waited:?}");
    assert!(
        stderr(&o).contains("gave up on \"cli:busy\" after"),
        "{}",
        stderr(&o)
    );

    // `acquire` takes the same flags.
    let o = run_ok(redmutex(&cluster.urls()).args(["acquire", "-n", "-E", "5", "cli:busy"]));
    assert_eq!(code(&o), 5);

    // A wait that ends because the holder released.
    cluster.clear_waiting("cli:busy");
    let mut waiter = spawn(redmutex(&cluster.urls()).args(["run", "-w", "30", "cli:busy", "true"]));
    cluster.wait_waiting("cli:busy");
    let o = run_ok(redmutex(&cluster.urls()).args(["release", "cli:busy", &token]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(wait_for(&mut waiter, SOON).code(), Some(0));
}

#[test]
fn deleting_the_key_stops_the_command_with_the_lost_code() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    for (key, script, kill_after) in [
        // Ends on SIGTERM.
        ("cli:lost1", "exec sleep 60", "30"),
        // Ignores SIGTERM: SIGKILL after --kill-after.
        ("cli:lost2", "trap '' TERM; exec sleep 60", "0.3"),
    ] {
        let mut child = spawn(
            redmutex(&cluster.urls())
                .args([
                    "run",
                    "--ttl",
                    "1",
                    "--kill-after",
                    kill_after,
                    key,
                    "-c",
                    script,
                ])
                .stderr(Stdio::piped()),
        );
        wait_held(&cluster, key);
        for i in 0..3 {
            cluster.cmd(i, &["DEL", key]);
        }
        let status = wait_for(&mut child, SOON);
        let err = child.read_stderr();
        assert_eq!(status.code(), Some(LOST), "{err}");
        assert!(err.contains("redmutex: error: lost the lease on"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    drop(dir);
}

#[test]
fn signals_are_passed_to_the_command_and_the_lock_released() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    for (sig, num) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        let key = format!("cli:sig:{sig}");
        let ready = dir.join(format!("ready-{sig}"));
        let got = dir.join(format!("got-{sig}"));
        // The command traps the signal, records it, and exits 5.
        let script = format!(
            "trap 'echo {sig} > {got}; exit 5' {sig}; touch {ready}; \
             while :; do sleep 0.05; done",
            got = got.display(),
            ready = ready.display()
        );
        let mut child = spawn(redmutex(&cluster.urls()).args(["run", &key, "-c", &script]));
        wait_file(&ready);
        signal(child.id(), sig);
        let status = wait_for(&mut child, SOON);
        assert_eq!(status.code(), Some(5), "{sig}");
        assert_eq!(fs::read_to_string(&got).unwrap().trim(), sig);
        assert_eq!(cluster.nodes_with(&key), 0, "not released after {sig}");

        // A command that dies of the signal: 128 + N.
        let ready = dir.join(format!("ready2-{sig}"));
        let script = format!("touch {}; exec sleep 60", ready.display());
        let mut child = spawn(redmutex(&cluster.urls()).args(["run", &key, "-c", &script]));
        wait_file(&ready);
        signal(child.id(), sig);
        let status = wait_for(&mut child, SOON);
        assert_eq!(status.code(), Some(128 + num), "{sig}: {status:?}");
        assert!(status.signal().is_none());
        assert_eq!(cluster.nodes_with(&key), 0, "not released after {sig}");
    }
}

/// The bound asserted on "a signal ends the wait": the library looks at the cancel flag at
/// least every 20 ms (or after the round under way, bounded by the I/O timeout), and the
/// process then only has to exit. Generous, for a loaded machine; the measured times are
/// printed.
const SIGNAL_LIMIT: Duration = Duration::from_secs(2);

#[test]
fn a_signal_while_waiting_ends_the_wait_at_once() {
    let cluster = RedisCluster::start(3);
    let key = "cli:waitsig";
    let token = acquire(&cluster, key, "60");
    for (sig, num, args) in [
        (
            "TERM",
            15,
            &["run", "-w", "60", key, "--", "echo", "ran"][..],
        ),
        ("INT", 2, &["run", key, "--", "echo", "ran"]),
        ("HUP", 1, &["run", "-w", "60", key, "--", "echo", "ran"]),
        ("INT", 2, &["acquire", key]),
        ("TERM", 15, &["acquire", "-w", "60", key]),
    ] {
        cluster.clear_waiting(key);
        let child = spawn(
            redmutex(&cluster.urls())
                .arg("-v")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        cluster.wait_waiting(key);
        let sent = Instant::now();
        signal(child.id(), sig);
        // Its exit is seen within a millisecond or so of happening.
        let Some((o, at)) = child.output_within(SOON) else {
            panic!("{args:?} did not end on SIG{sig}");
        };
        let took = at.saturating_duration_since(sent);
        println!(
            "SIG{sig} during `{}`: exited {took:?} after `kill`",
            args.join(" ")
        );
        assert_eq!(code(&o), 128 + num, "{args:?}: {}", stderr(&o));
        assert!(took < SIGNAL_LIMIT, "SIG{sig}: {took:?}");
        assert_eq!(stdout(&o), "", "the command ran, or a token was printed");
        assert!(
            stderr(&o).contains(&format!("interrupted by SIG{sig} after waiting")),
            "{}",
            stderr(&o)
        );
        // The holder's lock is untouched.
        for i in 0..cluster.len() {
            assert_eq!(cluster.cmd(i, &["GET", key]), token, "node {i}");
        }
    }
    let o = run_ok(redmutex(&cluster.urls()).args(["release", key, &token]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// Wall-clock nanoseconds, comparable with `date +%s%N` in the commands.
fn now_ns() -> i128 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i128::try_from(d.as_nanos()).unwrap()
}

fn read_ns(path: &Path) -> i128 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// Waits until the waiter of `key` has just made a round: its waiting mark (refreshed, with a
/// fresh expiry, by each of its rounds) had its time to live go up. A waiter that is not woken
/// makes its next round only after a whole pause (50 to 100 ms by default).
fn wait_round(cluster: &RedisCluster, key: &str) {
    let [mark, _] = waiting_marks(key);
    let pttl = || {
        cluster
            .cmd(0, &["PTTL", &mark])
            .parse::<i64>()
            .unwrap_or(-2)
    };
    let deadline = Instant::now() + SOON;
    let mut last = pttl();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        let now = pttl();
        if now > last {
            return;
        }
        last = now;
    }
    panic!("the waiter of {key} made no round within {SOON:?}");
}

/// How the holder lets go, in [`wake_up_delay`].
#[derive(Clone, Copy, Debug)]
enum Holder {
    /// `redmutex run` whose command ends: its release announces itself to the waiters.
    Run,
    /// `redmutex acquire`, then `redmutex release` from another process (announced too).
    Token,
    /// Another client: a plain `SET NX PX` key, deleted with `DEL` (nothing announced: a
    /// waiter can only notice by polling).
    Foreign,
}

/// Holds `key` as `holder` says, starts `redmutex run -w 30 key` as a waiter, lets go just
/// after one of the waiter's rounds, and returns the delay from letting go to the waiter's
/// command starting (both stamped by the wall clock).
fn wake_up_delay(
    cluster: &RedisCluster,
    urls: &[String],
    key: &str,
    holder: Holder,
    trial: usize,
) -> Duration {
    let dir = cluster.node(0).dir().to_owned();
    let file = |name: &str| dir.join(format!("{name}-{holder:?}-{trial}"));
    let (ready, go, end, start) = (file("ready"), file("go"), file("end"), file("start"));
    cluster.clear_waiting(key);
    let mut holding = None;
    let mut token = None;
    match holder {
        Holder::Run => {
            // The holder's command stamps its end just before it exits; redmutex then releases.
            let script = format!(
                "touch {ready}; while [ ! -e {go} ]; do sleep 0.002; done; date +%s%N > {end}",
                ready = ready.display(),
                go = go.display(),
                end = end.display()
            );
            let child = spawn(
                redmutex(urls)
                    .args(["run", key, "-c", &script])
                    .stdin(Stdio::null()),
            );
            holding = Some(child);
            wait_file(&ready);
        }
        Holder::Token => {
            let o = run_ok(redmutex(urls).args(["acquire", "--ttl", "60", key]));
            assert_eq!(code(&o), 0, "{}", stderr(&o));
            token = Some(stdout(&o).trim().to_owned());
        }
        Holder::Foreign => {
            for i in 0..cluster.len() {
                assert_eq!(
                    cluster.cmd(i, &["SET", key, "someone-else", "NX", "PX", "60000"]),
                    "OK"
                );
            }
        }
    }
    let script = format!("date +%s%N > {}", start.display());
    let mut waiter = spawn(
        redmutex(urls)
            .args(["run", "-w", "30", key, "-c", &script])
            .stdin(Stdio::null()),
    );
    cluster.wait_waiting(key);
    wait_round(cluster, key);
    let let_go = match holder {
        Holder::Run => {
            fs::write(&go, "").unwrap();
            let status = wait_for(holding.as_mut().unwrap(), SOON);
            assert_eq!(status.code(), Some(0));
            read_ns(&end)
        }
        Holder::Token => {
            let at = now_ns();
            let o = run_ok(redmutex(urls).args(["release", key, &token.unwrap()]));
            assert_eq!(code(&o), 0, "{}", stderr(&o));
            at
        }
        Holder::Foreign => {
            for i in 0..cluster.len() {
                assert_eq!(cluster.cmd(i, &["DEL", key]), "1");
            }
            now_ns()
        }
    };
    assert_eq!(wait_for(&mut waiter, SOON).code(), Some(0));
    let delay = read_ns(&start) - let_go;
    Duration::from_nanos(u64::try_from(delay.max(0)).unwrap())
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// Runs the wake-up trials with `urls` and returns the medians (woken, polling only).
fn wake_up_trials(cluster: &RedisCluster, urls: &[String], key: &str) -> (Duration, Duration) {
    let trials = 5;
    let (mut run, mut token, mut foreign) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 0..trials {
        run.push(wake_up_delay(cluster, urls, key, Holder::Run, trial));
        foreign.push(wake_up_delay(cluster, urls, key, Holder::Foreign, trial));
        if trial < 3 {
            token.push(wake_up_delay(cluster, urls, key, Holder::Token, trial));
        }
    }
    println!("{key}: holder `run` ends -> waiter's command starts: {run:?}");
    println!("{key}: `redmutex release` starts -> waiter's command starts: {token:?}");
    println!("{key}: poll only, foreign key deleted -> waiter's command starts: {foreign:?}");
    let (woken, polled) = (median(&run), median(&foreign));
    println!("{key}: medians: woken {woken:?}, polling only {polled:?}");
    assert!(
        median(&token) < Duration::from_secs(2),
        "release from another process: {token:?}"
    );
    assert_eq!(cluster.nodes_with(key), 0);
    (woken, polled)
}

/// A waiter woken by the release of another process starts its command in milliseconds; one
/// that can only poll (the holder is another client, whose release announces nothing) needs
/// the rest of its pause between rounds, 50 to 100 ms by default. Both are let go just after
/// one of the waiter's rounds, so without the wake-up both would wait a whole pause.
///
/// Over RESP3 here, where the release arrives as a push message; the default protocol (RESP2)
/// is the next test.
#[test]
fn a_waiter_is_woken_by_a_release_from_another_process_over_resp3() {
    let cluster = RedisCluster::start(3);
    let urls: Vec<String> = cluster
        .urls()
        .iter()
        .map(|u| format!("{u}?protocol=resp3"))
        .collect();
    let (woken, polled) = wake_up_trials(&cluster, &urls, "cli:wake3");
    // The smallest pause between two rounds of a waiter is 50 ms: a waiter let go just after
    // a round and starting well within it was woken.
    assert!(woken < Duration::from_millis(40), "woken {woken:?}");
    assert!(woken < polled, "woken {woken:?}, polling {polled:?}");
}

/// The same with the default protocol (RESP2). This failed while the library's subscriber read
/// with `Connection::recv_response` under a read timeout (20 ms slices while a cancel flag is
/// set): redis 1.8.1 counts every timed-out `recv_response` as a reply to skip, so the next
/// non-push value, over RESP2 the release message, was discarded. It reads with
/// `PubSub::get_message` now.
#[test]
fn a_waiter_is_woken_by_a_release_from_another_process() {
    let cluster = RedisCluster::start(3);
    let (woken, polled) = wake_up_trials(&cluster, &cluster.urls(), "cli:wake2");
    assert!(woken < Duration::from_millis(40), "woken {woken:?}");
    assert!(woken < polled, "woken {woken:?}, polling {polled:?}");
}

#[test]
fn unreachable_nodes_give_one_clear_error() {
    let nodes = vec![
        dead_url(),
        dead_url(),
        dead_url().replace("redis://", "redis://user:hunter2@"),
    ];
    let start = Instant::now();
    let o = run_ok(redmutex(&nodes).args(["run", "cli:dead", "--", "echo", "ran"]));
    assert_eq!(code(&o), 69, "{}", stderr(&o));
    assert!(start.elapsed() < SOON);
    assert_eq!(stdout(&o), "", "ran without the lock");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("redmutex: error: no quorum for \"cli:dead\""),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    // --verbose adds one line per node.
    let o = run_ok(redmutex(&nodes).args(["-v", "acquire", "-n", "cli:dead"]));
    assert_eq!(code(&o), 69);
    let err = stderr(&o);
    assert!(!err.contains("hunter2"), "{err}");
    for n in &nodes {
        let addr = n.rsplit('@').next().unwrap().trim_start_matches("redis://");
        assert!(err.contains(&format!("node {addr}: ")), "{addr} in {err}");
    }

    for args in [
        &["status", "cli:dead"][..],
        &["release", "cli:dead", "t"],
        &["extend", "cli:dead", "t"],
    ] {
        let o = run_ok(redmutex(&nodes).args(args));
        assert_eq!(code(&o), 69, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("hunter2"));
        assert!(!stdout(&o).contains("hunter2"));
    }
}

#[test]
fn bad_usage_gives_64_and_help_gives_0() {
    let nodes = vec![dead_url()];
    for args in [
        &["--bogus"][..],
        &[],
        &["run", "k"],
        &["run", "-c", "true", "k", "--", "ls"],
        &["run", "-w", "abc", "k", "true"],
        &["run", "-w", "-1", "k", "true"],
        &["run", "-n", "-w", "1", "k", "true"],
        &["run", "-E", "300", "k", "true"],
        &["run", "--ttl", "0", "k", "true"],
        &["status"],
        &["frobnicate"],
        &["--node", "ftp://127.0.0.1:1", "status", "k"],
        &[
            "--node",
            "redis://:hunter2@127.0.0.1:1",
            "--node",
            "redis://:hunter2@127.0.0.1:1",
            "status",
            "k",
        ],
    ] {
        let o = run_ok(redmutex(&nodes).args(args));
        assert_eq!(code(&o), 64, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(!err.contains("hunter2"), "{err}");
        if !args.is_empty() {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("redmutex: error: "), "{err}");
        }
    }
    let o = run_ok(redmutex(&nodes).arg("--help"));
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("Exit status:"));
    assert!(stdout(&o).contains("79"));
    let o = run_ok(redmutex(&nodes).args(["run", "--help"]));
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("REDMUTEX_TOKEN"));
    let o = run_ok(redmutex(&nodes).arg("--version"));
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("redmutex "));
}

#[test]
fn status_shows_each_node_and_the_verdict() {
    let cluster = RedisCluster::start(3);
    let status = |key: &str| -> serde_json::Value {
        let o = run_ok(redmutex(&cluster.urls()).args(["status", "--json", key]));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let free = status("cli:status");
    assert_eq!(free["verdict"], "free");
    assert_eq!(free["quorum"], 2);
    assert_eq!(free["nodes"].as_array().unwrap().len(), 3);

    let token = acquire(&cluster, "cli:status", "30");
    let fingerprint = Fingerprint::of(&token).to_string();
    let held = status("cli:status");
    assert_eq!(held["verdict"], "held");
    assert_eq!(held["holder"], fingerprint.as_str());
    assert_eq!(held["agreeing"], 3);
    assert_eq!(held["answered"], 3);
    let ttl = held["ttl_ms"].as_u64().unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "{ttl}");
    assert!(held["fencing_counter"].is_null());
    for n in held["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "held");
        assert_eq!(n["holder"], fingerprint.as_str());
        let ttl = n["ttl_ms"].as_u64().unwrap();
        assert!(ttl > 0 && ttl <= 30_000, "{ttl}");
        assert!(n["error"].is_null());
    }
    assert!(!held.to_string().contains(&token), "the token is not shown");

    // One node down: still a verdict, and its error in its row.
    cluster.kill(2);
    let partial = status("cli:status");
    assert_eq!(partial["verdict"], "held");
    assert_eq!(partial["nodes"][2]["state"], "error");
    assert!(partial["nodes"][2]["error"].is_string());

    let o = run_ok(redmutex(&cluster.urls()).args(["status", "cli:status"]));
    assert_eq!(code(&o), 0);
    let table = stdout(&o);
    assert!(
        table.contains(&format!("held by {fingerprint} on 2 of 3 nodes")),
        "{table}"
    );
    assert!(!table.contains(&token), "the token is not shown");
    assert!(
        table.contains(&format!("127.0.0.1:{}", cluster.port(0))),
        "{table}"
    );
}

#[test]
fn acquire_extend_release_round_trip() {
    let cluster = RedisCluster::start(3);
    let key = "cli:trip";
    let token = acquire(&cluster, key, "5");
    let pttl = |i: usize| cluster.cmd(i, &["PTTL", key]).parse::<i64>().unwrap();
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["GET", key]), token);
        assert!(pttl(i) <= 5_000);
    }

    let o = run_ok(redmutex(&cluster.urls()).args(["-v", "extend", key, &token, "--ttl", "60"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("extended \"cli:trip\": valid for"),
        "{}",
        stderr(&o)
    );
    for i in 0..3 {
        assert!(pttl(i) > 5_000);
    }

    // The token from the environment, as a script would keep it out of `ps`.
    let o = run_ok(
        redmutex(&cluster.urls())
            .env("REDMUTEX_TOKEN", &token)
            .args(["extend", key, "--ttl", "90"]),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!((0..3).all(|i| pttl(i) > 60_000));

    let o = run_ok(
        redmutex(&cluster.urls())
            .env("REDMUTEX_TOKEN", &token)
            .args(["release", key]),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(cluster.nodes_with(key), 0);
    let o = run_ok(redmutex(&cluster.urls()).args(["release", key, &token]));
    assert_eq!(code(&o), LOST, "released twice");
    assert!(stderr(&o).starts_with("redmutex: error: "));
    let o = run_ok(redmutex(&cluster.urls()).args(["extend", key, &token]));
    assert_eq!(code(&o), LOST, "extended after its release");
    assert_eq!(cluster.nodes_with(key), 0, "an extend brought it back");
}

/// A wrong token changes nothing on the nodes (the real holder's key keeps its value and
/// expiry), and gives one clear line with 79; `status` names the real holder.
#[test]
fn a_wrong_token_changes_nothing() {
    let cluster = RedisCluster::start(3);
    let key = "cli:wrong";
    let token = acquire(&cluster, key, "30");
    let wrong = "0".repeat(40);
    let pttls = || -> Vec<i64> {
        (0..3)
            .map(|i| cluster.cmd(i, &["PTTL", key]).parse().unwrap())
            .collect()
    };
    let unchanged = |what: &str, before: &[i64]| {
        for (i, before) in before.iter().enumerate() {
            assert_eq!(cluster.cmd(i, &["GET", key]), token, "{what}: node {i}");
            let now: i64 = cluster.cmd(i, &["PTTL", key]).parse().unwrap();
            assert!(
                now > 0 && now <= *before,
                "{what}: node {i}: {before} -> {now}"
            );
        }
    };
    let expected = "redmutex: error: \"cli:wrong\" is not held with this token on a quorum \
                    (expired, released, taken over, or a wrong token)\n";

    let before = pttls();
    let o = run_ok(redmutex(&cluster.urls()).args(["extend", key, &wrong, "--ttl", "600"]));
    assert_eq!(code(&o), LOST, "{}", stderr(&o));
    assert_eq!(stderr(&o), expected);
    unchanged("extend", &before);

    let before = pttls();
    let o = run_ok(redmutex(&cluster.urls()).args(["release", key, &wrong]));
    assert_eq!(code(&o), LOST, "{}", stderr(&o));
    assert_eq!(stderr(&o), expected);
    assert_eq!(stdout(&o), "");
    unchanged("release", &before);

    // A token that is not even hex, and one from the environment.
    let o = run_ok(redmutex(&cluster.urls()).args(["release", key, "wrong"]));
    assert_eq!(code(&o), LOST, "{}", stderr(&o));
    let o = run_ok(
        redmutex(&cluster.urls())
            .env("REDMUTEX_TOKEN", &wrong)
            .args(["release", key]),
    );
    assert_eq!(code(&o), LOST, "{}", stderr(&o));
    unchanged("release from the environment", &before);

    // Malformed input is a usage error, before any node is asked.
    for args in [
        &["release", key, ""][..],
        &["extend", key, &token, "--ttl", "0"],
    ] {
        let o = run_ok(redmutex(&cluster.urls()).args(args));
        assert_eq!(code(&o), 64, "{args:?}: {}", stderr(&o));
    }
    unchanged("malformed input", &before);

    let v = status_json(&mut redmutex(&cluster.urls()), key);
    assert_eq!(v["holder"], Fingerprint::of(&token).to_string().as_str());
    assert_ne!(v["holder"], Fingerprint::of(&wrong).to_string().as_str());
    let text = v.to_string();
    assert!(!text.contains(&token) && !text.contains(&wrong));

    let o = run_ok(redmutex(&cluster.urls()).args(["release", key, &token]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// `redmutex` with its nodes from `REDMUTEX_NODES` (and no `--node`).
fn redmutex_env(nodes: &str) -> Command {
    let mut cmd = redmutex(&[]);
    cmd.env("REDMUTEX_NODES", nodes);
    cmd
}

/// `status --json` through `cmd`, which must succeed.
fn status_json(cmd: &mut Command, key: &str) -> serde_json::Value {
    let o = run_ok(cmd.args(["status", "--json", key]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn pttl(node: &RedisNode, key: &str) -> i64 {
    node.cmd(&["PTTL", key]).parse().unwrap()
}

/// Every subcommand takes Sentinel URLs (the library's node forms), alone or mixed with plain
/// nodes, from `--node` and from `REDMUTEX_NODES` (where the Sentinel URL keeps its commas).
#[test]
fn sentinel_nodes_work_in_every_subcommand() {
    let group = SentinelGroup::start("cli-group");
    let plain = RedisCluster::start(2);
    let sentinel_url = group.url();
    assert!(sentinel_url.contains(','), "{sentinel_url}");
    let master = group.master();

    // One Sentinel node, through --node.
    let one = [sentinel_url.clone()];
    let key = "cli:sentinel1";
    let free = status_json(&mut redmutex(&one), key);
    assert_eq!(free["verdict"], "free");
    let name = free["nodes"][0]["node"].as_str().unwrap();
    assert!(name.starts_with("sentinel:cli-group@127.0.0.1:"), "{name}");

    let o = run_ok(redmutex(&one).args(["acquire", "--ttl", "5", key]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let token = stdout(&o).trim().to_owned();
    assert_eq!(master.cmd(&["GET", key]), token, "the key is on the master");
    let held = status_json(&mut redmutex(&one), key);
    assert_eq!(held["verdict"], "held");
    assert_eq!(held["holder"], Fingerprint::of(&token).to_string().as_str());

    let o = run_ok(redmutex(&one).args(["extend", key, &token, "--ttl", "60"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(pttl(master, key) > 5_000);
    let o = run_ok(redmutex(&one).args(["release", key, "not-the-token"]));
    assert_eq!(code(&o), LOST, "{}", stderr(&o));
    assert_eq!(master.cmd(&["GET", key]), token);
    let o = run_ok(redmutex(&one).args(["release", key, &token]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(master.cmd(&["EXISTS", key]), "0");
    let o = run_ok(redmutex(&one).args(["run", "-n", key, "--", "true"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // The Sentinel URL and two plain nodes in REDMUTEX_NODES, separated by a space and a ';'.
    let nodes = format!("{sentinel_url} {};{}", plain.url(0), plain.url(1));
    let key = "cli:sentinel3";
    let o = run_ok(redmutex_env(&nodes).args(["acquire", "--ttl", "5", key]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let token = stdout(&o).trim().to_owned();
    assert_eq!(master.cmd(&["GET", key]), token);
    for i in 0..2 {
        assert_eq!(plain.cmd(i, &["GET", key]), token);
    }
    let held = status_json(&mut redmutex_env(&nodes), key);
    assert_eq!(held["verdict"], "held");
    assert_eq!(held["agreeing"], 3);
    assert_eq!(held["quorum"], 2);
    let views = held["nodes"].as_array().unwrap();
    assert_eq!(views.len(), 3);
    assert!(views[0]["node"].as_str().unwrap().starts_with("sentinel:"));
    assert!(views.iter().all(|n| n["state"] == "held"));

    let o = run_ok(redmutex_env(&nodes).args(["extend", key, &token, "--ttl", "60"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(pttl(master, key) > 5_000);
    assert!(pttl(plain.node(1), key) > 5_000);
    let o = run_ok(
        redmutex_env(&nodes)
            .env("REDMUTEX_TOKEN", &token)
            .args(["release", key]),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(master.cmd(&["EXISTS", key]), "0");
    assert_eq!(plain.nodes_with(key), 0);

    // A `run` through the same list.
    let o = run_ok(redmutex_env(&nodes).args(["run", key, "--", "true"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// `REDMUTEX_NODES` takes spaces, ';' and newlines; the older comma-separated list of URLs
/// still works; a comma list that is not made of URLs is refused with a hint, never misread.
#[test]
fn the_node_list_separators() {
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    for nodes in [
        urls.join(" "),
        urls.join(";"),
        format!(" {}\n{} ;\t{} ", urls[0], urls[1], urls[2]),
        // As before: commas, each followed by a URL.
        urls.join(","),
    ] {
        let v = status_json(&mut redmutex_env(&nodes), "cli:list");
        assert_eq!(v["nodes"].as_array().unwrap().len(), 3, "{nodes:?}");
        assert_eq!(v["quorum"], 2, "{nodes:?}");
    }
    // --node values are split the same way, and repeat.
    let o = run_ok(
        redmutex(&[format!("{} {}", urls[0], urls[1]), urls[2].clone()])
            .args(["status", "--json", "cli:list"]),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // host:port pairs with commas: not URLs, so no list; the node does not parse.
    let bare: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", cluster.port(i)))
        .collect();
    let o = run_ok(redmutex_env(&bare.join(",")).args(["status", "cli:list"]));
    assert_eq!(code(&o), 64, "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("separate nodes with spaces or ';'"), "{err}");
    // Set but empty: an error, not a silent fall back to the default node.
    for value in ["", " ; "] {
        let o = run_ok(redmutex_env(value).args(["status", "cli:list"]));
        assert_eq!(code(&o), 64, "{}", stderr(&o));
        assert!(stderr(&o).contains("no nodes given"), "{}", stderr(&o));
    }
}

/// `run -v` says how long it waited and what lease it got, and how the lease ended; `-vv`
/// says more, but never the token.
#[test]
fn run_verbose_reports_the_wait_and_the_lease() {
    let cluster = RedisCluster::start(3);
    let key = "cli:verbose";
    // Held by a lease nobody releases: the run waits until its TTL ends.
    let token = acquire(&cluster, key, "0.5");
    let o = run_ok(redmutex(&cluster.urls()).args([
        "-v",
        "run",
        "-w",
        "30",
        "--fencing",
        key,
        "--",
        "true",
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    let waited: u64 = err
        .split("acquired \"cli:verbose\" after waiting ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no wait in {err}"));
    assert!(
        waited >= 200,
        "waited {waited} ms for a 500 ms lease: {err}"
    );
    assert!(err.contains(": lease valid for "), "{err}");
    assert!(err.contains(", fencing token "), "{err}");
    assert!(err.contains("the command ended (exit status 0)"), "{err}");
    assert!(
        err.contains("released \"cli:verbose\": it stayed held throughout"),
        "{err}"
    );

    // -vv: the factory (nodes by address), the rounds, the token's fingerprint only.
    let out = cluster.node(0).dir().join("verbose-token");
    let script = format!("echo $REDMUTEX_TOKEN > {}", out.display());
    let o = run_ok(redmutex(&cluster.urls()).args(["-vv", "run", key, "-c", &script]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    let run_token = fs::read_to_string(&out).unwrap().trim().to_owned();
    assert!(err.contains("RedLockFactory { nodes: [127.0.0.1:"), "{err}");
    assert!(err.contains("debug: acquire \"cli:verbose\""), "{err}");
    assert!(
        err.contains(&format!(
            "token fingerprint {}",
            Fingerprint::of(&run_token)
        )),
        "{err}"
    );
    assert!(!err.contains(&run_token), "the token was printed: {err}");
    assert!(!err.contains(&token));

    // A lease lost while the command runs.
    let mut child = spawn(
        redmutex(&cluster.urls())
            .args(["-v", "run", "--ttl", "1", key, "-c", "exec sleep 60"])
            .stderr(Stdio::piped()),
    );
    wait_held(&cluster, key);
    for i in 0..3 {
        cluster.cmd(i, &["DEL", key]);
    }
    let status = wait_for(&mut child, SOON);
    let err = child.read_stderr();
    assert_eq!(status.code(), Some(LOST), "{err}");
    assert!(
        err.contains("error: lost the lease on \"cli:verbose\""),
        "{err}"
    );
    assert!(
        err.contains("the command ended (killed by SIGTERM)"),
        "{err}"
    );
    assert!(err.contains("lease on \"cli:verbose\" lost: "), "{err}");
}

/// A TCP server on a free loopback port that answers every request like an HTTP server.
fn http_server() -> u16 {
    use crate::bad_input::{Fake, not_redis};
    not_redis(Fake::Replies(b"HTTP/1.1 400 Bad Request\r\n\r\n"))
}

/// A port that is not Redis: every error is one line, also the `error` field of
/// `status --json` (it held a four-line "Parse error ..." with `\n`s).
#[test]
fn a_node_that_is_not_redis_is_one_line_everywhere() {
    let nodes = vec![format!("redis://127.0.0.1:{}", http_server())];
    let o = run_ok(redmutex(&nodes).args(["status", "--json", "cli:http"]));
    assert_eq!(code(&o), 69, "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let error = json["nodes"][0]["error"].as_str().unwrap().to_owned();
    assert!(!error.contains('\n'), "{error:?}");
    assert!(error.contains("not Redis protocol"), "{error}");
    for args in [&["status", "cli:http"][..], &["acquire", "-n", "cli:http"]] {
        let o = run_ok(redmutex(&nodes).args(args));
        assert_eq!(code(&o), 69, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("not Redis protocol"), "{args:?}: {err}");
    }
}

/// A bad node URL: exit 64, one line naming what is wrong and the right form.
#[test]
fn a_bad_node_url_is_one_line_with_the_reason_and_the_form() {
    let o = run_ok(redmutex(&["redis://127.0.0.1:notaport".to_owned()]).args(["status", "k"]));
    assert_eq!(code(&o), 64, "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("the port \"notaport\" is not a number"),
        "{err}"
    );
    assert!(err.contains("e.g. redis://127.0.0.1:6379"), "{err}");
}

/// Signals that redmutex handles (SIGCHLD here) interrupt a socket read that has a timeout
/// (EINTR: such a read is never restarted). That is not the node's failure: the node must
/// not be marked down, warned about, or backed off from. The replies to the rounds' commands
/// come 300 ms late, and a burst of signals comes while the first round waits for its reply;
/// a later round takes the lock.
#[test]
fn signals_during_rounds_do_not_count_as_node_failures() {
    use crate::support::proxy::{Proxy, bulk, contains};
    let cluster = RedisCluster::start(1);
    let proxy = Proxy::start(cluster.port(0));
    // The rounds' commands (SET NX, EVALSHA), not the connection's handshake.
    let (set, evalsha) = (bulk("SET"), bulk("EVALSHA"));
    proxy.delay_replies_to_if(
        move |req| contains(req, &set) || contains(req, &evalsha),
        Duration::from_millis(300),
    );
    let child = spawn(
        redmutex(&[proxy.url()])
            .args(["acquire", "-w", "30", "cli:eintr"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let pid = child.id();
    // The first round's command went through: its reply is being held, and redmutex waits
    // for it.
    assert!(
        deadline_loop(SOON, || proxy.counters().matched >= 1),
        "no round reached the node"
    );
    let burst = Instant::now() + Duration::from_millis(150);
    while Instant::now() < burst {
        let sent = Command::new("kill")
            .args(["-CHLD", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (o, _) = child
        .output_within(SOON * 2)
        .unwrap_or_else(|| panic!("redmutex acquire did not end"));
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(!err.contains("is failing"), "{err}");
    assert!(!stdout(&o).trim().is_empty(), "no token printed");
}

/// Node URLs of `cluster` that log in as `user` (password `pw`), created on every node with
/// `rules` after `reset on >pw`.
fn acl_urls(cluster: &RedisCluster, user: &str, rules: &[&str]) -> Vec<String> {
    (0..cluster.len())
        .map(|i| {
            let mut args = vec!["ACL", "SETUSER", user, "reset", "on", ">pw"];
            args.extend_from_slice(rules);
            assert_eq!(cluster.cmd(i, &args), "OK", "{args:?}");
            format!("redis://{user}:pw@127.0.0.1:{}", cluster.port(i))
        })
        .collect()
}

/// A permission error (NOPERM) has its own exit status, 77, apart from an outage (69). (It
/// exited 69.)
#[test]
fn a_permission_error_exits_77() {
    let cluster = RedisCluster::start(3);
    // Everything but SET and scripts: the handshake works, taking the lock does not.
    let nodes = acl_urls(
        &cluster,
        "noset",
        &["~*", "&*", "+@all", "-set", "-evalsha", "-eval"],
    );
    let o = run_ok(redmutex(&nodes).args(["acquire", "-n", "cli:noperm"]));
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(
        stderr(&o).to_lowercase().contains("no permissions"),
        "{}",
        stderr(&o)
    );
    // Reading is not allowed either: `status` is 77 too.
    let nodes = acl_urls(&cluster, "noget", &["~*", "&*", "+@all", "-get", "-pttl"]);
    let o = run_ok(redmutex(&nodes).args(["status", "cli:noperm"]));
    assert_eq!(code(&o), 77, "{}", stderr(&o));
}

/// `run` (a lock, and `--permits`: a semaphore) whose command exited 0 but whose release
/// failed (an ACL without DEL, which only releases need) exits with the release's status,
/// 77, not 0: the lock stays behind for its TTL, run after run. (It exited 0.)
#[test]
fn run_exits_with_the_release_failure_when_the_command_succeeded() {
    let cluster = RedisCluster::start(3);
    let nodes = acl_urls(&cluster, "nodel", &["~*", "&*", "+@all", "-del", "-unlink"]);
    for permits in [None, Some("2")] {
        let mut cmd = redmutex(&nodes);
        cmd.arg("run");
        if let Some(n) = permits {
            cmd.args(["--permits", n]);
        }
        let o = run_ok(cmd.args(["--ttl", "5", "cli:nodel", "--", "true"]));
        let err = stderr(&o);
        assert_eq!(code(&o), 77, "{permits:?}: {err}");
        assert!(err.contains("could not be released"), "{permits:?}: {err}");
        // A command that failed keeps its own status.
        let mut cmd = redmutex(&nodes);
        cmd.arg("run");
        if let Some(n) = permits {
            cmd.args(["--permits", n]);
        }
        let o = run_ok(cmd.args([
            "--ttl",
            "5",
            "-w",
            "20",
            "cli:nodel2",
            "--",
            "sh",
            "-c",
            "exit 3",
        ]));
        assert_eq!(code(&o), 3, "{permits:?}: {}", stderr(&o));
        for i in 0..3 {
            cluster.cmd(i, &["FLUSHALL"]);
        }
    }
}

/// `acquire --fencing` prints the fencing token after the token, and it grows with every
/// acquisition. (There was no `--fencing` for `acquire`.)
#[test]
fn acquire_fencing_prints_a_growing_fencing_token() {
    let cluster = RedisCluster::start(3);
    let mut last = 0;
    for _ in 0..2 {
        let o = run_ok(redmutex(&cluster.urls()).args(["acquire", "--fencing", "cli:fence"]));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let out = stdout(&o);
        let (token, fencing) = out.trim().split_once(' ').expect("TOKEN FENCING_TOKEN");
        let fencing: u64 = fencing.parse().unwrap();
        assert!(fencing > last, "{fencing} after {last}");
        last = fencing;
        let o = run_ok(redmutex(&cluster.urls()).args(["release", "cli:fence", token]));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    // Without --fencing, the token alone.
    let o = run_ok(redmutex(&cluster.urls()).args(["acquire", "cli:fence"]));
    assert!(!stdout(&o).trim().contains(' '), "{}", stdout(&o));
}

/// `status` on a semaphore's name shows the permit count and how many are held. (It showed a
/// fingerprint of the name key's value, as if one holder held a lock.)
#[test]
fn status_of_a_semaphore_name_shows_its_permits() {
    let cluster = RedisCluster::start(3);
    let f = crate::support::factory(&cluster).build().unwrap();
    let sem = f.create_semaphore("cli:sem", 5);
    let held = [sem.acquire().unwrap(), sem.acquire().unwrap()];
    let json = status_json(&mut redmutex(&cluster.urls()), "cli:sem");
    assert_eq!(json["verdict"], "permits", "{json}");
    assert_eq!(json["permits"], 5, "{json}");
    assert_eq!(json["permits_held"], 2, "{json}");
    assert_eq!(json["holder"], serde_json::Value::Null, "{json}");
    for n in json["nodes"].as_array().unwrap() {
        assert_eq!(
            (&n["state"], &n["permits"], &n["permits_held"]),
            (&"permits".into(), &5.into(), &2.into()),
            "{json}"
        );
    }
    let o = run_ok(redmutex(&cluster.urls()).args(["status", "cli:sem"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("a semaphore of 5 permits, 2 held"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("2/5 held"), "{}", stdout(&o));
    drop(held);
}

/// `run --help` lists run's own options apart from the global ones. (They were mixed in one
/// list.)
#[test]
fn run_help_puts_the_global_options_apart() {
    let o = run_ok(redmutex(&[]).args(["run", "--help"]));
    assert_eq!(code(&o), 0);
    let help = stdout(&o);
    let own = help.find("\nOptions:").expect("Options:");
    let global = help.find("\nGlobal options").expect("Global options");
    assert!(own < global, "{help}");
    let (own, global) = (&help[own..global], &help[global..]);
    for flag in ["--nonblock", "--ttl", "--fencing", "--permits", "--command"] {
        assert!(
            own.contains(flag),
            "{flag} not among run's options:\n{help}"
        );
    }
    for flag in ["--node", "--connect-timeout", "--io-timeout", "--verbose"] {
        assert!(!own.contains(flag), "{flag} among run's options:\n{help}");
        assert!(
            global.contains(flag),
            "{flag} not among the global options:\n{help}"
        );
    }
}

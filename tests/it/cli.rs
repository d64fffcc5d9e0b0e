//! The `redmutex` command, run as a real process (`CARGO_BIN_EXE_redmutex`, as fd's tests do)
//! against real redis-server nodes.

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{RedisCluster, dead_url, deadline_loop};

/// Upper bound for anything that should end "at once" or "soon": catches hangs, not speed.
const SOON: Duration = Duration::from_secs(20);

const LOST: i32 = 79;

/// `redmutex` with the cluster's nodes, and nothing from the caller's environment that would
/// change its behaviour. It runs in its own process group, so it is never in a terminal's
/// foreground group and passes SIGINT on as it would under a supervisor.
fn redmutex(nodes: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redmutex"));
    cmd.env_remove("REDMUTEX_NODES")
        .env_remove("REDMUTEX_TOKEN")
        .process_group(0);
    for n in nodes {
        cmd.arg("--node").arg(n);
    }
    cmd
}

fn run_ok(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits for `child` to end within `limit`; kills it and fails the test otherwise.
fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let mut status = None;
    let ended = deadline_loop(limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("redmutex did not end within {limit:?}");
    }
    status.unwrap()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// How many nodes have `key`.
fn holders(cluster: &RedisCluster, key: &str) -> usize {
    (0..cluster.len())
        .filter(|&i| cluster.cmd(i, &["EXISTS", key]) == "1")
        .count()
}

fn wait_held(cluster: &RedisCluster, key: &str) {
    assert!(
        deadline_loop(SOON, || holders(cluster, key) == cluster.len()),
        "{key} never got held"
    );
}

fn wait_file(path: &Path) {
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
    let mut children: Vec<Child> = (0..4)
        .map(|_| {
            redmutex(&cluster.urls())
                .args(["run", "--ttl", "5", "cli:overlap", "-c", &script])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
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
    assert_eq!(holders(&cluster, "cli:overlap"), 0, "lock left behind");
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
    assert_eq!(holders(&cluster, "cli:env"), 0, "not released");

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
    assert_eq!(holders(&cluster, "cli:env"), 0, "not released");

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
    assert_eq!(holders(&cluster, "cli:env"), 0, "not released");
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
    let mut child = redmutex(&cluster.urls())
        .args(["run", "--ttl", "2", "cli:renew", "-c", &script])
        .spawn()
        .unwrap();
    wait_file(&ready);
    // The lock stays held on every node for more than twice its TTL: it is renewed.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            holders(&cluster, "cli:renew"),
            3,
            "after {:?}",
            start.elapsed()
        );
        assert_eq!(child.try_wait().unwrap(), None, "redmutex ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "-n", "cli:renew", "true"]));
    assert_eq!(code(&o), 1, "the lock was free: {}", stderr(&o));
    fs::write(&done, "").unwrap();
    assert_eq!(wait_for(&mut child, SOON).code(), Some(0));
    assert_eq!(holders(&cluster, "cli:renew"), 0);
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
    let mut waiter = redmutex(&cluster.urls())
        .args(["run", "-w", "30", "cli:busy", "true"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
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
        let mut child = redmutex(&cluster.urls())
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
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_held(&cluster, key);
        for i in 0..3 {
            cluster.cmd(i, &["DEL", key]);
        }
        let status = wait_for(&mut child, SOON);
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
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
        let mut child = redmutex(&cluster.urls())
            .args(["run", &key, "-c", &script])
            .spawn()
            .unwrap();
        wait_file(&ready);
        signal(child.id(), sig);
        let status = wait_for(&mut child, SOON);
        assert_eq!(status.code(), Some(5), "{sig}");
        assert_eq!(fs::read_to_string(&got).unwrap().trim(), sig);
        assert_eq!(holders(&cluster, &key), 0, "not released after {sig}");

        // A command that dies of the signal: 128 + N.
        let ready = dir.join(format!("ready2-{sig}"));
        let script = format!("touch {}; exec sleep 60", ready.display());
        let mut child = redmutex(&cluster.urls())
            .args(["run", &key, "-c", &script])
            .spawn()
            .unwrap();
        wait_file(&ready);
        signal(child.id(), sig);
        let status = wait_for(&mut child, SOON);
        assert_eq!(status.code(), Some(128 + num), "{sig}: {status:?}");
        assert!(status.signal().is_none());
        assert_eq!(holders(&cluster, &key), 0, "not released after {sig}");
    }
}

#[test]
fn a_signal_while_waiting_ends_the_wait() {
    let cluster = RedisCluster::start(3);
    let token = acquire(&cluster, "cli:waitsig", "60");
    let mut child = redmutex(&cluster.urls())
        .args(["-v", "run", "cli:waitsig", "--", "echo", "ran"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "TERM");
    let status = wait_for(&mut child, SOON);
    assert_eq!(status.code(), Some(128 + 15));
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "");
    // Still held by the first holder.
    let o = run_ok(redmutex(&cluster.urls()).args(["release", "cli:waitsig", &token]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
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
    let held = status("cli:status");
    assert_eq!(held["verdict"], "held");
    for n in held["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "held");
        assert_eq!(n["holder"], "a");
        let pttl = n["pttl_ms"].as_i64().unwrap();
        assert!(pttl > 0 && pttl <= 30_000, "{pttl}");
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
    assert!(table.contains("held by a on 2 of 3 nodes"), "{table}");
    assert!(
        table.contains(&format!("127.0.0.1:{}", cluster.port(0))),
        "{table}"
    );
}

#[test]
fn acquire_extend_release_round_trip() {
    let cluster = RedisCluster::start(3);
    let token = acquire(&cluster, "cli:trip", "5");
    let pttl = |i: usize| {
        cluster
            .cmd(i, &["PTTL", "cli:trip"])
            .parse::<i64>()
            .unwrap()
    };
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["GET", "cli:trip"]), token);
        assert!(pttl(i) <= 5_000);
    }

    let o = run_ok(redmutex(&cluster.urls()).args(["extend", "cli:trip", &token, "--ttl", "60"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for i in 0..3 {
        assert!(pttl(i) > 5_000);
    }

    // The token from the environment, as a script would keep it out of `ps`.
    let o = run_ok(
        redmutex(&cluster.urls())
            .env("REDMUTEX_TOKEN", "0".repeat(40))
            .args(["extend", "cli:trip"]),
    );
    assert_eq!(code(&o), LOST, "a wrong token: {}", stderr(&o));
    let o = run_ok(redmutex(&cluster.urls()).args(["release", "cli:trip", "wrong"]));
    assert_eq!(code(&o), LOST);
    assert_eq!(
        holders(&cluster, "cli:trip"),
        3,
        "a wrong token released it"
    );

    let o = run_ok(
        redmutex(&cluster.urls())
            .env("REDMUTEX_TOKEN", &token)
            .args(["release", "cli:trip"]),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(holders(&cluster, "cli:trip"), 0);
    let o = run_ok(redmutex(&cluster.urls()).args(["release", "cli:trip", &token]));
    assert_eq!(code(&o), LOST, "released twice");
    assert!(stderr(&o).starts_with("redmutex: error: "));
}

//! `redmutex elect`, `redmutex leader` and `redmutex run --once`.

use super::*;

/// `redmutex elect --ttl <ttl> --value <value> KEY -c SCRIPT`, spawned.
fn spawn_elect(
    cluster: &RedisCluster,
    ttl: &str,
    value: &str,
    key: &str,
    script: &str,
) -> ChildGuard {
    spawn(
        redmutex(&cluster.urls())
            .args(["elect", "--ttl", ttl, "--value", value, key, "-c", script])
            .stdin(Stdio::null()),
    )
}

/// `redmutex leader --json KEY`: the leader object (`null` when none leads).
fn leader_json(cluster: &RedisCluster, key: &str) -> serde_json::Value {
    let o = run_ok(redmutex(&cluster.urls()).args(["leader", "--json", key]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["key"], key);
    v["leader"].clone()
}

/// A file's number (a term, written by the command).
fn read_number(path: &Path) -> u64 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[test]
fn elect_runs_the_command_while_leading_and_the_next_takes_over_when_it_ends() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    let (term_a, term_b) = (dir.join("a"), dir.join("b"));
    assert!(leader_json(&cluster, "cli:elect").is_null());
    let script = |f: &Path| {
        format!(
            "echo $REDMUTEX_TERM > {f}.tmp; mv {f}.tmp {f}; [ \"$REDMUTEX_FENCING_TOKEN\" = \
             \"$REDMUTEX_TERM\" ] || exit 9; echo $REDMUTEX_LEADER_VALUE > {f}.value; sleep 30",
            f = f.display()
        )
    };
    let mut a = spawn_elect(&cluster, "2", "host-a", "cli:elect", &script(&term_a));
    wait_file(&term_a);
    let leader = leader_json(&cluster, "cli:elect");
    assert_eq!(leader["value"], "host-a");
    assert_eq!(leader["term"].as_u64().unwrap(), read_number(&term_a));
    assert_eq!(leader["revision"], 1);
    assert_eq!(leader["nodes"], 3);
    assert_eq!(
        fs::read_to_string(dir.join("a.value")).unwrap().trim(),
        "host-a"
    );
    // A second candidate waits while A leads.
    let mut b = spawn_elect(&cluster, "2", "host-b", "cli:elect", &script(&term_b));
    let o = run_ok(redmutex(&cluster.urls()).args(["elect", "-n", "cli:elect", "--", "true"]));
    assert_eq!(
        code(&o),
        1,
        "another leads: the conflict code; {}",
        stderr(&o)
    );
    assert!(!term_b.exists());
    // A's command ends (SIGTERM passed on): A resigns, and B takes over at once.
    signal(a.id(), "TERM");
    let status = wait_for(&mut a, SOON);
    assert_eq!(status.code(), Some(128 + 15));
    let ended = Instant::now();
    wait_file(&term_b);
    let took = ended.elapsed();
    eprintln!("[figures] elect: B took over {took:?} after A resigned");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(read_number(&term_b) > read_number(&term_a));
    assert_eq!(leader_json(&cluster, "cli:elect")["value"], "host-b");
    signal(b.id(), "TERM");
    wait_for(&mut b, SOON);
    assert!(leader_json(&cluster, "cli:elect").is_null());
}

#[test]
fn elect_stops_the_command_when_leadership_is_lost() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    let started = dir.join("started");
    let stopped = dir.join("stopped");
    let script = format!(
        "trap 'echo term > {s}; exit 0' TERM; touch {r}; while true; do sleep 0.05; done",
        s = stopped.display(),
        r = started.display()
    );
    let mut child = spawn_elect(&cluster, "1", "x", "cli:elect:lost", &script);
    wait_file(&started);
    for i in 0..3 {
        cluster.cmd(i, &["DEL", "cli:elect:lost"]);
    }
    let status = wait_for(&mut child, SOON);
    assert_eq!(status.code(), Some(LOST));
    assert_eq!(fs::read_to_string(&stopped).unwrap().trim(), "term");
}

#[test]
fn leader_watch_prints_every_change_in_order() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    let out = dir.join("watch");
    let mut watch = spawn(
        redmutex(&cluster.urls())
            .args(["leader", "--watch", "--json", "cli:watch"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap()),
    );
    let lines = || -> Vec<serde_json::Value> {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(deadline_loop(SOON, || !lines().is_empty()));
    assert!(lines()[0]["leader"].is_null(), "{:?}", lines());
    for value in ["v1", "v2", "v3"] {
        let o = run_ok(redmutex(&cluster.urls()).args([
            "elect",
            "--value",
            value,
            "cli:watch",
            "-c",
            "sleep 0.3",
        ]));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    assert!(deadline_loop(SOON, || lines().len() >= 4), "{:?}", lines());
    let seen: Vec<(u64, String)> = lines()[1..]
        .iter()
        .map(|l| {
            (
                l["leader"]["term"].as_u64().unwrap(),
                l["leader"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
        ["v1", "v2", "v3"]
    );
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    signal(watch.id(), "TERM");
    assert_eq!(wait_for(&mut watch, SOON).code(), Some(128 + 15));
}

#[test]
fn run_once_runs_once_per_epoch_and_says_how_it_went() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    let count = dir.join("count");
    let script = format!(
        "echo \"$REDMUTEX_EPOCH;$REDMUTEX_FENCING_TOKEN\" >> {}; exit 3",
        count.display()
    );
    let once = |key: &str, flags: &[&str]| {
        run_ok(
            redmutex(&cluster.urls())
                .args(["run", "--once"])
                .args(flags)
                .args([key, "-c", &script]),
        )
    };
    // Ran, with the command's status.
    let o = once("cli:once@2026-12-01", &[]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    // Already ran: 82, and the command is not run.
    let o = once("cli:once@2026-12-01", &["-v"]);
    assert_eq!(code(&o), 82, "{}", stderr(&o));
    assert!(stderr(&o).contains("already ran: exit 3"), "{}", stderr(&o));
    // Another epoch runs; KEY alone is an epoch of its own.
    assert_eq!(code(&once("cli:once@2026-12-02", &[])), 3);
    assert_eq!(code(&once("cli:once", &[])), 3);
    assert_eq!(code(&once("cli:once", &[])), 82);
    let runs = fs::read_to_string(&count).unwrap();
    let runs: Vec<(&str, u64)> = runs
        .lines()
        .map(|l| {
            let (e, t) = l.split_once(';').unwrap();
            (e, t.parse().unwrap())
        })
        .collect();
    assert_eq!(
        runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        ["2026-12-01", "2026-12-02", ""]
    );
    assert!(runs.windows(2).all(|w| w[0].1 < w[1].1), "{runs:?}");
}

#[test]
fn run_once_while_it_runs_elsewhere_waits_or_gives_83() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    let started = dir.join("started");
    let release = dir.join("release");
    let script = format!(
        "touch {s}; while [ ! -e {r} ]; do sleep 0.02; done",
        s = started.display(),
        r = release.display()
    );
    let mut first = spawn(
        redmutex(&cluster.urls())
            .args(["run", "--once", "cli:busy@1", "-c", &script])
            .stdin(Stdio::null()),
    );
    wait_file(&started);
    let o =
        run_ok(redmutex(&cluster.urls()).args(["run", "--once", "-n", "cli:busy@1", "--", "true"]));
    assert_eq!(code(&o), 83, "{}", stderr(&o));
    let o = run_ok(redmutex(&cluster.urls()).args([
        "run",
        "--once",
        "-w",
        "0.3",
        "cli:busy@1",
        "--",
        "true",
    ]));
    assert_eq!(code(&o), 83, "{}", stderr(&o));
    // One that waits learns the record once the first ends.
    let mut waiter = spawn(
        redmutex(&cluster.urls())
            .args(["run", "--once", "cli:busy@1", "--", "true"])
            .stdin(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(waiter.try_wait().is_none(), "it waits");
    fs::write(&release, "").unwrap();
    assert_eq!(wait_for(&mut first, SOON).code(), Some(0));
    assert_eq!(wait_for(&mut waiter, SOON).code(), Some(82));
}

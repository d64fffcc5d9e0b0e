//! `redmutex run -s` (shared) and `-x` (exclusive): KEY as a read-write lock, next to plain runs
//! (a mutex, which is a writer of the same KEY).

use super::*;

/// `redmutex run <flags> --ttl 5 KEY -c SCRIPT`, spawned.
fn spawn_run(cluster: &RedisCluster, flags: &[&str], key: &str, script: &str) -> ChildGuard {
    spawn(
        redmutex(&cluster.urls())
            .arg("run")
            .args(flags)
            .args(["--ttl", "5", key, "-c", script])
            .stdin(Stdio::null()),
    )
}

/// `redmutex run <flags> -n KEY -- true`: its exit code (0: got it at once, 1: held).
fn try_run(cluster: &RedisCluster, flags: &[&str], key: &str) -> i32 {
    let o = run_ok(
        redmutex(&cluster.urls())
            .arg("run")
            .args(flags)
            .args(["-n", key, "--", "true"]),
    );
    code(&o)
}

/// A script that logs `<tag> start <pid>`, sleeps, logs `<tag> end <pid>`.
fn section(log: &Path, tag: &str, secs: &str) -> String {
    format!(
        "echo {tag} start $$ >> {log}; sleep {secs}; echo {tag} end $$ >> {log}",
        log = log.display()
    )
}

/// Replays the log: no exclusive section (`X`, `M`) overlaps any other section; returns the
/// most shared sections (`S`) seen at once.
fn check_log(log: &Path) -> usize {
    let text = fs::read_to_string(log).unwrap();
    let (mut readers, mut writer, mut most) = (0usize, None::<String>, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (tag, what) = (f[0], f[1]);
        match (tag, what) {
            ("S", "start") => {
                assert!(
                    writer.is_none(),
                    "a shared run began inside {writer:?}:\n{text}"
                );
                readers += 1;
                most = most.max(readers);
            }
            ("S", "end") => readers -= 1,
            (_, "start") => {
                assert!(
                    writer.is_none() && readers == 0,
                    "{line} began while {readers} shared and {writer:?} ran:\n{text}"
                );
                writer = Some(line.to_owned());
            }
            (_, "end") => writer = None,
            _ => panic!("bad log line {line:?}"),
        }
    }
    most
}

fn lines(log: &Path, prefix: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

#[test]
fn shared_runs_overlap_and_exclusive_and_plain_runs_are_alone() {
    let cluster = RedisCluster::start(3);
    let log = cluster.node(0).dir().join("rw-log");
    // Three shared runs at once...
    let mut children: Vec<ChildGuard> = (0..3)
        .map(|_| spawn_run(&cluster, &["-s"], "cli:rw", &section(&log, "S", "0.4")))
        .collect();
    assert!(
        deadline_loop(SOON, || lines(&log, "S start") == 3),
        "the shared runs did not all start"
    );
    // ... then exclusive, plain and more shared runs, all contending.
    for flags in [&["-x"][..], &[], &["-s"], &["-x"], &[], &["-s"]] {
        let tag = match flags {
            ["-s"] => "S",
            ["-x"] => "X",
            _ => "M",
        };
        children.push(spawn_run(
            &cluster,
            flags,
            "cli:rw",
            &section(&log, tag, "0.1"),
        ));
    }
    for mut c in children {
        let status = wait_for(&mut c, SOON * 2);
        assert_eq!(status.code(), Some(0));
    }
    let most = check_log(&log);
    assert_eq!(lines(&log, "X start") + lines(&log, "M start"), 4);
    assert_eq!(lines(&log, "S start"), 5);
    assert!(
        most >= 3,
        "the shared runs never ran together ({most} at most)"
    );
    // Nothing left behind but what expires by itself.
    assert!(deadline_loop(SOON, || cluster.nodes_with("cli:rw") == 0));
}

#[test]
fn plain_and_exclusive_runs_exclude_shared_ones() {
    let cluster = RedisCluster::start(3);
    let flag = cluster.node(0).dir().join("started");
    let script = format!("touch {}; sleep 1.5", flag.display());
    // A plain run holds KEY: neither -s nor -x gets it.
    let mut plain = spawn_run(&cluster, &[], "cli:rw-x", &script);
    wait_file(&flag);
    assert_eq!(try_run(&cluster, &["-s"], "cli:rw-x"), 1);
    assert_eq!(try_run(&cluster, &["-x"], "cli:rw-x"), 1);
    assert_eq!(wait_for(&mut plain, SOON).code(), Some(0));
    fs::remove_file(&flag).unwrap();
    // A shared run holds KEY: another -s gets it at once, a plain run and -x do not.
    let mut shared = spawn_run(&cluster, &["-s"], "cli:rw-x", &script);
    wait_file(&flag);
    assert_eq!(try_run(&cluster, &["-s"], "cli:rw-x"), 0);
    assert_eq!(try_run(&cluster, &[], "cli:rw-x"), 1);
    assert_eq!(try_run(&cluster, &["-x"], "cli:rw-x"), 1);
    assert_eq!(wait_for(&mut shared, SOON).code(), Some(0));
    // Free again: every mode gets it.
    for flags in [&["-s"][..], &["-x"], &[]] {
        assert_eq!(try_run(&cluster, flags, "cli:rw-x"), 0, "{flags:?}");
    }
}

#[test]
fn a_waiting_exclusive_run_keeps_new_shared_runs_out() {
    let cluster = RedisCluster::start(3);
    let dir = cluster.node(0).dir().to_owned();
    let (reading, stop, wrote) = (dir.join("reading"), dir.join("stop"), dir.join("wrote"));
    // A shared run holds KEY until told to stop.
    let mut reader = spawn_run(
        &cluster,
        &["-s"],
        "cli:rw-pref",
        &format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
            reading.display(),
            stop.display()
        ),
    );
    wait_file(&reading);
    // A plain run waiting for KEY does not keep readers out (no writer preference)...
    let mut plain = spawn_run(&cluster, &["-w", "3"], "cli:rw-pref", "true");
    cluster.wait_waiting("cli:rw-pref");
    assert_eq!(try_run(&cluster, &["-s"], "cli:rw-pref"), 0);
    assert_eq!(
        plain.try_wait(),
        None,
        "the plain run no longer waited when the shared run got KEY"
    );
    assert_eq!(wait_for(&mut plain, SOON).code(), Some(1));
    // ... a waiting -x run does.
    let mut writer = spawn_run(
        &cluster,
        &["-x"],
        "cli:rw-pref",
        &format!("touch {}", wrote.display()),
    );
    assert!(deadline_loop(SOON, || (0..3).all(|i| cluster
        .cmd(i, &["EXISTS", "cli:rw-pref:redmutex:writers"])
        == "1")));
    assert_eq!(try_run(&cluster, &["-s"], "cli:rw-pref"), 1);
    assert!(!wrote.exists(), "the writer ran while a reader held KEY");
    fs::write(&stop, "").unwrap();
    assert_eq!(wait_for(&mut reader, SOON).code(), Some(0));
    assert_eq!(wait_for(&mut writer, SOON).code(), Some(0));
    assert!(wrote.exists());
}

#[test]
fn modes_pass_the_token_and_only_writers_a_fencing_token() {
    let cluster = RedisCluster::start(3);
    let env = |flags: &[&str]| {
        let o = run_ok(redmutex(&cluster.urls()).arg("run").args(flags).args([
            "cli:rw-env",
            "-c",
            "echo \"$REDMUTEX_KEY ${#REDMUTEX_TOKEN} ${REDMUTEX_FENCING_TOKEN:-none}\"",
        ]));
        assert_eq!(code(&o), 0, "{flags:?}: {}", stderr(&o));
        stdout(&o).trim().to_owned()
    };
    assert_eq!(env(&["-s"]), "cli:rw-env 40 none");
    assert_eq!(env(&["-x", "--fencing"]), "cli:rw-env 40 1");
    // A plain run is a writer of the same KEY: its fencing token follows the -x run's.
    assert_eq!(env(&["--fencing"]), "cli:rw-env 40 2");
    assert_eq!(env(&["-x"]), "cli:rw-env 40 none");
}

#[test]
fn shared_with_exclusive_or_fencing_is_a_usage_error() {
    let cluster = RedisCluster::start(1);
    for flags in [&["-s", "-x"][..], &["-s", "--fencing"]] {
        let o = run_ok(
            redmutex(&cluster.urls())
                .arg("run")
                .args(flags)
                .args(["k", "--", "true"]),
        );
        assert_eq!(code(&o), 64, "{flags:?}");
        assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    }
}

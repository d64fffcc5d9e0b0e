//! `redmutex run --permits N`: at most N commands at once under one key, across processes; and
//! what happens when one key is used with another N, or as a lock.

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use crate::cli::{code, redmutex, run_ok, spawn, stderr, wait_file, wait_for};
use crate::support::{ChildGuard, RedisCluster, deadline_loop};

#[test]
fn at_most_n_commands_run_at_once_each_with_its_own_permit() {
    let cluster = RedisCluster::start(3);
    let log = cluster.node(0).dir().join("log");
    let script = format!(
        "echo \"start $$ $REDMUTEX_PERMIT $REDMUTEX_PERMITS\" >> {log}; sleep 0.3; \
         echo \"end $$ $REDMUTEX_PERMIT\" >> {log}",
        log = log.display()
    );
    let mut children: Vec<ChildGuard> = (0..5)
        .map(|_| {
            spawn(
                redmutex(&cluster.urls())
                    .args([
                        "run",
                        "--permits",
                        "2",
                        "--ttl",
                        "5",
                        "cli:permits",
                        "-c",
                        &script,
                    ])
                    .stdin(Stdio::null()),
            )
        })
        .collect();
    for c in &mut children {
        assert_eq!(wait_for(c, Duration::from_secs(60)).code(), Some(0));
    }
    let text = fs::read_to_string(&log).unwrap();
    let (mut open, mut most) = (Vec::<String>::new(), 0);
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["start", _pid, permit, "2"] => {
                assert!(
                    !open.contains(&(*permit).to_owned()),
                    "permit {permit} twice:\n{text}"
                );
                open.push((*permit).to_owned());
                most = most.max(open.len());
            }
            ["end", _pid, permit] => open.retain(|p| p != permit),
            _ => panic!("bad line {line:?}:\n{text}"),
        }
    }
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(most <= 2, "{most} commands at once:\n{text}");
    assert_eq!(most, 2, "never 2 at once:\n{text}");
    // Nothing left behind: no permit, no name key (waiting marks expire by themselves).
    for i in 0..3 {
        assert_eq!(cluster.keys(i), Vec::<String>::new(), "node {i}");
    }
}

#[test]
fn one_key_as_permits_and_as_a_lock_exclude_each_other_and_another_count_is_an_error() {
    let cluster = RedisCluster::start(3);
    let started = cluster.node(0).dir().join("started");
    let stop = cluster.node(0).dir().join("stop");
    // A command holds one of 2 permits until told to stop.
    let hold = format!(
        "touch {started}; while [ ! -e {stop} ]; do sleep 0.05; done",
        started = started.display(),
        stop = stop.display()
    );
    let mut holder = spawn(
        redmutex(&cluster.urls())
            .args(["run", "--permits", "2", "cli:mixed", "-c", &hold])
            .stdin(Stdio::null()),
    );
    wait_file(&started);

    // Another count: refused, not a third command.
    let o = run_ok(redmutex(&cluster.urls()).args([
        "run",
        "--permits",
        "3",
        "-n",
        "cli:mixed",
        "true",
    ]));
    assert_eq!(code(&o), 64, "{}", stderr(&o));
    assert!(stderr(&o).contains("2 permits"), "{}", stderr(&o));
    // The lock of the same name: held while a permit is.
    let o = run_ok(redmutex(&cluster.urls()).args(["run", "-n", "cli:mixed", "true"]));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    // The second permit is free.
    let o = run_ok(redmutex(&cluster.urls()).args([
        "run",
        "--permits",
        "2",
        "-n",
        "cli:mixed",
        "true",
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    fs::write(&stop, "").unwrap();
    assert_eq!(
        wait_for(&mut holder, Duration::from_secs(20)).code(),
        Some(0)
    );
    // No permit held: the lock is free, and while it runs, the permits wait.
    let (started2, stop2) = (
        cluster.node(0).dir().join("started2"),
        cluster.node(0).dir().join("stop2"),
    );
    let hold = format!(
        "touch {started}; while [ ! -e {stop} ]; do sleep 0.05; done",
        started = started2.display(),
        stop = stop2.display()
    );
    let mut locker = spawn(
        redmutex(&cluster.urls())
            .args(["run", "-w", "10", "cli:mixed", "-c", &hold])
            .stdin(Stdio::null()),
    );
    wait_file(&started2);
    let o = run_ok(redmutex(&cluster.urls()).args([
        "run",
        "--permits",
        "2",
        "-n",
        "cli:mixed",
        "true",
    ]));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    fs::write(&stop2, "").unwrap();
    assert_eq!(
        wait_for(&mut locker, Duration::from_secs(20)).code(),
        Some(0)
    );
    assert!(deadline_loop(Duration::from_secs(5), || {
        let o = run_ok(redmutex(&cluster.urls()).args([
            "run",
            "--permits",
            "3",
            "-n",
            "cli:mixed",
            "true",
        ]));
        code(&o) == 0
    }));
}

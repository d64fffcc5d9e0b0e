//! Leader election over processes: one leader at a time, fail-over within about one TTL after
//! the leader is killed, and a leader that loses its lease steps down at once.
//!
//! The workers are this test binary run again with `leader_worker` selected. They record what
//! they do on a separate witness Redis: `leader` holds the current leader's id, and the
//! `events` list gets `elected <id>`, `down <id> <reason>` and `overlap <id>` entries.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster, deadline_loop, port_cmd};

const WORKER_ENV: &str = "REDMUTEX_LEADER_WORKER";
const TTL: Duration = Duration::from_millis(1_000);

fn w(port: u16, args: &[&str]) -> String {
    port_cmd(port, args, Duration::from_secs(5)).unwrap()
}

#[test]
fn leader_worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return; // run as a normal test: nothing to do
    };
    let parts: Vec<&str> = spec.split(';').collect();
    let (me, witness): (&str, u16) = (parts[0], parts[1].parse().unwrap());
    let factory = support::builder()
        .nodes(parts[2].split(','))
        .ttl(TTL)
        .keep_alive(true)
        .retry_delay(Duration::from_millis(20))
        .build()
        .unwrap();
    let election = factory.create_lock("election");
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let Ok(guard) = election.acquire() else {
            continue;
        };
        w(witness, &["SET", "leader", me]);
        w(witness, &["RPUSH", "events", &format!("elected {me}")]);
        let lost = guard.loss_signal();
        let reason = loop {
            if let Some(reason) = lost.wait_timeout(Duration::from_millis(20)) {
                break reason;
            }
            // While our lease is valid, nobody else may have been elected.
            if w(witness, &["GET", "leader"]) != me && guard.is_valid() {
                w(witness, &["RPUSH", "events", &format!("overlap {me}")]);
            }
        };
        w(
            witness,
            &["RPUSH", "events", &format!("down {me} {reason:?}")],
        );
        drop(guard);
    }
}

fn spawn(id: &str, witness: u16, cluster: &RedisCluster) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "leader::leader_worker", "--test-threads", "1"])
        .env(
            WORKER_ENV,
            format!("{id};{witness};{}", cluster.urls().join(",")),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn events(witness: u16) -> Vec<String> {
    w(witness, &["LRANGE", "events", "0", "-1"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_killed_leader_is_replaced_within_about_one_ttl() {
    let cluster = RedisCluster::start(3);
    let witness_node = RedisCluster::start(1);
    let witness = witness_node.port(0);
    let ids = ["a", "b", "c"];
    let mut children: Vec<Child> = ids.iter().map(|id| spawn(id, witness, &cluster)).collect();
    assert!(deadline_loop(Duration::from_secs(20), || w(
        witness,
        &["GET", "leader"]
    ) != "(nil)"));

    for round in 0..2 {
        let leader = w(witness, &["GET", "leader"]);
        let i = ids.iter().position(|id| *id == leader).unwrap();
        children[i].kill().unwrap();
        children[i].wait().unwrap();
        let killed = Instant::now();
        assert!(
            deadline_loop(Duration::from_secs(10), || w(witness, &["GET", "leader"])
                != leader),
            "round {round}: nobody took over from {leader}"
        );
        let took = killed.elapsed();
        eprintln!("round {round}: {leader} killed, new leader after {took:?}");
        // The lease must run out first (about one TTL); then a waiter polls within its retry.
        assert!(took < TTL * 4, "round {round}: fail-over took {took:?}");
        children[i] = spawn(ids[i], witness, &cluster);
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let events = events(witness);
    assert!(
        !events.iter().any(|e| e.starts_with("overlap")),
        "{events:?}"
    );
}

#[test]
fn a_leader_that_loses_its_lease_steps_down_at_once() {
    let cluster = RedisCluster::start(3);
    let witness_node = RedisCluster::start(1);
    let witness = witness_node.port(0);
    let mut child = spawn("solo", witness, &cluster);
    assert!(deadline_loop(Duration::from_secs(20), || w(
        witness,
        &["GET", "leader"]
    ) == "solo"));
    for i in 0..3 {
        cluster.cmd(i, &["DEL", "election"]);
    }
    let deleted = Instant::now();
    // The next renewal (a third of the TTL) finds the token gone and the leader steps down.
    assert!(
        deadline_loop(Duration::from_secs(10), || events(witness)
            .iter()
            .any(|e| e == "down solo TokenGone")),
        "{:?}",
        events(witness)
    );
    let took = deleted.elapsed();
    eprintln!("stepped down {took:?} after its key was deleted");
    assert!(took < TTL * 3, "stepping down took {took:?}");
    let _ = child.kill();
    let _ = child.wait();
}

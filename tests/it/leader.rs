//! Leader election over processes (`create_election`): one leader at a time, fail-over within
//! about one TTL after the leader is SIGKILLed (a term above the dead leader's), observers that
//! see the new leader, and a leader that loses its lease steps down at once.
//!
//! The candidates are worker processes: the test runs itself again (`support::worker`), and
//! each re-run is a [`candidate`]. They record what they do on a separate witness Redis:
//! `leader` holds the current leader's id, `term` its term, and the `events` list gets
//! `elected <id> <term>`, `down <id> <reason>` and `overlap <id>` entries.

use std::time::{Duration, Instant};

use crate::support::worker::{self, Worker};
use crate::support::{self, RedisCluster, deadline_loop, port_cmd};
use crate::test_name;

const TTL: Duration = Duration::from_millis(1_000);

fn w(port: u16, args: &[&str]) -> String {
    port_cmd(port, args, Duration::from_secs(5)).unwrap()
}

/// One candidate process, for a minute at most. `spec` is `<id>;<witness port>;<url>,...`.
fn candidate(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let (me, witness): (&str, u16) = (parts[0], parts[1].parse().unwrap());
    // Keep-alive is on for elections.
    let factory = support::short_builder()
        .nodes(parts[2].split(','))
        .ttl(TTL)
        .retry_delay(Duration::from_millis(20))
        .build()
        .unwrap();
    let election = factory.create_election("election");
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let Ok(guard) = election.campaign(me) else {
            continue;
        };
        let term = guard.term().to_string();
        // The term first: whoever sees the new leader finds its term.
        w(witness, &["SET", "term", &term]);
        w(witness, &["SET", "leader", me]);
        w(
            witness,
            &["RPUSH", "events", &format!("elected {me} {term}")],
        );
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

/// Starts candidate `id` for `test` (a `test_name!`).
fn spawn(test: &str, id: &str, witness: u16, cluster: &RedisCluster) -> Worker {
    let spec = format!("{id};{witness};{}", cluster.urls().join(","));
    Worker::spawn(test, &spec)
}

fn events(witness: u16) -> Vec<String> {
    w(witness, &["LRANGE", "events", "0", "-1"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_killed_leader_is_replaced_within_about_one_ttl() {
    if let Some(spec) = worker::spec() {
        return candidate(&spec);
    }
    let test = test_name!(a_killed_leader_is_replaced_within_about_one_ttl);
    let cluster = RedisCluster::start(3);
    let witness_node = RedisCluster::start(1);
    let witness = witness_node.port(0);
    let ids = ["a", "b", "c"];
    let mut children: Vec<Worker> = ids
        .iter()
        .map(|id| spawn(test, id, witness, &cluster))
        .collect();
    assert!(deadline_loop(Duration::from_secs(20), || w(
        witness,
        &["GET", "leader"]
    ) != "(nil)"));

    // An observer in this process: it must see each new leader, with a larger term.
    let observer_factory = support::factory(&cluster).ttl(TTL).build().unwrap();
    let mut observer = observer_factory.create_election("election").observe();
    for round in 0..2 {
        let leader = w(witness, &["GET", "leader"]);
        let term: u64 = w(witness, &["GET", "term"]).parse().unwrap();
        let i = ids.iter().position(|id| *id == leader).unwrap();
        children[i].kill();
        let killed = Instant::now();
        assert!(
            deadline_loop(Duration::from_secs(10), || w(witness, &["GET", "leader"])
                != leader),
            "round {round}: nobody took over from {leader}"
        );
        let took = killed.elapsed();
        eprintln!("[figures] round {round}: {leader} SIGKILLed, new leader after {took:?}");
        // The lease must run out first (about one TTL); then a waiter polls within its retry.
        assert!(took < TTL * 4, "round {round}: fail-over took {took:?}");
        let new_term: u64 = w(witness, &["GET", "term"]).parse().unwrap();
        assert!(new_term > term, "term {new_term} after {term}");
        let mut seen = None;
        assert!(deadline_loop(Duration::from_secs(10), || {
            if let Ok(Some(l)) = observer.wait_timeout(Duration::from_millis(50)) {
                seen = Some(l.term);
            }
            seen.is_some_and(|t| t >= new_term)
        }));
        children[i] = spawn(test, ids[i], witness, &cluster);
    }
    drop(children);
    let events = events(witness);
    assert!(
        !events.iter().any(|e| e.starts_with("overlap")),
        "{events:?}"
    );
}

#[test]
fn a_leader_that_loses_its_lease_steps_down_at_once() {
    if let Some(spec) = worker::spec() {
        return candidate(&spec);
    }
    let cluster = RedisCluster::start(3);
    let witness_node = RedisCluster::start(1);
    let witness = witness_node.port(0);
    let child = spawn(
        test_name!(a_leader_that_loses_its_lease_steps_down_at_once),
        "solo",
        witness,
        &cluster,
    );
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
    drop(child);
}

//! Leader election: a campaign's term, value and lease; `leader()` from a quorum; proclaim;
//! resign hands over at once; observers see every change in order; terms above every fencing
//! token of the name; nothing outside the name's keys. The fault runs are in
//! `faults::election`, the takeover after a SIGKILL in `leader`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster, WAIT_LIMIT, deadline_loop};
use redmutex::{Error, MAX_VALUE_LEN, RedLockFactory, Wait};

fn factory(cluster: &RedisCluster, ttl: Duration) -> RedLockFactory {
    support::factory(cluster).ttl(ttl).build().unwrap()
}

#[test]
fn a_campaign_leads_with_a_term_and_a_value_that_leader_reads() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster, Duration::from_secs(10));
    let election = f.create_election("elect:basic");
    assert_eq!(election.leader().unwrap(), None, "nobody leads yet");

    let leader = election.campaign("host-a:8080").unwrap();
    assert!(leader.term() > 0);
    assert_eq!(leader.fencing_token(), Some(leader.term()));
    assert_eq!(leader.value(), "host-a:8080");
    assert_eq!(leader.revision(), 1);
    assert!(leader.is_valid());

    let seen = election.leader().unwrap().expect("a leader");
    assert_eq!(seen.term, leader.term());
    assert_eq!(seen.value, "host-a:8080");
    assert_eq!(seen.revision, 1);
    assert_eq!(seen.nodes, 3);
    assert_eq!(seen.holder, redmutex::Fingerprint::of(leader.token()));
    assert!(seen.lease > Duration::from_secs(5), "{:?}", seen.lease);

    // Another process (factory) cannot lead meanwhile.
    let other = factory(&cluster, Duration::from_secs(10));
    assert!(
        other
            .create_election("elect:basic")
            .try_campaign("host-b")
            .unwrap()
            .is_none()
    );

    leader.proclaim("host-a:9090").unwrap();
    assert_eq!(leader.value(), "host-a:9090");
    assert_eq!(leader.revision(), 2);
    let seen = other
        .create_election("elect:basic")
        .leader()
        .unwrap()
        .unwrap();
    assert_eq!((seen.term, seen.revision), (leader.term(), 2));
    assert_eq!(seen.value, "host-a:9090");

    leader.resign().unwrap();
    assert_eq!(election.leader().unwrap(), None);
    // The lock key and the record are gone: only the term's counter stays.
    assert_eq!(
        cluster.all_keys(),
        vec!["elect:basic:redmutex:fence".to_owned(); 3]
    );
}

#[test]
fn resign_hands_leadership_to_a_waiting_candidate_at_once() {
    let cluster = RedisCluster::start(3);
    // A long TTL: a takeover within seconds can only come from the resignation.
    let ttl = Duration::from_secs(30);
    let a = factory(&cluster, ttl);
    let b = factory(&cluster, ttl);
    let first = a.create_election("elect:handover").campaign("a").unwrap();
    let term = first.term();
    cluster.clear_waiting("elect:handover");
    let candidate = thread::spawn(move || {
        let leader = b
            .create_election("elect:handover")
            .campaign_timeout("b", WAIT_LIMIT)
            .unwrap();
        (Instant::now(), leader.term(), leader.value())
    });
    // The candidate waits (its mark is on every node), woken only by the release.
    cluster.wait_waiting("elect:handover");
    let resigned = Instant::now();
    first.resign().unwrap();
    let (took_over, new_term, value) = candidate.join().unwrap();
    let handover = took_over.saturating_duration_since(resigned);
    eprintln!("[figures] resign handover: {handover:?}");
    assert!(new_term > term, "term {new_term} after {term}");
    assert_eq!(value, "b");
    assert!(
        handover < Duration::from_secs(5),
        "the candidate took {handover:?}: it was not woken by the resignation"
    );
}

#[test]
fn an_observer_sees_every_change_in_order() {
    let cluster = RedisCluster::start(3);
    let ttl = Duration::from_secs(10);
    let a = factory(&cluster, ttl);
    let b = factory(&cluster, ttl);
    let watcher = factory(&cluster, ttl);
    // A poll slower than the test: every change must come from an announcement.
    let mut observer = watcher
        .create_election("elect:observe")
        .observe()
        .with_poll_interval(Duration::from_secs(60));
    assert!(
        observer
            .wait_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none(),
        "no leader yet"
    );
    let first = a.create_election("elect:observe").campaign("a1").unwrap();
    let mut expected = vec![(first.term(), 1, "a1".to_owned())];
    for (i, value) in ["a2", "a3"].iter().enumerate() {
        // Each change is reported before the next is made.
        let seen = observer
            .wait_timeout(WAIT_LIMIT)
            .unwrap()
            .expect("a change");
        assert_eq!((seen.term, seen.revision, seen.value), expected[i].clone());
        first.proclaim(*value).unwrap();
        expected.push((first.term(), first.revision(), (*value).to_owned()));
    }
    let seen = observer.wait_timeout(WAIT_LIMIT).unwrap().unwrap();
    assert_eq!((seen.term, seen.revision, seen.value), expected[2].clone());
    let old_term = first.term();
    first.resign().unwrap();
    let second = b.create_election("elect:observe").campaign("b1").unwrap();
    let seen = observer.wait_timeout(WAIT_LIMIT).unwrap().unwrap();
    assert_eq!((seen.term, seen.revision), (second.term(), 1));
    assert!(seen.term > old_term);
    assert_eq!(seen.value, "b1");
    assert_eq!(observer.last_seen(), Some((second.term(), 1)));
    // Nothing more happened: nothing more is reported.
    assert!(
        observer
            .wait_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_observer_without_announcements_learns_by_polling() {
    let cluster = RedisCluster::start(3);
    let ttl = Duration::from_secs(10);
    let a = factory(&cluster, ttl);
    let mut observer = a
        .create_election("elect:poll")
        .observe()
        .with_poll_interval(Duration::from_millis(100));
    assert!(
        observer
            .wait_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none()
    );
    // A leader installed behind the channel's back (as a client that publishes nothing
    // would): the record written by hand on every node.
    let leader = a.create_election("elect:poll").campaign("x").unwrap();
    for i in 0..3 {
        cluster.cmd(
            i,
            &[
                "HSET",
                "elect:poll:redmutex:leader",
                "rev",
                "5",
                "value",
                "y",
            ],
        );
    }
    let mut seen = Vec::new();
    assert!(deadline_loop(WAIT_LIMIT, || {
        if let Some(l) = observer.wait_timeout(Duration::from_millis(50)).unwrap() {
            seen.push((l.revision, l.value));
        }
        seen.last().is_some_and(|(rev, _)| *rev == 5)
    }));
    // The announced installation first (or skipped, if the hand-written record came first),
    // then the polled change; never backwards.
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    drop(leader);
}

#[test]
fn a_leader_a_quorum_does_not_hold_is_never_reported() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster, Duration::from_secs(10));
    let election = f.create_election("elect:quorum");
    let leader = election.campaign("v").unwrap();
    // Only node 0 keeps the leader: its lock key goes from two nodes.
    cluster.cmd(1, &["DEL", "elect:quorum"]);
    cluster.cmd(2, &["DEL", "elect:quorum"]);
    assert_eq!(election.leader().unwrap(), None);
    let mut observer = election.observe();
    assert!(
        observer
            .wait_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
    // A record without its lock key, or a lock key of another token, is no leader either.
    cluster.cmd(1, &["SET", "elect:quorum", "someone-else"]);
    assert_eq!(election.leader().unwrap(), None);
    // A proclamation now finds the leader lost.
    assert!(matches!(
        leader.proclaim("w"),
        Err(Error::LockLost { .. } | Error::Expired { .. })
    ));
    assert!(!leader.is_valid());
}

#[test]
fn a_value_only_a_minority_holds_is_not_reported() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster, Duration::from_secs(10));
    let election = f.create_election("elect:minority");
    let leader = election.campaign("old").unwrap();
    // A proclamation that reached node 0 only (as one cut off after its first node would).
    cluster.cmd(
        0,
        &[
            "HSET",
            "elect:minority:redmutex:leader",
            "rev",
            "2",
            "value",
            "new",
        ],
    );
    let seen = election.leader().unwrap().unwrap();
    assert_eq!((seen.revision, seen.value.as_str()), (1, "old"));
    // Once it reaches a second node, a quorum holds it.
    cluster.cmd(
        1,
        &[
            "HSET",
            "elect:minority:redmutex:leader",
            "rev",
            "2",
            "value",
            "new",
        ],
    );
    let seen = election.leader().unwrap().unwrap();
    assert_eq!((seen.revision, seen.value.as_str()), (2, "new"));
    drop(leader);
}

#[test]
fn terms_are_above_every_fencing_token_of_the_name() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).fencing(true).build().unwrap();
    let lock = f.create_lock("elect:fenced");
    let mut last = 0;
    for _ in 0..3 {
        let g = lock.acquire().unwrap();
        last = g.fencing_token().unwrap();
    }
    let election = f.create_election("elect:fenced");
    let leader = election.campaign("x").unwrap();
    assert!(leader.term() > last, "{} after {last}", leader.term());
    // A lock of the same name waits for the leader, and its token follows the term.
    assert!(lock.try_acquire().unwrap().is_none());
    let term = leader.term();
    leader.resign().unwrap();
    let g = lock.acquire().unwrap();
    assert!(g.fencing_token().unwrap() > term);
    drop(g);
    let next = election.campaign("y").unwrap();
    assert!(next.term() > term + 1);
}

#[test]
fn a_campaign_is_cancelled_and_timed_out_like_any_wait() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster, Duration::from_secs(10));
    let election = f.create_election("elect:wait");
    let _leader = election.campaign("a").unwrap();
    let other = factory(&cluster, Duration::from_secs(10)).create_election("elect:wait");
    assert!(matches!(
        other.campaign_timeout("b", Duration::from_millis(200)),
        Err(Error::Timeout { .. })
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let waiter = thread::spawn(move || {
        other
            .campaign_with("b", Wait::forever().cancel_on(&flag))
            .map(drop)
    });
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Release);
    assert!(matches!(
        waiter.join().unwrap(),
        Err(Error::Cancelled { .. })
    ));
}

#[test]
fn bad_values_and_names_are_errors_before_any_io() {
    let f = RedLockFactory::new([support::dead_url()]).unwrap();
    let long = "v".repeat(MAX_VALUE_LEN + 1);
    assert!(matches!(
        f.create_election("e").try_campaign(long.as_str()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        f.create_election("").leader(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        f.create_election("").campaign("x"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_kept_alive_leader_outlives_its_ttl_and_loses_its_lease_when_deleted() {
    let cluster = RedisCluster::start(3);
    // A lease of a second: the short timeouts, so a renewal round fits well within it.
    let f = support::short_builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let election = f.create_election("elect:keep");
    let leader = election.campaign("x").unwrap();
    thread::sleep(Duration::from_millis(2500));
    assert!(leader.is_valid(), "keep-alive is on for elections");
    let seen = election.leader().unwrap().unwrap();
    assert_eq!(
        seen.term,
        leader.term(),
        "the record was renewed with the key"
    );
    let lost = leader.loss_signal();
    for i in 0..3 {
        cluster.cmd(i, &["DEL", "elect:keep"]);
    }
    assert!(
        lost.wait_timeout(WAIT_LIMIT).is_some(),
        "the next renewal finds the lease gone"
    );
    assert!(matches!(leader.resign(), Err(Error::LockLost { .. })));
}

/// A term must exceed every term issued before even when the nodes that hold the last one are
/// not in the next grant's quorum: here node 0 restarted empty (its counter lost) and node 2
/// missed the write-back, so a quorum max-register alone would issue the same number again.
#[test]
fn terms_grow_across_a_node_that_lost_its_counter() {
    let cluster = RedisCluster::start(3);
    let f = factory(&cluster, Duration::from_secs(10));
    let election = f.create_election("elect:restart");
    let a = election.campaign("a").unwrap();
    let term_a = a.term();
    a.resign().unwrap();
    // Node 2 missed the term's write-back (as a node that timed out would have), node 0
    // restarts empty, and node 1 (the only one left with the term) is frozen: the next grant's
    // quorum is nodes 0 and 2, and the write-back reaches only them.
    cluster.cmd(2, &["DEL", "elect:restart:redmutex:fence"]);
    cluster.restart(0);
    cluster.stop(1);
    let b = factory(&cluster, Duration::from_secs(10)).create_election("elect:restart");
    let mut leader = None;
    let won = deadline_loop(WAIT_LIMIT, || {
        leader = b.try_campaign("b").unwrap_or(None);
        leader.is_some()
    });
    cluster.cont(1);
    assert!(won, "nodes 0 and 2 never granted");
    let term_b = leader.unwrap().term();
    assert!(term_b > term_a, "term {term_b} after term {term_a}");
}

/// Everything an election and a run-once job touch is the name plus a suffix: a user limited
/// to the application's prefix, with the lock's commands and the hash and clock commands of
/// these scripts, can campaign, proclaim, read, observe, resign, and run and record a job.
#[test]
fn a_user_scoped_to_the_prefix_can_elect_observe_and_run_once() {
    let cluster = RedisCluster::start(3);
    let perms = [
        "reset",
        "on",
        ">el-s3cret",
        "-@all",
        "~app:*",
        "&app:*",
        "+set",
        "+get",
        "+del",
        "+exists",
        "+pexpire",
        "+pttl",
        "+eval",
        "+evalsha",
        "+publish",
        "+subscribe",
        "+unsubscribe",
        "+ping",
        "+hset",
        "+hget",
        "+hmget",
        "+time",
    ];
    for i in 0..3 {
        let mut args = vec!["ACL", "SETUSER", "elector"];
        args.extend_from_slice(&perms);
        assert_eq!(cluster.cmd(i, &args), "OK");
    }
    let urls: Vec<String> = (0..3)
        .map(|i| format!("redis://elector:el-s3cret@127.0.0.1:{}", cluster.port(i)))
        .collect();
    let f = support::builder()
        .nodes(urls)
        .max_retries(1)
        .build()
        .unwrap();
    let election = f.create_election("app:leader");
    let mut observer = election
        .observe()
        .with_poll_interval(Duration::from_secs(60));
    let leader = election.campaign("a").unwrap();
    let seen = observer.wait_timeout(WAIT_LIMIT).unwrap().unwrap();
    assert_eq!((seen.term, seen.value.as_str()), (leader.term(), "a"));
    leader.proclaim("b").unwrap();
    // Announced on the channel (the poll is a minute away).
    let seen = observer.wait_timeout(WAIT_LIMIT).unwrap().unwrap();
    assert_eq!(seen.value, "b");
    assert_eq!(election.leader().unwrap().unwrap().value, "b");
    leader.resign().unwrap();
    let job = f.create_run_once("app:job");
    assert!(matches!(
        job.run("e", |_| "ok".into()).unwrap(),
        redmutex::Outcome::Ran(_)
    ));
    assert_eq!(job.record("e").unwrap().unwrap().result, "ok");
    // Outside the prefix: refused on every node.
    assert!(matches!(
        f.create_election("other:leader").try_campaign("x"),
        Err(Error::NoQuorum { answered: 0, .. })
    ));
    // The doctor's probes of both find what they need, on every node.
    let checks = f.diagnose(Some("app:probe")).unwrap().checks;
    for name in ["acl election", "acl run-once"] {
        let ok = checks
            .iter()
            .filter(|c| c.name == name && c.status == redmutex::CheckStatus::Ok)
            .count();
        assert_eq!(ok, 3, "{name}: {checks:?}");
    }
}

#[test]
fn handles_guards_and_observers_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<redmutex::Election>();
    send_sync::<redmutex::LeaderGuard>();
    send_sync::<redmutex::RunOnce>();
    send_sync::<redmutex::RunGuard>();
    send::<redmutex::Observer>();
}

//! Observability: the numbers of `RedLockFactory::stats()` and the events of a `HandleEvent`
//! checked against what the test itself saw happen on real nodes (contention, timeouts, a node
//! killed and restarted, a key deleted under keep-alive), what a handler that panics or blocks
//! does (keep-alive goes on), the slow-acquire warning, and, with their features, the tracing
//! spans and the metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster, deadline_loop, logs};
use redmutex::event::{
    AcquireEvent, ContendedEvent, ExtendFailedEvent, GiveUpEvent, LossEvent, NodeDownEvent,
    NodeUpEvent,
};
use redmutex::{Error, HandleEvent, LossReason, NodeErrorKind, Wait};

/// Bounds of the deadline loops: generous, for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(10);

/// One event as the recorder saw it, with the thread it was delivered on.
#[derive(Debug, Clone)]
enum Seen {
    Acquire {
        resource: String,
        waited: Duration,
        rounds: u32,
        contended: bool,
        yes: usize,
    },
    Contended {
        resource: String,
    },
    GiveUp {
        resource: String,
        error: Error,
    },
    ExtendFailed {
        resource: String,
        keep_alive: bool,
        error: Error,
    },
    Loss {
        resource: String,
        reason: LossReason,
    },
    NodeDown {
        index: usize,
        kind: NodeErrorKind,
    },
    NodeUp {
        index: usize,
    },
}

/// A handler that records every event, with the delivering thread's id and name.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(ThreadId, Option<String>, Seen)>>,
}

impl Recorder {
    fn push(&self, e: Seen) {
        let t = thread::current();
        let name = t.name().map(str::to_owned);
        self.seen.lock().unwrap().push((t.id(), name, e));
    }

    fn all(&self) -> Vec<(ThreadId, Option<String>, Seen)> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, f: impl Fn(&Seen) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|e| f(&e.2)).count()
    }
}

impl HandleEvent for Recorder {
    fn on_acquire(&self, e: &AcquireEvent<'_>) {
        self.push(Seen::Acquire {
            resource: e.resource.to_owned(),
            waited: e.waited,
            rounds: e.rounds,
            contended: e.contended,
            yes: e.votes.yes,
        });
    }
    fn on_contended(&self, e: &ContendedEvent<'_>) {
        self.push(Seen::Contended {
            resource: e.resource.to_owned(),
        });
    }
    fn on_give_up(&self, e: &GiveUpEvent<'_>) {
        self.push(Seen::GiveUp {
            resource: e.resource.to_owned(),
            error: e.error.clone(),
        });
    }
    fn on_extend_failed(&self, e: &ExtendFailedEvent<'_>) {
        self.push(Seen::ExtendFailed {
            resource: e.resource.to_owned(),
            keep_alive: e.keep_alive,
            error: e.error.clone(),
        });
    }
    fn on_loss(&self, e: &LossEvent<'_>) {
        self.push(Seen::Loss {
            resource: e.resource.to_owned(),
            reason: e.reason,
        });
    }
    fn on_node_down(&self, e: &NodeDownEvent<'_>) {
        self.push(Seen::NodeDown {
            index: e.index,
            kind: e.kind,
        });
    }
    fn on_node_up(&self, e: &NodeUpEvent<'_>) {
        self.push(Seen::NodeUp { index: e.index });
    }
}

/// How long the main thread of [`contended_counter_and_waits_match_what_the_threads_saw`]
/// holds the lock once all four workers wait.
const HOLD: Duration = Duration::from_secs(3);

/// The most a call's own bookkeeping (outside what it counts as waited) may add to what the
/// test measures around it, or around all five calls: generous for a loaded machine, and far
/// below [`HOLD`], which a wait left out would add.
const BOOKKEEPING: Duration = Duration::from_secs(1);

/// Four threads start waiting while the main thread holds the lock, then take it in turn. The
/// test knows which acquisitions waited (the four that started while it was held), and times
/// every call from outside: the counters and the events must agree with that.
#[test]
fn contended_counter_and_waits_match_what_the_threads_saw() {
    let cluster = RedisCluster::start(3);
    let recorder = Arc::new(Recorder::default());
    let factory = support::factory(&cluster)
        .event_handler(Arc::clone(&recorder))
        .build()
        .unwrap();
    let lock = factory.create_lock("obs:contended");
    let start = Instant::now();
    let main_guard = lock.acquire().unwrap();
    let main_waited = start.elapsed();
    assert_eq!(factory.stats().held, 1);

    let inside = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let lock = lock.clone();
            let inside = Arc::clone(&inside);
            thread::spawn(move || {
                let start = Instant::now();
                let guard = lock.acquire().unwrap();
                let waited = start.elapsed();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                thread::sleep(Duration::from_millis(10));
                inside.store(false, Ordering::SeqCst);
                guard.release().unwrap();
                (thread::current().id(), waited)
            })
        })
        .collect();
    // Each worker tells the handler, on its own thread, that it found the lock held; all four
    // are then waiting, and the gauge says so.
    assert!(
        deadline_loop(LIMIT, || recorder.count(
            |e| matches!(e, Seen::Contended { resource } if resource == "obs:contended")
        ) == 4),
        "{:?}",
        recorder.all()
    );
    assert_eq!(factory.stats().waiting, 4);
    // Every worker now waits at least this long: far more than any call's own bookkeeping.
    thread::sleep(HOLD);
    main_guard.release().unwrap();
    let observed: Vec<(ThreadId, Duration)> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();

    let s = factory.stats();
    assert_eq!(s.acquisitions, 5, "{s:?}");
    assert_eq!(s.contended, 4, "{s:?}");
    assert_eq!((s.busy, s.timeouts, s.cancellations), (0, 0, 0), "{s:?}");
    assert_eq!((s.acquire_errors, s.no_quorum_rounds), (0, 0), "{s:?}");
    assert_eq!((s.releases, s.release_failures), (5, 0), "{s:?}");
    assert_eq!((s.held, s.waiting), (0, 0), "{s:?}");
    // The acquisitions and releases alone made at least 10 rounds, each with a quorum of yes
    // votes (2 of 3); the main thread's, uncontended, had all three each. A node may say no
    // to a worker's acquisition (and then to its release) when it said yes to a rival's
    // attempt at the same moment, so only that much is certain of every node.
    assert!(s.rounds >= 10, "{s:?}");
    // A round decided at the quorum leaves a slower node's reply to that node's reader, which
    // counts it a little later: the counts are awaited.
    support::deadline_loop(Duration::from_secs(10), || {
        let s = factory.stats();
        s.nodes.iter().map(|n| n.votes_given).sum::<u64>() >= 2 * 3 + 8 * 2
            && s.nodes.iter().all(|n| n.votes_given >= 2)
    });
    let s = factory.stats();
    let given: u64 = s.nodes.iter().map(|n| n.votes_given).sum();
    assert!(given >= 2 * 3 + 8 * 2, "{given} yes votes: {s:?}");
    for n in &s.nodes {
        assert!(n.up && n.votes_given >= 2 && n.votes_failed == 0, "{n:?}");
        assert!(n.round_trip.is_some_and(|rtt| rtt < Duration::from_secs(1)));
    }
    // The waited total is what the calls took, measured inside them: at most what the test
    // measured around them, and short of it by no more than the calls' own bookkeeping (a
    // total that left out a worker's wait would be short by more than HOLD).
    let outside: Duration = observed.iter().map(|o| o.1).sum::<Duration>() + main_waited;
    assert!(s.waited <= outside, "{:?} > {outside:?}", s.waited);
    assert!(
        outside - s.waited < BOOKKEEPING,
        "{:?} vs {outside:?}",
        s.waited
    );

    // The events, one per acquisition, on the acquiring thread, agree.
    let events = recorder.all();
    let main_thread = thread::current().id();
    let acquired: Vec<_> = events
        .iter()
        .filter_map(|(t, _, e)| match e {
            Seen::Acquire {
                resource,
                waited,
                rounds,
                contended,
                yes,
            } => {
                assert_eq!(resource, "obs:contended");
                assert!(*rounds >= 1 && *yes >= 2);
                Some((*t, *waited, *contended, *rounds))
            }
            _ => None,
        })
        .collect();
    assert_eq!(acquired.len(), 5, "{events:?}");
    for (t, waited, contended, rounds) in &acquired {
        if *t == main_thread {
            assert!(!contended && *rounds == 1);
            assert!(*waited <= main_waited);
        } else {
            let (_, outside) = observed.iter().find(|o| o.0 == *t).unwrap();
            assert!(*contended && *rounds >= 2, "{acquired:?}");
            assert!(
                waited <= outside && *outside - *waited < BOOKKEEPING,
                "{waited:?} of {outside:?}"
            );
            // It waited at least until the main thread released.
            assert!(*waited >= HOLD, "{waited:?}");
        }
    }
    let total: Duration = acquired.iter().map(|a| a.1).sum();
    assert_eq!(total, s.waited);
}

#[test]
fn busy_timeouts_and_cancellations_are_counted_and_reported_on_the_callers_thread() {
    let cluster = RedisCluster::start(3);
    let recorder = Arc::new(Recorder::default());
    let factory = support::factory(&cluster)
        .event_handler(Arc::clone(&recorder))
        .build()
        .unwrap();
    let lock = factory.create_lock("obs:busy");
    let held = lock.acquire().unwrap();
    assert!(lock.try_acquire().unwrap().is_none());
    let e = lock
        .acquire_timeout(Duration::from_millis(100))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    let stop = AtomicBool::new(false);
    let (e, seen_waiting) = thread::scope(|s| {
        // Cancels the wait once it is under way (the gauge counts it as waiting), or gives up
        // after the deadline (and cancels anyway, so the test does not hang).
        let canceller = s.spawn(|| {
            let waiting = deadline_loop(LIMIT, || factory.stats().waiting == 1);
            stop.store(true, Ordering::Release);
            waiting
        });
        let e = lock
            .acquire_with(Wait::forever().cancel_on(&stop))
            .unwrap_err();
        (e, canceller.join().unwrap())
    });
    assert!(seen_waiting, "the wait never showed in stats().waiting");
    assert!(matches!(e, Error::Cancelled { .. }), "{e}");
    drop(held);

    let s = factory.stats();
    assert_eq!(
        (s.acquisitions, s.busy, s.timeouts, s.cancellations),
        (1, 1, 1, 1),
        "{s:?}"
    );
    assert_eq!((s.contended, s.acquire_errors, s.waiting), (0, 0, 0));
    let me = thread::current().id();
    let gave_up: Vec<String> = recorder
        .all()
        .into_iter()
        .filter_map(|(t, _, e)| match e {
            Seen::GiveUp { resource, error } => {
                assert_eq!((t, resource.as_str()), (me, "obs:busy"));
                Some(format!("{error:?}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(gave_up.len(), 2, "{gave_up:?}");
    assert!(gave_up[0].starts_with("Timeout") && gave_up[1].starts_with("Cancelled"));
    // Both waits found the lock held: two contended waits, neither acquired.
    assert_eq!(recorder.count(|e| matches!(e, Seen::Contended { .. })), 2);
}

#[test]
fn a_killed_node_shows_down_within_a_bound_and_up_again_after_restart() {
    let cluster = RedisCluster::start(3);
    let recorder = Arc::new(Recorder::default());
    let factory = support::factory(&cluster)
        .event_handler(Arc::clone(&recorder))
        .build()
        .unwrap();
    let lock = factory.create_lock("obs:node");
    let cycle = || {
        if let Ok(Some(g)) = lock.try_acquire() {
            let _ = g.release();
        }
    };
    cycle();
    let before = factory.stats();
    assert!(before.nodes.iter().all(|n| n.up && n.last_error.is_none()));
    assert!(!before.nodes[2].node.contains("redis://"));
    assert_eq!(
        before.nodes[2].node,
        format!("127.0.0.1:{}", cluster.port(2))
    );

    cluster.kill(2);
    let killed = Instant::now();
    // Down, with a failed vote: a pool's connect in the background may mark the node down
    // before the reader of a round's unread reply counts that round's failed vote (seen on a
    // loaded machine: down, with no failed vote yet).
    assert!(
        deadline_loop(LIMIT, || {
            cycle();
            let n = &factory.stats().nodes[2];
            !n.up && n.votes_failed > before.nodes[2].votes_failed
        }),
        "node 2 not shown down: {:?}",
        factory.stats().nodes[2]
    );
    let down_after = killed.elapsed();
    let s = factory.stats();
    let n = &s.nodes[2];
    assert_eq!(n.times_down, 1, "{n:?}");
    assert!(
        matches!(
            n.last_error,
            Some(NodeErrorKind::Refused | NodeErrorKind::Dropped | NodeErrorKind::Io)
        ),
        "{n:?}"
    );
    assert!(n.votes_failed > before.nodes[2].votes_failed, "{n:?}");
    assert!(s.nodes[0].up && s.nodes[1].up);
    // The event comes on the callback thread.
    assert!(deadline_loop(LIMIT, || recorder.count(|e| matches!(
        e,
        Seen::NodeDown {
            index: 2,
            kind: NodeErrorKind::Refused | NodeErrorKind::Dropped | NodeErrorKind::Io
        }
    )) == 1));
    // Still down: rounds skip it at no cost while it backs off, and it stays down.
    for _ in 0..5 {
        cycle();
    }
    assert!(!factory.stats().nodes[2].up);

    cluster.restart(2);
    let restarted = Instant::now();
    // Back-off is 2 s at most, then the background reconnection's connection is used.
    assert!(
        deadline_loop(LIMIT, || {
            cycle();
            factory.stats().nodes[2].up
        }),
        "node 2 not shown up: {:?}",
        factory.stats().nodes[2]
    );
    let up_after = restarted.elapsed();
    assert!(deadline_loop(LIMIT, || recorder
        .count(|e| matches!(e, Seen::NodeUp { index: 2 }))
        == 1));
    let nodes: Vec<_> = recorder
        .all()
        .into_iter()
        .filter(|(_, _, e)| matches!(e, Seen::NodeDown { .. } | Seen::NodeUp { .. }))
        .collect();
    assert!(
        matches!(
            nodes.as_slice(),
            [
                (_, _, Seen::NodeDown { index: 2, .. }),
                (_, _, Seen::NodeUp { index: 2 })
            ]
        ),
        "{nodes:?}"
    );
    for (_, thread, _) in &nodes {
        assert_eq!(thread.as_deref(), Some("redmutex-notify"));
    }
    assert_eq!(factory.stats().nodes[2].times_down, 1);
    eprintln!("node shown down {down_after:?} after the kill, up {up_after:?} after the restart");
}

#[test]
fn a_key_deleted_under_keep_alive_is_exactly_one_token_gone_loss() {
    let cluster = RedisCluster::start(3);
    let recorder = Arc::new(Recorder::default());
    let ttl = Duration::from_millis(600);
    let factory = support::short_factory(&cluster)
        .keep_alive(true)
        .ttl(ttl)
        .event_handler(Arc::clone(&recorder))
        .build()
        .unwrap();
    let guard = factory.create_lock("obs:ka").acquire().unwrap();
    // A few renewals first.
    assert!(deadline_loop(LIMIT, || factory.stats().renewals >= 2));
    let signal = guard.loss_signal();
    for i in 0..3 {
        cluster.cmd(i, &["DEL", "obs:ka"]);
    }
    assert_eq!(signal.wait_timeout(LIMIT), Some(LossReason::TokenGone));
    assert!(deadline_loop(LIMIT, || recorder
        .count(|e| matches!(e, Seen::Loss { .. }))
        == 1));
    // Several TTLs later, still exactly one loss, and nothing renews the lost lease.
    thread::sleep(ttl * 3);
    let s = factory.stats();
    assert_eq!(s.losses.token_gone, 1, "{s:?}");
    assert_eq!(s.losses.total(), 1, "{s:?}");
    assert_eq!(s.losses.of(LossReason::TokenGone), 1);
    assert_eq!(s.renewal_failures, 1, "{s:?}");
    let renewals = s.renewals;
    thread::sleep(ttl);
    assert_eq!(factory.stats().renewals, renewals);
    assert!(matches!(guard.release(), Err(Error::LockLost { .. })));
    let s = factory.stats();
    assert_eq!((s.losses.total(), s.release_failures, s.held), (1, 1, 0));

    let events = recorder.all();
    let of_lease: Vec<&Seen> = events
        .iter()
        .filter(|(_, _, e)| matches!(e, Seen::Loss { .. } | Seen::ExtendFailed { .. }))
        .map(|(_, thread, e)| {
            assert_eq!(thread.as_deref(), Some("redmutex-notify"));
            e
        })
        .collect();
    // The renewal that found the token gone, then the loss.
    assert!(
        matches!(
            of_lease.as_slice(),
            [
                Seen::ExtendFailed {
                    keep_alive: true,
                    error: Error::LockLost { .. },
                    ..
                },
                Seen::Loss {
                    reason: LossReason::TokenGone,
                    ..
                }
            ]
        ),
        "{of_lease:?}"
    );
    for e in of_lease {
        match e {
            Seen::ExtendFailed { resource, .. } | Seen::Loss { resource, .. } => {
                assert_eq!(resource, "obs:ka");
            }
            _ => unreachable!(),
        }
    }
}

/// A handler that panics in some events and blocks in another, until the test opens a gate.
#[derive(Default)]
struct Unruly {
    /// Set while `on_loss` is blocked.
    blocked: AtomicBool,
    gate: Mutex<bool>,
    opened: Condvar,
}

impl Unruly {
    fn open(&self) {
        *self.gate.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl HandleEvent for Unruly {
    fn on_acquire(&self, _: &AcquireEvent<'_>) {
        panic!("a handler bug in on_acquire");
    }

    fn on_extend_failed(&self, _: &ExtendFailedEvent<'_>) {
        panic!("a handler bug in on_extend_failed");
    }

    fn on_loss(&self, _: &LossEvent<'_>) {
        self.blocked.store(true, Ordering::Release);
        let gate = self.gate.lock().unwrap();
        // Bounded: the test opens the gate long before this runs out.
        let _ = self
            .opened
            .wait_timeout_while(gate, Duration::from_secs(60), |open| !*open)
            .unwrap();
        self.blocked.store(false, Ordering::Release);
    }
}

/// A handler that panics (on the caller's thread and on the callback thread) and then blocks
/// the callback thread: acquisitions still succeed, the panics are logged and counted, and
/// keep-alive goes on renewing the other guards while the handler is stuck, since the
/// keep-alive thread never runs user code.
#[test]
fn a_panicking_or_blocking_handler_never_stops_keep_alive() {
    let logs = logs::capture();
    let cluster = RedisCluster::start(3);
    let unruly = Arc::new(Unruly::default());
    let ttl = Duration::from_millis(600);
    let factory = support::short_factory(&cluster)
        .keep_alive(true)
        .ttl(ttl)
        .event_handler(Arc::clone(&unruly))
        .build()
        .unwrap();
    // on_acquire panics on this thread: caught, and the guards are handed out all the same.
    let doomed = factory.create_lock("obs:unruly:doomed").acquire().unwrap();
    let kept = factory.create_lock("obs:unruly:kept").acquire().unwrap();
    assert_eq!(factory.stats().handler_panics, 2);
    let callback_ran = Arc::new(AtomicBool::new(false));
    {
        let callback_ran = Arc::clone(&callback_ran);
        doomed
            .loss_signal()
            .on_loss(move |_| callback_ran.store(true, Ordering::Release));
    }

    // The doomed lease's key goes: its renewal fails (on_extend_failed panics on the callback
    // thread), then its loss is reported (on_loss blocks the callback thread).
    for i in 0..3 {
        cluster.cmd(i, &["DEL", "obs:unruly:doomed"]);
    }
    assert!(deadline_loop(LIMIT, || unruly
        .blocked
        .load(Ordering::Acquire)));
    assert!(
        !doomed.is_valid(),
        "the loss signal does not wait for the callback thread"
    );
    assert_eq!(factory.stats().handler_panics, 3);

    // While the handler is stuck, the other guard is renewed for several TTLs.
    let renewals = factory.stats().renewals;
    let start = Instant::now();
    while start.elapsed() < ttl * 4 {
        assert!(kept.is_valid(), "{:?}", start.elapsed());
        thread::sleep(Duration::from_millis(20));
    }
    assert!(unruly.blocked.load(Ordering::Acquire));
    assert!(
        factory.stats().renewals >= renewals + 8,
        "{:?}",
        factory.stats()
    );
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["GET", "obs:unruly:kept"]), kept.token());
    }
    // The guard's own loss callback waits behind the stuck handler, as documented.
    assert!(!callback_ran.load(Ordering::Acquire));

    unruly.open();
    assert!(deadline_loop(LIMIT, || callback_ran.load(Ordering::Acquire)));
    kept.release().unwrap();
    drop(doomed);
    let s = factory.stats();
    assert_eq!((s.handler_panics, s.events_dropped), (3, 0), "{s:?}");
    let records = logs::records();
    for event in ["on_acquire", "on_extend_failed"] {
        let line = format!("the event handler panicked in {event}; the panic was caught");
        assert!(
            records
                .iter()
                .any(|r| r.starts_with("WARN") && r.contains(&line)),
            "no warning for {event}"
        );
    }
    drop(logs);
}

#[test]
fn slow_acquisitions_are_logged_with_the_resource_and_the_wait() {
    let logs = logs::capture();
    let cluster = RedisCluster::start(3);
    // A threshold no uncontended acquisition reaches even on a loaded machine (one took 200 ms
    // with both cores busy, over the 100 ms this test had), and a wait well past it.
    let factory = support::factory(&cluster)
        .slow_acquire_threshold(Duration::from_secs(1))
        .build()
        .unwrap();
    let lock = factory.create_lock("obs:slow");
    // Fast: not logged.
    drop(lock.acquire().unwrap());
    let held = lock.acquire().unwrap();
    let waiter = {
        let lock = lock.clone();
        thread::spawn(move || {
            let g = lock.acquire().unwrap();
            g.release().unwrap();
        })
    };
    // Held for 2 s from the moment the waiter waits: over the 1 s threshold.
    assert!(
        deadline_loop(LIMIT, || factory.stats().waiting == 1),
        "the waiter never waited: {:?}",
        factory.stats()
    );
    thread::sleep(Duration::from_secs(2));
    drop(held);
    waiter.join().unwrap();
    let e = lock
        .acquire_timeout(Duration::ZERO)
        .map(drop)
        .err()
        .map(|e| e.to_string());
    assert!(e.is_none(), "{e:?}");
    let slow: Vec<String> = logs::records()
        .into_iter()
        .filter(|r| r.contains("\"obs:slow\"") && r.contains("slow-acquire threshold"))
        .collect();
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert!(slow[0].starts_with("WARN"), "{slow:?}");
    assert!(slow[0].contains("acquiring \"obs:slow\" took"), "{slow:?}");
    assert!(slow[0].contains("it was held elsewhere"), "{slow:?}");
    drop(logs);
}

#[test]
fn stats_and_events_show_no_password() {
    let cluster = RedisCluster::start(3);
    for i in 0..3 {
        assert_eq!(
            cluster.cmd(i, &["CONFIG", "SET", "requirepass", "obs-secret-pw"]),
            "OK"
        );
    }
    let recorder = Arc::new(Recorder::default());
    let urls: Vec<String> = (0..3)
        .map(|i| format!("redis://:obs-secret-pw@127.0.0.1:{}", cluster.port(i)))
        .collect();
    let factory = support::builder()
        .nodes(urls)
        .event_handler(Arc::clone(&recorder))
        .build()
        .unwrap();
    drop(factory.create_lock("obs:pw").acquire().unwrap());
    cluster.kill(1);
    assert!(deadline_loop(LIMIT, || {
        if let Ok(Some(g)) = factory.create_lock("obs:pw").try_acquire() {
            drop(g);
        }
        recorder.count(|e| matches!(e, Seen::NodeDown { .. })) == 1
    }));
    let shown = format!("{:?}\n{:?}", factory.stats(), recorder.all());
    assert!(!shown.contains("obs-secret-pw"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{}", cluster.port(1))));
}

/// With the `tracing` feature: one span per operation, with the resource and the outcome, and
/// one event per round with its votes, seen by a subscriber on this thread.
#[cfg(feature = "tracing")]
mod tracing_spans {
    use std::sync::Mutex;

    use std::sync::OnceLock;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::subscriber::NoSubscriber;
    use tracing::{Dispatch, Event, Metadata, Subscriber};

    use crate::support::{self, RedisCluster};

    /// A span: its name and fields as recorded.
    #[derive(Debug, Default, Clone)]
    struct SpanSeen {
        name: String,
        fields: Vec<(String, String)>,
    }

    /// An event: the span entered when it came, and its fields.
    type EventSeen = (Option<u64>, Vec<(String, String)>);

    #[derive(Default)]
    struct Collect {
        spans: Mutex<Vec<SpanSeen>>,
        events: Mutex<Vec<EventSeen>>,
        stack: Mutex<Vec<u64>>,
    }

    struct Fields<'a>(&'a mut Vec<(String, String)>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }

    impl Subscriber for &'static Collect {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut seen = SpanSeen {
                name: span.metadata().name().to_owned(),
                ..SpanSeen::default()
            };
            span.record(&mut Fields(&mut seen.fields));
            let mut spans = self.spans.lock().unwrap();
            spans.push(seen);
            Id::from_u64(spans.len() as u64)
        }
        fn record(&self, span: &Id, values: &Record<'_>) {
            let mut spans = self.spans.lock().unwrap();
            let i = usize::try_from(span.into_u64() - 1).unwrap();
            values.record(&mut Fields(&mut spans[i].fields));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Vec::new();
            event.record(&mut Fields(&mut fields));
            let parent = self.stack.lock().unwrap().last().copied();
            self.events.lock().unwrap().push((parent, fields));
        }
        fn enter(&self, span: &Id) {
            self.stack.lock().unwrap().push(span.into_u64());
        }
        fn exit(&self, _: &Id) {
            self.stack.lock().unwrap().pop();
        }
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn spans_per_operation_and_an_event_per_round() {
        let cluster = RedisCluster::start(3);
        let factory = support::factory(&cluster).build().unwrap();
        // tracing caches each callsite's interest process-wide, computed by the first thread
        // that reaches it; while at most one dispatcher is registered it asks that thread's
        // default, so a concurrent test thread (no subscriber) could cache "never" for a span
        // this test waits for (tokio-rs/tracing#3611, #2874). A second dispatcher registered
        // for the life of the process makes every registration ask all of them, and the cache
        // is rebuilt once ours is the default here.
        static PINNED: OnceLock<Dispatch> = OnceLock::new();
        PINNED.get_or_init(|| Dispatch::new(NoSubscriber::default()));
        let collect: &'static Collect = Box::leak(Box::default());
        tracing::subscriber::with_default(collect, || {
            tracing::callsite::rebuild_interest_cache();
            let g = factory.create_lock("obs:traced").acquire().unwrap();
            g.extend(std::time::Duration::from_secs(5)).unwrap();
            g.release().unwrap();
        });
        let spans = collect.spans.lock().unwrap().clone();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["acquire", "extend", "release"], "{spans:?}");
        let outcomes: Vec<Option<&str>> =
            spans.iter().map(|s| field(&s.fields, "outcome")).collect();
        assert_eq!(
            outcomes,
            [Some("acquired"), Some("extended"), Some("released")]
        );
        for s in &spans {
            assert_eq!(field(&s.fields, "resource"), Some("obs:traced"), "{s:?}");
        }
        assert_eq!(field(&spans[0].fields, "rounds"), Some("1"));
        // One judged round in each span, with every node's vote.
        let events = collect.events.lock().unwrap().clone();
        assert_eq!(events.len(), 3, "{events:?}");
        for (i, (parent, fields)) in events.iter().enumerate() {
            assert_eq!(*parent, Some(i as u64 + 1), "{events:?}");
            assert_eq!(field(fields, "message"), Some("round"));
            // The round is decided at the quorum: a node's reply may be read after it.
            let count = |name| field(fields, name).and_then(|v| v.parse::<usize>().ok());
            assert!(count("yes") >= Some(2), "{fields:?}");
            assert_eq!(
                count("yes").zip(count("unread")).map(|(y, u)| y + u),
                Some(3),
                "{fields:?}"
            );
            assert_eq!(field(fields, "quorum"), Some("2"));
            assert_eq!(field(fields, "verdict"), Some("won"));
        }
    }
}

/// With the `metrics` feature: `MetricsHandler` through a Prometheus recorder, read back from
/// the text it renders.
#[cfg(feature = "metrics")]
mod metrics {
    use std::sync::OnceLock;
    use std::time::Duration;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
    use redmutex::{Error, MetricsHandler};

    use crate::support::{self, RedisCluster, deadline_loop};

    /// The process's one recorder (a recorder is global; only this test records).
    fn recorder() -> &'static PrometheusHandle {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
    }

    /// The value of one series in the rendered text.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn metrics_handler_records_fixed_low_cardinality_series() {
        let prometheus = recorder();
        let cluster = RedisCluster::start(3);
        let factory = support::short_factory(&cluster)
            .keep_alive(true)
            .ttl(Duration::from_millis(600))
            .event_handler(MetricsHandler::new())
            .build()
            .unwrap();
        let lock = factory.create_lock("obs:metrics:a");
        let g = lock.acquire().unwrap();
        let e = lock.acquire_timeout(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }));
        for i in 0..3 {
            cluster.cmd(i, &["DEL", "obs:metrics:a"]);
        }
        assert!(
            g.loss_signal()
                .wait_timeout(Duration::from_secs(10))
                .is_some()
        );
        drop(g);
        drop(lock.acquire().unwrap());
        cluster.kill(2);
        let node = format!("redmutex_node_up{{node=\"127.0.0.1:{}\"}}", cluster.port(2));
        assert!(
            deadline_loop(Duration::from_secs(10), || {
                if let Ok(Some(g)) = lock.try_acquire() {
                    drop(g);
                }
                prometheus.run_upkeep();
                value(&prometheus.render(), &node) == Some(0.0)
            }),
            "{}",
            prometheus.render()
        );
        let text = prometheus.render();
        assert!(
            value(&text, "redmutex_acquisitions_total").unwrap() >= 2.0,
            "{text}"
        );
        // The timed-out wait was contended, but acquired nothing.
        assert_eq!(
            value(&text, "redmutex_contended_acquisitions_total"),
            None,
            "{text}"
        );
        assert_eq!(
            value(&text, "redmutex_acquire_failures_total{reason=\"timeout\"}"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "redmutex_losses_total{reason=\"token_gone\"}"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "redmutex_extend_failures_total{by=\"keep_alive\",reason=\"lock_lost\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert!(text.contains("redmutex_acquire_wait_seconds"), "{text}");
        // No series names a resource unless asked to.
        assert!(!text.contains("obs:metrics"), "{text}");
    }
}

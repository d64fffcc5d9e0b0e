//! The local queue (issue 18): a factory's waiters for one resource line up behind one head
//! that waits on the nodes; they take their turns in arrival order, a head that gives up (is
//! cancelled, times out, or dies with its process) hands the line on, and processes share the
//! lock fairly.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::worker::{self, Worker};
use crate::support::{self, RedisCluster, deadline_loop, port_cmd};
use crate::test_name;
use redmutex::{Error, RedLockFactory, Wait};

/// How long a waiter may take to get a lock that is free, once the waiter in front of it gave
/// up: it is at the head at once, and a head tries within one poll interval (5 to 10 ms here)
/// after a release it hears, or at once after one in its own factory. Generous: the machine
/// may be loaded.
const HAND_ON: Duration = Duration::from_secs(3);
/// Bound on each witness command of the worker processes.
const CMD: Duration = Duration::from_secs(5);

/// Waits until `factory` shows `n` waiters queued for `resource`.
fn queued(factory: &RedLockFactory, resource: &str, n: usize) -> bool {
    deadline_loop(Duration::from_secs(30), || {
        factory
            .stats()
            .queues
            .iter()
            .any(|q| q.resource == resource && q.waiting == n)
    })
}

#[test]
fn waiters_of_one_factory_queue_and_take_their_turns_in_arrival_order() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).build().unwrap();
    let lock = f.create_lock("queue:order");
    let holder = lock.acquire().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    const WAITERS: usize = 6;
    let handles: Vec<_> = (0..WAITERS)
        .map(|i| {
            let lock = lock.clone();
            let order = Arc::clone(&order);
            let h = thread::spawn(move || {
                let g = lock.acquire_timeout(Duration::from_secs(60)).unwrap();
                order.lock().unwrap().push(i);
                thread::sleep(Duration::from_millis(20));
                g.release().unwrap();
            });
            // Each one in line before the next arrives.
            assert!(queued(&f, "queue:order", i + 1), "waiter {i} never queued");
            h
        })
        .collect();
    let stats = f.stats();
    assert_eq!(stats.queued, WAITERS as u64);
    assert_eq!(stats.queues.len(), 1);
    assert_eq!(
        stats.queues[0].held, 0,
        "the holder took it without a queue"
    );
    holder.release().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..WAITERS).collect::<Vec<_>>());
    let stats = f.stats();
    assert_eq!(stats.queued, 0);
    assert!(stats.queues.is_empty(), "{:?}", stats.queues);
    // Each waiter after the first got the lock within the factory: no announcement woke it
    // (the first head may have been woken by the holder's). Whether it waited for the release
    // (a local hand-over) or came to the head after it depends on the scheduler.
    eprintln!(
        "[figures] queue_order: local hand-overs {} of {}, wake-ups {}",
        stats.local_handovers,
        WAITERS - 1,
        stats.wakeups
    );
    assert!(stats.wakeups <= 1, "{} wake-ups", stats.wakeups);
}

#[test]
fn a_head_cancelled_or_timed_out_hands_the_line_on() {
    let cluster = RedisCluster::start(3);
    let f = support::factory(&cluster).build().unwrap();
    let lock = f.create_lock("queue:give-up");
    let holder = lock.acquire().unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        // The head: cancelled while it waits on the nodes.
        let first = s.spawn(|| {
            lock.acquire_with(Wait::forever().cancel_on(&stop))
                .map(drop)
        });
        assert!(queued(&f, "queue:give-up", 1));
        // Behind it: one that times out once it is the head, and one that waits.
        let second = s.spawn(|| lock.acquire_timeout(Duration::from_millis(500)).map(drop));
        assert!(queued(&f, "queue:give-up", 2));
        let third = s.spawn(|| {
            let g = lock.acquire_timeout(Duration::from_secs(60)).unwrap();
            let got = Instant::now();
            g.release().unwrap();
            got
        });
        assert!(queued(&f, "queue:give-up", 3));
        stop.store(true, Ordering::Release);
        assert!(matches!(
            first.join().unwrap(),
            Err(Error::Cancelled { .. })
        ));
        assert!(matches!(second.join().unwrap(), Err(Error::Timeout { .. })));
        // The third is the head now, still waiting on the holder.
        assert!(queued(&f, "queue:give-up", 1));
        let released = Instant::now();
        holder.release().unwrap();
        let got = third.join().unwrap();
        assert!(
            got.duration_since(released) < HAND_ON,
            "the lock reached the last waiter {:?} after its release",
            got.duration_since(released)
        );
    });
    let stats = f.stats();
    assert_eq!((stats.cancellations, stats.timeouts), (1, 1));
    assert!(stats.queues.is_empty(), "{:?}", stats.queues);
}

/// The worker side: `<mode>;<witness port>;<threads>;<resource>;<url>,<url>,...`.
fn queue_worker(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let (mode, witness, threads, resource) = (parts[0], parts[1], parts[2], parts[3]);
    let witness: u16 = witness.parse().unwrap();
    let threads: usize = threads.parse().unwrap();
    let f = support::builder()
        .nodes(parts[4].split(','))
        .build()
        .unwrap();
    let lock = f.create_lock(resource);
    match mode {
        // Queue `threads` waiters, say so, and wait to be killed.
        "queue" => {
            for _ in 0..threads {
                let lock = lock.clone();
                thread::spawn(move || lock.acquire().map(drop));
            }
            assert!(queued(&f, resource, threads));
            port_cmd(witness, &["RPUSH", "queued", "1"], CMD).unwrap();
            loop {
                thread::sleep(Duration::from_millis(100));
            }
        }
        // Contend with `threads` threads until the witness says "stop"; push each thread's
        // turns.
        "contend" => {
            port_cmd(witness, &["RPUSH", "ready", "1"], CMD).unwrap();
            assert!(deadline_loop(Duration::from_secs(60), || {
                port_cmd(witness, &["GET", "go"], CMD).unwrap() == "1"
            }));
            let stop = AtomicBool::new(false);
            let turns: Vec<usize> = thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            let mut turns = 0;
                            while !stop.load(Ordering::Acquire) {
                                let Ok(g) = lock.acquire_with(Wait::forever().cancel_on(&stop))
                                else {
                                    break;
                                };
                                thread::sleep(Duration::from_millis(1));
                                g.release().unwrap();
                                turns += 1;
                            }
                            turns
                        })
                    })
                    .collect();
                assert!(deadline_loop(Duration::from_secs(120), || {
                    port_cmd(witness, &["GET", "stop"], CMD).unwrap() == "1"
                }));
                stop.store(true, Ordering::Release);
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let line = turns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            port_cmd(witness, &["RPUSH", "turns", &line], CMD).unwrap();
        }
        other => panic!("unknown worker mode {other:?}"),
    }
}

fn spawn(
    test: &str,
    mode: &str,
    witness: u16,
    threads: usize,
    resource: &str,
    urls: &[String],
) -> Worker {
    Worker::spawn(
        test,
        &format!("{mode};{witness};{threads};{resource};{}", urls.join(",")),
    )
}

#[test]
fn a_process_killed_with_its_queue_does_not_hold_up_the_others() {
    if let Some(spec) = worker::spec() {
        return queue_worker(&spec);
    }
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let f = support::factory(&cluster).build().unwrap();
    let lock = f.create_lock("queue:killed");
    let holder = lock.acquire().unwrap();
    // The worker's head waits on the nodes (its waiting mark names it: it waited first), three
    // more wait behind it.
    let mut child = spawn(
        test_name!(a_process_killed_with_its_queue_does_not_hold_up_the_others),
        "queue",
        witness.port(0),
        4,
        "queue:killed",
        &cluster.urls(),
    );
    assert!(deadline_loop(Duration::from_secs(60), || {
        assert!(child.try_wait().is_none(), "the worker died");
        witness.cmd(0, &["LLEN", "queued"]) == "1"
    }));
    // Two waiters of another process (another factory) queue too.
    let other = support::factory(&cluster).build().unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let lock = other.create_lock("queue:killed");
            thread::spawn(move || {
                let g = lock.acquire_timeout(Duration::from_secs(60)).unwrap();
                let got = Instant::now();
                g.release().unwrap();
                got
            })
        })
        .collect();
    assert!(queued(&other, "queue:killed", 2));
    child.kill();
    let released = Instant::now();
    holder.release().unwrap();
    for w in waiters {
        let got = w.join().unwrap();
        assert!(
            got.duration_since(released) < HAND_ON,
            "a waiter got the lock {:?} after its release",
            got.duration_since(released)
        );
    }
}

#[test]
fn processes_share_a_contended_lock_fairly() {
    if let Some(spec) = worker::spec() {
        return queue_worker(&spec);
    }
    const PROCESSES: usize = 4;
    const THREADS: usize = 8;
    let cluster = RedisCluster::start(3);
    let witness = RedisCluster::start(1);
    let children: Vec<Worker> = (0..PROCESSES)
        .map(|_| {
            spawn(
                test_name!(processes_share_a_contended_lock_fairly),
                "contend",
                witness.port(0),
                THREADS,
                "queue:fair",
                &cluster.urls(),
            )
        })
        .collect();
    assert!(deadline_loop(Duration::from_secs(60), || {
        witness.cmd(0, &["LLEN", "ready"]) == PROCESSES.to_string()
    }));
    witness.cmd(0, &["SET", "go", "1"]);
    thread::sleep(Duration::from_secs(4));
    witness.cmd(0, &["SET", "stop", "1"]);
    for mut c in children {
        let status = c.wait();
        assert!(status.success(), "a worker process failed: {status}");
    }
    let lines = witness.cmd(0, &["LRANGE", "turns", "0", "-1"]);
    let per_process: Vec<Vec<usize>> = lines
        .lines()
        .map(|l| l.split(',').map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(per_process.len(), PROCESSES);
    let totals: Vec<usize> = per_process.iter().map(|p| p.iter().sum()).collect();
    let threads: Vec<usize> = per_process.iter().flatten().copied().collect();
    let ratio =
        |v: &[usize]| *v.iter().min().unwrap() as f64 / (*v.iter().max().unwrap()).max(1) as f64;
    eprintln!(
        "[figures] processes_fair: turns per process {totals:?} (least/most {:.2}), per thread \
         least/most {:.2}",
        ratio(&totals),
        ratio(&threads)
    );
    assert!(totals.iter().sum::<usize>() >= 100, "{totals:?}");
    // Generous for a loaded machine: without the queue's bound on turns in a row, one process
    // could keep the lock for as long as its own threads keep asking.
    assert!(ratio(&totals) >= 0.33, "turns per process {totals:?}");
    assert!(ratio(&threads) >= 0.2, "turns per thread {per_process:?}");
}

/// The members of `resource`'s order set on node `i` (the processes' lines waiting for it).
fn order_set(cluster: &RedisCluster, i: usize, resource: &str) -> String {
    let key = format!("{resource}:redmutex:order");
    cluster.cmd(i, &["ZRANGE", &key, "0", "-1"])
}

/// `resource` held by one factory, and another factory for a waiter that polls only every 30
/// s: within a test, it moves only on what it hears (its mark lives a minute).
fn held_with_a_quiet_waiter(
    cluster: &RedisCluster,
    resource: &str,
) -> (redmutex::RedLockGuard, RedLockFactory) {
    let holder = support::factory(cluster)
        .build()
        .unwrap()
        .create_lock(resource)
        .acquire()
        .unwrap();
    let waiter_factory = support::factory(cluster)
        .retry_delay(Duration::from_secs(30))
        .retry_jitter(Duration::from_millis(1))
        .build()
        .unwrap();
    (holder, waiter_factory)
}

/// Regression (issue 18, the 4 × 16 tail): a line enters the order set with its first marking
/// attempt (it used to mark with no `since` and enter only at its next attempt, a poll interval
/// later), and a win that one node refused (it still held the previous holder's key, whose
/// release had not reached it) leaves no entry there once the lease is released. Before, that
/// node had entered the line again instead of removing it, and named it, a line no longer
/// waiting, in every release announcement until the entry expired (a marker's life): the
/// process it named was not there to take the lock, the others held back for it, and the
/// releasing process kept the lock for turn after turn.
#[test]
fn a_line_enters_the_order_at_once_and_a_win_refused_by_one_node_leaves_no_entry() {
    const RESOURCE: &str = "queue:stale-order";
    let cluster = RedisCluster::start(3);
    let (holder, waiter_factory) = held_with_a_quiet_waiter(&cluster, RESOURCE);
    let lock = waiter_factory.create_lock(RESOURCE);
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let g = lock.acquire_timeout(Duration::from_secs(60)).unwrap();
            g.release().unwrap();
        });
        assert!(queued(&waiter_factory, RESOURCE, 1));
        assert!(
            deadline_loop(Duration::from_secs(10), || (0..3)
                .all(|i| !order_set(&cluster, i, RESOURCE).is_empty())),
            "the waiting line is not in the order set on every node: {:?}",
            (0..3)
                .map(|i| order_set(&cluster, i, RESOURCE))
                .collect::<Vec<_>>()
        );
        // Node 0 still holds a key for the lock when the others are released (as when the
        // release has not reached it yet): the waiter wins on nodes 1 and 2 only.
        cluster.cmd(0, &["SET", RESOURCE, "someone else"]);
        holder.release().unwrap();
        // The waiter listens on node 0 (it answered busy first), where the release did not run.
        let channel = format!("{RESOURCE}:redmutex:released");
        cluster.cmd(0, &["PUBLISH", &channel, "0 1"]);
        waiter.join().unwrap();
    });
    assert_eq!(
        order_set(&cluster, 0, RESOURCE),
        "",
        "the released lease's line is still in node 0's order set"
    );
    cluster.cmd(0, &["DEL", RESOURCE]);
}

/// Holds back, once armed, the first `on_contended` of the factory it handles, until opened:
/// a waiter that joined its factory's line stays there without taking its turn.
#[derive(Default)]
struct GateState {
    armed: AtomicBool,
    entered: AtomicBool,
    open: Mutex<bool>,
    opened: std::sync::Condvar,
}

/// A shared [`GateState`], the handler.
#[derive(Clone, Default)]
struct Gate(Arc<GateState>);

impl std::ops::Deref for Gate {
    type Target = GateState;

    fn deref(&self) -> &GateState {
        &self.0
    }
}

impl GateState {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Opens the gate when dropped: a failed assertion does not leave the waiter behind it stuck.
struct OpenOnDrop<'a>(&'a GateState);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

impl redmutex::HandleEvent for Gate {
    fn on_contended(&self, _: &redmutex::event::ContendedEvent<'_>) {
        if self.armed.swap(false, Ordering::AcqRel) {
            self.entered.store(true, Ordering::Release);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }
    }
}

/// Regression (issue 18, the 4 × 16 tail): when a lock won through a line is released to the
/// next waiter of that line while another process waits, the lock is never free on the nodes
/// in between: the release leaves the line's hand-over mark, which another factory's attempt
/// finds busy, and which goes by itself within 20 ms when the next waiter does not take it over.
/// Before, the release deleted the key, and another process's head that polled in that window
/// took the lock, cutting the line's turns short and sending it to the back of the order.
#[test]
fn a_hand_over_in_a_line_leaves_no_window_and_its_mark_goes_by_itself() {
    const RESOURCE: &str = "queue:hand-over";
    let cluster = RedisCluster::start(3);
    let gate = Gate::default();
    let line_factory = support::factory(&cluster)
        .event_handler(gate.clone())
        .build()
        .unwrap();
    let other = support::factory(&cluster).build().unwrap();
    let lock = line_factory.create_lock(RESOURCE);
    // The first holder wins through its line: it waits for another factory's holder first.
    let before = other.create_lock(RESOURCE).acquire().unwrap();
    let first = thread::scope(|s| {
        let waiter = s.spawn(|| lock.acquire_timeout(Duration::from_secs(60)));
        assert!(queued(&line_factory, RESOURCE, 1));
        before.release().unwrap();
        waiter.join().unwrap().unwrap()
    });
    let held = |f: &RedLockFactory| f.stats().queues.iter().map(|q| q.held).sum::<usize>();
    assert_eq!(held(&line_factory), 1, "not held through the line");
    // Another process waits: its waiting marker is on every node.
    let waiting = format!("{RESOURCE}:redmutex:waiting");
    for i in 0..3 {
        cluster.cmd(i, &["SET", &waiting, "1", "PX", "60000"]);
    }
    // Connections opened beforehand, to read the key as soon as the release returns.
    let mut conns: Vec<redis::Connection> = (0..3)
        .map(|i| {
            redis::Client::open(cluster.url(i))
                .unwrap()
                .get_connection_with_timeout(CMD)
                .unwrap()
        })
        .collect();
    thread::scope(|s| {
        let _open = OpenOnDrop(&gate);
        // The next waiter joins the line, and stays in it without taking its turn.
        gate.armed.store(true, Ordering::Release);
        let next = s.spawn(|| {
            let g = lock.acquire_timeout(Duration::from_secs(60))?;
            g.release()
        });
        assert!(deadline_loop(Duration::from_secs(30), || gate
            .entered
            .load(Ordering::Acquire)));
        assert!(queued(&line_factory, RESOURCE, 1));
        first.release().unwrap();
        let released = Instant::now();
        // What the nodes hold now, and for how long at most.
        let seen: Vec<(Option<String>, i64)> = conns
            .iter_mut()
            .map(|c| {
                let (value, ttl): (Option<String>, i64) = redis::pipe()
                    .cmd("GET")
                    .arg(RESOURCE)
                    .cmd("PTTL")
                    .arg(RESOURCE)
                    .query(c)
                    .unwrap();
                (value, ttl)
            })
            .collect();
        let attempt_at = Instant::now();
        let stolen = other.create_lock(RESOURCE).try_acquire().unwrap();
        let marked: Vec<i64> = seen
            .iter()
            .filter(|(v, _)| {
                v.as_deref()
                    .is_some_and(|v| v.starts_with("redmutex:handover:"))
            })
            .map(|(_, ttl)| *ttl)
            .collect();
        assert!(
            marked.len() >= 2,
            "the lock was free on the nodes between the hand-over and the next waiter's \
             attempt: {seen:?}"
        );
        assert!(
            marked.iter().all(|ttl| (1..=20).contains(ttl)),
            "a hand-over mark lives at most 20 ms: {seen:?}"
        );
        // Refused while the mark stands (unless this thread came after its end: a loaded
        // machine).
        let stands_until = released
            + Duration::from_millis(marked.iter().copied().min().unwrap_or(0).unsigned_abs());
        if let Some(g) = stolen {
            assert!(
                attempt_at >= stands_until,
                "another factory took the lock over the hand-over mark, {:?} after the release",
                attempt_at.duration_since(released)
            );
            g.release().unwrap();
        }
        // The next waiter does not take its turn: the mark goes by itself.
        let mut taken = None;
        assert!(
            deadline_loop(HAND_ON, || {
                taken = other.create_lock(RESOURCE).try_acquire().unwrap();
                taken.is_some()
            }),
            "the hand-over mark still blocks the lock {:?} after the release",
            released.elapsed()
        );
        eprintln!(
            "[figures] hand_over: marked on {} nodes ({marked:?} ms left), free again {:?} after the release",
            marked.len(),
            released.elapsed()
        );
        // Then the next waiter takes its turn, and waits for the other holder like any waiter.
        gate.open();
        taken.unwrap().release().unwrap();
        next.join().unwrap().unwrap();
    });
    assert_eq!(held(&line_factory), 0);
}

/// Issue 18 (commands per acquisition): a waiting head marks again (its waiting mark, its
/// line's order set entry: `SET`, `TIME`, `ZADD`, `PEXPIRE` on every node) only when a third of
/// the mark's life has passed since it last marked; the attempts in between, such as the one
/// after each release it hears, are bare `SET NX PX`s. Its mark and its place in the order
/// still stand for the next release. Before, every attempt of a head marked again.
#[test]
fn a_head_whose_mark_is_fresh_tries_without_marking_again() {
    const RESOURCE: &str = "queue:fresh-mark";
    let cluster = RedisCluster::start(3);
    let (holder, waiter_factory) = held_with_a_quiet_waiter(&cluster, RESOURCE);
    let lock = waiter_factory.create_lock(RESOURCE);
    let waiting = format!("{RESOURCE}:redmutex:waiting");
    let channel = format!("{RESOURCE}:redmutex:released");
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let g = lock.acquire_timeout(Duration::from_secs(60))?;
            g.release()
        });
        assert!(queued(&waiter_factory, RESOURCE, 1));
        assert!(
            deadline_loop(Duration::from_secs(30), || (0..3)
                .all(|i| !order_set(&cluster, i, RESOURCE).is_empty())),
            "the waiting line is not in the order set on every node"
        );
        let zadds: u64 = (0..3).map(|i| cluster.calls(i, "zadd")).sum();
        let sets = cluster.calls(0, "set");
        // A release announcement (the lock is still held): the waiter wakes and tries.
        for i in 0..3 {
            cluster.cmd(i, &["PUBLISH", &channel, "0 1"]);
        }
        assert!(
            deadline_loop(Duration::from_secs(30), || cluster.calls(0, "set") > sets),
            "the waiter did not try after the announcement"
        );
        assert_eq!(
            (0..3).map(|i| cluster.calls(i, "zadd")).sum::<u64>(),
            zadds,
            "the waiter marked again, though its mark was fresh"
        );
        assert!(
            (0..3).all(|i| cluster.cmd(i, &["EXISTS", &waiting]) == "1"
                && !order_set(&cluster, i, RESOURCE).is_empty()),
            "the waiter's mark or its place in the order is gone"
        );
        // The real release: announced (the mark stands), the waiter takes the lock.
        holder.release().unwrap();
        waiter.join().unwrap().unwrap();
    });
}

/// Issue 18 (commands per acquisition): while a line takes its turns in a row because others
/// wait (the first hand-over found their waiting mark), each later hand-over leaves the line's
/// mark without looking for theirs again (no `EXISTS`), until the line holds back after
/// `MAX_TURNS` (16) turns. Before, every hand-over looked: one `EXISTS` per acquisition.
#[test]
fn a_line_taking_its_turns_looks_for_other_waiters_once_per_run() {
    const RESOURCE: &str = "queue:blind-hand-over";
    const THREADS: usize = 4;
    const TURNS: u64 = 40;
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).build().unwrap();
    // Another process waits all along (its marker, without its attempts).
    let waiting = format!("{RESOURCE}:redmutex:waiting");
    for i in 0..3 {
        cluster.cmd(i, &["SET", &waiting, "1", "PX", "600000"]);
    }
    let exists = cluster.calls(0, "exists");
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let lock = factory.create_lock(RESOURCE);
                for _ in 0..TURNS {
                    let g = lock.acquire_timeout(Duration::from_secs(60)).unwrap();
                    g.release().unwrap();
                }
            });
        }
    });
    let acquisitions = THREADS as u64 * TURNS;
    let looked = cluster.calls(0, "exists") - exists;
    let handed = factory.stats().local_handovers;
    eprintln!(
        "[figures] blind_hand_over: {looked} EXISTS on node 0 for {acquisitions} acquisitions \
         ({handed} hand-overs in the line)"
    );
    assert!(
        handed * 2 >= acquisitions,
        "too few hand-overs in the line to tell: {handed} of {acquisitions}"
    );
    // A release outside the line (no waiter of ours queued yet: more of them on a loaded
    // machine) looks once, as before; of the hand-overs, about 2 in 17 look: the one that ends
    // a run of turns, and the next run's first. Before, every one looked.
    let outside = acquisitions - handed;
    assert!(
        looked <= outside + handed / 4,
        "{looked} EXISTS for {acquisitions} acquisitions, {handed} of them hand-overs in the \
         line: hand-overs looked for others each time"
    );
}

//! Nothing left behind (issue 17, items 2 to 5 and 7): a round whose reply was lost and that was
//! sent again, a release or take-back that could not reach a node at the time, the read-write
//! lock's downgrade and writer intents, semaphore calls through a handle with another permit
//! count, and a multi-lock's waiters, each against real `redis-server`s (through a proxy where
//! the network must misbehave).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::proxy::{Proxy, bulk, contains};
use crate::support::{self, RedisCluster, deadline_loop};
use redmutex::{Error, RedLockFactory};

const TTL: Duration = Duration::from_secs(30);

/// Makes `proxy` reset the connection instead of delivering the reply to the first request
/// that carries every one of `needles` as a whole argument: the node ran it, the client never
/// hears (as after a CLIENT KILL between the write and the read). Returns whether it fired.
fn reset_first_reply(proxy: &Proxy, needles: &[&str]) -> Arc<AtomicBool> {
    let fired = Arc::new(AtomicBool::new(false));
    let bulks: Vec<Vec<u8>> = needles.iter().map(|n| bulk(n)).collect();
    let seen = Arc::clone(&fired);
    proxy.reset_replies_to_if(move |chunk| {
        bulks.iter().all(|b| contains(chunk, b)) && !seen.swap(true, Ordering::SeqCst)
    });
    fired
}

/// The keys on node `i` that start with `prefix`, except waiting marks (they expire by
/// themselves soon) and fencing counters (kept on purpose).
fn left(cluster: &RedisCluster, i: usize, prefix: &str) -> Vec<String> {
    cluster
        .keys(i)
        .into_iter()
        .filter(|k| k.starts_with(prefix) && !k.ends_with(":redmutex:fence"))
        .collect()
}

/// [`left`] once what node `i` was sent has run: a round returns once a quorum's replies
/// settle it, so its command to node 0, behind the proxy (one thread hop more), may land just
/// after the call returns. Waits up to 2 s (the leases live 30 s) for nothing to be left, and
/// returns what is left then.
fn left_soon(cluster: &RedisCluster, i: usize, prefix: &str) -> Vec<String> {
    crate::support::deadline_loop(Duration::from_secs(2), || {
        left(cluster, i, prefix).is_empty()
    });
    left(cluster, i, prefix)
}

/// Runs `f` until it does not fail for want of a quorum, for up to 30 s: a loaded machine can
/// time a node out, above all on a first connection.
fn retrying<T>(mut f: impl FnMut() -> redmutex::Result<T>) -> redmutex::Result<T> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Err(Error::NoQuorum { .. } | Error::TooLate { .. }) if Instant::now() < end => {
                thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Makes sure `factory` has a connection to every node it can reach before a test's round.
fn warm(factory: &RedLockFactory) {
    retrying(|| factory.create_lock("warm-up").acquire().map(drop)).unwrap();
}

/// One kind of lease, taken and released through a boxed guard.
type Release = Box<dyn FnOnce() -> redmutex::Result<()>>;

/// Takes one lease of each kind on `factory` with `try_*`; `None` when busy.
fn take(factory: &RedLockFactory, kind: &str, name: &str) -> redmutex::Result<Option<Release>> {
    Ok(match kind {
        "bare" => factory
            .create_lock(name)
            .try_acquire()?
            .map(|g| Box::new(move || g.release()) as Release),
        "fenced" => factory
            .create_lock(name)
            .with_fencing(true)
            .try_acquire()?
            .map(|g| Box::new(move || g.release()) as Release),
        "writer" => factory
            .create_rwlock(name)
            .try_write()?
            .map(|g| Box::new(move || g.release()) as Release),
        "reader" => factory
            .create_rwlock(name)
            .try_read()?
            .map(|g| Box::new(move || g.release()) as Release),
        "multi" => factory
            .create_multi_lock([format!("{name}:a"), format!("{name}:b")])
            .try_acquire()?
            .map(|g| Box::new(move || g.release()) as Release),
        "permit" => factory
            .create_semaphore(name, 3)
            .try_acquire()?
            .map(|g| Box::new(move || g.release()) as Release),
        _ => unreachable!("{kind}"),
    })
}

/// The arguments that pick out the acquisition request of `kind` on `name` (and nothing else
/// the round sends before it).
fn acquisition(kind: &str, name: &str) -> Vec<String> {
    match kind {
        "bare" => vec!["SET".into(), name.into()],
        "fenced" => vec![name.into(), format!("{name}:redmutex:fence")],
        "writer" => vec![name.into(), format!("{name}:redmutex:fence")],
        "reader" => vec![name.into(), format!("{name}:redmutex:readers")],
        "multi" => vec![format!("{name}:a"), format!("{name}:b")],
        "permit" => vec![format!("{name}:redmutex:permit:")],
        _ => unreachable!("{kind}"),
    }
}

const KINDS: [&str; 6] = ["bare", "fenced", "writer", "reader", "multi", "permit"];

/// Item 2. One node, nobody else: an acquisition whose reply is lost after the node ran it is
/// sent again on a fresh connection. The repeat must answer for its own first run (granted),
/// hold exactly one grant (the semaphore: one slot, counted once), and leave nothing after the
/// release. (Before: `SET NX` and the acquire scripts answered "no" against their own first
/// run, `try_*` said busy and the key stayed for the TTL; the semaphore took a second slot.)
#[test]
fn an_acquisition_sent_again_after_its_reply_was_lost_is_granted_once() {
    let cluster = RedisCluster::start(1);
    let proxy = Proxy::start(cluster.port(0));
    let factory = support::builder()
        .nodes([proxy.url()])
        .ttl(TTL)
        .build()
        .unwrap();
    warm(&factory);
    let mut failures = Vec::new();
    for kind in KINDS {
        let name = format!("resent:{kind}");
        let needles = acquisition(kind, &name);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let fired = reset_first_reply(&proxy, &needles);
        let taken = retrying(|| take(&factory, kind, &name));
        proxy.clear_rules();
        if !fired.load(Ordering::SeqCst) {
            failures.push(format!(
                "{kind}: the reply was never reset (the test is wrong)"
            ));
            continue;
        }
        let release = match taken {
            Ok(Some(release)) => release,
            Ok(None) => {
                failures.push(format!(
                    "{kind}: busy with nobody else there; left: {:?}",
                    left(&cluster, 0, &name)
                ));
                continue;
            }
            Err(e) => {
                failures.push(format!("{kind}: {e}"));
                continue;
            }
        };
        if kind == "permit" {
            let slots: Vec<String> = left(&cluster, 0, &format!("{name}:redmutex:permit:"));
            let count = cluster.cmd(0, &["GET", &name]);
            if slots.len() != 1 || count != "redmutex:semaphore:3:1" {
                failures.push(format!(
                    "permit: one permit holds slots {slots:?}, name key {count:?}"
                ));
            }
        }
        if let Err(e) = release() {
            failures.push(format!("{kind}: release: {e}"));
        }
        let rest = left_soon(&cluster, 0, &name);
        if !rest.is_empty() {
            failures.push(format!("{kind}: left after the release: {rest:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Item 2. A release whose reply is lost after the node ran it is sent again, and finds the
/// token gone: that says nothing about whether it was ours (its first run deleted it), so the
/// lease must not be reported lost (before: the repeat answered "not our token", and a lease
/// released on its one node was reported lost). With one node the release cannot be confirmed
/// (no quorum, naming the repeat); nothing is left either way.
#[test]
fn a_release_sent_again_after_its_reply_was_lost_is_not_a_loss() {
    let cluster = RedisCluster::start(1);
    let proxy = Proxy::start(cluster.port(0));
    let factory = support::builder()
        .nodes([proxy.url()])
        .ttl(TTL)
        .build()
        .unwrap();
    warm(&factory);
    let mut failures = Vec::new();
    for kind in KINDS {
        let name = format!("resent-release:{kind}");
        let release = match retrying(|| take(&factory, kind, &name)) {
            Ok(Some(release)) => release,
            other => {
                failures.push(format!("{kind}: not taken: {:?}", other.err()));
                continue;
            }
        };
        // Every release carries the lease's token and names the waiting mark (an extend names
        // no mark); the lease's own tokens are the only 40-hex-digit values of the name's keys.
        let token = cluster
            .keys(0)
            .into_iter()
            .filter(|k| k.starts_with(&name))
            .find_map(|k| {
                let v = cluster.cmd(0, &["GET", &k]);
                let v = v.strip_prefix("redmutex:readers:").unwrap_or(&v).to_owned();
                (v.len() == 40 && v.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
            });
        let Some(token) = token else {
            failures.push(format!("{kind}: no token on the node"));
            continue;
        };
        let fired = Arc::new(AtomicBool::new(false));
        let (seen, token_bulk) = (Arc::clone(&fired), bulk(&token));
        proxy.reset_replies_to_if(move |chunk| {
            contains(chunk, &token_bulk)
                && contains(chunk, b":redmutex:waiting")
                && !seen.swap(true, Ordering::SeqCst)
        });
        let released = release();
        proxy.clear_rules();
        if !fired.load(Ordering::SeqCst) {
            failures.push(format!(
                "{kind}: the reply was never reset (the test is wrong)"
            ));
        }
        match released {
            // One node cannot confirm it (the failure names the repeat, or, on a machine so
            // loaded that the repeat's connection timed out, that).
            Ok(()) | Err(Error::NoQuorum { .. }) => {}
            Err(e) => failures.push(format!("{kind}: release sent again: {e}")),
        }
        let rest = left_soon(&cluster, 0, &name);
        if !rest.is_empty() {
            failures.push(format!("{kind}: left after the release: {rest:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Item 2. Three nodes, two held by someone else: our attempt is refused, and its command on
/// the third node, whose reply was lost and which was sent again, must be taken back there too
/// (before: the repeat answered "no" against its own first run, the take-back skipped the node,
/// and our token blocked it for the TTL).
#[test]
fn a_refused_attempt_takes_back_a_node_whose_command_was_sent_again() {
    let cluster = RedisCluster::start(3);
    let proxy = Proxy::start(cluster.port(0));
    let urls = vec![proxy.url(), cluster.url(1), cluster.url(2)];
    let factory = support::builder().nodes(urls).ttl(TTL).build().unwrap();
    warm(&factory);
    let mut failures = Vec::new();
    for kind in ["bare", "fenced", "writer", "multi"] {
        let name = format!("resent-refused:{kind}");
        let held = if kind == "multi" {
            format!("{name}:b")
        } else {
            name.clone()
        };
        for i in [1, 2] {
            cluster.cmd(i, &["SET", &held, "someone-else", "PX", "60000"]);
        }
        let needles = acquisition(kind, &name);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let fired = reset_first_reply(&proxy, &needles);
        let taken = retrying(|| take(&factory, kind, &name));
        proxy.clear_rules();
        if !fired.load(Ordering::SeqCst) {
            failures.push(format!(
                "{kind}: the reply was never reset (the test is wrong)"
            ));
        }
        match taken {
            Ok(None) => {}
            Ok(Some(_)) => failures.push(format!("{kind}: granted while held elsewhere")),
            Err(e) => failures.push(format!("{kind}: {e}")),
        }
        let rest = left_soon(&cluster, 0, &name);
        if !rest.is_empty() {
            let values: Vec<String> = rest.iter().map(|k| cluster.cmd(0, &["GET", k])).collect();
            failures.push(format!(
                "{kind}: our attempt left {rest:?} = {values:?} on the node whose command was \
                 sent again"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Item 3. A node stopped (SIGSTOP: it still accepts connections) takes the acquisition into
/// its queue, and the release skips it as down; when it resumes, it runs the acquisition and
/// holds our token with no guard alive. The release must reach it once it is back, before that
/// key blocks anyone: here, with another node then killed, the key must be free again within a
/// few rounds (before: it stayed for the whole TTL, and every acquisition timed out).
#[test]
fn a_release_reaches_a_node_that_was_stopped_once_it_is_back() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).ttl(TTL).build().unwrap();
    let lock = factory.create_lock("owed:release");
    // Every node has a pooled connection first, so the stopped node takes the request.
    drop(retrying(|| lock.acquire()).unwrap());
    let sets = cluster.calls(2, "set");
    cluster.stop(2);
    let guard = retrying(|| lock.acquire()).unwrap();
    let token = guard.token().to_owned();
    // (Nodes 0 and 1 release it; should a loaded machine time one out, it is owed it too.)
    let _ = guard.release();
    cluster.cont(2);
    // (Its key may be gone again at once: a fixed client may be reconnecting already.)
    assert!(
        deadline_loop(Duration::from_secs(10), || cluster.calls(2, "set") > sets),
        "the resumed node never ran the queued acquisition: the scenario did not happen"
    );
    cluster.kill(1);
    let freed = deadline_loop(Duration::from_secs(20), || {
        // Any rounds of this factory reach node 2 again.
        let _ = factory.create_lock("owed:probe").try_acquire();
        cluster.cmd(2, &["GET", "owed:release"]) != token
    });
    assert!(
        freed,
        "node 2 still holds the released token {token}: the release never reached it"
    );
    let start = Instant::now();
    let got = deadline_loop(Duration::from_secs(20), || {
        lock.acquire_timeout(Duration::from_secs(2)).is_ok()
    });
    assert!(got, "the lock stayed blocked for {:?}", start.elapsed());
}

/// Item 3. As above for the take-back of a refused attempt: the stopped node takes the attempt
/// into its queue, the take-back skips it as down, and it must reach the node once it is back.
#[test]
fn a_take_back_reaches_a_node_that_was_stopped_once_it_is_back() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).ttl(TTL).build().unwrap();
    let lock = factory.create_lock("owed:take-back");
    drop(retrying(|| lock.acquire()).unwrap());
    cluster.cmd(1, &["SET", "owed:take-back", "someone-else", "PX", "60000"]);
    let sets = cluster.calls(2, "set");
    cluster.stop(2);
    // Node 0 grants, node 1 refuses, node 2 times out: busy, and taken back where it may have
    // landed (node 0 now, node 2 later).
    // (Busy, or no quorum should a loaded machine time out another node too.)
    let attempt = lock.try_acquire();
    assert!(
        !matches!(attempt, Ok(Some(_))),
        "granted while node 1 holds it"
    );
    drop(attempt);
    cluster.cont(2);
    let ours = |v: &str| v.len() == 40 && v.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(
        deadline_loop(Duration::from_secs(10), || cluster.calls(2, "set") > sets),
        "the resumed node never ran the queued attempt: the scenario did not happen"
    );
    let freed = deadline_loop(Duration::from_secs(20), || {
        let _ = factory.create_lock("owed:probe").try_acquire();
        !ours(&cluster.cmd(2, &["GET", "owed:take-back"]))
    });
    assert!(
        freed,
        "node 2 still holds the refused attempt's token: the take-back never reached it"
    );
}

/// Item 4. A downgrade that a quorum converted, with one node that never saw it (its request
/// was lost), leaves that node holding the writer's token; the reader's release must free it
/// (before: it stayed for the TTL, refusing every reader, writer and lock there).
#[test]
fn a_downgrade_leaves_nothing_on_a_node_that_did_not_convert() {
    let cluster = RedisCluster::start(3);
    let proxy = Proxy::start(cluster.port(2));
    let urls = vec![cluster.url(0), cluster.url(1), proxy.url()];
    let factory = support::builder().nodes(urls).ttl(TTL).build().unwrap();
    let rw = factory.create_rwlock("downgrade:left");
    let writer = retrying(|| rw.write()).unwrap();
    let token = writer.token().to_owned();
    // The downgrade carries the lock's release channel and its TTL; no other request does.
    let channel = bulk("downgrade:left:redmutex:released");
    let ttl_ms = bulk(&TTL.as_millis().to_string());
    proxy.drop_requests_if(move |c| contains(c, &channel) && contains(c, &ttl_ms));
    let reader = writer.downgrade().unwrap();
    proxy.clear_rules();
    assert!(
        proxy.counters().matched > 0,
        "the downgrade was never dropped"
    );
    reader.release().unwrap();
    let freed = deadline_loop(Duration::from_secs(20), || {
        let _ = factory.create_lock("downgrade:probe").try_acquire();
        cluster.cmd(2, &["EXISTS", "downgrade:left"]) == "0"
    });
    let held = cluster.cmd(2, &["GET", "downgrade:left"]);
    assert!(
        freed,
        "node 2 still holds {held:?} (the writer's token: {}) after the reader released",
        held == token
    );
}

/// Item 4. A writer granted by a quorum while one node refused it (a reader held it there)
/// recorded its intent on that node; once granted, it must withdraw it there (before: the
/// intent stayed until it expired, and readers were refused with nobody waiting).
#[test]
fn a_granted_writer_leaves_no_intent_on_the_nodes_that_refused_it() {
    let cluster = RedisCluster::start(3);
    // A slow poll makes a waiting writer's intent long-lived (several seconds).
    let factory = support::factory(&cluster)
        .ttl(TTL)
        .retry_delay(Duration::from_secs(2))
        .build()
        .unwrap();
    cluster.cmd(
        2,
        &[
            "SET",
            "intent:left",
            "redmutex:readers:someone",
            "PX",
            "60000",
        ],
    );
    let writer = retrying(|| factory.create_rwlock("intent:left").write()).unwrap();
    let intents = cluster.cmd(2, &["ZRANGE", "intent:left:redmutex:writers", "0", "-1"]);
    assert!(
        intents.is_empty(),
        "the granted writer left its intent {intents:?} on the node that refused it"
    );
    writer.release().unwrap();
}

/// Item 4. Readers held back by a waiting writer's intent are told when the writer gives up
/// (its intent withdrawn), not left to their next poll (here 10 s away).
#[test]
fn readers_held_back_by_a_withdrawn_intent_are_woken() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster)
        .ttl(TTL)
        .retry_delay(Duration::from_secs(20))
        .retry_jitter(Duration::from_millis(1))
        .build()
        .unwrap();
    let rw = factory.create_rwlock("intent:withdrawn");
    let first = retrying(|| rw.read()).unwrap();
    let writer = thread::spawn({
        let rw = rw.clone();
        move || {
            let got = rw.writer().acquire_timeout(Duration::from_secs(4));
            (got.map(drop), Instant::now())
        }
    });
    assert!(
        deadline_loop(Duration::from_secs(10), || cluster
            .cmd(0, &["EXISTS", "intent:withdrawn:redmutex:writers"])
            == "1"),
        "the writer never recorded its intent"
    );
    cluster.clear_waiting("intent:withdrawn");
    let reader = thread::spawn(move || (rw.read().map(drop), Instant::now()));
    cluster.wait_waiting("intent:withdrawn");
    let (wrote, gave_up) = writer.join().unwrap();
    assert!(matches!(wrote, Err(Error::Timeout { .. })), "{wrote:?}");
    let (read, got_in) = reader.join().unwrap();
    read.unwrap();
    let late = got_in.saturating_duration_since(gave_up);
    assert!(
        late < Duration::from_secs(5),
        "the reader got in {late:?} after the writer withdrew its intent (its poll is 20 s)"
    );
    drop(first);
}

/// Item 4. A waiting writer's intent that expires (the writer died) announces nothing, but the
/// readers it held back must try again when it ends, not at their next poll (20 s away).
#[test]
fn readers_held_back_by_an_expiring_intent_try_again_when_it_ends() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster)
        .ttl(TTL)
        .retry_delay(Duration::from_secs(20))
        .retry_jitter(Duration::from_millis(1))
        .build()
        .unwrap();
    warm(&factory);
    // A dead writer's intent, ending in 2 s.
    let key = "intent:expiring:redmutex:writers";
    cluster.cmd(0, &["ZADD", key, "99999999999999", "dead-writer"]);
    cluster.cmd(0, &["PEXPIRE", key, "2000"]);
    let start = Instant::now();
    let read = factory.create_rwlock("intent:expiring").read();
    let took = start.elapsed();
    drop(read.unwrap());
    assert!(
        took < Duration::from_secs(7),
        "the reader got in {took:?} after an intent that ended in 2 s (its poll is 20 s)"
    );
}

/// Item 5. Token-level calls through a handle with another permit count are refused, and change
/// nothing (before: the extend extended the slot and not the name key and said yes, and the
/// release left the name key's count too high).
#[test]
fn token_calls_through_another_permit_count_are_refused() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster).ttl(TTL).build().unwrap();
    let token = retrying(|| factory.create_semaphore("count:token", 3).acquire())
        .unwrap()
        .leak();
    let other = factory.create_semaphore("count:token", 5);
    let extended = retrying(|| other.extend_token(&token, Duration::from_secs(60)));
    assert!(
        matches!(extended, Err(Error::InvalidConfig(_))),
        "extend_token through 5 permits on a 3-permit semaphore: {extended:?}"
    );
    let released = retrying(|| other.release_token(&token));
    assert!(
        matches!(released, Err(Error::InvalidConfig(_))),
        "release_token through 5 permits on a 3-permit semaphore: {released:?}"
    );
    assert_eq!(
        cluster.cmd(0, &["GET", "count:token"]),
        "redmutex:semaphore:3:1"
    );
    retrying(|| {
        factory
            .create_semaphore("count:token", 3)
            .release_token(&token)
    })
    .unwrap();
    assert_eq!(left(&cluster, 0, "count:token"), Vec::<String>::new());
}

/// Item 5. One node with a stale name key of another permit count must not fail an acquisition
/// that a quorum granted (before: `InvalidConfig` for the whole TTL of that key); a majority
/// saying another count still is a misconfiguration.
#[test]
fn a_stale_count_on_one_node_does_not_fail_a_quorum() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).ttl(TTL).build().unwrap();
    cluster.cmd(
        0,
        &[
            "SET",
            "count:stale",
            "redmutex:semaphore:5:1",
            "PX",
            "60000",
        ],
    );
    let permit = retrying(|| factory.create_semaphore("count:stale", 3).try_acquire());
    let permit = permit.unwrap_or_else(|e| panic!("one stale node failed the acquisition: {e}"));
    assert!(permit.is_some(), "two free nodes did not grant a permit");
    drop(permit);
    cluster.cmd(
        1,
        &[
            "SET",
            "count:stale",
            "redmutex:semaphore:5:1",
            "PX",
            "60000",
        ],
    );
    let refused = retrying(|| factory.create_semaphore("count:stale", 3).try_acquire());
    assert!(
        matches!(refused, Err(Error::InvalidConfig(_))),
        "a majority says 5 permits: {refused:?}"
    );
}

/// Item 7. A lock literally named like a multi-lock's display name (`"[a, b]"`) must not share
/// the multi-lock's waiter room: each waiter hears its own releases (before: the second waiter
/// joined the first's subscription and fell back to its 20 s poll).
#[test]
fn a_lock_named_like_a_multi_lock_has_its_own_waiters() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster)
        .ttl(TTL)
        .retry_delay(Duration::from_secs(20))
        .retry_jitter(Duration::from_millis(1))
        .build()
        .unwrap();
    let holder = support::factory(&cluster).ttl(TTL).build().unwrap();
    let plain = "[room:a, room:b]";
    warm(&factory);
    let held_a = retrying(|| holder.create_lock("room:a").acquire()).unwrap();
    let held_plain = retrying(|| holder.create_lock(plain).acquire()).unwrap();
    cluster.clear_waiting("room:a");
    cluster.clear_waiting(plain);
    let multi = thread::spawn({
        let m = factory.create_multi_lock(["room:a", "room:b"]);
        move || (m.acquire().map(drop), Instant::now())
    });
    cluster.wait_waiting("room:a");
    let lock = thread::spawn({
        let l = factory.create_lock(plain);
        move || (l.acquire().map(drop), Instant::now())
    });
    cluster.wait_waiting(plain);
    let released = Instant::now();
    held_plain.release().unwrap();
    let (got, at) = lock.join().unwrap();
    got.unwrap();
    let late = at.saturating_duration_since(released);
    assert!(
        late < Duration::from_secs(5),
        "the waiter of {plain:?} got it {late:?} after its release (its poll is 20 s)"
    );
    let released = Instant::now();
    held_a.release().unwrap();
    let (got, at) = multi.join().unwrap();
    got.unwrap();
    let late = at.saturating_duration_since(released);
    assert!(
        late < Duration::from_secs(5),
        "the multi-lock's waiter got it {late:?} after the release (its poll is 20 s)"
    );
}

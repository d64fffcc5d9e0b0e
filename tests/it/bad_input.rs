//! Bad input gets a clear error (or, where the input is merely unusual, correct behaviour),
//! never a panic or a hang, and leaves nothing held or leaked on the nodes: malformed URLs and
//! node lists, the other ways to name a node, bad durations and factors, unusual resource
//! names, wrong credentials and databases, and servers that are not Redis. Most cases are
//! tables, one row per input.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, RedisCluster, deadline_loop};
use redmutex::{Error, MAX_NODES, MAX_RESOURCE_LEN, RedLockFactory};

/// `Err(message)` for a configuration error, `Ok(())` when the factory was built.
fn build(nodes: &[&str]) -> Result<(), String> {
    match RedLockFactory::new(nodes.iter().copied()) {
        Ok(_) => Ok(()),
        Err(Error::InvalidConfig(m)) => Err(m),
        Err(e) => panic!("{nodes:?}: unexpected error kind {e:?}"),
    }
}

/// The message of the configuration error `nodes` must give.
fn config_error(nodes: &[&str]) -> String {
    match build(nodes) {
        Err(m) => m,
        Ok(()) => panic!("{nodes:?}: expected InvalidConfig, the factory was built"),
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes: URLs, counts, and the other ways to name one.

#[test]
fn malformed_and_unknown_urls_are_config_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no nodes"),
        (&["not a url"], "node 0"),
        (&["http://127.0.0.1:6379"], "node 0"),
        (&["redis://127.0.0.1:6379", "redis://"], "node 1"),
        (&["redis://127.0.0.1:99999"], "node 0"),
        (&["redis://127.0.0.1:6379/notanumber"], "node 0"),
        (
            &["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/0"],
            "twice",
        ),
        (
            &["redis://localhost:6379", "redis://localhost:6379"],
            "twice",
        ),
    ];
    for (nodes, expected) in cases {
        let message = config_error(nodes);
        assert!(message.contains(expected), "{nodes:?}: {message}");
    }
}

#[test]
fn node_urls_table() {
    // (nodes, expected: Some(substring of the InvalidConfig message) or None = accepted)
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[""], Some("node 0")),
        (&["   "], Some("node 0")),
        (&["redis"], Some("node 0")),
        (&["redis:/127.0.0.1"], Some("node 0")),
        (&["127.0.0.1:6379"], Some("node 0")),
        (&["ftp://127.0.0.1:6379"], Some("node 0")),
        (&["memcached://127.0.0.1:11211"], Some("node 0")),
        (&["https://127.0.0.1"], Some("node 0")),
        (&["redis://127.0.0.1:-1"], Some("node 0")),
        (&["redis://127.0.0.1:65536"], Some("node 0")),
        // A negative database parses (redis-rs takes an i64); SELECT -1 then fails on connect.
        (&["redis://127.0.0.1:6379/-1"], None),
        (&["redis://127.0.0.1:6379/1x"], Some("node 0")),
        (&["redis://[::1"], Some("node 0")),
        (&["redis://user:pa ss@127.0.0.1:6379"], None),
        (
            &["redis://127.0.0.1:6379/99999999999999999999"],
            Some("node 0"),
        ),
        (&["redis://127.0.0.1:6379?protocol=resp9"], Some("node 0")),
        (&["redis+unix://"], Some("node 0")),
        (&["unix://"], Some("node 0")),
        // redis-rs ignores the fragment of a redis:// URL (only rediss:// reads `#insecure`).
        (&["redis://127.0.0.1:6379#fragment"], None),
        (
            &["redis://127.0.0.1:6379", "redis://127.0.0.1"],
            Some("twice"),
        ),
        (
            &["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/"],
            Some("twice"),
        ),
        (
            &["redis://a:1@127.0.0.1:6379", "redis://b:2@127.0.0.1:6379"],
            Some("twice"),
        ),
        (
            &["redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/02"],
            Some("twice"),
        ),
        // Same address, other database: an independent keyspace (accepted, see the docs).
        (
            &["redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/2"],
            None,
        ),
        (&["redis://127.0.0.1:6379", "redis://127.0.0.1:6380"], None),
    ];
    let mut failures = Vec::new();
    for (nodes, expected) in cases {
        let got = build(nodes);
        let ok = match (expected, &got) {
            (None, Ok(())) => true,
            (Some(want), Err(m)) => m.contains(want),
            _ => false,
        };
        if !ok {
            failures.push(format!("{nodes:?}: expected {expected:?}, got {got:?}"));
        }
        // Never a password in the message.
        if let Err(m) = &got {
            assert!(!m.contains("pa ss") && !m.contains("a:1"), "{m}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[cfg(not(any(feature = "tls-rustls", feature = "tls-native-tls")))]
#[test]
fn rediss_without_a_tls_feature_is_a_config_error() {
    let m = build(&["rediss://127.0.0.1:6379"]).unwrap_err();
    assert!(m.contains("node 0"), "{m}");
}

#[test]
fn node_counts_table() {
    let urls =
        |n: u16| -> Vec<String> { (1..=n).map(|p| format!("redis://127.0.0.1:{p}")).collect() };
    for (n, ok) in [
        (1, true),
        (2, true),
        (MAX_NODES, true),
        (MAX_NODES + 1, false),
        (1000, false),
    ] {
        let start = Instant::now();
        let got = RedLockFactory::new(urls(n as u16));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{n} nodes: build blocked"
        );
        match got {
            Ok(f) => {
                assert!(ok, "{n} nodes accepted");
                assert_eq!(f.node_count(), n);
                assert_eq!(f.quorum(), n / 2 + 1);
            }
            Err(Error::InvalidConfig(m)) => {
                assert!(!ok, "{n} nodes rejected: {m}");
                assert!(m.contains("at most"), "{m}");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn nodes_as_tuples_connection_infos_and_unix_sockets() {
    let cluster = RedisCluster::start_with_args(3, &["--unixsocket", "redis.sock"]);
    let sock = cluster.node(1).dir().join("redis.sock");
    assert!(
        deadline_loop(Duration::from_secs(5), || sock.exists()),
        "no socket at {sock:?}"
    );
    let info = redis::IntoConnectionInfo::into_connection_info(cluster.url(0)).unwrap();
    let factory = support::builder()
        .node(info)
        .node(format!("redis+unix://{}", sock.display()))
        .node(("127.0.0.1", cluster.port(2)))
        .build()
        .unwrap();
    assert_eq!(factory.node_count(), 3);
    let g = factory.create_lock("addr:k").acquire().unwrap();
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["GET", "addr:k"]), g.token(), "node {i}");
    }
    g.release().unwrap();
}

#[test]
fn two_addresses_of_one_server_count_once() {
    // 127.0.0.1 and localhost name the same server: the build cannot tell, the connections can
    // (same run_id). Counted twice, that server alone would make a quorum of 2 out of 3.
    let cluster = RedisCluster::start(2);
    let port = cluster.port(0);
    let factory = support::builder()
        .nodes(vec![
            format!("redis://127.0.0.1:{port}"),
            format!("redis://localhost:{port}"),
            cluster.url(1),
        ])
        .build()
        .unwrap();
    let g = factory.create_lock("dup").acquire().unwrap();
    g.release().unwrap();
    cluster.kill(1);
    // With the duplicate counted, this would be granted; counted once, it is not.
    let err = factory
        .create_lock("dup")
        .acquire_timeout(Duration::from_secs(5))
        .unwrap_err();
    assert!(matches!(err, Error::NoQuorum { .. }), "{err:?}");
    assert!(err.to_string().contains("same Redis server"), "{err}");
    assert_eq!(cluster.cmd(0, &["EXISTS", "dup"]), "0");
}

// ---------------------------------------------------------------------------------------------
// Durations, factors and resource names.

#[test]
fn durations_and_factors_table() {
    let base = || RedLockFactory::builder().node("redis://127.0.0.1:1");
    let ms = Duration::from_millis;
    type Case = (
        &'static str,
        fn(redmutex::RedLockFactoryBuilder) -> redmutex::RedLockFactoryBuilder,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        ("ttl 0", |b| b.ttl(Duration::ZERO), Some("ttl")),
        (
            "ttl 999 µs",
            |b| b.ttl(Duration::from_micros(999)),
            Some("ttl"),
        ),
        (
            "ttl 2 ms (all drift)",
            |b| b.ttl(Duration::from_millis(2)),
            Some("drift"),
        ),
        ("ttl 3 ms", |b| b.ttl(Duration::from_millis(3)), None),
        (
            "ttl u64::MAX s",
            |b| b.ttl(Duration::from_secs(u64::MAX)),
            Some("too long"),
        ),
        (
            "ttl Duration::MAX",
            |b| b.ttl(Duration::MAX),
            Some("too long"),
        ),
        ("retry delay 0", |b| b.retry_delay(Duration::ZERO), None),
        (
            "retry delay MAX",
            |b| b.retry_delay(Duration::MAX),
            Some("retry delay"),
        ),
        ("retry jitter 0", |b| b.retry_jitter(Duration::ZERO), None),
        (
            "retry jitter MAX",
            |b| b.retry_jitter(Duration::MAX),
            Some("retry jitter"),
        ),
        (
            "io timeout 0",
            |b| b.io_timeout(Duration::ZERO),
            Some("I/O timeout"),
        ),
        (
            "io timeout 1 ns",
            |b| b.io_timeout(Duration::from_nanos(1)),
            Some("I/O timeout"),
        ),
        (
            "io timeout MAX",
            |b| b.io_timeout(Duration::MAX),
            Some("I/O timeout"),
        ),
        (
            "connect timeout 0",
            |b| b.connect_timeout(Duration::ZERO),
            Some("connect timeout"),
        ),
        (
            "connect timeout MAX",
            |b| b.connect_timeout(Duration::MAX),
            Some("connect timeout"),
        ),
        ("pool 0", |b| b.pool_size(0), Some("pool size")),
        ("pool 1000", |b| b.pool_size(1000), None),
        // r2d2 pre-allocates `max_size` slots: an uncapped u32::MAX would abort the process.
        ("pool 1025", |b| b.pool_size(1025), Some("pool size")),
        (
            "pool u32::MAX",
            |b| b.pool_size(u32::MAX),
            Some("pool size"),
        ),
        ("max retries 0", |b| b.max_retries(0), None),
        ("max retries u32::MAX", |b| b.max_retries(u32::MAX), None),
        ("quorum 0", |b| b.quorum(0), Some("quorum")),
        ("quorum 2 of 1", |b| b.quorum(2), Some("quorum")),
        (
            "quorum usize::MAX",
            |b| b.quorum(usize::MAX),
            Some("quorum"),
        ),
        (
            "drift NaN",
            |b| b.clock_drift_factor(f64::NAN),
            Some("drift factor"),
        ),
        ("drift -0.0", |b| b.clock_drift_factor(-0.0), None),
        (
            "drift -1e-300",
            |b| b.clock_drift_factor(-1e-300),
            Some("drift factor"),
        ),
        (
            "drift 1.0",
            |b| b.clock_drift_factor(1.0),
            Some("drift factor"),
        ),
        (
            "drift 0.999999",
            |b| b.clock_drift_factor(0.999_999),
            Some("drift"),
        ),
        (
            "drift 1e300",
            |b| b.clock_drift_factor(1e300),
            Some("drift factor"),
        ),
        (
            "drift -inf",
            |b| b.clock_drift_factor(f64::NEG_INFINITY),
            Some("drift factor"),
        ),
        (
            "drift min positive",
            |b| b.clock_drift_factor(f64::MIN_POSITIVE),
            None,
        ),
        (
            "drift 0.5, ttl 4 ms",
            |b| b.clock_drift_factor(0.5).ttl(Duration::from_millis(4)),
            Some("drift"),
        ),
        (
            "drift 0.5, ttl 5 ms",
            |b| b.clock_drift_factor(0.5).ttl(Duration::from_millis(5)),
            None,
        ),
    ];
    let _ = ms;
    let mut failures = Vec::new();
    for (name, f, expected) in cases {
        let got = match f(base()).build() {
            Ok(_) => Ok(()),
            Err(Error::InvalidConfig(m)) => Err(m),
            Err(e) => panic!("{name}: {e:?}"),
        };
        let ok = match (expected, &got) {
            (None, Ok(())) => true,
            (Some(want), Err(m)) => m.contains(want),
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_durations_and_names_on_every_entry_point() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster).build().unwrap();
    let lock = factory.create_lock("k");
    let g = lock.acquire().unwrap();
    for d in [Duration::ZERO, Duration::from_micros(10), Duration::MAX] {
        assert!(matches!(g.extend(d), Err(Error::InvalidConfig(_))), "{d:?}");
        assert!(matches!(
            factory.create_lock("x").with_ttl(d).try_acquire(),
            Err(Error::InvalidConfig(_))
        ));
    }
    // An enormous timeout is a timeout that never runs out, not an overflow panic.
    let other = factory.create_lock("other");
    other
        .acquire_timeout(Duration::MAX)
        .unwrap()
        .release()
        .unwrap();
    g.release().unwrap();
    for name in ["", &"n".repeat(redmutex::MAX_RESOURCE_LEN + 1)] {
        let l = factory.create_lock(name);
        assert!(matches!(l.try_acquire(), Err(Error::InvalidArgument(_))));
        assert!(matches!(l.acquire(), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            l.acquire_timeout(Duration::from_secs(1)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(l.is_locked(), Err(Error::InvalidArgument(_))));
    }
    assert_eq!(cluster.cmd(0, &["DBSIZE"]), "0");
}

#[test]
fn lock_level_bad_values_table() {
    let cluster = RedisCluster::start(1);
    let factory = support::factory(&cluster).max_retries(1).build().unwrap();
    let g = factory.create_lock("held").acquire().unwrap();
    // extend with bad durations: InvalidConfig, and the guard stays valid and releasable.
    for d in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(2),
        Duration::MAX,
    ] {
        let e = g.extend(d).unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{d:?}: {e:?}");
        assert!(g.is_valid());
    }
    // with_ttl bad values on every entry point that uses the TTL.
    for d in [Duration::ZERO, Duration::from_micros(1500), Duration::MAX] {
        let lock = factory.create_lock("ttl").with_ttl(d);
        for r in [
            lock.try_acquire().map(|_| ()),
            lock.acquire().map(|_| ()),
            lock.acquire_timeout(Duration::from_secs(1)).map(|_| ()),
        ] {
            assert!(matches!(r, Err(Error::InvalidConfig(_))), "{d:?}: {r:?}");
        }
    }
    // A zero wait is one round: a clear Timeout while held, never a hang.
    let start = Instant::now();
    let e = factory
        .create_lock("held")
        .acquire_timeout(Duration::ZERO)
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    g.release().unwrap();
    assert_nothing_held(&cluster, &["held", "ttl"]);
}

#[test]
fn unusual_resource_names_are_exact_binary_safe_keys_and_leave_nothing() {
    let cluster = RedisCluster::start(3);
    let factory = support::factory(&cluster).max_retries(1).build().unwrap();
    let at_limit = "m".repeat(MAX_RESOURCE_LEN);
    let names: Vec<&str> = vec![
        " ",
        "\0",
        "\r\n",
        "*1\r\n$4\r\nPING\r\n",
        "$-1\r\n",
        "-ERR not an error\r\n",
        "key with spaces",
        "ключ",
        "🔒",
        "\u{feff}bom",
        "{hash-tag}",
        "*",
        "a\0b",
        &at_limit,
    ];
    for &name in &names {
        let lock = factory.create_lock(name);
        let g = lock
            .try_acquire()
            .unwrap()
            .unwrap_or_else(|| panic!("{name:?} held"));
        assert!(lock.is_locked().unwrap());
        // A second client is excluded, by exact name only.
        assert!(lock.try_acquire().unwrap().is_none(), "{name:?}");
        g.release().unwrap();
        assert!(!lock.is_locked().unwrap());
    }
    assert_nothing_held(&cluster, &names);
    // One past the limit, on every entry point: an argument error before any I/O.
    let over = factory.create_lock("m".repeat(MAX_RESOURCE_LEN + 1));
    let start = Instant::now();
    for r in [
        over.try_acquire().map(|_| ()),
        over.acquire().map(|_| ()),
        over.acquire_timeout(Duration::ZERO).map(|_| ()),
        over.is_locked().map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains("at most"), "{e}");
    }
    assert!(start.elapsed() < Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// Credentials and databases.

#[test]
fn wrong_password_is_a_node_error_and_never_shown() {
    let cluster = RedisCluster::start(1);
    let port = cluster.port(0);
    assert_eq!(
        cluster.cmd(0, &["CONFIG", "SET", "requirepass", "s3cret-pw"]),
        "OK"
    );
    let bad = support::builder()
        .node(format!("redis://:wrong-pw@127.0.0.1:{port}"))
        .build()
        .unwrap();
    let err = bad.create_lock("k").try_acquire().unwrap_err();
    let shown = format!("{err} {err:?} {bad:?}");
    assert!(
        matches!(err, Error::NoQuorum { answered: 0, .. }),
        "{shown}"
    );
    assert!(!shown.contains("wrong-pw"), "{shown}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(
        shown.to_lowercase().contains("pass") || shown.contains("auth") || shown.contains("AUTH"),
        "{shown}"
    );

    let good = support::builder()
        .node(format!("redis://:s3cret-pw@127.0.0.1:{port}"))
        .build()
        .unwrap();
    let g = good.create_lock("k").try_acquire().unwrap().unwrap();
    assert!(!format!("{g:?} {good:?}").contains("s3cret-pw"));
    g.release().unwrap();
}

#[test]
fn databases_are_honoured_and_a_missing_one_is_an_error() {
    let cluster = RedisCluster::start(1);
    let port = cluster.port(0);
    let db3 = support::builder()
        .node(format!("redis://127.0.0.1:{port}/3"))
        .build()
        .unwrap();
    let g = db3.create_lock("dbkey").acquire().unwrap();
    assert_eq!(cluster.cmd(0, &["DBSIZE"]), "0", "the key went to db 0");
    assert!(cluster.cmd(0, &["INFO", "keyspace"]).contains("db3:keys=1"));
    g.release().unwrap();

    let db99 = support::builder()
        .node(format!("redis://127.0.0.1:{port}/99"))
        .build()
        .unwrap();
    let err = db99.create_lock("dbkey").try_acquire().unwrap_err();
    assert!(matches!(err, Error::NoQuorum { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[test]
fn credentials_and_databases_table() {
    let cluster = RedisCluster::start(1);
    let port = cluster.port(0);
    assert_eq!(
        cluster.cmd(
            0,
            &[
                "ACL",
                "SETUSER",
                "locker",
                "on",
                ">right-pw",
                "~*",
                "&*",
                "+@all"
            ]
        ),
        "OK"
    );
    // (url, whether a lock is expected to work)
    let cases: Vec<(String, bool)> = vec![
        (format!("redis://locker:right-pw@127.0.0.1:{port}"), true),
        (format!("redis://locker:wrong-pw@127.0.0.1:{port}"), false),
        (format!("redis://nobody:right-pw@127.0.0.1:{port}"), false),
        // A user name without a password sends no AUTH at all (redis-rs): the connection is the
        // default user's. Pinned here because it surprises (see docs/reliability.md).
        (format!("redis://locker@127.0.0.1:{port}"), true),
        // The default user has no password: AUTH with one is refused.
        (format!("redis://:stray-pw@127.0.0.1:{port}"), false),
        (format!("redis://127.0.0.1:{port}/15"), true),
        (format!("redis://127.0.0.1:{port}/16"), false),
        (format!("redis://127.0.0.1:{port}/4294967295"), false),
    ];
    for (url, works) in cases {
        let factory = support::builder()
            .node(url.clone())
            .max_retries(1)
            .build()
            .unwrap();
        let start = Instant::now();
        let got = factory.create_lock("cred").try_acquire();
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "{url}: {took:?}");
        match got {
            Ok(Some(g)) => {
                assert!(works, "{url}: acquired");
                g.release().unwrap();
            }
            Err(e) => {
                assert!(!works, "{url}: {e}");
                let shown = format!("{e} {e:?} {factory:?}");
                assert!(matches!(e, Error::NoQuorum { answered: 0, .. }), "{shown}");
                assert!(!shown.contains("-pw"), "password shown: {shown}");
                assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
            }
            Ok(None) => panic!("{url}: held by nobody, yet refused"),
        }
    }
    assert_nothing_held(&cluster, &["cred"]);
}

// ---------------------------------------------------------------------------------------------
// Servers that are not Redis.

/// How a fake server that is not Redis treats each connection.
#[derive(Clone, Copy)]
pub(crate) enum Fake {
    /// Answers every read with these bytes.
    Replies(&'static [u8]),
    /// Accepts the connection and never answers (a black hole).
    Silent,
    /// Closes the connection at once.
    Closes,
}

/// A TCP server on a free loopback port that is not Redis; returns its port.
pub(crate) fn not_redis(fake: Fake) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            match fake {
                Fake::Closes => drop(stream),
                Fake::Silent => held.push(stream),
                Fake::Replies(reply) => {
                    thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = stream.read(&mut buf) {
                            if n == 0 || stream.write_all(reply).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        }
    });
    port
}

#[test]
fn servers_that_are_not_redis_are_failed_nodes_within_a_bound() {
    let cluster = RedisCluster::start(2);
    let garbage = not_redis(Fake::Replies(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
    let wrong_type = not_redis(Fake::Replies(b":42\r\n"));
    let blackhole = not_redis(Fake::Silent);
    for port in [garbage, wrong_type, blackhole] {
        // A minority of bogus nodes: the lock works.
        let mut urls = cluster.urls();
        urls.push(format!("redis://127.0.0.1:{port}"));
        let factory = support::short_builder().nodes(urls).build().unwrap();
        let start = Instant::now();
        let g = factory.create_lock("k").acquire().unwrap();
        g.release().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );

        // Only bogus nodes: a clear error, fast.
        let factory = support::short_builder()
            .node(format!("redis://127.0.0.1:{port}"))
            .build()
            .unwrap();
        let start = Instant::now();
        let err = factory.create_lock("k").acquire().unwrap_err();
        assert!(matches!(err, Error::NoQuorum { .. }), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(
            factory.create_lock("k").is_locked(),
            Err(Error::NoQuorum { .. })
        ));
    }
    for i in 0..2 {
        assert_eq!(cluster.cmd(i, &["DBSIZE"]), "0");
    }
}

#[test]
fn servers_that_are_not_redis_table() {
    let cluster = RedisCluster::start(2);
    let cases: &[(&str, Fake)] = &[
        ("closes at once", Fake::Closes),
        ("says -ERR to everything", Fake::Replies(b"-ERR no\r\n")),
        ("says +OK to everything", Fake::Replies(b"+OK\r\n")),
        ("announces a 1 GB bulk", Fake::Replies(b"$1000000000\r\n")),
        ("announces a huge array", Fake::Replies(b"*2147483647\r\n")),
        ("sends a negative length", Fake::Replies(b"$-5\r\n")),
        (
            "sends binary noise",
            Fake::Replies(&[0xff, 0x00, 0x13, 0x37, b'\r', b'\n']),
        ),
        ("speaks SSH", Fake::Replies(b"SSH-2.0-OpenSSH_9.2\r\n")),
    ];
    for (what, fake) in cases {
        let port = not_redis(*fake);
        // Alone: a clear error, fast, on every entry point.
        let alone = support::short_builder()
            .node(format!("redis://127.0.0.1:{port}"))
            .max_retries(1)
            .build()
            .unwrap();
        let lock = alone.create_lock("k");
        let start = Instant::now();
        let e = lock.acquire().map(|_| ()).unwrap_err();
        assert!(
            matches!(e, Error::NoQuorum { .. } | Error::TooLate { .. }),
            "{what}: {e:?}"
        );
        assert!(lock.is_locked().is_err(), "{what}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            start.elapsed()
        );
        // A minority of it next to two real nodes: the lock works and nothing is left (the
        // preset's generous timeouts: nothing is timed here, and the real nodes must answer).
        let mut urls = cluster.urls();
        urls.push(format!("redis://127.0.0.1:{port}"));
        let mixed = support::builder()
            .nodes(urls)
            .max_retries(1)
            .build()
            .unwrap();
        let g = mixed
            .create_lock("k")
            .acquire()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        g.release().unwrap();
        assert_nothing_held(&cluster, &["k"]);
    }
}

#[test]
fn yes_sayers_never_become_voters() {
    // Redlock assumes honest Redis nodes. A server that answers +OK to everything would vote
    // yes for everybody; it never gets that far, because the connection handshake (loading
    // the scripts) expects a SHA1 back. Two such servers of three: no quorum, for anybody.
    let real = RedisCluster::start(1);
    let liars = [
        not_redis(Fake::Replies(b"+OK\r\n")),
        not_redis(Fake::Replies(b"+OK\r\n")),
    ];
    let mut urls: Vec<String> = liars
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect();
    urls.push(real.url(0));
    let f = support::builder()
        .nodes(urls)
        .max_retries(1)
        .build()
        .unwrap();
    for _ in 0..3 {
        let e = f.create_lock("k").try_acquire().map(|_| ()).unwrap_err();
        assert!(matches!(e, Error::NoQuorum { .. }), "{e:?}");
    }
    assert_nothing_held(&real, &["k"]);
}

/// No lock key is left on any node, and every other key (wake-up markers, say) expires.
fn assert_nothing_held(cluster: &RedisCluster, names: &[&str]) {
    for i in 0..cluster.len() {
        let keys = cluster.cmd(i, &["KEYS", "*"]);
        for k in keys.lines().filter(|k| !k.is_empty()) {
            assert!(!names.contains(&k), "lock key {k:?} left on node {i}");
            let pttl: i64 = cluster.cmd(i, &["PTTL", k]).parse().unwrap();
            assert!(
                pttl > 0 || pttl == -2,
                "key {k:?} on node {i} never expires"
            );
        }
    }
}

/// A node URL that does not parse: the error says what is wrong with it and what a node URL
/// looks like, in one line, without the password. (It said "Redis URL did not parse -
/// InvalidClientConfig".)
#[test]
fn a_bad_node_url_says_what_is_wrong_and_what_is_right() {
    let cases = [
        (
            "redis://127.0.0.1:notaport",
            "the port \"notaport\" is not a number",
        ),
        (
            "redis://app:s3cret-pw@127.0.0.1:x",
            "the port \"x\" is not a number",
        ),
        ("http://127.0.0.1:6379", "the scheme \"http\" is not"),
        ("127.0.0.1:6379", "it has no scheme"),
        ("redis://:6379", "it names no host"),
        ("redis://127.0.0.1/abc", "invalid database number"),
    ];
    for (url, reason) in cases {
        let e = RedLockFactory::builder().node(url).build().unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{url}: {e:?}");
        let text = e.to_string();
        assert!(text.contains(reason), "{url}: {text}");
        assert!(
            text.contains("e.g. redis://127.0.0.1:6379"),
            "{url}: {text}"
        );
        assert!(
            !text.contains("s3cret") && !text.contains('\n'),
            "{url}: {text}"
        );
    }
}

/// A server that is not Redis fails its node with a one-line error that says so (an HTTP
/// server's reply gave a four-line "Parse error ... Unexpected `84` ..." message).
#[test]
fn a_server_that_is_not_redis_fails_with_one_line_that_says_so() {
    let port = not_redis(Fake::Replies(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
    let factory = support::short_builder()
        .node(format!("redis://127.0.0.1:{port}"))
        .max_retries(1)
        .build()
        .unwrap();
    let lock = factory.create_lock("k");
    for e in [
        lock.try_acquire().map(|_| ()).unwrap_err(),
        lock.is_locked().map(|_| ()).unwrap_err(),
    ] {
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text:?}");
        assert!(text.contains("not Redis protocol"), "{text}");
    }
}

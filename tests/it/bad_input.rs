//! Bad input gets a clear error, never a panic or a hang: bad URLs, wrong credentials, wrong
//! databases, servers that are not Redis, and the other ways to name a node.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{RedisCluster, deadline_loop};
use redmutex::{Error, RedLockFactory};

fn quick(urls: Vec<String>) -> RedLockFactory {
    RedLockFactory::builder()
        .nodes(urls)
        .io_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(300))
        .retry_delay(Duration::from_millis(5))
        .build()
        .unwrap()
}

fn config_error(nodes: &[&str]) -> String {
    match RedLockFactory::new(nodes.iter().copied()) {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("{nodes:?}: expected InvalidConfig, got {other:?}"),
    }
}

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
fn wrong_password_is_a_node_error_and_never_shown() {
    let cluster = RedisCluster::start(1);
    let port = cluster.port(0);
    assert_eq!(
        cluster.cmd(0, &["CONFIG", "SET", "requirepass", "s3cret-pw"]),
        "OK"
    );
    let bad = quick(vec![format!("redis://:wrong-pw@127.0.0.1:{port}")]);
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

    let good = quick(vec![format!("redis://:s3cret-pw@127.0.0.1:{port}")]);
    let g = good.create_lock("k").try_acquire().unwrap().unwrap();
    assert!(!format!("{g:?} {good:?}").contains("s3cret-pw"));
    g.release().unwrap();
}

#[test]
fn databases_are_honoured_and_a_missing_one_is_an_error() {
    let cluster = RedisCluster::start(1);
    let port = cluster.port(0);
    let db3 = quick(vec![format!("redis://127.0.0.1:{port}/3")]);
    let g = db3.create_lock("dbkey").acquire().unwrap();
    assert_eq!(cluster.cmd(0, &["DBSIZE"]), "0", "the key went to db 0");
    assert!(cluster.cmd(0, &["INFO", "keyspace"]).contains("db3:keys=1"));
    g.release().unwrap();

    let db99 = quick(vec![format!("redis://127.0.0.1:{port}/99")]);
    let err = db99.create_lock("dbkey").try_acquire().unwrap_err();
    assert!(matches!(err, Error::NoQuorum { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

/// A TCP server that is not Redis: answers every connection with `reply`, or never answers.
fn fake_server(reply: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            if let Some(reply) = reply {
                thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(reply).is_err() {
                            return;
                        }
                    }
                });
            } else {
                held.push(stream); // black hole: accept, read nothing, answer nothing
            }
        }
    });
    port
}

#[test]
fn servers_that_are_not_redis_are_failed_nodes_within_a_bound() {
    let cluster = RedisCluster::start(2);
    let garbage = fake_server(Some(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
    let wrong_type = fake_server(Some(b":42\r\n"));
    let blackhole = fake_server(None);
    for port in [garbage, wrong_type, blackhole] {
        // A minority of bogus nodes: the lock works.
        let mut urls = cluster.urls();
        urls.push(format!("redis://127.0.0.1:{port}"));
        let factory = quick(urls);
        let start = Instant::now();
        let g = factory.create_lock("k").acquire().unwrap();
        g.release().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );

        // Only bogus nodes: a clear error, fast.
        let factory = quick(vec![format!("redis://127.0.0.1:{port}")]);
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
fn nodes_as_tuples_connection_infos_and_unix_sockets() {
    let cluster = RedisCluster::start_with_args(3, &["--unixsocket", "redis.sock"]);
    let sock = cluster.node(1).dir().join("redis.sock");
    assert!(
        deadline_loop(Duration::from_secs(5), || sock.exists()),
        "no socket at {sock:?}"
    );
    let info = redis::IntoConnectionInfo::into_connection_info(cluster.url(0)).unwrap();
    let factory = RedLockFactory::builder()
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
fn bad_durations_and_names_on_every_entry_point() {
    let cluster = RedisCluster::start(1);
    let factory = quick(cluster.urls());
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
fn two_addresses_of_one_server_count_once() {
    // 127.0.0.1 and localhost name the same server: the build cannot tell, the connections can
    // (same run_id). Counted twice, that server alone would make a quorum of 2 out of 3.
    let cluster = RedisCluster::start(2);
    let port = cluster.port(0);
    let factory = quick(vec![
        format!("redis://127.0.0.1:{port}"),
        format!("redis://localhost:{port}"),
        cluster.url(1),
    ]);
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

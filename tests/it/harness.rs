//! Tests of the real-Redis test harness (`crate::support`) itself.

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use crate::support::client::{self, port_cmd};
use crate::support::proxy::Proxy;
use crate::support::{
    self, AOF_ARGS, RedisCluster, deadline_loop, pid_exists, ping_port, port_refuses,
};

const SHORT: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(5);

#[test]
fn start_gives_distinct_nodes_answering_ping() {
    let cluster = RedisCluster::start(3);
    assert_eq!(cluster.len(), 3);
    let ports: HashSet<u16> = (0..3).map(|i| cluster.port(i)).collect();
    assert_eq!(ports.len(), 3, "ports must be distinct: {ports:?}");
    for i in 0..3 {
        assert!(cluster.is_running(i));
        assert!(
            ping_port(cluster.port(i), SHORT),
            "node {i} does not answer PING"
        );
        assert_eq!(cluster.cmd(i, &["PING"]), "PONG");
        assert_eq!(
            cluster.url(i),
            format!("redis://127.0.0.1:{}", cluster.port(i))
        );
        // Defaults: no persistence.
        assert_eq!(
            cluster.cmd(i, &["CONFIG", "GET", "appendonly"]),
            "appendonly\nno"
        );
        assert_eq!(cluster.cmd(i, &["CONFIG", "GET", "save"]), "save\n");
    }
    assert_eq!(
        cluster.urls(),
        (0..3).map(|i| cluster.url(i)).collect::<Vec<_>>()
    );
}

#[test]
fn cmd_parses_replies() {
    let cluster = RedisCluster::start(1);
    assert_eq!(cluster.cmd(0, &["SET", "k", "v"]), "OK");
    assert_eq!(cluster.cmd(0, &["GET", "k"]), "v");
    assert_eq!(cluster.cmd(0, &["GET", "missing"]), "(nil)");
    assert_eq!(cluster.cmd(0, &["EXISTS", "k", "missing"]), "1");
    assert_eq!(cluster.cmd(0, &["PTTL", "k"]), "-1");
    assert_eq!(cluster.cmd(0, &["PTTL", "missing"]), "-2");
    assert_eq!(cluster.cmd(0, &["SET", "t", "x", "PX", "60000"]), "OK");
    let pttl: i64 = cluster.cmd(0, &["PTTL", "t"]).parse().unwrap();
    assert!((59_000..=60_000).contains(&pttl), "pttl {pttl}");
    // Binary-safe bulk strings, including CRLF and non-ASCII.
    let odd = "a\r\nb é $3 *1";
    assert_eq!(cluster.cmd(0, &["SET", "odd", odd]), "OK");
    assert_eq!(cluster.cmd(0, &["GET", "odd"]), odd);
    assert_eq!(cluster.cmd(0, &["SET", "empty", ""]), "OK");
    assert_eq!(cluster.cmd(0, &["GET", "empty"]), "");
    // Errors come back as their message.
    assert!(cluster.cmd(0, &["NOSUCHCOMMAND"]).starts_with("ERR "));
    assert!(cluster.cmd(0, &["INCR", "k"]).starts_with("ERR "));
    // Arrays are joined with newlines.
    assert_eq!(cluster.cmd(0, &["MGET", "k", "missing"]), "v\n(nil)");
    assert_eq!(cluster.cmd(0, &["DEL", "k", "t"]), "2");
    assert!(cluster.cmd(0, &["CLIENT", "LIST"]).contains("cmd=client"));
}

#[test]
fn kill_refuses_connections_and_restart_comes_back_empty_on_same_port() {
    let cluster = RedisCluster::start(2);
    let port = cluster.port(1);
    let pid = cluster.pid(1).unwrap();
    assert_eq!(cluster.cmd(1, &["SET", "k", "v"]), "OK");

    cluster.kill(1);
    assert!(!cluster.is_running(1));
    assert!(cluster.pid(1).is_none());
    assert!(!pid_exists(pid), "killed process {pid} was not reaped");
    assert!(port_refuses(port), "port {port} still accepts connections");
    assert!(cluster.try_cmd(1, &["PING"]).is_err());
    assert_eq!(
        cluster.cmd(0, &["PING"]),
        "PONG",
        "other nodes are unaffected"
    );

    cluster.restart(1);
    assert!(cluster.is_running(1));
    assert_eq!(cluster.port(1), port);
    assert_ne!(cluster.pid(1), Some(pid));
    assert_eq!(cluster.cmd(1, &["GET", "k"]), "(nil)");
    assert_eq!(cluster.cmd(1, &["DBSIZE"]), "0");

    // Restarting a running node works too (kill first, same port, empty).
    assert_eq!(cluster.cmd(1, &["SET", "k", "v"]), "OK");
    cluster.restart(1);
    assert_eq!(cluster.port(1), port);
    assert_eq!(cluster.cmd(1, &["GET", "k"]), "(nil)");
}

#[test]
fn stop_freezes_and_cont_resumes() {
    let cluster = RedisCluster::start(1);
    assert_eq!(cluster.cmd(0, &["SET", "k", "v"]), "OK");

    cluster.stop(0);
    assert!(cluster.is_stopped(0));
    assert!(cluster.is_running(0), "a stopped node is still alive");
    assert!(
        !ping_port(cluster.port(0), SHORT),
        "stopped node answered PING"
    );

    cluster.cont(0);
    assert!(!cluster.is_stopped(0));
    assert!(deadline_loop(WAIT, || ping_port(cluster.port(0), SHORT)));
    assert_eq!(cluster.cmd(0, &["GET", "k"]), "v", "data survives a freeze");
}

#[test]
fn drop_leaves_no_process_even_stopped_ones() {
    let cluster = RedisCluster::start(3);
    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i).unwrap()).collect();
    let dirs: Vec<_> = cluster.nodes().iter().map(|n| n.dir().to_owned()).collect();
    cluster.stop(1);
    drop(cluster);
    for pid in pids {
        assert!(
            deadline_loop(WAIT, || !pid_exists(pid)),
            "redis-server {pid} survived drop"
        );
    }
    for dir in dirs {
        assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    }
}

#[test]
fn drop_on_panic_leaves_no_process() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let cluster = RedisCluster::start(2);
        tx.send((0..2).map(|i| cluster.pid(i).unwrap()).collect::<Vec<_>>())
            .unwrap();
        panic!("test failure while the cluster is alive");
    })
    .join();
    assert!(result.is_err());
    for pid in rx.recv().unwrap() {
        assert!(
            deadline_loop(WAIT, || !pid_exists(pid)),
            "redis-server {pid} survived a panic"
        );
    }
}

#[test]
fn aof_nodes_keep_data_across_a_crash() {
    let cluster = RedisCluster::start_with_args(1, AOF_ARGS);
    assert_eq!(
        cluster.cmd(0, &["CONFIG", "GET", "appendonly"]),
        "appendonly\nyes"
    );
    assert_eq!(cluster.cmd(0, &["SET", "k", "v"]), "OK");
    cluster.kill(0);
    cluster.restart(0);
    assert_eq!(cluster.cmd(0, &["GET", "k"]), "v");

    // restart_with_aof turns persistence on for a default node.
    let plain = RedisCluster::start(1);
    plain.restart_with_aof(0);
    assert_eq!(
        plain.cmd(0, &["CONFIG", "GET", "appendonly"]),
        "appendonly\nyes"
    );
    assert_eq!(plain.cmd(0, &["SET", "k", "w"]), "OK");
    plain.restart(0);
    assert_eq!(plain.cmd(0, &["GET", "k"]), "w");
}

#[test]
fn free_port_and_dead_url_are_unused() {
    let ports: HashSet<u16> = (0..20).map(|_| crate::support::free_port()).collect();
    assert_eq!(ports.len(), 20, "free_port handed out a port twice");
    let url = crate::support::dead_url();
    let port: u16 = url
        .strip_prefix("redis://127.0.0.1:")
        .unwrap()
        .parse()
        .unwrap();
    assert!(port_refuses(port));
}

#[test]
fn concurrent_clusters_do_not_collide() {
    let clusters: Vec<RedisCluster> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| RedisCluster::start(2))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports = HashSet::new();
    for c in &clusters {
        for i in 0..c.len() {
            assert!(ports.insert(c.port(i)));
            // Each node is its own process: a key set here is only here.
            assert_eq!(c.cmd(i, &["SET", "owner", &c.url(i)]), "OK");
        }
    }
    for c in &clusters {
        for i in 0..c.len() {
            assert_eq!(c.cmd(i, &["GET", "owner"]), c.url(i));
        }
    }
}

#[test]
#[should_panic(expected = "redis-server not found: install it with")]
fn missing_binary_panics_with_a_hint() {
    let _ = RedisCluster::start_with_binary("/nonexistent/redis-server-for-redmutex-tests", 1, &[]);
}

#[test]
fn deadline_loop_reports_success_and_timeout() {
    let mut n = 0;
    assert!(deadline_loop(WAIT, || {
        n += 1;
        n >= 3
    }));
    assert_eq!(n, 3);
    let start = std::time::Instant::now();
    assert!(!deadline_loop(Duration::from_millis(30), || false));
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn proxy_relays_delays_blackholes_cuts_and_heals() {
    let cluster = RedisCluster::start(1);
    let proxy = Proxy::start(cluster.port(0));
    let through = |args: &[&str]| port_cmd(proxy.port(), args, SHORT);
    assert_eq!(through(&["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(
        cluster.cmd(0, &["GET", "k"]),
        "v",
        "the SET reached the node"
    );
    assert_eq!(through(&["GET", "k"]).unwrap(), "v");

    // Latency on the replies only.
    proxy.set_latency_down(Duration::from_millis(300));
    let start = std::time::Instant::now();
    assert_eq!(port_cmd(proxy.port(), &["PING"], WAIT).unwrap(), "PONG");
    assert!(start.elapsed() >= Duration::from_millis(300));
    proxy.set_latency_down(Duration::ZERO);

    // Black hole: the connection stays open, nothing comes back, the bytes are counted.
    proxy.blackhole();
    assert!(through(&["PING"]).is_err_and(|e| e.is_timeout()));
    assert!(proxy.counters().bytes_dropped > 0);
    proxy.heal();
    assert_eq!(through(&["PING"]).unwrap(), "PONG");

    // Cut: an open connection is reset, new ones are refused, until healed.
    let mut open = client::connect(proxy.port(), SHORT).unwrap();
    assert_eq!(client::send(&mut open, &["PING"]).unwrap(), "PONG");
    proxy.cut();
    // At least this one (connections of the earlier steps that the proxy has not yet seen
    // closed, on a loaded machine, are reset with it).
    assert!(deadline_loop(WAIT, || proxy.counters().reset >= 1));
    assert!(client::send(&mut open, &["PING"]).is_err());
    assert!(through(&["PING"]).is_err());
    assert!(proxy.counters().refused >= 1);
    proxy.heal();
    assert_eq!(through(&["PING"]).unwrap(), "PONG");
    // A node that is down looks down through the proxy too.
    cluster.kill(0);
    assert!(through(&["PING"]).is_err());
}

/// A holder whose round missed one node (under load a node's reply can come too late) holds
/// the key on the other two only, and a waiter can mark only those: `wait_waiting` must see
/// that waiter. (It asked for the mark on every live node, and so timed out after 20 s with
/// "nobody waited for ...": the failure of `multi::the_release_of_any_member_wakes_...` under
/// load.)
#[test]
fn wait_waiting_sees_a_waiter_of_a_lock_held_on_a_quorum_only() {
    let cluster = RedisCluster::start(3);
    let holder = support::factory(&cluster)
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let held = holder.create_lock("h:quorum").acquire().unwrap();
    cluster.cmd(2, &["DEL", "h:quorum"]);
    let waiter = support::factory(&cluster)
        .retry_delay(Duration::from_secs(5))
        .retry_jitter(Duration::ZERO)
        .build()
        .unwrap();
    thread::scope(|s| {
        let waiting = s.spawn(|| {
            waiter
                .create_lock("h:quorum")
                .acquire_timeout(Duration::from_secs(30))
        });
        let seen = cluster.try_wait_waiting("h:quorum");
        held.release().unwrap();
        let got = waiting.join().unwrap();
        seen.unwrap();
        got.unwrap().release().unwrap();
    });
}

//! Regression tests for issue 10: a guard's belief about its lease must be the truth, or less.
//!
//! The invariant every user of a lock relies on: **a guard's deadline is a lower bound on the
//! lease a quorum of nodes really holds for its token, at every instant.** Observable forms:
//!
//! - never is `guard.is_valid()` true while another client's acquisition of the same resource
//!   succeeds;
//! - `guard.validity()` is never more than the quorum's `PTTL` of the key on the nodes holding
//!   the guard's token (the second largest of three), read directly from the nodes.
//!
//! Each test is written against the public API, as that invariant (or another promise the docs
//! make), never as a check of today's mechanism: the fix changes the mechanism. Every wait is
//! bounded; calls that can block forever on a broken build run on a spawned thread and are
//! waited for with `recv_timeout`.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::proxy::{Proxy, bulk, contains};
use common::{RedisCluster, deadline_loop, raw_cmd};

// ---------------------------------------------------------------------------------------------
// Proxy rules (the harness feature the fencing and keep-alive tests need)

/// Self-test of the proxy's per-request rules: a delayed request is applied late, a dropped
/// one never, a delayed reply comes late although its request was applied at once, and
/// requests that match no rule pass untouched.
#[test]
fn proxy_rules_pick_out_single_requests() {
    let cluster = RedisCluster::start(1);
    let proxy = Proxy::start(cluster.port(0));
    let quick = Duration::from_millis(150);
    let timed = |args: &[&str], timeout: Duration| {
        let t0 = Instant::now();
        let reply = raw_cmd(proxy.port(), args, timeout);
        (reply, t0.elapsed())
    };

    // Delay: only the request with the argument "slow" waits.
    proxy.delay_requests_if(
        |req| contains(req, &bulk("slow")),
        Duration::from_millis(400),
    );
    let (reply, took) = timed(&["ECHO", "slow"], Duration::from_secs(2));
    assert_eq!(reply.unwrap(), "slow");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    let (reply, took) = timed(&["ECHO", "slowly"], Duration::from_secs(2));
    assert_eq!(reply.unwrap(), "slowly");
    assert!(took < quick, "a request matching no rule waited {took:?}");
    assert_eq!(proxy.counters().matched, 1);
    proxy.clear_rules();

    // Drop: the node never sees the SET; other commands still pass.
    proxy.drop_requests_if(|req| contains(req, &bulk("SET")));
    let (reply, _) = timed(&["SET", "dropped", "1"], Duration::from_millis(300));
    assert!(reply.is_err(), "{reply:?}");
    assert_eq!(cluster.cmd(0, &["EXISTS", "dropped"]), "0");
    let (reply, _) = timed(&["GET", "dropped"], Duration::from_secs(2));
    assert_eq!(reply.unwrap(), "(nil)");
    proxy.clear_rules();

    // Delayed reply: the INCR is applied at once, its reply comes 500 ms later.
    proxy.delay_replies_to_if(
        |req| contains(req, &bulk("INCR")),
        Duration::from_millis(500),
    );
    let port = proxy.port();
    let incr = thread::spawn(move || {
        let t0 = Instant::now();
        let reply = raw_cmd(port, &["INCR", "counted"], Duration::from_secs(2));
        (reply, t0.elapsed())
    });
    assert!(
        deadline_loop(Duration::from_millis(300), || cluster
            .cmd(0, &["GET", "counted"])
            == "1"),
        "the INCR was not applied before its reply"
    );
    let (reply, took) = incr.join().unwrap();
    assert_eq!(reply.unwrap(), "1");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    let (reply, took) = timed(&["GET", "counted"], Duration::from_secs(2));
    assert_eq!(reply.unwrap(), "1");
    assert!(
        took < quick,
        "a reply to a request matching no rule waited {took:?}"
    );
}

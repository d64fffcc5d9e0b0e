//! Security: ACL users restricted to what the lock needs, passwords never in Debug, Display or
//! logs (a test logger captures every record while these tests run), and tokens that cannot be guessed or replayed
//! through the public API.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::logs::capture as capture_logs;
use crate::support::{self, RedisCluster, dead_url, logs};
use redmutex::Error;

/// The commands a lock client needs (the scripts' GET, DEL and PEXPIRE run as that user too;
/// the semaphore's and the multi-lock's scripts also call MGET).
const LOCK_COMMANDS: &[&str] = &[
    "+set",
    "+get",
    "+mget",
    "+del",
    "+pexpire",
    "+pttl",
    "+exists",
    "+evalsha",
    "+eval",
    "+script|load",
    "+ping",
    "+select",
    "+publish",
    "+subscribe",
    "+unsubscribe",
];

fn acl_user(cluster: &RedisCluster, i: usize, user: &str, password: &str, extra: &[&str]) {
    let pass = format!(">{password}");
    let mut args = vec!["ACL", "SETUSER", user, "reset", "on", &pass, "-@all"];
    args.extend_from_slice(extra);
    assert_eq!(cluster.cmd(i, &args), "OK", "{args:?}");
}

#[test]
fn acl_user_limited_to_lock_keys_and_commands_works() {
    let _logs = capture_logs();
    let cluster = RedisCluster::start(3);
    // Every key and channel a lock touches is the resource name plus a suffix: the
    // application's prefix covers them all.
    let mut perms = vec!["~locks:*", "&locks:*"];
    perms.extend_from_slice(LOCK_COMMANDS);
    for i in 0..3 {
        acl_user(&cluster, i, "locker", "acl-s3cret", &perms);
    }
    let urls: Vec<String> = (0..3)
        .map(|i| format!("redis://locker:acl-s3cret@127.0.0.1:{}", cluster.port(i)))
        .collect();
    let f = support::builder()
        .nodes(urls)
        .max_retries(1)
        .build()
        .unwrap();
    let lock = f.create_lock("locks:job");
    let g = lock.acquire().unwrap();
    assert!(lock.is_locked().unwrap());
    g.extend(Duration::from_secs(5)).unwrap();
    g.release().unwrap();
    // A semaphore's and a multi-lock's keys are under the same prefix.
    let sem = f.create_semaphore("locks:pool", 2);
    let p = sem.acquire().unwrap();
    p.extend(Duration::from_secs(5)).unwrap();
    let q = sem.try_acquire().unwrap().expect("the second permit");
    assert!(sem.try_acquire().unwrap().is_none());
    p.release().unwrap();
    sem.release_token(&q.leak()).unwrap();
    let multi = f.create_multi_lock(["locks:a", "locks:b"]);
    let m = multi.acquire().unwrap();
    m.extend(Duration::from_secs(5)).unwrap();
    m.release().unwrap();

    // A key outside the user's pattern: refused by every node, a clear error.
    let e = f.create_lock("other:job").try_acquire().unwrap_err();
    assert!(matches!(e, Error::NoQuorum { answered: 0, .. }), "{e:?}");
    assert!(
        e.to_string().contains("NOPERM") || e.to_string().contains("permission"),
        "{e}"
    );
    let shown = format!("{e} {e:?} {f:?}");
    assert!(!shown.contains("acl-s3cret"), "{shown}");
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["EXISTS", "locks:job"]), "0");
    }
}

#[test]
fn acl_user_without_write_access_gets_a_clear_error() {
    let cluster = RedisCluster::start(3);
    for i in 0..3 {
        acl_user(
            &cluster,
            i,
            "reader",
            "read-pw",
            &["~*", "&*", "+@read", "+ping"],
        );
    }
    let urls: Vec<String> = (0..3)
        .map(|i| format!("redis://reader:read-pw@127.0.0.1:{}", cluster.port(i)))
        .collect();
    let f = support::builder()
        .nodes(urls)
        .max_retries(1)
        .build()
        .unwrap();
    let lock = f.create_lock("k");
    let e = lock.acquire().unwrap_err();
    let shown = e.to_string();
    assert!(matches!(e, Error::NoQuorum { answered: 0, .. }), "{e:?}");
    assert!(
        shown.contains("NOPERM") || shown.contains("permission"),
        "{shown}"
    );
    assert!(!shown.contains("read-pw"), "{shown}");
    // Reading is allowed: is_locked works.
    assert!(!lock.is_locked().unwrap());
}

#[test]
fn acl_user_without_script_load_works_through_eval() {
    // The scripts reach a node through EVALSHA, and a node that answers NOSCRIPT gets the same
    // call as EVAL <source>, which needs no SCRIPT LOAD permission. So a user that may not run
    // SCRIPT LOAD still acquires, extends and releases on a node whose script cache is empty.
    let cluster = RedisCluster::start(1);
    let mut perms = vec!["~*", "&*"];
    perms.extend(
        LOCK_COMMANDS
            .iter()
            .copied()
            .filter(|c| *c != "+script|load"),
    );
    acl_user(&cluster, 0, "noscript", "ns-pw", &perms);
    assert_eq!(cluster.cmd(0, &["SCRIPT", "FLUSH"]), "OK");
    let url = format!("redis://noscript:ns-pw@127.0.0.1:{}", cluster.port(0));
    let f = support::builder().node(url).fencing(true).build().unwrap();
    for _ in 0..3 {
        let g = f.create_lock("k").acquire().unwrap();
        assert!(g.fencing_token().is_some());
        g.extend(Duration::from_secs(5)).unwrap();
        g.release().unwrap();
        assert_eq!(cluster.cmd(0, &["SCRIPT", "FLUSH"]), "OK");
    }
    assert_eq!(cluster.cmd(0, &["EXISTS", "k"]), "0");
}

#[test]
fn passwords_and_tokens_never_reach_logs_debug_or_display() {
    let _logs = capture_logs();
    let cluster = RedisCluster::start(2);
    let port = cluster.port(0);
    assert_eq!(
        cluster.cmd(0, &["CONFIG", "SET", "requirepass", "node-pw-1"]),
        "OK"
    );
    let urls = vec![
        format!("redis://:node-pw-1@127.0.0.1:{port}"),
        format!("redis://:wrong-pw-2@127.0.0.1:{}", cluster.port(1)),
        format!(
            "redis://user:dead-pw-3@{}",
            dead_url().trim_start_matches("redis://")
        ),
    ];
    let f = support::builder()
        .nodes(urls)
        .max_retries(1)
        .build()
        .unwrap();
    let mut shown = vec![format!("{f:?}")];
    // Node 1 refuses the password, node 2 is dead: one node of three answers.
    let e = f.create_lock("k").acquire().unwrap_err();
    shown.push(format!("{e} {e:?}"));
    // Two good nodes of three, to get guards and errors at release.
    let g2 = support::builder()
        .node(format!("redis://:node-pw-1@127.0.0.1:{port}"))
        .node(format!("redis://127.0.0.1:{}", cluster.port(1)))
        .max_retries(1)
        .build()
        .unwrap();
    let g = g2.create_lock("k2").try_acquire();
    shown.push(format!("{g:?}"));
    let mut tokens = Vec::new();
    if let Ok(Some(g)) = g {
        tokens.push(g.token().to_owned());
        shown.push(format!("{g:?}"));
        drop(g); // release on drop: logs at debug level
    }
    let logs = logs::records();
    assert!(!logs.is_empty(), "the logger captured nothing");
    let everything = format!("{}\n{}", shown.join("\n"), logs.join("\n"));
    for secret in ["node-pw-1", "wrong-pw-2", "dead-pw-3"] {
        assert!(
            !everything.contains(secret),
            "{secret} shown:\n{everything}"
        );
    }
    for t in &tokens {
        assert!(
            !everything.contains(t.as_str()),
            "token in logs or Debug:\n{everything}"
        );
    }
    eprintln!(
        "[figures] log capture: {} records, no password or token",
        logs.len()
    );
}

#[test]
fn tokens_are_160_bit_random_hex_and_never_repeat() {
    let cluster = RedisCluster::start(1);
    let f = support::factory(&cluster).max_retries(1).build().unwrap();
    let lock = f.create_lock("tokens");
    let mut seen = HashSet::new();
    let mut ones = 0u64;
    let n = 2000;
    for _ in 0..n {
        let g = lock.try_acquire().unwrap().unwrap();
        let t = g.token().to_owned();
        assert_eq!(t.len(), 40, "{t}");
        assert!(
            t.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{t}"
        );
        assert_eq!(cluster.cmd(0, &["GET", "tokens"]), t);
        for c in t.chars() {
            ones += u64::from(c.to_digit(16).unwrap().count_ones());
        }
        assert!(seen.insert(t), "a token repeated");
        g.release().unwrap();
    }
    // 320,000 bits: a fair source gives 50 % ones within a fraction of a percent.
    let share = ones as f64 / (n as f64 * 160.0);
    eprintln!("[figures] tokens: {n} distinct, share of one bits {share:.4}");
    assert!((0.49..0.51).contains(&share), "{share}");
}

#[test]
fn another_client_cannot_release_or_extend_a_lock_it_does_not_hold() {
    // No public API takes a token: a client can only act through the guard its own
    // acquisition returned. A stale guard (after release, the lease lost, or the key
    // re-taken) never touches the current holder's key.
    let cluster = RedisCluster::start(3);
    let a = support::factory(&cluster).max_retries(1).build().unwrap();
    let b = support::factory(&cluster).max_retries(1).build().unwrap();
    let ga = a.create_lock("owned").acquire().unwrap();
    // B cannot take it, and its own (different) acquisitions never match A's token.
    assert!(b.create_lock("owned").try_acquire().unwrap().is_none());
    let token = ga.token().to_owned();
    // A replay of A's SET by an outsider is refused by the nodes (the key exists), and
    // acquiring again in A's own process yields a fresh token.
    ga.release().unwrap();
    let ga2 = a.create_lock("owned").acquire().unwrap();
    assert_ne!(ga2.token(), token);
    for i in 0..3 {
        assert_eq!(cluster.cmd(i, &["GET", "owned"]), ga2.token());
    }
    ga2.release().unwrap();
}

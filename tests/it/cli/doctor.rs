//! `redmutex doctor [KEY] [--json]`: one line per check, exit 0 when every check is ok, 80 when
//! some warned (and none failed), 81 when one failed; and `status` showing a node in its
//! restart quarantine.

use super::*;
use crate::support::AOF_ARGS;

const OK: i32 = 0;
const WARNED: i32 = 80;
const FAILED: i32 = 81;

/// `redmutex doctor [args]` on `nodes`: exit code and stdout.
fn doctor(nodes: &[String], args: &[&str]) -> (i32, String, String) {
    let o = run_ok(redmutex(nodes).arg("doctor").args(args));
    (code(&o), stdout(&o), stderr(&o))
}

/// The lines of a given status.
fn lines<'a>(out: &'a str, status: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.split_whitespace().next() == Some(status))
        .collect()
}

#[test]
fn a_healthy_cluster_passes_every_check() {
    // Durable nodes (AOF, appendfsync always): not quarantined even though they are fresh.
    let cluster = RedisCluster::start_with_args(3, AOF_ARGS);
    let (code, out, err) = doctor(&cluster.urls(), &["app:jobs"]);
    assert_eq!(code, OK, "{out}{err}");
    let checks: Vec<&str> = out.lines().collect();
    // 6 checks per node, the quorum and the clocks, 9 permission checks per node.
    assert_eq!(checks.len(), 3 * 6 + 2 + 3 * 9, "{out}");
    assert_eq!(lines(&out, "ok").len(), checks.len(), "{out}");
    for name in [
        "reachable",
        "role",
        "version",
        "uptime",
        "persistence",
        "eviction",
    ] {
        assert_eq!(
            out.lines()
                .filter(|l| l.contains(&format!("  {name}  ")))
                .count(),
            3,
            "{name}: {out}"
        );
    }
    assert!(out.contains("appendfsync always"), "{out}");
    // The probes took and released their keys: nothing is left.
    for i in 0..3 {
        assert_eq!(
            cluster.cmd(i, &["DBSIZE"]),
            "0",
            "node {i}: {:?}",
            cluster.keys(i)
        );
    }
}

#[test]
fn a_node_that_evicts_keys_is_a_warning() {
    let cluster = RedisCluster::start_with_args(3, AOF_ARGS);
    cluster.cmd(1, &["CONFIG", "SET", "maxmemory", "100mb"]);
    cluster.cmd(1, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let (status, out, err) = doctor(&cluster.urls(), &[]);
    assert_eq!(status, WARNED, "{out}{err}");
    let warned = lines(&out, "warn");
    assert_eq!(warned.len(), 1, "{out}");
    let port = format!(":{} ", cluster.port(1));
    assert!(
        warned[0].contains(&port)
            && warned[0].contains("eviction")
            && warned[0].contains("allkeys-lru"),
        "{out}"
    );
    // The same as JSON.
    let o = run_ok(redmutex(&cluster.urls()).args(["doctor", "--json"]));
    assert_eq!(code(&o), WARNED);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "warn");
    let checks = v["checks"].as_array().unwrap();
    let warn: Vec<_> = checks.iter().filter(|c| c["status"] == "warn").collect();
    assert_eq!(warn.len(), 1, "{v}");
    assert_eq!(warn[0]["check"], "eviction");
    assert!(
        checks
            .iter()
            .any(|c| c["node"].is_null() && c["check"] == "quorum")
    );
}

#[test]
fn a_node_down_or_refusing_the_locks_commands_is_a_failure() {
    let cluster = RedisCluster::start_with_args(3, AOF_ARGS);
    cluster.kill(2);
    let (code, out, err) = doctor(&cluster.urls(), &[]);
    assert_eq!(code, FAILED, "{out}{err}");
    let failed = lines(&out, "fail");
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].contains("reachable") && failed[0].contains(&format!(":{}", cluster.port(2))),
        "{out}"
    );
    // The other two still make a quorum.
    assert!(out.contains("2 of 3 nodes answer"), "{out}");

    // An ACL user scoped to app:* (with the commands of docs/operations.md): the key's own
    // lock commands pass; a key outside the pattern fails; the features it lacks warn.
    let live = RedisCluster::start_with_args(3, AOF_ARGS);
    for i in 0..3 {
        live.cmd(
            i,
            &[
                "ACL",
                "SETUSER",
                "locker",
                "on",
                ">pw",
                "resetkeys",
                "~app:*",
                "resetchannels",
                "&app:*",
                "-@all",
                "+get",
                "+set",
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
                "+info",
            ],
        );
    }
    let urls: Vec<String> = (0..3)
        .map(|i| format!("redis://locker:pw@127.0.0.1:{}", live.port(i)))
        .collect();
    let (code, out, err) = doctor(&urls, &["app:jobs"]);
    assert_eq!(code, WARNED, "{out}{err}");
    assert_eq!(lines(&out, "fail").len(), 0, "{out}");
    let acl_ok = |name: &str| {
        lines(&out, "ok")
            .iter()
            .filter(|l| l.contains(&format!("  {name}  ")))
            .count()
    };
    assert_eq!(acl_ok("acl lock"), 3, "{out}");
    assert_eq!(acl_ok("acl wake-up"), 3, "{out}");
    let warned = lines(&out, "warn");
    // No MGET (semaphore, multi-lock), no sorted sets (read-write lock), no hashes and no TIME
    // (election, run-once), no SCRIPT LOAD, and
    // CONFIG GET is refused, so appendfsync is unknown: not durable unless declared.
    for name in [
        "acl semaphore",
        "acl multi-lock",
        "acl rwlock",
        "acl election",
        "acl run-once",
        "acl script load",
    ] {
        assert_eq!(
            warned
                .iter()
                .filter(|l| l.contains(&format!("  {name}  ")))
                .count(),
            3,
            "{name}: {out}"
        );
    }
    assert!(
        warned
            .iter()
            .any(|l| l.contains("persistence") && l.contains("appendfsync not readable")),
        "{out}"
    );
    // Declared durable, the nodes are trusted where they will not say.
    let o = run_ok(redmutex(&urls).args(["--durable-nodes", "doctor"]));
    assert!(
        !stdout(&o)
            .lines()
            .any(|l| l.contains("persistence") && l.starts_with("warn")),
        "{}",
        stdout(&o)
    );
    let (code, out, _) = doctor(&urls, &["other:jobs"]);
    assert_eq!(code, FAILED, "{out}");
    let failed = lines(&out, "fail");
    assert_eq!(failed.len(), 3, "{out}");
    assert!(
        failed
            .iter()
            .all(|l| l.contains("acl lock") && l.contains("refused")),
        "{out}"
    );
}

#[test]
fn status_and_doctor_show_a_quarantined_node() {
    // Fresh nodes without persistence, the quarantine on (the test helper switches it off).
    let cluster = RedisCluster::start(3);
    let mut cmd = redmutex(&cluster.urls());
    cmd.env_remove("REDMUTEX_NO_RESTART_QUARANTINE");
    let o = run_ok(cmd.args(["status", "--json", "q:status"]));
    // Quarantined nodes cannot vouch for "free": the verdict is unknown (exit 69), and says why.
    assert_eq!(code(&o), 69, "{}", stderr(&o));
    assert!(stderr(&o).contains("quarantined"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "unknown");
    for n in v["nodes"].as_array().unwrap() {
        let ms = n["quarantined_ms"].as_u64().expect("quarantined");
        assert!(ms > 50_000 && ms <= 61_000, "{n}");
    }
    let mut cmd = redmutex(&cluster.urls());
    cmd.env_remove("REDMUTEX_NO_RESTART_QUARANTINE");
    let o = run_ok(cmd.arg("doctor"));
    assert_eq!(code(&o), WARNED, "{}", stdout(&o));
    let out = stdout(&o);
    let quarantined: Vec<&str> = lines(&out, "warn")
        .into_iter()
        .filter(|l| l.contains("uptime") && l.contains("quarantined for"))
        .collect();
    assert_eq!(quarantined.len(), 3, "{out}");
    // A shorter longest TTL, agreed by every client: over once the nodes are older than it.
    assert!(deadline_loop(Duration::from_secs(20), || {
        let o = run_ok(
            redmutex(&cluster.urls())
                .env_remove("REDMUTEX_NO_RESTART_QUARANTINE")
                .args(["--longest-ttl", "1", "status", "q:status"]),
        );
        code(&o) == 0 && stdout(&o).contains("free on 3 of 3")
    }));
}

//! The doctor: [`RedLockFactory::diagnose`](crate::RedLockFactory::diagnose) (and `redmutex
//! doctor`) checks each node against what Redlock assumes and what the locks need, and says,
//! one line per check, what is fine, what is risky and what is broken.
//!
//! Per node: it answers (and how fast), it is a master, its version has what every feature
//! needs, its uptime against the longest TTL (the restart quarantine), its persistence, its
//! eviction policy. Over the nodes: enough of them answer for a quorum, and their clocks agree.
//! With a key, per node: the connecting user may run every command on every key and channel
//! each feature uses for that key, tried for real on probe keys derived from it
//! (`<key>:redmutex:doctor...`, released or deleted again at once).

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Value;

use super::lease::{Target, Token};
use crate::command::{self, Arg};
use crate::error::{NodeError, NodeErrorKind};
use crate::node::{Facts, Node, QuarantineCause};
use crate::round::{self, Call};
use crate::scripts;
use crate::shared::Shared;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CheckStatus {
    /// As it should be.
    Ok,
    /// Works, but a guarantee or a feature is at risk; the detail says what to change.
    Warn,
    /// Broken: locks cannot work as promised until it is fixed.
    Fail,
}

impl CheckStatus {
    /// `"ok"`, `"warn"` or `"fail"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of a [`Diagnosis`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// The node it is about (its address, as in [`NodeStats`](crate::NodeStats)); `None` for
    /// a check over all the nodes (the quorum, the clocks).
    pub node: Option<String>,
    /// What was checked: `reachable`, `role`, `version`, `uptime`, `persistence`, `eviction`,
    /// `quorum`, `clock`, and with a key `acl lock`, `acl fencing`, `acl wake-up`,
    /// `acl semaphore`, `acl rwlock`, `acl multi-lock`, `acl election`, `acl run-once`,
    /// `acl script load`.
    pub name: &'static str,
    /// How it came out.
    pub status: CheckStatus,
    /// What was found, and when it is not ok, what to do: one line.
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.node.as_deref().unwrap_or("all nodes");
        write!(
            f,
            "{:<4}  {node}  {}: {}",
            self.status, self.name, self.detail
        )
    }
}

/// What [`RedLockFactory::diagnose`](crate::RedLockFactory::diagnose) found: every check, node
/// by node, then those over all the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnosis {
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Diagnosis {
    /// The worst status of any check ([`CheckStatus::Ok`] when there are none).
    #[must_use]
    pub fn worst(&self) -> CheckStatus {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(CheckStatus::Ok)
    }
}

/// Whose clocks differ by more than this gets a warning (Redlock needs clocks that run at the
/// same rate, not clocks that agree; a large difference means time sync is not working, and
/// its next correction may step a clock).
const SKEW_LIMIT: Duration = Duration::from_millis(500);

/// How long the probes' keys live, should a probe's own release not run.
const PROBE_TTL_MS: u64 = 5_000;

/// The checks.
pub(crate) fn diagnose(shared: &Shared, key: Option<&str>) -> Diagnosis {
    let mut checks = Vec::new();
    let mut masters = 0;
    let mut clocks: Vec<(&str, i128)> = Vec::new();
    let mut reachable = 0u64;
    for (i, node) in shared.nodes.iter().enumerate() {
        let mask = 1u64 << i;
        let mut check = |name, status, detail: String| {
            checks.push(Check {
                node: Some(node.name.clone()),
                name,
                status,
                detail,
            });
        };
        let rtt = match round_trip(shared, mask) {
            Ok(rtt) => rtt,
            Err(e) => {
                check(
                    "reachable",
                    CheckStatus::Fail,
                    format!("does not answer: {}", cause(&e)),
                );
                continue;
            }
        };
        reachable |= mask;
        check(
            "reachable",
            CheckStatus::Ok,
            format!("answers PING in {}", human(rtt)),
        );
        let facts = facts(shared, mask);
        let (status, detail) = role(&facts);
        // A node that will not say its role (INFO refused) still counts: only a replica
        // cannot take part.
        masters += usize::from(status != CheckStatus::Fail);
        check("role", status, detail);
        let (status, detail) = version(&facts);
        check("version", status, detail);
        let (status, detail) = uptime(shared, node, &facts);
        check("uptime", status, detail);
        let (status, detail) = persistence(shared, &facts);
        check("persistence", status, detail);
        let (status, detail) = eviction(&facts);
        check("eviction", status, detail);
        if let Some(offset) = clock_offset(shared, mask) {
            clocks.push((&node.name, offset));
        }
    }
    let n = shared.nodes.len();
    let quorum = shared.config.quorum;
    checks.push(Check {
        node: None,
        name: "quorum",
        status: if masters >= quorum {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        detail: format!(
            "{masters} of {n} nodes answer, none of them a replica; {quorum} must agree{}",
            if masters >= quorum {
                ""
            } else {
                ": locks cannot be taken"
            }
        ),
    });
    if let Some(check) = clock_check(&clocks) {
        checks.push(check);
    }
    if let Some(key) = key {
        for (i, node) in shared.nodes.iter().enumerate() {
            if reachable & (1 << i) != 0 {
                checks.extend(acl(shared, node, 1 << i, key));
            }
        }
    }
    Diagnosis { checks }
}

/// A node error's cause, without the node's name (the check names it).
fn cause(e: &NodeError) -> String {
    std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string)
}

/// "12 ms", "0.31 ms", "3.2 s", "2 h 5 min".
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if secs < 120 {
        format!("{:.1} s", d.as_secs_f64())
    } else if secs < 7200 {
        format!("{} min", secs / 60)
    } else if secs < 172_800 {
        format!("{} h {} min", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{} days", secs / 86_400)
    }
}

/// Runs `calls` on the node of `mask` (one node); its replies.
fn run(shared: &Shared, mask: u64, calls: &[Call<'_>]) -> Vec<Result<Value, NodeError>> {
    round::replies(&shared.nodes, calls, mask)
        .per_node
        .into_iter()
        .find(|r| !r.is_empty())
        .unwrap_or_default()
}

/// The node's PING round trip, after one PING that may open its connection.
fn round_trip(shared: &Shared, mask: u64) -> Result<Duration, NodeError> {
    let ping = [Arg::Str("PING")];
    let calls = [Call::Command(&ping)];
    let answered = |replies: Vec<Result<Value, NodeError>>| match replies.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e),
        None => Err(NodeError::new(
            "?",
            crate::error::NodeCause::Unexpected("no reply".into()),
        )),
    };
    // The first PING may wait for a connection (a doctor's factory is new).
    answered(run(shared, mask, &calls))?;
    let start = Instant::now();
    answered(run(shared, mask, &calls))?;
    Ok(start.elapsed())
}

/// What the node says about itself now (each question may be refused).
fn facts(shared: &Shared, mask: u64) -> Facts {
    let info = |section| [Arg::Str("INFO"), Arg::Str(section)];
    let (server, replication, persistence, memory) = (
        info("server"),
        info("replication"),
        info("persistence"),
        info("memory"),
    );
    let fsync = [Arg::Str("CONFIG"), Arg::Str("GET"), Arg::Str("appendfsync")];
    let calls = [
        Call::Command(&server),
        Call::Command(&replication),
        Call::Command(&persistence),
        Call::Command(&memory),
        Call::Command(&fsync),
    ];
    let replies = run(shared, mask, &calls);
    let mut facts = Facts::default();
    for (i, reply) in replies.iter().enumerate() {
        if let Ok(v) = reply {
            if i == 4 {
                facts.read_appendfsync(v);
            } else {
                facts.read_info(v);
            }
        }
    }
    facts
}

fn role(facts: &Facts) -> (CheckStatus, String) {
    match facts.role.as_deref() {
        Some("master") => (CheckStatus::Ok, "master".into()),
        Some(role) => (
            CheckStatus::Fail,
            format!(
                "{role}: every node must be an independent master (a replica refuses writes, \
                 and replication is not independence)"
            ),
        ),
        None => (
            CheckStatus::Warn,
            "unknown: INFO replication refused (grant +info)".into(),
        ),
    }
}

fn version(facts: &Facts) -> (CheckStatus, String) {
    let Some(v) = facts.version.as_deref() else {
        return (
            CheckStatus::Warn,
            "unknown: INFO server refused (grant +info)".into(),
        );
    };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    if (major, minor, patch) < (2, 6, 12) {
        (
            CheckStatus::Fail,
            format!("Redis {v}: locks need 2.6.12 or later (SET NX PX, scripts)"),
        )
    } else if major < 6 {
        (
            CheckStatus::Warn,
            format!(
                "Redis {v}: semaphores need 6.0 or later (SET KEEPTTL); locks, read-write locks \
                 and multi-locks work"
            ),
        )
    } else {
        (
            CheckStatus::Ok,
            format!("Redis {v}: every feature (semaphores need 6.0)"),
        )
    }
}

fn uptime(shared: &Shared, node: &Node, facts: &Facts) -> (CheckStatus, String) {
    let config = &shared.config;
    let longest = config.longest_ttl;
    let Some(up) = facts.uptime.map(Duration::from_secs) else {
        return (
            CheckStatus::Warn,
            "unknown: INFO server refused, so a restart cannot be seen and is not quarantined \
             (grant +info, or declare the nodes durable)"
                .into(),
        );
    };
    let age = human(up);
    let (durable, _) = facts.durability(shared.nodes.declared_durable());
    if let Some(left) = node.quarantine_left() {
        let cause = node
            .stats()
            .quarantine_cause
            .unwrap_or(QuarantineCause::Young);
        return (
            CheckStatus::Warn,
            format!(
                "up {age}; quarantined for {} more ({cause}): its yes does not count toward \
                 acquisitions until every lease it may have forgotten has expired",
                human(left)
            ),
        );
    }
    if up > longest {
        return (
            CheckStatus::Ok,
            format!("up {age}, longer than the longest TTL ({})", human(longest)),
        );
    }
    if durable {
        (
            CheckStatus::Ok,
            format!("up {age}; durable, so a restart keeps its keys and votes at once"),
        )
    } else if !config.quarantine {
        (
            CheckStatus::Warn,
            format!(
                "up {age}, less than the longest TTL ({}), without durable persistence, and the \
                 restart quarantine is off: a lease it forgot can be granted twice",
                human(longest)
            ),
        )
    } else {
        (
            CheckStatus::Ok,
            format!("up {age}; out of its restart quarantine"),
        )
    }
}

fn persistence(shared: &Shared, facts: &Facts) -> (CheckStatus, String) {
    let declared = shared.nodes.declared_durable();
    let (durable, reason) = facts.durability(declared);
    if durable {
        return (
            CheckStatus::Ok,
            format!("{reason}: keeps its keys across a crash"),
        );
    }
    if declared {
        return (
            CheckStatus::Warn,
            format!("declared durable, but {reason}: it is quarantined after restarts"),
        );
    }
    if facts.aof.is_none() {
        return (
            CheckStatus::Warn,
            format!("{reason}: grant +info, or declare the nodes durable if they are"),
        );
    }
    if shared.config.quarantine {
        (
            CheckStatus::Ok,
            format!(
                "{reason}: a restart empties it, so it sits out the longest TTL after one \
                 (restart quarantine)"
            ),
        )
    } else {
        (
            CheckStatus::Warn,
            format!(
                "{reason}, and the restart quarantine is off: an empty restart can hand a \
                 held lock to a second client (use appendfsync always, delay restarts by the \
                 longest TTL, or switch the quarantine on)"
            ),
        )
    }
}

fn eviction(facts: &Facts) -> (CheckStatus, String) {
    match (facts.evicting_policy(), facts.policy.as_deref()) {
        (Some(policy), _) => (
            CheckStatus::Warn,
            format!(
                "maxmemory {} with maxmemory-policy {policy}: a held lock can be evicted; use \
                 noeviction on lock nodes",
                facts.maxmemory.unwrap_or_default()
            ),
        ),
        (None, Some(policy)) => {
            let limit = match facts.maxmemory {
                Some(0) | None => "no memory limit".to_owned(),
                Some(m) => format!("maxmemory {m}"),
            };
            (
                CheckStatus::Ok,
                format!("{limit}, maxmemory-policy {policy}: keys live until they expire"),
            )
        }
        (None, None) => (
            CheckStatus::Warn,
            "unknown: INFO memory refused (grant +info)".into(),
        ),
    }
}

/// The node's clock minus ours, in microseconds, from a `TIME` alone (so the exchange is
/// short): its reply is compared with the middle of our clock's readings around it.
fn clock_offset(shared: &Shared, mask: u64) -> Option<i128> {
    let time = [Arg::Str("TIME")];
    let before = SystemTime::now();
    let replies = run(shared, mask, &[Call::Command(&time)]);
    let after = SystemTime::now();
    let mut facts = Facts::default();
    facts.read_time(replies.first()?.as_ref().ok()?);
    let micros = |t: SystemTime| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_micros());
    let ours = (micros(before)? + micros(after)?) / 2;
    let theirs = facts.time?.as_micros();
    Some(i128::try_from(theirs).ok()? - i128::try_from(ours).ok()?)
}

fn clock_check(clocks: &[(&str, i128)]) -> Option<Check> {
    let (fast, max) = clocks.iter().max_by_key(|c| c.1)?;
    let (slow, min) = clocks.iter().min_by_key(|c| c.1)?;
    let skew = Duration::from_micros(u64::try_from(max - min).unwrap_or(u64::MAX));
    let (status, detail) = if clocks.len() < 2 {
        (
            CheckStatus::Ok,
            format!("one node's clock read: {} from ours", signed(*max)),
        )
    } else if skew <= SKEW_LIMIT {
        (
            CheckStatus::Ok,
            format!("the nodes' TIME agree within {}", human(skew)),
        )
    } else {
        (
            CheckStatus::Warn,
            format!(
                "the nodes' TIME differ by {} ({fast} ahead of {slow}): check their time sync \
                 (Redis expires keys by its wall clock, and a clock stepped back into line \
                 shortens every key)",
                human(skew)
            ),
        )
    };
    Some(Check {
        node: None,
        name: "clock",
        status,
        detail,
    })
}

fn signed(micros: i128) -> String {
    let d = Duration::from_micros(u64::try_from(micros.unsigned_abs()).unwrap_or(u64::MAX));
    let sign = if micros < 0 { "-" } else { "+" };
    format!("{sign}{}", human(d))
}

// ---------------------------------------------------------------------------------------------
// The permission probes.

/// Runs a probe's calls and reports the first refusal.
fn first_error(replies: Vec<Result<Value, NodeError>>) -> Result<(), NodeError> {
    replies.into_iter().try_for_each(|r| r.map(drop))
}

/// Runs the probe `f` and makes it a check: `required` features fail, optional ones warn.
fn probe_check(
    node: &Node,
    name: &'static str,
    required: bool,
    ok: &str,
    fix: &str,
    result: Result<(), NodeError>,
) -> Check {
    let (status, detail) = match result {
        Ok(()) => (CheckStatus::Ok, ok.to_owned()),
        Err(e) => {
            let status = if required {
                CheckStatus::Fail
            } else {
                CheckStatus::Warn
            };
            // A command a script calls, refused by the ACL, is a script error, not NOPERM.
            let message = e.to_string();
            let refused = e.kind() == NodeErrorKind::Auth
                || message.contains("can't run this command")
                || message.contains("no permissions");
            let what = if refused { "refused" } else { "failed" };
            (status, format!("{what}: {}; {fix}", cause(&e)))
        }
    };
    Check {
        node: Some(node.name.clone()),
        name,
        status,
        detail,
    }
}

/// Every feature's commands for `key`, tried on the node of `mask` on probe keys derived from
/// `key` (under `<key>:redmutex:`, which an ACL pattern for the key's prefix covers).
fn acl(shared: &Shared, node: &Node, mask: u64, key: &str) -> Vec<Check> {
    let probe = format!("{key}:redmutex:doctor");
    vec![
        probe_check(
            node,
            "acl lock",
            true,
            "acquire, extend, release, inspect and the waiting mark work on the key",
            "the user needs +set +get +del +exists +pexpire +pttl +publish +eval +evalsha on \
             ~<key>* and &<key>* (docs/operations.md, \"Least privilege\")",
            lock_probe(shared, mask, &probe),
        ),
        probe_check(
            node,
            "acl fencing",
            false,
            "fencing tokens work",
            "fencing needs +get +set on <key>:redmutex:fence",
            fence_probe(shared, mask, &probe),
        ),
        probe_check(
            node,
            "acl wake-up",
            false,
            "waiters can subscribe to releases",
            "without +subscribe on &<key>*, waiters poll instead of being woken",
            subscribe_probe(shared, node, &probe),
        ),
        probe_check(
            node,
            "acl semaphore",
            false,
            "a semaphore on the key works",
            "semaphores need +mget too (and Redis 6.0)",
            semaphore_probe(shared, mask, &format!("{probe}-sem")),
        ),
        probe_check(
            node,
            "acl rwlock",
            false,
            "a read-write lock on the key works",
            "read-write locks need +time +pexpireat +zadd +zrange +zrem +zremrangebyscore \
             +zcount +zscore too",
            rwlock_probe(shared, mask, &format!("{probe}-rw")),
        ),
        probe_check(
            node,
            "acl multi-lock",
            false,
            "a multi-lock over keys like it works",
            "multi-locks need +mget too, and every resource under the user's key pattern",
            multi_probe(shared, mask, &probe),
        ),
        probe_check(
            node,
            "acl election",
            false,
            "an election on the key works (campaign, proclaim, read, resign)",
            "elections need +hset +hget +hmget +time too",
            election_probe(shared, mask, &format!("{probe}-el")),
        ),
        probe_check(
            node,
            "acl run-once",
            false,
            "a run-once job on the key works (start, complete, read the record)",
            "run-once jobs need +hset +hmget +time too",
            once_probe(shared, mask, &format!("{probe}-once")),
        ),
        probe_check(
            node,
            "acl script load",
            false,
            "scripts are loaded at connect, so rounds use EVALSHA",
            "without +script|load each connection's first call of a script sends it whole \
             (EVAL)",
            first_error(run(
                shared,
                mask,
                &[Call::Command(&[
                    Arg::Str("SCRIPT"),
                    Arg::Str("LOAD"),
                    Arg::Str(scripts::EXTEND_SRC),
                ])],
            )),
        ),
    ]
}

/// A mutex's every path: a bare `SET NX PX` and its take-back, the acquire script (granted,
/// and refused with a waiting mark), extend, the reads of an inspection, and a release that
/// announces (the mark is there, so it publishes).
fn lock_probe(shared: &Shared, mask: u64, p: &str) -> Result<(), NodeError> {
    let (t1, t2, t3) = (Token::new(), Token::new(), Token::new());
    let set = [
        Arg::Str("SET"),
        Arg::Str(p),
        Arg::Str(t1.as_str()),
        Arg::Str("NX"),
        Arg::Str("PX"),
        Arg::Int(PROBE_TTL_MS),
    ];
    let acquire_keys = [
        Arg::Str(p),
        Arg::Joined(p, scripts::FENCE_SUFFIX),
        Arg::Joined(p, scripts::WAITING_SUFFIX),
    ];
    let granted = [Arg::Str(t2.as_str()), Arg::Int(PROBE_TTL_MS), Arg::Int(0)];
    let refused = [
        Arg::Str(t3.as_str()),
        Arg::Int(PROBE_TTL_MS),
        Arg::Int(1000),
    ];
    let get = [Arg::Str("GET"), Arg::Str(p)];
    let pttl = [Arg::Str("PTTL"), Arg::Str(p)];
    let fence = [Arg::Str("GET"), Arg::Joined(p, scripts::FENCE_SUFFIX)];
    let extend = Target::Mutex.extend_parts(p, t2.as_str(), PROBE_TTL_MS);
    let acquire = |args| Call::Script {
        script: &scripts::ACQUIRE,
        keys: &acquire_keys,
        args,
    };
    let first = Target::Mutex.with_release(p, t1.as_str(), false, |take_back| {
        run(
            shared,
            mask,
            &[
                Call::Command(&set),
                take_back,
                acquire(&granted),
                acquire(&refused),
                extend.call(),
                Call::Command(&get),
                Call::Command(&pttl),
                Call::Command(&fence),
            ],
        )
    });
    first_error(first)?;
    first_error(Target::Mutex.with_release(p, t2.as_str(), true, |release| {
        run(shared, mask, &[release])
    }))?;
    let unmark = [Arg::Str("DEL"), Arg::Joined(p, scripts::WAITING_SUFFIX)];
    first_error(run(shared, mask, &[Call::Command(&unmark)]))
}

/// The fencing counter's max-register (and its deletion: the probe leaves no counter).
fn fence_probe(shared: &Shared, mask: u64, p: &str) -> Result<(), NodeError> {
    let keys = [Arg::Joined(p, scripts::FENCE_SUFFIX)];
    let args = [Arg::Int(1), Arg::Joined(scripts::LEGACY_FENCE_PREFIX, p)];
    let del = [Arg::Str("DEL"), Arg::Joined(p, scripts::FENCE_SUFFIX)];
    first_error(run(
        shared,
        mask,
        &[
            Call::Script {
                script: &scripts::FENCE,
                keys: &keys,
                args: &args,
            },
            Call::Command(&del),
        ],
    ))
}

/// A subscription to the key's release channel, on a connection of its own (as a waiter's).
fn subscribe_probe(shared: &Shared, node: &Node, p: &str) -> Result<(), NodeError> {
    let timeout = shared.nodes.connect_timeout;
    let fail = |e: redis::RedisError| NodeError::new(&node.name, e.into());
    let mut con = node.source.connect(timeout).map_err(fail)?;
    con.set_read_timeout(Some(timeout)).map_err(fail)?;
    con.set_write_timeout(Some(timeout)).map_err(fail)?;
    let mut packed = Vec::new();
    let channel = [
        Arg::Str("SUBSCRIBE"),
        Arg::Joined(p, scripts::RELEASED_SUFFIX),
    ];
    command::pack(&mut packed, channel, 2);
    con.send_packed_command(&packed).map_err(fail)?;
    loop {
        match con.recv_response().map_err(fail)? {
            Value::ServerError(e) => return Err(fail(e.into())),
            // RESP3 sends the confirmation as a push; RESP2 as an array.
            Value::Push { .. } | Value::Array(_) => return Ok(()),
            _ => {}
        }
    }
}

/// A permit of a one-permit semaphore: taken, extended and released.
fn semaphore_probe(shared: &Shared, mask: u64, s: &str) -> Result<(), NodeError> {
    let token = Token::new();
    let keys = [Arg::Str(s), Arg::Joined(s, scripts::WAITING_SUFFIX)];
    let args = [
        Arg::Str(token.as_str()),
        Arg::Int(PROBE_TTL_MS),
        Arg::Int(0),
        Arg::Int(1),
        Arg::Joined(s, scripts::PERMIT_SUFFIX),
        Arg::Str("0"),
        Arg::Int(1),
    ];
    let target = Target::permit(1, 0);
    let extend = target.extend_parts(s, token.as_str(), PROBE_TTL_MS);
    let acquire = Call::Script {
        script: &scripts::PERMIT_ACQUIRE,
        keys: &keys,
        args: &args,
    };
    first_error(run(shared, mask, &[acquire, extend.call()]))?;
    first_error(target.with_release(s, token.as_str(), true, |release| {
        run(shared, mask, &[release])
    }))
}

/// The write script's arguments: a writer `token`, waiting with `intent` unless it is empty.
fn write_args<'a>(token: &'a Token, intent: &'a str) -> [Arg<'a>; 5] {
    let waits = !intent.is_empty();
    [
        Arg::Str(token.as_str()),
        Arg::Int(PROBE_TTL_MS),
        Arg::Int(if waits { 1000 } else { 0 }),
        Arg::Str(intent),
        Arg::Int(if waits { 1000 } else { 0 }),
    ]
}

/// The read script's arguments: a reader `token`, marking its wait for `mark` ms.
fn read_args(token: &Token, mark: u64) -> [Arg<'_>; 3] {
    [
        Arg::Str(token.as_str()),
        Arg::Int(PROBE_TTL_MS),
        Arg::Int(mark),
    ]
}

/// A read-write lock's paths: a writer, a reader refused by it (marking the wait), a writer's
/// intent recorded and withdrawn, then two readers sharing (the readers' set), extended and
/// released.
fn rwlock_probe(shared: &Shared, mask: u64, r: &str) -> Result<(), NodeError> {
    let (writer, intent, first, second) = (Token::new(), Token::new(), Token::new(), Token::new());
    let write_keys = [
        Arg::Str(r),
        Arg::Joined(r, scripts::READERS_SUFFIX),
        Arg::Joined(r, scripts::WRITERS_SUFFIX),
        Arg::Joined(r, scripts::WAITING_SUFFIX),
        Arg::Joined(r, scripts::FENCE_SUFFIX),
    ];
    let read_keys = [
        Arg::Str(r),
        Arg::Joined(r, scripts::READERS_SUFFIX),
        Arg::Joined(r, scripts::WRITERS_SUFFIX),
        Arg::Joined(r, scripts::WAITING_SUFFIX),
    ];
    let granted = write_args(&writer, "");
    let other = Token::new();
    let waiting = write_args(&other, intent.as_str());
    let refused = read_args(&first, 1000);
    let withdraw = [
        Arg::Str("ZREM"),
        Arg::Joined(r, scripts::WRITERS_SUFFIX),
        Arg::Str(intent.as_str()),
    ];
    let script = |script, keys, args| Call::Script { script, keys, args };
    first_error(run(
        shared,
        mask,
        &[
            script(&scripts::WRITE, &write_keys, &granted),
            script(&scripts::READ, &read_keys, &refused),
            script(&scripts::WRITE, &write_keys, &waiting),
            Call::Command(&withdraw),
        ],
    ))?;
    first_error(
        Target::Mutex.with_release(r, writer.as_str(), true, |release| {
            run(shared, mask, &[release])
        }),
    )?;
    let (one, two) = (read_args(&first, 0), read_args(&second, 0));
    let extend = Target::Reader.extend_parts(r, second.as_str(), PROBE_TTL_MS);
    first_error(run(
        shared,
        mask,
        &[
            script(&scripts::READ, &read_keys, &one),
            script(&scripts::READ, &read_keys, &two),
            extend.call(),
        ],
    ))?;
    for token in [&first, &second] {
        first_error(
            Target::Reader.with_release(r, token.as_str(), true, |release| {
                run(shared, mask, &[release])
            }),
        )?;
    }
    let unmark = [Arg::Str("DEL"), Arg::Joined(r, scripts::WAITING_SUFFIX)];
    first_error(run(shared, mask, &[Call::Command(&unmark)]))
}

/// An election's paths: a candidate's grant (the counter read and the clock), the leader
/// record's write, the leader's extension, the reads of `leader()`, and a resignation that
/// announces.
fn election_probe(shared: &Shared, mask: u64, e: &str) -> Result<(), NodeError> {
    let token = Token::new();
    let grant_keys = [
        Arg::Str(e),
        Arg::Joined(e, scripts::FENCE_SUFFIX),
        Arg::Joined(e, scripts::WAITING_SUFFIX),
    ];
    let grant_args = [
        Arg::Str(token.as_str()),
        Arg::Int(PROBE_TTL_MS),
        Arg::Int(0),
    ];
    let record_keys = [Arg::Str(e), Arg::Joined(e, scripts::LEADER_SUFFIX)];
    let record_args = [
        Arg::Str(token.as_str()),
        Arg::Int(1),
        Arg::Int(1),
        Arg::Str("doctor"),
        Arg::Joined(e, scripts::ELECTED_SUFFIX),
    ];
    let target = Target::Leader(std::sync::Arc::default());
    let extend = target.extend_parts(e, token.as_str(), PROBE_TTL_MS);
    let read = [
        Arg::Str("HMGET"),
        Arg::Joined(e, scripts::LEADER_SUFFIX),
        Arg::Str("token"),
    ];
    let script = |script, keys, args| Call::Script { script, keys, args };
    let result = first_error(run(
        shared,
        mask,
        &[
            script(&scripts::LEADER_GRANT, &grant_keys, &grant_args),
            script(&scripts::LEADER_WRITE, &record_keys, &record_args),
            extend.call(),
            Call::Command(&read),
        ],
    ))
    .and_then(|()| {
        first_error(target.with_release(e, token.as_str(), true, |release| {
            run(shared, mask, &[release])
        }))
    });
    // Whatever was refused (a script stops at its first refused command, keeping what it did
    // before), leave nothing behind.
    let remove = [
        Arg::Str("DEL"),
        Arg::Str(e),
        Arg::Joined(e, scripts::LEADER_SUFFIX),
    ];
    let removed = first_error(run(shared, mask, &[Call::Command(&remove)]));
    result.and(removed)
}

/// A run-once job's paths: a run's start (the record looked for, the counter and the clock),
/// its completion (the record written), the record's read, and its removal.
fn once_probe(shared: &Shared, mask: u64, o: &str) -> Result<(), NodeError> {
    let token = Token::new();
    let run_key = format!("{o}{}doctor", scripts::RUN_INFIX);
    let k: &str = &run_key;
    let begin_keys = [
        Arg::Str(k),
        Arg::Joined(o, scripts::FENCE_SUFFIX),
        Arg::Joined(k, scripts::WAITING_SUFFIX),
        Arg::Joined(k, scripts::DONE_SUFFIX),
    ];
    let begin_args = [
        Arg::Str(token.as_str()),
        Arg::Int(PROBE_TTL_MS),
        Arg::Int(0),
    ];
    let complete_keys = [
        Arg::Str(k),
        Arg::Joined(k, scripts::WAITING_SUFFIX),
        Arg::Joined(k, scripts::DONE_SUFFIX),
    ];
    let complete_args = [
        Arg::Str(token.as_str()),
        Arg::Str("doctor"),
        Arg::Int(PROBE_TTL_MS),
        Arg::Int(1),
        Arg::Joined(k, scripts::RELEASED_SUFFIX),
        Arg::Int(0),
    ];
    let read = [
        Arg::Str("HMGET"),
        Arg::Joined(k, scripts::DONE_SUFFIX),
        Arg::Str("result"),
    ];
    let remove = [
        Arg::Str("DEL"),
        Arg::Str(k),
        Arg::Joined(k, scripts::DONE_SUFFIX),
    ];
    let script = |script, keys, args| Call::Script { script, keys, args };
    let result = first_error(run(
        shared,
        mask,
        &[
            script(&scripts::RUN_BEGIN, &begin_keys, &begin_args),
            script(&scripts::RUN_COMPLETE, &complete_keys, &complete_args),
            Call::Command(&read),
        ],
    ));
    // Whatever was refused, leave nothing behind that DEL may remove.
    let removed = first_error(run(shared, mask, &[Call::Command(&remove)]));
    result.and(removed)
}

/// A multi-lock over two keys: taken, extended and released.
fn multi_probe(shared: &Shared, mask: u64, p: &str) -> Result<(), NodeError> {
    let token = Token::new();
    let resources: std::sync::Arc<[std::sync::Arc<str>]> = [format!("{p}-m1"), format!("{p}-m2")]
        .into_iter()
        .map(std::sync::Arc::from)
        .collect();
    let keys: Vec<Arg<'_>> = resources.iter().map(|r| Arg::Str(r)).collect();
    let args = [
        Arg::Str(token.as_str()),
        Arg::Int(PROBE_TTL_MS),
        Arg::Int(0),
        Arg::Str(scripts::WAITING_SUFFIX),
        Arg::Str(""),
    ];
    let target = Target::Multi(std::sync::Arc::clone(&resources));
    let extend = target.extend_parts(p, token.as_str(), PROBE_TTL_MS);
    let acquire = Call::Script {
        script: &scripts::MULTI_ACQUIRE,
        keys: &keys,
        args: &args,
    };
    first_error(run(shared, mask, &[acquire, extend.call()]))?;
    first_error(target.with_release(p, token.as_str(), true, |release| {
        run(shared, mask, &[release])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_decides_and_statuses_order() {
        let check = |status| Check {
            node: None,
            name: "quorum",
            status,
            detail: String::new(),
        };
        let mut d = Diagnosis { checks: Vec::new() };
        assert_eq!(d.worst(), CheckStatus::Ok);
        d.checks = vec![check(CheckStatus::Ok), check(CheckStatus::Warn)];
        assert_eq!(d.worst(), CheckStatus::Warn);
        d.checks.push(check(CheckStatus::Fail));
        d.checks.push(check(CheckStatus::Ok));
        assert_eq!(d.worst(), CheckStatus::Fail);
        assert_eq!(
            check(CheckStatus::Warn).to_string(),
            "warn  all nodes  quorum: "
        );
    }

    #[test]
    fn versions_say_what_each_feature_needs() {
        let v = |s: &str| {
            version(&Facts {
                version: Some(s.into()),
                ..Facts::default()
            })
            .0
        };
        assert_eq!(v("7.0.15"), CheckStatus::Ok);
        assert_eq!(v("6.0.0"), CheckStatus::Ok);
        assert_eq!(v("5.0.7"), CheckStatus::Warn);
        assert_eq!(v("2.6.11"), CheckStatus::Fail);
        assert_eq!(version(&Facts::default()).0, CheckStatus::Warn);
    }

    #[test]
    fn clocks_agree_or_are_flagged() {
        assert!(clock_check(&[]).is_none());
        let ok = clock_check(&[("a", 0), ("b", 120_000)]).unwrap();
        assert_eq!(ok.status, CheckStatus::Ok);
        let skewed = clock_check(&[("a", -400_000), ("b", 0), ("c", 300_000)]).unwrap();
        assert_eq!(skewed.status, CheckStatus::Warn);
        assert!(skewed.detail.contains("c ahead of a"), "{}", skewed.detail);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_micros(310)), "310 µs");
        assert_eq!(human(Duration::from_micros(3100)), "3.10 ms");
        assert_eq!(human(Duration::from_millis(12)), "12 ms");
        assert_eq!(human(Duration::from_millis(3200)), "3.2 s");
        assert_eq!(human(Duration::from_secs(7500)), "2 h 5 min");
    }
}

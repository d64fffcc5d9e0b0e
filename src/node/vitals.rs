//! What a node's connection handshake tells about the assumptions Redlock rests on (nodes keep
//! their keys for the TTL, clocks run at about the same rate), and what the client does about
//! it: the restart quarantine, the eviction check and the clock check (docs/reliability.md,
//! "What the client checks").
//!
//! The handshake already costs a round trip (it loads the scripts); the questions asked here
//! ride in the same pipeline: `INFO server` (run id, uptime, version), `INFO memory` (the
//! eviction policy), `INFO persistence` (AOF on or off), `CONFIG GET appendfsync` (refused by
//! most ACL users: then the user's declaration decides) and `TIME` (the node's clock). A
//! refusal of any of them is not an error: that check just knows less.
//!
//! The quarantine is enforced at vote time, by [`Vitals::counts`]: one atomic load for a node
//! that is not quarantined, so the round itself makes no extra round trip and no extra work.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::Value;

use crate::command::{self, Arg};

/// How many replies [`pack`] asks for.
pub(crate) const QUESTIONS: usize = 5;

/// Appends the handshake's questions to `out`.
pub(crate) fn pack(out: &mut Vec<u8>) {
    for section in ["server", "memory", "persistence"] {
        command::pack(out, [Arg::Str("INFO"), Arg::Str(section)], 2);
    }
    let config = [Arg::Str("CONFIG"), Arg::Str("GET"), Arg::Str("appendfsync")];
    command::pack(out, config, 3);
    command::pack(out, [Arg::Str("TIME")], 1);
}

/// The checks' settings, from the factory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    /// How long a node whose data may be younger than the longest TTL sits out, from its
    /// start: the longest TTL plus its drift allowance. `None`: the quarantine is off.
    pub(crate) sit_out: Option<Duration>,
    /// The user declared every node durable (for nodes that will not say).
    pub(crate) declared_durable: bool,
    /// The clock drift factor: how far two clocks may drift apart, per unit of time.
    pub(crate) drift_factor: f64,
}

impl Default for Watch {
    fn default() -> Self {
        Self {
            sit_out: None,
            declared_durable: false,
            drift_factor: 0.01,
        }
    }
}

/// What the server said in a handshake (or to `doctor`): `None` where it would not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) run_id: Option<String>,
    pub(crate) version: Option<String>,
    /// `uptime_in_seconds`: the server's wall-clock second now minus the second it started
    /// in, so the process's age is more than `uptime - 1` s and less than `uptime + 1` s.
    pub(crate) uptime: Option<u64>,
    /// `role` (from `INFO replication`, which only `doctor` asks for).
    pub(crate) role: Option<String>,
    pub(crate) aof: Option<bool>,
    pub(crate) appendfsync: Option<String>,
    pub(crate) maxmemory: Option<u64>,
    pub(crate) policy: Option<String>,
    /// The node's wall clock (`TIME`), since the Unix epoch.
    pub(crate) time: Option<Duration>,
}

impl Facts {
    /// Reads the fields it knows from the text of an `INFO` reply (any section).
    pub(crate) fn read_info(&mut self, info: &Value) {
        let Some(text) = text(info) else { return };
        for line in text.lines() {
            let Some((name, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            match name {
                "run_id" => self.run_id = Some(value.to_owned()),
                "redis_version" => self.version = Some(value.to_owned()),
                "uptime_in_seconds" => self.uptime = value.parse().ok(),
                "role" => self.role = Some(value.to_owned()),
                "aof_enabled" => self.aof = Some(value == "1"),
                "maxmemory" => self.maxmemory = value.parse().ok(),
                "maxmemory_policy" => self.policy = Some(value.to_owned()),
                _ => {}
            }
        }
    }

    /// Reads the reply to `CONFIG GET appendfsync` (RESP2 array or RESP3 map).
    pub(crate) fn read_appendfsync(&mut self, reply: &Value) {
        let value = match reply {
            Value::Array(items) => items.get(1).and_then(text),
            Value::Map(pairs) => pairs.first().and_then(|(_, v)| text(v)),
            _ => None,
        };
        if let Some(v) = value {
            self.appendfsync = Some(v.to_ascii_lowercase());
        }
    }

    /// Reads the reply to `TIME`: seconds and microseconds.
    pub(crate) fn read_time(&mut self, reply: &Value) {
        if let Value::Array(items) = reply
            && let [secs, micros] = items.as_slice()
            && let (Some(secs), Some(micros)) = (number(secs), number(micros))
        {
            self.time = Some(Duration::from_secs(secs) + Duration::from_micros(micros % 1_000_000));
        }
    }

    /// The handshake's replies, in [`pack`]'s order.
    pub(crate) fn of_handshake(replies: &[Value]) -> Self {
        let mut facts = Self::default();
        if let [server, memory, persistence, fsync, time] = replies {
            facts.read_info(server);
            facts.read_info(memory);
            facts.read_info(persistence);
            facts.read_appendfsync(fsync);
            facts.read_time(time);
        }
        facts
    }

    /// Whether the node keeps every acknowledged write across a crash, given what the user
    /// declared; with the reason, for messages. What the server says beats the declaration:
    /// a declared node that says its AOF is off is not durable.
    pub(crate) fn durability(&self, declared: bool) -> (bool, String) {
        match (self.aof, self.appendfsync.as_deref()) {
            (Some(false), _) => (false, "AOF is off".into()),
            (Some(true), Some("always")) => (true, "AOF with appendfsync always".into()),
            (Some(true), Some(other)) => (
                false,
                format!("AOF with appendfsync {other}: a crash can lose the last writes"),
            ),
            (Some(true), None) if declared => (
                true,
                "declared durable (AOF on; appendfsync not readable)".into(),
            ),
            (Some(true), None) => (
                false,
                "AOF on, but appendfsync not readable (CONFIG GET refused) and not declared \
                 durable"
                    .into(),
            ),
            (None, _) if declared => (true, "declared durable (persistence not readable)".into()),
            (None, _) => (false, "persistence not readable (INFO refused)".into()),
        }
    }

    /// The eviction policy, when it can delete a key with a TTL (a held lock): `maxmemory` set
    /// and a `volatile-*` or `allkeys-*` policy.
    pub(crate) fn evicting_policy(&self) -> Option<&str> {
        let policy = self.policy.as_deref()?;
        let evicts = policy.starts_with("volatile-") || policy.starts_with("allkeys-");
        (evicts && self.maxmemory.is_some_and(|m| m > 0)).then_some(policy)
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// Why a node's "yes" does not count toward acquisitions for a while: its data may be younger
/// than the longest lease, so it may have forgotten a lease that another client still holds on
/// the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuarantineCause {
    /// First seen by this factory, it started less than the longest TTL ago, without durable
    /// persistence (a fresh node, or one restarted before this factory saw it).
    Young,
    /// Its `run_id` changed since this factory last saw it: it restarted, without durable
    /// persistence.
    Restarted,
    /// Its clock moved ahead of the client's by this much more than the drift allows, between
    /// two handshakes: every key it holds expired that much early.
    ClockJump(Duration),
}

impl fmt::Display for QuarantineCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Young => f.write_str("started recently without durable persistence"),
            Self::Restarted => f.write_str("restarted without durable persistence"),
            Self::ClockJump(ahead) => write!(f, "its clock jumped {ahead:?} ahead"),
        }
    }
}

/// Something about a node that puts a lock's guarantee at risk, seen when connecting: the
/// [`warning`](crate::event::NodeWarningEvent::warning) of
/// [`HandleEvent::on_node_warning`](crate::HandleEvent::on_node_warning), also logged with
/// `log::warn!`. Each is reported once when it starts, not at every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeWarning {
    /// The node's "yes" does not count toward any acquisition for `lasts`: see
    /// [`RedLockFactoryBuilder::longest_ttl`](crate::RedLockFactoryBuilder::longest_ttl).
    Quarantined {
        /// Why.
        cause: QuarantineCause,
        /// For how long, from the event.
        lasts: Duration,
    },
    /// The node may evict keys with a TTL, so it can delete a held lock: `maxmemory` is set
    /// and the policy is `volatile-*` or `allkeys-*`. Use `noeviction` on lock nodes.
    Evicts {
        /// `maxmemory-policy`.
        policy: String,
        /// `maxmemory`, in bytes.
        maxmemory: u64,
    },
    /// The node would not say its run id and uptime (`INFO` refused by its ACL), so the client
    /// cannot see it restart: grant the user `+info`, or declare the nodes durable.
    Unwatched,
    /// The nodes were declared durable, but this one says otherwise: it is quarantined after
    /// restarts like any non-durable node.
    NotDurable {
        /// What the server said.
        reason: String,
    },
}

impl NodeWarning {
    /// A short lowercase name (`"quarantined"`, `"evicts"`, `"unwatched"`, `"not_durable"`),
    /// fit for a metrics label.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Quarantined { .. } => "quarantined",
            Self::Evicts { .. } => "evicts",
            Self::Unwatched => "unwatched",
            Self::NotDurable { .. } => "not_durable",
        }
    }
}

impl fmt::Display for NodeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quarantined { cause, lasts } => write!(
                f,
                "{cause}: its yes votes do not count toward acquisitions for {:.1} s (restart \
                 quarantine: every lease it may have forgotten must expire first)",
                lasts.as_secs_f64()
            ),
            Self::Evicts { policy, maxmemory } => write!(
                f,
                "maxmemory {maxmemory} with maxmemory-policy {policy} can evict a held lock; \
                 use noeviction on lock nodes"
            ),
            Self::Unwatched => f.write_str(
                "INFO is refused, so restarts cannot be seen and an empty restart is not \
                 quarantined; grant the user +info, or declare the nodes durable",
            ),
            Self::NotDurable { reason } => write!(
                f,
                "declared durable, but the server says {reason}: it is quarantined after \
                 restarts"
            ),
        }
    }
}

/// One sample of the node's clock: its `TIME`, the client's instant when the reply arrived,
/// and how long the exchange took (the reply was made somewhere within it).
#[derive(Debug, Clone, Copy)]
struct Sample {
    node: Duration,
    at: Instant,
    spread: Duration,
}

/// What the checks remember between handshakes (cold: taken at connect time only).
#[derive(Debug, Default)]
struct Seen {
    run_id: Option<String>,
    /// The latest instant the current process can have started, by the tightest of its
    /// handshakes (each says `received - (uptime - 1 s)`: see [`Facts::uptime`]).
    started: Option<Instant>,
    sample: Option<Sample>,
    durable: Option<bool>,
    evicts: Option<String>,
    unwatched: bool,
    contradicted: bool,
    cause: Option<QuarantineCause>,
    version: Option<String>,
}

/// A node's standing against Redlock's assumptions.
#[derive(Debug)]
pub(crate) struct Vitals {
    /// The node's name, for logs.
    name: String,
    watch: Watch,
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the node's yes does not count toward
    /// acquisitions; 0 when it counts.
    until: AtomicU64,
    /// Yes votes to acquisitions not counted.
    discounted: AtomicU64,
    quarantines: AtomicU64,
    restarts: AtomicU64,
    clock_jumps: AtomicU64,
    seen: Mutex<Seen>,
}

/// What [`Vitals`] shows in [`NodeStats`](super::NodeStats).
#[derive(Debug, Clone, Default)]
pub(crate) struct Standing {
    pub(crate) quarantine: Option<Duration>,
    pub(crate) cause: Option<QuarantineCause>,
    pub(crate) quarantines: u64,
    pub(crate) discounted: u64,
    pub(crate) restarts: u64,
    pub(crate) clock_jumps: u64,
    pub(crate) durable: Option<bool>,
    pub(crate) evicts: Option<String>,
    pub(crate) version: Option<String>,
}

impl Vitals {
    pub(crate) fn new(name: &str, watch: Watch) -> Self {
        Self {
            name: name.to_owned(),
            watch,
            epoch: Instant::now(),
            until: AtomicU64::new(0),
            discounted: AtomicU64::new(0),
            quarantines: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            clock_jumps: AtomicU64::new(0),
            seen: Mutex::new(Seen::default()),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the node's yes counts toward an acquisition now. The hot path: one atomic load
    /// when the node is not quarantined.
    pub(crate) fn counts(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until == 0 || self.ended(until)
    }

    /// Whether the quarantine ending at `until` is over (and clears it if so).
    #[cold]
    fn ended(&self, until: u64) -> bool {
        if self.nanos(Instant::now()) < until {
            return false;
        }
        if self
            .until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            log::info!(
                "redmutex: node {}: its restart quarantine is over; its votes count again",
                self.name
            );
        }
        true
    }

    /// How long the quarantine still lasts, if the node is in one.
    pub(crate) fn left(&self) -> Option<Duration> {
        let until = self.until.load(Ordering::Acquire);
        let now = self.nanos(Instant::now());
        (until != 0 && now < until).then(|| Duration::from_nanos(until - now))
    }

    /// Counts a yes vote that did not count.
    pub(crate) fn discount(&self) {
        self.discounted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn standing(&self) -> Standing {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let quarantine = self.left();
        Standing {
            quarantine,
            cause: quarantine.and(seen.cause),
            quarantines: self.quarantines.load(Ordering::Relaxed),
            discounted: self.discounted.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            clock_jumps: self.clock_jumps.load(Ordering::Relaxed),
            durable: seen.durable,
            evicts: seen.evicts.clone(),
            version: seen.version.clone(),
        }
    }

    /// Why a yes of this node does not count now, for a round's error.
    pub(crate) fn reason(&self) -> String {
        let cause = self
            .seen
            .lock()
            .map(|s| s.cause)
            .unwrap_or_default()
            .unwrap_or(QuarantineCause::Young);
        let left = self.left().unwrap_or_default();
        format!(
            "quarantined: {cause}, its yes counts toward acquisitions in {:.1} s (restart \
             quarantine; see longest_ttl in docs/operations.md)",
            left.as_secs_f64()
        )
    }

    /// Takes in what a handshake found: `facts`, from an exchange sent at `sent` whose last
    /// reply arrived at `received`. Returns the warnings that start now.
    pub(crate) fn observe(
        &self,
        facts: &Facts,
        sent: Instant,
        received: Instant,
    ) -> Vec<NodeWarning> {
        let mut warnings = Vec::new();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.version.clone_from(&facts.version);
        let restarted = match (&seen.run_id, &facts.run_id) {
            (Some(old), Some(new)) => old != new,
            _ => false,
        };
        if restarted {
            self.restarts.fetch_add(1, Ordering::Relaxed);
            // The new process's start and clock are new series.
            seen.sample = None;
            seen.started = None;
        }
        if facts.run_id.is_some() {
            seen.run_id.clone_from(&facts.run_id);
        }

        // Eviction: reported when it starts (or its policy changes).
        let evicts = facts.evicting_policy().map(str::to_owned);
        if evicts != seen.evicts {
            if let Some(policy) = &evicts {
                warnings.push(NodeWarning::Evicts {
                    policy: policy.clone(),
                    maxmemory: facts.maxmemory.unwrap_or_default(),
                });
            }
            seen.evicts = evicts;
        }

        let (durable, reason) = facts.durability(self.watch.declared_durable);
        seen.durable = Some(durable);
        if self.watch.declared_durable && !durable && !seen.contradicted {
            seen.contradicted = true;
            warnings.push(NodeWarning::NotDurable { reason });
        }

        let Some(sit_out) = self.watch.sit_out else {
            return warnings;
        };
        // The restart quarantine: a node that may have lost its data sits out until every
        // lease it may have forgotten has expired: its start + the longest TTL + drift. Its
        // uptime is a difference of whole wall-clock seconds (the second now minus the second
        // it started in), so a node that says `uptime` may be up to a second younger: the
        // latest it can have started is `received - (uptime - 1 s)`. Every handshake with the
        // same process bounds it again, and the earliest bound holds (a later one must not
        // start a second quarantine).
        if !durable {
            match facts.uptime {
                Some(uptime) => {
                    let age = Duration::from_secs(uptime.saturating_sub(1));
                    let estimate = received.checked_sub(age);
                    let started = match (seen.started, estimate) {
                        (Some(old), Some(new)) => Some(old.min(new)),
                        (old, new) => new.or(old),
                    };
                    seen.started = started;
                    if let Some(end) = started.and_then(|s| s.checked_add(sit_out)) {
                        let cause = if restarted {
                            QuarantineCause::Restarted
                        } else {
                            QuarantineCause::Young
                        };
                        self.quarantine(&mut seen, end, received, cause, restarted, &mut warnings);
                    }
                }
                None if !seen.unwatched => {
                    seen.unwatched = true;
                    warnings.push(NodeWarning::Unwatched);
                }
                None => {}
            }
        }

        // The clock: between two samples of one process, its TIME must advance as our
        // monotonic clock does, within the drift allowance and the exchanges' spread.
        if let Some(node) = facts.time {
            let sample = Sample {
                node,
                at: received,
                spread: received.saturating_duration_since(sent),
            };
            if let Some(ahead) = seen
                .sample
                .and_then(|old| jumped_ahead(old, sample, self.watch.drift_factor))
            {
                self.clock_jumps.fetch_add(1, Ordering::Relaxed);
                if let Some(end) = received.checked_add(sit_out) {
                    let cause = QuarantineCause::ClockJump(ahead);
                    self.quarantine(&mut seen, end, received, cause, true, &mut warnings);
                }
            }
            seen.sample = Some(sample);
        }
        warnings
    }

    /// Puts the node in quarantine until `end` (never shortening one under way). A warning is
    /// reported when a quarantine starts, or when `news` (a restart, a clock jump) renews it.
    fn quarantine(
        &self,
        seen: &mut Seen,
        end: Instant,
        now: Instant,
        cause: QuarantineCause,
        news: bool,
        warnings: &mut Vec<NodeWarning>,
    ) {
        if end <= now {
            return;
        }
        let end_nanos = self.nanos(end).max(1);
        let old = self.until.fetch_max(end_nanos, Ordering::AcqRel);
        let was_on = old != 0 && old > self.nanos(now);
        if !was_on || news {
            self.quarantines
                .fetch_add(u64::from(!was_on), Ordering::Relaxed);
            seen.cause = Some(cause);
            warnings.push(NodeWarning::Quarantined {
                cause,
                lasts: end.saturating_duration_since(now),
            });
        }
    }
}

/// How far the node's clock ran ahead of ours between two samples, beyond the drift allowance
/// (`drift_factor` of the time between them, plus both exchanges' spread and Redis's 1 ms of
/// expiry precision); `None` when it kept time. A clock that ran behind lengthens keys, which
/// is safe for locks: it is only logged.
fn jumped_ahead(old: Sample, new: Sample, drift_factor: f64) -> Option<Duration> {
    let ours = new.at.saturating_duration_since(old.at);
    let allowance = Duration::try_from_secs_f64(ours.as_secs_f64() * drift_factor)
        .unwrap_or(Duration::MAX)
        .saturating_add(old.spread)
        .saturating_add(new.spread)
        .saturating_add(Duration::from_millis(2));
    match new.node.checked_sub(old.node) {
        Some(theirs) => theirs.checked_sub(ours).filter(|ahead| *ahead > allowance),
        None => {
            let behind = (old.node - new.node).saturating_add(ours);
            if behind > allowance {
                log::warn!(
                    "redmutex: a node's clock went back {behind:?} between two connections: \
                     its keys live longer than asked (safe for locks, but check its time sync)"
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn info(lines: &[&str]) -> Value {
        bulk(&format!("# Section\r\n{}\r\n", lines.join("\r\n")))
    }

    fn facts(run_id: &str, uptime: u64, aof: bool, fsync: Option<&str>) -> Facts {
        Facts {
            run_id: Some(run_id.into()),
            uptime: Some(uptime),
            aof: Some(aof),
            appendfsync: fsync.map(str::to_owned),
            ..Facts::default()
        }
    }

    fn watch(sit_out: Duration) -> Watch {
        Watch {
            sit_out: Some(sit_out),
            declared_durable: false,
            drift_factor: 0.01,
        }
    }

    #[test]
    fn a_handshake_is_read_whatever_the_server_refuses() {
        let refused =
            redis::parse_redis_value(b"-NOPERM this user has no permissions\r\n").unwrap();
        assert!(matches!(refused, Value::ServerError(_)), "{refused:?}");
        let replies = [
            info(&["redis_version:7.0.15", "run_id:abc", "uptime_in_seconds:42"]),
            info(&["maxmemory:1048576", "maxmemory_policy:allkeys-lru"]),
            info(&["aof_enabled:1"]),
            Value::Array(vec![bulk("appendfsync"), bulk("always")]),
            Value::Array(vec![bulk("1700000000"), bulk("250000")]),
        ];
        let f = Facts::of_handshake(&replies);
        assert_eq!(f.run_id.as_deref(), Some("abc"));
        assert_eq!(f.version.as_deref(), Some("7.0.15"));
        assert_eq!(f.uptime, Some(42));
        assert_eq!(f.evicting_policy(), Some("allkeys-lru"));
        assert!(f.durability(false).0);
        assert_eq!(f.time, Some(Duration::from_millis(1_700_000_000_250)));
        // An ACL user that may run none of it: nothing known, nothing fails.
        let nothing = Facts::of_handshake(&[
            refused.clone(),
            refused.clone(),
            refused.clone(),
            refused.clone(),
            refused,
        ]);
        assert_eq!(nothing, Facts::default());
        assert!(!nothing.durability(false).0);
        assert!(nothing.durability(true).0);
    }

    #[test]
    fn durability_believes_the_server_over_the_declaration() {
        assert!(!facts("a", 0, false, None).durability(true).0);
        assert!(!facts("a", 0, true, Some("everysec")).durability(true).0);
        assert!(facts("a", 0, true, None).durability(true).0);
        assert!(!facts("a", 0, true, None).durability(false).0);
        assert!(facts("a", 0, true, Some("always")).durability(false).0);
    }

    #[test]
    fn only_a_memory_limit_with_an_evicting_policy_is_flagged() {
        let mut f = Facts {
            policy: Some("allkeys-lru".into()),
            maxmemory: Some(0),
            ..Facts::default()
        };
        assert_eq!(f.evicting_policy(), None, "no limit: nothing is evicted");
        f.maxmemory = Some(1 << 20);
        assert_eq!(f.evicting_policy(), Some("allkeys-lru"));
        f.policy = Some("volatile-ttl".into());
        assert_eq!(f.evicting_policy(), Some("volatile-ttl"));
        f.policy = Some("noeviction".into());
        assert_eq!(f.evicting_policy(), None);
    }

    #[test]
    fn a_young_node_sits_out_until_its_start_plus_the_longest_ttl() {
        let v = Vitals::new("n", watch(60 * S));
        let now = Instant::now();
        let w = v.observe(&facts("a", 10, false, None), now, now);
        assert!(
            matches!(
                w.as_slice(),
                [NodeWarning::Quarantined { cause: QuarantineCause::Young, lasts }] if *lasts == 51 * S
            ),
            "{w:?}"
        );
        assert!(!v.counts());
        let left = v.left().unwrap();
        assert!(left <= 51 * S && left > 50 * S, "{left:?}");
        // The next connection to the same process: no new warning, same quarantine.
        let later = Instant::now();
        assert!(
            v.observe(&facts("a", 10, false, None), later, later)
                .is_empty()
        );
        assert_eq!(v.standing().quarantines, 1);
        // An old node, or a durable one, votes at once.
        let old = Vitals::new("n", watch(60 * S));
        assert!(
            old.observe(&facts("b", 61, false, None), now, now)
                .is_empty()
        );
        assert!(old.counts());
        let durable = Vitals::new("n", watch(60 * S));
        assert!(
            durable
                .observe(&facts("c", 0, true, Some("always")), now, now)
                .is_empty()
        );
        assert!(durable.counts() && durable.standing().durable == Some(true));
        // Switched off: nothing is quarantined.
        let off = Vitals::new("n", Watch::default());
        assert!(
            off.observe(&facts("d", 0, false, None), now, now)
                .is_empty()
        );
        assert!(off.counts());
    }

    /// `uptime_in_seconds` is the server's wall-clock second now minus the second it started
    /// in: a process started at 12:00:00.99 says 1 at 12:00:01.00, 10 ms later. Taken as a
    /// whole second of age, its quarantine ended up to a second early (seen under load: a lock
    /// granted 1.06 s after an empty restart with a longest TTL of 2 s).
    #[test]
    fn an_uptime_of_one_second_may_be_a_process_started_just_now() {
        let v = Vitals::new("n", watch(60 * S));
        let now = Instant::now();
        assert_eq!(v.observe(&facts("a", 1, false, None), now, now).len(), 1);
        let left = v.left().unwrap();
        assert!(left > 59 * S + 900 * MS, "sits out only {left:?} of 60 s");
    }

    #[test]
    fn a_quarantine_ends_when_its_time_is_up_and_a_restart_starts_another() {
        let v = Vitals::new("n", watch(300 * MS));
        let now = Instant::now();
        assert_eq!(v.observe(&facts("a", 0, false, None), now, now).len(), 1);
        assert!(!v.counts());
        std::thread::sleep(350 * MS);
        assert!(v.counts(), "still quarantined after its end");
        assert_eq!(v.left(), None);
        // Another connection to the same process, whose uptime (rounded down) still says 0:
        // its start is bounded by the first handshake, so no second quarantine begins.
        let later = Instant::now();
        assert!(
            v.observe(&facts("a", 0, false, None), later, later)
                .is_empty()
        );
        assert!(v.counts());
        assert_eq!(v.standing().quarantines, 1);
        // A restart (new run id): quarantined again, as a restart.
        let now = Instant::now();
        let w = v.observe(&facts("b", 0, false, None), now, now);
        assert!(
            matches!(
                w.as_slice(),
                [NodeWarning::Quarantined {
                    cause: QuarantineCause::Restarted,
                    ..
                }]
            ),
            "{w:?}"
        );
        assert!(!v.counts());
        let s = v.standing();
        assert_eq!((s.restarts, s.quarantines), (1, 2));
    }

    #[test]
    fn a_clock_that_jumps_ahead_quarantines_and_one_that_keeps_time_does_not() {
        let v = Vitals::new("n", watch(60 * S));
        let t0 = Instant::now();
        let mut f = facts("a", 1000, false, None);
        f.time = Some(1000 * S);
        assert!(v.observe(&f, t0, t0).is_empty());
        std::thread::sleep(20 * MS);
        // 20 ms later by our clock, 20 ms later by the node's (within the allowance).
        let t1 = Instant::now();
        f.time = Some(1000 * S + t1.duration_since(t0));
        assert!(v.observe(&f, t1, t1).is_empty());
        assert!(v.counts());
        // Then 5 s more than our clock: every key lost 5 s.
        std::thread::sleep(20 * MS);
        let t2 = Instant::now();
        f.time = Some(1000 * S + t2.duration_since(t0) + 5 * S);
        let w = v.observe(&f, t2, t2);
        assert!(
            matches!(
                w.as_slice(),
                [NodeWarning::Quarantined { cause: QuarantineCause::ClockJump(ahead), .. }]
                    if *ahead > 4900 * MS && *ahead <= 5 * S
            ),
            "{w:?}"
        );
        assert!(!v.counts());
        assert_eq!(v.standing().clock_jumps, 1);
        // Back in time: keys live longer; logged, not quarantined.
        let w = Vitals::new("n", watch(60 * S));
        f.time = Some(1000 * S);
        assert!(w.observe(&f, t0, t0).is_empty());
        f.time = Some(990 * S);
        assert!(w.observe(&f, t2, t2).is_empty());
        assert!(w.counts());
    }

    #[test]
    fn eviction_and_a_wrong_declaration_are_reported_once() {
        let v = Vitals::new(
            "n",
            Watch {
                declared_durable: true,
                ..Watch::default()
            },
        );
        let mut f = facts("a", 1000, false, None);
        f.maxmemory = Some(1 << 20);
        f.policy = Some("allkeys-lru".into());
        let now = Instant::now();
        let w = v.observe(&f, now, now);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter().any(
                |w| matches!(w, NodeWarning::Evicts { policy, .. } if policy == "allkeys-lru")
            )
        );
        assert!(
            w.iter()
                .any(|w| matches!(w, NodeWarning::NotDurable { .. }))
        );
        assert!(v.observe(&f, now, now).is_empty());
        assert_eq!(v.standing().evicts.as_deref(), Some("allkeys-lru"));
        f.policy = Some("noeviction".into());
        assert!(v.observe(&f, now, now).is_empty());
        assert_eq!(v.standing().evicts, None);
    }
}

//! One held lease: its token, what it believes about the nodes (the deadline), and every round
//! made on it afterwards (extend, renew, release).
//!
//! # The deadline rule
//!
//! The deadline is a lower bound on the expiry that a quorum of nodes really holds for the
//! token, at every instant. It is kept true by two facts and one rule:
//!
//! - a node's expiry for a token only grows: the acquisition sets it, the extend script never
//!   shortens it (`PEXPIRE` only when the new expiry is later), and only the release deletes it.
//!   So a round that failed, a reply that came late or never, a request that reached a node after
//!   a later round, or two rounds at once can only leave the nodes holding *longer* than the
//!   lease believes;
//! - a command sent after `start` and applied by a node with `ttl` leaves that node holding the
//!   token until at least `start + ttl` (minus the clock drift allowance);
//! - the deadline moves in one place, [`Lease::settle`]: it is raised (never lowered) to
//!   `start + ttl - drift` only when a quorum confirmed the extension before the old deadline
//!   passed; a failed round leaves it where it was. Loss sets it to the past.
//!
//! Every round on a lease is also serialised by the lease's round lock, so the nodes and the
//! lease always agree on which round came last. No user code runs while that lock is held:
//! losses are marked after it is released, and loss callbacks run on the factory's callback
//! thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use rand::rngs::SysRng;
use rand::{Rng, TryRng};

use super::election::Published;
use super::verdict::{Question, Timing, Verdict, decide};
use crate::command::Arg;
use crate::error::{Error, Result};
use crate::observe::trace::OpSpan;
use crate::observe::{self, ExtendFailedEvent, LossEvent};
use crate::queue::Hold;
use crate::round::{self, Call, Settle, Tally};
use crate::scripts;
use crate::shared::{Shared, check_ttl};

/// Random bytes in a token: 160 bits, as the Redlock page suggests (20 bytes of /dev/urandom).
const TOKEN_BYTES: usize = 20;

/// The longest token the token-level calls accept.
pub(crate) const MAX_TOKEN_LEN: usize = 512;

/// A lock token: 160 bits from the OS's CSPRNG, as 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token([u8; TOKEN_BYTES * 2]);

impl Token {
    pub(crate) fn new() -> Self {
        let mut raw = [0u8; TOKEN_BYTES];
        // Straight from the OS (getrandom): one syscall, and unlike a user-space generator it
        // cannot repeat itself in a forked child. Should the OS fail, ThreadRng (ChaCha12,
        // seeded from the OS) is still a CSPRNG.
        if SysRng.try_fill_bytes(&mut raw).is_err() {
            rand::rng().fill_bytes(&mut raw);
        }
        let digit = |n: u8| if n < 10 { b'0' + n } else { b'a' + n - 10 };
        let mut hex = [0u8; TOKEN_BYTES * 2];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(raw) {
            pair.copy_from_slice(&[digit(byte >> 4), digit(byte & 15)]);
        }
        Self(hex)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

pub use crate::observe::LossReason;

/// A callback run once when the lock is lost.
pub(crate) type LossCallback = Box<dyn FnOnce(LossReason) + Send + 'static>;

/// What becomes of a lease, seen by those waiting for its loss.
#[derive(Default)]
pub(crate) struct Outcome {
    /// `Some` once lost.
    pub(crate) lost: Option<LossReason>,
    /// Set once released (or dropped, or leaked) without loss: waiters stop waiting.
    pub(crate) ended: bool,
    /// Threads blocked in `LossSignal::wait*`: notify only when there are some (a notify is a
    /// system call even with nobody waiting).
    pub(crate) waiters: usize,
    pub(crate) callbacks: Vec<LossCallback>,
    /// Won through this factory's local queue: the lease is held here until this is dropped
    /// (at its end: released, lost, leaked or dropped), which wakes the next waiter in line.
    pub(crate) hold: Option<Hold>,
}

/// Per-lease settings chosen when the lock was acquired.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseOptions {
    /// The lease time used for renewals.
    pub(crate) ttl: Duration,
    /// Renew automatically.
    pub(crate) keep_alive: bool,
    /// With keep-alive: stop renewing at this instant.
    pub(crate) hold_until: Option<Instant>,
}

/// What a lease holds on the nodes: which keys its extend and release scripts act on. A new
/// kind of lease (a semaphore permit, a reader, several keys at once) is a new variant with its
/// scripts; everything else (rounds, verdict, deadline rule, keep-alive, loss, wake-up) is
/// shared.
///
/// The contract of the scripts: extend answers 1 (the nodes hold the token at least `ms` more;
/// never less than before) or 0 (not our token); release answers 0 (not ours), 1 (released) or 2
/// (released, and waiters were told on the lease name's channel); a semaphore's also answer -1
/// (the name says another permit count). Every one is safe to repeat (a round sends a command
/// again when a connection went before its reply came): extends never shorten, and a release
/// repeated after its first run deleted the key answers 0, which the release round counts as
/// no answer ([`Tally::doubt_resent_refusals`]).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A mutex: the lock key is the lease's name. Also a read-write lock's writer, which holds
    /// the lock key exactly as a mutex holder does.
    Mutex,
    /// A read-write lock's reader: the readers' marker in the lock key while it is the lone
    /// reader, else an entry of the name's readers set scored by its own expiry.
    Reader,
    /// A semaphore permit: slot `slot` of the `permits` slots of the semaphore named by the
    /// lease (`<name>:redmutex:permit:<slot>`); `slot == permits` stands for whichever slot holds
    /// the token (other than `except`, when below `permits`): a token-level call, or the
    /// take-back of a failed attempt.
    Permit {
        permits: u32,
        slot: u32,
        except: u32,
    },
    /// A multi-lock: every one of these resources' lock keys (in canonical order) holds the
    /// token. A node counts as holding the lease only if it holds all of them.
    Multi(Arc<[Arc<str>]>),
    /// A leader of an election: the lock key is the election's name, held as a mutex holder
    /// holds it, and the leader record beside it (`<name>:redmutex:leader`) lives as long.
    /// What the leader publishes (its value and its revision) is kept here.
    Leader(Arc<Published>),
    /// A run of a run-once job in `epoch`: `key` is the run's lease key
    /// (`<name>:redmutex:run:<epoch>`), held as a mutex's lock key; its completion record lives
    /// `retention`.
    Run {
        key: Arc<str>,
        epoch: Arc<str>,
        retention: Duration,
    },
}

/// A script call's parts, owned by the caller, borrowing the lease.
pub(crate) struct Parts<'a> {
    script: &'static scripts::Lua,
    keys: Vec<Arg<'a>>,
    args: Vec<Arg<'a>>,
}

impl Parts<'_> {
    pub(crate) fn call(&self) -> Call<'_> {
        Call::Script {
            script: self.script,
            keys: &self.keys,
            args: &self.args,
        }
    }
}

impl Target {
    /// Permit `slot` of a semaphore of `permits`.
    pub(crate) const fn permit(permits: u32, slot: u32) -> Self {
        Self::Permit {
            permits,
            slot,
            except: permits,
        }
    }

    /// Whichever permit of a semaphore of `permits` holds the token, except slot `except`
    /// (`permits`: none excepted).
    pub(crate) const fn any_permit(permits: u32, except: u32) -> Self {
        Self::Permit {
            permits,
            slot: permits,
            except,
        }
    }

    /// The error for nodes that refused a call on this target as made for another
    /// configuration: a semaphore used with another permit count.
    pub(crate) fn mismatch(&self, name: &str) -> Error {
        let permits = match self {
            Self::Permit { permits, .. } => permits.to_string(),
            _ => "?".to_owned(),
        };
        Error::InvalidConfig(format!(
            "semaphore {name:?} is in use with another number of permits on the nodes; this \
             handle has {permits} (every client of one semaphore must use the same count)"
        ))
    }

    /// The key a mutex-like target holds: the lease's name, or a run's own run key.
    fn lock_key<'a>(&'a self, name: &'a str) -> &'a str {
        match self {
            Self::Run { key, .. } => key,
            _ => name,
        }
    }

    /// The call that makes the nodes hold `token` at least `ms` more.
    pub(crate) fn extend_parts<'a>(&'a self, name: &'a str, token: &'a str, ms: u64) -> Parts<'a> {
        match self {
            // A run holds its run key as a mutex holds its name.
            Self::Mutex | Self::Run { .. } => Parts {
                script: &scripts::EXTEND,
                keys: vec![Arg::Str(self.lock_key(name))],
                args: vec![Arg::Str(token), Arg::Int(ms)],
            },
            Self::Reader => Parts {
                script: &scripts::READ_EXTEND,
                keys: vec![Arg::Str(name), Arg::Joined(name, scripts::READERS_SUFFIX)],
                args: vec![Arg::Str(token), Arg::Int(ms)],
            },
            Self::Permit { permits, slot, .. } => Parts {
                // KEYS: name. ARGV: token, ms, permits, slot prefix, slot.
                script: &scripts::PERMIT_EXTEND,
                keys: vec![Arg::Str(name)],
                args: vec![
                    Arg::Str(token),
                    Arg::Int(ms),
                    Arg::Int(u64::from(*permits)),
                    Arg::Joined(name, scripts::PERMIT_SUFFIX),
                    Arg::Int(u64::from(*slot)),
                ],
            },
            Self::Multi(resources) => Parts {
                // KEYS: the resources. ARGV: token, ms.
                script: &scripts::MULTI_EXTEND,
                keys: resources.iter().map(|r| Arg::Str(r)).collect(),
                args: vec![Arg::Str(token), Arg::Int(ms)],
            },
            Self::Leader(_) => Parts {
                // KEYS: lock, leader record. ARGV: token, ms.
                script: &scripts::LEADER_EXTEND,
                keys: vec![Arg::Str(name), Arg::Joined(name, scripts::LEADER_SUFFIX)],
                args: vec![Arg::Str(token), Arg::Int(ms)],
            },
        }
    }

    /// Hands `f` the call that releases `token` (announcing it to waiters of `name` when
    /// `announce`). No allocation for a mutex: this is on every cycle's path.
    pub(crate) fn with_release<R>(
        &self,
        name: &str,
        token: &str,
        announce: bool,
        f: impl FnOnce(Call<'_>) -> R,
    ) -> R {
        let announce = if announce {
            Announce::Yes
        } else {
            Announce::No
        };
        self.with_release_as(name, token, Tell::from(announce), f)
    }

    /// [`with_release`](Self::with_release), announcing as `announce` says. Only a mutex's
    /// release (a lock's, a writer's) can report waiters without announcing: the others
    /// announce for [`Announce::Quiet`]. `since` (0: none): the order set entry of the local
    /// queue's line that won the lease, which a mutex's release removes (see
    /// `scripts::RELEASE_SRC`). `handover` (a mutex's quiet release only): the hand-over mark
    /// of that line, its life in ms, and whether to leave it without looking for others'
    /// waiting mark (`blind`), which the release leaves instead of deleting the key where others
    /// wait (`scripts::HANDOVER_RELEASE_SRC`).
    pub(crate) fn with_release_as<R>(
        &self,
        name: &str,
        token: &str,
        tell: Tell<'_>,
        f: impl FnOnce(Call<'_>) -> R,
    ) -> R {
        let Tell {
            announce,
            since,
            handover,
        } = tell;
        let flag = Arg::Str(match (announce, self) {
            (Announce::No, _) => "0",
            (Announce::Quiet, Self::Mutex) => "2",
            _ => "1",
        });
        match self {
            Self::Mutex | Self::Run { .. } => {
                // KEYS: lock, waiting mark, order set. ARGV: token, announce (left out when
                // "1", the common case), since (only when there is one).
                let lock = self.lock_key(name);
                let keys = [
                    Arg::Str(lock),
                    Arg::Joined(lock, scripts::WAITING_SUFFIX),
                    Arg::Joined(lock, scripts::ORDER_SUFFIX),
                ];
                if let (Some((mark, ms, blind)), Announce::Quiet, Self::Mutex) =
                    (handover, announce, self)
                {
                    // ARGV: token, hand-over mark, mark ms, since (0: none; left out when 0 and
                    // not blind), blind ("1", only when blind).
                    let args = [
                        Arg::Str(token),
                        Arg::Str(mark),
                        Arg::Int(ms),
                        Arg::Int(since),
                        Arg::Str("1"),
                    ];
                    let args = match (blind, since > 0) {
                        (true, _) => &args[..],
                        (false, true) => &args[..4],
                        (false, false) => &args[..3],
                    };
                    return f(Call::Script {
                        script: &scripts::HANDOVER_RELEASE,
                        keys: &keys,
                        args,
                    });
                }
                let args = [Arg::Str(token), flag, Arg::Int(since)];
                let args = match (since > 0, flag) {
                    (true, _) => &args[..],
                    (false, Arg::Str("1")) => &args[..1],
                    (false, _) => &args[..2],
                };
                f(Call::Script {
                    script: &scripts::RELEASE,
                    keys: &keys,
                    args,
                })
            }
            Self::Reader => {
                // KEYS: lock, readers, writers, waiting mark. ARGV: token, channel, announce.
                let keys = [
                    Arg::Str(name),
                    Arg::Joined(name, scripts::READERS_SUFFIX),
                    Arg::Joined(name, scripts::WRITERS_SUFFIX),
                    Arg::Joined(name, scripts::WAITING_SUFFIX),
                ];
                let args = [
                    Arg::Str(token),
                    Arg::Joined(name, scripts::RELEASED_SUFFIX),
                    flag,
                ];
                f(Call::Script {
                    script: &scripts::READ_RELEASE,
                    keys: &keys,
                    args: &args,
                })
            }
            Self::Permit {
                permits,
                slot,
                except,
            } => {
                // KEYS: name, waiting mark. ARGV: token, channel, announce, permits, slot
                // prefix, slot, except.
                let keys = [Arg::Str(name), Arg::Joined(name, scripts::WAITING_SUFFIX)];
                let args = [
                    Arg::Str(token),
                    Arg::Joined(name, scripts::RELEASED_SUFFIX),
                    flag,
                    Arg::Int(u64::from(*permits)),
                    Arg::Joined(name, scripts::PERMIT_SUFFIX),
                    Arg::Int(u64::from(*slot)),
                    Arg::Int(u64::from(*except)),
                ];
                f(Call::Script {
                    script: &scripts::PERMIT_RELEASE,
                    keys: &keys,
                    args: &args,
                })
            }
            Self::Multi(resources) => {
                // KEYS: the resources. ARGV: token, channel suffix, announce, waiting mark
                // suffix.
                let keys: Vec<Arg<'_>> = resources.iter().map(|r| Arg::Str(r)).collect();
                let args = [
                    Arg::Str(token),
                    Arg::Str(scripts::RELEASED_SUFFIX),
                    flag,
                    Arg::Str(scripts::WAITING_SUFFIX),
                ];
                f(Call::Script {
                    script: &scripts::MULTI_RELEASE,
                    keys: &keys,
                    args: &args,
                })
            }
            Self::Leader(_) => {
                // KEYS: lock, waiting mark, leader record. ARGV: token, channel, announce,
                // election channel.
                let keys = [
                    Arg::Str(name),
                    Arg::Joined(name, scripts::WAITING_SUFFIX),
                    Arg::Joined(name, scripts::LEADER_SUFFIX),
                ];
                let args = [
                    Arg::Str(token),
                    Arg::Joined(name, scripts::RELEASED_SUFFIX),
                    flag,
                    Arg::Joined(name, scripts::ELECTED_SUFFIX),
                ];
                f(Call::Script {
                    script: &scripts::LEADER_RELEASE,
                    keys: &keys,
                    args: &args,
                })
            }
        }
    }
}

/// Whether a release wakes the waiters of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce {
    /// No: the take-back of a failed attempt (the lock is still held elsewhere).
    No,
    /// Yes, when a waiting mark says someone waits.
    Yes,
    /// No, though it still reports a waiting mark: the next waiter of this process's local
    /// queue takes the lock at once, and other processes' waiters could not get it.
    Quiet,
}

/// What a release round tells the waiters: whether it announces, the order set entry it
/// removes (`since`, 0 for none: the local queue's line that won the lease, see
/// `scripts::RELEASE_SRC`), and, for a quiet release whose next holder takes a hand-over mark
/// over, that mark, its life in ms and whether it is left blind (see
/// `scripts::HANDOVER_RELEASE_SRC`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tell<'a> {
    pub(crate) announce: Announce,
    pub(crate) since: u64,
    pub(crate) handover: Option<(&'a str, u64, bool)>,
}

impl From<Announce> for Tell<'_> {
    fn from(announce: Announce) -> Self {
        Self {
            announce,
            since: 0,
            handover: None,
        }
    }
}

/// The state guarded by a lease's round lock.
#[derive(Debug)]
pub(crate) struct Slot {
    /// False once released, dropped or leaked: no round may follow.
    pub(crate) live: bool,
    /// The keep-alive entry renewing or watching this lease.
    pub(crate) entry: Option<u64>,
}

/// Locks a mutex, ignoring poisoning (nothing here can be left half-updated by a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One held lock.
pub(crate) struct Lease {
    pub(crate) shared: Arc<Shared>,
    /// The name errors, logs and wake-ups use (the resource; a semaphore's name).
    pub(crate) resource: Arc<str>,
    /// What it holds on the nodes.
    pub(crate) target: Target,
    pub(crate) token: Token,
    pub(crate) fencing: Option<u64>,
    pub(crate) options: LeaseOptions,
    /// Reference point of `deadline`.
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the validity ends. Only [`settle`](Self::settle)
    /// raises it.
    deadline: AtomicU64,
    /// Set once a round found that a quorum no longer holds our token, or the lease ran out.
    lost: AtomicBool,
    /// The nodes any round of this lease (its acquisition included) was written to: only they
    /// may hold its token, so only they are owed its release when they cannot be reached.
    written: AtomicU64,
    /// Held for every round on this lease: rounds never overlap, and release never races a
    /// renewal.
    slot: Mutex<Slot>,
    pub(crate) outcome: Mutex<Outcome>,
    pub(crate) outcome_changed: Condvar,
}

/// How a renewal round went for one lease.
#[derive(Debug)]
pub(crate) enum Renewal {
    /// Renewed for this TTL.
    Renewed(Duration),
    /// Not renewed this time (nodes failing or slow, or another round on the lease was under
    /// way); try again soon while validity lasts.
    Retry,
    /// The hold limit leaves nothing worth renewing: let the lease run out, then signal.
    HoldLimit,
    /// Released, or lost (the loss is marked): forget it.
    Done,
}

impl Lease {
    pub(crate) fn new(
        shared: Arc<Shared>,
        resource: Arc<str>,
        target: Target,
        token: Token,
        fencing: Option<u64>,
        options: LeaseOptions,
        deadline: Instant,
    ) -> Self {
        let epoch = Instant::now().min(deadline);
        // Until told otherwise (`written_to`), any node may hold it.
        let written = shared.nodes.all();
        let nanos = deadline.saturating_duration_since(epoch).as_nanos();
        shared.observer.counters.held.incr();
        Self {
            shared,
            resource,
            target,
            token,
            fencing,
            options,
            epoch,
            deadline: AtomicU64::new(u64::try_from(nanos).unwrap_or(u64::MAX)),
            lost: AtomicBool::new(false),
            written: AtomicU64::new(written),
            slot: Mutex::new(Slot {
                live: true,
                entry: None,
            }),
            outcome: Mutex::new(Outcome::default()),
            outcome_changed: Condvar::new(),
        }
    }

    /// The lease, with the nodes its acquisition was written to (the only ones, so far, that
    /// may hold its token).
    #[must_use]
    pub(crate) fn written_to(self, mask: u64) -> Self {
        self.written.store(mask, Ordering::Release);
        self
    }

    /// The nodes its rounds were written to so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// To whom and for how long its release is owed when a node cannot be reached.
    pub(crate) fn owing(&self) -> Owing {
        Owing {
            ttl: self.options.ttl,
            nodes: self.written(),
        }
    }

    /// Notes the nodes a round on the lease was written to.
    fn wrote(&self, mask: u64) {
        self.written.fetch_or(mask, Ordering::AcqRel);
    }

    /// The end of the validity (the epoch, i.e. the past, once lost).
    pub(crate) fn deadline(&self) -> Instant {
        if self.lost.load(Ordering::Acquire) {
            return self.epoch;
        }
        let nanos = self.deadline.load(Ordering::Acquire);
        self.epoch
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.epoch)
    }

    pub(crate) fn validity(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }

    /// The keep-alive bookkeeping, under the round lock.
    pub(crate) fn slot(&self) -> MutexGuard<'_, Slot> {
        lock(&self.slot)
    }

    /// Whether the lease is still live, without waiting: `None` while a round holds its lock.
    pub(crate) fn live_now(&self) -> Option<bool> {
        match self.slot.try_lock() {
            Ok(slot) => Some(slot.live),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner().live),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The one place the deadline moves after an acquisition: judges an extension round for
    /// `ttl` that began at `start`, while the validity ran to `old_deadline`. Only a quorum
    /// that confirmed the extension before `old_deadline` raises the deadline, to
    /// `start + ttl - drift` (every confirming node applied the command after `start`); any other
    /// outcome leaves it where it was, which stays a lower bound because nodes' expiries never
    /// shrink (see the module docs). It never lowers the deadline.
    ///
    /// It marks nothing lost: callers do, with [`noting_loss`](Self::noting_loss), after
    /// releasing the round lock.
    fn settle(
        &self,
        tally: &Tally,
        start: Instant,
        ttl: Duration,
        old_deadline: Instant,
    ) -> Result<()> {
        let end = Instant::now();
        let drift = self.shared.drift(ttl);
        let timing = Timing {
            ttl,
            elapsed: end.saturating_duration_since(start),
            drift,
        };
        match decide(&self.shared, tally, Question::Holds, Some(timing)) {
            Verdict::Won(_) if end < old_deadline => {
                if let Some(proven) = proven_until(&self.shared, start, ttl) {
                    let nanos = proven.saturating_duration_since(self.epoch).as_nanos();
                    self.deadline
                        .fetch_max(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::AcqRel);
                }
                Ok(())
            }
            Verdict::Won(_) => Err(Error::Expired {
                resource: self.resource.to_string(),
            }),
            Verdict::TooLate => Err(Error::TooLate {
                resource: self.resource.to_string(),
                elapsed: timing.elapsed,
            }),
            Verdict::Refused if self.ran_out() => Err(Error::Expired {
                resource: self.resource.to_string(),
            }),
            Verdict::Refused => Err(Error::LockLost {
                resource: self.resource.to_string(),
            }),
            Verdict::Unknown => Err(no_quorum(&self.shared, &self.resource, tally)),
        }
    }

    /// Extends the lease so that the nodes hold it at least `ttl` from now (never shorter than
    /// they already do). One round, under the round lock.
    pub(crate) fn extend(&self, ttl: Duration) -> Result<()> {
        check_ttl("extension", ttl, self.shared.config.drift_factor)?;
        self.shared.check_longest("extension", ttl)?;
        let span = OpSpan::extend(&self.resource);
        let result = span.in_scope(|| {
            let slot = self.slot();
            let result = if slot.live {
                self.extend_locked(ttl)
            } else {
                Err(Error::Expired {
                    resource: self.resource.to_string(),
                })
            };
            drop(slot);
            result.map_err(|e| self.noting_loss(e))
        });
        let observer = &self.shared.observer;
        match &result {
            Ok(()) => {
                observer.counters.extensions.incr();
                span.outcome("extended");
            }
            Err(e) => {
                observer.counters.extension_failures.incr();
                span.outcome(observe::outcome(e));
                observer.inline("on_extend_failed", |h| {
                    h.on_extend_failed(&ExtendFailedEvent {
                        resource: &self.resource,
                        keep_alive: false,
                        error: e,
                    });
                });
            }
        }
        result
    }

    fn extend_locked(&self, ttl: Duration) -> Result<()> {
        let old_deadline = self.deadline();
        let start = Instant::now();
        if start >= old_deadline {
            return Err(Error::Expired {
                resource: self.resource.to_string(),
            });
        }
        let parts = self
            .target
            .extend_parts(&self.resource, self.token.as_str(), millis(ttl));
        let tally = round::round(
            &self.shared.nodes,
            parts.call(),
            self.shared.nodes.all(),
            round::int_reply,
            Settle::Holds(self.shared.config.quorum),
        );
        self.wrote(tally.written);
        log::debug!(
            "redmutex: extend {:?}: {}/{} extended, {} failed, {:?}",
            self.resource,
            tally.yes,
            self.shared.nodes.len(),
            tally.failures.len(),
            start.elapsed()
        );
        self.settle(&tally, start, ttl, old_deadline)
    }

    /// Records that the lease was won through the local queue: `hold` is dropped at its end.
    pub(crate) fn keep_hold(&self, hold: Hold) {
        let mut outcome = lock(&self.outcome);
        if outcome.ended || outcome.lost.is_some() {
            drop(outcome);
            drop(hold);
        } else {
            outcome.hold = Some(hold);
        }
    }

    /// Takes the lease out of service before its release: no round may follow. Waits for a
    /// round under way on it. Returns its keep-alive entry, for the caller to unschedule.
    pub(crate) fn retire(&self) -> Option<u64> {
        let mut slot = self.slot();
        slot.live = false;
        slot.entry.take()
    }

    /// Releases the lease (after [`retire`](Self::retire)): one round, under the round lock.
    /// A loss found here is marked (after the lock is released); otherwise the loss signal
    /// ends.
    pub(crate) fn release(&self) -> Result<()> {
        // The next waiter of our local queue takes it at once, unless its line has had its
        // turns: other processes' waiters need not be woken for it.
        // Its attempt takes the lock over from a hand-over mark that the release leaves where
        // others wait, so that no other process's attempt finds the lock free in between.
        let (quiet, since, handover) = lock(&self.outcome)
            .hold
            .as_ref()
            .map_or((false, 0, None), |h| {
                (h.next_takes_it(), h.since(), h.hand_over())
            });
        let announce = if quiet {
            Announce::Quiet
        } else {
            Announce::Yes
        };
        // Only a mutex's key (a lock's, a writer's) takes the mark.
        let handover = handover.filter(|_| quiet && matches!(self.target, Target::Mutex));
        self.end_with(|lease| {
            let waited = release_within(
                &lease.shared,
                &lease.target,
                &lease.resource,
                lease.token.as_str(),
                Tell {
                    announce,
                    since,
                    handover: handover.as_ref().map(|h| (&*h.mark, h.ms, h.blind)),
                },
                lease.owing(),
            )?;
            if waited && let Some(hold) = &lock(&lease.outcome).hold {
                // Before the hold's end wakes the next head: others waited for this turn (and
                // the nodes that saw them hold our line's hand-over mark).
                hold.others_waited(handover.is_some());
            }
            Ok(())
        })
    }

    /// Ends the lease (after [`retire`](Self::retire)) with the last round `f` makes (a release,
    /// or a run's completion), under the round lock, judged as a release is: `NotHeld` becomes
    /// the loss it shows (`Expired` or `LockLost`), which is marked; otherwise the loss signal
    /// ends.
    pub(crate) fn end_with<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let slot = self.slot();
        let result = f(self);
        drop(slot);
        let result = match result {
            Ok(t) => Ok(t),
            Err(Error::NotHeld { .. }) if self.ran_out() => Err(Error::Expired {
                resource: self.resource.to_string(),
            }),
            Err(Error::NotHeld { .. }) => Err(Error::LockLost {
                resource: self.resource.to_string(),
            }),
            Err(e) => Err(e),
        }
        .map_err(|e| self.noting_loss(e));
        self.mark_ended();
        result
    }

    /// Marks the lease lost if `e` says it is, and hands `e` back.
    pub(crate) fn noting_loss(&self, e: Error) -> Error {
        match e {
            Error::LockLost { .. } => self.mark_lost(LossReason::TokenGone),
            Error::Expired { .. } => self.mark_lost(LossReason::Expired),
            _ => {}
        }
        e
    }

    /// Whether the lease ended by running out (rather than by its token disappearing).
    fn ran_out(&self) -> bool {
        match lock(&self.outcome).lost {
            Some(reason) => reason != LossReason::TokenGone,
            None => Instant::now() >= self.deadline(),
        }
    }

    /// Records the loss, once: the lease turns invalid at once, then waiters are woken and the
    /// callbacks are handed to the callback thread. Never call it holding the round lock.
    pub(crate) fn mark_lost(&self, reason: LossReason) {
        if self.lost.swap(true, Ordering::AcqRel) {
            return;
        }
        log::warn!("redmutex: lost the lock on {:?}: {reason}", self.resource);
        self.shared.observer.counters.lost(reason);
        let resource = Arc::clone(&self.resource);
        // Queued before the callbacks: the handler hears of the loss first.
        self.shared.deliver("on_loss", move |h| {
            h.on_loss(&LossEvent {
                resource: &resource,
                reason,
            });
        });
        let hold;
        let callbacks = {
            let mut outcome = lock(&self.outcome);
            outcome.lost = Some(reason);
            if outcome.waiters > 0 {
                self.outcome_changed.notify_all();
            }
            // Whoever waits behind it in this process may try the nodes now.
            hold = outcome.hold.take();
            std::mem::take(&mut outcome.callbacks)
        };
        drop(hold);
        if !callbacks.is_empty() {
            self.shared.notifier.run(
                "loss callbacks",
                Box::new(move || {
                    for callback in callbacks {
                        callback(reason);
                    }
                }),
            );
        }
    }

    /// Records the end of the lease without loss (released, or leaked): loss waiters stop
    /// waiting and callbacks are dropped unrun.
    pub(crate) fn mark_ended(&self) {
        let hold;
        let callbacks = {
            let mut outcome = lock(&self.outcome);
            hold = outcome.hold.take();
            if !outcome.ended {
                self.shared.observer.counters.held.decr();
            }
            outcome.ended = true;
            if outcome.waiters > 0 {
                self.outcome_changed.notify_all();
            }
            std::mem::take(&mut outcome.callbacks)
        };
        // Dropped outside the lock: a callback may own a guard, whose drop releases it.
        drop(callbacks);
        // The next waiter in this process's line may take it now.
        drop(hold);
    }

    /// The TTL to renew with: the lease's own, shortened to end at the hold limit; `None`
    /// once a renewal would add less than a tenth of the TTL before the limit (the lease then
    /// runs out at or a little before the limit). Renewing for a sliver would gain nothing
    /// and, on a slow round, turn a hold limit into an expiry.
    fn renewal_ttl(&self, now: Instant) -> Option<Duration> {
        let ttl = self.options.ttl;
        match self.options.hold_until {
            None => Some(ttl),
            Some(limit) => {
                let left = limit.saturating_duration_since(now);
                let gain = left.saturating_sub(self.validity());
                (gain >= ttl / 10).then(|| ttl.min(left))
            }
        }
    }
}

impl Drop for Lease {
    /// A lease dropped without its end being marked (none is, today) is no longer held.
    fn drop(&mut self) {
        let ended = match self.outcome.get_mut() {
            Ok(outcome) => outcome.ended,
            Err(poisoned) => poisoned.into_inner().ended,
        };
        if !ended {
            self.shared.observer.counters.held.decr();
        }
    }
}

/// The deadline rule's one formula: nodes that applied, after `start`, a command holding our
/// token for `ttl` hold it until at least `start + ttl - drift` (by our clock, allowing for
/// theirs). Every lease's deadline (an acquisition's, an extension's, a downgrade's) comes from
/// here. `None` when that instant cannot be represented.
pub(crate) fn proven_until(shared: &Shared, start: Instant, ttl: Duration) -> Option<Instant> {
    start.checked_add(ttl.saturating_sub(shared.drift(ttl)))
}

/// A duration in whole milliseconds, as Redis takes it.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Renews a batch of kept-alive leases in one pipelined round (one round trip for all).
/// Leases with another round under way are skipped this time (`Retry`). Losses are marked
/// after every round lock is released.
pub(crate) fn renew(shared: &Shared, leases: &[Arc<Lease>]) -> Vec<Renewal> {
    let span = OpSpan::renew(leases.len());
    let out = span.in_scope(|| renew_batch(shared, leases));
    span.outcome("renewed");
    out
}

/// [`renew`], in its span.
fn renew_batch(shared: &Shared, leases: &[Arc<Lease>]) -> Vec<Renewal> {
    let now = Instant::now();
    let mut out: Vec<Renewal> = leases.iter().map(|_| Renewal::Retry).collect();
    // (index, lease, slot held for the round, ttl, deadline before the round)
    let mut held = Vec::with_capacity(leases.len());
    let mut expired = Vec::new();
    for (i, lease) in leases.iter().enumerate() {
        let slot = match lease.slot.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // An extend or a release is under way: try again soon.
            Err(TryLockError::WouldBlock) => continue,
        };
        let Some(o) = out.get_mut(i) else { continue };
        if !slot.live {
            *o = Renewal::Done;
            continue;
        }
        let old_deadline = lease.deadline();
        if now >= old_deadline {
            // Ran out before we could renew it (marked below, with every lock released).
            drop(slot);
            expired.push(lease);
            *o = Renewal::Done;
            continue;
        }
        match lease.renewal_ttl(now) {
            Some(ttl) => held.push((i, lease, slot, ttl, old_deadline)),
            None => *o = Renewal::HoldLimit,
        }
    }
    if held.is_empty() {
        for lease in expired {
            lease.mark_lost(LossReason::Expired);
        }
        return out;
    }
    let parts: Vec<Parts<'_>> = held
        .iter()
        .map(|(_, lease, _, ttl, _)| {
            lease
                .target
                .extend_parts(&lease.resource, lease.token.as_str(), millis(*ttl))
        })
        .collect();
    let calls: Vec<Call<'_>> = parts.iter().map(Parts::call).collect();
    let start = Instant::now();
    let tallies = round::batch(
        &shared.nodes,
        &calls,
        shared.nodes.all(),
        round::int_reply,
        Settle::Holds(shared.config.quorum),
    );
    let mut lost = Vec::new();
    let mut failed = Vec::new();
    let counters = &shared.observer.counters;
    for ((i, lease, slot, ttl, old_deadline), tally) in held.into_iter().zip(tallies) {
        lease.wrote(tally.written);
        let result = lease.settle(&tally, start, ttl, old_deadline);
        drop(slot);
        let renewal = match result {
            Ok(()) => {
                counters.renewals.incr();
                log::debug!("redmutex: renewed {:?} for {ttl:?}", lease.resource);
                Renewal::Renewed(ttl)
            }
            // Nodes failing or slow: try again soon, while validity lasts.
            Err(e @ (Error::NoQuorum { .. } | Error::TooLate { .. }))
                if Instant::now() < lease.deadline() =>
            {
                counters.renewal_failures.incr();
                log::debug!(
                    "redmutex: renewal of {:?} failed ({} yes); retrying",
                    lease.resource,
                    tally.yes
                );
                failed.push((Arc::clone(&lease.resource), e));
                Renewal::Retry
            }
            Err(e) => {
                counters.renewal_failures.incr();
                lost.push((lease, e));
                Renewal::Done
            }
        };
        if let Some(o) = out.get_mut(i) {
            *o = renewal;
        }
    }
    // Every round lock is released: marking may hand callbacks over, which may drop guards of
    // this very batch (their release takes their round lock).
    for (resource, e) in failed {
        renewal_failed(shared, resource, e);
    }
    for lease in expired {
        lease.mark_lost(LossReason::Expired);
    }
    for (lease, e) in lost {
        renewal_failed(shared, Arc::clone(&lease.resource), e.clone());
        if matches!(
            lease.noting_loss(e),
            Error::NoQuorum { .. } | Error::TooLate { .. }
        ) {
            lease.mark_lost(LossReason::Expired);
        }
    }
    out
}

/// Tells the event handler, on the callback thread, that a renewal failed.
fn renewal_failed(shared: &Shared, resource: Arc<str>, error: Error) {
    shared.deliver("on_extend_failed", move |h| {
        h.on_extend_failed(&ExtendFailedEvent {
            resource: &resource,
            keep_alive: true,
            error: &error,
        });
    });
}

/// The error for a round that too few nodes answered.
pub(crate) fn no_quorum(shared: &Shared, resource: &str, tally: &Tally) -> Error {
    Error::NoQuorum {
        resource: resource.to_owned(),
        answered: tally.answered(),
        agreed: tally.yes,
        needed: shared.config.quorum,
        nodes: shared.nodes.len(),
        failures: tally.failures.clone(),
    }
}

/// Which nodes a release is owed to when they cannot be reached, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owing {
    /// The longest the nodes may hold the token: how long the release is owed.
    pub(crate) ttl: Duration,
    /// The nodes that may hold the token (were ever sent a command that gives it): a node down
    /// all along cannot, and is owed nothing.
    pub(crate) nodes: u64,
}

/// Runs the release script of `target` for `token` on the nodes in `mask`; `announce` wakes
/// the waiters of `name` (a held lock's release), or not (a failed attempt's take-back).
///
/// A node of `owing.nodes` that gave no answer may still hold the token, or be about to (a
/// command it queued while it was stopped may still run): it is owed the release, which it is
/// sent before any round uses a connection to it that has not sent it (see `Node::owe`), so
/// that a key it holds blocks nobody for the rest of its TTL.
pub(crate) fn release_round<'a>(
    shared: &Shared,
    target: &Target,
    name: &str,
    token: &str,
    mask: u64,
    tell: impl Into<Tell<'a>>,
    owing: Owing,
) -> Tally {
    let tell = tell.into();
    // Nodes whose replies to an earlier round are still unread (an acquisition decided
    // without them): that round's command may reach them after this release. Unless such a
    // node says yes to the release (then the grant had landed), the release is owed to it
    // again, to run after the grant: at once when it answered no or nothing in this round, or
    // when its late answer is read (`round_owing`, which owes the release to any node whose
    // late answer is not a yes).
    let unread = round::unread_marks(&shared.nodes, mask & owing.nodes);
    let until = || {
        let ttl = owing.ttl;
        Instant::now()
            .checked_add(ttl.saturating_add(shared.drift(ttl)))
            .unwrap_or_else(Instant::now)
    };
    // As long as the token may live: what a late answer other than a yes owes is owed for.
    let owe_late = owing.ttl.saturating_add(shared.drift(owing.ttl));
    let mut tally = target.with_release_as(name, token, tell, |call| {
        round::round_owing(
            &shared.nodes,
            call,
            mask,
            round::release_reply,
            Settle::Holds(shared.config.quorum),
            owe_late,
        )
    });
    let unreached = tally.failed & mask & owing.nodes;
    // A node sent the release twice that found the token gone may have deleted it the first
    // time: not a "no".
    tally.doubt_resent_refusals(&shared.nodes);
    let answered_no: Vec<(usize, u64)> = unread
        .into_iter()
        .filter(|(i, _)| (tally.refused | tally.failed) & (1 << i) != 0)
        .collect();
    if unreached != 0 || !answered_no.is_empty() {
        let until = until();
        // Announced: a key that blocked others for a while may have waiters by then.
        target.with_release(name, token, true, |call| {
            if unreached != 0 {
                round::owe(&shared.nodes, call, unreached, until);
            }
            if !answered_no.is_empty() {
                round::owe_after(&shared.nodes, call, &answered_no, until);
            }
        });
    }
    tally
}

/// Releases the lock `token` holds on `resource`, announcing it to waiters: the release of a
/// token given by the user (a node that cannot be reached is owed it for the factory's TTL).
///
/// `Err(NotHeld)` when a quorum is known not to hold the token; `Err(InvalidConfig)` when the
/// nodes refused it as made for another configuration (a semaphore's permit count).
pub(crate) fn release(shared: &Shared, target: &Target, resource: &str, token: &str) -> Result<()> {
    let owing = Owing {
        ttl: shared.config.ttl,
        nodes: shared.nodes.all(),
    };
    release_within(shared, target, resource, token, Announce::Yes.into(), owing).map(drop)
}

/// [`release`], owing it to the nodes of `owing` that cannot be reached: `Ok(true)` when the
/// release found the resource marked as waited for.
fn release_within(
    shared: &Shared,
    target: &Target,
    resource: &str,
    token: &str,
    tell: Tell<'_>,
    owing: Owing,
) -> Result<bool> {
    let span = OpSpan::release(resource);
    let result = span.in_scope(|| release_once(shared, target, resource, token, tell, owing));
    let counters = &shared.observer.counters;
    match &result {
        Ok(_) => {
            counters.releases.incr();
            span.outcome("released");
        }
        Err(e) => {
            counters.release_failures.incr();
            span.outcome(observe::outcome(e));
        }
    }
    result
}

/// [`release`], in its span.
fn release_once(
    shared: &Shared,
    target: &Target,
    resource: &str,
    token: &str,
    tell: Tell<'_>,
    owing: Owing,
) -> Result<bool> {
    let start = Instant::now();
    let tally = release_round(
        shared,
        target,
        resource,
        token,
        shared.nodes.all(),
        tell,
        owing,
    );
    let took = start.elapsed();
    log::debug!(
        "redmutex: release {resource:?}: {}/{} deleted, {} failed",
        tally.yes,
        shared.nodes.len(),
        tally.failures.len()
    );
    // Our token on a quorum means those nodes held it without a break (nobody else can write
    // our token, and an expired key is gone), so nobody else held the lock meanwhile.
    match decide(shared, &tally, Question::Holds, None) {
        Verdict::Won(_) | Verdict::TooLate => {
            if tally.aux_yes > 0 {
                match target {
                    Target::Multi(resources) => {
                        let members: Vec<&str> = resources.iter().map(|r| &**r).collect();
                        shared.waker.released_to_waiters(&members, took);
                    }
                    _ => shared.waker.released_to_waiters(&[resource], took),
                }
            }
            Ok(tally.aux_yes > 0)
        }
        _ if tally.mismatched > 0 => Err(target.mismatch(resource)),
        Verdict::Refused => Err(Error::NotHeld {
            resource: resource.to_owned(),
        }),
        Verdict::Unknown => Err(no_quorum(shared, resource, &tally)),
    }
}

/// Makes the nodes hold `token`'s lock on `resource` at least `ttl` from now; returns the
/// validity this proves (`ttl - round time - drift`).
pub(crate) fn extend_token(
    shared: &Shared,
    target: &Target,
    resource: &str,
    token: &str,
    ttl: Duration,
) -> Result<Duration> {
    check_ttl("extension", ttl, shared.config.drift_factor)?;
    shared.check_longest("extension", ttl)?;
    let span = OpSpan::extend(resource);
    let result = span.in_scope(|| extend_token_once(shared, target, resource, token, ttl));
    let counters = &shared.observer.counters;
    match &result {
        Ok(_) => {
            counters.extensions.incr();
            span.outcome("extended");
        }
        Err(e) => {
            counters.extension_failures.incr();
            span.outcome(observe::outcome(e));
        }
    }
    result
}

/// [`extend_token`], in its span.
fn extend_token_once(
    shared: &Shared,
    target: &Target,
    resource: &str,
    token: &str,
    ttl: Duration,
) -> Result<Duration> {
    let parts = target.extend_parts(resource, token, millis(ttl));
    let start = Instant::now();
    let tally = round::round(
        &shared.nodes,
        parts.call(),
        shared.nodes.all(),
        round::int_reply,
        Settle::Holds(shared.config.quorum),
    );
    let timing = Timing {
        ttl,
        elapsed: start.elapsed(),
        drift: shared.drift(ttl),
    };
    match decide(shared, &tally, Question::Holds, Some(timing)) {
        Verdict::Won(validity) => Ok(validity),
        _ if tally.mismatched > 0 => Err(target.mismatch(resource)),
        Verdict::TooLate => Err(Error::TooLate {
            resource: resource.to_owned(),
            elapsed: timing.elapsed,
        }),
        Verdict::Refused => Err(Error::NotHeld {
            resource: resource.to_owned(),
        }),
        Verdict::Unknown => Err(no_quorum(shared, resource, &tally)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_160_bit_hex_and_distinct() {
        let a = Token::new();
        let b = Token::new();
        assert_eq!(a.as_str().len(), 40);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a.as_str(), b.as_str());
        let many: std::collections::HashSet<String> = (0..10_000)
            .map(|_| Token::new().as_str().to_owned())
            .collect();
        assert_eq!(many.len(), 10_000);
    }
}

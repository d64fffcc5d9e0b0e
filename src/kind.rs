//! The kinds of lease: one marker type per kind of handle and guard, which
//! [`Handle`](crate::Handle) and [`LeaseGuard`](crate::LeaseGuard) are generic over.
//!
//! This is `lock_api`'s shape: one `Mutex<R, T>` written once over a `RawMutex` trait, and
//! `parking_lot::Mutex<T>` a type alias of it. Here the handle and the guard are written once,
//! and each synchronizer is a kind:
//!
//! | kind | handle | guard |
//! |---|---|---|
//! | [`Lock`] | [`RedLock`](crate::RedLock) | [`RedLockGuard`](crate::RedLockGuard) |
//! | [`Read`] | `Handle<Read>` ([`RwLock::reader`](crate::RwLock::reader)) | [`RwLockReadGuard`](crate::RwLockReadGuard) |
//! | [`Write`] | `Handle<Write>` ([`RwLock::writer`](crate::RwLock::writer)) | [`RwLockWriteGuard`](crate::RwLockWriteGuard) |
//! | [`Permit`] | [`Semaphore`](crate::Semaphore) | [`SemaphorePermit`](crate::SemaphorePermit) |
//! | [`Multi`] | [`MultiLock`](crate::MultiLock) | [`MultiLockGuard`](crate::MultiLockGuard) |
//! | [`Leader`] | [`Election`](crate::Election) | [`LeaderGuard`](crate::LeaderGuard) |
//! | [`Once`] | [`RunOnce`](crate::RunOnce) | [`RunGuard`](crate::RunGuard) |
//! | [`ReadWrite`] | [`RwLock`](crate::RwLock) (its two sides are `Read` and `Write`) | none |
//!
//! The traits say what a kind can do, as `lock_api`'s `RawMutexTimed` or `RawMutexFair` do:
//! every [`Kind`] has the builders, an [`Acquire`] kind has the acquire family and a guard, a
//! [`Fenced`] kind can hand out fencing tokens. They are sealed: the kinds are this crate's.
//!
//! User code names a kind only to be generic over it:
//!
//! ```no_run
//! use std::time::Duration;
//! use redmutex::{Handle, LeaseGuard, Result, kind::Acquire};
//!
//! /// Takes any lease (a lock, a read or write lock, a permit, a multi-lock) for a long job.
//! fn take_for_long<K: Acquire>(handle: &Handle<K>) -> Result<LeaseGuard<K>> {
//!     let guard = handle.acquire_timeout(Duration::from_secs(30))?;
//!     guard.extend(Duration::from_secs(60))?;
//!     Ok(guard)
//! }
//! # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
//! let _lock = take_for_long(&factory.create_lock("reindex"))?;
//! let _permit = take_for_long(&factory.create_semaphore("exports", 4))?;
//! # Ok::<(), redmutex::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

/// A kind of handle: what [`Handle<K>`](crate::Handle) is a handle of. Every kind has the
/// builders (`with_ttl`, `with_keep_alive`, `with_max_hold`) and the name and TTL getters.
///
/// Sealed: implemented by the marker types of this module only.
pub trait Kind: sealed::Kind {}

/// A kind whose handle takes leases: [`Handle<K>`](crate::Handle) has the acquire family
/// (`acquire`, `try_acquire`, `acquire_timeout`, `acquire_with`, `release`, and the token-level
/// `release_token`, `extend_token`), and hands out [`LeaseGuard<K>`](crate::LeaseGuard).
///
/// Sealed (as [`Kind`] is): [`Lock`], [`Read`], [`Write`], [`Permit`], [`Multi`], [`Leader`]
/// and [`Once`].
pub trait Acquire: Kind {}

/// A kind whose grants can carry a fencing token: its handle has `with_fencing`. Sealed.
///
/// Fencing orders the *exclusive* holders of a name, so it exists for [`Lock`], [`Write`] (and
/// [`ReadWrite`], for its writers) and [`Multi`]. A reader or a permit shares the name with other
/// holders, whom a token could not order: their guards' `fencing_token` is always `None`. A
/// [`Leader`] (its term) and a [`Once`] run always have one, so they have no switch.
pub trait Fenced: Kind {}

/// A lock: one holder of a resource at a time ([`RedLock`](crate::RedLock)).
#[derive(Debug, Clone)]
pub struct Lock(pub(crate) ());

/// A read-write lock's shared side: any number of readers, while no writer holds it.
#[derive(Debug, Clone)]
pub struct Read(pub(crate) ());

/// A read-write lock's exclusive side: one writer, and no reader. On the nodes a writer is a
/// [`Lock`] holder of the same name.
#[derive(Debug, Clone)]
pub struct Write(pub(crate) ());

/// A read-write lock ([`RwLock`](crate::RwLock)): it takes nothing itself; its two sides are
/// [`Read`] and [`Write`].
#[derive(Debug, Clone)]
pub struct ReadWrite(pub(crate) ());

/// A semaphore's permit: at most `permits` holders of a name at once
/// ([`Semaphore`](crate::Semaphore)).
#[derive(Debug, Clone)]
pub struct Permit {
    pub(crate) permits: u32,
}

/// Several resources locked together, all or nothing ([`MultiLock`](crate::MultiLock)).
#[derive(Debug, Clone)]
pub struct Multi {
    /// Sorted, without duplicates.
    pub(crate) resources: Arc<[Arc<str>]>,
}

/// A candidate for an election's leadership ([`Election`](crate::Election)): the leader holds
/// the election's name alone, with a term (a fencing token) and a published value.
#[derive(Debug, Clone)]
pub struct Leader {
    /// The value a campaign publishes.
    pub(crate) value: Arc<str>,
}

/// A run of a run-once job in one epoch ([`RunOnce`](crate::RunOnce)): one runner at a time,
/// and none once the run's completion is recorded.
#[derive(Debug, Clone)]
pub struct Once {
    /// The epoch (`""`: the job's only run).
    pub(crate) epoch: Arc<str>,
    /// The run's lease key, `<name>:redmutex:run:<epoch>`.
    pub(crate) key: Arc<str>,
    /// How long the completion record is kept.
    pub(crate) retention: Duration,
}

/// Each kind's [`Spec`](sealed::Spec): all there is to write for a kind outside the table of
/// `Spec`'s arms.
macro_rules! spec {
    ($kind:ty, $k:ident => $spec:expr) => {
        impl Kind for $kind {}

        impl sealed::Kind for $kind {
            fn spec(&self) -> sealed::Spec<'_> {
                let $k = self;
                $spec
            }
        }
    };
}

spec!(Lock, _k => sealed::Spec::Lock);
spec!(Read, _k => sealed::Spec::Read);
spec!(Write, _k => sealed::Spec::Write);
// A read-write lock takes nothing itself: it is checked as its writer.
spec!(ReadWrite, _k => sealed::Spec::Write);
spec!(Permit, k => sealed::Spec::Permit(k.permits));
spec!(Multi, k => sealed::Spec::Multi(&k.resources));
spec!(Leader, k => sealed::Spec::Leader(&k.value));
spec!(Once, k => sealed::Spec::Once(k));

impl Acquire for Lock {}
impl Acquire for Read {}
impl Acquire for Write {}
impl Acquire for Permit {}
impl Acquire for Multi {}
impl Acquire for Leader {}
impl Acquire for Once {}
impl Fenced for Lock {}
impl Fenced for Write {}
impl Fenced for ReadWrite {}
impl Fenced for Multi {}

/// A kind's short name (`Lock`), for `Debug`.
pub(crate) fn kind_name<K>() -> &'static str {
    let name = std::any::type_name::<K>();
    name.rsplit("::").next().unwrap_or(name)
}

/// What each kind plugs into the handle and the guard: its [`Spec`](sealed::Spec), on which
/// every difference between kinds is decided in one place, as the protocol's `Target` is for
/// what a lease holds on the nodes. A new kind is a marker type above, a `spec!` line, a `Spec`
/// variant with its arms, and its protocol attempt.
pub(crate) mod sealed {
    use std::fmt;
    use std::sync::Arc;

    use crate::error::Result;
    use crate::local::Want;
    use crate::protocol::acquire::{Attempt, Mark, Request, Wait, attempt, try_once, wait_for};
    use crate::protocol::election::{self, check_value};
    use crate::protocol::lease::{Lease, Target};
    use crate::protocol::semaphore::{SemaphoreRequest, announced_slot};
    use crate::protocol::{multi, once, rw, semaphore};
    use crate::queue::Mode;
    use crate::shared::{Shared, check_name, check_permits, check_resource, check_resources};

    /// The part of [`Kind`](super::Kind) the crate keeps to itself.
    pub trait Kind: fmt::Debug + Clone + Send + Sync + 'static {
        /// What the kind is, for the code written once.
        fn spec(&self) -> Spec<'_>;
    }

    /// A kind as the handle's code sees it.
    #[derive(Debug, Clone, Copy)]
    pub enum Spec<'a> {
        Lock,
        Read,
        /// Also a read-write lock's own handle, which takes nothing itself and is checked as its
        /// writer.
        Write,
        /// A semaphore of this many permits.
        Permit(u32),
        /// A multi-lock of these resources (sorted, without duplicates).
        Multi(&'a Arc<[Arc<str>]>),
        /// A candidate of an election, campaigning with this value.
        Leader(&'a Arc<str>),
        /// A run of a run-once job.
        Once(&'a super::Once),
    }

    impl<'a> Spec<'a> {
        /// Checks the handle's name and the kind's own settings, before any I/O.
        pub(crate) fn check(self, name: &str) -> Result<()> {
            match self {
                Self::Lock | Self::Read | Self::Write => check_resource(name),
                Self::Permit(permits) => {
                    check_name("semaphore name", name)?;
                    check_permits(permits)
                }
                // The name is made of the resources.
                Self::Multi(resources) => check_resources(resources),
                Self::Leader(value) => {
                    check_resource(name)?;
                    check_value("leader value", value)
                }
                Self::Once(run) => {
                    check_name("job name", name)?;
                    once::check(&run.key, run.retention)
                }
            }
        }

        /// One attempt of this kind's protocol. `mark`: the caller will wait, so mark the name
        /// as waited for; `woken_by`: what the release that woke the waiter announced.
        pub(crate) fn attempt(
            self,
            shared: &Arc<Shared>,
            req: &Request<'_>,
            mark: Mark<'_>,
            woken_by: Option<&[u8]>,
        ) -> Attempt<Lease> {
            let Mark { on, .. } = mark;
            match self {
                Self::Lock => attempt(shared, req, mark),
                // Fencing tokens go to writers only.
                Self::Read => {
                    let req = Request {
                        fencing: false,
                        ..*req
                    };
                    rw::read_attempt(shared, &req, on)
                }
                // A single attempt, which records no intent (waiting writers: `wait`).
                Self::Write => rw::write_attempt(shared, req, None),
                Self::Permit(permits) => {
                    let req = SemaphoreRequest {
                        base: *req,
                        permits,
                    };
                    semaphore::attempt(shared, &req, on, announced_slot(woken_by, permits))
                }
                Self::Multi(resources) => multi::attempt(shared, req, resources, on),
                Self::Leader(value) => election::attempt(shared, req, on, value),
                Self::Once(run) => {
                    once::attempt(shared, req, on, &run.key, &run.epoch, run.retention)
                }
            }
        }

        /// One attempt that does not wait: `Ok(None)` when the lease is held elsewhere.
        pub(crate) fn try_once(
            self,
            shared: &Arc<Shared>,
            req: &Request<'_>,
        ) -> Result<Option<Lease>> {
            try_once(shared, req.resource, || {
                self.attempt(shared, req, Mark::default(), None)
            })
        }

        /// Waits as `wait` says, in the protocol's one waiting loop, woken by the releases of
        /// the name (of every resource, for a multi-lock).
        pub(crate) fn wait(
            self,
            shared: &Arc<Shared>,
            req: &Request<'_>,
            wait: &Wait<'_>,
        ) -> Result<Lease> {
            let name: &str = req.resource;
            let one = [name];
            let many: Vec<&str>;
            let (members, mode): (&[&str], Mode) = match self {
                // A waiting writer records its intent on every attempt, and withdraws it when it
                // gives up.
                Self::Write => return rw::write(shared, req, wait),
                Self::Multi(resources) => {
                    many = resources.iter().map(|r| &**r).collect();
                    (&many, Mode::Exclusive)
                }
                // Woken by the release of the run key (a completion, or a runner giving up).
                Self::Once(run) => {
                    many = vec![&*run.key];
                    (&many, Mode::Alone)
                }
                Self::Lock => (&one, Mode::Exclusive),
                Self::Read => (&one, Mode::Shared),
                Self::Permit(_) => (&one, Mode::Permit),
                // A candidate waits on the nodes by itself (see `Mode::Alone`).
                Self::Leader(_) => (&one, Mode::Alone),
            };
            // A lock's attempts take a hand-over mark over (`Mark::handover`).
            let takes_mark = matches!(self, Self::Lock);
            wait_for(
                shared,
                name,
                members,
                (mode, takes_mark),
                wait,
                |mark, woken_by| self.attempt(shared, req, mark, woken_by),
            )
        }

        /// What a token of this kind holds on the nodes, for the token-level calls.
        pub(crate) fn target(self) -> Target {
            match self {
                // On the wire a writer is a lock holder.
                Self::Lock | Self::Write => Target::Mutex,
                Self::Read => Target::Reader,
                // Whichever slot holds the token.
                Self::Permit(permits) => Target::any_permit(permits, permits),
                Self::Multi(resources) => Target::Multi(Arc::clone(resources)),
                Self::Leader(_) => Target::Leader(Arc::default()),
                Self::Once(run) => Target::Run {
                    key: Arc::clone(&run.key),
                    epoch: Arc::clone(&run.epoch),
                    retention: run.retention,
                },
            }
        }

        /// What an acquisition of this kind would wait for, for the self-wait check.
        pub(crate) fn wants(self, name: &'a str) -> Want<'a> {
            match self {
                // A leader holds the name's lock key.
                Self::Lock | Self::Write | Self::Permit(_) | Self::Leader(_) => Want::Alone(name),
                // A run holds its own key, which no read lease names.
                Self::Read | Self::Once(_) => Want::Shared,
                Self::Multi(resources) => Want::All(resources),
            }
        }

        /// Whether `try_acquire` too refuses a lease a read lease of this thread blocks: only
        /// the write side does, as an upgrade is refused in every form (a try would only ever
        /// find it busy).
        pub(crate) fn try_refuses_upgrade(self) -> bool {
            matches!(self, Self::Write)
        }

        /// The kind's own fields in the handle's `Debug`.
        pub(crate) fn debug_fields(self, d: &mut fmt::DebugStruct<'_, '_>) {
            match self {
                Self::Permit(permits) => d.field("permits", &permits),
                Self::Multi(resources) => d.field("resources", resources),
                Self::Leader(value) => d.field("value", value),
                Self::Once(run) => d
                    .field("epoch", &run.epoch)
                    .field("retention", &run.retention),
                _ => d,
            };
        }
    }
}

//! `RunOnce` and `RunGuard`: the run-once kind of the one [`Handle`] and [`LeaseGuard`] (a
//! piece of work started at most once per job and epoch, across processes and hosts, with its
//! completion recorded on a quorum), and what a run-once job adds to them (start, run, record;
//! a run's completion).

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result, RunRecord};
use crate::guard::LeaseGuard;
use crate::handle::Handle;
use crate::keeper::Runtime;
use crate::kind;
use crate::protocol::acquire::Wait;
use crate::protocol::election::check_value;
use crate::protocol::lease::Target;
use crate::protocol::once::{self, run_key};

/// How long a run's completion record is kept unless
/// [`with_retention`](Handle::with_retention) says otherwise: a day.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// A job that runs at most once per epoch (a cron slot's time, a migration's version), across
/// processes and hosts, created by
/// [`RedLockFactory::create_run_once`](crate::RedLockFactory::create_run_once).
///
/// The first caller of an epoch runs it; the others learn that it ran (and how: the
/// [`RunRecord`]) or that it is running, and either wait for its record or return at once.
///
/// # What it guarantees, and what it cannot
///
/// A run is a lease on the run key of its epoch, and its **completion record** (a small
/// result, the run's fencing token, the time) is written to a quorum when the runner calls
/// [`complete`](LeaseGuard::complete). While the leases hold (the assumptions of every lease
/// here: see `docs/features.md`):
///
/// - **at most one start per lease**: no two callers run an epoch at once, and none starts it
///   once a node holds its record;
/// - but a runner that dies (or gives up: a dropped [`RunGuard`]) before its completion is
///   recorded leaves no record, and once its lease ends another caller runs the epoch again.
///   The work may then have been done twice, or half done once. So **work that must take
///   effect exactly once needs an idempotent write** (keyed by the epoch), **or a write fenced
///   by the run's [`fencing_token`](LeaseGuard::fencing_token)**: the store refuses a token
///   smaller than one it has seen, which keeps the dead runner's late writes out.
///
/// Records expire after the job's [retention](Handle::with_retention) (a day by default):
/// after that an epoch can run again, so keep it longer than any caller may arrive late.
///
/// It is a [`Handle`] of the [`Once`](kind::Once) kind, created with keep-alive on (a run is
/// renewed while it works): its acquire family takes the run of the handle's
/// [epoch](Handle::with_epoch), with [`Error::AlreadyRan`] once that ran.
///
/// # On the nodes
///
/// The run key `<name>:redmutex:run:<epoch>` (a lock key, with the runner's token), its
/// completion record `<name>:redmutex:run:<epoch>:redmutex:done`, its waiting marker and
/// release channel, and the job's fencing counter `<name>:redmutex:fence`: everything starts
/// with the name, so an ACL limited to an application's prefix covers it.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use redmutex::{Outcome, RedLockFactory};
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
/// let report = factory
///     .create_run_once("reports:nightly")
///     .with_retention(Duration::from_secs(7 * 24 * 3600));
/// // Every host's cron fires this; one of them builds the report.
/// match report.run("2026-12-01", |run| {
///     // ... build it, writing with run.fencing_token() ...
///     "42 pages".to_owned()
/// })? {
///     Outcome::Ran(record) => println!("built: {}", record.result),
///     Outcome::AlreadyRan(record) => println!("built elsewhere: {}", record.result),
/// }
/// # Ok::<(), redmutex::Error>(())
/// ```
pub type RunOnce = Handle<kind::Once>;

/// One run of a [`RunOnce`] job: a [`LeaseGuard`] of the run-once kind, with the whole lease
/// API (its [`fencing_token`](LeaseGuard::fencing_token) is always set), plus
/// [`complete`](LeaseGuard::complete) and the [`epoch`](LeaseGuard::epoch).
///
/// Complete it to record the run. Dropping it (or releasing it) without completing ends the
/// run unrecorded: the next caller of the epoch runs it again.
pub type RunGuard = LeaseGuard<kind::Once>;

/// What [`RunOnce::start`] found.
#[derive(Debug)]
#[must_use = "a run that is not completed is released, and runs again elsewhere"]
pub enum Start {
    /// This caller runs it: do the work, then [`complete`](LeaseGuard::complete) the run.
    Run(RunGuard),
    /// It ran (here or elsewhere): its record.
    Ran(RunRecord),
    /// It is running elsewhere (only when not waiting, or when the wait ran out).
    Running,
}

/// What [`RunOnce::run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This call ran the work; the record it wrote.
    Ran(RunRecord),
    /// The work had already run (elsewhere, or earlier); its record.
    AlreadyRan(RunRecord),
}

/// A run-once job named `name`: keep-alive on, the default retention, the epoch `""`.
pub(crate) fn run_once(runtime: Arc<Runtime>, name: Arc<str>) -> RunOnce {
    let epoch: Arc<str> = Arc::from("");
    let run = kind::Once {
        key: run_key(&name, &epoch),
        epoch,
        retention: DEFAULT_RETENTION,
    };
    Handle::new(runtime, name, run).with_keep_alive(true)
}

/// What a run-once job adds to the handle: the epoch, the retention, and starting a run.
impl RunOnce {
    /// This job's handle for `epoch` (a cron slot's time, a version: anything that names one
    /// run), for its acquire family. The calls below take the epoch as an argument.
    #[must_use]
    pub fn with_epoch(self, epoch: impl Into<Arc<str>>) -> Self {
        let epoch = epoch.into();
        let run = kind::Once {
            key: run_key(self.resource(), &epoch),
            epoch,
            retention: self.kind().retention,
        };
        self.as_kind(run)
    }

    /// This job with completion records kept for `retention` (1 ms to about 34 years; a day by
    /// default). An invalid one is reported by the first call that uses it.
    #[must_use]
    pub fn with_retention(self, retention: Duration) -> Self {
        let run = kind::Once {
            retention,
            ..self.kind().clone()
        };
        self.as_kind(run)
    }

    /// The epoch of this handle's acquire family (`""` unless [`with_epoch`](Self::with_epoch)).
    #[must_use]
    pub fn epoch(&self) -> &str {
        &self.kind().epoch
    }

    /// How long completion records are kept.
    #[must_use]
    pub fn retention(&self) -> Duration {
        self.kind().retention
    }

    /// Starts the run of `epoch` if one attempt can, and never waits: [`Start::Run`] (run it),
    /// [`Start::Ran`] (it ran: the record) or [`Start::Running`] (elsewhere, now).
    ///
    /// This function blocks for one attempt (a round, plus the fencing round when it starts, or
    /// a read of the record when it ran).
    ///
    /// # Errors
    ///
    /// As [`Handle::try_acquire`].
    pub fn try_start(&self, epoch: impl Into<Arc<str>>) -> Result<Start> {
        match self.clone().with_epoch(epoch).try_acquire() {
            Ok(Some(run)) => Ok(Start::Run(run)),
            Ok(None) => Ok(Start::Running),
            Err(e) => ran(e),
        }
    }

    /// Starts the run of `epoch`, waiting while it runs elsewhere: [`Start::Run`] when this
    /// caller is to run it (first, or after a runner that died without completing), or
    /// [`Start::Ran`] with the record once it ran.
    ///
    /// This function blocks as [`Handle::acquire`] does, woken by the runner's completion.
    ///
    /// # Errors
    ///
    /// As [`Handle::acquire`].
    pub fn start(&self, epoch: impl Into<Arc<str>>) -> Result<Start> {
        self.start_with(epoch, Wait::forever())
    }

    /// Starts the run of `epoch`, waiting as `wait` says while it runs elsewhere;
    /// [`Start::Running`] when the wait ran out.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the wait was called off; otherwise as [`Handle::acquire`].
    pub fn start_with(&self, epoch: impl Into<Arc<str>>, wait: Wait<'_>) -> Result<Start> {
        match self.clone().with_epoch(epoch).acquire_with(wait) {
            Ok(run) => Ok(Start::Run(run)),
            Err(Error::Timeout { .. }) => Ok(Start::Running),
            Err(e) => ran(e),
        }
    }

    /// Runs `work` for `epoch` unless it ran: starts it (waiting while it runs elsewhere), and
    /// records what `work` returns as the run's result (at most
    /// [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN) bytes).
    ///
    /// If `work` panics, the run is released unrecorded (the panic goes on), and the next
    /// caller of the epoch runs it.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), and as [`complete`](LeaseGuard::complete): a run whose lease
    /// was lost while `work` ran is not recorded ([`Error::LockLost`], [`Error::Expired`]).
    pub fn run(
        &self,
        epoch: impl Into<Arc<str>>,
        work: impl FnOnce(&RunGuard) -> String,
    ) -> Result<Outcome> {
        match self.start(epoch)? {
            Start::Run(run) => {
                let result = work(&run);
                run.complete(&result).map(Outcome::Ran)
            }
            Start::Ran(record) => Ok(Outcome::AlreadyRan(record)),
            // `start` waits as long as it runs elsewhere.
            Start::Running => Err(Error::Timeout {
                resource: self.resource().to_owned(),
                waited: Duration::ZERO,
            }),
        }
    }

    /// The completion record of `epoch`, if it ran: read from every node in one round, without
    /// starting anything.
    ///
    /// # Errors
    ///
    /// [`Error::NoQuorum`] when too few nodes answered, none with a record;
    /// [`Error::InvalidArgument`], [`Error::InvalidConfig`] for a bad name, epoch or retention.
    pub fn record(&self, epoch: impl Into<Arc<str>>) -> Result<Option<RunRecord>> {
        let job = self.clone().with_epoch(epoch);
        let run = job.kind();
        crate::shared::check_name("job name", job.resource())?;
        once::check(&run.key, run.retention)?;
        once::record(&job.runtime().shared, job.resource(), &run.key, &run.epoch)
    }
}

/// `AlreadyRan` as an outcome; any other error as it is.
fn ran(e: Error) -> Result<Start> {
    match e {
        Error::AlreadyRan { record, .. } => Ok(Start::Ran(*record)),
        e => Err(e),
    }
}

/// What a run adds to the guard: its epoch and its completion.
impl RunGuard {
    /// The epoch this run is for.
    #[must_use]
    pub fn epoch(&self) -> &str {
        match &self.lease().target {
            Target::Run { epoch, .. } => epoch,
            _ => "",
        }
    }

    /// Records the run as done with `result` (a small text: at most
    /// [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN) bytes) on a quorum, and ends its lease: no
    /// caller of the epoch runs it again for the job's retention, and those waiting for it are
    /// woken with the record.
    ///
    /// This function blocks for one round (keep-alive stops first).
    ///
    /// # Errors
    ///
    /// - [`Error::Expired`], [`Error::LockLost`]: the run's lease was lost before its
    ///   completion (another caller may have started the epoch); nothing trustworthy is
    ///   recorded.
    /// - [`Error::NoQuorum`]: too few nodes answered; the record may be on some of them (a
    ///   caller that finds it there does not run), and the run key expires with its TTL.
    /// - [`Error::InvalidArgument`]: a result that is too long; the run ends unrecorded.
    pub fn complete(self, result: &str) -> Result<RunRecord> {
        check_value("run result", result)?;
        self.end_with(|lease| once::complete(lease, result))
    }
}

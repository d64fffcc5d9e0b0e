//! `Election`, `LeaderGuard` and `Observer`: the leader kind of the one [`Handle`] and
//! [`LeaseGuard`] (one leader of a name at a time, with a term and a published value), what an
//! election adds to them (campaign, leader, observe; a leader's term, value, proclaim, resign),
//! and an observer of the changes of leader.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::guard::LeaseGuard;
use crate::handle::Handle;
use crate::keeper::Runtime;
use crate::kind;
use crate::protocol::acquire::Wait;
use crate::protocol::election::{self, Leader, Watch, check_value};
use crate::protocol::lease::Target;

/// How often an observer reads the nodes when no announcement wakes it: the fallback for a
/// subscription that failed or a node that stalls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A leader election on one name, created by
/// [`RedLockFactory::create_election`](crate::RedLockFactory::create_election): one leader at
/// a time, across processes and hosts, with a term that only grows, a value it publishes, and
/// observers that learn every change.
///
/// It is a [`Handle`] of the [`Leader`](kind::Leader) kind: a campaign is an acquisition of the
/// name's lease, so it waits, times out and is cancelled as every acquisition does, and the
/// leadership it returns is a [`LeaderGuard`] with the whole lease API (validity, keep-alive,
/// [`loss_signal`](LeaseGuard::loss_signal), release on drop). An election is created with
/// keep-alive on: a leader keeps leading until it resigns, is dropped, or loses its lease.
///
/// # What it guarantees
///
/// - **One leader at a time**, in the sense of Redlock: two leaders' validities
///   ([`LeaseGuard::validity`]) never overlap, under the assumptions every lease here rests on
///   (clocks that run at about the same rate, nodes that keep their keys; see
///   `docs/features.md`). A leader paused past its validity (GC, SIGSTOP) may act after a new
///   leader was elected: pass the **term** with every write and have the resource refuse a
///   smaller term than one it has seen, as with any fencing token.
/// - **Terms only grow.** A leader's [`term`](LeaderGuard::term) is a fencing token of the
///   name, above every term (and every fencing token of a lock of the same name) issued before.
///   It is also at least the grant's time on the nodes' clocks, in microseconds since the Unix
///   epoch, so terms keep growing even when the nodes that issued the last one restarted
///   without their data (a counter alone would go back), provided the nodes' clocks agree to
///   within the time between two elections. Treat a term as an opaque, growing number.
/// - **Readers see only what a quorum holds.** [`leader`](Self::leader) and the [`Observer`]
///   report a leader only when a quorum of nodes hold it, and a value only once a quorum hold
///   it (or a later one).
/// - **Observers see every change in order.** An observer is woken by the nodes when a leader
///   is installed, proclaims or resigns, reads a quorum, and reports changes in `(term,
///   revision)` order, never going back; a change that was replaced before the observer's read
///   (within about a round trip) is skipped, never reported late and out of order.
///
/// # On the nodes
///
/// The leader holds the election's name as a lock key (its token, as a
/// [`RedLock`](crate::RedLock) holder does, so a lock of the same name excludes it), the
/// record `<name>:redmutex:leader` (token, term, revision, value) living exactly as long, and
/// the name's fencing counter. Changes are announced on the channel `<name>:redmutex:elected`.
/// Everything starts with the name: an ACL limited to an application's prefix covers it.
///
/// # Examples
///
/// ```no_run
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
/// let election = factory.create_election("scheduler");
/// let leader = election.campaign("host-a:8080")?; // waits until this process leads
/// let lost = leader.loss_signal();
/// while !lost.is_lost() {
///     // ... lead: pass leader.term() with every write ...
/// #   break;
/// }
/// leader.resign()?; // the next candidate takes over at once
/// # Ok::<(), redmutex::Error>(())
/// ```
pub type Election = Handle<kind::Leader>;

/// Leadership of an [`Election`]; resigns when dropped: a [`LeaseGuard`] of the leader kind,
/// with the whole lease API, plus the [`term`](LeaseGuard::term), the
/// [`value`](LeaseGuard::value) it publishes, [`proclaim`](LeaseGuard::proclaim) and
/// [`resign`](LeaseGuard::resign).
///
/// Created by [`Election::campaign`] and its forms (and the acquire family of the election's
/// handle). Its [`fencing_token`](LeaseGuard::fencing_token) is its term.
pub type LeaderGuard = LeaseGuard<kind::Leader>;

/// An election on `name`, with keep-alive on.
pub(crate) fn election(runtime: Arc<Runtime>, name: Arc<str>) -> Election {
    let value = kind::Leader {
        value: Arc::from(""),
    };
    Handle::new(runtime, name, value).with_keep_alive(true)
}

/// What an election adds to the handle: campaigns with a value, the leader, observers.
impl Election {
    /// This election with `value` as the value its plain acquisitions
    /// ([`acquire`](Handle::acquire), ...) campaign with; [`campaign`](Self::campaign) takes
    /// its own. An empty value by default.
    #[must_use]
    pub fn with_value(self, value: impl Into<Arc<str>>) -> Self {
        self.as_kind(kind::Leader {
            value: value.into(),
        })
    }

    /// The value plain acquisitions campaign with.
    #[must_use]
    pub fn value(&self) -> &str {
        &self.kind().value
    }

    /// Waits until this process leads, then publishes `value` (a host and port, an id: at most
    /// [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN) bytes) as the leader's value.
    ///
    /// This function blocks as [`Handle::acquire`] does, woken by the resignation of the
    /// leader; a leader that vanished is replaced once its lease runs out (at most the TTL).
    /// A campaign is three rounds once the name is free: the grant, the term's write-back, and
    /// the leader record; it returns only when a quorum holds the record, within the lease.
    ///
    /// # Errors
    ///
    /// As [`Handle::acquire`]; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a
    /// value that is too long.
    pub fn campaign(&self, value: impl Into<Arc<str>>) -> Result<LeaderGuard> {
        self.clone().with_value(value).acquire()
    }

    /// Campaigns if one attempt can win: `Ok(None)` when someone else leads.
    ///
    /// # Errors
    ///
    /// As [`Handle::try_acquire`].
    pub fn try_campaign(&self, value: impl Into<Arc<str>>) -> Result<Option<LeaderGuard>> {
        self.clone().with_value(value).try_acquire()
    }

    /// Campaigns, waiting at most about `timeout` while someone else leads.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](crate::Error::Timeout) when someone else led throughout; otherwise
    /// as [`campaign`](Self::campaign).
    pub fn campaign_timeout(
        &self,
        value: impl Into<Arc<str>>,
        timeout: Duration,
    ) -> Result<LeaderGuard> {
        self.clone().with_value(value).acquire_timeout(timeout)
    }

    /// Campaigns, waiting as `wait` says (a deadline, a cancel flag).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`](crate::Error::Cancelled) when the flag was set (nothing is held),
    /// [`Error::Timeout`](crate::Error::Timeout); otherwise as [`campaign`](Self::campaign).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::atomic::AtomicBool;
    /// use redmutex::Wait;
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// let shutdown = AtomicBool::new(false); // set by a signal handler
    /// let election = factory.create_election("scheduler");
    /// match election.campaign_with("host-a", Wait::forever().cancel_on(&shutdown)) {
    ///     Ok(leader) => { /* lead */ }
    ///     Err(redmutex::Error::Cancelled { .. }) => { /* shutting down */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn campaign_with(&self, value: impl Into<Arc<str>>, wait: Wait<'_>) -> Result<LeaderGuard> {
        self.clone().with_value(value).acquire_with(wait)
    }

    /// The current leader (its term, value, revision, fingerprint and remaining lease), read
    /// from every node in one round without campaigning: `None` when no quorum of nodes holds
    /// a leader (none was elected, or a campaign is under way).
    ///
    /// This function blocks for one round, and changes nothing. The answer may be stale as soon
    /// as it is returned.
    ///
    /// # Errors
    ///
    /// [`Error::NoQuorum`](crate::Error::NoQuorum) when too few nodes answered to tell;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a bad name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
    /// match factory.create_election("scheduler").leader()? {
    ///     Some(l) => println!("term {} led by {} for {:?} more", l.term, l.value, l.lease),
    ///     None => println!("no leader"),
    /// }
    /// # Ok::<(), redmutex::Error>(())
    /// ```
    pub fn leader(&self) -> Result<Option<Leader>> {
        crate::shared::check_resource(self.resource())?;
        let shared = &self.runtime().shared;
        Ok(election::read(shared, self.resource(), self.ttl())?.leader)
    }

    /// An observer of this election: it reports the current leader first, then every change of
    /// leader or value, in term order (see [`Observer`]). No I/O until it is first used.
    #[must_use]
    pub fn observe(&self) -> Observer {
        let watch = Watch::new(
            Arc::clone(&self.runtime().shared),
            Arc::from(self.resource()),
            self.ttl(),
            DEFAULT_POLL_INTERVAL,
        );
        Observer { watch }
    }
}

/// What leadership adds to the guard: the term, the value, and changing it.
impl LeaderGuard {
    /// The term of this leadership: its fencing token, above every term issued before on the
    /// name. Pass it with every write to what the leader controls, and have that refuse a term
    /// smaller than one it has seen.
    #[must_use]
    pub fn term(&self) -> u64 {
        self.lease().fencing.unwrap_or(0)
    }

    /// The value this leader last published to a quorum (at its campaign, or its last
    /// successful [`proclaim`](Self::proclaim)).
    #[must_use]
    pub fn value(&self) -> String {
        match &self.lease().target {
            Target::Leader(published) => published.value().to_string(),
            _ => String::new(),
        }
    }

    /// The revision of the published value: 1 at election, one more per proclamation
    /// attempt. Observers see `(term, revision)` grow.
    #[must_use]
    pub fn revision(&self) -> u64 {
        match &self.lease().target {
            Target::Leader(published) => published.rev(),
            _ => 0,
        }
    }

    /// Publishes `value` as this leader's value, for [`Election::leader`] and the observers.
    ///
    /// This function blocks for one round (it waits for a keep-alive renewal under way on the
    /// lease). It succeeds when a quorum holds the new value within the lease's validity; the
    /// observers are told.
    ///
    /// # Errors
    ///
    /// - [`Error::Expired`](crate::Error::Expired), [`Error::LockLost`](crate::Error::LockLost):
    ///   this process no longer leads (the loss is signalled).
    /// - [`Error::NoQuorum`](crate::Error::NoQuorum): too few nodes answered; some may show the
    ///   new value, which no reader reports until a quorum holds it. Proclaim again.
    /// - [`Error::InvalidArgument`](crate::Error::InvalidArgument): a value that is too long.
    pub fn proclaim(&self, value: impl Into<Arc<str>>) -> Result<()> {
        let value = value.into();
        check_value("leader value", &value)?;
        election::proclaim(self.lease(), value)
    }

    /// Resigns: releases the leadership now, so that a waiting candidate takes over at once
    /// (it is woken by the release), and tells the observers. The same as
    /// [`release`](LeaseGuard::release).
    ///
    /// # Errors
    ///
    /// As [`LeaseGuard::release`]: [`Error::Expired`](crate::Error::Expired) or
    /// [`Error::LockLost`](crate::Error::LockLost) when this process had already lost the
    /// leadership.
    pub fn resign(self) -> Result<()> {
        self.release()
    }
}

/// An observer of an [`Election`], from [`Election::observe`]: each call of
/// [`wait`](Self::wait) returns the next change of leader or value, in term order.
///
/// The first call returns the current leader (at once, if there is one); each later call
/// returns a leader (a new one, or the same with a new value) newer in `(term, revision)` than
/// the last one returned, blocking until there is one. A vacancy (a leader that resigned or
/// vanished, before the next is elected) is not a change it reports.
///
/// How it learns of a change: it is subscribed to the election's channel on one node, and a
/// leader's installation, proclamation or resignation is announced there; it then reads a
/// quorum and reports what a quorum holds, so it never reports a leader or a value a quorum
/// does not hold. It also reads every [poll interval](Self::with_poll_interval) (1 s by
/// default), the fallback for a subscription that failed or a node that stalls (a poll that
/// finds its node failing moves the subscription to another). So a change is reported about
/// one round trip after it is made while the subscribed node works, and within one poll
/// interval plus a round otherwise; a change replaced sooner than that may be skipped, never
/// reported out of order.
///
/// It is also an [`Iterator`] of `Result<Leader>` that never ends (each item is one
/// [`wait`](Self::wait)).
///
/// # Examples
///
/// ```no_run
/// # let factory = redmutex::RedLockFactory::new(["redis://127.0.0.1:7001"])?;
/// for leader in factory.create_election("scheduler").observe() {
///     let leader = leader?;
///     println!("term {}: {} leads", leader.term, leader.value);
/// }
/// # Ok::<(), redmutex::Error>(())
/// ```
#[derive(Debug)]
pub struct Observer {
    watch: Watch,
}

impl Observer {
    /// This observer reading the nodes every `interval` when no announcement wakes it (at
    /// least 1 ms; 1 s by default).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.watch.poll = interval.max(Duration::from_millis(1));
        self
    }

    /// The next change (the current leader, the first time), waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::NoQuorum`](crate::Error::NoQuorum) when `max_retries + 1` reads in a row found
    /// too few nodes answering.
    pub fn wait(&mut self) -> Result<Leader> {
        self.wait_with(Wait::forever())
    }

    /// The next change, waiting at most about `timeout`: `Ok(None)` if none came.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<Leader>> {
        match self.wait_with(Wait::timeout(timeout)) {
            Ok(leader) => Ok(Some(leader)),
            Err(crate::Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next change, waiting as `wait` says.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](crate::Error::Timeout), [`Error::Cancelled`](crate::Error::Cancelled);
    /// otherwise as [`wait`](Self::wait).
    pub fn wait_with(&mut self, wait: Wait<'_>) -> Result<Leader> {
        self.watch.next(&wait)
    }

    /// The `(term, revision)` of the last change returned.
    #[must_use]
    pub fn last_seen(&self) -> Option<(u64, u64)> {
        self.watch.last()
    }
}

impl Iterator for Observer {
    type Item = Result<Leader>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.wait())
    }
}

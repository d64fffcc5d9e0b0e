//! The lease protocol: every operation on a lock (acquire, extend, renew, release, inspect, and
//! their token-level forms) is written here once, over the round below it, and judged by the
//! one [`verdict`]. The handles above (factory, lock, guard), the keep-alive thread and the
//! command-line tool call these functions; none re-derives them.
//!
//! - [`acquire`]: one attempt and the waiting loop (wake-up, fairness, retries, deadline,
//!   cancellation), plus fencing;
//! - [`lease`]: a held lease, its deadline rule, and the rounds made on it;
//! - [`multi`]: a multi-lock's attempt (every resource in one round, all or nothing per node);
//! - [`semaphore`]: a semaphore's attempt (a permit is a quorum grant of one of its slots);
//! - [`inspect`]: a read-only view of a resource;
//! - [`doctor`]: the checks of the nodes against Redlock's assumptions and the locks' needs;
//! - [`rw`]: the read-write lock's attempts and its downgrade, on the same waiting loop,
//!   verdict and leases;
//! - [`election`]: a candidate's attempt (the lock key, the term, the leader record), the
//!   quorum read of the leader, proclamations, and what an observer waits on;
//! - [`once`]: a run-once job's attempt (a run key, unless the completion record exists), its
//!   completion and the quorum read of its record;
//! - [`verdict`]: what a round decided.

pub(crate) mod acquire;
pub(crate) mod doctor;
pub(crate) mod election;
pub(crate) mod inspect;
pub(crate) mod lease;
pub(crate) mod multi;
pub(crate) mod once;
pub(crate) mod rw;
pub(crate) mod semaphore;
pub(crate) mod verdict;

pub use acquire::Wait;
pub use doctor::{Check, CheckStatus, Diagnosis};
pub use election::{Leader, MAX_VALUE_LEN};
pub use inspect::{Fingerprint, Holding, Inspection, LockState, NodeView};
pub use lease::LossReason;

//! Multi-lock acquisition: every resource of a set in one round, all or nothing per node.
//!
//! One script per node takes every resource's lock key (`SET key token PX ttl`, the lock's own
//! keys and values) only if none is taken, so a node either grants the whole set or nothing. A
//! node thus holds the multi-lock's token on all keys or on none, and "a quorum holds our
//! token" means what it means for one lock: a quorum of nodes each holding *all* the keys. Any
//! holder of a member resource (a lock, or another multi-lock sharing one) needs that key on a
//! quorum too, and two quorums share a node, where the key cannot be held twice: the multi-lock
//! excludes every holder of every member, under Redlock's assumptions, in one round rather than
//! one round per resource.
//!
//! With fencing, the grant's token is one quorum max-register over every member's counter (the
//! counters a lock of each member uses): above every token issued before for any member, by a
//! lock or a multi-lock.
//!
//! Waiters mark the members they found taken and wait in a room that listens to every member's
//! release channel: the release of any member (by a lock or by another multi-lock, which
//! announces on each member's channel) wakes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::acquire::{Attempt, Fenced, Grant, Wait, conclude, mark_ms, try_once, wait_for};
use super::lease::{Lease, Target, Token, millis};
use crate::command::Arg;
use crate::error::Result;
use crate::round::{self, Call};
use crate::scripts;
use crate::shared::Shared;

/// What a multi-lock acquisition asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MultiRequest<'a> {
    /// The name used in errors, logs and wake-up rooms.
    pub(crate) name: &'a Arc<str>,
    /// The resources, sorted, without duplicates.
    pub(crate) resources: &'a Arc<[Arc<str>]>,
    pub(crate) ttl: Duration,
    pub(crate) fencing: bool,
    pub(crate) keep_alive: bool,
    pub(crate) max_hold: Option<Duration>,
}

/// Takes every resource, waiting as `wait` says.
pub(crate) fn acquire(
    shared: &Arc<Shared>,
    req: &MultiRequest<'_>,
    wait: &Wait<'_>,
) -> Result<Lease> {
    let members: Vec<&str> = req.resources.iter().map(|r| &**r).collect();
    wait_for(shared, req.name, &members, wait, |mark, _| {
        attempt(shared, req, mark)
    })
}

/// Takes every resource if one round can.
pub(crate) fn try_acquire(shared: &Arc<Shared>, req: &MultiRequest<'_>) -> Result<Option<Lease>> {
    try_once(shared, req.name, || attempt(shared, req, false))
}

/// One acquisition round. `mark`: the caller will wait if a resource is taken, so mark the taken
/// ones as waited for.
fn attempt(shared: &Arc<Shared>, req: &MultiRequest<'_>, mark: bool) -> Attempt<Lease> {
    if let Err(e) = shared.check_longest("ttl", req.ttl) {
        return Attempt::Fatal(e);
    }
    let token = Token::new();
    let keys: Vec<Arg<'_>> = req.resources.iter().map(|r| Arg::Str(r)).collect();
    let args = [
        Arg::Str(token.as_str()),
        Arg::Int(millis(req.ttl)),
        Arg::Int(mark_ms(shared, mark)),
        Arg::Str(scripts::WAITING_SUFFIX),
        Arg::Str(if req.fencing {
            scripts::FENCE_SUFFIX
        } else {
            ""
        }),
    ];
    let call = Call::Script {
        script: &scripts::MULTI_ACQUIRE,
        keys: &keys,
        args: &args,
    };
    let start = Instant::now();
    let tally = round::round(
        &shared.nodes,
        call,
        shared.nodes.all(),
        round::acquire_reply,
    );
    let grant = Grant {
        name: req.name,
        ttl: req.ttl,
        keep_alive: req.keep_alive,
        max_hold: req.max_hold,
        fenced: req.fencing.then_some(Fenced::Many(req.resources)),
    };
    conclude(
        shared,
        &grant,
        Target::Multi(Arc::clone(req.resources)),
        token,
        start,
        &tally,
    )
}

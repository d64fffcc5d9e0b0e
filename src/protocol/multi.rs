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
use std::time::Instant;

use super::acquire::{Attempt, Fenced, Grant, Request, conclude, mark_ms};
use super::lease::{Lease, Target, Token, millis};
use crate::command::Arg;
use crate::round::{self, Call, Settle};
use crate::scripts;
use crate::shared::Shared;

/// One acquisition round of every one of `resources` (sorted, without duplicates) under the
/// name `req.resource`. `mark`: the caller will wait if a resource is taken, so mark the taken
/// ones as waited for.
pub(crate) fn attempt(
    shared: &Arc<Shared>,
    req: &Request<'_>,
    resources: &Arc<[Arc<str>]>,
    mark: bool,
) -> Attempt<Lease> {
    if let Err(e) = shared.check_longest("ttl", req.ttl) {
        return Attempt::Fatal(e);
    }
    let token = Token::new();
    let keys: Vec<Arg<'_>> = resources.iter().map(|r| Arg::Str(r)).collect();
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
        Settle::Grant(shared.config.quorum),
    );
    let grant = Grant {
        fenced: req.fencing.then_some(Fenced::Many(resources)),
        ..req.grant()
    };
    conclude(
        shared,
        &grant,
        Target::Multi(Arc::clone(resources)),
        token,
        start,
        &tally,
    )
}

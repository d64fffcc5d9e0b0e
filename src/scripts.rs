//! The Lua scripts and the names of the extra keys and channels, kept apart from the logic
//! (as redsync's scripts.go).
//!
//! Every script acts on the lock key only while it still holds our token, so a stale holder can
//! never delete or extend the lock of the client that holds it now. The lock key itself is
//! exactly the resource name and holds only the token, as in every Redlock client (or, for at most
//! 20 ms between two holders of one local queue, a hand-over mark no token equals), so redmutex
//! interoperates on the wire.
//!
//! Every other key and the release channel are the resource name plus a fixed suffix, so an ACL
//! that lets a user reach an application's key prefix (`~app:*`, `&app:*`) covers everything a
//! lock touches.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The suffix of a resource's fencing counter key: a plain integer string, no expiry.
pub(crate) const FENCE_SUFFIX: &str = ":redmutex:fence";

/// The suffix of the key that says clients are waiting for a resource (expires by itself).
pub(crate) const WAITING_SUFFIX: &str = ":redmutex:waiting";

/// The suffix of the sorted set of the processes waiting for a lock, by since when (the local
/// queue's order across processes; expires by itself).
pub(crate) const ORDER_SUFFIX: &str = ":redmutex:order";

/// The suffix of the channel on which the releases of a resource are announced.
pub(crate) const RELEASED_SUFFIX: &str = ":redmutex:released";

/// The suffix of a semaphore's permit slots: slot `i` of semaphore `name` is the key
/// `<name>:redmutex:permit:<i>`, an ordinary Redlock lock key (the token, `SET NX PX`).
pub(crate) const PERMIT_SUFFIX: &str = ":redmutex:permit:";

/// The prefix of a semaphore's name key value: `redmutex:semaphore:<permits>:<held>`. The name
/// key (the semaphore's name itself, the key a lock of that name would hold) says, while any
/// permit is held on the node, how many permits the semaphore has, so a client using another
/// count is refused, and a lock (or a multi-lock) of the same name waits for the permits. It
/// also counts the permits granted on the node (an upper bound of those still held there: a
/// permit that expired is not subtracted), so that the last release can delete it.
pub(crate) const SEMAPHORE_VALUE_PREFIX: &str = "redmutex:semaphore:";

/// The prefix of the fencing counter used by redmutex 0.1 (`redmutex:fence:<resource>`), read
/// once per resource to keep tokens increasing across the upgrade.
pub(crate) const LEGACY_FENCE_PREFIX: &str = "redmutex:fence:";

/// Deletes the lock key if it holds our token and, when clients are waiting for it, announces
/// the release on the resource's channel, `<lock key>:redmutex:released` (so uncontended
/// releases publish nothing). The message is the SHA1 of the released token, then a space and
/// the `since` of the process that has waited longest (the live entry of the order set with the
/// smallest one: see [`ACQUIRE_SRC`]), or `1` when there is none.
///
/// Sent again after its reply was lost, it answers 0 if its first run deleted the key: the
/// release round counts a "no" from a node sent the command twice as no answer.
///
/// The release of a lease won by a local queue's waiting line also removes that line's entry
/// from the order set (ARGV[3], its `since`), on every node and whether or not the node holds
/// the token: a node that refused the winning attempt (it still held the previous holder's key)
/// entered the line again there instead of removing it, and would name it, a line that no
/// longer waits, in its announcements until the entry expired.
///
/// Every release runs on every node, so its common form, an uncontended mutex's release, is
/// the shortest: each key or argument costs the server about 0.07 µs a call, so the channel is
/// derived from the lock key here (a channel is not a key: nothing to declare), and the
/// announce flag is left out for its usual value. The `EXISTS` on the waiting mark stays on
/// that path: a waiter may mark the resource at any time while the lock is held, after any
/// reply the holder saw, and only the node can tell the release about it.
///
/// KEYS: lock, waiting marker, order set. ARGV: token, announce (optional: absent is "1", the
/// release of a held lock; "0" when taking back the partial locks of a failed attempt, which
/// must not wake anyone: the lock is still held elsewhere, and a waiter woken by its own
/// take-back would spin; "2" for a release the next waiter of the releaser's own local queue
/// takes at once: it reports the waiting mark without announcing, so other processes' waiters
/// are not woken for a turn they cannot get), since (optional, after an announce: the order set
/// entry to remove). Returns 0 (not our token), 1 (released), 2 (released, and clients were
/// waiting: announced unless "2").
pub(crate) const RELEASE_SRC: &str = r#"if ARGV[3] then
    redis.pcall("ZREM", KEYS[3], ARGV[3])
end
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call("DEL", KEYS[1])
local announce = ARGV[2] or "1"
if announce == "0" or redis.call("EXISTS", KEYS[2]) == 0 then
    return 1
end
if announce == "1" then
    local first = "1"
    local t = KEYS[3] and redis.pcall("TIME")
    if type(t) == "table" and t[1] then
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.pcall("ZREMRANGEBYSCORE", KEYS[3], "-inf", now)
        local order = redis.pcall("ZRANGE", KEYS[3], 0, -1)
        if type(order) == "table" and not order.err then
            for _, since in ipairs(order) do
                if first == "1" or tonumber(since) < tonumber(first) then
                    first = since
                end
            end
        end
    end
    redis.call("PUBLISH", KEYS[1] .. ":redmutex:released",
        redis.sha1hex(ARGV[1]) .. " " .. first)
end
return 2"#;

/// The prefix of a lock's hand-over mark: `redmutex:handover:<line id>`, the value a quiet
/// release leaves in the lock key for the next waiter of the releasing process's local queue
/// ([`HANDOVER_RELEASE_SRC`]). No token equals it (a token is hex digits), so no client's
/// `SET NX` takes the key while it stands, and no client's compare-and-delete removes it.
pub(crate) const HANDOVER_PREFIX: &str = "redmutex:handover:";

/// The release of a lock whose next holder is the next waiter of the releaser's own local
/// queue (the quiet release, "2" in [`RELEASE_SRC`]), when that waiter takes the lock over.
/// If the key holds our token and others wait (the waiting marker exists), the key is not
/// deleted: it takes the line's hand-over mark (ARGV[2], see [`HANDOVER_PREFIX`]) for ARGV[3]
/// ms, so that another process's attempt between this release and the next waiter's
/// ([`TAKEOVER_SRC`]) finds the lock busy instead of free. With no waiting marker it deletes
/// the key, as [`RELEASE_SRC`] does. It never announces.
///
/// The mark is never a holder: nobody's lease rests on it, it lives a few milliseconds, and a
/// take-over is a grant like any other. Removes the line's order set entry as [`RELEASE_SRC`]
/// does.
///
/// Blind (ARGV[5] "1": the release before found others waiting, and the line is taking its
/// turns in a row), it leaves the mark without looking for the waiting marker, and answers as
/// if it had found it: a line's run of turns pays for that look once, at its first hand-over.
///
/// KEYS: lock, waiting marker, order set (optional). ARGV: token, hand-over mark, mark ms,
/// since (optional; "0": none), blind (optional). Returns 0 (not our token), 1 (deleted) or 2
/// (others wait, or blind: marked).
pub(crate) const HANDOVER_RELEASE_SRC: &str = r#"if KEYS[3] and ARGV[4] and ARGV[4] ~= "0" then
    redis.pcall("ZREM", KEYS[3], ARGV[4])
end
if redis.call("GET", KEYS[1]) == ARGV[1] then
    if ARGV[5] == "1" or redis.call("EXISTS", KEYS[2]) == 1 then
        redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
        return 2
    end
    redis.call("DEL", KEYS[1])
    return 1
else
    return 0
end"#;

/// The end of the lock's acquire scripts ([`TAKEOVER_SRC`], [`ACQUIRE_SRC`]), after their
/// grant branches: a refused attempt told to (ARGV[3] ms) marks the resource as waited for and
/// enters its line (ARGV[4], its `since`) in the order set; a grant removes the line's entry.
/// A macro, so that each script stays one literal (`concat!`).
macro_rules! mark_waiting {
    () => {
        r#"elseif tonumber(ARGV[3]) > 0 then
    redis.call("SET", KEYS[3], "1", "PX", ARGV[3])
    if since > 0 then
        local t = redis.pcall("TIME")
        if type(t) == "table" and t[1] then
            local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
            redis.pcall("ZADD", KEYS[4], now + tonumber(ARGV[3]), ARGV[4])
            redis.pcall("PEXPIRE", KEYS[4], ARGV[3])
        end
    end
end
if granted == 1 and since > 0 then
    redis.pcall("ZREM", KEYS[4], ARGV[4])
end
"#
    };
}

/// The attempt of the next waiter of a local queue after a release of its process that left
/// its line's hand-over mark ([`HANDOVER_RELEASE_SRC`]): [`ACQUIRE_SRC`], which also grants
/// when the key holds that mark (ARGV[5]). The fencing counter is read only when ARGV[6] is
/// "1" (otherwise the counter answered is 0), so that a lock without fencing tokens pays no
/// read for it.
///
/// KEYS: lock, fencing counter, waiting marker, order set. ARGV: token, TTL ms, marker ms (0:
/// don't mark), since (0: none), hand-over mark, fencing ("1" or "0"). Returns `{granted (1 or
/// 0), counter}`.
pub(crate) const TAKEOVER_SRC: &str = concat!(
    r#"local granted = 0
local since = tonumber(ARGV[4]) or 0
local held = redis.call("GET", KEYS[1])
if not held or held == ARGV[5] then
    redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
    granted = 1
elseif held == ARGV[1] then
    granted = 1
"#,
    mark_waiting!(),
    r#"local counter = 0
if ARGV[6] == "1" then
    counter = tonumber(redis.call("GET", KEYS[2]) or "0")
end
return {granted, counter}"#
);

/// Makes the lock key live at least ARGV[2] ms more if it holds our token. It never shortens
/// the expiry: a node's expiry for a token only ever grows, so any round on a lease (failed,
/// late, overlapping or re-ordered) can only leave the nodes holding longer than the holder
/// believes, never shorter.
///
/// KEYS: lock. ARGV: token, milliseconds. Returns 1 (our token: it now lives at least that
/// long) or 0.
pub(crate) const EXTEND_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[2]) then
        redis.call("PEXPIRE", KEYS[1], ARGV[2])
    end
    return 1
else
    return 0
end"#;

/// `SET NX PX` sent again to a node that may have run it already (its reply was lost): the
/// same grant, or yes when the key already holds this call's token (its own first run). It
/// answers as `SET NX` does: OK, or nil.
///
/// KEYS: lock. ARGV: token, TTL ms.
pub(crate) const SET_AGAIN_SRC: &str = r#"if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2])
    or redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.status_reply("OK")
end
return false"#;

/// Takes the lock like `SET NX PX`, and also reads the fencing counter (in the same atomic step,
/// so the value read belongs to this grant) and, when told, marks that we are waiting. Safe to
/// repeat: a key that already holds our token (this call's earlier run) is a grant.
///
/// The order set's commands (`TIME`, `ZADD`, `ZREM`, `PEXPIRE`; the release's `ZRANGE`,
/// `ZREMRANGEBYSCORE`) run through `pcall`: a user whose ACL does not allow them still takes
/// and releases locks, without the order across processes.
///
/// A waiting lock's local queue also enters its process in the order set (KEYS[4]): member
/// `since` (when its line began to wait, in microseconds of its clock), score the server time
/// (ms) until which the entry lives (the marker's life, renewed by each marking attempt, so a
/// process that died leaves it within that). A grant to a process removes its entry (and the
/// release of that lease removes it on every node: see [`RELEASE_SRC`]). The
/// release announcement names the entry with the smallest `since`: the process that has waited
/// longest.
///
/// The fencing counter is read unless ARGV[5] is "0" (a lock without fencing tokens: it has no
/// use for it, and the counter answered is then 0), as [`TAKEOVER_SRC`] does.
///
/// KEYS: lock, fencing counter, waiting marker, order set (only with a since). ARGV: token, TTL
/// ms, marker ms (0: don't mark), since (0 or absent: none), fencing (absent or "1": read the
/// counter; "0": don't). Returns `{granted (1 or 0), counter (0 when absent or not read)}`.
pub(crate) const ACQUIRE_SRC: &str = concat!(
    r#"local granted = 0
local since = tonumber(ARGV[4]) or 0
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
    granted = 1
elseif redis.call("GET", KEYS[1]) == ARGV[1] then
    granted = 1
"#,
    mark_waiting!(),
    r#"local counter = 0
if ARGV[5] ~= "0" then
    counter = tonumber(redis.call("GET", KEYS[2]) or "0")
end
return {granted, counter}"#
);

/// Raises the fencing counter to at least ARGV[1] (a max-register: it never goes down) and
/// reports the value it held before. A counter that does not exist yet starts from redmutex
/// 0.1's counter (ARGV[2]) where that exists and the user may read it; the old key is an
/// undeclared key, read through `pcall` so that an ACL that does not cover it is not an error.
///
/// KEYS: fencing counter. ARGV: value, legacy counter key. Returns the previous value.
pub(crate) const FENCE_SRC: &str = r#"local prior = redis.call("GET", KEYS[1])
if not prior then
    local legacy = redis.pcall("GET", ARGV[2])
    if type(legacy) == "string" then prior = legacy end
end
prior = tonumber(prior or "0") or 0
if prior < tonumber(ARGV[1]) then
    redis.call("SET", KEYS[1], ARGV[1])
end
return prior"#;

// ---------------------------------------------------------------------------------------------
// The read-write lock. Its writer holds the lock key exactly as a mutex holder does (the token,
// with `PX`), so a mutex (or any Redlock client) on the same name is a writer too. While readers
// hold it, the lock key holds the readers' marker (`READERS_MARKER` and a reader's token), which
// no token equals, so a bare `SET NX` of any client finds it taken. Readers come in two forms:
//
// - a lone reader is the marker alone: `<prefix><its token>`, whose `PX` expiry is its lease
//   (as a mutex holder's key is);
// - once a second reader joins, the lone one is moved into a sorted set (score: the instant, by
//   the node's clock from `TIME`, its lease ends, never earlier than the marker's expiry) and the
//   newcomer added; the marker then lives as long as the longest-lived reader, and so does the
//   set. It stays in that form until the last reader leaves (the marker is deleted).
//
// So every reader's lease is its own: a reader that crashed expires at its own instant, whatever
// the others renew. A waiting writer is a member of another sorted set, scored by when its intent
// ends; while that set exists (its expiry is its latest intent's), no new reader is let in.
//
// Invariants, on every node: the readers' set exists only while the lock key holds a marker
// with the same expiry (its largest score); a reader holds the node while the lock key is its own
// marker and there is no set, or while its score is in the future; a writer holds it while the
// lock key is its token. Each script keeps them in one atomic step.

/// The suffix of a read-write lock's readers, once there were two: a sorted set of reader
/// tokens, each scored by the instant (the node's clock, ms) its lease ends; the key expires
/// with the last of them.
pub(crate) const READERS_SUFFIX: &str = ":redmutex:readers";

/// The suffix of a read-write lock's waiting writers: a sorted set of waiting-writer ids, each
/// scored by the instant (the node's clock, ms) its intent ends unless renewed; the key expires
/// with the latest intent.
pub(crate) const WRITERS_SUFFIX: &str = ":redmutex:writers";

/// What the lock key holds while readers hold it: this prefix and a reader's token (the lone
/// reader's, or the first of several). Each script has it written in (`local P = ...`); a unit
/// test checks that they agree.
#[cfg(test)]
pub(crate) const READERS_MARKER: &str = "redmutex:readers:";

/// Lets a reader in, like `SET NX PX` for a mutex: only when the lock key is free or holds the
/// readers' marker, and no writer is waiting. A lone reader is the marker itself, with `PX`; a
/// reader that joins others goes into the readers' set (moving a lone reader there first, its
/// expiry unchanged or one ms later), and the marker and set are made to live until the longest
/// reader's expiry. When refused and told, marks that we are waiting. Safe to repeat: a reader
/// already in with our token (this call's earlier run) is a grant.
///
/// KEYS: lock, readers, writers, waiting marker. ARGV: token, TTL ms, marker ms (0: don't
/// mark). Returns `{1, 0}` (granted) or `{0, ms}` (a writer holds it or waits; `ms`: when the
/// name is not held by a writer, how long the waiting writers' intents still last, plus 1 ms,
/// after which nothing announces that readers may come in; 0 otherwise).
pub(crate) const READ_SRC: &str = r#"local P = "redmutex:readers:"
local v = redis.call("GET", KEYS[1])
local marker = v and string.sub(v, 1, #P) == P
if marker and (v == P .. ARGV[1] or redis.call("ZSCORE", KEYS[2], ARGV[1])) then
    return {1, 0}
end
if (v and not marker) or redis.call("EXISTS", KEYS[3]) == 1 then
    if ARGV[3] ~= "0" then
        redis.call("SET", KEYS[4], "1", "PX", ARGV[3])
    end
    if v and not marker then
        return {0, 0}
    end
    return {0, math.max(redis.call("PTTL", KEYS[3]) + 1, 0)}
end
if not v then
    redis.call("SET", KEYS[1], P .. ARGV[1], "PX", ARGV[2])
    return {1, 0}
end
local t = redis.call("TIME")
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call("EXISTS", KEYS[2]) == 0 then
    redis.call("ZADD", KEYS[2], now + redis.call("PTTL", KEYS[1]) + 1, string.sub(v, #P + 1))
end
redis.call("ZADD", KEYS[2], now + ARGV[2], ARGV[1])
local top = redis.call("ZRANGE", KEYS[2], -1, -1, "WITHSCORES")[2]
redis.call("PEXPIREAT", KEYS[1], top)
redis.call("PEXPIREAT", KEYS[2], top)
return {1, 0}"#;

/// Makes a reader's lease end at least ARGV[2] ms from now (the node's clock), if it is still a
/// live reader; it never moves an expiry earlier. A lone reader's marker is extended as a mutex
/// key is; a reader of the set gets a later score, and the marker and set live until the longest
/// reader's expiry.
///
/// KEYS: lock, readers. ARGV: token, milliseconds. Returns 1 (a live reader: it now lives at
/// least that long) or 0.
pub(crate) const READ_EXTEND_SRC: &str = r#"local P = "redmutex:readers:"
local v = redis.call("GET", KEYS[1])
if not v or string.sub(v, 1, #P) ~= P then
    return 0
end
if v == P .. ARGV[1] and redis.call("EXISTS", KEYS[2]) == 0 then
    if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[2]) then
        redis.call("PEXPIRE", KEYS[1], ARGV[2])
    end
    return 1
end
local t = redis.call("TIME")
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local s = tonumber(redis.call("ZSCORE", KEYS[2], ARGV[1]) or "0")
if s <= now then
    return 0
end
local e = now + ARGV[2]
if e > s then
    redis.call("ZADD", KEYS[2], e, ARGV[1])
    local top = redis.call("ZRANGE", KEYS[2], -1, -1, "WITHSCORES")[2]
    redis.call("PEXPIREAT", KEYS[1], top)
    redis.call("PEXPIREAT", KEYS[2], top)
end
return 1"#;

/// Lets a reader out. A lone reader deletes its marker; a reader of the set leaves it (with the
/// readers whose leases ended), the marker and set then living until the longest remaining
/// reader's expiry, and the last one out deletes the marker. A lock key still holding our token
/// in the writer's form (a downgrade that node never saw) is deleted too. Whoever leaves the
/// lock free announces it on the lock's channel when told and someone waits (the waiting
/// marker, or a writer's intent).
///
/// KEYS: lock, readers, writers, waiting marker. ARGV: token, channel, announce ("1" or "0", as
/// for the mutex). Returns 0 (not a live reader), 1 (released) or 2 (released, the lock is free,
/// and someone was waiting: announced).
pub(crate) const READ_RELEASE_SRC: &str = r#"local P = "redmutex:readers:"
local v = redis.call("GET", KEYS[1])
local marker = v and string.sub(v, 1, #P) == P
if v == ARGV[1] or (marker and v == P .. ARGV[1] and redis.call("EXISTS", KEYS[2]) == 0) then
    redis.call("DEL", KEYS[1])
else
    local t = redis.call("TIME")
    redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", t[1] * 1000 + math.floor(t[2] / 1000))
    if redis.call("ZREM", KEYS[2], ARGV[1]) == 0 then
        return 0
    end
    local top = redis.call("ZRANGE", KEYS[2], -1, -1, "WITHSCORES")[2]
    if top then
        if marker then
            redis.call("PEXPIREAT", KEYS[1], top)
        end
        redis.call("PEXPIREAT", KEYS[2], top)
        return 1
    end
    if marker then
        redis.call("DEL", KEYS[1])
    end
end
if ARGV[3] == "1" and redis.call("EXISTS", KEYS[3], KEYS[4]) > 0 then
    redis.call("PUBLISH", ARGV[2], redis.sha1hex(ARGV[1]))
    return 2
end
return 1"#;

/// Lets a writer in: like the mutex's acquire script (`SET PX` of the token, the fencing counter
/// read in the same step), only when no writer holds the lock and no reader's lease is live (a
/// marker whose readers have all expired is taken over). When refused: with an intent id,
/// records (or renews) that writer's intent to wait, so that new readers are kept out; when
/// told, marks that we are waiting. When granted, its own intent is withdrawn. Safe to repeat:
/// a lock key that already holds our token (this call's earlier run) is a grant.
///
/// KEYS: lock, readers, writers, waiting marker, fencing counter. ARGV: token, TTL ms, marker
/// ms (0: don't mark), intent id ("": none), intent ms. Returns `{granted (1 or 0), counter (0
/// when absent)}`.
pub(crate) const WRITE_SRC: &str = r#"local P = "redmutex:readers:"
local v = redis.call("GET", KEYS[1])
local set = redis.call("EXISTS", KEYS[2]) == 1
local t = redis.call("TIME")
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local busy = v and v ~= ARGV[1] and (string.sub(v, 1, #P) ~= P or not set)
if not busy and set then
    busy = redis.call("ZCOUNT", KEYS[2], "(" .. now, "+inf") > 0
end
local granted = 0
if busy then
    if ARGV[4] ~= "" then
        redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", now)
        redis.call("ZADD", KEYS[3], now + ARGV[5], ARGV[4])
        redis.call("PEXPIREAT", KEYS[3], redis.call("ZRANGE", KEYS[3], -1, -1, "WITHSCORES")[2])
    end
    if ARGV[3] ~= "0" then
        redis.call("SET", KEYS[4], "1", "PX", ARGV[3])
    end
else
    if v ~= ARGV[1] then
        redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
        if set then
            redis.call("DEL", KEYS[2])
        end
    end
    if ARGV[4] ~= "" then
        redis.call("ZREM", KEYS[3], ARGV[4])
    end
    granted = 1
end
return {granted, tonumber(redis.call("GET", KEYS[5]) or "0")}"#;

/// Withdraws a waiting writer's intent (it gave up, or it was granted elsewhere). When no live
/// intent is left, the lock is not held by a writer and ARGV[3] is "1", the readers that the
/// intents held back are told (if someone waits), as a release tells them.
///
/// KEYS: lock, writers, waiting marker. ARGV: intent id, channel, announce. Returns 1 (it was
/// there) or 0.
pub(crate) const WITHDRAW_SRC: &str = r#"local P = "redmutex:readers:"
local removed = redis.call("ZREM", KEYS[2], ARGV[1])
if removed == 1 and ARGV[3] == "1" then
    local t = redis.call("TIME")
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    local v = redis.call("GET", KEYS[1])
    if redis.call("ZCOUNT", KEYS[2], "(" .. now, "+inf") == 0
        and (not v or string.sub(v, 1, #P) == P)
        and redis.call("EXISTS", KEYS[3]) == 1 then
        redis.call("PUBLISH", ARGV[2], redis.sha1hex(ARGV[1]))
    end
end
return removed"#;

/// Turns a writer into a lone reader in one step: if the lock key holds our token, it becomes
/// our readers' marker, living no less than it did (and at least ARGV[2] ms from now). The lock
/// key is never free in between, so no writer can slip in; readers may join once it is done.
/// Waiters are told (readers among them may now come in). Safe to repeat: a key already
/// converted (our marker) answers 1.
///
/// KEYS: lock, waiting marker. ARGV: token, TTL ms, channel. Returns 0 (not our token), 1 (now
/// a reader) or 2 (now a reader, and someone was waiting: announced).
pub(crate) const DOWNGRADE_SRC: &str = r#"local P = "redmutex:readers:"
local v = redis.call("GET", KEYS[1])
if v == P .. ARGV[1] then
    return 1
end
if v ~= ARGV[1] then
    return 0
end
local ms = math.max(redis.call("PTTL", KEYS[1]), tonumber(ARGV[2]))
redis.call("SET", KEYS[1], P .. ARGV[1], "PX", ms)
if redis.call("EXISTS", KEYS[2]) == 1 then
    redis.call("PUBLISH", ARGV[3], redis.sha1hex(ARGV[1]))
    return 2
end
return 1"#;

/// Takes one permit of a semaphore: the first free slot, in the client's order, of the slots
/// listed in ARGV[6] (comma-separated), then, when ARGV[7] is below the permit count, of every
/// slot from ARGV[7] on (cyclically). A slot is taken with `SET NX PX`, so each slot is a Redlock
/// lock of its own and a node grants at most one slot per call. On a grant, the name key's count
/// goes up by one and the key is made to live at least as long as the slot, so it outlives
/// every permit held on the node.
///
/// The name key decides first: another permit count there is a misconfiguration (answered, not
/// granted); any other value is a lock or multi-lock holding the name, which the permits wait
/// for. (`SET ... KEEPTTL` needs Redis 6.0.) Safe to repeat: a slot found holding our token
/// (this call's earlier run) is the grant, counted once.
///
/// KEYS: name, waiting marker. ARGV: token, TTL ms, marker ms (0: don't mark), permits, slot
/// key prefix, slot list, scan start. Returns `{status, slot, taken}`: status 1 (granted
/// `slot`), 0 (no free slot: every slot tried is in `taken`), 2 (the name is held by a lock), -1
/// (the name key says another permit count: `taken` is its value); `taken` lists the slots
/// found taken, comma-separated.
pub(crate) const PERMIT_ACQUIRE_SRC: &str = r#"local config = "redmutex:semaphore:" .. ARGV[4] .. ":"
local name = redis.call("GET", KEYS[1])
local held = 0
if name then
    if string.sub(name, 1, #config) ~= config then
        if string.sub(name, 1, 19) == "redmutex:semaphore:" then
            return {-1, 0, name}
        end
        if ARGV[3] ~= "0" then
            redis.call("SET", KEYS[2], "1", "PX", ARGV[3])
        end
        return {2, 0, ""}
    end
    held = tonumber(string.sub(name, #config + 1)) or 0
end
local permits = tonumber(ARGV[4])
local start = tonumber(ARGV[7])
local taken = {}
local slot = nil
local again = false
local function take(s)
    local key = ARGV[5] .. s
    if redis.call("SET", key, ARGV[1], "NX", "PX", ARGV[2]) then
        return true
    end
    if redis.call("GET", key) == ARGV[1] then
        again = true
        return true
    end
    return false
end
if ARGV[6] ~= "" then
    for s in string.gmatch(ARGV[6], "%d+") do
        if take(s) then
            slot = tonumber(s)
            break
        end
        taken[#taken + 1] = s
    end
end
if not slot and start < permits then
    for i = 0, permits - 1 do
        local s = (start + i) % permits
        if take(s) then
            slot = s
            break
        end
        taken[#taken + 1] = s
    end
end
if again then
    return {1, slot, table.concat(taken, ",")}
end
if not slot then
    if ARGV[3] ~= "0" then
        redis.call("SET", KEYS[2], "1", "PX", ARGV[3])
    end
    return {0, 0, table.concat(taken, ",")}
end
if name then
    redis.call("SET", KEYS[1], config .. (held + 1), "KEEPTTL")
    if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[2]) then
        redis.call("PEXPIRE", KEYS[1], ARGV[2])
    end
else
    redis.call("SET", KEYS[1], config .. "1", "PX", ARGV[2])
end
if #taken == 0 then return {1, slot, ""} end
return {1, slot, table.concat(taken, ",")}"#;

/// Releases a permit: deletes the slot ARGV[6] if it holds our token (or, when ARGV[6] is the
/// permit count, whichever slots other than ARGV[7] hold it: a release by token alone, or the
/// take-back of a failed attempt). The name key's count goes down by one per slot freed; at
/// zero, no permit is held on the node any more and the name key goes (so a lock of the same
/// name, or another permit count, need not wait for it to expire). When clients are waiting
/// and ARGV[3] is "1", the freed slot's number is announced on the name's channel, so that a
/// woken waiter tries that slot first. A name key that says another permit count refuses the
/// call (the handle is misconfigured) and nothing changes.
///
/// KEYS: name, waiting marker. ARGV: token, channel, announce, permits, slot key prefix, slot,
/// except. Returns 0 (not our token), 1 (released), 2 (released and announced), -1 (the name
/// key says another count).
pub(crate) const PERMIT_RELEASE_SRC: &str = r#"local permits = tonumber(ARGV[4])
local slot = tonumber(ARGV[6])
local config = "redmutex:semaphore:" .. ARGV[4] .. ":"
local freed = {}
local name = nil
local key = nil
if slot < permits then
    key = ARGV[5] .. ARGV[6]
    local values = redis.call("MGET", key, KEYS[1])
    name = values[2]
    key = values[1] == ARGV[1] and key
else
    name = redis.call("GET", KEYS[1])
end
if name and string.sub(name, 1, 19) == "redmutex:semaphore:" and string.sub(name, 1, #config) ~= config then
    return -1
end
if key then
    freed[1] = key
elseif slot >= permits then
    local except = tonumber(ARGV[7])
    for i = 0, permits - 1 do
        if i ~= except and redis.call("GET", ARGV[5] .. i) == ARGV[1] then
            freed[#freed + 1] = ARGV[5] .. i
        end
    end
end
if #freed == 0 then return 0 end
if name and string.sub(name, 1, #config) == config then
    local held = (tonumber(string.sub(name, #config + 1)) or 0) - #freed
    if held > 0 then
        redis.call("SET", KEYS[1], config .. held, "KEEPTTL")
    else
        freed[#freed + 1] = KEYS[1]
    end
end
redis.call("DEL", unpack(freed))
if ARGV[3] == "1" and redis.call("EXISTS", KEYS[2]) == 1 then
    redis.call("PUBLISH", ARGV[2], string.sub(freed[1], #ARGV[5] + 1))
    return 2
end
return 1"#;

/// Makes a permit live at least ARGV[2] ms more if its slot (ARGV[5], or whichever slot holds
/// the token when ARGV[5] is the permit count) holds our token, and the name key at least as
/// long; never shortens anything. A name key that says another permit count refuses the call
/// (the handle is misconfigured) and nothing changes.
///
/// KEYS: name. ARGV: token, milliseconds, permits, slot key prefix, slot. Returns 1, 0 or -1
/// (the name key says another count).
pub(crate) const PERMIT_EXTEND_SRC: &str = r#"local permits = tonumber(ARGV[3])
local slot = tonumber(ARGV[5])
local ms = tonumber(ARGV[2])
local config = "redmutex:semaphore:" .. ARGV[3] .. ":"
local name = redis.call("GET", KEYS[1])
if name and string.sub(name, 1, 19) == "redmutex:semaphore:" and string.sub(name, 1, #config) ~= config then
    return -1
end
local key = nil
if slot < permits then
    if redis.call("GET", ARGV[4] .. ARGV[5]) == ARGV[1] then key = ARGV[4] .. ARGV[5] end
else
    for i = 0, permits - 1 do
        if redis.call("GET", ARGV[4] .. i) == ARGV[1] then
            key = ARGV[4] .. i
            break
        end
    end
end
if not key then return 0 end
if redis.call("PTTL", key) < ms then
    redis.call("PEXPIRE", key, ARGV[2])
end
if name and string.sub(name, 1, #config) == config and redis.call("PTTL", KEYS[1]) < ms then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 1"#;

/// Takes every resource of a multi-lock on one node, or none: `SET key token PX ttl` on each
/// key only when none of them exists (each key, as for a lock, holds the token, so a lock of
/// any member, or another multi-lock sharing one, excludes it and is excluded by it). When some
/// are taken and ARGV[3] > 0, the taken ones are marked as waited for (`<resource>` + ARGV[4]),
/// so that their release is announced. With fencing (ARGV[5], the counter suffix, not empty),
/// it also reads the largest of the resources' fencing counters, in the same atomic step. Safe
/// to repeat: every key already holding our token (this call's earlier run) is a grant.
///
/// KEYS: the resources, in canonical order. ARGV: token, TTL ms, marker ms (0: don't mark),
/// waiting marker suffix, fencing counter suffix (empty: no fencing). Returns
/// `{granted (1 or 0), largest counter (0 without fencing)}`, the shape of the lock's acquire
/// script's answer.
pub(crate) const MULTI_ACQUIRE_SRC: &str = r#"local counter = 0
if ARGV[5] ~= "" then
    local counters = {}
    for i = 1, #KEYS do counters[i] = KEYS[i] .. ARGV[5] end
    for _, v in ipairs(redis.call("MGET", unpack(counters))) do
        local n = tonumber(v or "0") or 0
        if n > counter then counter = n end
    end
end
local values = redis.call("MGET", unpack(KEYS))
local taken, ours = 0, 0
for i = 1, #KEYS do
    if values[i] then
        taken = taken + 1
        if values[i] == ARGV[1] then ours = ours + 1 end
    end
end
if ours == #KEYS then
    return {1, counter}
end
if taken > 0 then
    if ARGV[3] ~= "0" then
        for i = 1, #KEYS do
            if values[i] then
                redis.call("SET", KEYS[i] .. ARGV[4], "1", "PX", ARGV[3])
            end
        end
    end
    return {0, counter}
end
for i = 1, #KEYS do
    redis.call("SET", KEYS[i], ARGV[1], "PX", ARGV[2])
end
return {1, counter}"#;

/// Releases a multi-lock on one node: deletes each resource key that holds our token, and
/// announces each release on that resource's channel (`<resource>` + ARGV[2]) when clients wait
/// for it (`<resource>` + ARGV[4] exists) and ARGV[3] is "1". The node counts as holding the
/// lock only if *every* key held our token (a partial hold, left by keys deleted from outside,
/// is cleaned up but answers 0).
///
/// KEYS: the resources. ARGV: token, channel suffix, announce, waiting marker suffix. Returns 0
/// (not every key held our token), 1 (released), 2 (released and announced).
pub(crate) const MULTI_RELEASE_SRC: &str = r#"local values = redis.call("MGET", unpack(KEYS))
local ours = {}
for i = 1, #KEYS do
    if values[i] == ARGV[1] then ours[#ours + 1] = KEYS[i] end
end
if #ours == 0 then return 0 end
redis.call("DEL", unpack(ours))
local announced = false
if ARGV[3] == "1" then
    local marks = {}
    for j, key in ipairs(ours) do marks[j] = key .. ARGV[4] end
    if redis.call("EXISTS", unpack(marks)) > 0 then
        for j, key in ipairs(ours) do
            if redis.call("EXISTS", marks[j]) == 1 then
                redis.call("PUBLISH", key .. ARGV[2], redis.sha1hex(ARGV[1]))
                announced = true
            end
        end
    end
end
if #ours < #KEYS then return 0 end
if announced then return 2 end
return 1"#;

/// Makes every resource key of a multi-lock live at least ARGV[2] ms more, if every one holds
/// our token (otherwise it changes nothing and answers 0); never shortens a key's life.
///
/// KEYS: the resources. ARGV: token, milliseconds. Returns 1 or 0.
pub(crate) const MULTI_EXTEND_SRC: &str = r#"local values = redis.call("MGET", unpack(KEYS))
for i = 1, #KEYS do
    if values[i] ~= ARGV[1] then return 0 end
end
local ms = tonumber(ARGV[2])
for i = 1, #KEYS do
    if redis.call("PTTL", KEYS[i]) < ms then
        redis.call("PEXPIRE", KEYS[i], ARGV[2])
    end
end
return 1"#;

/// Raises every fencing counter of a multi-lock's resources to at least ARGV[1] (each a
/// max-register: it never goes down) and reports the largest value any of them held before.
///
/// KEYS: the resources' fencing counters. ARGV: value. Returns the largest previous value.
pub(crate) const MULTI_FENCE_SRC: &str = r#"local t = tonumber(ARGV[1])
local prior = 0
for i = 1, #KEYS do
    local v = tonumber(redis.call("GET", KEYS[i]) or "0") or 0
    if v > prior then prior = v end
    if v < t then
        redis.call("SET", KEYS[i], ARGV[1])
    end
end
return prior"#;

// ---------------------------------------------------------------------------------------------
// Leader election. A leader holds the election's name as a lock key, exactly as a mutex holder
// does (its token, with `PX`), so a lock of the same name and any Redlock client exclude it. Its
// term is the name's fencing counter (a quorum max-register shared with the lock), and what it
// publishes lives beside the lock key in the leader record, a hash
// (`<name>:redmutex:leader`: token, term, rev, value) that lives exactly as long as the lock key
// and counts only while the lock key holds the record's token. Every change of leader or value
// is announced on `<name>:redmutex:elected` (the message: `<term>:<rev>`, or `resigned`), so an
// observer is woken by the nodes; it reads a quorum before it believes anything.

/// The suffix of an election's leader record (a hash: token, term, rev, value).
pub(crate) const LEADER_SUFFIX: &str = ":redmutex:leader";

/// The suffix of the channel on which an election's changes are announced.
pub(crate) const ELECTED_SUFFIX: &str = ":redmutex:elected";

/// The body of a grant floored at the node's clock, shared by a candidate's grant and a run's
/// start (a macro, so `concat!` can put it in both scripts).
///
/// KEYS: lock, fencing counter, waiting marker. ARGV: token, TTL ms, marker ms (0: don't mark).
macro_rules! clocked_grant {
    () => {
        r#"local granted = 0
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
    granted = 1
elseif redis.call("GET", KEYS[1]) == ARGV[1] then
    granted = 1
elseif tonumber(ARGV[3]) > 0 then
    redis.call("SET", KEYS[3], "1", "PX", ARGV[3])
end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return {granted, math.max(tonumber(redis.call("GET", KEYS[2]) or "0") or 0, now)}"#
    };
}

/// A candidate's grant: takes the lock key like `SET NX PX` (marking that we wait when told, as
/// the acquire script does), and reads the fencing counter raised to the node's clock in
/// microseconds since the Unix epoch. So a term is above the counter of every node of the grant's
/// quorum (the max-register) *and* above the time of the grant: terms keep growing even across
/// nodes that restarted without their data and lost the counter, as long as the nodes' clocks
/// agree to within the time between two elections. (A microsecond clock stays below 2^53, the
/// exact range of a Lua number, until the year 2255.)
///
/// Safe to repeat, as the acquire script: a key that already holds our token is a grant.
///
/// KEYS: lock, fencing counter, waiting marker. ARGV: token, TTL ms, marker ms (0: don't
/// mark). Returns `{granted (1 or 0), max(counter, now in us)}`.
pub(crate) const LEADER_GRANT_SRC: &str = clocked_grant!();

/// Writes the leader record (revision ARGV[3] of the value ARGV[4], in term ARGV[2]) while the
/// lock key holds our token; the record lives as long as the lock key. A revision never goes
/// back: a node that already holds this revision or a later one of our term keeps it (a delayed
/// request cannot bring an old value back). Announces the change.
///
/// KEYS: lock, leader record. ARGV: token, term, rev, value, channel. Returns 1 (the node holds
/// this revision or a later one) or 0 (not our lock).
pub(crate) const LEADER_WRITE_SRC: &str = r#"if redis.call("GET", KEYS[1]) ~= ARGV[1] then
    return 0
end
local ttl = redis.call("PTTL", KEYS[1])
if ttl <= 0 then
    return 0
end
local cur = redis.call("HMGET", KEYS[2], "token", "term", "rev")
if cur[1] == ARGV[1] and cur[2] == ARGV[2] and tonumber(cur[3] or "0") >= tonumber(ARGV[3]) then
    return 1
end
redis.call("HSET", KEYS[2], "token", ARGV[1], "term", ARGV[2], "rev", ARGV[3], "value", ARGV[4])
redis.call("PEXPIRE", KEYS[2], ttl)
redis.call("PUBLISH", ARGV[5], ARGV[2] .. ":" .. ARGV[3])
return 1"#;

/// A leader's extension: the lock key and its record live at least ARGV[2] ms more, while the
/// lock key holds our token (never shortened, as the mutex's extension).
///
/// KEYS: lock, leader record. ARGV: token, milliseconds. Returns 1 or 0.
pub(crate) const LEADER_EXTEND_SRC: &str = r#"if redis.call("GET", KEYS[1]) ~= ARGV[1] then
    return 0
end
local ms = tonumber(ARGV[2])
if redis.call("PTTL", KEYS[1]) < ms then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
if redis.call("HGET", KEYS[2], "token") == ARGV[1] and redis.call("PTTL", KEYS[2]) < ms then
    redis.call("PEXPIRE", KEYS[2], ARGV[2])
end
return 1"#;

/// A leader's release (a resignation, or the take-back of a failed campaign): deletes the lock
/// key and our record when the lock key holds our token; a resignation (ARGV[3] = "1") is
/// announced to observers, and to waiting candidates when they marked the name.
///
/// KEYS: lock, waiting marker, leader record. ARGV: token, release channel, announce, election
/// channel. Returns 0 (not ours), 1 (released) or 2 (released, candidates were waiting: told).
pub(crate) const LEADER_RELEASE_SRC: &str = r#"if redis.call("GET", KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call("DEL", KEYS[1])
if redis.call("HGET", KEYS[3], "token") == ARGV[1] then
    redis.call("DEL", KEYS[3])
end
if ARGV[3] == "1" then
    redis.call("PUBLISH", ARGV[4], "resigned")
    if redis.call("EXISTS", KEYS[2]) == 1 then
        redis.call("PUBLISH", ARGV[2], redis.sha1hex(ARGV[1]))
        return 2
    end
end
return 1"#;

// ---------------------------------------------------------------------------------------------
// Run once. A run of job `<name>` in epoch `<epoch>` holds the run key
// `<name>:redmutex:run:<epoch>` as a lock (its token, with `PX`), and its completion is the record
// `<run key>:redmutex:done` (a hash: result, fencing token, completion time by the node's clock),
// which expires after the retention the caller chose. The run key's waiting marker and release
// channel are the run key's, as a lock's. The fencing counter is the job name's, so tokens grow
// across every run of the job, whatever the epoch.

/// The infix of a run's lease key: `<name>:redmutex:run:<epoch>`.
pub(crate) const RUN_INFIX: &str = ":redmutex:run:";

/// The suffix of a run's completion record, after the run key.
pub(crate) const DONE_SUFFIX: &str = ":redmutex:done";

/// Starts a run: unless the completion record exists, takes the run key like `SET NX PX`,
/// reading the fencing counter raised to the node's clock in microseconds (as a candidate's
/// grant does, so run tokens keep growing across nodes restarted without their data), and marks
/// that we wait when told. Safe to repeat: a run key that already holds our token is a grant.
///
/// KEYS: run key, fencing counter, waiting marker, completion record. ARGV: token, TTL ms,
/// marker ms (0: don't mark). Returns `{granted (1 or 0; 2: it ran already), max(counter, now
/// in us)}`.
pub(crate) const RUN_BEGIN_SRC: &str = concat!(
    r#"if redis.call("EXISTS", KEYS[4]) == 1 then
    return {2, 0}
end
"#,
    clocked_grant!()
);

/// Completes a run while the run key holds our token: writes the completion record (result,
/// fencing token, the runner's time in ms), which expires after ARGV[3] ms, deletes the run key,
/// and wakes those waiting for the run. Safe to repeat: once the run key is gone, a record with
/// our fencing token is this completion's (its earlier run), and answers as it did.
///
/// KEYS: run key, waiting marker, completion record. ARGV: token, result, retention ms, fencing
/// token, release channel, the runner's time in ms. Returns 0 (not our run), or `{1, at}`
/// (recorded at `at`) or `{2, at}` (recorded, and callers were waiting: told).
pub(crate) const RUN_COMPLETE_SRC: &str = r#"if redis.call("GET", KEYS[1]) ~= ARGV[1] then
    local done = redis.call("HMGET", KEYS[3], "fencing", "at")
    if done[1] == ARGV[4] then
        return {1, tonumber(done[2])}
    end
    return 0
end
local now = tonumber(ARGV[6])
redis.call("HSET", KEYS[3], "result", ARGV[2], "fencing", ARGV[4], "at", ARGV[6])
redis.call("PEXPIRE", KEYS[3], ARGV[3])
redis.call("DEL", KEYS[1])
if redis.call("EXISTS", KEYS[2]) == 1 then
    redis.call("PUBLISH", ARGV[5], "done")
    return {2, now}
end
return {1, now}"#;

/// A script: its source (for EVAL) and its `redis::Script` (SHA1 computed once, for EVALSHA).
pub(crate) struct Lua {
    pub(crate) src: &'static str,
    pub(crate) script: redis::Script,
    /// Its bit in a node's set of the scripts known to be in its cache (0 past 64 scripts:
    /// never known, so never left unread: see `round::read_phase`).
    pub(crate) bit: u64,
}

/// How many scripts have been made so far: each takes the next bit.
static MADE: AtomicU32 = AtomicU32::new(0);

impl Lua {
    fn new(src: &'static str) -> Self {
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        Self {
            src,
            script: redis::Script::new(src),
            bit: 1u64.checked_shl(n).unwrap_or(0),
        }
    }
}

impl std::ops::Deref for Lua {
    type Target = redis::Script;

    fn deref(&self) -> &redis::Script {
        &self.script
    }
}

/// The re-sent form of `SET NX PX`.
pub(crate) static SET_AGAIN: LazyLock<Lua> = LazyLock::new(|| Lua::new(SET_AGAIN_SRC));

/// The read-write lock's intent withdrawal script.
pub(crate) static WITHDRAW: LazyLock<Lua> = LazyLock::new(|| Lua::new(WITHDRAW_SRC));

/// The release script.
pub(crate) static RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::new(RELEASE_SRC));

/// The hand-over release script.
pub(crate) static HANDOVER_RELEASE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(HANDOVER_RELEASE_SRC));

/// The take-over script.
pub(crate) static TAKEOVER: LazyLock<Lua> = LazyLock::new(|| Lua::new(TAKEOVER_SRC));

/// The extend script.
pub(crate) static EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(EXTEND_SRC));

/// The acquire script.
pub(crate) static ACQUIRE: LazyLock<Lua> = LazyLock::new(|| Lua::new(ACQUIRE_SRC));

/// The fencing write-back script.
pub(crate) static FENCE: LazyLock<Lua> = LazyLock::new(|| Lua::new(FENCE_SRC));

/// The read-write lock's reader acquire script.
pub(crate) static READ: LazyLock<Lua> = LazyLock::new(|| Lua::new(READ_SRC));

/// The read-write lock's reader extend script.
pub(crate) static READ_EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(READ_EXTEND_SRC));

/// The read-write lock's reader release script.
pub(crate) static READ_RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::new(READ_RELEASE_SRC));

/// The read-write lock's writer acquire script.
pub(crate) static WRITE: LazyLock<Lua> = LazyLock::new(|| Lua::new(WRITE_SRC));

/// The read-write lock's downgrade script.
pub(crate) static DOWNGRADE: LazyLock<Lua> = LazyLock::new(|| Lua::new(DOWNGRADE_SRC));

/// The semaphore's acquire script.
pub(crate) static PERMIT_ACQUIRE: LazyLock<Lua> = LazyLock::new(|| Lua::new(PERMIT_ACQUIRE_SRC));

/// The semaphore's release script.
pub(crate) static PERMIT_RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::new(PERMIT_RELEASE_SRC));

/// The semaphore's extend script.
pub(crate) static PERMIT_EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(PERMIT_EXTEND_SRC));

/// The multi-lock's acquire script.
pub(crate) static MULTI_ACQUIRE: LazyLock<Lua> = LazyLock::new(|| Lua::new(MULTI_ACQUIRE_SRC));

/// The multi-lock's release script.
pub(crate) static MULTI_RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::new(MULTI_RELEASE_SRC));

/// The multi-lock's extend script.
pub(crate) static MULTI_EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(MULTI_EXTEND_SRC));

/// The multi-lock's fencing write-back script.
pub(crate) static MULTI_FENCE: LazyLock<Lua> = LazyLock::new(|| Lua::new(MULTI_FENCE_SRC));

/// The candidate's grant script.
pub(crate) static LEADER_GRANT: LazyLock<Lua> = LazyLock::new(|| Lua::new(LEADER_GRANT_SRC));

/// The election's record-writing script (a leader's installation and its proclamations).
pub(crate) static LEADER_WRITE: LazyLock<Lua> = LazyLock::new(|| Lua::new(LEADER_WRITE_SRC));

/// The election's extend script.
pub(crate) static LEADER_EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(LEADER_EXTEND_SRC));

/// The election's release script.
pub(crate) static LEADER_RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::new(LEADER_RELEASE_SRC));

/// Run once: the start of a run.
pub(crate) static RUN_BEGIN: LazyLock<Lua> = LazyLock::new(|| Lua::new(RUN_BEGIN_SRC));

/// Run once: the completion of a run.
pub(crate) static RUN_COMPLETE: LazyLock<Lua> = LazyLock::new(|| Lua::new(RUN_COMPLETE_SRC));

/// Every script, to load when a connection opens.
pub(crate) static ALL: &[&LazyLock<Lua>] = &[
    &RELEASE,
    &HANDOVER_RELEASE,
    &TAKEOVER,
    &EXTEND,
    &ACQUIRE,
    &FENCE,
    &READ,
    &READ_EXTEND,
    &READ_RELEASE,
    &WRITE,
    &DOWNGRADE,
    &WITHDRAW,
    &PERMIT_ACQUIRE,
    &PERMIT_RELEASE,
    &PERMIT_EXTEND,
    &MULTI_ACQUIRE,
    &MULTI_RELEASE,
    &MULTI_EXTEND,
    &MULTI_FENCE,
    &LEADER_GRANT,
    &LEADER_WRITE,
    &LEADER_EXTEND,
    &LEADER_RELEASE,
    &RUN_BEGIN,
    &RUN_COMPLETE,
];

/// The SHA1 of `text` as 40 lowercase hex digits (what `redis.sha1hex` computes server-side).
pub(crate) fn sha1_hex(text: &str) -> String {
    // `redis::Script` hashes its source with SHA1; reuse it rather than a second SHA1 crate.
    redis::Script::new(text).get_hash().to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_script_has_its_own_bit() {
        let mut seen = 0u64;
        for script in ALL {
            assert_ne!(script.bit, 0, "more scripts than bits");
            assert_eq!(seen & script.bit, 0, "two scripts share a bit");
            seen |= script.bit;
        }
    }

    use super::*;

    #[test]
    fn sha1_of_known_text() {
        assert_eq!(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn the_release_script_announces_on_the_channel_the_waiters_subscribe_to() {
        // The mutex's release derives its channel from the lock key (one argument fewer on
        // every release); the waiters subscribe to `<name>` + RELEASED_SUFFIX.
        let derived = format!("KEYS[1] .. \"{RELEASED_SUFFIX}\"");
        assert!(
            RELEASE_SRC.contains(&derived),
            "{derived} not in RELEASE_SRC"
        );
    }
}

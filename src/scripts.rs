//! The Lua scripts and the extra key names, kept apart from the logic (as redsync's
//! scripts.go).
//!
//! Every script acts on the lock key only while it still holds our token, so a stale holder can
//! never delete or extend the lock of the client that holds it now. The lock key itself is
//! exactly the resource name and holds only the token, as in every Redlock client, so redmutex
//! interoperates on the wire.

use std::sync::LazyLock;

/// The channel on which releases are published (the message is the resource name).
pub(crate) const RELEASE_CHANNEL: &str = "redmutex:released";

/// The prefix of a resource's fencing counter key: a plain integer string, no expiry.
pub(crate) const FENCE_PREFIX: &str = "redmutex:fence:";

/// The prefix of the key that says clients are waiting for a resource (expires by itself).
pub(crate) const WAITING_PREFIX: &str = "redmutex:waiting:";

/// Deletes the lock key if it holds our token and, when clients are waiting for it, announces
/// the release (so uncontended releases publish nothing). The message is the SHA1 of the
/// released token (40 hex digits: the same on every node, so a process woken by several nodes
/// for one release wakes its waiters once) followed by the resource name.
///
/// KEYS: lock, waiting marker. ARGV: token, channel, announce ("1" for the release of a held
/// lock; "0" when taking back the partial locks of a failed attempt, which must not wake anyone:
/// the lock is still held elsewhere, and a waiter woken by its own take-back would spin).
/// Returns 0 (not our token), 1 (released), 2 (released, and clients were waiting: announced).
pub(crate) const RELEASE_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    redis.call("DEL", KEYS[1])
    if ARGV[3] == "1" and redis.call("EXISTS", KEYS[2]) == 1 then
        redis.call("PUBLISH", ARGV[2], redis.sha1hex(ARGV[1]) .. KEYS[1])
        return 2
    end
    return 1
else
    return 0
end"#;

/// Sets a new expiry if the lock key holds our token.
///
/// KEYS: lock. ARGV: token, milliseconds. Returns 1 or 0.
pub(crate) const EXTEND_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("PEXPIRE", KEYS[1], ARGV[2])
else
    return 0
end"#;

/// Takes the lock like `SET NX PX`, and also reads the fencing counter (in the same atomic step,
/// so the value read belongs to this grant) and, when told, marks that we are waiting.
///
/// KEYS: lock, fencing counter, waiting marker. ARGV: token, TTL ms, marker ms (0: don't mark).
/// Returns `{granted (1 or 0), counter (0 when absent)}`.
pub(crate) const ACQUIRE_SRC: &str = r#"local granted = 0
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
    granted = 1
elseif tonumber(ARGV[3]) > 0 then
    redis.call("SET", KEYS[3], "1", "PX", ARGV[3])
end
return {granted, tonumber(redis.call("GET", KEYS[2]) or "0")}"#;

/// Raises the fencing counter to at least ARGV[1] (a max-register: never lowers it).
///
/// KEYS: fencing counter. ARGV: value. Returns 1.
pub(crate) const FENCE_SRC: &str = r#"local t = tonumber(ARGV[1])
if tonumber(redis.call("GET", KEYS[1]) or "0") < t then
    redis.call("SET", KEYS[1], ARGV[1])
end
return 1"#;

/// A script: its source (for EVAL) and its `redis::Script` (SHA1 computed once, for EVALSHA).
pub(crate) struct Lua {
    pub(crate) src: &'static str,
    pub(crate) script: redis::Script,
}

impl Lua {
    fn new(src: &'static str) -> Self {
        Self {
            src,
            script: redis::Script::new(src),
        }
    }
}

impl std::ops::Deref for Lua {
    type Target = redis::Script;

    fn deref(&self) -> &redis::Script {
        &self.script
    }
}

/// The release script.
pub(crate) static RELEASE: LazyLock<Lua> = LazyLock::new(|| Lua::new(RELEASE_SRC));

/// The extend script.
pub(crate) static EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(EXTEND_SRC));

/// The acquire script.
pub(crate) static ACQUIRE: LazyLock<Lua> = LazyLock::new(|| Lua::new(ACQUIRE_SRC));

/// The fencing write-back script.
pub(crate) static FENCE: LazyLock<Lua> = LazyLock::new(|| Lua::new(FENCE_SRC));

/// Every script, to load when a connection opens.
pub(crate) static ALL: [&LazyLock<Lua>; 4] = [&RELEASE, &EXTEND, &ACQUIRE, &FENCE];

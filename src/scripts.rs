//! The Lua scripts and the names of the extra keys and channels, kept apart from the logic
//! (as redsync's scripts.go).
//!
//! Every script acts on the lock key only while it still holds our token, so a stale holder can
//! never delete or extend the lock of the client that holds it now. The lock key itself is
//! exactly the resource name and holds only the token, as in every Redlock client, so redmutex
//! interoperates on the wire.
//!
//! Every other key and the release channel are the resource name plus a fixed suffix, so an ACL
//! that lets a user reach an application's key prefix (`~app:*`, `&app:*`) covers everything a
//! lock touches.

use std::sync::LazyLock;

/// The suffix of a resource's fencing counter key: a plain integer string, no expiry.
pub(crate) const FENCE_SUFFIX: &str = ":redmutex:fence";

/// The suffix of the key that says clients are waiting for a resource (expires by itself).
pub(crate) const WAITING_SUFFIX: &str = ":redmutex:waiting";

/// The suffix of the channel on which the releases of a resource are announced.
pub(crate) const RELEASED_SUFFIX: &str = ":redmutex:released";

/// The prefix of the fencing counter used by redmutex 0.1 (`redmutex:fence:<resource>`), read
/// once per resource to keep tokens increasing across the upgrade.
pub(crate) const LEGACY_FENCE_PREFIX: &str = "redmutex:fence:";

/// Deletes the lock key if it holds our token and, when clients are waiting for it, announces
/// the release on the resource's channel (so uncontended releases publish nothing). The message
/// is the SHA1 of the released token.
///
/// KEYS: lock, waiting marker. ARGV: token, channel, announce ("1" for the release of a held
/// lock; "0" when taking back the partial locks of a failed attempt, which must not wake anyone:
/// the lock is still held elsewhere, and a waiter woken by its own take-back would spin).
/// Returns 0 (not our token), 1 (released), 2 (released, and clients were waiting: announced).
pub(crate) const RELEASE_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    redis.call("DEL", KEYS[1])
    if ARGV[3] == "1" and redis.call("EXISTS", KEYS[2]) == 1 then
        redis.call("PUBLISH", ARGV[2], redis.sha1hex(ARGV[1]))
        return 2
    end
    return 1
else
    return 0
end"#;

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

/// The SHA1 of `text` as 40 lowercase hex digits (what `redis.sha1hex` computes server-side).
pub(crate) fn sha1_hex(text: &str) -> String {
    // `redis::Script` hashes its source with SHA1; reuse it rather than a second SHA1 crate.
    redis::Script::new(text).get_hash().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_of_known_text() {
        assert_eq!(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}

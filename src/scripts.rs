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

/// Takes one permit of a semaphore: the first free slot, in the client's order, of the slots
/// listed in ARGV[6] (comma-separated), then, when ARGV[7] is below the permit count, of every
/// slot from ARGV[7] on (cyclically). A slot is taken with `SET NX PX`, so each slot is a Redlock
/// lock of its own and a node grants at most one slot per call. On a grant, the name key's count
/// goes up by one and the key is made to live at least as long as the slot, so it outlives
/// every permit held on the node.
///
/// The name key decides first: another permit count there is a misconfiguration (answered, not
/// granted); any other value is a lock or multi-lock holding the name, which the permits wait
/// for. (`SET ... KEEPTTL` needs Redis 6.0.)
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
if ARGV[6] ~= "" then
    for s in string.gmatch(ARGV[6], "%d+") do
        if redis.call("SET", ARGV[5] .. s, ARGV[1], "NX", "PX", ARGV[2]) then
            slot = tonumber(s)
            break
        end
        taken[#taken + 1] = s
    end
end
if not slot and start < permits then
    for i = 0, permits - 1 do
        local s = (start + i) % permits
        if redis.call("SET", ARGV[5] .. s, ARGV[1], "NX", "PX", ARGV[2]) then
            slot = s
            break
        end
        taken[#taken + 1] = s
    end
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
/// woken waiter tries that slot first.
///
/// KEYS: name, waiting marker. ARGV: token, channel, announce, permits, slot key prefix, slot,
/// except. Returns 0 (not our token), 1 (released), 2 (released and announced).
pub(crate) const PERMIT_RELEASE_SRC: &str = r#"local permits = tonumber(ARGV[4])
local slot = tonumber(ARGV[6])
local config = "redmutex:semaphore:" .. ARGV[4] .. ":"
local freed = {}
local name = nil
if slot < permits then
    local key = ARGV[5] .. ARGV[6]
    local values = redis.call("MGET", key, KEYS[1])
    if values[1] == ARGV[1] then freed[1] = key end
    name = values[2]
else
    local except = tonumber(ARGV[7])
    for i = 0, permits - 1 do
        if i ~= except and redis.call("GET", ARGV[5] .. i) == ARGV[1] then
            freed[#freed + 1] = ARGV[5] .. i
        end
    end
    name = redis.call("GET", KEYS[1])
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
/// long; never shortens anything.
///
/// KEYS: name. ARGV: token, milliseconds, permits, slot key prefix, slot. Returns 1 or 0.
pub(crate) const PERMIT_EXTEND_SRC: &str = r#"local permits = tonumber(ARGV[3])
local slot = tonumber(ARGV[5])
local ms = tonumber(ARGV[2])
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
local config = "redmutex:semaphore:" .. ARGV[3] .. ":"
local name = redis.call("GET", KEYS[1])
if name and string.sub(name, 1, #config) == config and redis.call("PTTL", KEYS[1]) < ms then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 1"#;

/// Takes every resource of a multi-lock on one node, or none: `SET key token PX ttl` on each
/// key only when none of them exists (each key, as for a lock, holds the token, so a lock of
/// any member, or another multi-lock sharing one, excludes it and is excluded by it). When some
/// are taken and ARGV[3] > 0, the taken ones are marked as waited for (`<resource>` + ARGV[4]),
/// so that their release is announced. With fencing (ARGV[5], the counter suffix, not empty),
/// it also reads the largest of the resources' fencing counters, in the same atomic step.
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
if redis.call("EXISTS", unpack(KEYS)) > 0 then
    if ARGV[3] ~= "0" then
        for i = 1, #KEYS do
            if redis.call("EXISTS", KEYS[i]) == 1 then
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

/// Every script, to load when a connection opens.
pub(crate) static ALL: &[&LazyLock<Lua>] = &[
    &RELEASE,
    &EXTEND,
    &ACQUIRE,
    &FENCE,
    &PERMIT_ACQUIRE,
    &PERMIT_RELEASE,
    &PERMIT_EXTEND,
    &MULTI_ACQUIRE,
    &MULTI_RELEASE,
    &MULTI_EXTEND,
    &MULTI_FENCE,
];

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

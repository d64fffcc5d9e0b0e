//! The Lua scripts, kept apart from the logic (as redsync's scripts.go).
//!
//! Both act only while the key still holds our token, so a stale holder can never delete or
//! extend the lock of the client that holds it now. The release script is the one every Redlock
//! client uses, which keeps redmutex interoperable on the wire.

use std::sync::LazyLock;

/// Deletes the key if it holds our token. Returns 1 if deleted, 0 otherwise.
pub(crate) const RELEASE_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
else
    return 0
end"#;

/// Sets a new expiry (ARGV[2] milliseconds) if the key holds our token. Returns 1 or 0.
pub(crate) const EXTEND_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("PEXPIRE", KEYS[1], ARGV[2])
else
    return 0
end"#;

/// The release script, with its SHA1 computed once.
pub(crate) static RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(RELEASE_SRC));

/// The extend script, with its SHA1 computed once.
pub(crate) static EXTEND: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(EXTEND_SRC));

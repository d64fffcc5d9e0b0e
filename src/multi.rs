//! `MultiLock` and `MultiLockGuard`: the multi-lock kind of the one [`Handle`] and
//! [`LeaseGuard`] (several resources locked together, all or nothing, in one round), and what a
//! multi-lock adds to them (its resources).

use std::sync::Arc;

use crate::guard::LeaseGuard;
use crate::handle::Handle;
use crate::keeper::Runtime;
use crate::kind;
use crate::protocol::lease::Target;

pub use crate::shared::MAX_MULTI_RESOURCES;

/// A lock on several resources at once, all or nothing, created by
/// [`RedLockFactory::create_multi_lock`](crate::RedLockFactory::create_multi_lock).
///
/// One round takes every resource: on each node one script sets every resource's lock key to
/// the token (`SET key token PX ttl`, the keys and values of [`RedLock`](crate::RedLock)) only
/// if none of them is taken, so each node grants the whole set or nothing, and the lock is held
/// when a quorum granted it. It therefore excludes every holder of any of its resources: a
/// [`RedLock`](crate::RedLock) of that name (from this or another Redlock client), another
/// multi-lock sharing a resource, a [`Semaphore`](crate::Semaphore) of that name. It costs one
/// round, not one per resource, and it cannot deadlock: nothing is held while waiting.
///
/// The resources are kept sorted and without duplicates (the canonical order every node sees).
/// Its guard is a lease like a lock's ([`MultiLockGuard`]): a node counts as holding it only if
/// it holds *every* key with the token.
///
/// Waiting for a multi-lock is woken by the release of any of its resources, by a lock or by
/// another multi-lock.
///
/// # Examples
///
/// ```no_run
/// use redmutex::RedLockFactory;
///
/// let factory = RedLockFactory::new(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
/// // Move money between two accounts: both locked, or neither.
/// let both = factory.create_multi_lock(["account:17", "account:42"]);
/// let guard = both.acquire()?;
/// // ... no holder of "account:17" or "account:42" runs now ...
/// guard.release()?;
/// # Ok::<(), redmutex::Error>(())
/// ```
pub type MultiLock = Handle<kind::Multi>;

/// Proof of holding every resource of a [`MultiLock`]; releases them all when dropped: a
/// [`LeaseGuard`] of the multi-lock kind, with the whole lease API, plus the
/// [`resources`](LeaseGuard::resources) it holds.
///
/// Created by [`MultiLock::acquire`], [`MultiLock::try_acquire`],
/// [`MultiLock::acquire_timeout`] and [`MultiLock::acquire_with`]. The same lease as a lock's
/// guard, on every resource at once: a node counts as holding it only if it holds *every* key
/// with the token, and its fencing token is above every token issued before for *any* of its
/// resources (the counter of each is raised to it).
pub type MultiLockGuard = LeaseGuard<kind::Multi>;

/// A multi-lock on `resources`, sorted and without duplicates (the canonical order every node
/// sees), named `[a, b, c]` in errors, logs and events.
pub(crate) fn multi_lock(runtime: Arc<Runtime>, mut resources: Vec<Arc<str>>) -> MultiLock {
    resources.sort();
    resources.dedup();
    let name = format!(
        "[{}]",
        resources
            .iter()
            .map(|r| &**r)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let kind = kind::Multi {
        resources: resources.into(),
    };
    Handle::new(runtime, name.into(), kind)
}

/// What a multi-lock adds to the handle: its resources.
impl MultiLock {
    /// The resources, sorted, without duplicates: each is a Redis key.
    #[must_use]
    pub fn resources(&self) -> &[Arc<str>] {
        &self.kind().resources
    }
}

/// What a multi-lock's guard adds: its resources.
impl MultiLockGuard {
    /// The resources held, sorted.
    #[must_use]
    pub fn resources(&self) -> &[Arc<str>] {
        match &self.lease().target {
            Target::Multi(resources) => resources,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::RedLockFactory;

    #[test]
    fn resources_are_sorted_and_deduplicated() {
        let f = RedLockFactory::new(["redis://127.0.0.1:1"]).unwrap();
        let m = f.create_multi_lock(["b", "a", "c", "a"]);
        let names: Vec<&str> = m.resources().iter().map(|r| &**r).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(m.resource(), "[a, b, c]");
    }
}

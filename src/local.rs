//! The read leases this process holds, each counted for the thread that holds it: what lets an
//! acquisition that a read lease of its own thread would block fail at once with
//! [`Error::WouldDeadlock`](crate::Error::WouldDeadlock) instead of waiting for itself
//! (forever, with keep-alive). Every kind goes through it: a guard registers here when it is
//! made ([`Claim::new`]), and the acquire family asks [`blocking`] before it waits.
//!
//! # Which waits
//!
//! A read lease of a name blocks every lease that excludes readers: the write lock (the
//! upgrade), a lock of the name, a semaphore of the name, a multi-lock containing it. A thread
//! that waits for one of those while it holds the read lease waits for itself: it cannot
//! release the reader while it waits. Other waits for one's own lease (a lock asked for again by
//! its holder) are the documented waits of a lock that is not reentrant: they wait, or time
//! out, like any other caller's.
//!
//! # What can be known
//!
//! A guard is `Send`, and moving it to another thread runs no code: the library cannot see the
//! move. So the thread a guard counts for is known only when the guard is made (the acquiring
//! thread, or the thread that downgraded) and when it is used (any method, its release, its
//! drop, or [`hand_over`](crate::LeaseGuard::hand_over)). The rules follow:
//!
//! - a new read guard counts for the thread that made it;
//! - a guard used on another thread, or handed over, counts for no thread from then on: it may
//!   have moved, or be shared, and no wait is ever refused on its account;
//! - a guard released, leaked or dropped is gone.
//!
//! A wait is refused only for a read lease that counts for the waiting thread, of the same
//! factory, with validity left. So a wait for a lease that another thread holds (a guard it
//! acquired, or one it received and used) always waits. What this leaves unknown: a guard moved
//! to another thread that has not used it yet still counts for the thread that sent it, so the
//! sender must [`hand_over`](crate::LeaseGuard::hand_over) it before it waits for a lease that
//! guard blocks; and a thread that waits for a lease it received (once received, the guard
//! counts for no thread) waits for itself unnoticed, as before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::protocol::lease::{Lease, Target, lock};
use crate::shared::Shared;

/// The read leases one thread holds.
#[derive(Default)]
struct Owned {
    leases: Mutex<Vec<Arc<Lease>>>,
}

thread_local! {
    static MINE: Arc<Owned> = Arc::default();
}

/// Read leases counted for some thread, in the whole process: while there are none, the check
/// costs one atomic load (a thread always sees its own registrations, which it made itself).
static COUNTED: AtomicUsize = AtomicUsize::new(0);

/// This thread's list, by address (0 when thread-locals are gone: the thread is exiting).
fn here() -> usize {
    MINE.try_with(|m| Arc::as_ptr(m).addr()).unwrap_or(0)
}

/// A guard's registration: the thread its lease counts for, if any.
pub(crate) struct Claim {
    owner: Mutex<Option<Arc<Owned>>>,
    /// The owner's list's address (0: none): tells a use from another thread without a lock.
    id: AtomicUsize,
}

impl Claim {
    /// Counts `lease` for the calling thread, if it is a read lease (no other lease blocks a
    /// wait of its own thread that the library refuses).
    pub(crate) fn new(lease: &Arc<Lease>) -> Self {
        let owner = matches!(lease.target, Target::Reader)
            .then(|| {
                MINE.try_with(|m| {
                    lock(&m.leases).push(Arc::clone(lease));
                    COUNTED.fetch_add(1, Ordering::Relaxed);
                    Arc::clone(m)
                })
                .ok()
            })
            .flatten();
        let id = owner.as_ref().map_or(0, |o| Arc::as_ptr(o).addr());
        Self {
            owner: Mutex::new(owner),
            id: AtomicUsize::new(id),
        }
    }

    /// Notes a use of the guard: from a thread other than the one it counts for, it no longer
    /// counts for any.
    pub(crate) fn touch(&self, lease: &Lease) {
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 && id != here() {
            self.end(lease);
        }
    }

    /// The lease counts for no thread any more: handed over, used elsewhere, or over.
    pub(crate) fn end(&self, lease: &Lease) {
        if self.id.swap(0, Ordering::Relaxed) == 0 {
            return;
        }
        let Some(owned) = lock(&self.owner).take() else {
            return;
        };
        let mut leases = lock(&owned.leases);
        let removed = leases
            .iter()
            .position(|l| std::ptr::eq(&**l, lease))
            .map(|i| leases.swap_remove(i));
        if removed.is_some() {
            COUNTED.fetch_sub(1, Ordering::Relaxed);
        }
        drop(leases);
        drop(removed);
    }
}

/// What an acquisition would wait for, by name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want<'a> {
    /// The name, excluding readers (a lock, a writer, a semaphore's permit).
    Alone(&'a str),
    /// A name, shared with other readers (whom a reader does not block).
    Shared,
    /// Every one of these names, excluding readers (a multi-lock).
    All(&'a [Arc<str>]),
}

impl Want<'_> {
    /// Whether a read lease of `name` keeps this acquisition waiting.
    fn excludes_reader_of(&self, name: &str) -> bool {
        match self {
            Self::Alone(n) => *n == name,
            Self::Shared => false,
            Self::All(resources) => resources.iter().any(|r| **r == *name),
        }
    }
}

/// The name of a live read lease of this thread, from `shared`'s factory, that an acquisition
/// of `want` would wait for: the waiting thread's own lease, which it cannot release while it
/// waits.
pub(crate) fn blocking(shared: &Arc<Shared>, want: &Want<'_>) -> Option<String> {
    if COUNTED.load(Ordering::Relaxed) == 0 {
        return None;
    }
    MINE.try_with(|m| {
        lock(&m.leases)
            .iter()
            .filter(|l| Arc::ptr_eq(&l.shared, shared) && !l.validity().is_zero())
            .find(|l| want.excludes_reader_of(&l.resource))
            .map(|l| l.resource.to_string())
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_blocks_what_excludes_readers_of_its_name_only() {
        let ab: Arc<[Arc<str>]> = ["a", "b"].into_iter().map(Arc::from).collect();
        assert!(Want::Alone("a").excludes_reader_of("a"));
        assert!(!Want::Alone("b").excludes_reader_of("a"));
        assert!(!Want::Shared.excludes_reader_of("a"));
        assert!(Want::All(&ab).excludes_reader_of("b"));
        assert!(!Want::All(&ab).excludes_reader_of("c"));
    }
}

//! Keeping the lease alive while the child runs.
//!
//! The library renews the lease itself: the lock (read-write lock, semaphore) is created with
//! [`RedLock::with_keep_alive`](redmutex::RedLock::with_keep_alive), so the factory's keep-alive
//! thread renews it every `ttl / 3` (retrying every `ttl / 10` after a failed round) and marks
//! it lost when a renewal finds a quorum without our token or the validity runs out. All this
//! module does is pass the loss on to the main thread, which stops the child.

use std::sync::mpsc::Sender;

use crate::held::Held;
use crate::signals::Event;

/// Sends one [`Event::Lost`] on `lost` if `guard`'s lease is lost (at once if it already is).
/// Nothing is sent after a release without loss.
pub fn watch(guard: &impl Held, lost: &Sender<Event>) {
    let lost = lost.clone();
    guard.on_loss(Box::new(move |reason| {
        let _ = lost.send(Event::Lost(reason));
    }));
}

//! Keeping the lease alive while the child runs.
//!
//! The library renews the lease itself: the lock (read-write lock, semaphore) is created with
//! [`Handle::with_keep_alive`](redmutex::Handle::with_keep_alive), so the factory's keep-alive
//! thread renews it every `ttl / 3` (retrying every `ttl / 10` after a failed round) and marks
//! it lost when a renewal finds a quorum without our token or the validity runs out. All this
//! module does is pass the loss on to the main thread, which stops the child.

use std::sync::mpsc::Sender;

use redmutex::LeaseGuard;

use crate::signals::Event;

/// Sends one [`Event::Lost`] on `lost` if `guard`'s lease is lost (at once if it already is).
/// Nothing is sent after a release without loss.
pub fn watch<K>(guard: &LeaseGuard<K>, lost: &Sender<Event>) {
    let lost = lost.clone();
    guard.loss_signal().on_loss(move |reason| {
        let _ = lost.send(Event::Lost(reason));
    });
}

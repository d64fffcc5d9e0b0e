//! Keeping the lease alive while the child runs.
//!
//! The library has no keep-alive yet, so [`keep_alive`] renews from here: a thread that calls
//! [`RedLockGuard::extend`] every `ttl / 3`. When the library gains its own keep-alive with a
//! loss signal, only [`keep_alive`] changes: it keeps its signature (a guard, a TTL, a channel
//! on which the loss is reported) and returns a handle that stops renewing when dropped.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use redmutex::{Error, RedLockGuard};

use crate::signals::Event;

/// The shortest pause between renewals (a tiny TTL must not spin).
const MIN_PAUSE: Duration = Duration::from_millis(1);

/// Renews the lease in the background until stopped.
pub struct KeepAlive {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KeepAlive {
    /// Stops renewing and waits for the renewal thread (at most one round).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Renews `guard`'s lease to `ttl` every `ttl / 3`, and sends one [`Event::Lost`] on `lost`
/// when it cannot: at once when a quorum no longer holds the token (`LockLost`, `Expired`), or
/// when rounds failing for want of a quorum have let the validity run out. A failed round is
/// retried sooner (every `ttl / 10`) while validity is left.
///
/// # Errors
///
/// When the renewal thread cannot be started.
pub fn keep_alive(
    guard: Arc<RedLockGuard>,
    ttl: Duration,
    lost: Sender<Event>,
) -> io::Result<KeepAlive> {
    let (stop, stopped) = mpsc::channel::<()>();
    let every = (ttl / 3).max(MIN_PAUSE);
    let retry = (ttl / 10).max(MIN_PAUSE);
    let thread = thread::Builder::new()
        .name("keep-alive".into())
        .spawn(move || {
            let mut pause = every;
            loop {
                // Never sleep past the end of the validity: a lease that runs out while
                // renewals fail must be reported when it does.
                let validity = guard.validity();
                let wait = pause.min(validity).max(MIN_PAUSE);
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                if !guard.is_valid() {
                    let _ = lost.send(Event::Lost(Error::Expired {
                        resource: guard.resource().to_owned(),
                    }));
                    return;
                }
                match guard.extend(ttl) {
                    Ok(()) => {
                        log::debug!(
                            "renewed {:?}: valid for {:.3?}",
                            guard.resource(),
                            guard.validity()
                        );
                        pause = every;
                    }
                    Err(e @ (Error::LockLost { .. } | Error::Expired { .. })) => {
                        let _ = lost.send(Event::Lost(e));
                        return;
                    }
                    Err(e) if guard.is_valid() => {
                        log::warn!(
                            "could not renew {:?} ({e}); retrying, {:.3?} of validity left",
                            guard.resource(),
                            guard.validity()
                        );
                        pause = retry;
                    }
                    Err(e) => {
                        let _ = lost.send(Event::Lost(e));
                        return;
                    }
                }
            }
        })?;
    Ok(KeepAlive {
        stop: Some(stop),
        thread: Some(thread),
    })
}

//! Runs user callbacks (loss callbacks, event hooks) on a thread of their own, so that no user
//! code ever runs on a library thread or while the library holds one of its locks: a callback
//! that blocks, panics or drops a guard cannot stop keep-alive or deadlock a round.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, PoisonError};

/// A callback to run.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// The per-factory callback thread (`redmutex-notify`), started by the first callback and
/// stopped when the factory is gone.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    tx: Mutex<Option<Sender<Job>>>,
}

impl Notifier {
    /// Runs `job` on the callback thread, after every job handed over before it. A panic in a
    /// job is caught and logged; the thread goes on with the next job. Never runs it here (the
    /// caller may be the keep-alive thread): should the thread not start, the job is dropped
    /// unrun and `what` is logged as an error.
    pub(crate) fn run(&self, what: &str, job: Job) {
        if let Err(job) = self.hand_over(job) {
            drop(job);
            log::error!("redmutex: no callback thread: {what} not run");
        }
    }

    /// Hands `job` to the callback thread (starting it if needed), never running it here:
    /// `Err(job)` when the thread cannot be started.
    pub(crate) fn hand_over(&self, job: Job) -> Result<(), Job> {
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let job = match tx.as_ref() {
            Some(sender) => match sender.send(job) {
                Ok(()) => return Ok(()),
                Err(e) => e.0,
            },
            None => job,
        };
        let (sender, receiver) = channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("redmutex-notify".into())
            .spawn(move || {
                for job in receiver {
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        log::warn!("redmutex: a callback panicked; the panic was caught");
                    }
                }
            });
        match spawned {
            Ok(_) => {
                // The receiver is alive (the thread just started), so this cannot fail.
                let _ = sender.send(job);
                *tx = Some(sender);
                Ok(())
            }
            Err(e) => {
                drop(tx);
                log::warn!("redmutex: cannot start the callback thread: {e}");
                Err(job)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    #[test]
    fn runs_jobs_in_order_off_the_calling_thread_and_survives_panics() {
        let n = Notifier::default();
        let (tx, rx) = sync_channel(4);
        let here = std::thread::current().id();
        n.run("a test job", Box::new(|| panic!("boom")));
        for i in 0..3 {
            let tx = tx.clone();
            n.run(
                "a test job",
                Box::new(move || {
                    tx.send((i, std::thread::current().id())).unwrap();
                }),
            );
        }
        for i in 0..3 {
            let (got, thread) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(got, i);
            assert_ne!(thread, here);
        }
    }
}

//! Signals: a cancel flag for the wait for the lock, and events for the main thread while the
//! command runs.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// What the main thread waits for while the command runs.
#[derive(Debug)]
pub enum Event {
    /// A signal arrived (SIGINT, SIGTERM, SIGHUP, or SIGCHLD as a wake-up).
    Signal(i32),
    /// The lease was lost.
    Lost(redmutex::LossReason),
}

/// The signals that end redmutex (after passing them to the command, if there is one).
pub const TERMINATING: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Signal handling for one invocation.
pub struct Listener {
    /// Set by the handler of any [`TERMINATING`] signal: the cancel flag of the wait for the
    /// lock ([`redmutex::Wait::cancel_on`]).
    cancel: Arc<AtomicBool>,
    /// The last terminating signal that arrived (0: none).
    last: Arc<AtomicUsize>,
    /// Every signal, and the lease's loss, for the main thread.
    pub events: Receiver<Event>,
    /// Where the loss of the lease is sent (see `lease::watch`).
    pub tx: Sender<Event>,
}

impl Listener {
    /// Starts listening: from now on SIGINT, SIGTERM and SIGHUP no longer kill redmutex. They
    /// set the cancel flag in the signal handler itself (so a wait ends without any thread
    /// having to run first), and also arrive as [`Event::Signal`] with SIGCHLD, so that `run`
    /// can pass them on to the command and release the lock first.
    ///
    /// # Errors
    ///
    /// When the handlers or the listening thread cannot be set up.
    pub fn start() -> io::Result<Self> {
        let cancel = Arc::new(AtomicBool::new(false));
        let last = Arc::new(AtomicUsize::new(0));
        for sig in TERMINATING {
            // The number first, then the flag: whoever sees the flag finds the number.
            signal_hook::flag::register_usize(sig, Arc::clone(&last), signal_number(sig))?;
            signal_hook::flag::register(sig, Arc::clone(&cancel))?;
        }
        let (tx, events) = channel();
        let mut signals = Signals::new(TERMINATING.iter().copied().chain([SIGCHLD]))?;
        let sender = tx.clone();
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sender.send(Event::Signal(sig)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            cancel,
            last,
            events,
            tx,
        })
    }

    /// The flag that ends a wait for the lock.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// The terminating signal that arrived, if one did.
    pub fn received(&self) -> Option<i32> {
        if !self.cancel.load(Ordering::Acquire) {
            return None;
        }
        i32::try_from(self.last.load(Ordering::Acquire))
            .ok()
            .filter(|&sig| sig != 0)
    }
}

fn signal_number(sig: i32) -> usize {
    usize::try_from(sig).unwrap_or(0)
}

/// The signal's name, for messages.
pub fn name(sig: i32) -> String {
    match sig {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        SIGHUP => "SIGHUP".into(),
        SIGCHLD => "SIGCHLD".into(),
        n => format!("signal {n}"),
    }
}

//! Signals and other events, delivered to the main thread over one channel.

use std::io;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// What the main thread waits for while it waits for the lock or for the child.
#[derive(Debug)]
pub enum Event {
    /// A signal arrived (SIGINT, SIGTERM, SIGHUP, or SIGCHLD as a wake-up).
    Signal(i32),
    /// The lease was lost.
    Lost(redmutex::LossReason),
}

/// The signals that end redmutex (after passing them to the child, if there is one).
pub const TERMINATING: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Starts listening: from now on SIGINT, SIGTERM and SIGHUP no longer kill redmutex but arrive
/// as [`Event::Signal`], so it can pass them on and release the lock first.
///
/// # Errors
///
/// When the handlers or the listening thread cannot be set up.
pub fn listen() -> io::Result<(Sender<Event>, Receiver<Event>)> {
    let (tx, rx) = channel();
    let mut signals = Signals::new(TERMINATING.iter().copied().chain([SIGCHLD]))?;
    let events = tx.clone();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if events.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;
    Ok((tx, rx))
}

/// Whether `sig` is one that should end redmutex.
pub fn is_terminating(sig: i32) -> bool {
    TERMINATING.contains(&sig)
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

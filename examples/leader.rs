//! Leader election: run this in several terminals (or hosts), each with its own name.
//!
//! ```sh
//! REDMUTEX_NODES="redis://127.0.0.1:7001 redis://127.0.0.1:7002 redis://127.0.0.1:7003" \
//!     cargo run --example leader -- node-a
//! ```
//!
//! What it really does:
//!
//! - Every process campaigns in the election `redmutex:example:leader`; one leads at a time
//!   (two leaders' validities never overlap, under Redlock's assumptions), and the others wait.
//! - The leader publishes its name as the election's value, and every 2 s proclaims a new value
//!   (`<name>#<n>`): every process, follower or leader, prints each change of leader or value as
//!   its observer reports it, in term order. An observer is woken by the nodes, so a change
//!   shows up about a round trip after it is made.
//! - After 10 s of leading, the leader resigns: a waiting follower takes over at once (it is
//!   woken by the resignation). Press Ctrl-C in the leader's terminal and it dies without
//!   resigning: then a follower takes over once the dead leader's lease runs out, within one
//!   TTL (3 s here; the leader renews it every second while it lives).
//! - A leader learns that it lost its lease (the nodes were unreachable, or the key was deleted)
//!   at the next renewal, at most a third of the TTL later, or when its validity runs out; it
//!   then stops leading and campaigns again. Until then it may still believe it leads: that is
//!   what the term is for. Every term is above every term before it, so pass it with every
//!   write, and have the storage refuse a term smaller than one it has seen.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use redmutex::RedLockFactory;

mod support;

fn main() -> Result<(), redmutex::Error> {
    let me = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    let factory = RedLockFactory::builder()
        .nodes(support::nodes())
        // A dead leader is replaced within about this long (an election keeps its leader
        // alive with renewals every third of it).
        .ttl(Duration::from_secs(3))
        .build()?;
    let election = factory.create_election("redmutex:example:leader");

    // The observer: its own thread, printing every change it is told of.
    let mut observer = election.observe();
    let watcher = me.clone();
    thread::spawn(move || {
        for change in &mut observer {
            match change {
                Ok(l) => println!(
                    "{watcher} sees: term {} led by {:?} (revision {}, lease {:?} left)",
                    l.term, l.value, l.revision, l.lease
                ),
                Err(e) => eprintln!("{watcher}: observing failed: {e}"),
            }
        }
    });

    loop {
        // Followers wait here, woken by the leader's resignation.
        let leader = election.campaign(me.as_str())?;
        let term = leader.term();
        println!("{me}: leading, term {term}");
        let (lost_tx, lost) = mpsc::channel();
        leader.loss_signal().on_loss(move |reason| {
            let _ = lost_tx.send(reason);
        });
        let started = Instant::now();
        let mut n = 0;
        // Lead for 10 s, proclaiming a new value every 2 s, unless the lease is lost.
        let lost_it = loop {
            if let Ok(reason) = lost.recv_timeout(Duration::from_secs(2)) {
                break Some(reason);
            }
            if started.elapsed() >= Duration::from_secs(10) {
                break None;
            }
            n += 1;
            // Real work would write here, passing `term` with each write.
            if let Err(e) = leader.proclaim(format!("{me}#{n}")) {
                println!("{me}: could not proclaim ({e})");
            }
        };
        match lost_it {
            Some(reason) => {
                println!("{me}: lost the leadership of term {term} ({reason}); campaigning again");
                drop(leader);
            }
            None => {
                println!("{me}: resigning term {term}");
                if let Err(e) = leader.resign() {
                    println!("{me}: the resignation found the lease lost: {e}");
                }
                // Let another candidate win the next term.
                thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

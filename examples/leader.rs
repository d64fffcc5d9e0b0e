//! Leader election: run this in several terminals (or hosts). Exactly one process leads at a
//! time; when the leader dies, another takes over within about one TTL. A leader that loses its
//! lease learns it from its keep-alive, and steps down: a key deleted or taken over is found by
//! the next renewal, within a third of the TTL (1 s here), and nodes that stop answering end
//! the lease when its validity runs out, within the TTL (3 s).
//!
//! ```sh
//! REDMUTEX_NODES="redis://127.0.0.1:7001 redis://127.0.0.1:7002 redis://127.0.0.1:7003" \
//!     cargo run --example leader -- node-a
//! ```

use std::time::Duration;

use redmutex::{LossReason, RedLockFactory};

mod support;

fn main() -> Result<(), redmutex::Error> {
    let me = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    let factory = RedLockFactory::builder()
        .nodes(support::nodes())
        .ttl(Duration::from_secs(3)) // a dead leader is replaced within about this long
        .keep_alive(true) // renewed every second while we lead
        .fencing(true) // a term number that only grows
        .build()?;
    let election = factory.create_lock("redmutex:example:leader");
    loop {
        // Followers wait here; the release of a leader that steps down wakes them at once.
        let guard = election.acquire()?;
        let term = guard.fencing_token().unwrap_or_default();
        println!("{me}: leading, term {term}");
        let lost = guard.loss_signal();
        // Lead until the lease is lost. Real work would pass `term` to whatever it writes, so
        // a deposed leader's late writes can be refused.
        let reason = loop {
            if let Some(reason) = lost.wait_timeout(Duration::from_secs(1)) {
                break reason;
            }
            println!(
                "{me}: still leading, term {term}, lease valid for {:?}",
                guard.validity()
            );
        };
        match reason {
            LossReason::TokenGone => println!("{me}: someone took the lease away; stepping down"),
            other => println!("{me}: lost the lease ({other}); stepping down"),
        }
        drop(guard);
    }
}

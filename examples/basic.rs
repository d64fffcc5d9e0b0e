//! Take a lock, work, release it, and see what `release` reports.
//!
//! Run with `REDMUTEX_NODES="redis://127.0.0.1:7001 ..."` (or `scripts/demo.sh`, which starts
//! local nodes).

use std::time::Duration;

use redmutex::RedLockFactory;

mod support;

fn main() -> Result<(), redmutex::Error> {
    let factory = RedLockFactory::builder()
        .nodes(support::nodes())
        .ttl(Duration::from_secs(5))
        .build()?;
    println!(
        "{} nodes, quorum {}",
        factory.node_count(),
        factory.quorum()
    );

    // The design card's line: held until the end of the block.
    {
        let _g = factory.create_lock("redmutex:example:basic").acquire()?;
        println!("holding redmutex:example:basic");
    }

    let lock = factory.create_lock("redmutex:example:basic");
    let guard = lock.acquire()?;
    println!(
        "acquired again, token {}..., validity {:?}",
        &guard.token()[..8],
        guard.validity()
    );
    assert!(lock.is_locked()?);
    // An extension makes the nodes hold the lock at least this long from now (never shorter
    // than they already do): 30 s, against the 5 s TTL it was taken with.
    guard.extend(Duration::from_secs(30))?;
    println!("extended to 30 s, validity {:?}", guard.validity());
    lock.release(guard)?;
    println!("released; locked now: {}", lock.is_locked()?);
    Ok(())
}

//! Threads contend for one lock; each prints when it gets in. A shared counter checks that no
//! two threads are ever inside together.
//!
//! `scripts/demo.sh` runs this against three local nodes it starts itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redmutex::RedLockFactory;

mod support;

const THREADS: usize = 4;
const ROUNDS: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let factory = RedLockFactory::builder()
        .nodes(support::nodes())
        .ttl(Duration::from_secs(5))
        .retry_delay(Duration::from_millis(5))
        .retry_jitter(Duration::from_millis(10))
        .build()?;
    println!(
        "{THREADS} threads x {ROUNDS} turns on one lock over {} nodes (quorum {})",
        factory.node_count(),
        factory.quorum()
    );
    let inside = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let lock = factory.create_lock("redmutex:example:threads");
            let inside = Arc::clone(&inside);
            thread::spawn(move || -> Result<(), redmutex::Error> {
                for turn in 1..=ROUNDS {
                    let waited = Instant::now();
                    let guard = lock.acquire()?;
                    let others = inside.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(others, 0, "two holders at once");
                    println!(
                        "{:>7.1?}  thread {t} in (turn {turn}/{ROUNDS}, waited {:.1?})",
                        start.elapsed(),
                        waited.elapsed()
                    );
                    thread::sleep(Duration::from_millis(20)); // the critical section
                    inside.fetch_sub(1, Ordering::SeqCst);
                    guard.release()?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker panicked")?;
    }
    println!(
        "{} acquisitions in {:.1?}, never two holders at once",
        THREADS * ROUNDS,
        start.elapsed()
    );
    Ok(())
}

//! A worker pool processing jobs, each under its own lock, so that two workers (here threads;
//! in production, processes on several hosts) never run the same job at once. A worker that
//! finds a job locked skips it and comes back later.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use redmutex::RedLockFactory;

mod support;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let factory = RedLockFactory::builder()
        .nodes(support::nodes())
        .ttl(Duration::from_secs(10))
        .build()?;
    // Every job appears twice in the queue, as if two producers had enqueued it.
    let jobs: VecDeque<u32> = (1..=8).chain(1..=8).collect();
    let queue = Arc::new(Mutex::new(jobs));
    let done = Arc::new(Mutex::new(Vec::new()));

    let workers: Vec<_> = (0..3)
        .map(|w| {
            let factory = factory.clone();
            let queue = Arc::clone(&queue);
            let done = Arc::clone(&done);
            thread::spawn(move || -> Result<(), redmutex::Error> {
                loop {
                    let Some(job) = queue.lock().expect("queue").pop_front() else {
                        return Ok(());
                    };
                    let lock = factory.create_lock(format!("redmutex:example:job:{job}"));
                    let Some(guard) = lock.try_acquire()? else {
                        println!("worker {w}: job {job} is being processed elsewhere, skipping");
                        continue;
                    };
                    let mut done = done.lock().expect("done");
                    if done.contains(&job) {
                        println!("worker {w}: job {job} already done");
                    } else {
                        println!("worker {w}: processing job {job}");
                        thread::sleep(Duration::from_millis(10));
                        done.push(job);
                    }
                    drop(done);
                    guard.release()?;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked")?;
    }
    let mut done = done.lock().expect("done").clone();
    done.sort_unstable();
    println!("jobs done: {done:?}");
    Ok(())
}

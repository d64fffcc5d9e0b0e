//! `try_acquire` never waits: the second attempt finds the lock held and gets `None`.

use redmutex::RedLockFactory;

mod support;

fn main() -> Result<(), redmutex::Error> {
    let factory = RedLockFactory::new(support::nodes())?;
    let lock = factory.create_lock("redmutex:example:try");

    let first = lock
        .try_acquire()?
        .expect("nobody else should hold the example lock");
    println!("first try: acquired (validity {:?})", first.validity());

    match lock.try_acquire()? {
        Some(_) => println!("second try: acquired?! (should not happen)"),
        None => println!("second try: held elsewhere, returned at once"),
    }

    first.release()?;
    let again = lock.try_acquire()?;
    println!("after release: acquired = {}", again.is_some());
    Ok(())
}

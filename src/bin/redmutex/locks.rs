//! What `run` can hold: the mutex (the default), or a read-write lock taken shared (`-s`) or
//! exclusive (`-x`), like flock(1)'s modes. [`Lock`] takes one (once, or waiting), [`Held`] is
//! what the runner needs of the guard; each kind of lock is a thin impl of the library's calls.

use std::time::Duration;

use redmutex::{
    Error, LossReason, RedLock, RedLockGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Wait,
};

/// A lock `run` can take.
pub trait Lock {
    /// What holding it gives.
    type Guard: Held;

    /// The lock's name (the Redis key).
    fn resource(&self) -> &str;

    /// One round: `Ok(None)` when it is held elsewhere.
    fn try_take(&self) -> Result<Option<Self::Guard>, Error>;

    /// Waits for it as `wait` says.
    fn take_with(&self, wait: Wait<'_>) -> Result<Self::Guard, Error>;
}

/// A held lock, as the runner uses it.
pub trait Held {
    fn token(&self) -> &str;
    fn resource(&self) -> &str;
    fn fencing_token(&self) -> Option<u64>;
    fn validity(&self) -> Duration;
    fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static);
    fn release(self) -> Result<(), Error>;
}

impl Lock for RedLock {
    type Guard = RedLockGuard;

    fn resource(&self) -> &str {
        Self::resource(self)
    }

    fn try_take(&self) -> Result<Option<RedLockGuard>, Error> {
        self.try_acquire()
    }

    fn take_with(&self, wait: Wait<'_>) -> Result<RedLockGuard, Error> {
        self.acquire_with(wait)
    }
}

/// A read-write lock taken shared (`-s`): a read lock.
pub struct Shared(pub RwLock);

/// A read-write lock taken exclusive (`-x`): the write lock, with writer preference.
pub struct Exclusive(pub RwLock);

impl Lock for Shared {
    type Guard = RwLockReadGuard;

    fn resource(&self) -> &str {
        self.0.resource()
    }

    fn try_take(&self) -> Result<Option<RwLockReadGuard>, Error> {
        self.0.try_read()
    }

    fn take_with(&self, wait: Wait<'_>) -> Result<RwLockReadGuard, Error> {
        self.0.read_with(wait)
    }
}

impl Lock for Exclusive {
    type Guard = RwLockWriteGuard;

    fn resource(&self) -> &str {
        self.0.resource()
    }

    fn try_take(&self) -> Result<Option<RwLockWriteGuard>, Error> {
        self.0.try_write()
    }

    fn take_with(&self, wait: Wait<'_>) -> Result<RwLockWriteGuard, Error> {
        self.0.write_with(wait)
    }
}

/// The same impl for each guard type, which all have these methods.
macro_rules! held {
    ($guard:ty, $fencing:expr) => {
        impl Held for $guard {
            fn token(&self) -> &str {
                <$guard>::token(self)
            }

            fn resource(&self) -> &str {
                <$guard>::resource(self)
            }

            fn fencing_token(&self) -> Option<u64> {
                let fencing: fn(&$guard) -> Option<u64> = $fencing;
                fencing(self)
            }

            fn validity(&self) -> Duration {
                <$guard>::validity(self)
            }

            fn on_loss(&self, callback: impl FnOnce(LossReason) + Send + 'static) {
                <$guard>::on_loss(self, callback);
            }

            fn release(self) -> Result<(), Error> {
                <$guard>::release(self)
            }
        }
    };
}

held!(RedLockGuard, RedLockGuard::fencing_token);
held!(RwLockWriteGuard, RwLockWriteGuard::fencing_token);
// Readers get no fencing token.
held!(RwLockReadGuard, |_| None);

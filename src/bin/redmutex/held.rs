//! What `run` and `acquire` need of a synchronizer and of what it hands out, whatever it is: a
//! lock ([`RedLock`], [`RedLockGuard`]), a read-write lock taken shared (`-s`) or exclusive
//! (`-x`), like flock(1)'s modes, or a semaphore's permit ([`Semaphore`], [`SemaphorePermit`],
//! with `run --permits N`). Each is a thin forwarding of the library's public API, so the
//! waiting, the supervision of the command and the release are written once.

use redmutex::{
    Error, LossReason, RedLock, RedLockGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Semaphore,
    SemaphorePermit, Wait,
};

/// Something that can be taken: a lock, or a semaphore's permit.
pub trait Take {
    /// What a successful acquisition holds.
    type Held: Held;

    /// The name (the Redis key, or the semaphore's name).
    fn key(&self) -> &str;

    /// One attempt, never waiting.
    fn try_take(&self) -> Result<Option<Self::Held>, Error>;

    /// Waits as `wait` says.
    fn take_with(&self, wait: Wait<'_>) -> Result<Self::Held, Error>;
}

/// A held lease that `run` supervises: its token, what the command's environment gets, its loss
/// signal, and its release.
pub trait Held {
    /// The name it was taken under.
    fn key(&self) -> &str;

    /// The token (for REDMUTEX_TOKEN).
    fn token(&self) -> &str;

    /// How long the lease is valid.
    fn validity(&self) -> std::time::Duration;

    /// Extra variables for the command's environment.
    fn env(&self) -> Vec<(&'static str, String)>;

    /// What the log says about it after "lease valid for ..." (", fencing token 7", ", permit
    /// 2 of 4").
    fn note(&self) -> String;

    /// Calls `callback` once if the lease is lost.
    fn on_loss(&self, callback: Box<dyn FnOnce(LossReason) + Send + 'static>);

    /// Releases it, reporting whether it was still ours.
    fn release(self) -> Result<(), Error>;
}

impl Take for RedLock {
    type Held = RedLockGuard;

    fn key(&self) -> &str {
        self.resource()
    }

    fn try_take(&self) -> Result<Option<RedLockGuard>, Error> {
        self.try_acquire()
    }

    fn take_with(&self, wait: Wait<'_>) -> Result<RedLockGuard, Error> {
        self.acquire_with(wait)
    }
}

impl Held for RedLockGuard {
    fn key(&self) -> &str {
        self.resource()
    }

    fn token(&self) -> &str {
        self.token()
    }

    fn validity(&self) -> std::time::Duration {
        self.validity()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        // Set with --fencing only.
        self.fencing_token()
            .map(|t| ("REDMUTEX_FENCING_TOKEN", t.to_string()))
            .into_iter()
            .collect()
    }

    fn note(&self) -> String {
        self.fencing_token()
            .map_or_else(String::new, |t| format!(", fencing token {t}"))
    }

    fn on_loss(&self, callback: Box<dyn FnOnce(LossReason) + Send + 'static>) {
        self.on_loss(callback);
    }

    fn release(self) -> Result<(), Error> {
        self.release()
    }
}

/// A semaphore with its permit count, for `run --permits N`.
pub struct Permits {
    pub semaphore: Semaphore,
}

impl Take for Permits {
    type Held = Permit;

    fn key(&self) -> &str {
        self.semaphore.name()
    }

    fn try_take(&self) -> Result<Option<Permit>, Error> {
        let permits = self.semaphore.permits();
        Ok(self
            .semaphore
            .try_acquire()?
            .map(|permit| Permit { permit, permits }))
    }

    fn take_with(&self, wait: Wait<'_>) -> Result<Permit, Error> {
        let permit = self.semaphore.acquire_with(wait)?;
        Ok(Permit {
            permit,
            permits: self.semaphore.permits(),
        })
    }
}

/// A semaphore's permit, with the count it was taken from.
pub struct Permit {
    permit: SemaphorePermit,
    permits: u32,
}

impl Held for Permit {
    fn key(&self) -> &str {
        self.permit.name()
    }

    fn token(&self) -> &str {
        self.permit.token()
    }

    fn validity(&self) -> std::time::Duration {
        self.permit.validity()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REDMUTEX_PERMIT", self.permit.slot().to_string()),
            ("REDMUTEX_PERMITS", self.permits.to_string()),
        ]
    }

    fn note(&self) -> String {
        format!(", permit {} of {}", self.permit.slot(), self.permits)
    }

    fn on_loss(&self, callback: Box<dyn FnOnce(LossReason) + Send + 'static>) {
        self.permit.on_loss(callback);
    }

    fn release(self) -> Result<(), Error> {
        self.permit.release()
    }
}

/// A read-write lock taken shared (`-s`): a read lock.
pub struct Shared(pub RwLock);

/// A read-write lock taken exclusive (`-x`): the write lock, with writer preference.
pub struct Exclusive(pub RwLock);

impl Take for Shared {
    type Held = RwLockReadGuard;

    fn key(&self) -> &str {
        self.0.resource()
    }

    fn try_take(&self) -> Result<Option<RwLockReadGuard>, Error> {
        self.0.try_read()
    }

    fn take_with(&self, wait: Wait<'_>) -> Result<RwLockReadGuard, Error> {
        self.0.read_with(wait)
    }
}

impl Take for Exclusive {
    type Held = RwLockWriteGuard;

    fn key(&self) -> &str {
        self.0.resource()
    }

    fn try_take(&self) -> Result<Option<RwLockWriteGuard>, Error> {
        self.0.try_write()
    }

    fn take_with(&self, wait: Wait<'_>) -> Result<RwLockWriteGuard, Error> {
        self.0.write_with(wait)
    }
}

impl Held for RwLockReadGuard {
    fn key(&self) -> &str {
        self.resource()
    }

    fn token(&self) -> &str {
        self.token()
    }

    fn validity(&self) -> std::time::Duration {
        self.validity()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        // Readers get no fencing token.
        Vec::new()
    }

    fn note(&self) -> String {
        ", shared".to_owned()
    }

    fn on_loss(&self, callback: Box<dyn FnOnce(LossReason) + Send + 'static>) {
        self.on_loss(callback);
    }

    fn release(self) -> Result<(), Error> {
        self.release()
    }
}

impl Held for RwLockWriteGuard {
    fn key(&self) -> &str {
        self.resource()
    }

    fn token(&self) -> &str {
        self.token()
    }

    fn validity(&self) -> std::time::Duration {
        self.validity()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        // Set with --fencing only.
        self.fencing_token()
            .map(|t| ("REDMUTEX_FENCING_TOKEN", t.to_string()))
            .into_iter()
            .collect()
    }

    fn note(&self) -> String {
        let fencing = self
            .fencing_token()
            .map_or_else(String::new, |t| format!(", fencing token {t}"));
        format!(", exclusive{fencing}")
    }

    fn on_loss(&self, callback: Box<dyn FnOnce(LossReason) + Send + 'static>) {
        self.on_loss(callback);
    }

    fn release(self) -> Result<(), Error> {
        self.release()
    }
}

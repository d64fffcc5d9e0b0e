//! `redmutex`: run a command under a distributed lock, like flock(1) across hosts.
//!
//! Built with the `cli` feature. See `redmutex --help` and the README's "Command line" section.
//!
//! A thin client of the library: one `RedLockFactory` per invocation, and every subcommand is
//! one call of its public API (`acquire_with`, `try_acquire`, `leak`, `release_token`,
//! `extend_token`, `inspect`; `campaign` through the election's `acquire_with`, `leader`,
//! `observe`; `RunOnce::start_with` and `complete`).

mod cli;
mod doctor;
mod elect;
mod exit;
mod held;
mod lease;
mod logger;
mod nodes;
mod once;
mod run;
mod signals;
mod status;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use clap::error::ErrorKind;
use redmutex::{Error, Fingerprint, Handle, LeaseGuard, RedLockFactory, Wait};

use crate::cli::{
    AcquireArgs, Cli, Command, ExtendArgs, LockMode, NodeArgs, RunArgs, TokenArgs, WaitArgs,
};
use crate::exit::{Exit, Failure};
use crate::held::Describe;
use crate::signals::Listener;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e).into(),
    };
    logger::init(cli.verbose);
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(f) => {
            logger::error(&f.message);
            for d in &f.details {
                log::info!("node {d}");
            }
            f.exit.into()
        }
    }
}

/// Clap's errors: help and version go to stdout with 0; a usage error is one line on stderr
/// with 64 (clap itself would exit 2).
fn usage(e: &clap::Error) -> Exit {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            Exit::Success
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Exit::Usage
        }
        _ => {
            // Clap's message is its first paragraph (the rest is usage and tips): one line.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            logger::error(&format!("{message} (see 'redmutex --help')"));
            Exit::Usage
        }
    }
}

fn run(cli: Cli) -> Result<Exit, Failure> {
    let nodes = &cli.nodes;
    match &cli.command {
        Command::Run(args) if args.permits.is_some() => run_permits(nodes, args),
        Command::Run(args) if args.once => once::run_once(nodes, args),
        Command::Run(args) => {
            let signals = listen()?;
            let factory = factory(nodes, Some(args.wait.ttl))?;
            // The library renews the lease while the command runs.
            let key = args.key.as_str();
            match args.mode() {
                LockMode::Mutex => {
                    let lock = factory
                        .create_lock(key)
                        .with_keep_alive(true)
                        .with_fencing(args.fencing);
                    run_under(&lock, args, &signals)
                }
                LockMode::Shared => {
                    let lock = factory.create_rwlock(key).with_keep_alive(true);
                    run_under(&lock.reader(), args, &signals)
                }
                LockMode::Exclusive => {
                    let lock = factory
                        .create_rwlock(key)
                        .with_keep_alive(true)
                        .with_fencing(args.fencing);
                    run_under(&lock.writer(), args, &signals)
                }
            }
        }
        Command::Acquire(args) => acquire(nodes, args),
        Command::Status(args) => {
            let lock = factory(nodes, None)?.create_lock(args.key.as_str());
            status::status(&lock, args.json)
        }
        Command::Release(args) => release(nodes, args),
        Command::Extend(args) => extend(nodes, args),
        Command::Doctor(args) => {
            doctor::doctor(&factory(nodes, None)?, args.key.as_deref(), args.json)
        }
        Command::Elect(args) => elect::elect(nodes, args),
        Command::Leader(args) => elect::leader(nodes, args),
    }
}

/// `run`: take `lock` as the flags say, then run the command while holding it.
fn run_under<K: Describe>(
    lock: &Handle<K>,
    args: &RunArgs,
    signals: &Listener,
) -> Result<Exit, Failure> {
    match take(lock, &args.wait, signals)? {
        Taken::Guard(guard) => run::run(args, lock, guard, signals),
        Taken::Exit(exit) => Ok(exit),
    }
}

/// `run --permits N`: hold one of N permits of the semaphore KEY while the command runs, so
/// that at most N commands run at once, across hosts.
fn run_permits(nodes: &NodeArgs, args: &RunArgs) -> Result<Exit, Failure> {
    let signals = listen()?;
    let factory = factory(nodes, Some(args.wait.ttl))?;
    let permits = args.permits.unwrap_or(1);
    // The library renews the permit while the command runs.
    let semaphore = factory
        .create_semaphore(args.key.as_str(), permits)
        .with_keep_alive(true);
    run_under(&semaphore, args, &signals)
}

/// `acquire`: take the lock, print the token, and leave the lock held.
fn acquire(nodes: &NodeArgs, args: &AcquireArgs) -> Result<Exit, Failure> {
    let signals = listen()?;
    let factory = factory(nodes, Some(args.wait.ttl))?;
    // No keep-alive: the lock must end with its TTL unless `extend`ed.
    let lock = factory
        .create_lock(args.key.as_str())
        .with_fencing(args.fencing);
    let guard = match take(&lock, &args.wait, &signals)? {
        Taken::Guard(guard) => guard,
        Taken::Exit(exit) => return Ok(exit),
    };
    let validity = guard.validity();
    let fencing = guard.fencing_token();
    // The lease outlives this process: give the guard up without releasing it.
    let token = guard.leak();
    let line = match fencing {
        Some(fencing) => format!("{token} {fencing}"),
        None => token.clone(),
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        // Nobody learnt the token: do not leave a lock that only its TTL can end.
        if let Err(release) = lock.release_token(&token) {
            log::info!("releasing {:?}: {release}", args.key);
        }
        return Err(Failure::new(
            Exit::OsError,
            format!("cannot print the token: {e}"),
        ));
    }
    log::info!(
        "holding {:?} for {}; end it with `redmutex release` (or it expires)",
        args.key,
        human(validity)
    );
    Ok(Exit::Success)
}

/// `release`: end the lock held with a token, from any process.
fn release(nodes: &NodeArgs, args: &TokenArgs) -> Result<Exit, Failure> {
    let lock = factory(nodes, None)?.create_lock(args.key.as_str());
    log::debug!("token fingerprint {}", Fingerprint::of(&args.token));
    lock.release_token(&args.token)?;
    log::info!("released {:?}", args.key);
    Ok(Exit::Success)
}

/// `extend`: make the nodes hold the lock of a token at least --ttl from now.
fn extend(nodes: &NodeArgs, args: &ExtendArgs) -> Result<Exit, Failure> {
    let key = &args.lock.key;
    let lock = factory(nodes, None)?.create_lock(key.as_str());
    log::debug!("token fingerprint {}", Fingerprint::of(&args.lock.token));
    let validity = lock.extend_token(&args.lock.token, args.ttl)?;
    log::info!("extended {key:?}: valid for {}", human(validity));
    Ok(Exit::Success)
}

enum Taken<G> {
    Guard(G),
    Exit(Exit),
}

/// Waits for the lock (or a permit) as the flags say, until a terminating signal calls the
/// wait off.
fn take<K: Describe>(
    lock: &Handle<K>,
    wait: &WaitArgs,
    signals: &Listener,
) -> Result<Taken<LeaseGuard<K>>, Failure> {
    let key = lock.resource();
    let start = Instant::now();
    let cancel = signals.cancel_flag();
    let result = match wait.limit() {
        // One round, without the waiting machinery (subscription, waiting mark).
        Some(limit) if limit.is_zero() => lock.try_acquire(),
        Some(limit) => lock
            .acquire_with(Wait::timeout(limit).cancel_on(cancel))
            .map(Some),
        None => lock
            .acquire_with(Wait::forever().cancel_on(cancel))
            .map(Some),
    };
    let waited = start.elapsed();
    match result {
        Ok(Some(guard)) => {
            if let Some(sig) = signals.received() {
                // The signal came during the winning round: it still wins.
                interrupted(sig, key, waited);
                if let Err(e) = guard.release() {
                    log::info!("releasing {key:?}: {e}");
                }
                return Ok(Taken::Exit(Exit::Signal(sig)));
            }
            log::info!(
                "acquired {key:?} after waiting {}: lease valid for {}{}",
                human(waited),
                human(guard.validity()),
                K::note(lock, &guard)
            );
            log::debug!("token fingerprint {}", Fingerprint::of(guard.token()));
            Ok(Taken::Guard(guard))
        }
        Ok(None) | Err(Error::Timeout { .. }) => {
            log::info!("gave up on {key:?} after {}: held elsewhere", human(waited));
            Ok(Taken::Exit(Exit::Conflict(wait.conflict_exit_code)))
        }
        Err(Error::Cancelled { waited, .. }) => match signals.received() {
            Some(sig) => {
                interrupted(sig, key, waited);
                Ok(Taken::Exit(Exit::Signal(sig)))
            }
            None => Err(Failure::new(
                Exit::Software,
                format!("the wait for {key:?} was cancelled, but no signal arrived"),
            )),
        },
        Err(e) => Err(e.into()),
    }
}

fn interrupted(sig: i32, key: &str, waited: Duration) {
    log::info!(
        "interrupted by {} after waiting {} for {key:?}",
        signals::name(sig),
        human(waited)
    );
}

fn listen() -> Result<Listener, Failure> {
    Listener::start()
        .map_err(|e| Failure::new(Exit::OsError, format!("cannot set up signal handling: {e}")))
}

/// The library's default TTL, for the subcommands that take none.
const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The one factory of this invocation; building it validates the nodes and durations, naming
/// what is wrong.
fn factory(nodes: &NodeArgs, ttl: Option<Duration>) -> Result<RedLockFactory, Failure> {
    let urls = nodes.urls();
    if urls.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "no nodes given: use --node URL or set REDMUTEX_NODES",
        ));
    }
    let q = &nodes.quarantine;
    let mut b = RedLockFactory::builder()
        .nodes(urls.iter().map(String::as_str))
        .connect_timeout(nodes.connect_timeout)
        .io_timeout(nodes.io_timeout)
        .longest_ttl(q.longest_ttl)
        .durable_nodes(q.durable_nodes)
        .restart_quarantine(!q.no_restart_quarantine);
    match ttl {
        Some(ttl) => b = b.ttl(ttl),
        // A subcommand that writes no lease (status, doctor, release) must not trip over a
        // --longest-ttl below the library's default TTL.
        None => b = b.ttl(DEFAULT_TTL.min(q.longest_ttl)),
    }
    let factory = b.build().map_err(|e| {
        let mut f = Failure::from(e);
        if f.message.contains(": node ")
            && let Some(hint) = nodes::comma_hint(&urls)
        {
            f.message = format!("{}; {hint}", f.message);
        }
        f
    })?;
    log::debug!("{factory:?}");
    Ok(factory)
}

/// A duration for messages: "12 ms", "9.985 s".
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

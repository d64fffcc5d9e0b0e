//! `redmutex`: run a command under a distributed lock, like flock(1) across hosts.
//!
//! Built with the `cli` feature. See `redmutex --help` and the README's "Command line" section.

mod cli;
mod exit;
mod lease;
mod logger;
mod nodes;
mod run;
mod signals;
mod status;
mod wait;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use redmutex::{RedLock, RedLockFactory, RedLockGuard};

use crate::cli::{AcquireArgs, Cli, Command, NodeArgs, WaitArgs};
use crate::exit::{Exit, Failure};
use crate::nodes::Nodes;
use crate::signals::Event;
use crate::wait::Outcome;

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
        Command::Run(args) => {
            let (tx, events) = listen()?;
            // The library renews the lease while the command runs.
            let lock = |l: RedLock| l.with_keep_alive(true).with_fencing(args.fencing);
            match take(nodes, &args.key, &args.wait, &events, lock)? {
                Taken::Guard(guard) => run::run(args, guard, &events, &tx),
                Taken::Exit(exit) => Ok(exit),
            }
        }
        Command::Acquire(args) => acquire(nodes, args),
        Command::Status(args) => {
            factory(nodes, None)?;
            status::status(&direct(nodes)?, &args.key, args.json)
        }
        Command::Release(args) => {
            factory(nodes, None)?;
            nodes::release(&direct(nodes)?, &args.key, &args.token)?;
            Ok(Exit::Success)
        }
        Command::Extend(args) => {
            factory(nodes, Some(args.ttl))?;
            nodes::extend(&direct(nodes)?, &args.lock.key, &args.lock.token, args.ttl)?;
            Ok(Exit::Success)
        }
    }
}

/// `acquire`: take the lock, print the token, and leave the lock held.
fn acquire(nodes: &NodeArgs, args: &AcquireArgs) -> Result<Exit, Failure> {
    let (_tx, events) = listen()?;
    // No keep-alive: the lock must end with its TTL unless `extend`ed.
    let guard = match take(nodes, &args.key, &args.wait, &events, |l| l)? {
        Taken::Guard(guard) => guard,
        Taken::Exit(exit) => return Ok(exit),
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{}", guard.token()).and_then(|()| out.flush()) {
        // Nobody learnt the token: do not leave a lock that only its TTL can end.
        let _ = guard.release();
        return Err(Failure::new(
            Exit::OsError,
            format!("cannot print the token: {e}"),
        ));
    }
    log::info!(
        "holding {:?} for {:.3?}; release it with `redmutex release`",
        args.key,
        guard.validity()
    );
    // The lock must outlive this process, and the library has no API to give a guard up
    // without releasing it: forgetting the guard skips its Drop (which would release). This
    // leaks an Arc and a String in a process that is about to exit.
    std::mem::forget(guard);
    Ok(Exit::Success)
}

enum Taken {
    Guard(RedLockGuard),
    Exit(Exit),
}

/// Waits for the lock as the flags say.
fn take(
    nodes: &NodeArgs,
    key: &str,
    wait: &WaitArgs,
    events: &std::sync::mpsc::Receiver<Event>,
    configure: impl FnOnce(RedLock) -> RedLock,
) -> Result<Taken, Failure> {
    let factory = factory(nodes, Some(wait.ttl))?;
    let lock = configure(factory.create_lock(key).with_ttl(wait.ttl));
    Ok(match wait::acquire(&lock, wait.limit(), events)? {
        Outcome::Acquired(guard) => Taken::Guard(guard),
        Outcome::Busy => Taken::Exit(Exit::Conflict(wait.conflict_exit_code)),
        Outcome::Interrupted(sig) => Taken::Exit(Exit::Signal(sig)),
    })
}

fn listen() -> Result<
    (
        std::sync::mpsc::Sender<Event>,
        std::sync::mpsc::Receiver<Event>,
    ),
    Failure,
> {
    signals::listen()
        .map_err(|e| Failure::new(Exit::OsError, format!("cannot set up signal handling: {e}")))
}

/// The library's factory: also validates the node URLs and durations, naming what is wrong.
fn factory(nodes: &NodeArgs, ttl: Option<std::time::Duration>) -> Result<RedLockFactory, Failure> {
    let mut b = RedLockFactory::builder()
        .nodes(nodes.nodes.iter().map(String::as_str))
        .connect_timeout(nodes.connect_timeout)
        .io_timeout(nodes.io_timeout);
    if let Some(ttl) = ttl {
        b = b.ttl(ttl);
    }
    Ok(b.build()?)
}

fn direct(nodes: &NodeArgs) -> Result<Nodes, Failure> {
    Nodes::new(&nodes.nodes, nodes.connect_timeout, nodes.io_timeout)
}

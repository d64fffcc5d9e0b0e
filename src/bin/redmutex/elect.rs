//! `redmutex elect`: run a command while this process leads an election, stopping it if the
//! leadership is lost (as `run` does for a lock); and `redmutex leader`: who leads, or with
//! `--watch` every change.
//!
//! `elect` is `run` over the election's handle: the campaign is the generic `take` (the
//! library's `acquire_with`, cancelled by a signal), and the command is supervised and the
//! leadership resigned by `run::run`.

use std::io::Write as _;
use std::time::Duration;

use redmutex::kind::Leader;
use redmutex::{Election, Error, Handle, LeaseGuard, Wait};
use serde_json::json;

use crate::cli::{ElectArgs, LeaderArgs, ModeArgs, NodeArgs, RunArgs};
use crate::exit::{Exit, Failure};
use crate::held::Describe;
use crate::{Taken, factory, listen, run, take};

impl Describe for Leader {
    fn env(_: &Handle<Self>, guard: &LeaseGuard<Self>) -> Vec<(&'static str, String)> {
        vec![
            ("REDMUTEX_TERM", guard.term().to_string()),
            ("REDMUTEX_FENCING_TOKEN", guard.term().to_string()),
            ("REDMUTEX_LEADER_VALUE", guard.value()),
        ]
    }

    fn note(_: &Handle<Self>, guard: &LeaseGuard<Self>) -> String {
        format!(", leading in term {}", guard.term())
    }
}

/// `elect`: campaign, then run the command while leading.
pub fn elect(nodes: &NodeArgs, args: &ElectArgs) -> Result<Exit, Failure> {
    let signals = listen()?;
    let factory = factory(nodes, Some(args.wait.ttl))?;
    let value = args.value.clone().unwrap_or_else(default_value);
    // Keep-alive is on for elections: the leadership is renewed while the command runs.
    let election = factory.create_election(args.key.as_str()).with_value(value);
    // The command runs as `run` runs it (as a plain lock's holder: no mode, no permits).
    let run_args = RunArgs {
        wait: args.wait.clone(),
        kill_after: args.kill_after,
        fencing: false,
        mode: ModeArgs {
            shared: false,
            exclusive: false,
        },
        permits: None,
        once: false,
        retention: Duration::ZERO,
        shell: args.shell.clone(),
        key: args.key.clone(),
        argv: args.argv.clone(),
    };
    match take(&election, &args.wait, &signals)? {
        Taken::Guard(guard) => run::run(&run_args, &election, guard, &signals),
        Taken::Exit(exit) => Ok(exit),
    }
}

/// This host's name and this process's id: who leads, for `redmutex leader`.
fn default_value() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host} pid {}", std::process::id())
}

/// `leader`: print the leader (or none), and with `--watch` every change.
pub fn leader(nodes: &NodeArgs, args: &LeaderArgs) -> Result<Exit, Failure> {
    let factory = factory(nodes, Some(args.ttl))?;
    let election = factory.create_election(args.key.as_str());
    if !args.watch {
        let leader = election.leader()?;
        print(&line(&args.key, leader.as_ref(), args.json))?;
        return Ok(Exit::Success);
    }
    watch(&election, args)
}

/// `leader --watch`: the current state, then every change, until a terminating signal.
fn watch(election: &Election, args: &LeaderArgs) -> Result<Exit, Failure> {
    let signals = listen()?;
    let cancel = signals.cancel_flag();
    // The observer is subscribed before the first read, so no change after it is missed.
    let mut observer = election.observe().with_poll_interval(args.poll);
    let current = match observer.wait_with(Wait::timeout(Duration::ZERO).cancel_on(cancel)) {
        Ok(leader) => Some(leader),
        Err(Error::Timeout { .. }) => None,
        Err(e) => return interrupted_or(e, &signals),
    };
    if current.is_none() {
        // None leads: say so, from a quorum read (the observer reports leaders only).
        let now = election.leader()?;
        print(&line(&args.key, now.as_ref(), args.json))?;
    } else {
        print(&line(&args.key, current.as_ref(), args.json))?;
    }
    loop {
        match observer.wait_with(Wait::forever().cancel_on(cancel)) {
            Ok(leader) => print(&line(&args.key, Some(&leader), args.json))?,
            Err(e) => return interrupted_or(e, &signals),
        }
    }
}

/// A wait that ended in `e`: a terminating signal's exit if one came, else the error.
fn interrupted_or(e: Error, signals: &crate::signals::Listener) -> Result<Exit, Failure> {
    match (e, signals.received()) {
        (Error::Cancelled { .. }, Some(sig)) => Ok(Exit::Signal(sig)),
        (e, _) => Err(e.into()),
    }
}

/// One line for the leader of `key` (or for none).
fn line(key: &str, leader: Option<&redmutex::Leader>, as_json: bool) -> String {
    if as_json {
        let leader = leader.map(|l| {
            json!({
                "term": l.term,
                "value": l.value,
                "revision": l.revision,
                "holder": l.holder.as_str(),
                "lease_ms": u64::try_from(l.lease.as_millis()).unwrap_or(u64::MAX),
                "nodes": l.nodes,
            })
        });
        return format!("{}\n", json!({ "key": key, "leader": leader }));
    }
    match leader {
        Some(l) => format!(
            "{key}: term {}, value {:?}, revision {}, lease {}, holder {} ({} nodes)\n",
            l.term,
            l.value,
            l.revision,
            crate::human(l.lease),
            l.holder,
            l.nodes
        ),
        None => format!("{key}: no leader\n"),
    }
}

/// Writes `text` to stdout and flushes it (each change as it happens).
fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(Exit::OsError, format!("cannot write to stdout: {e}")))
}

//! The command line, as clap derive types: the doc comments are the help text.

use std::ffi::OsString;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::exit::{CONFLICT_DEFAULT, TABLE};

/// The node used when neither `--node` nor `REDMUTEX_NODES` is given.
pub const DEFAULT_NODE: &str = "redis://127.0.0.1:6379";

/// The help heading of the options every subcommand takes (where the nodes are, how long to
/// wait for them, -v), so that a subcommand's `--help` lists its own options apart.
const GLOBAL: &str = "Global options (any subcommand)";

/// The longest duration accepted for any SECS argument (about 31 years).
const MAX_SECS: f64 = 1e9;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "redmutex",
    version,
    about = "Run a command under a distributed lock, like flock(1) across hosts",
    long_about = "Run a command under a distributed lock, like flock(1) across hosts.\n\n\
        The lock is a lease taken with the Redlock algorithm on N independent Redis masters \
        (a majority must grant it). `run` renews the lease while the command runs and \
        releases it when the command ends.",
    after_long_help = TABLE,
    max_term_width = 98,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten, next_help_heading = GLOBAL)]
    pub nodes: NodeArgs,

    /// Say more on stderr: -v how long it waited, the lease (validity, fencing token) and how
    /// it ended, and why each node failed; -vv every round
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = GLOBAL)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Where the lock lives.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A node: redis://[user][:password@]host[:port][/db], rediss:// (TLS builds),
    /// redis+unix:///path, or a Sentinel-managed master group as
    /// redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]. Repeat for
    /// each node, or give a list (here or in REDMUTEX_NODES) separated by spaces or ';'. A
    /// comma separates nodes only where a URL follows it (redis://a,redis://b); inside a
    /// Sentinel URL, commas separate its sentinels. Passwords are never printed.
    #[arg(
        long = "node",
        value_name = "URL",
        env = "REDMUTEX_NODES",
        hide_env_values = true,
        default_value = DEFAULT_NODE,
        global = true
    )]
    pub nodes: Vec<String>,

    /// How long connecting to a node may take, in seconds
    #[arg(long, value_name = "SECS", default_value = "0.5", value_parser = parse_secs, global = true)]
    pub connect_timeout: Duration,

    /// How long a round waits for the nodes' replies, in seconds
    #[arg(long, value_name = "SECS", default_value = "0.1", value_parser = parse_secs, global = true)]
    pub io_timeout: Duration,

    #[command(flatten)]
    pub quarantine: QuarantineArgs,
}

/// The restart quarantine (docs/operations.md, "The longest TTL and durable nodes").
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// The longest TTL any client of these nodes writes, in seconds: a node restarted without
    /// durable persistence does not count toward acquisitions until this long (plus drift)
    /// after its start. Every client of the nodes must agree on it
    #[arg(
        long,
        value_name = "SECS",
        env = "REDMUTEX_LONGEST_TTL",
        default_value = "60",
        value_parser = parse_secs,
        global = true
    )]
    pub longest_ttl: Duration,

    /// Declare every node durable (AOF with appendfsync always) where the server will not say:
    /// a restarted node then votes at once
    #[arg(long, env = "REDMUTEX_DURABLE_NODES", value_parser = BoolishValueParser::new(), global = true)]
    pub durable_nodes: bool,

    /// Switch the restart quarantine off: a node restarted empty counts at once. Only for
    /// throw-away test nodes, or where restarts are already delayed by the longest TTL
    #[arg(
        long,
        env = "REDMUTEX_NO_RESTART_QUARANTINE",
        value_parser = BoolishValueParser::new(),
        global = true
    )]
    pub no_restart_quarantine: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command while holding the lock; release it when the command ends
    #[command(after_long_help = RUN_NOTES)]
    Run(RunArgs),
    /// Show whether the lock is held: the key on each node, its remaining TTL, the verdict
    #[command(after_long_help = STATUS_NOTES)]
    Status(StatusArgs),
    /// Take the lock, print its token (and with --fencing its fencing token) and exit, leaving
    /// the lock held until its TTL ends
    Acquire(AcquireArgs),
    /// Release a lock by its token (from `acquire`), waking those who wait for it
    Release(TokenArgs),
    /// Renew a lock by its token (from `acquire`): the nodes hold it at least --ttl from now
    Extend(ExtendArgs),
    /// Check the nodes against what the lock assumes (masters, uptime and the restart
    /// quarantine, persistence, eviction, clocks) and, with KEY, the user's permissions
    #[command(after_long_help = DOCTOR_NOTES)]
    Doctor(DoctorArgs),
    /// Run a command while this process leads the election KEY; stop it if leadership is lost
    #[command(after_long_help = ELECT_NOTES)]
    Elect(ElectArgs),
    /// Show the leader of the election KEY (term, value, lease), or with --watch every change
    #[command(after_long_help = LEADER_NOTES)]
    Leader(LeaderArgs),
}

const ELECT_NOTES: &str = concat!(
    "\
`elect` campaigns in the election KEY (waiting while another process leads: -n and -w give up
as with `run`), then runs the command while it leads. The command gets REDMUTEX_KEY,
REDMUTEX_TOKEN, REDMUTEX_TERM (the leadership's term, a fencing token above every term issued
before on KEY; also in REDMUTEX_FENCING_TOKEN) and REDMUTEX_LEADER_VALUE (--value) in its
environment: pass the term with each write to what the leader controls, and have it refuse a
smaller term than one it has seen.

The leadership is renewed every ttl/3 while the command runs. If it is lost (the lease ran out,
or the key was deleted or taken over), the command gets SIGTERM, then SIGKILL after --kill-after,
and redmutex exits 79. When the command ends, redmutex resigns: a waiting `elect` of KEY takes
over at once. If redmutex itself is SIGKILLed, another takes over once the lease runs out
(--ttl at most). `redmutex leader KEY` shows who leads.

",
    crate::exit::exit_table!()
);

const LEADER_NOTES: &str = "\
The leader is read from every node in one round, and shown only when a quorum of nodes holds
it (its lock key and its record): term, value, revision (1 at election, one more per change of
value), holder (the fingerprint of its token) and lease (how long a quorum still holds it).

--json prints one object per line: key, and leader (null, or an object with term, value,
revision, holder, lease_ms and nodes).

--watch prints the current leader, then every change of leader or value, in term order, as it
happens (woken by the nodes; it polls every --poll SECS as a fallback), until SIGINT, SIGTERM
or SIGHUP (exit 128+N). A leader that vanished is not a line of its own: the next one is.

Exit status: 0 when it could tell (a leader, or none), 69 when too few nodes answered.";

#[derive(Debug, Args)]
pub struct ElectArgs {
    #[command(flatten)]
    pub wait: WaitArgs,

    /// After leadership was lost: how long the command has between SIGTERM and SIGKILL
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub kill_after: Duration,

    /// The value to publish while leading (shown by `redmutex leader`) [default: this host's
    /// name and pid]
    #[arg(long, value_name = "V")]
    pub value: Option<String>,

    /// Run this shell command with `sh -c` instead of COMMAND
    #[arg(short = 'c', long = "command", value_name = "SHELL_COMMAND")]
    pub shell: Option<OsString>,

    /// The election's name (the Redis key the leader holds)
    pub key: String,

    /// The command to run while leading, and its arguments (after `--`)
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required_unless_present = "shell",
        conflicts_with = "shell"
    )]
    pub argv: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,

    /// Keep printing every change of leader or value, until interrupted
    #[arg(long)]
    pub watch: bool,

    /// With --watch: how often to read the nodes when no announcement came, in seconds
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs, requires = "watch")]
    pub poll: Duration,

    /// The lease time the election uses, in seconds (for the drift allowance of the lease shown)
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub ttl: Duration,

    /// The election's name (the Redis key the leader holds)
    pub key: String,
}

const RUN_NOTES: &str = concat!(
    "\
While it waits for the lock, redmutex is woken by the holder's release when the holder is a
redmutex client (`run`, `release`, or the library), and otherwise notices a release by polling
every 50-100 ms. SIGINT, SIGTERM and SIGHUP end the wait at once, with exit status 128+N.

The command gets REDMUTEX_KEY and REDMUTEX_TOKEN in its environment, and with --fencing
REDMUTEX_FENCING_TOKEN: pass it with each write to the protected resource, and have the
resource refuse a write with a smaller token than one it has seen.

With --permits N, at most N commands run at once under KEY (a cron job or CI step limited to
N hosts at a time, say); the command also gets REDMUTEX_PERMIT, which of the N permits it holds
(0 to N-1: no other command holds the same one meanwhile), and REDMUTEX_PERMITS=N. Every run
of KEY must give the same N: another N is refused (exit 64) rather than letting more run. A
`run KEY` without --permits takes KEY as a lock: it waits until no permit is held, and the
permits wait while it runs.

The lease (--ttl) is renewed every ttl/3 while the command runs. If it is lost (the key was
deleted or taken over, or too few nodes answered before it ran out), the command gets SIGTERM,
then SIGKILL after --kill-after, and redmutex exits 79.

With -s (shared) or -x (exclusive), KEY is a read-write lock, as with flock -s and -x: any
number of -s runs hold KEY at once, an -x run holds it alone, and a waiting -x run keeps new -s
runs out (writer preference), so a stream of readers cannot starve it. A plain run (neither
flag) takes KEY as a mutex, which is exclusive too: on the nodes a mutex holder is the
read-write lock's writer, so plain, -x and -s runs on one KEY (and other Redlock clients using
KEY) exclude each other as they should; only a waiting plain run does not keep -s runs out.

With --once, KEY[@EPOCH] names a job and one run of it (EPOCH: a cron slot's time, a version;
the part after the last '@'): the command runs at most once per KEY@EPOCH while leases hold.
The first run records the command's exit status on a quorum (kept --retention seconds) and
exits with it; a later run exits 82 without running the command; a run that finds it running
elsewhere waits for its record and exits 82 (with -n, or when -w runs out: 83). The command gets
REDMUTEX_EPOCH and REDMUTEX_FENCING_TOKEN (above the token of every earlier run of KEY). If the
runner dies before its record is written, the next run of KEY@EPOCH after its lease runs the
command again: make the command's effects idempotent, or fenced with REDMUTEX_FENCING_TOKEN.

SIGINT, SIGTERM and SIGHUP sent to redmutex are passed on to the command, and the lock is
released once it has ended. The command stays in redmutex's process group, so a terminal's
^C reaches both directly; in the terminal's foreground redmutex does not send SIGINT or SIGHUP
a second time. If redmutex itself is SIGKILLed, the lock expires after --ttl (the command keeps
running, unlocked).

",
    crate::exit::exit_table!()
);

const STATUS_NOTES: &str = "\
Holders are shown by their fingerprint, the first 12 hex digits of the SHA1 of their token;
the token itself is never printed. The fingerprint of a token you hold:
  printf %s \"$TOKEN\" | sha1sum | cut -c1-12

--json prints one object, for scripts and monitoring:
  key, verdict (\"held\", \"free\", \"permits\", \"split\" or \"unknown\"), holder (a
  fingerprint, or null), agreeing (how many nodes back a held, free or permits verdict),
  quorum, answered (how many nodes answered), ttl_ms (how long a quorum still holds the lock;
  null unless held with an expiry), fencing_counter (the largest on any node, or null),
  permits and permits_held (KEY is the name of a semaphore, of `run --permits N`: N, and how
  many permits a quorum counts as held; else null), and nodes: one object per node with node
  (its address, never a password), state (\"held\", \"free\", \"permits\" or \"error\"),
  holder, ttl_ms, fencing_counter, error (why the node failed, or null), quarantined_ms (how
  much longer the node is in its restart quarantine, or null: meanwhile its yes to an
  acquisition and its \"free\" do not count), permits and permits_held (that node's count).

Exit status: 0 when the verdict is known (held, free or split), 69 when too few nodes
answered to tell (unknown), 77 when that is because a node refused the login or a command.";

/// When the lock is held elsewhere: block, give up at once, or wait a while (flock's flags).
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Give up at once if the lock is held elsewhere (exit with the conflict code)
    #[arg(short, long, conflicts_with = "wait")]
    pub nonblock: bool,

    /// Give up after waiting SECS (fractional) for the lock; 0 is --nonblock [default: wait
    /// as long as it takes]
    #[arg(short, long, value_name = "SECS", value_parser = parse_secs)]
    pub wait: Option<Duration>,

    /// The exit status when -n or -w gave up
    #[arg(short = 'E', long, value_name = "N", default_value_t = CONFLICT_DEFAULT)]
    pub conflict_exit_code: u8,

    /// The lease time in seconds: how long the lock outlives a holder that vanished
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub ttl: Duration,
}

impl NodeArgs {
    /// The node URLs: every `--node` value (or `REDMUTEX_NODES`) split into nodes.
    pub fn urls(&self) -> Vec<String> {
        crate::nodes::split(&self.nodes)
    }
}

impl WaitArgs {
    /// How long to wait: `Some(ZERO)` for --nonblock, `None` for as long as it takes.
    pub fn limit(&self) -> Option<Duration> {
        if self.nonblock {
            Some(Duration::ZERO)
        } else {
            self.wait
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub wait: WaitArgs,

    /// After the lease was lost: how long the command has between SIGTERM and SIGKILL
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub kill_after: Duration,

    /// Also take a fencing token (a number that grows with every acquisition of KEY) and pass
    /// it to the command as REDMUTEX_FENCING_TOKEN
    #[arg(long)]
    pub fencing: bool,

    #[command(flatten)]
    pub mode: ModeArgs,

    /// Let up to N commands run at once (across hosts) instead of one: hold one of N permits of
    /// the semaphore KEY (1 to 1024). Every run of KEY must give the same N (another N is an
    /// error, exit 64); a run without --permits on KEY excludes them all, and waits for them. Not with -s or -x
    #[arg(
        long,
        value_name = "N",
        conflicts_with_all = ["fencing", "shared", "exclusive"],
        value_parser = clap::value_parser!(u32).range(1..=i64::from(redmutex::MAX_PERMITS))
    )]
    pub permits: Option<u32>,

    /// Run the command at most once per KEY@EPOCH (KEY alone: once per KEY): the first run
    /// records the command's exit status on a quorum; later runs exit 82 without running it,
    /// and while it runs elsewhere they wait for it (or, with -n/-w, exit 83)
    #[arg(long, conflicts_with_all = ["permits", "shared", "exclusive"])]
    pub once: bool,

    /// With --once: how long the record of a run is kept, in seconds (after that, KEY@EPOCH
    /// can run again)
    #[arg(long, value_name = "SECS", default_value = "86400", value_parser = parse_secs, requires = "once")]
    pub retention: Duration,

    /// Run this shell command with `sh -c` instead of COMMAND
    #[arg(short = 'c', long = "command", value_name = "SHELL_COMMAND")]
    pub shell: Option<OsString>,

    /// The lock's name (the Redis key); with --once, KEY[@EPOCH]
    pub key: String,

    /// The command to run and its arguments (after `--`)
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required_unless_present = "shell",
        conflicts_with = "shell"
    )]
    pub argv: Vec<OsString>,
}

/// How `run` takes KEY: as a mutex (the default), or as a read-write lock, shared or exclusive
/// (flock's -s and -x).
#[derive(Debug, Args)]
pub struct ModeArgs {
    /// Take KEY shared (a reader, like flock -s): any number of -s runs hold KEY at once, and
    /// none while a plain or -x run holds it. No fencing token
    #[arg(short = 's', long, conflicts_with_all = ["exclusive", "fencing"])]
    pub shared: bool,

    /// Take KEY exclusive as a read-write lock's writer (like flock -x): as a plain run, and
    /// while it waits no new -s run gets in, so a stream of them cannot starve it
    #[arg(short = 'x', long)]
    pub exclusive: bool,
}

/// The lock `run` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A mutex: exclusive, and a writer of the read-write lock of the same KEY.
    Mutex,
    /// A read lock of the read-write lock.
    Shared,
    /// The write lock of the read-write lock.
    Exclusive,
}

impl RunArgs {
    /// The lock to take.
    pub fn mode(&self) -> LockMode {
        match (self.mode.shared, self.mode.exclusive) {
            (true, _) => LockMode::Shared,
            (_, true) => LockMode::Exclusive,
            _ => LockMode::Mutex,
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// The lock's name (the Redis key)
    pub key: String,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of one line per check
    #[arg(long)]
    pub json: bool,

    /// A lock's name: also check that the user may run every command each feature needs on
    /// it, on probe keys derived from it (KEY:redmutex:doctor...)
    pub key: Option<String>,
}

const DOCTOR_NOTES: &str = "\
One line per check: ok, warn or fail, the node (or \"all nodes\"), the check and what was found;
a warn or fail line says what to change. Per node: reachable (PING round trip), role (must be a
master), version (semaphores need Redis 6.0), uptime (against --longest-ttl: is the node in its
restart quarantine?), persistence (AOF and appendfsync), eviction (maxmemory-policy); over the
nodes: quorum, clock (the skew between the nodes' TIME). With KEY, per node: acl lock (fails if
refused), acl fencing, acl wake-up, acl semaphore, acl rwlock, acl multi-lock, acl election,
acl run-once, acl script load (warn if refused). The probes take and release short-lived keys under KEY:redmutex:doctor.

Exit status: 0 when every check is ok, 80 when some warned and none failed, 81 when one failed.

--json prints one object: status (the worst: \"ok\", \"warn\" or \"fail\") and checks, a list of
{node (null for all nodes), check, status, detail}.";

#[derive(Debug, Args)]
pub struct AcquireArgs {
    #[command(flatten)]
    pub wait: WaitArgs,

    /// Also take a fencing token (a number that grows with every acquisition of KEY) and print
    /// it after the token, on the same line: `TOKEN FENCING_TOKEN`
    #[arg(long)]
    pub fencing: bool,

    /// The lock's name (the Redis key)
    pub key: String,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The lock's name (the Redis key)
    pub key: String,

    /// The token printed by `acquire` (or set REDMUTEX_TOKEN, which keeps it out of `ps`)
    #[arg(env = "REDMUTEX_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    #[command(flatten)]
    pub lock: TokenArgs,

    /// How long the nodes must hold the lock from now, in seconds (a longer remaining lease
    /// is kept)
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub ttl: Duration,
}

/// Parses fractional seconds ("1.5", "0", "30") into a `Duration`.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a non-negative number of seconds"));
    }
    if secs > MAX_SECS {
        return Err(format!("{s:?} seconds is too long"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        assert_eq!(parse_secs(" 2 "), Ok(Duration::from_secs(2)));
        for bad in ["", "-1", "NaN", "inf", "1e300", "abc", "1s"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_takes_a_command_after_the_key() {
        let cli = Cli::try_parse_from([
            "redmutex", "run", "-w", "0.5", "--ttl", "3", "k", "--", "ls", "-l", "--all",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.key, "k");
        assert_eq!(run.argv, ["ls", "-l", "--all"]);
        assert_eq!(run.wait.limit(), Some(Duration::from_millis(500)));
        assert_eq!(run.wait.ttl, Duration::from_secs(3));
        assert_eq!(run.wait.conflict_exit_code, 1);
    }

    #[test]
    fn run_modes() {
        let mode = |args: &[&str]| {
            let mut argv = vec!["redmutex", "run"];
            argv.extend_from_slice(args);
            argv.extend_from_slice(&["k", "--", "true"]);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Run(run) => run.mode(),
                _ => panic!("not run"),
            })
        };
        assert_eq!(mode(&[]).unwrap(), LockMode::Mutex);
        assert_eq!(mode(&["-s"]).unwrap(), LockMode::Shared);
        assert_eq!(mode(&["--shared"]).unwrap(), LockMode::Shared);
        assert_eq!(mode(&["-x"]).unwrap(), LockMode::Exclusive);
        assert_eq!(
            mode(&["--exclusive", "--fencing"]).unwrap(),
            LockMode::Exclusive
        );
        assert!(mode(&["-s", "-x"]).is_err());
        assert!(mode(&["-s", "--fencing"]).is_err());
        assert!(mode(&["-s", "--permits", "2"]).is_err());
        assert!(mode(&["-x", "--permits", "2"]).is_err());
    }

    #[test]
    fn run_takes_a_permit_count_from_1_to_max_permits() {
        let parse = |n: &str| Cli::try_parse_from(["redmutex", "run", "--permits", n, "k", "ls"]);
        let Command::Run(run) = parse("3").unwrap().command else {
            panic!("not run")
        };
        assert_eq!(run.permits, Some(3));
        assert!(parse("1024").is_ok());
        for bad in ["0", "1025", "-1", "x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let fenced =
            Cli::try_parse_from(["redmutex", "run", "--permits", "2", "--fencing", "k", "ls"]);
        assert!(fenced.is_err(), "--fencing means nothing for permits");
    }

    #[test]
    fn run_needs_exactly_one_command() {
        assert!(Cli::try_parse_from(["redmutex", "run", "k"]).is_err());
        assert!(Cli::try_parse_from(["redmutex", "run", "-c", "true", "k", "--", "ls"]).is_err());
        assert!(Cli::try_parse_from(["redmutex", "run", "-c", "true", "k"]).is_ok());
        assert!(Cli::try_parse_from(["redmutex", "run", "-n", "-w", "1", "k", "ls"]).is_err());
    }

    #[test]
    fn nodes_repeat_and_keep_their_commas() {
        let cli = Cli::try_parse_from([
            "redmutex",
            "status",
            "k",
            "--node",
            "redis+sentinel://h1,h2/m",
            "--node",
            "redis://c:3 redis://d:4",
        ])
        .unwrap();
        assert_eq!(
            cli.nodes.nodes,
            ["redis+sentinel://h1,h2/m", "redis://c:3 redis://d:4"]
        );
        assert_eq!(
            cli.nodes.urls(),
            ["redis+sentinel://h1,h2/m", "redis://c:3", "redis://d:4"]
        );
    }
}

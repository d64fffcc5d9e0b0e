//! The real-Redis harness of the integration tests (`crate::support`).
//!
//! Modelled on redis-rs's `redis-test` `RedisServer`: each [`RedisNode`] is a
//! real `redis-server` child process listening on a free loopback port, with
//! its own temporary directory, no persistence (unless asked for), and a log
//! file. Nothing here uses the library under test: readiness checks and the
//! [`RedisCluster::cmd`] inspection helper talk to the nodes through the
//! `redis` crate ([`client`]), with bounded connect, read and write times.
//!
//! The binary is `redis-server` from `PATH`, or the path in the environment
//! variable `REDMUTEX_REDIS_SERVER`. When it cannot be found the harness
//! panics with an installation hint: tests are never skipped silently.
//!
//! Every node is SIGKILLed and reaped when it is dropped (also while a test
//! panics), so no `redis-server` outlives its test.
//!
//! All methods take `&self` (the process state sits behind a mutex), so a
//! cluster can be shared between threads, e.g. with `std::thread::scope`,
//! while one thread crashes or freezes nodes.

pub mod client;
pub mod history;
pub mod logs;
pub mod proxy;
pub mod sentinel;
pub mod worker;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::RedisResult;
use redmutex::{RedLockFactory, RedLockFactoryBuilder};

pub use client::{ping_port, port_cmd};

/// Environment variable overriding the `redis-server` binary.
pub const REDIS_SERVER_ENV: &str = "REDMUTEX_REDIS_SERVER";

/// How long a freshly spawned node may take to answer `PING`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`RedisCluster::restart`] keeps retrying to bind the old port.
pub const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// Connect, read and write timeout of [`RedisCluster::cmd`]: generous, for a loaded machine
/// (a direct read of a live node took over 2 s once, with both cores busy and other suites
/// running on the machine).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound of [`RedisCluster::wait_waiting`]: generous, for a loaded 2-core machine.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// Extra arguments that turn on durable persistence (an AOF fsynced on every
/// write), for [`RedisCluster::start_with_args`].
pub const AOF_ARGS: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];

const NOT_FOUND: &str = "redis-server not found: install it with \
    `sudo apt-get install -y redis-server` (or run scripts/install-redis.sh), \
    or set REDMUTEX_REDIS_SERVER";

// ---------------------------------------------------------------------------
// The factory preset
// ---------------------------------------------------------------------------

/// I/O timeout of the [`builder`] preset: generous, because most tests are not about
/// timeouts. With both cores of a shared 2-core machine busy, a node's reply can take a few
/// hundred milliseconds; a test whose node "failed" then sees a vote missing, a key on two
/// nodes of three, a back-off, and fails for a reason it does not test. Two kinds of test use
/// [`short_builder`] instead: those about nodes that stop answering, where each timeout costs
/// them time, and those with short leases (a TTL of a second or less), where a round that
/// waits this long for one slow node outlasts the lease it renews.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Connect timeout of the [`builder`] preset (loopback; the handshake loads the scripts):
/// generous, as [`IO_TIMEOUT`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// I/O timeout of [`short_builder`]: twice the library's default, so that a stopped,
/// black-holed or silent node costs a test little and a slow node is left out of a round
/// before a short lease runs out, while a loaded machine's live nodes still answer in time
/// nearly always (these tests retry, or bound what a failure costs).
pub const SHORT_IO_TIMEOUT: Duration = Duration::from_millis(200);

/// Connect timeout of [`short_builder`].
pub const SHORT_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// Retry delay and jitter of the [`builder`] preset: a waiter polls often,
/// so a test that waits for a lock does not wait for the library's 50 ms
/// polls.
pub const RETRY: Duration = Duration::from_millis(5);

/// A factory builder with the tests' timeouts ([`IO_TIMEOUT`],
/// [`CONNECT_TIMEOUT`], [`RETRY`] as delay and jitter), the restart quarantine
/// off, and no nodes yet; a test adds its nodes and what it is about
/// (`.ttl(..)`, `.keep_alive(true)`, `.fencing(true)`, ...). Every other
/// setting is the library's default.
///
/// The quarantine is off because every test starts fresh, throw-away nodes:
/// with it on, a node younger than the longest TTL (60 s by default) does not
/// count toward acquisitions, so every test would first wait a minute. The
/// tests about the quarantine (`quarantine.rs`, the fault suite's immediate
/// restarts) switch it back on with `.restart_quarantine(true)`.
pub fn builder() -> RedLockFactoryBuilder {
    RedLockFactory::builder()
        .restart_quarantine(false)
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .retry_delay(RETRY)
        .retry_jitter(RETRY)
}

/// [`builder`] with short timeouts ([`SHORT_IO_TIMEOUT`], [`SHORT_CONNECT_TIMEOUT`]), for
/// tests about nodes that are stopped, black-holed, silent or not Redis, whose bounds count
/// what each timeout costs, and for tests with leases of a second or less.
pub fn short_builder() -> RedLockFactoryBuilder {
    builder()
        .io_timeout(SHORT_IO_TIMEOUT)
        .connect_timeout(SHORT_CONNECT_TIMEOUT)
}

/// [`short_builder`] with the nodes of `cluster`.
pub fn short_factory(cluster: &RedisCluster) -> RedLockFactoryBuilder {
    short_builder().nodes(cluster.urls())
}

/// [`builder`] with the nodes of `cluster`.
pub fn factory(cluster: &RedisCluster) -> RedLockFactoryBuilder {
    builder().nodes(cluster.urls())
}

/// A builder with the library's defaults for `nodes` (its retry delay and
/// jitter, TTL, fencing, ...), except the restart quarantine, off for the
/// tests' fresh nodes (see [`builder`]), and the timeouts, the tests'
/// ([`IO_TIMEOUT`], [`CONNECT_TIMEOUT`]): for tests about the other defaults.
/// The library's 100 ms I/O timeout is one a node on a loaded machine can
/// miss (seen at load 20 on 2 cores: a permit held on 2 of 3 nodes, whose
/// release timed out on one of them, is `NoQuorum`), and no test here is
/// about it.
pub fn defaults<I>(nodes: I) -> RedLockFactoryBuilder
where
    I: IntoIterator,
    I::Item: redmutex::IntoNode,
{
    RedLockFactory::builder()
        .nodes(nodes)
        .restart_quarantine(false)
        .io_timeout(IO_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
}

// ---------------------------------------------------------------------------
// Free helpers
// ---------------------------------------------------------------------------

/// Polls `f` every 5 ms until it returns `true` or `limit` has passed.
/// Returns whether it became true (`f` is always tried once more at the end).
pub fn deadline_loop(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return f();
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Calls `acquire` with what is left of `recovery` until it succeeds or `recovery` has passed,
/// 100 ms apart, and returns its last result. For property tests whose next case starts
/// right after the last one's faults were healed: a node that failed often backs off for up to
/// 2 s, its attempts failing at once meanwhile ("skipped while backing off"), and a blocking
/// acquisition gives up after a few failed rounds in a row, well within its own timeout.
pub fn acquire_recovering<G>(
    recovery: Duration,
    mut acquire: impl FnMut(Duration) -> redmutex::Result<G>,
) -> redmutex::Result<G> {
    let until = Instant::now() + recovery;
    loop {
        match acquire(until.saturating_duration_since(Instant::now())) {
            Err(_) if Instant::now() + Duration::from_millis(100) < until => {
                thread::sleep(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// The keys by which a waiter marks `name` as waited for: today's `<name>:redmutex:waiting`,
/// and `redmutex:waiting:<name>`, the name before issue 10 (d6cbdaa), so that the regression
/// tests of `lease_truth` still run on that version. Nothing today writes the second one.
pub fn waiting_marks(name: &str) -> [String; 2] {
    [
        format!("{name}:redmutex:waiting"),
        format!("redmutex:waiting:{name}"),
    ]
}

fn handed_out_ports() -> MutexGuard<'static, HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A loopback TCP port that was free a moment ago: bound on `127.0.0.1:0`,
/// read back, released. A port is never handed out twice by one test process,
/// so concurrent tests (and a node being restarted on its old port) do not
/// step on each other.
pub fn free_port() -> u16 {
    let mut last_err = None;
    for _ in 0..200 {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
            Ok(addr) => {
                let port = addr.port();
                if handed_out_ports().insert(port) {
                    return port;
                }
            }
            Err(e) => {
                last_err = Some(e);
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    panic!("could not find a free loopback port: {last_err:?}");
}

/// A `redis://` URL on loopback where nothing listens (connections are
/// refused).
pub fn dead_url() -> String {
    format!("redis://127.0.0.1:{}", free_port())
}

/// Whether connecting to `127.0.0.1:port` is refused (nothing listens).
pub fn port_refuses(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
    )
}

/// Whether a process with this pid exists (zombies included) in /proc.
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// One-letter scheduler state of a process from /proc/<pid>/stat
/// (`'T'` = stopped), if it can be read.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ..."; comm may contain spaces/parens, so split at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

fn unique_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "redmutex-test-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot create temp dir {}: {e}", dir.display()),
        }
    }
}

fn redis_server_binary() -> OsString {
    std::env::var_os(REDIS_SERVER_ENV)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "redis-server".into())
}

/// Sends `signal` (`-STOP`, `-CONT`, ...) to `pid` with `kill(1)`.
///
/// # Panics
/// If `kill` fails (no such process, say).
pub fn send_signal(pid: u32, signal: &str) {
    // `kill(1)` rather than libc: the crate forbids unsafe code, tests too.
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "kill {signal} {pid} failed: {status:?}"
    );
}

// ---------------------------------------------------------------------------
// ChildGuard
// ---------------------------------------------------------------------------

/// SIGKILLs every process of the process group `pgid` with `kill(1)` (no unsafe code).
/// Never panics (an empty group is fine).
#[cfg_attr(not(feature = "cli"), allow(dead_code))] // the `redmutex` command's tests use it
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A child process that cannot outlive its test, nor leave anything it started behind: it is
/// spawned in a process group of its own (`process_group(0)`: the group's id is its pid), and
/// that whole group is SIGKILLed when the child is found to have ended (whatever it left
/// running goes with it) or when the guard is dropped (also while a test panics), and the
/// child is reaped. The group is only ever signalled before the child is reaped, while its id
/// cannot belong to anyone else.
#[cfg_attr(not(feature = "cli"), allow(dead_code))] // the `redmutex` command's tests use it
pub struct ChildGuard {
    child: Child,
    /// Set once the child is reaped.
    status: Option<ExitStatus>,
}

#[cfg_attr(not(feature = "cli"), allow(dead_code))] // the `redmutex` command's tests use it
impl ChildGuard {
    /// Spawns `cmd` in a new process group.
    ///
    /// # Panics
    /// If it cannot be spawned.
    pub fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        Self {
            child,
            status: None,
        }
    }

    /// The child's pid (also its process group's id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's exit status if it has ended; then its group is killed and the child reaped.
    ///
    /// # Panics
    /// If the status cannot be read.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let pid = self.id();
            match process_state(pid) {
                // Ended, not reaped yet: the group's id is still ours.
                Some('Z') => {
                    kill_group(pid);
                    self.status = Some(self.child.wait().expect("child status"));
                }
                Some(_) => {}
                // /proc unreadable: reaping is all that is left to do.
                None => self.status = self.child.try_wait().expect("child status"),
            }
        }
        self.status
    }

    /// Waits at most `limit` for the child to end (checking every millisecond, so the moment
    /// it ended is known to within a few); `None` if it still runs.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Like [`Self::wait_within`], and also collects what the child wrote to its piped stdout
    /// and stderr (empty when not piped); returns it with the moment the child was seen to end.
    /// `None` (the child and its group killed) if it did not end within `limit`.
    pub fn output_within(mut self, limit: Duration) -> Option<(Output, Instant)> {
        fn drain(pipe: Option<impl io::Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
            thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        }
        let stdout = drain(self.child.stdout.take());
        let stderr = drain(self.child.stderr.take());
        let status = self.wait_within(limit);
        let ended = Instant::now();
        // On time out, this kills the group, which closes the pipes.
        let status = status.or_else(|| {
            self.kill();
            None
        })?;
        Some((
            Output {
                status,
                stdout: stdout.join().unwrap_or_default(),
                stderr: stderr.join().unwrap_or_default(),
            },
            ended,
        ))
    }

    /// Reads the child's piped stderr to its end (call once it has ended).
    ///
    /// # Panics
    /// If stderr was not piped, or was read already.
    pub fn read_stderr(&mut self) -> String {
        let mut err = String::new();
        io::Read::read_to_string(
            self.child.stderr.as_mut().expect("stderr not piped"),
            &mut err,
        )
        .expect("reading the child's stderr");
        err
    }

    /// SIGKILLs the child's group (unless the child was reaped already) and reaps the child.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            kill_group(self.id());
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// RedisNode
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Proc {
    child: Option<Child>,
    stopped: bool,
}

impl Proc {
    /// SIGCONT (if stopped), SIGKILL, reap. Never panics.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.stopped {
                // SIGKILL also ends a stopped process; SIGCONT is belt and braces.
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }
}

/// One `redis-server` child process on a fixed loopback port.
pub struct RedisNode {
    port: u16,
    dir: PathBuf,
    binary: OsString,
    args: Mutex<Vec<String>>,
    proc: Mutex<Proc>,
}

enum SpawnError {
    /// The process exited or never became ready; the log tail is attached.
    Failed(String),
}

impl RedisNode {
    fn new(binary: OsString, port: u16, extra_args: &[&str]) -> Self {
        Self {
            port,
            dir: unique_temp_dir(),
            binary,
            args: Mutex::new(extra_args.iter().map(|s| (*s).to_owned()).collect()),
            proc: Mutex::new(Proc::default()),
        }
    }

    fn proc(&self) -> MutexGuard<'_, Proc> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The loopback port the node listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The node's working directory (AOF/RDB files, `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// The node's log so far (empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Pid of the running (or stopped) process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.proc().child.as_ref().map(Child::id)
    }

    /// Whether the process exists and has not exited (a stopped process
    /// counts as running).
    pub fn is_running(&self) -> bool {
        let mut proc = self.proc();
        match proc.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                proc.child = None;
                proc.stopped = false;
                false
            }
            None => false,
        }
    }

    /// Whether the node is currently SIGSTOPped by [`Self::stop`].
    pub fn is_stopped(&self) -> bool {
        self.proc().stopped
    }

    fn command_line(&self) -> Vec<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        let log = self.log_path().to_string_lossy().into_owned();
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--logfile",
            &log,
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Later options override earlier ones, so extra args win.
        args.extend(self.args.lock().unwrap_or_else(|e| e.into_inner()).clone());
        args
    }

    /// Spawns the process (the caller holds `proc`, which must be empty).
    fn spawn(&self, proc: &mut Proc) {
        debug_assert!(proc.child.is_none());
        let child = Command::new(&self.binary)
            .args(self.command_line())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                proc.child = Some(child);
                proc.stopped = false;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                panic!("{NOT_FOUND} (tried {:?})", self.binary)
            }
            Err(e) => panic!("cannot spawn {:?}: {e}", self.binary),
        }
    }

    /// Waits until our process answers PING on our port. Fails if it exits
    /// first (typically: port taken) or on timeout.
    fn wait_ready(&self, proc: &mut Proc, limit: Duration) -> Result<(), SpawnError> {
        let deadline = Instant::now() + limit;
        let Some(child) = proc.child.as_mut() else {
            return Err(SpawnError::Failed("not spawned".into()));
        };
        let pid = child.id();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                proc.child = None;
                return Err(SpawnError::Failed(format!(
                    "redis-server on port {} exited with {status}; log:\n{}",
                    self.port,
                    self.log_tail()
                )));
            }
            // Make sure the server answering is ours, not some other process
            // that won a race for the port.
            if ping_port(self.port, Duration::from_millis(500))
                && server_pid(self.port) == Some(pid)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                proc.kill();
                return Err(SpawnError::Failed(format!(
                    "redis-server on port {} did not answer PING within {limit:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                )));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// One attempt: spawn and wait for readiness.
    fn try_start(&self) -> Result<(), SpawnError> {
        let mut proc = self.proc();
        proc.kill();
        self.spawn(&mut proc);
        self.wait_ready(&mut proc, READY_TIMEOUT)
    }

    /// Starts on the same port, retrying for [`REBIND_TIMEOUT`] while the
    /// port cannot be bound.
    fn start_same_port(&self) {
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.try_start() {
                Ok(()) => return,
                Err(SpawnError::Failed(msg)) => {
                    if Instant::now() >= deadline {
                        panic!(
                            "could not restart redis-server on port {}: {msg}",
                            self.port
                        );
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Crashes the node: SIGKILL and reap. No-op when not running.
    pub fn kill(&self) {
        self.proc().kill();
    }

    /// Freezes the node with SIGSTOP: connections are still accepted by the
    /// kernel but nothing is answered until [`Self::cont`].
    ///
    /// # Panics
    /// If the node is not running.
    pub fn stop(&self) {
        let mut proc = self.proc();
        let pid = proc
            .child
            .as_ref()
            .map(Child::id)
            .expect("stop(): node is not running");
        send_signal(pid, "-STOP");
        proc.stopped = true;
        deadline_loop(Duration::from_secs(2), || {
            matches!(process_state(pid), Some('T' | 't') | None)
        });
    }

    /// Resumes a node frozen by [`Self::stop`].
    ///
    /// # Panics
    /// If the node is not running.
    pub fn cont(&self) {
        let mut proc = self.proc();
        let pid = proc
            .child
            .as_ref()
            .map(Child::id)
            .expect("cont(): node is not running");
        send_signal(pid, "-CONT");
        proc.stopped = false;
        deadline_loop(Duration::from_secs(2), || {
            !matches!(process_state(pid), Some('T' | 't'))
        });
    }

    /// Kills the node if running, then starts it again on the same port,
    /// in the same directory, with the same arguments. With the default
    /// (non-persistent) arguments the dataset comes back empty; a node
    /// started with [`AOF_ARGS`] reloads its AOF.
    pub fn restart(&self) {
        self.kill();
        self.start_same_port();
    }

    /// Like [`Self::restart`], but turns on [`AOF_ARGS`] for this and every
    /// later restart.
    pub fn restart_with_aof(&self) {
        self.kill();
        self.args
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(AOF_ARGS.iter().map(|s| (*s).to_owned()));
        self.start_same_port();
    }

    /// Sends one command and returns the reply (see [`RedisCluster::cmd`]).
    ///
    /// # Errors
    /// Connection or I/O errors, including the 2 s timeout.
    pub fn try_cmd(&self, args: &[&str]) -> RedisResult<String> {
        port_cmd(self.port, args, CMD_TIMEOUT)
    }

    /// Sends one command and returns the reply (see [`RedisCluster::cmd`]).
    ///
    /// # Panics
    /// On connection or I/O errors.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{args:?} on port {} failed: {e}", self.port))
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.proc().kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `process_id` from `INFO server`, if the server answers.
fn server_pid(port: u16) -> Option<u32> {
    let info = port_cmd(port, &["INFO", "server"], Duration::from_millis(500)).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

// ---------------------------------------------------------------------------
// RedisCluster
// ---------------------------------------------------------------------------

/// N independent Redis masters (Redlock's "cluster": no replication, no
/// Redis Cluster mode), indexed `0..n`.
pub struct RedisCluster {
    nodes: Vec<RedisNode>,
}

impl RedisCluster {
    /// Starts `n` nodes with the default, non-persistent arguments.
    pub fn start(n: usize) -> Self {
        Self::start_with_args(n, &[])
    }

    /// Starts `n` nodes, appending `extra_args` to the default arguments
    /// (later options win), e.g. [`AOF_ARGS`].
    pub fn start_with_args(n: usize, extra_args: &[&str]) -> Self {
        Self::start_with_binary(redis_server_binary(), n, extra_args)
    }

    /// Like [`Self::start_with_args`] with an explicit binary (ignores
    /// `REDMUTEX_REDIS_SERVER`).
    pub fn start_with_binary(binary: impl Into<OsString>, n: usize, extra_args: &[&str]) -> Self {
        let binary = binary.into();
        // Spawn everything first, then wait, so nodes boot in parallel.
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let node = RedisNode::new(binary.clone(), free_port(), extra_args);
            node.spawn(&mut node.proc());
            nodes.push(node);
        }
        for slot in &mut nodes {
            let mut attempt = 1;
            loop {
                let result = {
                    let mut proc = slot.proc();
                    slot.wait_ready(&mut proc, READY_TIMEOUT)
                };
                match result {
                    Ok(()) => break,
                    Err(SpawnError::Failed(msg)) => {
                        assert!(attempt < 5, "could not start redis-server: {msg}");
                        attempt += 1;
                        // Probably lost a race for the port: try another one.
                        *slot = RedisNode::new(binary.clone(), free_port(), extra_args);
                        slot.spawn(&mut slot.proc());
                    }
                }
            }
        }
        Self { nodes }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &RedisNode {
        &self.nodes[i]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// `redis://127.0.0.1:PORT` of every node, in index order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::url).collect()
    }

    /// URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port()
    }

    /// Pid of node `i`, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].pid()
    }

    /// Crashes node `i` (SIGKILL + reap).
    pub fn kill(&self, i: usize) {
        self.nodes[i].kill();
    }

    /// Freezes node `i` (SIGSTOP).
    pub fn stop(&self, i: usize) {
        self.nodes[i].stop();
    }

    /// Resumes node `i` (SIGCONT).
    pub fn cont(&self, i: usize) {
        self.nodes[i].cont();
    }

    /// Kills node `i` if running and starts it again on the same port
    /// (empty dataset unless it persists, e.g. with [`AOF_ARGS`]).
    pub fn restart(&self, i: usize) {
        self.nodes[i].restart();
    }

    /// Restarts node `i` with [`AOF_ARGS`] turned on from now on.
    pub fn restart_with_aof(&self, i: usize) {
        self.nodes[i].restart_with_aof();
    }

    /// Whether node `i`'s process is alive (stopped counts as alive).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Whether node `i` is SIGSTOPped.
    pub fn is_stopped(&self, i: usize) -> bool {
        self.nodes[i].is_stopped()
    }

    /// Sends one command to node `i` over a fresh connection (connect, read
    /// and write each bounded by 2 s) and returns the reply as text
    /// ([`client::show`]): simple string as is (`OK`, `PONG`), integer as
    /// text (`-2`), bulk string contents, nil as `(nil)`, error as its code
    /// and message (`ERR ...`, `WRONGTYPE ...`), arrays as their elements
    /// joined with `\n`.
    ///
    /// # Panics
    /// On connection or I/O errors (use [`Self::try_cmd`] to handle them).
    pub fn cmd(&self, i: usize, args: &[&str]) -> String {
        self.nodes[i].cmd(args)
    }

    /// Fallible [`Self::cmd`].
    ///
    /// # Errors
    /// Connection or I/O errors, including the 2 s timeout.
    pub fn try_cmd(&self, i: usize, args: &[&str]) -> RedisResult<String> {
        self.nodes[i].try_cmd(args)
    }

    /// The `calls=N` of `cmdstat_<command>` in node `i`'s `INFO commandstats` (the commands
    /// scripts run included; 0 when it never ran).
    ///
    /// # Panics
    /// As [`Self::cmd`].
    pub fn calls(&self, i: usize, command: &str) -> u64 {
        let stats = self.cmd(i, &["INFO", "commandstats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The nodes a command can reach now: running and not frozen.
    fn live(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.is_running(i) && !self.is_stopped(i))
            .collect()
    }

    /// How many nodes hold `key` with exactly `value` (a lock's or a permit's token, say).
    pub fn holders(&self, key: &str, value: &str) -> usize {
        (0..self.len())
            .filter(|&i| self.cmd(i, &["GET", key]) == value)
            .count()
    }

    /// How many nodes have `key`, whatever it holds.
    pub fn nodes_with(&self, key: &str) -> usize {
        (0..self.len())
            .filter(|&i| self.cmd(i, &["EXISTS", key]) == "1")
            .count()
    }

    /// The keys on node `i`, sorted, except waiting marks (which expire by themselves): for
    /// "nothing left behind".
    pub fn keys(&self, i: usize) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cmd(i, &["KEYS", "*"])
            .lines()
            .filter(|k| !k.is_empty() && !k.ends_with(":redmutex:waiting"))
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// [`Self::keys`] of every node, node after node.
    pub fn all_keys(&self) -> Vec<String> {
        (0..self.len()).flat_map(|i| self.keys(i)).collect()
    }

    /// Deletes the waiting marks of `name` ([`waiting_marks`]) on every live node: an earlier
    /// waiter's mark outlives it (by about twice its retry delay), so a test that is about to
    /// start another waiter and [`Self::wait_waiting`] for it clears the old one first.
    pub fn clear_waiting(&self, name: &str) {
        let [mark, legacy] = waiting_marks(name);
        for i in self.live() {
            self.cmd(i, &["DEL", &mark, &legacy]);
        }
    }

    /// Waits (at most [`WAIT_LIMIT`]) until a waiter waits for `name`: its waiting mark is on
    /// every live node (running, not frozen) where `name` is taken (its key exists), and on
    /// one node at least. A waiter writes the mark with each round that finds `name` taken,
    /// on the nodes where it is taken, after it has subscribed to `name`'s releases (on one of
    /// those nodes), so from then on a release wakes it (it is not missed even if the waiter
    /// has not gone to sleep yet). Only the nodes where `name` is taken count: a holder whose
    /// round missed a node (its reply came too late on a loaded machine) holds a quorum
    /// only, and no waiter can mark the others. A mark left by an earlier waiter would pass
    /// at once: [`Self::clear_waiting`] first.
    ///
    /// # Panics
    /// If no waiter marked `name` within the limit.
    pub fn wait_waiting(&self, name: &str) {
        if let Err(e) = self.try_wait_waiting(name) {
            panic!("{e}");
        }
    }

    /// [`Self::wait_waiting`] for a test that collects its failures.
    ///
    /// # Errors
    /// If no waiter marked `name` within [`WAIT_LIMIT`].
    pub fn try_wait_waiting(&self, name: &str) -> Result<(), String> {
        let [mark, legacy] = waiting_marks(name);
        let marked = || {
            let mut any = false;
            for i in self.live() {
                let exists = |keys: &[&str]| {
                    let mut args = vec!["EXISTS"];
                    args.extend_from_slice(keys);
                    self.try_cmd(i, &args).is_ok_and(|n| n != "0")
                };
                let marked = exists(&[&mark, &legacy]);
                if !marked && exists(&[name]) {
                    return false;
                }
                any |= marked;
            }
            any
        };
        if deadline_loop(WAIT_LIMIT, marked) {
            Ok(())
        } else {
            Err(format!(
                "nobody waited for {name:?} within {WAIT_LIMIT:?}: no waiting mark ({mark}) \
                 on every live node where it is taken"
            ))
        }
    }
}

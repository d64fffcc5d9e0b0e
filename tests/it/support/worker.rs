//! Worker processes without worker tests.
//!
//! A test that needs other processes (lock holders to kill or freeze, contenders with their
//! own address space, a measurement of its own memory) runs this test binary again with only
//! itself selected (`<its name> --exact`) and a spec in [`WORKER_ENV`]. In that re-run,
//! [`spec`] returns the spec and the test does the worker's part instead of its own (the
//! rusty-fork pattern):
//!
//! ```text
//! #[test]
//! fn several_processes_one_key() {
//!     if let Some(spec) = worker::spec() {
//!         return contend(&spec); // the worker's part
//!     }
//!     let w = Worker::spawn(test_name!(several_processes_one_key), "0;25;...");
//!     // ... the test's part
//! }
//! ```
//!
//! So an entry point for workers is never a test of its own (the test list counts real tests
//! only), and `cargo test --test it <filter>` always runs the workers of the binary it built.

use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that carries a worker's spec; set only in worker processes.
pub const WORKER_ENV: &str = "REDMUTEX_TEST_WORKER";

/// The libtest name (`module::path::test`) of the test function `$test` in the calling
/// module; the function must be in scope, so a renamed test fails to compile here instead of
/// starting workers that run nothing.
#[macro_export]
macro_rules! test_name {
    ($test:ident) => {{
        let _: fn() = $test;
        $crate::support::worker::libtest_name(concat!(module_path!(), "::", stringify!($test)))
    }};
}

/// `crate::a::b` -> `a::b`: libtest names tests by their path inside the crate.
pub fn libtest_name(path: &'static str) -> &'static str {
    path.split_once("::").map_or(path, |(_crate, rest)| rest)
}

/// The worker spec when this process is a worker started by [`Worker::spawn`] or
/// [`run_alone`]; `None` in a normal test run.
pub fn spec() -> Option<String> {
    std::env::var(WORKER_ENV).ok()
}

/// This test binary, set to run only `test` (a [`test_name!`]) as a worker with `spec`.
fn rerun(test: &str, spec: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(WORKER_ENV, spec)
        .stdin(Stdio::null());
    cmd
}

/// A worker process. Dropping it kills (SIGCONT, then SIGKILL) and reaps it if it still
/// runs, so a test that fails leaves no worker behind.
pub struct Worker {
    child: Child,
}

impl Worker {
    /// Starts this test binary again, running only `test` (a [`test_name!`]) with `spec`.
    /// The worker's stderr is ours (its panics show), its stdout (libtest's report) is
    /// dropped.
    ///
    /// # Panics
    /// If the process cannot be started.
    pub fn spawn(test: &str, spec: &str) -> Self {
        let child = rerun(test, spec)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a worker for {test}: {e}"));
        Self { child }
    }

    /// The worker's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has ended.
    ///
    /// # Panics
    /// If the status cannot be read.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("worker status")
    }

    /// Waits for the worker to end.
    ///
    /// # Panics
    /// If the status cannot be read.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("worker status")
    }

    /// Waits at most `limit` for the worker to end; `None` if it still runs.
    ///
    /// # Panics
    /// If the status cannot be read.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the worker (SIGKILL: no unwinding, no release) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            // A stopped process dies of SIGKILL too; SIGCONT is belt and braces.
            let _ = Command::new("kill")
                .args(["-CONT", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.kill();
    }
}

/// Runs `test` (a [`test_name!`]) alone in a fresh process of this binary, as a worker with
/// `spec`, and returns its output once it ends: for a test that measures its own process.
///
/// # Panics
/// If the process cannot be run.
pub fn run_alone(test: &str, spec: &str) -> Output {
    rerun(test, spec)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {test} alone: {e}"))
}

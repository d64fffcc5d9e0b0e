//! Exit statuses (as fd's `exit_codes.rs` and uutils `timeout`'s `status.rs`), and the error
//! type that carries one.

use std::fmt;
use std::process::ExitCode;

/// How `redmutex` ends. [`Exit::code`] is the single mapping to a number; [`TABLE`] documents
/// it in `--help` and the README repeats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done (or the child exited 0).
    Success,
    /// The lock was held elsewhere and `-n` or `-w` gave up: `-E N`, 1 by default (flock).
    Conflict(u8),
    /// Bad command line or configuration (EX_USAGE).
    Usage,
    /// Too few nodes answered, or they answered too slowly (EX_UNAVAILABLE).
    Unavailable,
    /// A node refused the login or a command the lock needs (WRONGPASS, NOPERM: an ACL
    /// without a key, channel or command), and too few others answered (EX_NOPERM).
    NoPermission,
    /// An unexpected error inside redmutex (EX_SOFTWARE).
    Software,
    /// The operating system refused something redmutex needs: a thread, a signal handler, a
    /// wait on the child (EX_OSERR).
    OsError,
    /// The lease was lost (key deleted or taken over, or not renewed in time) while the child
    /// ran, or the token given to `release`/`extend` does not hold the lock on a quorum.
    LostLease,
    /// The command was found but could not be run (permissions, not executable).
    CannotRun,
    /// The command was not found.
    NotFound,
    /// The child exited with this status.
    Child(u8),
    /// The child (or redmutex, while waiting) was killed by this signal: 128 + N.
    Signal(i32),
    /// `doctor`: a check warned, none failed.
    DoctorWarn,
    /// `doctor`: a check failed.
    DoctorFail,
    /// `run --once`: the run of that epoch already ran (its record exists); the command was
    /// not run.
    AlreadyRan,
    /// `run --once`: it is running elsewhere, and -n or -w gave up.
    RunningElsewhere,
}

/// The default of `-E/--conflict-exit-code`.
pub const CONFLICT_DEFAULT: u8 = 1;
/// Lost lease: the first code after the sysexits range (64–78), clear of 124–127 and 128+N.
pub const LOST_LEASE: u8 = 79;
/// `doctor` found warnings (and no failure): the next code after [`LOST_LEASE`].
pub const DOCTOR_WARN: u8 = 80;
/// `doctor` found a failure.
pub const DOCTOR_FAIL: u8 = 81;
/// `run --once` found the run done: the next code after [`DOCTOR_FAIL`].
pub const ALREADY_RAN: u8 = 82;
/// `run --once` found the run running elsewhere and gave up.
pub const RUNNING_ELSEWHERE: u8 = 83;

/// The exit-status table shown at the end of `--help` (a macro, so `concat!` can use it).
macro_rules! exit_table {
    () => {
        "\
Exit status:
  0       success (run: the command exited 0)
  1       the lock is held elsewhere (elect: another process leads) and -n/-w gave up (set
          with -E/--conflict-exit-code)
  64      usage error: bad flag, argument, node URL or duration
  69      nodes unavailable: too few nodes answered (--verbose lists each node's cause);
          status: the verdict is unknown
  70      internal error
  71      operating-system error (thread, signal handler, waiting for the command)
  77      permission denied: a node refused the login or a command the lock needs
          (WRONGPASS, NOPERM: the ACL user lacks a key, channel or command), and too few
          others answered
  79      lease lost: the lock was lost while the command ran (the command was sent SIGTERM,
          then SIGKILL after --kill-after), or release/extend: the token does not hold
          the lock on a quorum (expired, released, taken over, or a wrong token);
          elect: the leadership was lost while the command ran
  80      doctor: a check warned and none failed (a guarantee or a feature at risk; each
          warn line says what to change)
  81      doctor: a check failed (a node down or not a master, too few nodes for a quorum,
          the lock's own commands refused)
  82      run --once: it already ran (its completion record exists): the command was not run
  83      run --once: it is running elsewhere, and -n/-w gave up
  126     the command could not be run
  127     the command was not found
  128+N   the command was killed by signal N (also: redmutex interrupted by signal N while
          waiting for the lock)
  other   run: the command's own exit status (when the command exited 0 but the lock could
          not be released, the release's status: 69 or 77)"
    };
}
pub(crate) use exit_table;

/// The exit-status table shown at the end of `--help`.
pub const TABLE: &str = exit_table!();

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Conflict(n) | Self::Child(n) => n,
            Self::Usage => 64,
            Self::Unavailable => 69,
            Self::NoPermission => 77,
            Self::Software => 70,
            Self::OsError => 71,
            Self::LostLease => LOST_LEASE,
            Self::DoctorWarn => DOCTOR_WARN,
            Self::DoctorFail => DOCTOR_FAIL,
            Self::AlreadyRan => ALREADY_RAN,
            Self::RunningElsewhere => RUNNING_ELSEWHERE,
            Self::CannotRun => 126,
            Self::NotFound => 127,
            // Signal numbers are 1..=64 on Linux; anything else is clamped rather than wrapped.
            Self::Signal(n) => u8::try_from(128 + n.clamp(0, 127)).unwrap_or(255),
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        Self::from(e.code())
    }
}

/// An error that ends `redmutex`: one line for stderr, an exit status, and per-node details
/// for `--verbose`.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    /// One line per node that failed, shown with `--verbose`.
    pub details: Vec<String>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit status for a library error.
pub fn exit_for(e: &redmutex::Error) -> Exit {
    use redmutex::Error as E;
    match e {
        E::InvalidConfig(_) | E::InvalidArgument(_) => Exit::Usage,
        E::NoQuorum { failures, .. }
            if failures
                .iter()
                .any(|f| f.kind() == redmutex::NodeErrorKind::Auth) =>
        {
            Exit::NoPermission
        }
        E::NoQuorum { .. } | E::TooLate { .. } => Exit::Unavailable,
        E::Expired { .. } | E::LockLost { .. } | E::NotHeld { .. } => Exit::LostLease,
        E::Timeout { .. } => Exit::Conflict(CONFLICT_DEFAULT),
        E::AlreadyRan { .. } => Exit::AlreadyRan,
        _ => Exit::Software,
    }
}

impl From<redmutex::Error> for Failure {
    fn from(e: redmutex::Error) -> Self {
        let details = e.node_errors().iter().map(ToString::to_string).collect();
        Self {
            exit: exit_for(&e),
            message: e.to_string(),
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::Conflict(CONFLICT_DEFAULT).code(), 1);
        assert_eq!(Exit::Conflict(42).code(), 42);
        assert_eq!(Exit::Usage.code(), 64);
        assert_eq!(Exit::Unavailable.code(), 69);
        assert_eq!(Exit::NoPermission.code(), 77);
        assert_eq!(Exit::Software.code(), 70);
        assert_eq!(Exit::OsError.code(), 71);
        assert_eq!(Exit::LostLease.code(), 79);
        assert_eq!(Exit::DoctorWarn.code(), 80);
        assert_eq!(Exit::DoctorFail.code(), 81);
        assert_eq!(Exit::AlreadyRan.code(), 82);
        assert_eq!(Exit::RunningElsewhere.code(), 83);
        assert_eq!(Exit::CannotRun.code(), 126);
        assert_eq!(Exit::NotFound.code(), 127);
        assert_eq!(Exit::Child(3).code(), 3);
        assert_eq!(Exit::Signal(15).code(), 143);
        assert_eq!(Exit::Signal(9).code(), 137);
        assert_eq!(Exit::Signal(500).code(), 255);
        assert_eq!(Exit::Signal(-1).code(), 128);
    }

    #[test]
    fn library_errors_map_to_documented_codes() {
        let lost = redmutex::Error::LockLost {
            resource: "k".into(),
        };
        assert_eq!(exit_for(&lost), Exit::LostLease);
        let not_held = redmutex::Error::NotHeld {
            resource: "k".into(),
        };
        assert_eq!(exit_for(&not_held), Exit::LostLease);
        let bad = redmutex::Error::InvalidConfig("ttl".into());
        assert_eq!(exit_for(&bad), Exit::Usage);
        let nq = redmutex::Error::NoQuorum {
            resource: "k".into(),
            answered: 0,
            agreed: 0,
            needed: 2,
            nodes: 3,
            failures: vec![],
        };
        assert_eq!(Failure::from(nq).exit, Exit::Unavailable);
    }

    #[test]
    fn table_lists_every_fixed_code() {
        for code in [
            0,
            1,
            64,
            69,
            70,
            71,
            77,
            LOST_LEASE,
            DOCTOR_WARN,
            DOCTOR_FAIL,
            ALREADY_RAN,
            RUNNING_ELSEWHERE,
            126,
            127,
        ] {
            assert!(
                TABLE.contains(&format!("\n  {code} ")),
                "{code} missing from the table"
            );
        }
    }
}

//! `redmutex doctor [KEY]`: the library's checks of the nodes (`RedLockFactory::diagnose`),
//! one line per check or as JSON, and an exit status for the worst of them.

use std::io::Write as _;

use redmutex::{CheckStatus, Diagnosis, RedLockFactory};
use serde_json::json;

use crate::exit::{Exit, Failure};

/// Prints every check on stdout; the exit status says the worst (0 ok, 80 warn, 81 fail).
pub fn doctor(factory: &RedLockFactory, key: Option<&str>, as_json: bool) -> Result<Exit, Failure> {
    let diagnosis = factory.diagnose(key)?;
    let text = if as_json {
        format!("{}\n", to_json(&diagnosis))
    } else {
        lines(&diagnosis)
    };
    // Not `print!`, which panics when stdout is a closed pipe.
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(Exit::OsError, format!("cannot write to stdout: {e}")))?;
    Ok(exit(diagnosis.worst()))
}

/// The exit status for the worst check.
fn exit(worst: CheckStatus) -> Exit {
    match worst {
        CheckStatus::Ok => Exit::Success,
        CheckStatus::Warn => Exit::DoctorWarn,
        _ => Exit::DoctorFail,
    }
}

const ALL_NODES: &str = "all nodes";

fn lines(d: &Diagnosis) -> String {
    let node = |c: &redmutex::Check| c.node.clone().unwrap_or_else(|| ALL_NODES.into());
    let width = d.checks.iter().map(|c| node(c).len()).max().unwrap_or(0);
    let name_width = d.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in &d.checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {:<name_width$}  {}\n",
            c.status.as_str(),
            node(c),
            c.name,
            c.detail
        ));
    }
    out
}

fn to_json(d: &Diagnosis) -> serde_json::Value {
    let checks: Vec<serde_json::Value> = d
        .checks
        .iter()
        .map(|c| {
            json!({
                "node": c.node,
                "check": c.name,
                "status": c.status.as_str(),
                "detail": c.detail,
            })
        })
        .collect();
    json!({ "status": d.worst().as_str(), "checks": checks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_picks_the_exit_status() {
        assert_eq!(exit(CheckStatus::Ok).code(), 0);
        assert_eq!(exit(CheckStatus::Warn).code(), 80);
        assert_eq!(exit(CheckStatus::Fail).code(), 81);
    }
}

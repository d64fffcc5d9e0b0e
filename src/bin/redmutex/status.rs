//! `redmutex status`: the library's inspection of a lock, as a table or as JSON.
//!
//! Holders are shown by their fingerprint (the first 12 hex digits of the token's SHA1),
//! never by their token: a token is a capability.

use std::error::Error as _;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use redmutex::{Holding, Inspection, LockState, RedLock};
use serde_json::{Value, json};

use crate::exit::{Exit, Failure};

/// One node's row.
struct Row<'a> {
    node: &'a str,
    state: &'static str,
    holder: Option<String>,
    /// `None` when free or failed, or held without expiry.
    ttl: Option<Duration>,
    fencing_counter: Option<u64>,
    error: Option<String>,
    /// How much longer the node is in its restart quarantine.
    quarantined: Option<Duration>,
    /// A semaphore's name key: (permit count, permits this node counts as held).
    permits: Option<(u32, u32)>,
}

/// The verdict over the nodes.
struct Verdict {
    name: &'static str,
    holder: Option<String>,
    /// How many nodes back the verdict (held: hold it; free: are free).
    agreeing: Option<usize>,
    ttl: Option<Duration>,
    /// A semaphore's name: (permit count, permits a quorum counts as held).
    permits: Option<(u32, u32)>,
}

/// Prints the status of the lock on stdout; fails with 69 when too few nodes answered to tell
/// (77 when a node refused the login or a command).
pub fn status(lock: &RedLock, as_json: bool) -> Result<Exit, Failure> {
    let inspection = lock.inspect()?;
    let rows: Vec<Row<'_>> = inspection.nodes.iter().map(row).collect();
    let verdict = verdict(&inspection.state);
    let answered = rows.iter().filter(|r| r.error.is_none()).count();
    let text = if as_json {
        format!("{}\n", to_json(&inspection, &rows, &verdict, answered))
    } else {
        table(&inspection, &rows, &verdict, answered)
    };
    // Not `print!`, which panics when stdout is a closed pipe.
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(Exit::OsError, format!("cannot write to stdout: {e}")))?;
    if verdict.name == "unknown" {
        let details: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let quarantined = r.quarantined.map(|q| {
                    format!(
                        "quarantined for {:.1} s more (restart quarantine)",
                        q.as_secs_f64()
                    )
                });
                let why = r.error.clone().or(quarantined)?;
                Some(format!("{}: {why}", r.node))
            })
            .collect();
        let denied = inspection.nodes.iter().any(|n| {
            matches!(&n.holding, Holding::Failed(e) if e.kind() == redmutex::NodeErrorKind::Auth)
        });
        let mut f = Failure::new(
            if denied {
                Exit::NoPermission
            } else {
                Exit::Unavailable
            },
            format!(
                "no quorum for {:?}: {answered} of {} nodes answered, {} must agree ({})",
                inspection.resource,
                rows.len(),
                inspection.quorum,
                details.join("; ")
            ),
        );
        f.details = details;
        return Err(f);
    }
    Ok(Exit::Success)
}

fn row(view: &redmutex::NodeView) -> Row<'_> {
    let mut row = Row {
        node: &view.node,
        state: "free",
        holder: None,
        ttl: None,
        fencing_counter: view.fencing_counter,
        error: None,
        quarantined: view.quarantined,
        permits: None,
    };
    match &view.holding {
        Holding::Free => {}
        Holding::Held { holder, ttl } => {
            row.state = "held";
            row.holder = Some(holder.to_string());
            row.ttl = *ttl;
        }
        Holding::Permits { permits, held, ttl } => {
            row.state = "permits";
            row.permits = Some((*permits, *held));
            row.ttl = *ttl;
        }
        Holding::Failed(e) => {
            row.state = "error";
            // The cause alone: the node is named in its own column.
            row.error = Some(
                e.source()
                    .map_or_else(|| e.to_string(), ToString::to_string),
            );
        }
        other => {
            row.state = "error";
            row.error = Some(format!("not understood: {other:?}"));
        }
    }
    row
}

fn verdict(state: &LockState) -> Verdict {
    let mut v = Verdict {
        name: "unknown",
        holder: None,
        agreeing: None,
        ttl: None,
        permits: None,
    };
    match state {
        LockState::Held { holder, nodes, ttl } => {
            v.name = "held";
            v.holder = Some(holder.to_string());
            v.agreeing = Some(*nodes);
            v.ttl = *ttl;
        }
        LockState::Free { nodes } => {
            v.name = "free";
            v.agreeing = Some(*nodes);
        }
        LockState::Permits {
            permits,
            held,
            nodes,
        } => {
            v.name = "permits";
            v.permits = Some((*permits, *held));
            v.agreeing = Some(*nodes);
        }
        LockState::Split => v.name = "split",
        _ => {}
    }
    v
}

fn millis(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

fn to_json(inspection: &Inspection, rows: &[Row<'_>], v: &Verdict, answered: usize) -> Value {
    let nodes: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "node": r.node,
                "state": r.state,
                "holder": r.holder,
                "ttl_ms": millis(r.ttl),
                "fencing_counter": r.fencing_counter,
                "error": r.error,
                "quarantined_ms": millis(r.quarantined),
                "permits": r.permits.map(|p| p.0),
                "permits_held": r.permits.map(|p| p.1),
            })
        })
        .collect();
    json!({
        "key": inspection.resource,
        "verdict": v.name,
        "holder": v.holder,
        "agreeing": v.agreeing,
        "quorum": inspection.quorum,
        "answered": answered,
        "ttl_ms": millis(v.ttl),
        "fencing_counter": inspection.fencing_counter(),
        "permits": v.permits.map(|p| p.0),
        "permits_held": v.permits.map(|p| p.1),
        "nodes": nodes,
    })
}

fn table(inspection: &Inspection, rows: &[Row<'_>], v: &Verdict, answered: usize) -> String {
    let (n, q) = (rows.len(), inspection.quorum);
    let of = |k: Option<usize>| k.unwrap_or(0);
    let mut head = match v.name {
        "held" => {
            let ttl = v
                .ttl
                .map_or_else(|| "without expiry".to_owned(), |t| format!("for {t:.3?}"));
            format!(
                "held by {} on {} of {n} nodes (quorum {q}), {ttl}",
                v.holder.as_deref().unwrap_or("?"),
                of(v.agreeing)
            )
        }
        "free" => format!("free on {} of {n} nodes (quorum {q})", of(v.agreeing)),
        "permits" => {
            let (permits, held) = v.permits.unwrap_or_default();
            format!(
                "a semaphore of {permits} permits, {held} held (as a quorum counts them), on {} \
                 of {n} nodes (quorum {q}); a lock of this name waits for them",
                of(v.agreeing)
            )
        }
        "split" => format!(
            "split: no holder has a quorum ({q}) and too few nodes are free; it can be taken \
             once keys expire"
        ),
        _ => format!("unknown: {answered} of {n} nodes answered, {q} must agree"),
    };
    if let Some(c) = inspection.fencing_counter() {
        let _ = write!(head, "; fencing counter {c}");
    }
    let fencing = rows.iter().any(|r| r.fencing_counter.is_some());
    let width = rows.iter().map(|r| r.node.len()).max().unwrap_or(0).max(4);
    let mut out = String::new();
    let _ = writeln!(out, "{:?}: {head}", inspection.resource);
    let _ = write!(
        out,
        "{:<width$}  {:<7}  {:<12}  {:<9}",
        "NODE", "STATE", "HOLDER", "TTL"
    );
    if fencing {
        out.push_str("  FENCING");
    }
    end_line(&mut out);
    for r in rows {
        let ttl = match (r.state, r.ttl) {
            ("held", Some(t)) => format!("{t:.3?}"),
            ("held" | "permits", None) => "no expiry".into(),
            ("permits", Some(t)) => format!("{t:.3?}"),
            _ => "-".into(),
        };
        // A semaphore's name key shows its count where a lock shows its holder.
        let holder = r.permits.map_or_else(
            || r.holder.clone().unwrap_or_else(|| "-".into()),
            |(permits, held)| format!("{held}/{permits} held"),
        );
        let _ = write!(
            out,
            "{:<width$}  {:<7}  {holder:<12}  {ttl:<9}",
            r.node, r.state,
        );
        if fencing {
            let c = r
                .fencing_counter
                .map_or_else(|| "-".into(), |c| c.to_string());
            let _ = write!(out, "  {c}");
        }
        if let Some(e) = &r.error {
            let _ = write!(out, "  {e}");
        }
        if let Some(q) = r.quarantined {
            let _ = write!(
                out,
                "  quarantined for {:.1} s more (restart quarantine: its yes and its \"free\" \
                 do not count)",
                q.as_secs_f64()
            );
        }
        end_line(&mut out);
    }
    out
}

/// Ends the table's line without trailing spaces.
fn end_line(out: &mut String) {
    let len = out.trim_end_matches(' ').len();
    out.truncate(len);
    out.push('\n');
}

//! `redmutex status`: the key on each node, its remaining TTL, and the verdict.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::exit::{Exit, Failure};
use crate::nodes::{self, NodeState, Nodes};

/// One node's row.
struct Row {
    node: String,
    state: &'static str,
    /// Nodes holding the same value share a label: `a` for the first value seen, then `b`...
    /// (the token itself is a capability and is not shown).
    holder: Option<String>,
    pttl_ms: Option<i64>,
    error: Option<String>,
}

/// Prints the status of `key` on stdout; fails with 69 when too few nodes answered to tell.
pub fn status(nodes: &Nodes, key: &str, as_json: bool) -> Result<Exit, Failure> {
    let replies = nodes::inspect(nodes, key);
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut rows = Vec::with_capacity(replies.len());
    for (node, reply) in replies {
        let row = match reply {
            Ok(NodeState::Held { value, pttl }) => {
                let i = values.iter().position(|v| *v == value).unwrap_or_else(|| {
                    values.push(value);
                    counts.push(0);
                    values.len() - 1
                });
                if let Some(c) = counts.get_mut(i) {
                    *c += 1;
                }
                Row {
                    node,
                    state: "held",
                    holder: Some(label(i)),
                    pttl_ms: pttl,
                    error: None,
                }
            }
            Ok(NodeState::Free) => Row {
                node,
                state: "free",
                holder: None,
                pttl_ms: None,
                error: None,
            },
            Err(e) => Row {
                node,
                state: "error",
                holder: None,
                pttl_ms: None,
                error: Some(e),
            },
        };
        rows.push(row);
    }
    let q = nodes.quorum();
    let n = nodes.len();
    let answered = rows.iter().filter(|r| r.error.is_none()).count();
    let free = rows.iter().filter(|r| r.state == "free").count();
    let (best, best_count) = counts
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .map_or((None, 0), |(i, c)| (Some(i), *c));
    let verdict = if best_count >= q {
        "held"
    } else if free >= q {
        "free"
    } else if answered < q {
        "unknown"
    } else {
        "split"
    };
    let explain = match verdict {
        "held" => format!(
            "held by {} on {best_count} of {n} nodes (quorum {q})",
            best.map_or_else(String::new, label)
        ),
        "free" => format!("free on {free} of {n} nodes (quorum {q})"),
        "split" => format!(
            "no holder has a quorum ({q}) and too few nodes are free: it can be taken once \
             keys expire"
        ),
        _ => format!("unknown: {answered} of {n} nodes answered, {q} must agree"),
    };

    let text = if as_json {
        let nodes_json: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "node": r.node,
                    "state": r.state,
                    "holder": r.holder,
                    "pttl_ms": r.pttl_ms,
                    "error": r.error,
                })
            })
            .collect();
        let doc = json!({
            "key": key,
            "verdict": verdict,
            "holder": (verdict == "held").then(|| best.map(label)).flatten(),
            "quorum": q,
            "answered": answered,
            "nodes": nodes_json,
        });
        format!("{doc}\n")
    } else {
        table(key, &explain, &rows)
    };
    // Not `print!`, which panics when stdout is a closed pipe.
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(Exit::OsError, format!("cannot write to stdout: {e}")))?;
    if verdict == "unknown" {
        let details: Vec<String> = rows
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.node)))
            .collect();
        let mut f = Failure::new(
            Exit::Unavailable,
            format!(
                "no quorum for {key:?}: {answered} of {n} nodes answered, {q} must agree ({})",
                details.join("; ")
            ),
        );
        f.details = details;
        return Err(f);
    }
    Ok(Exit::Success)
}

fn label(i: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    letters
        .get(i)
        .map_or_else(|| format!("h{i}"), |c| char::from(*c).to_string())
}

fn table(key: &str, explain: &str, rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.node.len()).max().unwrap_or(0).max(4);
    let mut out = String::new();
    let _ = writeln!(out, "{key:?}: {explain}");
    let _ = writeln!(out, "{:<width$}  STATE  HOLDER  TTL", "NODE");
    for r in rows {
        let ttl = match (r.state, r.pttl_ms) {
            ("held", Some(ms)) => format!(
                "{:.3?}",
                Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            ),
            ("held", None) => "no expiry".into(),
            _ => "-".into(),
        };
        let _ = write!(
            out,
            "{:<width$}  {:<5}  {:<6}  {ttl}",
            r.node,
            r.state,
            r.holder.as_deref().unwrap_or("-")
        );
        if let Some(e) = &r.error {
            let _ = write!(out, "  {e}");
        }
        out.push('\n');
    }
    out
}

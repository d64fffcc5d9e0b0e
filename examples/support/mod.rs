//! Shared by the examples: where the nodes are.

/// The node URLs from `REDMUTEX_NODES`, or three local default ports. Nodes are separated by
/// spaces or `;`, as for the `redmutex` command (a comma belongs inside a Sentinel URL:
/// `redis+sentinel://h1,h2/master`).
pub fn nodes() -> Vec<String> {
    std::env::var("REDMUTEX_NODES")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7001 redis://127.0.0.1:7002 redis://127.0.0.1:7003".to_owned()
        })
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

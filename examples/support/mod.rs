//! Shared by the examples: where the nodes are.

/// The node URLs from `REDMUTEX_NODES` (comma-separated), or three local default ports.
pub fn nodes() -> Vec<String> {
    std::env::var("REDMUTEX_NODES")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003".to_owned()
        })
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

//! Per-node access for `status`, `release` and `extend`, which the library does not expose
//! (it only releases and extends through a guard). This talks to each node with the redis crate
//! directly, one short-lived connection per node with the same connect and I/O timeouts, all
//! nodes at once (one thread each), and counts a quorum as the library does.

use std::thread;
use std::time::Duration;

use redis::{Connection, ConnectionInfo, IntoConnectionInfo, RedisResult};

use crate::exit::{Exit, Failure};

/// Deletes the key if it holds the token: the library's release script (every Redlock client
/// uses this one).
const RELEASE_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
else
    return 0
end"#;

/// Sets a new expiry (ARGV[2] ms) if the key holds the token: the library's extend script.
const EXTEND_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("PEXPIRE", KEYS[1], ARGV[2])
else
    return 0
end"#;

/// The nodes, with the timeouts to use on them.
pub struct Nodes {
    nodes: Vec<(String, ConnectionInfo)>,
    connect_timeout: Duration,
    io_timeout: Duration,
}

/// What one node said.
pub type Reply<T> = Result<T, String>;

impl Nodes {
    /// Parses the node URLs (already validated by building the library's factory).
    pub fn new(
        urls: &[String],
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Self, Failure> {
        let mut nodes = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let info = url.as_str().into_connection_info().map_err(|e| {
                let text = e.to_string();
                let text = if text.contains('@') {
                    "invalid URL".to_owned()
                } else {
                    text
                };
                Failure::new(Exit::Usage, format!("node {i}: {text}"))
            })?;
            nodes.push((name(&info), info));
        }
        Ok(Self {
            nodes,
            connect_timeout,
            io_timeout,
        })
    }

    /// The majority.
    pub fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Runs `f` on every node at once; returns each node's name and reply, in node order.
    pub fn each<T, F>(&self, f: F) -> Vec<(String, Reply<T>)>
    where
        T: Send,
        F: Fn(&mut Connection) -> RedisResult<T> + Sync,
    {
        thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|(name, info)| {
                    let f = &f;
                    let handle = thread::Builder::new()
                        .name("node".into())
                        .spawn_scoped(s, move || self.on(info, f));
                    (name.clone(), handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(name, handle)| {
                    let reply = match handle {
                        Ok(h) => h
                            .join()
                            .unwrap_or_else(|_| Err("the node thread panicked".into())),
                        Err(e) => Err(format!("cannot start a thread: {e}")),
                    };
                    (name, reply)
                })
                .collect()
        })
    }

    fn on<T>(
        &self,
        info: &ConnectionInfo,
        f: &impl Fn(&mut Connection) -> RedisResult<T>,
    ) -> Reply<T> {
        let attempt = || -> RedisResult<T> {
            let client = redis::Client::open(info.clone())?;
            let mut con = client.get_connection_with_timeout(self.connect_timeout)?;
            con.set_read_timeout(Some(self.io_timeout))?;
            con.set_write_timeout(Some(self.io_timeout))?;
            f(&mut con)
        };
        attempt().map_err(|e| e.to_string())
    }
}

/// A node's name without credentials: `host:port` (or the socket path), plus `/db` when not 0,
/// as the library names them.
fn name(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    if db == 0 {
        info.addr().to_string()
    } else {
        format!("{}/{db}", info.addr())
    }
}

/// Runs one of the token scripts on every node: `Ok(1)` yes, `Ok(0)` no.
fn script_on_all(nodes: &Nodes, src: &str, key: &str, args: &[&str]) -> Vec<(String, Reply<i64>)> {
    let script = redis::Script::new(src);
    nodes.each(|con| {
        let mut inv = script.key(key);
        for a in args {
            inv.arg(*a);
        }
        inv.invoke::<i64>(con)
    })
}

/// Releases `key` if it holds `token`, on every node.
pub fn release(nodes: &Nodes, key: &str, token: &str) -> Result<(), Failure> {
    let replies = script_on_all(nodes, RELEASE_SRC, key, &[token]);
    decide(nodes, key, "released", &replies)
}

/// Sets `key`'s expiry to `ttl` from now if it holds `token`, on every node.
pub fn extend(nodes: &Nodes, key: &str, token: &str, ttl: Duration) -> Result<(), Failure> {
    if ttl.as_millis() == 0 {
        return Err(Failure::new(Exit::Usage, "--ttl must be at least 1 ms"));
    }
    let ms = ttl.as_millis().to_string();
    let replies = script_on_all(nodes, EXTEND_SRC, key, &[token, &ms]);
    decide(nodes, key, "extended", &replies)
}

/// Counts the votes of a token script: a quorum of yes is success; too few yes with enough
/// failures to hide a quorum cannot be decided (69); otherwise the token does not hold the
/// lock (79).
fn decide(
    nodes: &Nodes,
    key: &str,
    done: &str,
    replies: &[(String, Reply<i64>)],
) -> Result<(), Failure> {
    let yes = replies.iter().filter(|(_, r)| matches!(r, Ok(1))).count();
    let failures: Vec<String> = replies
        .iter()
        .filter_map(|(n, r)| match r {
            Err(e) => Some(format!("{n}: {e}")),
            Ok(0 | 1) => None,
            Ok(other) => Some(format!("{n}: unexpected reply {other}")),
        })
        .collect();
    let (q, n) = (nodes.quorum(), nodes.len());
    log::info!(
        "{done} {key:?} on {yes} of {n} nodes ({} failed, quorum {q})",
        failures.len()
    );
    for f in &failures {
        log::info!("node {f}");
    }
    if yes >= q {
        return Ok(());
    }
    if yes + failures.len() >= q {
        let mut f = Failure::new(
            Exit::Unavailable,
            format!(
                "no quorum for {key:?}: {} of {n} nodes answered, {q} must agree ({})",
                n - failures.len(),
                failures.join("; ")
            ),
        );
        f.details = failures;
        return Err(f);
    }
    Err(Failure::new(
        Exit::LostLease,
        format!(
            "{key:?} is not held with this token on a quorum ({done} on {yes} of {n} nodes, \
             {q} needed): it expired, was released, or was taken over"
        ),
    ))
}

/// What one node holds for the key.
pub enum NodeState {
    /// The key exists: its value, and its remaining TTL in ms (`None`: no expiry).
    Held {
        value: Vec<u8>,
        pttl: Option<i64>,
    },
    Free,
}

/// Reads the key and its remaining TTL on every node.
pub fn inspect(nodes: &Nodes, key: &str) -> Vec<(String, Reply<NodeState>)> {
    nodes.each(|con| {
        let (value, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
            .cmd("GET")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .query(con)?;
        Ok(match value {
            // -2: the key expired between GET and PTTL.
            Some(_) if pttl == -2 => NodeState::Free,
            Some(value) => NodeState::Held {
                value,
                pttl: (pttl >= 0).then_some(pttl),
            },
            None => NodeState::Free,
        })
    })
}

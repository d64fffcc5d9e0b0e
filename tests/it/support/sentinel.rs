//! Sentinel-managed master groups for tests: a master, a replica and three sentinels, all
//! real `redis-server` processes on loopback (`redis-server sentinel.conf --sentinel`).
//!
//! Sentinels get short timeouts (down after 1 s, failover timeout 3 s, quorum 2), so a
//! killed master is replaced within a few seconds. [`SentinelGroup::start`] returns once every
//! sentinel knows the replica and the two other sentinels, so a failover can start at once.
//! Like the rest of the harness, this talks to the servers through the `redis` crate and never
//! uses the library under test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::RedisResult;

use super::{
    CMD_TIMEOUT, READY_TIMEOUT, RedisCluster, RedisNode, deadline_loop, free_port, ping_port,
    port_cmd, redis_server_binary, send_signal, unique_temp_dir,
};

/// How long a new group may take until its sentinels know each other and the replica.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// One `redis-server --sentinel` process with its own writable configuration file.
pub struct SentinelProcess {
    port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl SentinelProcess {
    /// Starts a sentinel watching `master_name` at `127.0.0.1:master_port`, and waits until it
    /// answers PING.
    ///
    /// # Panics
    /// If redis-server is missing or the sentinel does not come up.
    pub fn start(master_name: &str, master_port: u16) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let dir = unique_temp_dir();
            let conf = dir.join("sentinel.conf");
            let text = format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 daemonize no\n\
                 dir {dir}\n\
                 logfile {log}\n\
                 sentinel resolve-hostnames no\n\
                 sentinel announce-hostnames no\n\
                 sentinel announce-ip 127.0.0.1\n\
                 sentinel monitor {master_name} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {master_name} 1000\n\
                 sentinel failover-timeout {master_name} 3000\n\
                 sentinel parallel-syncs {master_name} 1\n",
                dir = dir.display(),
                log = dir.join("sentinel.log").display(),
            );
            std::fs::write(&conf, text).expect("write sentinel.conf");
            let child = Command::new(redis_server_binary())
                .arg(&conf)
                .arg("--sentinel")
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start redis-server --sentinel: {e}"));
            let sentinel = Self {
                port,
                dir,
                child: Mutex::new(Some(child)),
            };
            let up = deadline_loop(READY_TIMEOUT, || {
                sentinel.is_running() && ping_port(port, Duration::from_millis(500))
            });
            if up && sentinel.is_running() {
                return sentinel;
            }
            assert!(
                attempt < 5,
                "sentinel on port {port} did not start; log:\n{}",
                sentinel.log()
            );
            // Probably lost a race for the port: `sentinel` is dropped (killed), try another.
        }
    }

    /// The sentinel's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The sentinel's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sentinel.log")).unwrap_or_default()
    }

    fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        matches!(child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Sends one command (see [`super::RedisCluster::cmd`] for the reply format).
    ///
    /// # Errors
    /// Connection or I/O errors.
    pub fn try_cmd(&self, args: &[&str]) -> RedisResult<String> {
        port_cmd(self.port, args, CMD_TIMEOUT)
    }

    /// Freezes the sentinel (SIGSTOP): the kernel still accepts connections, nothing answers.
    pub fn stop(&self) {
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            send_signal(child.id(), "-STOP");
        }
    }

    /// Resumes a sentinel frozen by [`Self::stop`].
    pub fn cont(&self) {
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            send_signal(child.id(), "-CONT");
        }
    }

    /// SIGKILLs the sentinel.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `key\nvalue\n...` (a flat array reply) as pairs.
fn fields(reply: &str) -> Vec<(&str, &str)> {
    let lines: Vec<&str> = reply.lines().collect();
    lines
        .chunks(2)
        .filter_map(|c| Some((*c.first()?, *c.get(1)?)))
        .collect()
}

/// A Sentinel-managed group: data servers (index 0 started as the master, 1 as its replica)
/// and three sentinels.
pub struct SentinelGroup {
    name: String,
    data: Vec<RedisCluster>,
    sentinels: Vec<SentinelProcess>,
}

impl SentinelGroup {
    /// Starts a master, a replica and three sentinels for `name`, and waits until the
    /// replica is in sync and every sentinel knows the replica and the other sentinels.
    ///
    /// # Panics
    /// If a process does not start or the group does not converge in [`CONVERGE_TIMEOUT`].
    pub fn start(name: &str) -> Self {
        let master = RedisCluster::start(1);
        let port = master.port(0).to_string();
        let replica = RedisCluster::start_with_args(1, &["--replicaof", "127.0.0.1", &port]);
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(name, master.port(0)))
            .collect();
        let group = Self {
            name: name.to_owned(),
            data: vec![master, replica],
            sentinels,
        };
        let converged = deadline_loop(CONVERGE_TIMEOUT, || {
            let synced = group
                .data(1)
                .try_cmd(&["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"));
            synced
                && group.sentinels.iter().all(|s| {
                    s.try_cmd(&["SENTINEL", "MASTER", name]).is_ok_and(|reply| {
                        let f = fields(&reply);
                        f.contains(&("num-slaves", "1"))
                            && f.contains(&("num-other-sentinels", "2"))
                    })
                })
        });
        assert!(
            converged,
            "sentinel group {name} did not converge; sentinel log:\n{}",
            group.sentinels[0].log()
        );
        group
    }

    /// The master name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Data server `i` (0 started as the master, 1 as the replica).
    pub fn data(&self, i: usize) -> &RedisNode {
        self.data[i].node(0)
    }

    /// The data server listening on `port`.
    pub fn data_on(&self, port: u16) -> Option<&RedisNode> {
        self.data
            .iter()
            .map(|c| c.node(0))
            .find(|n| n.port() == port)
    }

    /// Sentinel `i`.
    pub fn sentinel(&self, i: usize) -> &SentinelProcess {
        &self.sentinels[i]
    }

    /// The sentinels' addresses.
    pub fn sentinel_addrs(&self) -> Vec<(String, u16)> {
        self.sentinels
            .iter()
            .map(|s| ("127.0.0.1".to_owned(), s.port()))
            .collect()
    }

    /// `redis+sentinel://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C/name`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.name)
    }

    /// The master's port according to sentinel `i`.
    pub fn master_port_from(&self, i: usize) -> Option<u16> {
        let reply = self.sentinels[i]
            .try_cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.name])
            .ok()?;
        reply.lines().nth(1)?.parse().ok()
    }

    /// The master's port according to the first sentinel that answers.
    pub fn master_port(&self) -> Option<u16> {
        (0..self.sentinels.len()).find_map(|i| self.master_port_from(i))
    }

    /// The data server that is the master now (per the sentinels).
    ///
    /// # Panics
    /// If no sentinel answers.
    pub fn master(&self) -> &RedisNode {
        let port = self.master_port().expect("no sentinel answers");
        self.data_on(port)
            .expect("the sentinels name an unknown master")
    }

    /// Kills the current master; returns its port.
    pub fn kill_master(&self) -> u16 {
        let master = self.master();
        master.kill();
        master.port()
    }

    /// Waits until every sentinel names a master other than `old` and that server says it
    /// is a master; returns its port and how long it took.
    pub fn wait_failover(&self, old: u16, limit: Duration) -> Option<(u16, Duration)> {
        let start = Instant::now();
        let mut new = None;
        let done = deadline_loop(limit, || {
            let ports: Vec<Option<u16>> = (0..self.sentinels.len())
                .map(|i| self.master_port_from(i))
                .collect();
            let Some(Some(port)) = ports.first().copied() else {
                return false;
            };
            new = Some(port);
            port != old
                && ports.iter().all(|p| *p == Some(port))
                && self.data_on(port).is_some_and(|n| {
                    n.try_cmd(&["ROLE"])
                        .is_ok_and(|role| role.starts_with("master"))
                })
        });
        done.then(|| (new.unwrap_or(old), start.elapsed()))
    }

    /// Points every sentinel at `127.0.0.1:port` for this group (forgetting what they knew),
    /// with the same short timeouts.
    ///
    /// # Panics
    /// If a sentinel refuses.
    pub fn repoint(&self, port: u16) {
        let port = port.to_string();
        let name = self.name.as_str();
        for s in &self.sentinels {
            let _ = s.try_cmd(&["SENTINEL", "REMOVE", name]);
            for args in [
                &["SENTINEL", "MONITOR", name, "127.0.0.1", &port, "2"][..],
                &["SENTINEL", "SET", name, "down-after-milliseconds", "1000"],
                &["SENTINEL", "SET", name, "failover-timeout", "3000"],
            ] {
                let reply = s.try_cmd(args).expect("sentinel command");
                assert_eq!(reply, "OK", "{args:?}");
            }
        }
    }
}

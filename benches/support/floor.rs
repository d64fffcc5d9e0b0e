//! The floor of every benchmark: a Redlock cycle in raw commands, with no library. Shared by
//! the `redlock` and `features` benches (`#[path]`-included: not a bench target of its own).

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Value;

/// The compare-and-delete script every Redlock client uses (the same text as the library's).
const RELEASE_SRC: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
else
    return 0
end"#;

/// One already-open connection per node and a reused command buffer: the same commands as a
/// Redlock round, with nothing else.
pub struct Floor {
    cons: Vec<redis::Connection>,
    sha: String,
    buf: Vec<u8>,
    ttl_ms: String,
    id: u64,
    seq: u64,
}

static FLOOR_IDS: AtomicU64 = AtomicU64::new(1);

impl Floor {
    pub fn connect(urls: &[String], ttl: Duration) -> Self {
        let mut sha = String::new();
        let cons = urls
            .iter()
            .map(|url| {
                let client = redis::Client::open(url.as_str()).expect("node URL");
                let mut con = client.get_connection().expect("connect to a bench node");
                sha = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(RELEASE_SRC)
                    .query(&mut con)
                    .expect("SCRIPT LOAD");
                con
            })
            .collect();
        Self {
            cons,
            sha,
            buf: Vec::with_capacity(256),
            ttl_ms: ttl.as_millis().to_string(),
            id: FLOOR_IDS.fetch_add(1, Ordering::Relaxed),
            seq: 0,
        }
    }

    /// A fresh 40-hex-digit token (as long as the library's), without system calls.
    pub fn token(&mut self) -> [u8; 40] {
        self.seq += 1;
        let mut tok = [b'0'; 40];
        for (i, word) in [self.id, self.seq].into_iter().enumerate() {
            let mut n = word;
            for slot in tok[i * 20..i * 20 + 16].iter_mut().rev() {
                *slot = b"0123456789abcdef"[(n & 15) as usize];
                n >>= 4;
            }
        }
        tok
    }

    /// Packs `args` as one RESP command into the reused buffer.
    pub fn pack(&mut self, args: &[&[u8]]) {
        self.buf.clear();
        let _ = write!(self.buf, "*{}\r\n", args.len());
        for a in args {
            let _ = write!(self.buf, "${}\r\n", a.len());
            self.buf.extend_from_slice(a);
            self.buf.extend_from_slice(b"\r\n");
        }
    }

    /// Writes the packed command to every node in `mask`, then reads every reply; returns the
    /// nodes whose reply `yes` accepts.
    pub fn round(&mut self, mask: u64, yes: fn(&Value) -> bool) -> u64 {
        for (i, con) in self.cons.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                con.send_packed_command(&self.buf).expect("floor write");
            }
        }
        let mut got = 0;
        for (i, con) in self.cons.iter_mut().enumerate() {
            if mask & (1 << i) != 0 && yes(&con.recv_response().expect("floor read")) {
                got |= 1 << i;
            }
        }
        got
    }

    pub fn all(&self) -> u64 {
        (1 << self.cons.len()) - 1
    }

    pub fn set(&mut self, mask: u64, key: &str, tok: &[u8]) -> u64 {
        let ttl = std::mem::take(&mut self.ttl_ms);
        self.pack(&[b"SET", key.as_bytes(), tok, b"NX", b"PX", ttl.as_bytes()]);
        self.ttl_ms = ttl;
        self.round(mask, |v| matches!(v, Value::Okay))
    }

    pub fn del(&mut self, mask: u64, key: &str, tok: &[u8]) -> u64 {
        let sha = std::mem::take(&mut self.sha);
        self.pack(&[b"EVALSHA", sha.as_bytes(), b"1", key.as_bytes(), tok]);
        self.sha = sha;
        self.round(mask, |v| matches!(v, Value::Int(1)))
    }

    /// One uncontended cycle: SET NX PX on every node, then the compare-and-delete.
    pub fn cycle(&mut self, key: &str) {
        let tok = self.token();
        let all = self.all();
        assert_eq!(self.set(all, key, &tok), all, "floor SET refused");
        assert_eq!(self.del(all, key, &tok), all, "floor delete refused");
    }

    /// One PING round trip on the first node.
    pub fn ping(&mut self) {
        let con = &mut self.cons[0];
        con.send_packed_command(b"*1\r\n$4\r\nPING\r\n")
            .expect("PING write");
        let reply = con.recv_response().expect("PING read");
        assert!(matches!(reply, Value::SimpleString(ref s) if s == "PONG"));
    }

    /// A Redlock acquisition attempt without the library: SET on every node, a majority wins,
    /// a split vote is taken back. Returns the token when acquired.
    pub fn try_lock(&mut self, key: &str) -> Option<[u8; 40]> {
        let tok = self.token();
        let all = self.all();
        let yes = self.set(all, key, &tok);
        if yes.count_ones() as usize > self.cons.len() / 2 {
            return Some(tok);
        }
        if yes != 0 {
            self.del(yes, key, &tok);
        }
        None
    }
}

//! The harness's side of the Redis protocol: every command the harness (and a test through it)
//! sends goes through the `redis` crate, on a connection whose connect (handshake included),
//! reads and writes are each bounded. Replies come back as text, the form the tests compare
//! against (see [`show`]).

use std::time::Duration;

use redis::{Connection, ConnectionAddr, ConnectionLike, IntoConnectionInfo, RedisResult, Value};

/// Opens a connection to `127.0.0.1:port` with connect, read and write each bounded by
/// `timeout` (which must not be zero). It sends nothing on connect (no `CLIENT SETINFO`), so
/// the harness adds no traffic of its own to what a test inspects.
///
/// # Errors
/// Connection errors, including the timeout.
pub fn connect(port: u16, timeout: Duration) -> RedisResult<Connection> {
    let info = ConnectionAddr::Tcp("127.0.0.1".into(), port).into_connection_info()?;
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

/// Sends `args` (command name first) as one command on `con` and returns the reply as text
/// (see [`show`]). An error reply is a reply (`ERR ...`), not an `Err`.
///
/// # Errors
/// I/O errors, including the connection's timeouts.
///
/// # Panics
/// If `args` is empty.
pub fn send(con: &mut Connection, args: &[&str]) -> RedisResult<String> {
    let (name, rest) = args.split_first().expect("a command needs a name");
    let mut cmd = redis::cmd(name);
    for arg in rest {
        cmd.arg(*arg);
    }
    con.req_command(&cmd).map(|reply| show(&reply))
}

/// Sends one command to `127.0.0.1:port` over a fresh connection bounded by `timeout` (see
/// [`connect`]) and returns the reply as text (see [`show`]).
///
/// # Errors
/// Connection or I/O errors, including the timeout.
pub fn port_cmd(port: u16, args: &[&str], timeout: Duration) -> RedisResult<String> {
    send(&mut connect(port, timeout)?, args)
}

/// Whether a Redis server on `127.0.0.1:port` answers `PING` with `PONG` within `timeout`
/// (one for the connection, one for the reply).
pub fn ping_port(port: u16, timeout: Duration) -> bool {
    port_cmd(port, &["PING"], timeout).is_ok_and(|reply| reply == "PONG")
}

/// A reply as text: a simple string as is (`OK`, `PONG`), an integer in decimal (`-2`), a bulk
/// string's contents (lossy UTF-8), nil as `(nil)`, an error as its code and message
/// (`ERR ...`, `WRONGTYPE ...`), an array as its elements joined with `\n`.
pub fn show(reply: &Value) -> String {
    match reply {
        Value::Nil => "(nil)".to_owned(),
        Value::Okay => "OK".to_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Array(items) | Value::Set(items) => {
            items.iter().map(show).collect::<Vec<_>>().join("\n")
        }
        Value::ServerError(e) => match e.details() {
            Some(details) => format!("{} {details}", e.code()),
            None => e.code().to_owned(),
        },
        // RESP3 types: the harness speaks RESP2, so these do not occur.
        other => format!("{other:?}"),
    }
}

//! Packing commands into RESP without allocating.
//!
//! A round sends the same bytes to every node, so a command is packed once, into a buffer that
//! each thread reuses. `redis::Cmd` would allocate its argument vectors and the packed output
//! on every call; the format is simple enough to write directly:
//! `*<argc>\r\n` then `$<len>\r\n<bytes>\r\n` per argument.

use std::cell::RefCell;

/// One argument of a command.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    /// Bytes as they are.
    Str(&'a str),
    /// Two strings written back to back (a resource name and a key suffix), without building
    /// a String.
    Joined(&'a str, &'a str),
    /// A decimal integer.
    Int(u64),
}

/// Digits in the decimal form of `n`.
fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

impl Arg<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Str(s) => s.len(),
            Self::Joined(a, b) => a.len() + b.len(),
            Self::Int(n) => digits(*n),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Str(s) => out.extend_from_slice(s.as_bytes()),
            Self::Joined(a, b) => {
                out.extend_from_slice(a.as_bytes());
                out.extend_from_slice(b.as_bytes());
            }
            Self::Int(n) => write_int(out, *n),
        }
    }
}

/// Appends the decimal digits of `n` (without `fmt`, which costs more than the rest of the
/// packing).
fn write_int(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Appends one command made of `args` to `out`.
pub(crate) fn pack<'a>(out: &mut Vec<u8>, args: impl IntoIterator<Item = Arg<'a>>, count: usize) {
    out.push(b'*');
    write_int(out, count as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        write_int(out, arg.len() as u64);
        out.extend_from_slice(b"\r\n");
        arg.write(out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `EVALSHA <sha> <keys.len()> <keys...> <args...>` to `out`.
pub(crate) fn pack_script(
    out: &mut Vec<u8>,
    script: &redis::Script,
    keys: &[Arg<'_>],
    args: &[Arg<'_>],
) {
    pack_call(out, "EVALSHA", script.get_hash(), keys, args);
}

/// Appends `<verb> <script> <keys.len()> <keys...> <args...>`: EVALSHA with a hash, or EVAL
/// with the source.
pub(crate) fn pack_call(
    out: &mut Vec<u8>,
    verb: &str,
    script: &str,
    keys: &[Arg<'_>],
    args: &[Arg<'_>],
) {
    let head = [
        Arg::Str(verb),
        Arg::Str(script),
        Arg::Int(keys.len() as u64),
    ];
    let all = head
        .into_iter()
        .chain(keys.iter().copied())
        .chain(args.iter().copied());
    pack(out, all, 3 + keys.len() + args.len());
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's empty packing buffer (a fresh one if it is in use).
pub(crate) fn with_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let result = f(&mut buf);
            // Don't keep a large batch's buffer around.
            if buf.capacity() > 64 * 1024 {
                *buf = Vec::new();
            }
            result
        }
        Err(_) => f(&mut Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_like_redis_rs() {
        let mut ours = Vec::new();
        pack(
            &mut ours,
            [
                Arg::Str("SET"),
                Arg::Str("k é"),
                Arg::Str("tok"),
                Arg::Str("NX"),
                Arg::Str("PX"),
                Arg::Int(10_000),
            ],
            6,
        );
        let theirs = redis::cmd("SET")
            .arg("k é")
            .arg("tok")
            .arg("NX")
            .arg("PX")
            .arg(10_000u64)
            .get_packed_command();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn packs_scripts_and_prefixed_keys_like_redis_rs() {
        let script = redis::Script::new("return 1");
        let mut ours = Vec::new();
        pack_script(
            &mut ours,
            &script,
            &[Arg::Str("res"), Arg::Joined("res", ":redmutex:fence")],
            &[Arg::Int(0), Arg::Int(u64::MAX)],
        );
        let theirs = redis::cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(2)
            .arg("res")
            .arg("res:redmutex:fence")
            .arg(0)
            .arg(u64::MAX)
            .get_packed_command();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn digit_counts() {
        for n in [0, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(digits(n), n.to_string().len(), "{n}");
        }
    }

    #[test]
    fn nested_use_gets_a_fresh_buffer() {
        with_buffer(|outer| {
            outer.extend_from_slice(b"outer");
            with_buffer(|inner| {
                assert!(inner.is_empty());
                inner.extend_from_slice(b"inner");
            });
            assert_eq!(outer, b"outer");
        });
    }
}

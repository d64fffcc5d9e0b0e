//! A tiny stderr logger for `--verbose` (the library logs through the `log` facade and never
//! installs a logger itself).

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

static LOGGER: Stderr = Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug | Level::Trace => "debug",
        };
        let text = record.args().to_string();
        // The library's messages already start with the crate's name.
        let text = text.strip_prefix("redmutex: ").unwrap_or(&text);
        line(&format!("redmutex: {level}: {text}"));
    }

    fn flush(&self) {}
}

/// Installs the logger: nothing without `-v`, info (ours) and warnings (the library's) with
/// `-v`, every round with `-vv`.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => LevelFilter::Off,
        1 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Prints a warning that is always shown (not only with `--verbose`).
pub fn warn(message: &str) {
    line(&format!("redmutex: warning: {message}"));
}

/// Prints an error line: `redmutex: error: ...`.
pub fn error(message: &str) {
    line(&format!("redmutex: error: {message}"));
}

/// Writes one line to stderr; a closed stderr is not worth a panic (unlike `eprintln!`).
fn line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

//! A test logger: every `log` record emitted while a test captures ([`capture`]) is kept, from
//! every thread (the library logs from its own threads too), for the test to read back
//! ([`records`]). The test binary holds every integration test and a process has one logger,
//! so the logger is shared: it records only while at least one capturing test runs, and a test
//! should look for records of its own (its resource names), not count all of them.

use std::sync::Mutex;

/// Every record captured so far, formatted as `LEVEL target: message`.
static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// How many tests capture right now.
static CAPTURING: Mutex<usize> = Mutex::new(0);

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        LOGS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    fn flush(&self) {}
}

/// Captures every log record until the returned guard is dropped.
pub fn capture() -> Capturing {
    static LOGGER: Capture = Capture;
    let _ = log::set_logger(&LOGGER);
    let mut n = CAPTURING.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    log::set_max_level(log::LevelFilter::Trace);
    Capturing
}

/// The records captured so far (by every capturing test).
pub fn records() -> Vec<String> {
    LOGS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Ends a capture when dropped; the last one turns logging off again.
pub struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        let mut n = CAPTURING.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0 {
            log::set_max_level(log::LevelFilter::Off);
        }
    }
}

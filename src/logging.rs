//! A small `log` backend: one line per record, to `logFile` or stderr, with
//! a UTC timestamp, the pid and the call's context (verb, attachment, pod),
//! so that a grep at 3 a.m. finds the whole story of one pod.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

struct Logger {
    sink: Mutex<Box<dyn Write + Send>>,
    context: Mutex<String>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Install the logger once per process. A log file that cannot be opened
/// falls back to stderr (and says so there): logging never fails a call.
pub fn init(file: Option<&Path>, level: log::LevelFilter) {
    let mut fallback_note = None;
    let sink: Box<dyn Write + Send> = match file {
        None => Box::new(std::io::stderr()),
        Some(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                fallback_note = Some(format!("cannot open logFile {}: {e}", path.display()));
                Box::new(std::io::stderr())
            }
        },
    };
    let logger = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(sink),
        context: Mutex::new(String::new()),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
    if let Some(note) = fallback_note {
        log::warn!("{note}; logging to stderr");
    }
}

/// Set the prefix that every following line carries (e.g. `ADD 3f2a…/eth0 pod=ns/name`).
pub fn set_context(ctx: impl Into<String>) {
    if let Some(l) = LOGGER.get()
        && let Ok(mut c) = l.context.lock()
    {
        *c = ctx.into();
    }
}

/// `2026-11-21T05:40:00.123Z`, without a date crate.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ctx = self.context.lock().map(|c| c.clone()).unwrap_or_default();
        let line = format!(
            "{} gwsteer[{}] {:<5} {}{}{}\n",
            timestamp(SystemTime::now()),
            std::process::id(),
            record.level(),
            ctx,
            if ctx.is_empty() { "" } else { ": " },
            record.args()
        );
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_238_400_123);
        assert_eq!(timestamp(t), "2026-11-21T05:20:00.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}

//! A small `log` backend: one line per record, to `logFile` or stderr, with
//! a UTC timestamp, the pid and the call's context (verb, attachment, pod),
//! so that a grep at 3 a.m. finds the whole story of one pod.
//!
//! gwsteer runs as root: `logFile` is opened without following a symlink
//! (`O_NOFOLLOW`, append, made 0600) and must be a regular file, and every
//! control character of a line (newline, CR, ESC, other C0 and C1, DEL) is
//! escaped, so a pod name cannot forge a line or a terminal sequence.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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
    init_capped(file, level, log::LevelFilter::Trace)
}

/// The plugin's logger (a CNI verb): as [`init`], but what goes to stderr
/// is only warnings and errors. The runtime copies a plugin's stderr raw
/// into its own log (containerd's journal), where an info line per ADD and
/// DEL of every pod does not belong; `logFile` gets `logLevel`.
pub fn init_plugin(file: Option<&Path>, level: log::LevelFilter) {
    init_capped(file, level, log::LevelFilter::Warn)
}

fn init_capped(file: Option<&Path>, level: log::LevelFilter, stderr_cap: log::LevelFilter) {
    let mut on_stderr = file.is_none();
    let mut fallback_note = None;
    let sink: Box<dyn Write + Send> = match file {
        None => Box::new(std::io::stderr()),
        Some(path) => match open_log_file(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                fallback_note = Some(format!("cannot open logFile {}: {e}", path.display()));
                on_stderr = true;
                Box::new(std::io::stderr())
            }
        },
    };
    let level = if on_stderr {
        level.min(stderr_cap)
    } else {
        level
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

/// Open `logFile` for appending: never through a symlink, never a fifo or
/// a device, made 0600 where missing.
fn open_log_file(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// `text` with every control character escaped: `\n`, `\r`, `\t`, and
/// `\xNN` (`\u{NN}` for C1) for the others, DEL included.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

/// One log line: time, pid, level, context, message; control characters
/// escaped, one `\n` at the end.
fn line(level: log::Level, ctx: &str, msg: &str) -> String {
    let text = format!(
        "{} gwsteer[{}] {:<5} {}{}{}",
        timestamp(SystemTime::now()),
        std::process::id(),
        level,
        ctx,
        if ctx.is_empty() { "" } else { ": " },
        msg
    );
    let mut line = escape_controls(&text).into_owned();
    line.push('\n');
    line
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
        let line = line(record.level(), &ctx, &record.args().to_string());
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

    /// A pod name with a newline cannot forge a second line, nor an ESC a
    /// terminal sequence: every control character is escaped.
    #[test]
    fn control_characters_are_escaped_in_every_line() {
        let pod = "x\n2026-11-21T05:20:00.123Z gwsteer[1] INFO  forged\r\u{1b}[2J\u{7f}\u{85}\0";
        let l = line(
            log::Level::Info,
            &format!("DEL c/eth0 pod=ns/{pod}"),
            "done\tok",
        );
        assert_eq!(l.matches('\n').count(), 1, "{l:?}");
        assert!(l.ends_with('\n'));
        assert!(
            !l.trim_end_matches('\n').chars().any(char::is_control),
            "{l:?}"
        );
        assert!(
            l.ends_with(
                "DEL c/eth0 pod=ns/x\\n2026-11-21T05:20:00.123Z gwsteer[1] INFO  forged\\r\\x1b[2J\\x7f\\u{85}\\x00: done\\tok\n"
            ),
            "{l:?}"
        );
        assert_eq!(escape_controls("plain ünïcode"), "plain ünïcode");
    }

    /// `logFile` is never followed through a symlink, nor opened if it is
    /// not a regular file.
    #[test]
    fn the_log_file_is_not_followed_through_a_symlink() {
        struct Cleanup(std::path::PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("gwsteer-logfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = Cleanup(dir.clone());
        let target = dir.join("target");
        std::fs::write(&target, b"precious\n").unwrap();
        let link = dir.join("gwsteer.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_log_file(&link).map(drop).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(open_log_file(&dir).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious\n");
        let plain = dir.join("plain.log");
        drop(open_log_file(&plain).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&plain).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

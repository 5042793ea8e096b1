//! Logs through `tracing` on stderr: human-readable text by default, one JSON object a line
//! for log shippers (`--log-format json`). Levels per module come from `RUST_LOG` when it is
//! set (so one run can be made verbose without touching the config), else from the
//! `log_level` config key, else `info`.
//!
//! Under journald (systemd's `$JOURNAL_STREAM` names the very stream stderr is), text lines
//! carry no timestamp and no colours: the journal stamps every line itself. A process whose
//! stderr was redirected elsewhere (a localnet node writing its own log file) inherits the
//! variable but not the stream, so it keeps its timestamps.

use crate::config::{parse_log_filter, LogFormat, DEFAULT_LOG_LEVEL};
use tracing_subscriber::EnvFilter;

/// Starts the global logger. `config_filter` is the validated `log_level` key, if the command
/// has a config. Call once, before anything logs.
pub fn init(format: LogFormat, config_filter: Option<&str>) {
    let fallback = || {
        parse_log_filter(config_filter.unwrap_or(DEFAULT_LOG_LEVEL))
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_LEVEL))
    };
    let (filter, bad_rust_log) = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => match parse_log_filter(&text) {
            Ok(filter) => (filter, None),
            Err(e) => (fallback(), Some((text, e))),
        },
        _ => (fallback(), None),
    };
    let journald = under_journald(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_identity(),
    );
    // Colours only on a terminal: a log file (localnet) or the journal gets plain text.
    let ansi = !journald && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match (format, journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
    if let Some((text, e)) = bad_rust_log {
        tracing::warn!(rust_log = %text, error = %e, "RUST_LOG is not a valid filter; ignored");
    }
}

/// Whether `journal_stream` (`$JOURNAL_STREAM`, `<device>:<inode>`) names the stream whose
/// identity is `stderr` (its device and inode).
pub fn under_journald(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>(), stderr) {
        (Ok(dev), Ok(ino), Some(actual)) => (dev, ino) == actual,
        _ => false,
    }
}

/// Device and inode of stderr, as `$JOURNAL_STREAM` spells them.
#[cfg(unix)]
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    identity(std::io::stderr().as_fd())
}

#[cfg(unix)]
fn identity(fd: std::os::fd::BorrowedFd<'_>) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::File::from(fd.try_clone_to_owned().ok()?)
        .metadata()
        .ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn stderr_identity() -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_only_when_the_stream_is_stderr() {
        assert!(under_journald(Some("8:1234"), Some((8, 1234))));
        // Inherited from a parent whose stderr was the journal; ours is a file.
        assert!(!under_journald(Some("8:1234"), Some((8, 999))));
        assert!(!under_journald(None, Some((8, 1234))));
        assert!(!under_journald(Some("garbage"), Some((8, 1234))));
        assert!(!under_journald(Some("8:x"), Some((8, 1234))));
        assert!(!under_journald(Some("8:1234"), None));
    }

    #[test]
    fn a_stream_is_known_by_its_device_and_inode() {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = std::fs::File::create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let id = identity(file.as_fd()).unwrap();
        assert_eq!(id, (meta.dev(), meta.ino()));
        let stream = format!("{}:{}", meta.dev(), meta.ino());
        assert!(under_journald(Some(&stream), Some(id)));
    }
}

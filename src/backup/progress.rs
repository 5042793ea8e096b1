//! Progress of a long operation: a bar on a terminal, a log line every few seconds otherwise
//! (a node's log, a script, systemd's journal).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Time between two log lines when there is no terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// Reports how far an operation has come, in bytes (or records when the total is unknown).
pub struct Progress {
    label: &'static str,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    last_log: Instant,
}

impl Progress {
    /// A bar if stderr is a terminal and `interactive` allows one (a node never draws one).
    pub fn new(label: &'static str, total: Option<u64>, interactive: bool) -> Progress {
        let bar = (interactive && std::io::stderr().is_terminal()).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta} left)",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {msg} {pos} records ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar.with_message(label)
        });
        Progress {
            label,
            total,
            bar,
            last_log: Instant::now(),
        }
    }

    /// Moves the bar to `done`, or logs it if the last line is old enough.
    pub fn set(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        if self.last_log.elapsed() < LOG_EVERY {
            return;
        }
        self.last_log = Instant::now();
        match self.total {
            Some(total) if total > 0 => tracing::info!(
                percent = format!("{:.1}", done as f64 * 100.0 / total as f64),
                done,
                total,
                "{}",
                self.label
            ),
            _ => tracing::info!(done, "{}", self.label),
        }
    }

    /// Clears the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A reader that reports its position to a [`Progress`].
pub struct CountingReader<R> {
    inner: R,
    read: u64,
    progress: Progress,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R, progress: Progress) -> Self {
        CountingReader {
            inner,
            read: 0,
            progress,
        }
    }

    pub fn finish(self) {
        self.progress.finish();
    }
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.progress.set(self.read);
        Ok(n)
    }
}

//! What a process uses, read from Linux's `/proc`: CPU time, resident memory and open files,
//! for the generator itself and for the nodes it loads; and how much a directory holds on
//! disk. Each reader answers `None` where the file is missing or unreadable (another OS, or
//! the process has exited), so a figure is left blank rather than made up.

use std::path::Path;

/// CPU time (user + system) of `pid`, or of this process for `None`, in seconds. Linux
/// reports it in USER_HZ ticks, 100 a second on every architecture it supports.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resident memory of `pid` in bytes (`VmRSS` of its status file).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(proc_path(Some(pid), "status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// File descriptors `pid` holds open (sockets, database files, logs).
pub fn open_files(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(proc_path(Some(pid), "fd")).ok()?.count())
}

/// Bytes in the files under `dir`, at any depth; `None` if `dir` cannot be read. Files that
/// vanish while it walks (sled rewrites its segments) are skipped.
pub fn dir_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0;
    let mut pending = vec![std::fs::read_dir(dir).ok()?];
    while let Some(entries) = pending.pop() {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.extend(std::fs::read_dir(entry.path()).ok());
            } else {
                total += meta.len();
            }
        }
    }
    Some(total)
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = cpu_seconds(None).expect("/proc/self/stat on Linux");
        let until = Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_seconds(None).expect("/proc/self/stat on Linux");
        assert!(after > before, "{before} -> {after}");
    }

    #[test]
    fn another_process_is_read_by_its_pid() {
        let me = std::process::id();
        assert!(cpu_seconds(Some(me)).is_some());
        let rss = rss_bytes(me).expect("VmRSS on Linux");
        assert!(rss > 1024 * 1024, "{rss}");
        // Other tests open and close files meanwhile: only the one held here is certain.
        let dir = tempfile::tempdir().unwrap();
        let held = std::fs::File::create(dir.path().join("a")).unwrap();
        assert!(open_files(me).expect("/proc/<pid>/fd on Linux") >= 1);
        drop(held);
        assert_eq!(rss_bytes(u32::MAX), None);
    }

    #[test]
    fn a_directory_is_summed_at_every_depth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(dir.path()), Some(123));
        assert_eq!(dir_bytes(&dir.path().join("missing")), None);
    }
}

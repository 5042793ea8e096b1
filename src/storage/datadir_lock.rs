//! One node per data directory: `<datadir>/.lock`, held with `flock(2)` for the life of the
//! process and taken before the node key, the database or the cookie is touched, so a second
//! `timed` on the same directory stops with a message instead of sharing (and corrupting) the
//! database. The kernel drops the lock when the process ends, however it ends: a crash never
//! leaves a stale lock behind. The file holds the holder's pid, to name it in that message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = ".lock";
/// Most bytes read from a lock file (a pid and a newline).
const MAX_LOCK_BYTES: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data directory {} is in use by another timed process ({}); stop that node first, or \
         give this one its own --datadir",
        datadir.display(),
        pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "pid unknown".into())
    )]
    InUse { datadir: PathBuf, pid: Option<u32> },
    #[error("cannot lock the data directory with {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
}

impl DataDirLock {
    /// Takes the lock on `datadir` (which must exist), or says who holds it.
    pub fn acquire(datadir: &Path) -> Result<DataDirLock, LockError> {
        let path = datadir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock(2) on a descriptor this function owns; it touches no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                return Err(LockError::InUse {
                    datadir: datadir.to_path_buf(),
                    pid: holder_pid(&mut file),
                });
            }
            return Err(io(err));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { file })
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Still locked here: no one else can be writing their pid meanwhile.
        let _ = self.file.set_len(0);
    }
}

/// The pid the holder wrote, if it has written it yet.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(MAX_LOCK_BYTES).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts
        // just as another process would.
        match DataDirLock::acquire(dir.path()) {
            Err(LockError::InUse { datadir, pid }) => {
                assert_eq!(datadir, dir.path());
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        let again = DataDirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        drop(again);
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = DataDirLock::acquire(&missing).unwrap_err();
        assert!(
            matches!(&err, LockError::Io { path, .. } if path == &missing.join(LOCK_FILE)),
            "{err:?}"
        );
    }
}

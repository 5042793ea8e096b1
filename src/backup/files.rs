//! Writing a file so it appears whole or not at all, and staging a database in a temporary
//! directory beside its final place so installing it is one rename.

use super::{io_at, BackupError, Result};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Where the database lives inside a data directory.
pub const DB_DIR: &str = "db";

/// Writes `path` through `write`, into `<path>.partial` first, synced, then linked to `path`
/// (a hard link is created only if nothing is at `path`: an atomic no-replace, where a rename
/// would silently replace a file created meanwhile); refuses an existing `path`. On failure
/// the partial file is removed.
pub fn write_new_file<T>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T>,
) -> Result<T> {
    if path.exists() {
        return Err(BackupError::Exists(path.to_path_buf()));
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(io_at(&partial))?;
    let result = (|| {
        let mut out = BufWriter::new(file);
        let value = write(&mut out)?;
        let file = out.into_inner().map_err(|e| BackupError::Io {
            path: partial.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_at(&partial))?;
        match std::fs::hard_link(&partial, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists(path.to_path_buf()))
            }
            Err(e) => return Err(io_at(path)(e)),
        }
        let _ = std::fs::remove_file(&partial);
        sync_parent(path);
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Makes a rename durable (best effort: not every filesystem syncs directories).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// A database being built in `<datadir>/.restore-<pid>/db`, moved to `<datadir>/db` by
/// [`Staging::install`]; dropped without installing, it leaves the data directory as it was.
pub struct Staging {
    /// Held until the staging ends: no node may start on the directory meanwhile.
    _lock: crate::storage::DataDirLock,
    datadir: PathBuf,
    tmp: PathBuf,
    created_datadir: bool,
    /// Whether the lock file was there before: if not, a failed staging removes it too.
    lock_existed: bool,
    installed: bool,
}

impl Staging {
    /// Checks that `<datadir>/db` is absent or empty (or, with `force`, not in use) and
    /// makes the temporary directory.
    pub fn prepare(datadir: &Path, force: bool) -> Result<Staging> {
        let db = datadir.join(DB_DIR);
        // Anything at `db` but an empty directory counts as a database.
        let holds_data = db.exists() && !is_empty_dir(&db);
        if holds_data && !force {
            return Err(BackupError::TargetInUse(db));
        }
        let created_datadir = !datadir.exists();
        std::fs::create_dir_all(datadir).map_err(io_at(datadir))?;
        // The node's own lock: a running node keeps its directory, and none starts on it
        // while the restore builds.
        let lock_existed = datadir.join(crate::storage::LOCK_FILE).exists();
        let lock = match crate::storage::DataDirLock::acquire(datadir) {
            Ok(l) => l,
            Err(e) => {
                if created_datadir {
                    let _ = std::fs::remove_dir_all(datadir);
                }
                return Err(BackupError::Refused(e.to_string()));
            }
        };
        let tmp = datadir.join(format!(".restore-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
        }
        if let Err(e) = std::fs::create_dir(&tmp) {
            if created_datadir {
                let _ = std::fs::remove_dir(datadir);
            }
            return Err(BackupError::Io {
                path: tmp,
                source: e,
            });
        }
        Ok(Staging {
            _lock: lock,
            datadir: datadir.to_path_buf(),
            tmp,
            created_datadir,
            lock_existed,
            installed: false,
        })
    }

    /// Where to build the database.
    pub fn db_path(&self) -> PathBuf {
        self.tmp.join(DB_DIR)
    }

    /// Moves the built database into place; an existing one (only with `force`) is renamed
    /// to `db.replaced-<unix seconds>` rather than deleted. Returns the final path.
    pub fn install(mut self) -> Result<PathBuf> {
        let target = self.datadir.join(DB_DIR);
        if target.exists() {
            if is_empty_dir(&target) {
                std::fs::remove_dir(&target).map_err(io_at(&target))?;
            } else {
                let secs = crate::clock::wall_clock_ms() / 1000;
                let aside = self.datadir.join(format!("{DB_DIR}.replaced-{secs}"));
                std::fs::rename(&target, &aside).map_err(io_at(&aside))?;
                tracing::info!(old = %aside.display(), "the replaced database is kept");
            }
        }
        std::fs::rename(self.db_path(), &target).map_err(io_at(&target))?;
        sync_parent(&target);
        self.installed = true;
        let _ = std::fs::remove_dir_all(&self.tmp);
        Ok(target)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.installed {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
        if !self.lock_existed {
            let _ = std::fs::remove_file(self.datadir.join(crate::storage::LOCK_FILE));
        }
        if self.created_datadir {
            let _ = std::fs::remove_dir(&self.datadir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_nothing_and_an_existing_file_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let r: Result<()> = write_new_file(&path, |_| Err(BackupError::NoTip));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_new_file(&path, |w| {
            std::io::Write::write_all(w, b"one").map_err(io_at(&path))
        })
        .unwrap();
        let again = write_new_file(&path, |_| Ok(()));
        assert!(matches!(again, Err(BackupError::Exists(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        // A file that appears while the backup is written is kept, not replaced.
        let late = dir.path().join("late.bin");
        let raced = write_new_file(&late, |w| {
            std::fs::write(&late, b"someone else's").unwrap();
            std::io::Write::write_all(w, b"backup").map_err(io_at(&late))
        });
        assert!(matches!(raced, Err(BackupError::Exists(_))), "{raced:?}");
        assert_eq!(std::fs::read(&late).unwrap(), b"someone else's");
        assert_eq!(listing_len(dir.path()), 2, "no partial file is left");
    }

    fn listing_len(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn staging_dropped_leaves_the_directory_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh");
        let s = Staging::prepare(&fresh, false).unwrap();
        std::fs::create_dir_all(s.db_path()).unwrap();
        drop(s);
        assert!(!fresh.exists());

        let used = dir.path().join("used");
        std::fs::create_dir_all(used.join(DB_DIR)).unwrap();
        std::fs::write(used.join(DB_DIR).join("x"), b"data").unwrap();
        assert!(matches!(
            Staging::prepare(&used, false),
            Err(BackupError::TargetInUse(_))
        ));
    }
}

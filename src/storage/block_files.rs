//! Block bodies in append-only files beside the database; sled keeps where each one is.
//!
//! sled 0.34 keeps a value past a quarter of its 512 KiB segment (a loaded block) as a blob
//! file, and charges its page cache the blob *pointer's* size: such a block stays in memory
//! until the process ends, whatever the cache capacity (measured: RSS grows one for one with
//! the blocks written). Its log-structured segments also rewrite a leaf of several large
//! blocks on every insert. So bodies live here, as Bitcoin Core keeps its `blk*.dat`:
//! `blocks/blk00000.dat`, … each up to [`MAX_FILE_BYTES`], records `length ‖ checksum ‖ block`
//! appended and never rewritten. The `blocks` tree maps a block hash to its [`Location`].
//!
//! **Durability.** [`BlockFiles::append`] syncs the file (and, for a new file, its directory)
//! before it returns, and the commit that names the location comes after: a location the
//! database holds always points at synced bytes. A crash between the two leaves unreferenced
//! bytes at a file's end, which later appends simply follow.

use super::layer1_log::checksum;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Subdirectory of the database holding the files.
pub const DIR_NAME: &str = "blocks";
/// A file past this size is closed and the next block starts a new one.
pub const MAX_FILE_BYTES: u64 = 128 << 20;
/// Length ‖ checksum before each block.
const RECORD_HEADER: u64 = 8;
/// The encoded length of a [`Location`].
pub const LOCATION_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum BlockFileError {
    #[error("block file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("block file {path} at offset {offset}: {reason}")]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("a block of {0} bytes is too big for a block file record")]
    TooBig(usize),
    #[error("block file numbers are used up in {0}")]
    Exhausted(PathBuf),
}

type Result<T> = std::result::Result<T, BlockFileError>;

/// Where a block's bytes are: file number, offset of its record, length of the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: u32,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub fn to_bytes(self) -> [u8; LOCATION_LEN] {
        let mut b = [0u8; LOCATION_LEN];
        b[..4].copy_from_slice(&self.file.to_be_bytes());
        b[4..12].copy_from_slice(&self.offset.to_be_bytes());
        b[12..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// `None` unless `raw` is exactly one encoded location.
    pub fn from_bytes(raw: &[u8]) -> Option<Location> {
        if raw.len() != LOCATION_LEN {
            return None;
        }
        Some(Location {
            file: u32::from_be_bytes(raw[..4].try_into().ok()?),
            offset: u64::from_be_bytes(raw[4..12].try_into().ok()?),
            len: u32::from_be_bytes(raw[12..].try_into().ok()?),
        })
    }
}

struct Tail {
    file_no: u32,
    /// Open for writing (and reading); `None` until the first append after open.
    file: Option<Arc<File>>,
    len: u64,
}

pub struct BlockFiles {
    dir: PathBuf,
    max_file_bytes: u64,
    tail: Mutex<Tail>,
}

impl BlockFiles {
    /// Opens the files under `db_path`, creating the directory if needed. Appends go after
    /// the newest file's end (past any bytes a crash left unreferenced).
    pub fn open(db_path: &Path) -> Result<BlockFiles> {
        Self::open_with_limit(db_path, MAX_FILE_BYTES)
    }

    fn open_with_limit(db_path: &Path, max_file_bytes: u64) -> Result<BlockFiles> {
        let dir = db_path.join(DIR_NAME);
        let io = |source| BlockFileError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // A file created before a crash may not have had its name synced: sync the names now,
        // before anything new points into them.
        for d in [dir.clone(), db_path.to_path_buf()] {
            File::open(&d)
                .and_then(|f| f.sync_all())
                .map_err(|source| BlockFileError::Io { path: d, source })?;
        }
        let mut newest = None;
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            if let Some(n) = file_number(&entry.file_name().to_string_lossy()) {
                newest = newest.max(Some(n));
            }
        }
        let (file_no, len) = match newest {
            None => (0, 0),
            Some(n) => {
                let path = dir.join(file_name(n));
                let len = std::fs::metadata(&path)
                    .map_err(|source| BlockFileError::Io { path, source })?
                    .len();
                (n, len)
            }
        };
        Ok(BlockFiles {
            dir,
            max_file_bytes,
            tail: Mutex::new(Tail {
                file_no,
                file: None,
                len,
            }),
        })
    }

    /// Appends each block, syncs, and returns their locations in order.
    pub fn append(&self, blocks: &[&[u8]]) -> Result<Vec<Location>> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let mut locations = Vec::with_capacity(blocks.len());
        let mut touched: Vec<Arc<File>> = Vec::new();
        for bytes in blocks {
            let len =
                u32::try_from(bytes.len()).map_err(|_| BlockFileError::TooBig(bytes.len()))?;
            if tail.len >= self.max_file_bytes {
                tail.file_no = tail
                    .file_no
                    .checked_add(1)
                    .ok_or_else(|| BlockFileError::Exhausted(self.dir.clone()))?;
                tail.file = None;
                tail.len = 0;
            }
            let file = match &tail.file {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(self.open_for_append(tail.file_no)?);
                    tail.file = Some(f.clone());
                    f
                }
            };
            let mut record = Vec::with_capacity(RECORD_HEADER as usize + bytes.len());
            record.extend_from_slice(&len.to_le_bytes());
            record.extend_from_slice(&checksum(bytes));
            record.extend_from_slice(bytes);
            file.write_all_at(&record, tail.len)
                .map_err(|source| self.io_error(tail.file_no, source))?;
            locations.push(Location {
                file: tail.file_no,
                offset: tail.len,
                len,
            });
            tail.len += record.len() as u64;
            if !touched.iter().any(|f| Arc::ptr_eq(f, &file)) {
                touched.push(file);
            }
        }
        for file in touched {
            file.sync_data()
                .map_err(|source| self.io_error(tail.file_no, source))?;
        }
        Ok(locations)
    }

    /// The block bytes at `at`, checked against their record's length and checksum.
    pub fn read(&self, at: Location) -> Result<Vec<u8>> {
        let damaged = |reason: String| BlockFileError::Damaged {
            path: self.dir.join(file_name(at.file)),
            offset: at.offset,
            reason,
        };
        let file = match self.reader(at.file) {
            Err(BlockFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(damaged("the file is missing".into()))
            }
            other => other?,
        };
        // The location comes from the database, which may be damaged too: never allocate
        // more than the file holds.
        let size = file
            .metadata()
            .map_err(|e| damaged(format!("cannot read the file's size: {e}")))?
            .len();
        if at.offset.saturating_add(RECORD_HEADER + u64::from(at.len)) > size {
            return Err(damaged(format!(
                "the record ({} bytes) runs past the end of the file ({size} bytes)",
                at.len
            )));
        }
        let mut header = [0u8; RECORD_HEADER as usize];
        file.read_exact_at(&mut header, at.offset)
            .map_err(|e| damaged(format!("cannot read the record header: {e}")))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if len != at.len {
            return Err(damaged(format!(
                "the record holds {len} bytes, the index says {}",
                at.len
            )));
        }
        let mut bytes = vec![0u8; at.len as usize];
        file.read_exact_at(&mut bytes, at.offset + RECORD_HEADER)
            .map_err(|e| damaged(format!("cannot read the block: {e}")))?;
        if checksum(&bytes) != header[4..] {
            return Err(damaged("the block's checksum does not match".into()));
        }
        Ok(bytes)
    }

    /// Bytes in every block file.
    pub fn size_on_disk(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| file_number(&e.file_name().to_string_lossy()).is_some())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// A file opened for one read (a handle kept per file would hold a descriptor for every
    /// file a full sync or a backup ever read).
    fn reader(&self, n: u32) -> Result<File> {
        let path = self.dir.join(file_name(n));
        File::open(&path).map_err(|source| BlockFileError::Io { path, source })
    }

    fn open_for_append(&self, n: u32) -> Result<File> {
        let path = self.dir.join(file_name(n));
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| BlockFileError::Io {
                path: path.clone(),
                source,
            })?;
        if !existed {
            // The new name must survive a power cut as well as the bytes.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| BlockFileError::Io {
                    path: self.dir.clone(),
                    source,
                })?;
        }
        Ok(file)
    }

    fn io_error(&self, n: u32, source: std::io::Error) -> BlockFileError {
        BlockFileError::Io {
            path: self.dir.join(file_name(n)),
            source,
        }
    }
}

/// The name of block file `n` (`blk00000.dat`, ...).
pub fn file_name(n: u32) -> String {
    format!("blk{n:05}.dat")
}

fn file_number(name: &str) -> Option<u32> {
    name.strip_prefix("blk")?.strip_suffix(".dat")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_read_back_across_files_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        const LIMIT: u64 = 1 << 16;
        let files = BlockFiles::open_with_limit(dir.path(), LIMIT).unwrap();
        let big = vec![3u8; (LIMIT / 2 + 1) as usize];
        let a = files.append(&[b"first", &big]).unwrap();
        let b = files.append(&[&big, b"last"]).unwrap();
        assert_eq!(a[0].file, 0);
        assert_eq!(b[1].file, 1, "a full file is followed by a new one");
        drop(files);
        let files = BlockFiles::open_with_limit(dir.path(), LIMIT).unwrap();
        assert_eq!(files.read(a[0]).unwrap(), b"first");
        assert_eq!(files.read(b[0]).unwrap(), big);
        assert_eq!(files.read(b[1]).unwrap(), b"last");
        let c = files.append(&[b"after reopen"]).unwrap();
        assert_eq!(c[0].file, 1);
        assert!(c[0].offset > b[1].offset, "appends go after what is there");
        assert_eq!(Location::from_bytes(&c[0].to_bytes()), Some(c[0]));
        assert!(files.size_on_disk() > LIMIT);
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path()).unwrap();
        let at = files.append(&[b"a block body"]).unwrap()[0];
        let path = dir.path().join(DIR_NAME).join("blk00000.dat");
        let mut raw = std::fs::read(&path).unwrap();
        raw[RECORD_HEADER as usize + 2] ^= 1;
        std::fs::write(&path, raw).unwrap();
        let files = BlockFiles::open(dir.path()).unwrap();
        let err = files.read(at).unwrap_err().to_string();
        assert!(
            err.contains("blk00000.dat") && err.contains("checksum"),
            "{err}"
        );
        let wrong = Location { len: 3, ..at };
        assert!(files
            .read(wrong)
            .unwrap_err()
            .to_string()
            .contains("index says"));
        let missing = Location { file: 9, ..at };
        assert!(files
            .read(missing)
            .unwrap_err()
            .to_string()
            .contains("missing"));
        let huge = Location {
            len: u32::MAX,
            ..at
        };
        assert!(files
            .read(huge)
            .unwrap_err()
            .to_string()
            .contains("past the end"));
    }
}

//! What a disk fault means to the operator: which failures are the disk's (full, read-only,
//! not writable, damaged), the exit status that tells systemd whether a restart can help, and
//! the line that says what to do.
//!
//! Also the clean-stop mark: `<datadir>/db/clean-stop`, the tip a cleanly stopped node had
//! flushed. sled recovers a damaged or truncated log file by keeping what it can read and
//! silently dropping the rest, so a damaged database opens at an older height, or empty; a
//! masternode would then have forgotten locks it voted on. A tip below the mark (or another
//! block at its height) can only be lost flushed data, and the node refuses to start. The
//! mark lives in the database's directory so it moves with it (a restore sets the old
//! database aside with its mark; a resync deletes both).

use super::NodeError;
use crate::storage::{Storage, StorageError};
use crate::types::BlockHash;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The clean-stop mark's file name inside the database directory.
pub const CLEAN_STOP_FILE: &str = "clean-stop";
/// Exit status when a restart cannot help until the operator acts (read-only or damaged
/// data): sysexits' EX_CONFIG, the status the systemd unit does not restart on.
pub const EXIT_NEEDS_OPERATOR: u8 = 78;
/// Exit status when the disk filled up under the node: sysexits' EX_TEMPFAIL. systemd
/// restarts the node (Restart=on-failure); the disk guard keeps a restarted node idle until
/// space returns.
pub const EXIT_DISK_FULL: u8 = 75;

/// A data-directory problem the operator must fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    Full,
    ReadOnly,
    NotWritable,
    Damaged,
}

impl DiskFault {
    /// The process's exit status for this fault.
    pub fn exit_code(self) -> u8 {
        match self {
            DiskFault::Full => EXIT_DISK_FULL,
            DiskFault::ReadOnly | DiskFault::NotWritable | DiskFault::Damaged => {
                EXIT_NEEDS_OPERATOR
            }
        }
    }

    /// What the operator should do, naming the data directory.
    pub fn remedy(self, datadir: &Path) -> String {
        let d = datadir.display();
        match self {
            DiskFault::Full => format!(
                "the disk holding {d} is full. Free some space there (or raise \
                 min_free_disk_mb so the node pauses earlier); the node then starts again \
                 (under systemd it is restarted by itself)"
            ),
            DiskFault::ReadOnly => format!(
                "{d} is on a read-only filesystem. Remount it read-write (check the kernel log: \
                 a filesystem turns read-only after I/O errors), or give timed another \
                 --datadir"
            ),
            DiskFault::NotWritable => format!(
                "timed may not write in {d}. Give the user timed runs as ownership of it \
                 (chown -R timed:timed {d}), or give timed another --datadir"
            ),
            DiskFault::Damaged => format!(
                "the database in {d}/db is damaged. Check the disk first (dmesg, smartctl), \
                 then restore the newest backup (`timed restore --from FILE --force` keeps \
                 the damaged copy as db.replaced-<time>), or move {d}/db away and start \
                 again to resync from peers"
            ),
        }
    }
}

/// The disk fault behind a node's failure, if it is one.
pub fn classify(e: &NodeError) -> Option<DiskFault> {
    // A corrupt record is reported by storage itself, under wrappers that may hide it from
    // the source chain (`#[error(transparent)]` forwards to the inner error's source).
    let storage = match e {
        NodeError::Storage(s) => Some(s),
        NodeError::Ledger(crate::ledger::LedgerError::Storage(s)) => Some(s),
        NodeError::Consensus(crate::consensus::driver::DriverError::Storage(s)) => Some(s),
        _ => None,
    };
    if matches!(storage, Some(StorageError::Corrupt { .. })) || matches!(e, NodeError::Lost(_)) {
        return Some(DiskFault::Damaged);
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(fault) = fault_of(err) {
            return Some(fault);
        }
        next = err.source();
    }
    None
}

/// The fault one error in a chain names by itself (an I/O error's kind, sled's verdict).
fn fault_of(err: &(dyn std::error::Error + 'static)) -> Option<DiskFault> {
    let io = if let Some(io) = err.downcast_ref::<std::io::Error>() {
        io
    } else if let Some(s) = err.downcast_ref::<sled::Error>() {
        match s {
            sled::Error::Io(io) => io,
            sled::Error::Corruption { .. } => return Some(DiskFault::Damaged),
            _ => return None,
        }
    } else {
        return match err.downcast_ref::<StorageError>() {
            Some(StorageError::Corrupt { .. }) => Some(DiskFault::Damaged),
            _ => None,
        };
    };
    match io.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some(DiskFault::Full),
        ErrorKind::ReadOnlyFilesystem => Some(DiskFault::ReadOnly),
        ErrorKind::PermissionDenied => Some(DiskFault::NotWritable),
        _ => None,
    }
}

/// The database lost data it had flushed: found below the clean-stop mark.
#[derive(Debug, thiserror::Error)]
#[error(
    "the database in {} lost data: it held block {} ({}) when the node last stopped cleanly, \
     and now holds {}",
    db.display(), marked, marked_hash, found
)]
pub struct LostData {
    pub db: PathBuf,
    pub marked: u64,
    pub marked_hash: BlockHash,
    /// What the database holds now, in words.
    pub found: String,
}

/// Refuses a database that holds less than its clean-stop mark says it had. A missing or
/// unreadable mark checks nothing (a first start, or a node that never stopped cleanly).
pub fn check_clean_stop(db: &Path, storage: &Storage) -> Result<(), NodeError> {
    let Ok(text) = std::fs::read_to_string(db.join(CLEAN_STOP_FILE)) else {
        return Ok(());
    };
    let Some((height, hash)) = parse_mark(&text) else {
        tracing::warn!(path = %db.join(CLEAN_STOP_FILE).display(), "ignoring an unreadable clean-stop mark");
        return Ok(());
    };
    let found = match storage.tip()? {
        None => "no chain at all".to_string(),
        Some(tip) if tip.height < height => format!("only blocks up to {}", tip.height),
        Some(_) => match storage.block_hash_at(height)? {
            Some(h) if h == hash => return Ok(()),
            Some(h) => format!("another block ({h}) at that height"),
            None => format!("no block at height {height}"),
        },
    };
    Err(NodeError::Lost(LostData {
        db: db.to_path_buf(),
        marked: height,
        marked_hash: hash,
        found,
    }))
}

/// Writes the clean-stop mark for the tip of a flushed database (write, sync, rename).
pub fn write_clean_stop(db: &Path, storage: &Storage) -> std::io::Result<()> {
    use std::io::Write;
    let Some(tip) = storage.tip().map_err(std::io::Error::other)? else {
        return Ok(());
    };
    let tmp = db.join(format!("{CLEAN_STOP_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{} {}", tip.height, tip.hash)?;
    f.sync_all()?;
    std::fs::rename(&tmp, db.join(CLEAN_STOP_FILE))?;
    std::fs::File::open(db)?.sync_all()
}

/// `height hash`, as [`write_clean_stop`] writes it.
fn parse_mark(text: &str) -> Option<(u64, BlockHash)> {
    let mut words = text.split_whitespace();
    let height = words.next()?.parse().ok()?;
    let hash = BlockHash::from_hex(words.next()?).ok()?;
    Some((height, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: ErrorKind) -> NodeError {
        NodeError::DataDir {
            path: PathBuf::from("/d"),
            source: std::io::Error::from(kind),
        }
    }

    #[test]
    fn faults_are_told_apart_through_wrappers() {
        assert_eq!(classify(&io(ErrorKind::StorageFull)), Some(DiskFault::Full));
        assert_eq!(
            classify(&io(ErrorKind::ReadOnlyFilesystem)),
            Some(DiskFault::ReadOnly)
        );
        assert_eq!(
            classify(&io(ErrorKind::PermissionDenied)),
            Some(DiskFault::NotWritable)
        );
        assert_eq!(classify(&io(ErrorKind::ConnectionReset)), None);
        // sled's error inside storage inside the consensus driver (a failed flush).
        let full = sled::Error::Io(std::io::Error::from(ErrorKind::StorageFull));
        let driver = crate::consensus::driver::DriverError::Storage(StorageError::Sled(full));
        let e = NodeError::Consensus(driver);
        assert_eq!(classify(&e), Some(DiskFault::Full));
        assert_eq!(classify(&e).map(DiskFault::exit_code), Some(75));
        let corrupt = StorageError::Corrupt {
            tree: "meta",
            key: "tip".into(),
            reason: "bad".into(),
        };
        let e = NodeError::Consensus(crate::consensus::driver::DriverError::Storage(corrupt));
        assert_eq!(classify(&e), Some(DiskFault::Damaged));
        assert_eq!(classify(&e).map(DiskFault::exit_code), Some(78));
        assert_eq!(classify(&NodeError::ConsensusEnded), None);
    }

    #[test]
    fn the_mark_reads_back_what_was_written() {
        let hash = BlockHash::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(parse_mark(&format!("42 {hash}\n")), Some((42, hash)));
        assert_eq!(parse_mark("42"), None);
        assert_eq!(parse_mark("x y"), None);
    }
}

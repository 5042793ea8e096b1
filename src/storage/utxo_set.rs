//! The confirmed UTXO set (`utxos`): held whole in memory, made durable by the log's redo and
//! a set file written now and then, as Bitcoin Core keeps its coins cache in front of a flush.
//!
//! In sled each confirmed output cost a write when its block created it and another when a
//! block spent it, and sled copies the leaf it changes on every write: a few microseconds a
//! key, most of a busy node's storage time (BENCHMARKS.md, stop 40). The set is in memory
//! anyway (the ledger reads nothing else), so here a block's outputs are map updates, durable
//! with the block's log frame like every other write of its commit (see `layer1_log`).
//!
//! ```text
//! commit ─► log frame (redo: utxo puts and removals, with the block) ─► map, at once
//! checkpoint, once the redo since the file is half the set ─► utxos-<seq>.set:
//!            the map as of commit <seq>, written beside, synced, renamed;
//!            the log may then drop the redo the file covers
//! open ─► the newest file the log's commits reach ─► the redo after it, in order
//! ```
//!
//! **Which file counts.** A file names the commit it is the state after. A file is written
//! only for a commit already made (a checkpoint) or, for a commit too big for a log frame (a
//! fast-sync snapshot's set), just before that commit's small frame: if a crash loses the
//! frame, the file names a commit the log never made, so the open passes it over, deletes it,
//! and takes the one before, with the redo the log kept since. The log keeps every commit's
//! redo until a file covers it; older files go once a newer one is covered by a synced log
//! marker.
//!
//! ```text
//! file: magic ‖ version ‖ seq ‖ records ‖ (key len u16 ‖ key ‖ value len u16 ‖ value)* ‖ checksum
//! ```

use super::layer1_log::checksum;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

const MAGIC: &[u8; 8] = b"TIMEDSET";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8;
/// A file is due once the redo since the last one is at least half its size (each output is
/// then written about twice, and an open replays at most half a set's worth of redo)...
const DUE_RATIO: u64 = 2;
/// ...but not before this much (a small set would be rewritten every few commits)...
const MIN_DUE_BYTES: u64 = 8 << 20;
/// ...nor later than this (the log holds the redo in memory until a file covers it).
const MAX_DUE_BYTES: u64 = 64 << 20;
/// What a write costs in the redo count besides its key and value (a log op's framing).
const OP_OVERHEAD: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("UTXO set files, at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "UTXO set file {path} is damaged: {reason}. Restore the data directory from a backup \
         (`timed restore`), or move it aside and let the node sync again"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("a UTXO record with a {0}-byte key or value does not fit a set file")]
    TooLong(usize),
    #[error(
        "the UTXO set in {dir} is incomplete: {reason}. Restore the data directory from a \
         backup (`timed restore`), or move it aside and let the node sync again"
    )]
    Missing { dir: PathBuf, reason: String },
}

type Result<T> = std::result::Result<T, SetError>;

type Map = BTreeMap<Box<[u8]>, Box<[u8]>>;

/// One write: key, and the new value or `None` to remove it.
pub(super) type SetOp<'a> = (&'a [u8], Option<&'a [u8]>);

pub(super) struct UtxoSet {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    map: Map,
    /// The newest commit applied to the map.
    seq: u64,
    /// The commit the newest set file is the state after (`None`: no file yet).
    file_seq: Option<u64>,
    file_bytes: u64,
    /// Redo bytes applied since the newest file.
    dirty: u64,
    /// Bulk loads (a restore) applied without redo; what the newest file covers of them.
    unlogged: u64,
    filed_unlogged: u64,
}

/// A set built for a commit too big for a log frame: its file is written; the map goes in
/// once the commit's frame is durable (see [`UtxoSet::install`]).
pub(super) struct Prepared {
    map: Map,
    seq: u64,
    bytes: u64,
}

impl UtxoSet {
    /// An empty set for the database in `dir`; [`load`](Self::load) reads its files.
    pub(super) fn new(dir: &Path) -> UtxoSet {
        UtxoSet {
            dir: dir.to_path_buf(),
            state: Mutex::new(State::default()),
        }
    }

    /// Replaces the map with the newest set file whose commit is at most `last_commit` (the
    /// log's newest), deleting one written for the commit after it (see the module docs). The
    /// caller then applies the redo the log kept after it; the log must not have dropped any
    /// group past the file (`dropped_through`): else the set would silently lack outputs, and
    /// the open is refused.
    pub(super) fn load(&self, last_commit: u64, dropped_through: u64) -> Result<()> {
        let mut usable: Option<(u64, PathBuf)> = None;
        let mut deleted = false;
        for (seq, path) in self.files(true)? {
            if seq == last_commit.saturating_add(1) {
                tracing::warn!(path = %path.display(), commit = seq, "a UTXO set file written for a commit the log does not hold (a crash cut the commit short) is deleted");
                std::fs::remove_file(&path).map_err(io(&path))?;
                deleted = true;
            } else if seq > last_commit {
                // Only a cut-short commit leaves a file past the log's end, and only one past
                // it: this log is not the one the file was written with.
                return Err(SetError::Missing {
                    dir: self.dir.clone(),
                    reason: format!(
                        "{} is the state after commit {seq}, but the layer-1 log ends at commit \
                         {last_commit} (a log lost or replaced?)",
                        path.display()
                    ),
                });
            } else if usable.as_ref().is_none_or(|(s, _)| seq > *s) {
                usable = Some((seq, path));
            }
        }
        if deleted {
            // Durable before a new commit takes its number, so a power cut cannot bring the
            // file back to stand for that one.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))?;
        }
        let file_seq = usable.as_ref().map_or(0, |(s, _)| *s);
        if file_seq < dropped_through {
            return Err(SetError::Missing {
                dir: self.dir.clone(),
                reason: match &usable {
                    Some((_, path)) => format!(
                        "the newest set file, {}, is the state after commit {file_seq}, and the \
                         layer-1 log no longer holds the commits up to {dropped_through}",
                        path.display()
                    ),
                    None => format!(
                        "no set file (utxos-*.set), and the layer-1 log no longer holds the \
                         commits up to {dropped_through}"
                    ),
                },
            });
        }
        let mut fresh = State::default();
        if let Some((seq, path)) = usable {
            let raw = std::fs::read(&path).map_err(io(&path))?;
            let (file_seq, map) = decode(&raw).map_err(|reason| SetError::Damaged {
                path: path.clone(),
                reason,
            })?;
            if file_seq != seq {
                return Err(SetError::Damaged {
                    path,
                    reason: format!("it names commit {file_seq}, its file name {seq}"),
                });
            }
            fresh = State {
                map,
                seq,
                file_seq: Some(seq),
                file_bytes: raw.len() as u64,
                ..State::default()
            };
        }
        *self.lock() = fresh;
        Ok(())
    }

    /// Applies commit `seq`'s writes (durable in the log's redo).
    pub(super) fn apply(&self, seq: u64, ops: &[SetOp<'_>]) {
        let mut state = self.lock();
        for (key, value) in ops {
            state.dirty += OP_OVERHEAD + (key.len() + value.map_or(0, <[u8]>::len)) as u64;
            put(&mut state.map, key, *value);
        }
        state.seq = state.seq.max(seq);
    }

    /// Applies writes no redo holds (a bulk load): the next [`checkpoint`](Self::checkpoint)
    /// writes a file.
    pub(super) fn apply_unlogged(&self, ops: &[SetOp<'_>]) {
        let mut state = self.lock();
        for (key, value) in ops {
            put(&mut state.map, key, *value);
        }
        state.unlogged += 1;
    }

    /// The newest commit applied.
    pub(super) fn seq(&self) -> u64 {
        self.lock().seq
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().map.get(key).map(|v| v.to_vec())
    }

    pub(super) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Calls `f` with every record in key order (the set stays locked meanwhile: commits wait).
    pub(super) fn for_each<E>(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let state = self.lock();
        for (k, v) in &state.map {
            f(k, v)?;
        }
        Ok(())
    }

    /// Writes a set file if one is due (or `force`), and returns the newest commit whose redo
    /// the log no longer needs for the set: the newest file's.
    ///
    /// The map is encoded under the lock (commits wait for that, ≈ 100 ns a record) and
    /// written, synced and renamed after it.
    pub(super) fn checkpoint(&self, force: bool) -> Result<u64> {
        let (seq, encoded, dirty, unlogged) = {
            let state = self.lock();
            let due_at = (state.file_bytes / DUE_RATIO).clamp(MIN_DUE_BYTES, MAX_DUE_BYTES);
            let unfiled = state.unlogged != state.filed_unlogged;
            if !(force || unfiled || state.dirty >= due_at) {
                return Ok(covered(&state));
            }
            let encoded = encode(state.seq, &state.map)?;
            (state.seq, encoded, state.dirty, state.unlogged)
        };
        self.write_file(seq, &encoded)?;
        let mut state = self.lock();
        // A snapshot's set may have come in meanwhile, with a newer file of its own.
        if state.file_seq.is_none_or(|f| f <= seq) {
            state.file_seq = Some(seq);
            state.file_bytes = encoded.len() as u64;
            state.dirty = state.dirty.saturating_sub(dirty);
            state.filed_unlogged = unlogged;
        }
        tracing::debug!(
            commit = seq,
            outputs = state.map.len(),
            bytes = encoded.len(),
            "wrote the UTXO set file"
        );
        Ok(covered(&state))
    }

    /// The newest commit whose redo the log no longer needs for the set (see
    /// [`checkpoint`](Self::checkpoint)), without writing a file.
    pub(super) fn covered(&self) -> u64 {
        covered(&self.lock())
    }

    /// Builds the set `ops` leave and writes its file as the state after commit `seq`, which
    /// the caller makes next (see the module docs). The map is untouched until
    /// [`install`](Self::install).
    pub(super) fn prepare(&self, seq: u64, ops: &[SetOp<'_>]) -> Result<Prepared> {
        let mut map = self.lock().map.clone();
        for (key, value) in ops {
            put(&mut map, key, *value);
        }
        let encoded = encode(seq, &map)?;
        self.write_file(seq, &encoded)?;
        Ok(Prepared {
            map,
            seq,
            bytes: encoded.len() as u64,
        })
    }

    /// Takes a prepared set once its commit is durable.
    pub(super) fn install(&self, prepared: Prepared) {
        let mut state = self.lock();
        state.map = prepared.map;
        state.seq = state.seq.max(prepared.seq);
        state.file_seq = Some(prepared.seq);
        state.file_bytes = prepared.bytes;
        state.dirty = 0;
        state.filed_unlogged = state.unlogged;
    }

    /// Deletes the files older than the newest whose commit is at most `durable` (a commit
    /// the log has synced): that one is what an open would load.
    pub(super) fn remove_older_files(&self, durable: u64) -> Result<()> {
        let files = self.files(false)?;
        let Some(newest) = files
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| *s <= durable)
            .max()
        else {
            return Ok(());
        };
        for (seq, path) in files {
            if seq < newest {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    /// Bytes of the newest file.
    pub(super) fn file_bytes(&self) -> u64 {
        self.lock().file_bytes
    }

    /// The set files and the commits they stand for; `clean`: also delete the writes a
    /// crash cut short (at open only: later, one may be in progress).
    fn files(&self, clean: bool) -> Result<Vec<(u64, PathBuf)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(seq) = name
                .strip_prefix("utxos-")
                .and_then(|n| n.strip_suffix(".set"))
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            {
                found.push((seq, path));
            } else if clean && name.starts_with("utxos-") && name.ends_with(".set.tmp") {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(found)
    }

    fn write_file(&self, seq: u64, encoded: &[u8]) -> Result<()> {
        let path = self.dir.join(format!("utxos-{seq:016x}.set"));
        let tmp = self.dir.join(format!("utxos-{seq:016x}.set.tmp"));
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(encoded)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| File::open(&self.dir)?.sync_all())
            .map_err(io(&path))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is one whole step under the lock: a panic elsewhere leaves it valid.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// See [`UtxoSet::checkpoint`]. Never past the newest file, even when nothing changed since:
/// an open checks that the log dropped nothing its file lacks, and cannot tell that case apart
/// (the log forgets groups with no set writes anyway, see `Layer1Log::checkpoint`).
fn covered(state: &State) -> u64 {
    state.file_seq.unwrap_or(0)
}

fn put(map: &mut Map, key: &[u8], value: Option<&[u8]>) {
    match value {
        Some(v) => {
            map.insert(key.into(), v.into());
        }
        None => {
            map.remove(key);
        }
    }
}

fn encode(seq: u64, map: &Map) -> Result<Vec<u8>> {
    let body: usize = map.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (k, v) in map {
        for part in [k, v] {
            let len = u16::try_from(part.len()).map_err(|_| SetError::TooLong(part.len()))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

fn decode(raw: &[u8]) -> std::result::Result<(u64, Map), String> {
    let body_len = raw
        .len()
        .checked_sub(4)
        .filter(|n| *n >= HEADER_LEN)
        .ok_or_else(|| format!("{} bytes is shorter than a set file's header", raw.len()))?;
    let (body, sum) = raw.split_at(body_len);
    if checksum(body) != sum {
        return Err("its checksum does not match its contents".into());
    }
    if &body[..8] != MAGIC {
        return Err("it does not start as a set file".into());
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if u32_at(8) != VERSION {
        return Err(format!(
            "version {} (this timed reads {VERSION})",
            u32_at(8)
        ));
    }
    let seq = u64_at(12);
    let records = u64_at(20);
    let mut map = Map::new();
    let mut p = &body[HEADER_LEN..];
    let mut take = || -> Option<&[u8]> {
        let len = usize::from(u16::from_le_bytes([*p.first()?, *p.get(1)?]));
        let part = p.get(2..2 + len)?;
        p = &p[2 + len..];
        Some(part)
    };
    for i in 0..records {
        let (Some(k), Some(v)) = (take(), take()) else {
            return Err(format!("record {i} of {records} is cut short"));
        };
        map.insert(k.into(), v.into());
    }
    if !p.is_empty() {
        return Err(format!("{} bytes follow its last record", p.len()));
    }
    Ok((seq, map))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetError + '_ {
    move |source| SetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Vec<u8> {
        let mut k = vec![0u8; 36];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    }

    #[test]
    fn a_file_brings_back_the_set_it_was_written_from() {
        let dir = tempfile::tempdir().unwrap();
        let set = UtxoSet::new(dir.path());
        let (k1, k2) = (key(1), key(2));
        set.apply(3, &[(&k1, Some(b"one")), (&k2, Some(b"two"))]);
        set.apply(4, &[(&k1, None)]);
        assert_eq!(
            set.checkpoint(true).unwrap(),
            4,
            "a fresh file covers everything"
        );
        let again = UtxoSet::new(dir.path());
        again.load(4, 4).unwrap();
        assert_eq!(again.seq(), 4);
        assert_eq!(again.len(), 1);
        assert_eq!(again.get(&k2).as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn a_file_for_a_commit_the_log_never_made_is_passed_over_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let set = UtxoSet::new(dir.path());
        let k = key(1);
        set.apply(2, &[(&k, Some(b"old"))]);
        set.checkpoint(true).unwrap();
        let prepared = set.prepare(3, &[(&k, Some(b"new"))]).unwrap();
        assert_eq!(
            set.get(&k).as_deref(),
            Some(&b"old"[..]),
            "not installed yet"
        );
        drop(prepared);
        // The log ends at commit 2: the file of commit 3 goes, the one of commit 2 counts.
        let after = UtxoSet::new(dir.path());
        after.load(2, 2).unwrap();
        assert_eq!(after.get(&k).as_deref(), Some(&b"old"[..]));
        assert_eq!(after.files(false).unwrap().len(), 1);
        // Had the commit landed, its file would count.
        let prepared = set.prepare(3, &[(&k, Some(b"new"))]).unwrap();
        set.install(prepared);
        set.remove_older_files(2).unwrap();
        assert_eq!(
            set.files(false).unwrap().len(),
            2,
            "commit 3 not synced yet: both stay"
        );
        set.remove_older_files(3).unwrap();
        let after = UtxoSet::new(dir.path());
        after.load(3, 3).unwrap();
        assert_eq!(after.get(&k).as_deref(), Some(&b"new"[..]));
        assert_eq!(after.files(false).unwrap().len(), 1);
        // A file further past the log's end, or a log that dropped commits no file holds:
        // refused, not an empty set.
        let msg = UtxoSet::new(dir.path()).load(1, 0).unwrap_err().to_string();
        assert!(
            msg.contains("incomplete") && msg.contains("ends at commit 1"),
            "{msg}"
        );
        let msg = UtxoSet::new(dir.path()).load(9, 5).unwrap_err().to_string();
        assert!(msg.contains("no longer holds the commits up to 5"), "{msg}");
    }

    #[test]
    fn changes_since_the_file_keep_the_log_from_dropping_their_redo() {
        let dir = tempfile::tempdir().unwrap();
        let set = UtxoSet::new(dir.path());
        let k = key(1);
        set.apply(1, &[(&k, Some(b"v"))]);
        assert_eq!(
            set.checkpoint(false).unwrap(),
            0,
            "no file yet, a change to keep"
        );
        set.checkpoint(true).unwrap();
        set.apply(2, &[]);
        assert_eq!(set.checkpoint(false).unwrap(), 1, "the file's commit");
        set.apply(3, &[(&k, None)]);
        assert_eq!(
            set.checkpoint(false).unwrap(),
            1,
            "back to the file's commit"
        );
        set.apply_unlogged(&[(&k, Some(b"w"))]);
        assert_eq!(
            set.checkpoint(false).unwrap(),
            3,
            "a bulk load forces a file"
        );
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let set = UtxoSet::new(dir.path());
        let k = key(1);
        set.apply(1, &[(&k, Some(b"value"))]);
        set.checkpoint(true).unwrap();
        let (_, path) = set.files(false).unwrap().pop().unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        let at = raw.len() - 6;
        raw[at] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let err = UtxoSet::new(dir.path()).load(1, 1).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("damaged") && msg.contains("utxos-"), "{msg}");
        std::fs::write(&path, &raw[..10]).unwrap();
        let msg = UtxoSet::new(dir.path()).load(1, 1).unwrap_err().to_string();
        assert!(msg.contains("shorter"), "{msg}");
    }
}

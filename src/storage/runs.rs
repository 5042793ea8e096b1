//! Indexes that only grow, kept as immutable sorted files ("runs") beside sled.
//!
//! sled 0.34 keeps per-page state in memory for every leaf it ever wrote, paged out or not
//! (measured ≈ 70 B a key for `tx_index` and `address_txs`; RELIABILITY.md, stop 24), so an
//! index that grows with the chain grows resident memory without bound whatever the cache.
//! Here an index's records live in run files: each one sorted, written once, synced, renamed
//! into place and never modified. Memory holds only the first key and a checksum of each
//! 4 KiB block of a run (≈ 1 byte a record), so a lookup reads one block from each run.
//! sled keeps only the recent tail of each index; `index_mover` moves it here.
//!
//! **Files.** `indexes/<name>-<lo>-<hi>.run` (sequence numbers in hex): `lo..=hi` are the
//! flushes it holds, so a run made by merging others names the range they covered. A run is
//! written as `.tmp`, synced, renamed, and the directory synced; then the runs it replaces
//! are deleted. A crash in between leaves a run whose range another covers: the open deletes
//! it. Duplicates are harmless anyway: an index maps a key to one value for good (a txid to
//! its place in the chain, a history key to nothing), and where two runs disagree the newer
//! (higher `hi`) wins, as a later write to sled would.
//!
//! ```text
//! run file: block 0 ‖ block 1 ‖ … ‖ footer (first key ‖ checksum, per block) ‖ trailer
//! block:    up to `block_records` records, each key ‖ value (fixed widths), sorted by key
//! trailer:  magic ‖ version ‖ key len ‖ value len ‖ block records ‖ records ‖ lo ‖ hi ‖ checksum
//! ```
//!
//! **Merging.** Runs are kept larger with age, with fewer than [`FANOUT`] of each size tier:
//! [`FANOUT`] adjacent runs of one tier merge into one of the next, and a run smaller than
//! its newer neighbour merges into it. So an index of n records has O(log n) runs (a lookup
//! costs one block read per run) and each record is rewritten O(log n) times.

use super::layer1_log::checksum;
use arc_swap::ArcSwap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Subdirectory of the database holding the run files.
pub const DIR_NAME: &str = "indexes";
const MAGIC: &[u8; 8] = b"TIMEDRUN";
const VERSION: u32 = 1;
const TRAILER_LEN: usize = 8 + 4 + 4 + 4 + 4 + 8 + 8 + 8 + 4;
/// Bytes of records per block: one read per lookup per run.
const BLOCK_BYTES: usize = 4096;
/// Runs merged at once, and the size ratio between tiers.
pub const FANOUT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("index file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "index file {path} is damaged: {reason}. Restore the data directory from a backup \
         (`timed restore`), or move it aside and let the node sync again"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("index {name}: records must be written in strictly increasing key order")]
    Unsorted { name: &'static str },
    #[error("index {name}: a record of {found} bytes where {expected} were expected")]
    Width {
        name: &'static str,
        found: usize,
        expected: usize,
    },
}

pub type Result<T> = std::result::Result<T, RunError>;

/// One record: key and value bytes.
pub type Record = (Vec<u8>, Vec<u8>);

/// The shape of an index's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    key_len: usize,
    value_len: usize,
}

impl Shape {
    fn record_len(self) -> usize {
        self.key_len + self.value_len
    }

    fn block_records(self) -> usize {
        (BLOCK_BYTES / self.record_len().max(1)).max(1)
    }
}

/// One immutable run file, open for reading.
struct Run {
    path: PathBuf,
    file: File,
    shape: Shape,
    block_records: usize,
    records: u64,
    /// The flushes this run holds.
    lo: u64,
    hi: u64,
    /// The first key of each block, back to back.
    fences: Vec<u8>,
    sums: Vec<[u8; 4]>,
    bytes: u64,
}

impl Run {
    fn open(path: &Path, shape: Shape) -> Result<Run> {
        let io = |source| RunError::Io {
            path: path.to_path_buf(),
            source,
        };
        let damaged = |reason: String| RunError::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < TRAILER_LEN as u64 {
            return Err(damaged(format!("{len} bytes, shorter than its trailer")));
        }
        let mut trailer = [0u8; TRAILER_LEN];
        file.read_exact_at(&mut trailer, len - TRAILER_LEN as u64)
            .map_err(io)?;
        let mut r = Fields(&trailer);
        if r.take(8) != MAGIC {
            return Err(damaged("not an index run (bad magic)".into()));
        }
        let version = r.u32();
        if version != VERSION {
            return Err(damaged(format!(
                "format version {version}, expected {VERSION}"
            )));
        }
        let (key_len, value_len) = (r.u32() as usize, r.u32() as usize);
        if (key_len, value_len) != (shape.key_len, shape.value_len) {
            return Err(damaged(format!(
                "records of {key_len}+{value_len} bytes, expected {}+{}",
                shape.key_len, shape.value_len
            )));
        }
        let block_records = r.u32() as usize;
        let records = r.u64();
        let (lo, hi) = (r.u64(), r.u64());
        if block_records == 0 || lo > hi {
            return Err(damaged("impossible trailer".into()));
        }
        let blocks = records.div_ceil(block_records as u64);
        let data = records.checked_mul(shape.record_len() as u64);
        let footer = blocks.checked_mul((key_len + 4) as u64);
        let expected = data
            .zip(footer)
            .and_then(|(d, f)| d.checked_add(f))
            .and_then(|n| n.checked_add(TRAILER_LEN as u64));
        if expected != Some(len) {
            return Err(damaged(format!(
                "{len} bytes, but its trailer describes {records} records"
            )));
        }
        let data = data.unwrap_or(0);
        let footer_len = footer.unwrap_or(0) as usize;
        let mut tail = vec![0u8; footer_len + TRAILER_LEN];
        file.read_exact_at(&mut tail, data).map_err(io)?;
        let (body, sum) = tail.split_at(tail.len() - 4);
        if checksum(body) != sum {
            return Err(damaged("the footer's checksum does not match".into()));
        }
        let mut fences = Vec::with_capacity(blocks as usize * key_len);
        let mut sums = Vec::with_capacity(blocks as usize);
        for entry in tail[..footer_len].chunks_exact(key_len + 4) {
            fences.extend_from_slice(&entry[..key_len]);
            let mut s = [0u8; 4];
            s.copy_from_slice(&entry[key_len..]);
            sums.push(s);
        }
        Ok(Run {
            path: path.to_path_buf(),
            file,
            shape,
            block_records,
            records,
            lo,
            hi,
            fences,
            sums,
            bytes: len,
        })
    }

    fn blocks(&self) -> usize {
        self.sums.len()
    }

    fn fence(&self, block: usize) -> &[u8] {
        let k = self.shape.key_len;
        &self.fences[block * k..(block + 1) * k]
    }

    /// The block that would hold `key`: the last whose first key is ≤ `key` (0 if none).
    fn block_for(&self, key: &[u8]) -> usize {
        let mut lo = 0;
        let mut hi = self.blocks();
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.fence(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.saturating_sub(1)
    }

    /// One block's records, checked against its checksum.
    fn read_block(&self, block: usize) -> Result<Vec<u8>> {
        let rec = self.shape.record_len() as u64;
        let first = (block * self.block_records) as u64;
        let count = (self.records - first).min(self.block_records as u64);
        let mut buf = vec![0u8; (count * rec) as usize];
        self.file
            .read_exact_at(&mut buf, first * rec)
            .map_err(|source| RunError::Io {
                path: self.path.clone(),
                source,
            })?;
        if checksum(&buf) != self.sums[block] {
            return Err(RunError::Damaged {
                path: self.path.clone(),
                reason: format!("block {block} does not match its checksum"),
            });
        }
        Ok(buf)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.blocks() == 0 || key.len() != self.shape.key_len || key < self.fence(0) {
            return Ok(None);
        }
        let block = self.read_block(self.block_for(key))?;
        let (k, rec) = (self.shape.key_len, self.shape.record_len());
        let records: Vec<&[u8]> = block.chunks_exact(rec).collect();
        Ok(records
            .binary_search_by(|r| r[..k].cmp(key))
            .ok()
            .map(|i| records[i][k..].to_vec()))
    }
}

/// Reads fixed fields from a byte slice (lengths already checked by the caller).
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4));
        u32::from_be_bytes(b)
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8));
        u64::from_be_bytes(b)
    }
}

/// The records of one run from a key on, block by block.
struct RunIter {
    run: Arc<Run>,
    block: usize,
    buf: Vec<u8>,
    at: usize,
    from: Vec<u8>,
    done: bool,
}

impl RunIter {
    fn new(run: Arc<Run>, from: &[u8]) -> RunIter {
        let block = run.block_for(from);
        RunIter {
            run,
            block,
            buf: Vec::new(),
            at: 0,
            from: from.to_vec(),
            done: false,
        }
    }
}

impl Iterator for RunIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        let (k, rec) = (self.run.shape.key_len, self.run.shape.record_len());
        loop {
            if self.done {
                return None;
            }
            if self.at + rec <= self.buf.len() {
                let r = &self.buf[self.at..self.at + rec];
                self.at += rec;
                if r[..k] < *self.from {
                    continue;
                }
                return Some(Ok((r[..k].to_vec(), r[k..].to_vec())));
            }
            if self.block >= self.run.blocks() {
                self.done = true;
                return None;
            }
            match self.run.read_block(self.block) {
                Ok(b) => {
                    self.buf = b;
                    self.at = 0;
                    self.block += 1;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A sorted source of records for [`Merged`].
pub type Source<'a> = Box<dyn Iterator<Item = Result<Record>> + Send + 'a>;

/// Merges sorted sources (each with distinct keys) into one sorted stream without duplicate
/// keys; where sources hold the same key, the one listed last wins (callers list oldest
/// first). An error from any source comes out and ends the stream.
pub struct Merged<'a> {
    sources: Vec<Source<'a>>,
    heads: Vec<Option<Record>>,
    started: bool,
    failed: bool,
}

impl<'a> Merged<'a> {
    pub fn new(sources: Vec<Source<'a>>) -> Merged<'a> {
        let heads = sources.iter().map(|_| None).collect();
        Merged {
            sources,
            heads,
            started: false,
            failed: false,
        }
    }

    /// Refills head `i` from its source.
    fn pull(&mut self, i: usize) -> Result<()> {
        self.heads[i] = self.sources[i].next().transpose()?;
        Ok(())
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.failed {
            return None;
        }
        let mut step = || -> Result<Option<Record>> {
            if !self.started {
                self.started = true;
                for i in 0..self.sources.len() {
                    self.pull(i)?;
                }
            }
            let mut best: Option<usize> = None;
            for (i, head) in self.heads.iter().enumerate() {
                if let Some((key, _)) = head {
                    if best.is_none_or(|b| self.heads[b].as_ref().is_none_or(|(bk, _)| key <= bk)) {
                        best = Some(i);
                    }
                }
            }
            let Some(best) = best else {
                return Ok(None);
            };
            let Some(winner) = self.heads[best].take() else {
                return Ok(None);
            };
            self.pull(best)?;
            for i in 0..self.heads.len() {
                if self.heads[i].as_ref().is_some_and(|(k, _)| *k == winner.0) {
                    self.pull(i)?;
                }
            }
            Ok(Some(winner))
        };
        match step() {
            Ok(r) => r.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes one run: records pushed in increasing key order.
struct RunWriter {
    tmp: PathBuf,
    out: BufWriter<File>,
    name: &'static str,
    shape: Shape,
    block_records: usize,
    block: Vec<u8>,
    in_block: usize,
    footer: Vec<u8>,
    records: u64,
    last: Option<Vec<u8>>,
}

impl RunWriter {
    fn create(tmp: PathBuf, name: &'static str, shape: Shape) -> Result<RunWriter> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|source| RunError::Io {
                path: tmp.clone(),
                source,
            })?;
        let block_records = shape.block_records();
        Ok(RunWriter {
            tmp,
            out: BufWriter::with_capacity(1 << 16, file),
            name,
            shape,
            block_records,
            block: Vec::with_capacity(block_records * shape.record_len()),
            in_block: 0,
            footer: Vec::new(),
            records: 0,
            last: None,
        })
    }

    fn io(&self, source: std::io::Error) -> RunError {
        RunError::Io {
            path: self.tmp.clone(),
            source,
        }
    }

    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        for (found, expected) in [
            (key.len(), self.shape.key_len),
            (value.len(), self.shape.value_len),
        ] {
            if found != expected {
                return Err(RunError::Width {
                    name: self.name,
                    found,
                    expected,
                });
            }
        }
        if self.last.as_deref().is_some_and(|l| l >= key) {
            return Err(RunError::Unsorted { name: self.name });
        }
        if self.in_block == 0 {
            self.footer.extend_from_slice(key);
        }
        self.block.extend_from_slice(key);
        self.block.extend_from_slice(value);
        self.in_block += 1;
        self.records += 1;
        self.last = Some(key.to_vec());
        if self.in_block == self.block_records {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<()> {
        if self.in_block == 0 {
            return Ok(());
        }
        self.footer.extend_from_slice(&checksum(&self.block));
        let written = self.out.write_all(&self.block);
        written.map_err(|e| self.io(e))?;
        self.block.clear();
        self.in_block = 0;
        Ok(())
    }

    /// Completes the file, syncs it and renames it to `path` (then syncs the directory).
    fn finish(mut self, path: &Path, lo: u64, hi: u64) -> Result<u64> {
        self.end_block()?;
        let mut tail = std::mem::take(&mut self.footer);
        tail.extend_from_slice(MAGIC);
        tail.extend_from_slice(&VERSION.to_be_bytes());
        tail.extend_from_slice(&(self.shape.key_len as u32).to_be_bytes());
        tail.extend_from_slice(&(self.shape.value_len as u32).to_be_bytes());
        tail.extend_from_slice(&(self.block_records as u32).to_be_bytes());
        tail.extend_from_slice(&self.records.to_be_bytes());
        tail.extend_from_slice(&lo.to_be_bytes());
        tail.extend_from_slice(&hi.to_be_bytes());
        let sum = checksum(&tail);
        tail.extend_from_slice(&sum);
        let written = self.out.write_all(&tail).and_then(|_| self.out.flush());
        written.map_err(|e| self.io(e))?;
        let synced = self.out.get_ref().sync_data();
        synced.map_err(|e| self.io(e))?;
        std::fs::rename(&self.tmp, path).map_err(|e| self.io(e))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(self.records)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| RunError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// The tier of a run of `records`: runs of one tier are within a factor [`FANOUT`] of size.
fn tier(records: u64, unit: u64) -> u32 {
    let mut units = records / unit.max(1);
    let mut t = 0;
    while units >= FANOUT as u64 {
        units /= FANOUT as u64;
        t += 1;
    }
    t
}

/// All runs of one index. Reads take a snapshot of the list; only one thread writes (the
/// index mover), so adding and merging need no lock of their own.
pub struct RunSet {
    dir: PathBuf,
    name: &'static str,
    shape: Shape,
    /// Oldest first (by `hi`).
    runs: ArcSwap<Vec<Arc<Run>>>,
    next_seq: AtomicU64,
}

impl RunSet {
    /// Opens the runs of index `name` in `dir` (created if missing), deleting leftovers of a
    /// write or merge a crash cut short.
    pub fn open(
        dir: &Path,
        name: &'static str,
        key_len: usize,
        value_len: usize,
    ) -> Result<RunSet> {
        let io = |source| RunError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            // The directory's own entry, so a power cut cannot take every run with it.
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let shape = Shape { key_len, value_len };
        let mut runs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(rest) = file_name
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('-'))
            else {
                continue;
            };
            if rest.ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(|source| RunError::Io {
                    path: path.clone(),
                    source,
                })?;
            } else if let Some(range) = rest.strip_suffix(".run") {
                let run = Run::open(&path, shape)?;
                if range != format!("{:016x}-{:016x}", run.lo, run.hi) {
                    return Err(RunError::Damaged {
                        path,
                        reason: format!(
                            "its name does not match the range {}-{} it holds",
                            run.lo, run.hi
                        ),
                    });
                }
                runs.push(Arc::new(run));
            }
        }
        // A run whose flushes another run holds too is a merge's input a crash left behind.
        let covered: Vec<bool> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                runs.iter().enumerate().any(|(j, o)| {
                    j != i && o.lo <= r.lo && r.hi <= o.hi && (o.lo, o.hi) != (r.lo, r.hi)
                })
            })
            .collect();
        let mut kept = Vec::new();
        for (run, covered) in runs.into_iter().zip(covered) {
            if covered {
                std::fs::remove_file(&run.path).map_err(|source| RunError::Io {
                    path: run.path.clone(),
                    source,
                })?;
            } else {
                kept.push(run);
            }
        }
        kept.sort_by_key(|r| r.hi);
        let next = match kept.last() {
            None => 0,
            Some(r) => r.hi.checked_add(1).ok_or_else(|| RunError::Damaged {
                path: r.path.clone(),
                reason: "its range ends at the last sequence number".into(),
            })?,
        };
        Ok(RunSet {
            dir: dir.to_path_buf(),
            name,
            shape,
            runs: ArcSwap::from_pointee(kept),
            next_seq: AtomicU64::new(next),
        })
    }

    /// The value of `key` in the newest run that holds it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        for run in self.runs.load().iter().rev() {
            if let Some(v) = run.get(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The records with keys in `from..`, sorted, newest value per key. Sources for a
    /// [`Merged`] stream, oldest first.
    pub fn sources(&self, from: &[u8]) -> Vec<Source<'static>> {
        self.runs
            .load()
            .iter()
            .map(|run| Box::new(RunIter::new(Arc::clone(run), from)) as Source<'static>)
            .collect()
    }

    /// The width of this index's keys.
    pub fn key_len(&self) -> usize {
        self.shape.key_len
    }

    /// How many run files, records (duplicates included) and bytes the index holds.
    pub fn stats(&self) -> (usize, u64, u64) {
        let runs = self.runs.load();
        (
            runs.len(),
            runs.iter().map(|r| r.records).sum(),
            runs.iter().map(|r| r.bytes).sum(),
        )
    }

    fn path(&self, lo: u64, hi: u64, ext: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{lo:016x}-{hi:016x}.{ext}", self.name))
    }

    /// Writes `records` (sorted, distinct keys) as a new run, newest of all, and makes it
    /// visible to readers. Returns how many it wrote; none, no file.
    pub fn add<'r>(&self, records: impl IntoIterator<Item = (&'r [u8], &'r [u8])>) -> Result<u64> {
        let seq = self.next_seq.load(Ordering::SeqCst);
        let mut w = RunWriter::create(self.path(seq, seq, "tmp"), self.name, self.shape)?;
        for (k, v) in records {
            w.push(k, v)?;
        }
        if w.records == 0 {
            drop(w.out);
            let _ = std::fs::remove_file(&w.tmp);
            return Ok(0);
        }
        let path = self.path(seq, seq, "run");
        let written = w.finish(&path, seq, seq)?;
        let run = Arc::new(Run::open(&path, self.shape)?);
        self.next_seq.store(seq + 1, Ordering::SeqCst);
        let mut list = self.runs.load().as_ref().clone();
        list.push(run);
        self.runs.store(Arc::new(list));
        Ok(written)
    }

    /// Which adjacent runs to merge next, if any (`unit` records make tier 0). Runs are kept
    /// larger with age, tier by tier, with fewer than [`FANOUT`] of each tier, so an index of
    /// n records has O(log n) runs: an older run of a lower tier than its newer neighbour (a
    /// piece of a restore or an upgrade moved in large pieces) merges with it first; then the
    /// newest [`FANOUT`] adjacent runs of one tier merge.
    fn merge_due(runs: &[Arc<Run>], unit: u64) -> Option<std::ops::Range<usize>> {
        let tiers: Vec<u32> = runs.iter().map(|r| tier(r.records, unit)).collect();
        if let Some(i) = (0..tiers.len().saturating_sub(1)).find(|&i| tiers[i] < tiers[i + 1]) {
            return Some(i..i + 2);
        }
        (0..=tiers.len().checked_sub(FANOUT)?)
            .rev()
            .find(|&i| tiers[i..i + FANOUT].iter().all(|&t| t == tiers[i]))
            .map(|i| i..i + FANOUT)
    }

    /// Merges the runs [`merge_due`](Self::merge_due) names into one. Returns whether it
    /// merged; gives up (leaving the runs as they were) if `stop` is set meanwhile.
    pub fn merge_once(&self, unit: u64, stop: &AtomicBool) -> Result<bool> {
        let runs = self.runs.load_full();
        let Some(due) = Self::merge_due(&runs, unit) else {
            return Ok(false);
        };
        let inputs = &runs[due.clone()];
        let (lo, hi) = (inputs[0].lo, inputs[inputs.len() - 1].hi);
        let tmp = self.path(lo, hi, "tmp");
        let mut w = RunWriter::create(tmp.clone(), self.name, self.shape)?;
        let sources = inputs
            .iter()
            .map(|run| Box::new(RunIter::new(Arc::clone(run), &[])) as Source<'static>)
            .collect();
        for (n, record) in Merged::new(sources).enumerate() {
            let (k, v) = record?;
            w.push(&k, &v)?;
            if n % 65_536 == 0 && stop.load(Ordering::SeqCst) {
                drop(w.out);
                let _ = std::fs::remove_file(&tmp);
                return Ok(false);
            }
        }
        let path = self.path(lo, hi, "run");
        w.finish(&path, lo, hi)?;
        let merged = Arc::new(Run::open(&path, self.shape)?);
        let mut list: Vec<Arc<Run>> = runs[..due.start].to_vec();
        list.push(merged);
        list.extend_from_slice(&runs[due.end..]);
        self.runs.store(Arc::new(list));
        // Readers holding the old list keep their open files; the names go now.
        for run in inputs {
            std::fs::remove_file(&run.path).map_err(|source| RunError::Io {
                path: run.path.clone(),
                source,
            })?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Vec<u8> {
        let mut k = vec![0u8; 8];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    }

    fn add_range(set: &RunSet, ids: impl Iterator<Item = u32>, value: u8) {
        let recs: Vec<(Vec<u8>, Vec<u8>)> = ids.map(|i| (key(i), vec![value; 4])).collect();
        set.add(recs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
            .unwrap();
    }

    fn all(set: &RunSet) -> Vec<Record> {
        Merged::new(set.sources(&[]))
            .collect::<Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn lookups_and_scans_see_every_run_newest_first_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let set = RunSet::open(dir.path(), "t", 8, 4).unwrap();
        add_range(&set, (0..1000).map(|i| i * 2), 1);
        add_range(&set, (0..1000).map(|i| i * 3), 2);
        for s in [&set, &RunSet::open(dir.path(), "t", 8, 4).unwrap()] {
            assert_eq!(s.get(&key(4)).unwrap(), Some(vec![1; 4]));
            assert_eq!(
                s.get(&key(6)).unwrap(),
                Some(vec![2; 4]),
                "the newer run wins"
            );
            assert_eq!(s.get(&key(9)).unwrap(), Some(vec![2; 4]));
            assert_eq!(s.get(&key(7)).unwrap(), None);
            assert_eq!(s.get(&key(5000)).unwrap(), None);
            let recs = all(s);
            let expected: std::collections::BTreeSet<u32> = (0..1000)
                .map(|i| i * 2)
                .chain((0..1000).map(|i| i * 3))
                .collect();
            assert_eq!(recs.len(), expected.len());
            assert!(recs.windows(2).all(|w| w[0].0 < w[1].0));
            let from: Vec<_> = Merged::new(s.sources(&key(1501)))
                .map(|r| r.unwrap().0)
                .take(2)
                .collect();
            assert_eq!(from, vec![key(1502), key(1503)]);
        }
    }

    #[test]
    fn runs_of_one_tier_merge_and_a_crash_cut_merge_leaves_no_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let set = RunSet::open(dir.path(), "t", 8, 4).unwrap();
        let stop = AtomicBool::new(false);
        let first = dir.path().join("t-0000000000000000-0000000000000000.run");
        let kept = dir.path().join("kept");
        for r in 0..FANOUT as u32 {
            add_range(&set, (0..500).map(|i| i * FANOUT as u32 + r), r as u8);
            if r == 0 {
                std::fs::copy(&first, &kept).unwrap();
            }
            assert_eq!(set.merge_once(500, &stop).unwrap(), r + 1 == FANOUT as u32);
        }
        assert_eq!(set.stats().0, 1);
        assert_eq!(set.stats().1, 2000);
        assert_eq!(set.get(&key(7)).unwrap(), Some(vec![3; 4]));
        assert!(!first.exists(), "a merge deletes its inputs");
        // An input left beside its merge (a crash before the delete) goes at open, and so
        // does a half-written file.
        add_range(&set, 5000..5010, 9);
        std::fs::rename(&kept, &first).unwrap();
        std::fs::write(
            dir.path().join("t-0000000000000009-0000000000000009.tmp"),
            b"x",
        )
        .unwrap();
        let reopened = RunSet::open(dir.path(), "t", 8, 4).unwrap();
        assert_eq!(reopened.stats().0, 2);
        assert_eq!(all(&reopened).len(), 2010);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_damaged_run_is_a_clear_error_at_open_or_at_read() {
        let dir = tempfile::tempdir().unwrap();
        let set = RunSet::open(dir.path(), "t", 8, 4).unwrap();
        add_range(&set, 0..2000, 1);
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let reopened = RunSet::open(dir.path(), "t", 8, 4).unwrap();
        let err = reopened.get(&key(9)).unwrap_err().to_string();
        assert!(err.contains("block 0 does not match its checksum"), "{err}");
        assert!(err.contains("Restore the data directory"), "{err}");
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, &bytes).unwrap();
        let err = RunSet::open(dir.path(), "t", 8, 4)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn records_out_of_order_or_of_the_wrong_width_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let set = RunSet::open(dir.path(), "t", 8, 4).unwrap();
        let (a, b, v) = (key(2), key(1), vec![0u8; 4]);
        let err = set.add([(a.as_slice(), v.as_slice()), (b.as_slice(), v.as_slice())]);
        assert!(matches!(err, Err(RunError::Unsorted { .. })));
        let err = set.add([(a.as_slice(), &v[..3])]);
        assert!(matches!(err, Err(RunError::Width { found: 3, .. })));
        assert_eq!(set.stats().0, 0);
    }

    #[test]
    fn a_smaller_older_run_merges_up_and_runs_stay_few() {
        let dir = tempfile::tempdir().unwrap();
        let set = RunSet::open(dir.path(), "t", 8, 4).unwrap();
        let stop = AtomicBool::new(false);
        // A restore's pattern: a small run, then big ones, then small ones again.
        let mut next = 0u32;
        let mut add = |n: u32| {
            add_range(&set, next..next + n, 1);
            next += n;
            while set.merge_once(100, &stop).unwrap() {}
        };
        add(50);
        for _ in 0..3 {
            add(400);
        }
        for _ in 0..40 {
            add(100);
        }
        let runs = set.runs.load();
        let tiers: Vec<u32> = runs.iter().map(|r| tier(r.records, 100)).collect();
        assert!(tiers.windows(2).all(|w| w[0] >= w[1]), "{tiers:?}");
        for t in 0..=3 {
            assert!(
                tiers.iter().filter(|&&x| x == t).count() < FANOUT,
                "{tiers:?}"
            );
        }
        assert_eq!(all(&set).len(), next as usize);
    }

    #[test]
    fn tiers_grow_by_the_fanout() {
        assert_eq!(tier(10, 100), 0);
        assert_eq!(tier(399, 100), 0);
        assert_eq!(tier(400, 100), 1);
        assert_eq!(tier(1600, 100), 2);
    }
}

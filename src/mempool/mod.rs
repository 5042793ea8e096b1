//! The transaction pool: validated transactions waiting for layer-1 finality.
//!
//! ```text
//! bytes ─► verify (structure + signatures, off the runtime, batchable) ─► VerifiedTx
//! VerifiedTx ─► insert: recent rejects? ledger inputs? pool conflicts? fee rate? room? ─► pool
//! block / finality ─► remove only the transactions it names or conflicts with
//! ```
//!
//! A plain synchronous structure: its owner wraps it in a mutex or a task. Count and bytes are
//! also published through atomics so RPC and metrics read them without taking that lock.

pub mod admission;
pub mod error;
pub mod rejected;
pub mod verifier;

pub use error::{PoolError, Result};

use crate::ledger::{BlockOutcome, Ledger};
use crate::types::signature::verify_batch;
use crate::types::{Amount, Network, OutPoint, Transaction, Txid};
use rejected::RejectCache;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits and policy of the pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolLimits {
    pub max_count: usize,
    pub max_bytes: usize,
    /// Minimum fee, in atoms per byte of the encoded transaction.
    pub min_fee_rate: u64,
    pub reject_cache_size: usize,
    pub reject_ttl: Duration,
    /// Local submits the pool always takes, whatever the recent finality rate
    /// (`admission::FLOOR`; see `admission`).
    pub admission_floor: usize,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_count: 100_000,
            max_bytes: 300 * 1024 * 1024,
            min_fee_rate: 1,
            reject_cache_size: 50_000,
            reject_ttl: Duration::from_secs(600),
            admission_floor: admission::FLOOR,
        }
    }
}

/// A transaction whose structure and signatures have been checked. Only [`Mempool::verify`]
/// and [`Mempool::verify_many`] make one, so the pool never holds an unverified transaction.
#[derive(Clone, Debug)]
pub struct VerifiedTx {
    tx: Arc<Transaction>,
    txid: Txid,
    size: usize,
}

impl VerifiedTx {
    pub fn tx(&self) -> &Arc<Transaction> {
        &self.tx
    }
    pub fn txid(&self) -> Txid {
        self.txid
    }
    pub fn size(&self) -> usize {
        self.size
    }
}

/// A transaction in the pool.
#[derive(Clone, Debug)]
pub struct PoolEntry {
    pub tx: Arc<Transaction>,
    pub txid: Txid,
    pub size: usize,
    pub fee: Amount,
    /// Fee per byte ×1000, so ordering keeps sub-atom precision.
    pub fee_rate_milli: u64,
    /// When it entered the pool: milliseconds on the caller's clock (see [`Mempool::insert`]).
    pub added_at: u64,
}

/// Counters readable without the pool's lock.
#[derive(Clone, Default, Debug)]
pub struct PoolStats {
    count: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl PoolStats {
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// What an accepted insert did.
#[derive(Debug, PartialEq, Eq)]
pub struct Inserted {
    pub txid: Txid,
    /// Lower-fee transactions evicted to make room.
    pub evicted: Vec<Txid>,
}

pub struct Mempool {
    network: Network,
    limits: PoolLimits,
    entries: HashMap<Txid, PoolEntry>,
    /// (fee rate, insertion sequence, txid): lowest first for eviction. The sequence breaks
    /// ties so that among equal fee rates the newest is evicted first.
    by_fee: BTreeSet<(u64, std::cmp::Reverse<u64>, Txid)>,
    seq_of: HashMap<Txid, u64>,
    next_seq: u64,
    spends: HashMap<OutPoint, Txid>,
    rejected: RejectCache,
    stats: PoolStats,
}

fn fee_rate_milli(fee: Amount, size: usize) -> u64 {
    let rate = u128::from(fee.0) * 1000 / (size.max(1) as u128);
    u64::try_from(rate).unwrap_or(u64::MAX)
}

impl Mempool {
    pub fn new(network: Network, limits: PoolLimits) -> Mempool {
        Mempool {
            network,
            limits,
            entries: HashMap::new(),
            by_fee: BTreeSet::new(),
            seq_of: HashMap::new(),
            next_seq: 0,
            spends: HashMap::new(),
            rejected: RejectCache::new(limits.reject_cache_size, limits.reject_ttl),
            stats: PoolStats::default(),
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.stats.clone()
    }

    pub fn limits(&self) -> &PoolLimits {
        &self.limits
    }

    /// Stateless checks and signatures for one transaction. CPU-heavy: call it off the async
    /// runtime.
    pub fn verify(network: Network, tx: Transaction) -> Result<VerifiedTx> {
        Self::verify_many(network, vec![tx])
            .pop()
            .unwrap_or_else(|| unreachable!("verify_many returns one verdict per input"))
    }

    /// Checks many transactions at once, verifying all their signatures in one batch (with the
    /// strict per-signature fallback). One verdict per transaction, in order.
    /// Takes shared transactions as they are (a relayed one is not copied to be checked).
    pub fn verify_many<T: Into<Arc<Transaction>>>(
        network: Network,
        txs: Vec<T>,
    ) -> Vec<Result<VerifiedTx>> {
        let mut prepared = Vec::with_capacity(txs.len());
        for tx in txs {
            let tx: Arc<Transaction> = tx.into();
            let txid = tx.txid();
            let checked = tx.check_structure(false).map(|()| {
                let size = tx.encoded_len();
                (Transaction::signing_message(network, &txid), size)
            });
            prepared.push((tx, txid, checked));
        }
        let mut items = Vec::new();
        let mut owners = Vec::new();
        for (i, (tx, _, checked)) in prepared.iter().enumerate() {
            if let Ok((msg, _)) = checked {
                for (j, item) in tx.verify_items(msg).into_iter().enumerate() {
                    items.push(item);
                    owners.push((i, j));
                }
            }
        }
        let verdicts = verify_batch(&items);
        let mut first_bad: HashMap<usize, usize> = HashMap::new();
        for (ok, (i, j)) in verdicts.iter().zip(&owners) {
            if !ok {
                first_bad.entry(*i).or_insert(*j);
            }
        }
        drop(items);
        prepared
            .into_iter()
            .enumerate()
            .map(|(i, (tx, txid, checked))| {
                let (_, size) = checked?;
                if let Some(&item) = first_bad.get(&i) {
                    return Err(tx.signature_error(txid, item).into());
                }
                Ok(VerifiedTx { tx, txid, size })
            })
            .collect()
    }

    /// Whether a txid is known to be bad, without verifying anything.
    pub fn recently_rejected(&mut self, txid: &Txid, now: u64) -> Option<String> {
        self.rejected.get(txid, now)
    }

    /// Adds a verified transaction if the ledger and the pool's policy allow it.
    /// `now` is milliseconds on the caller's clock: the consensus driver's, which is the wall
    /// clock in a node and virtual time in the simulation (the pool reads no clock itself).
    pub fn insert(&mut self, vtx: VerifiedTx, ledger: &Ledger, now: u64) -> Result<Inserted> {
        let txid = vtx.txid;
        let result = self.try_insert(vtx, ledger, now);
        if let Err(e) = &result {
            crate::metrics::mempool_rejected(e.reason_label());
            if e.is_permanent() {
                self.rejected.insert(txid, e.to_string(), now);
            }
        }
        result
    }

    fn try_insert(&mut self, vtx: VerifiedTx, ledger: &Ledger, now: u64) -> Result<Inserted> {
        let txid = vtx.txid;
        if self.entries.contains_key(&txid) {
            return Err(PoolError::AlreadyInPool { txid });
        }
        if let Some(reason) = self.rejected.get(&txid, now) {
            return Err(PoolError::RecentlyRejected { txid, reason });
        }
        let check = ledger
            .check_transaction(&vtx.tx)
            .map_err(|source| PoolError::Ledger {
                txid,
                source: Box::new(source),
            })?;
        // A registration's collateral counts as spent by it (layer-1 claim).
        for outpoint in vtx.tx.claimed_outpoints() {
            if let Some(existing) = self.spends.get(&outpoint) {
                return Err(PoolError::Conflict {
                    txid,
                    outpoint,
                    existing: *existing,
                });
            }
        }
        let min_fee = Amount(self.limits.min_fee_rate.saturating_mul(vtx.size as u64));
        if check.fee < min_fee {
            return Err(PoolError::FeeTooLow {
                txid,
                fee_rate: check.fee.0 / (vtx.size.max(1) as u64),
                min: self.limits.min_fee_rate,
            });
        }
        // Last, as the dearest check (≈ 1 ms): a registration's proof of possession costs its
        // sender a real, unspent, unclaimed coin and the fee, not only a key. Checked at the
        // door, anyone with a key could make every node spend a millisecond per junk
        // registration on inputs that do not exist.
        vtx.tx.check_possession(txid)?;
        let rate = fee_rate_milli(check.fee, vtx.size);
        let evicted = self.make_room(txid, vtx.size, rate)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        for outpoint in vtx.tx.claimed_outpoints() {
            self.spends.insert(outpoint, txid);
        }
        self.by_fee.insert((rate, std::cmp::Reverse(seq), txid));
        self.seq_of.insert(txid, seq);
        self.stats.count.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(vtx.size, Ordering::Relaxed);
        self.entries.insert(
            txid,
            PoolEntry {
                tx: vtx.tx,
                txid,
                size: vtx.size,
                fee: check.fee,
                fee_rate_milli: rate,
                added_at: now,
            },
        );
        Ok(Inserted { txid, evicted })
    }

    /// Evicts the lowest fee rates until a transaction of `size` fits, but only entries paying
    /// strictly less than `rate`; if that is not enough, nothing is evicted.
    fn make_room(&mut self, txid: Txid, size: usize, rate: u64) -> Result<Vec<Txid>> {
        let count = self.entries.len();
        let bytes = self.stats.bytes();
        let fits = |n: usize, b: usize, l: &PoolLimits| n < l.max_count && b + size <= l.max_bytes;
        if fits(count, bytes, &self.limits) {
            return Ok(Vec::new());
        }
        let mut victims = Vec::new();
        let (mut n, mut b) = (count, bytes);
        for &(victim_rate, _, victim) in &self.by_fee {
            if fits(n, b, &self.limits) {
                break;
            }
            if victim_rate >= rate {
                break;
            }
            victims.push(victim);
            n -= 1;
            b -= self.entries.get(&victim).map_or(0, |e| e.size);
        }
        if !fits(n, b, &self.limits) {
            let lowest = self.by_fee.iter().next().map_or(0, |e| e.0);
            return Err(PoolError::PoolFull {
                txid,
                fee_rate: rate,
                lowest,
            });
        }
        for v in &victims {
            self.remove(v);
        }
        Ok(victims)
    }

    /// Removes one transaction; returns it if it was there.
    pub fn remove(&mut self, txid: &Txid) -> Option<PoolEntry> {
        let entry = self.entries.remove(txid)?;
        if let Some(seq) = self.seq_of.remove(txid) {
            self.by_fee
                .remove(&(entry.fee_rate_milli, std::cmp::Reverse(seq), *txid));
        }
        for outpoint in entry.tx.claimed_outpoints() {
            if self.spends.get(&outpoint) == Some(txid) {
                self.spends.remove(&outpoint);
            }
        }
        self.stats.count.fetch_sub(1, Ordering::Relaxed);
        self.stats.bytes.fetch_sub(entry.size, Ordering::Relaxed);
        Some(entry)
    }

    /// Drops what a committed block made obsolete: its own transactions, those the ledger
    /// evicted, and any pending spend of an output the block spent. Touches only those
    /// entries, never the rest of the pool. Returns the removed entries.
    pub fn remove_for_block(&mut self, outcome: &BlockOutcome) -> Vec<PoolEntry> {
        let mut removed = Vec::new();
        for txid in outcome.txids.iter().chain(&outcome.evicted) {
            removed.extend(self.remove(txid));
        }
        for op in &outcome.spent {
            if let Some(txid) = self.spends.get(op).copied() {
                removed.extend(self.remove(&txid));
            }
        }
        removed
    }

    pub fn get(&self, txid: &Txid) -> Option<&PoolEntry> {
        self.entries.get(txid)
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }

    /// The pending transaction spending `outpoint`, if any.
    pub fn spender_of(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spends.get(outpoint).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries from the highest fee rate down (ties: oldest first).
    pub fn iter_by_fee_rate(&self) -> impl Iterator<Item = &PoolEntry> {
        self.by_fee
            .iter()
            .rev()
            .filter_map(|(_, _, txid)| self.entries.get(txid))
    }

    pub fn network(&self) -> Network {
        self.network
    }
}

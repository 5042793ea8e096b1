//! Schema upgrades: what `Storage::open` does to a database an older `timed` wrote, one
//! version at a time, each step durable before the next (a cut-short upgrade resumes at the
//! next open). The history of the versions is `schema::SCHEMA_VERSION`'s doc.

use super::*;

impl Storage {
    pub(super) fn check_schema(&self) -> Result<()> {
        let meta = self.tree(TreeId::Meta);
        match meta.get(meta_key::SCHEMA_VERSION)? {
            None => {
                let empty = self.trees.iter().all(|t| t.is_empty());
                if !empty {
                    return Err(StorageError::Corrupt {
                        tree: TreeId::Meta.name(),
                        key: "schema_version".into(),
                        reason: "missing from a database that holds records".into(),
                    });
                }
                meta.insert(meta_key::SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
                self.db.flush()?;
                self.durability.barrier()?;
                Ok(())
            }
            Some(raw) => {
                let bytes: [u8; 4] =
                    raw.as_ref().try_into().map_err(|_| StorageError::Corrupt {
                        tree: TreeId::Meta.name(),
                        key: "schema_version".into(),
                        reason: format!("expected 4 bytes, found {}", raw.len()),
                    })?;
                let found = u32::from_be_bytes(bytes);
                // Until the upgrade to 9 moves it, the confirmed set is sled's.
                self.legacy_utxos
                    .store(found < 9, std::sync::atomic::Ordering::SeqCst);
                match found.cmp(&SCHEMA_VERSION) {
                    // Left non-empty by an upgrade from 4 cut short: emptied now.
                    std::cmp::Ordering::Equal if !self.tree(TreeId::AddressIndex).is_empty() => {
                        self.empty_retired_address_index()
                    }
                    // Left non-empty by an upgrade from 8 cut short: emptied now.
                    std::cmp::Ordering::Equal if !self.tree(TreeId::Utxos).is_empty() => {
                        self.empty_sled_tree(TreeId::Utxos, "the confirmed set's old copy in sled")
                    }
                    std::cmp::Ordering::Equal => Ok(()),
                    std::cmp::Ordering::Greater => Err(StorageError::NewerSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    }),
                    // Each step leaves the next version, then the next check takes it on.
                    std::cmp::Ordering::Less if found == 1 => {
                        self.migrate_from_1()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 2 => {
                        self.migrate_from_2()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 3 => {
                        self.migrate_from_3()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 4 => {
                        if meta.contains_key(meta_key::MOVING_BLOCK_BODIES)? {
                            self.move_block_bodies()?;
                        }
                        self.migrate_from_4()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 5 => {
                        self.migrate_from_5()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 6 => {
                        self.migrate_from_6()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 7 => {
                        self.migrate_from_7()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less if found == 8 => {
                        self.migrate_from_8()?;
                        self.check_schema()
                    }
                    std::cmp::Ordering::Less => Err(StorageError::OlderSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    }),
                }
            }
        }
    }

    /// Schema 1 kept the layer-1 trees in sled: their records move into the log (durably,
    /// before sled forgets them; a crash in between only repeats the move), and a final
    /// transaction's record gains its history order, taken as "the next block" (the time it
    /// became final was not kept).
    /// A schema-1 final record (the transaction alone) with its history order: the one
    /// schema 1 gave its history record at finality, found under its first output's owner,
    /// so the record its block writes is the same one and the history lists it once.
    pub(super) fn v1_final_record(
        &self,
        key: &[u8],
        tx: &[u8],
        next_height: u64,
    ) -> Result<Vec<u8>> {
        const HISTORY_KEY_LEN: usize = 20 + schema::FINAL_ORDER_LEN + 32;
        let owner = crate::types::Transaction::from_bytes(tx)
            .ok()
            .and_then(|t| t.outputs.first().map(|o| o.key_hash));
        if let Some(owner) = owner {
            for item in self.tree(TreeId::AddressTxs).scan_prefix(owner.0) {
                let (k, _) = item?;
                if k.len() == HISTORY_KEY_LEN && k[20 + schema::FINAL_ORDER_LEN..] == *key {
                    let mut v = k[20..20 + schema::FINAL_ORDER_LEN].to_vec();
                    v.extend_from_slice(tx);
                    return Ok(v);
                }
            }
        }
        Ok(schema::final_record(next_height, 0, 0, tx))
    }

    pub(super) fn migrate_from_1(&self) -> Result<()> {
        let next_height = self.tip()?.map_or(0, |t| t.height + 1);
        let mut moved = Vec::new();
        let mut batch = WriteBatch::new();
        // Schema 1's layer-1 trees (the index tails joined the log later, from sled's trees).
        for tree in [TreeId::UtxoStates, TreeId::FinalTxs, TreeId::PendingTxs] {
            for item in self.tree(tree).iter() {
                let (key, value) = item?;
                let value = if tree == TreeId::FinalTxs {
                    self.v1_final_record(&key, &value, next_height)?
                } else {
                    value.to_vec()
                };
                moved.push((tree, key.to_vec(), value));
                batch.remove(tree, key);
            }
        }
        // Schema 1 kept the outputs of final transactions in sled too; now memory rebuilds
        // them from `final_txs`.
        for item in self.tree(TreeId::Utxos).iter() {
            let (key, raw) = item?;
            let entry: UtxoEntry = decode_record(TreeId::Utxos, &key, &raw)?;
            if let (None, Some(op)) = (entry.height, OutPoint::from_key(&key)) {
                batch.remove(TreeId::Utxos, &key);
                batch.remove(
                    TreeId::AddressIndex,
                    schema::address_key(&entry.output.key_hash, &op),
                );
            }
        }
        let ops: Vec<layer1_log::Op<'_>> = moved
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), Some(v.as_slice())))
            .collect();
        self.log.append(&ops)?;
        self.log.sync()?;
        let count = moved.len();
        let mut sled_part = batch;
        sled_part.put_raw(
            TreeId::Meta,
            meta_key::SCHEMA_VERSION,
            2u32.to_be_bytes().to_vec(),
        );
        self.write_sled(&sled_part)?;
        self.flush()?;
        tracing::info!(
            records = count,
            "database upgraded from schema 1: layer-1 records moved to the layer-1 log"
        );
        Ok(())
    }

    /// Schema 3 keeps the same records; its layer-1 log also carries sled's redo, which a
    /// schema-2 binary would take for damage. The new number makes such a binary refuse the
    /// database instead.
    pub(super) fn migrate_from_2(&self) -> Result<()> {
        self.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &3u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            "database upgraded from schema 2 (the layer-1 log now also carries sled's redo)"
        );
        Ok(())
    }

    /// Schema 4 keeps block bodies in the block files: the redo a schema-3 node left is
    /// applied first (its `blocks` writes are bodies), then the database is marked schema 4
    /// *and* "moving" before the first body moves, so a binary that reads bodies from sled
    /// refuses it from then on; the move itself resumes at the next open if cut short.
    pub(super) fn migrate_from_3(&self) -> Result<()> {
        self.redo_pending()?;
        let mut marks = sled::Batch::default();
        marks.insert(meta_key::SCHEMA_VERSION, &4u32.to_be_bytes());
        marks.insert(meta_key::MOVING_BLOCK_BODIES, &[]);
        self.tree(TreeId::Meta).apply_batch(marks)?;
        self.db.flush()?;
        self.durability.barrier()?;
        self.move_block_bodies()
    }

    /// Schema 5 builds the address index in memory: the redo a schema-4 node left is applied
    /// first (it may write the index), then the database is marked schema 5 *before* the
    /// stored index is emptied, so a schema-4 binary never opens a half-emptied index (it
    /// refuses the newer schema); an emptying cut short is finished at the next open.
    pub(super) fn migrate_from_4(&self) -> Result<()> {
        self.redo_pending()?;
        self.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &5u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        self.empty_retired_address_index()
    }

    /// Schema 6 keeps most of `tx_index` and `address_txs` in run files beside sled (see
    /// `indexes`): nothing moves now (the mover takes the records from sled as it does any
    /// tail, in the background), but the number goes up first, so a schema-5 binary, which
    /// would not look in the files, refuses the database.
    pub(super) fn migrate_from_5(&self) -> Result<()> {
        // An upgrade from 4 cut short leaves the retired index to empty first.
        if !self.tree(TreeId::AddressIndex).is_empty() {
            self.empty_retired_address_index()?;
        }
        self.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &6u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            "database upgraded from schema 5 (indexes that only grow move to files beside it)"
        );
        Ok(())
    }

    /// Schema 7 keeps the index tails in the layer-1 log (renamed when it was opened, so a
    /// schema-6 binary finds no log it could misread). What schema 6 left in sled's tails
    /// moves to run files when the indexes open, before the node starts (`Indexes::open`);
    /// the number goes up first, so a schema-6 binary never looks for them in sled.
    pub(super) fn migrate_from_6(&self) -> Result<()> {
        self.tree(TreeId::Meta)
            .insert(meta_key::SCHEMA_VERSION, &7u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            "database upgraded from schema 6 (the indexes' recent records are kept in the \
             layer-1 log, not in sled)"
        );
        Ok(())
    }

    /// Schema 8 keeps the UTXO set's LtHash state with the tip (schema 7 kept a Ristretto
    /// point): the redo a schema-7 node left is applied first (it writes tips and outputs),
    /// then the state is recomputed from the confirmed outputs, and the new tip and the number
    /// land in one atomic batch, so a crash in between leaves schema 7 to upgrade again.
    /// A chain begun before schema 8 has headers that commit with the old accumulator (and a
    /// different genesis hash): the node refuses it when it compares genesis.
    pub(super) fn migrate_from_7(&self) -> Result<()> {
        self.redo_pending()?;
        let meta = self.tree(TreeId::Meta);
        let mut batch = sled::Batch::default();
        let mut outputs = 0u64;
        if let Some(raw) = meta.get(meta_key::TIP)? {
            let old: TipV7 = decode_record(TreeId::Meta, meta_key::TIP, &raw)?;
            let mut commitment = UtxoCommitment::empty();
            self.for_each_utxo(|outpoint, entry| {
                commitment.insert(&outpoint, &entry);
                outputs += 1;
            })?;
            let tip = ChainTip {
                height: old.height,
                hash: old.hash,
                timestamp_ms: old.timestamp_ms,
                utxo_state: commitment.to_bytes(),
            };
            batch.insert(meta_key::TIP, tip.to_bytes());
        }
        batch.insert(meta_key::SCHEMA_VERSION, &8u32.to_be_bytes());
        meta.apply_batch(batch)?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            outputs,
            "database upgraded from schema 7 (the UTXO commitment's state, recomputed from the \
             confirmed outputs, is kept with the tip)"
        );
        Ok(())
    }

    /// Schema 9 keeps the confirmed set out of sled, in memory with set files (see
    /// `utxo_set`): the redo a schema-8 node left is applied first (into sled, where it wrote
    /// the set), then sled's set becomes the first set file, as the state after the log's
    /// newest commit; only then the number, so a crash before it upgrades again from sled's
    /// copy. Sled's copy is emptied last (an emptying cut short is finished at the next open).
    pub(super) fn migrate_from_8(&self) -> Result<()> {
        self.redo_pending()?;
        let mut records = Vec::new();
        for item in self.tree(TreeId::Utxos).iter() {
            let (k, v) = item?;
            records.push((k, v));
        }
        let ops: Vec<utxo_set::SetOp<'_>> = records
            .iter()
            .map(|(k, v)| (k.as_ref(), Some(v.as_ref())))
            .collect();
        // Nothing reads the set before the open loads it from this file.
        self.utxo_set.apply(self.log.last_seq(), &[]);
        self.utxo_set.apply_unlogged(&ops);
        self.utxo_set.checkpoint(true)?;
        drop(ops);
        let meta = self.tree(TreeId::Meta);
        meta.insert(meta_key::SCHEMA_VERSION, &9u32.to_be_bytes())?;
        self.db.flush()?;
        self.durability.barrier()?;
        self.legacy_utxos
            .store(false, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(
            outputs = records.len(),
            "database upgraded from schema 8 (the confirmed UTXO set lives in memory and in a \
             set file beside the database)"
        );
        drop(records);
        self.empty_sled_tree(TreeId::Utxos, "the confirmed set's old copy in sled")
    }

    /// Removes the schema-4 address index (see [`empty_sled_tree`](Self::empty_sled_tree)).
    pub(super) fn empty_retired_address_index(&self) -> Result<()> {
        self.empty_sled_tree(
            TreeId::AddressIndex,
            "the address index is now built in memory at start; its stored copy",
        )
    }

    /// Removes a tree a schema retired in flushed steps (it may hold a record per output, so
    /// memory and sled's log stay small while it goes), then says so once.
    fn empty_sled_tree(&self, tree: TreeId, what: &str) -> Result<()> {
        const STEP: usize = 65_536;
        let index = self.tree(tree);
        let mut removed = 0usize;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for key in index.iter().keys().take(STEP) {
                batch.remove(key?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            index.apply_batch(batch)?;
            self.db.flush()?;
            removed += n;
        }
        self.durability.barrier()?;
        tracing::info!(records = removed, "{what} was removed");
        Ok(())
    }

    /// Moves the bodies still in sled to the block files, a bounded step at a time (each
    /// flushed: memory and the disk's second copy stay small), then clears the mark. A
    /// location is never a body's size (a header alone is longer), so none moves twice.
    pub(super) fn move_block_bodies(&self) -> Result<()> {
        const STEP_BODIES: usize = 256;
        const STEP_BYTES: usize = 64 << 20;
        let mut moved = 0usize;
        let mut after: Option<sled::IVec> = None;
        loop {
            let mut bodies: Vec<(sled::IVec, sled::IVec)> = Vec::new();
            let mut bytes = 0usize;
            let from = match after.take() {
                Some(k) => std::ops::Bound::Excluded(k),
                None => std::ops::Bound::Unbounded,
            };
            for item in self
                .tree(TreeId::Blocks)
                .range::<sled::IVec, _>((from, std::ops::Bound::Unbounded))
            {
                let (hash, value) = item?;
                if value.len() != block_files::LOCATION_LEN {
                    bytes += value.len();
                    bodies.push((hash, value));
                    if bodies.len() == STEP_BODIES || bytes >= STEP_BYTES {
                        break;
                    }
                }
            }
            if bodies.is_empty() {
                break;
            }
            let raw: Vec<&[u8]> = bodies.iter().map(|(_, v)| v.as_ref()).collect();
            let locations = self.blocks.append(&raw)?;
            let mut batch = sled::Batch::default();
            for ((hash, _), at) in bodies.iter().zip(locations) {
                batch.insert(hash, &at.to_bytes()[..]);
            }
            self.tree(TreeId::Blocks).apply_batch(batch)?;
            self.db.flush()?;
            moved += bodies.len();
            after = bodies.pop().map(|(hash, _)| hash);
            tracing::info!(blocks = moved, "moving block bodies to the block files");
        }
        self.tree(TreeId::Meta)
            .remove(meta_key::MOVING_BLOCK_BODIES)?;
        self.db.flush()?;
        self.durability.barrier()?;
        tracing::info!(
            blocks = moved,
            "database upgraded from schema 3: block bodies moved to the block files"
        );
        Ok(())
    }
}

//! The database's own tests: durability across power cuts, batches, block files, indexes and
//! every schema upgrade.

use super::*;

/// Marks the database as an older schema wrote it, flushed, for an upgrade test.
fn mark_schema(s: &Storage, version: u32) {
    s.tree(TreeId::Meta)
        .insert(meta_key::SCHEMA_VERSION, &version.to_be_bytes())
        .unwrap();
    s.db.flush().unwrap();
}

#[test]
fn newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        s.tree(TreeId::Meta)
            .insert(
                meta_key::SCHEMA_VERSION,
                &(SCHEMA_VERSION + 1).to_be_bytes(),
            )
            .unwrap();
        s.flush().unwrap();
    }
    let err = Storage::open(dir.path(), 1 << 26).err().unwrap();
    assert!(matches!(err, StorageError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(err.to_string().contains("newer timed"));
}

#[test]
fn corrupt_record_names_tree_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    let op = OutPoint::new(Hash32([3; 32]), 7);
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::Utxos, op.to_key(), vec![0xff, 0x01]);
    s.commit(b).unwrap();
    let err = s.utxo(&op).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("utxos") && msg.contains(&hex::encode(op.to_key())),
        "{msg}"
    );
}

#[test]
fn a_power_cut_keeps_every_commit_and_loses_only_unsynced_appends() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::Peers, b"kept", vec![1]);
    b.put_raw(TreeId::Peers, b"changed", vec![1]);
    b.put_raw(TreeId::Peers, b"removed", vec![1]);
    s.commit(b).unwrap();
    s.checkpoint().unwrap();
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::Peers, b"changed", vec![2]);
    b.put_raw(TreeId::Peers, b"changed", vec![3]);
    b.remove(TreeId::Peers, b"removed");
    b.put_raw(TreeId::Masternodes, b"new", vec![2]);
    s.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::PendingTxs, [9u8; 32], vec![9]);
    s.append(b).unwrap();
    // The cut takes sled back to the checkpoint and the log to its last sync; the open
    // after it applies the second commit again from its redo.
    assert_eq!(s.lose_unflushed().unwrap(), 1, "the one unsynced append");
    let get = |t, k: &[u8]| s.tree(t).get(k).unwrap().map(|v| v.to_vec());
    assert_eq!(get(TreeId::Peers, b"kept"), Some(vec![1]));
    assert_eq!(get(TreeId::Peers, b"changed"), Some(vec![3]));
    assert_eq!(get(TreeId::Peers, b"removed"), None);
    assert_eq!(get(TreeId::Masternodes, b"new"), Some(vec![2]));
    assert!(s.log.get(TreeId::PendingTxs, &[9u8; 32]).is_none());
    assert_eq!(s.lose_unflushed().unwrap(), 0, "nothing since the cut");
    drop(s);
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert_eq!(
        s.redo_backlog().0,
        0,
        "the cut's open checkpointed what it applied"
    );
    assert_eq!(
        s.tree(TreeId::Peers)
            .get(b"changed")
            .unwrap()
            .unwrap()
            .as_ref(),
        &[3]
    );
}

#[test]
fn commits_not_yet_in_sled_are_applied_again_at_open_and_read_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        for i in 0..200u32 {
            let mut b = WriteBatch::new();
            b.put_raw(TreeId::Peers, i.to_be_bytes(), vec![1; 100]);
            b.put_raw(TreeId::Masternodes, b"last", i.to_be_bytes().to_vec());
            if i > 0 {
                b.remove(TreeId::Peers, (i - 1).to_be_bytes());
            }
            s.commit(b).unwrap();
            // Whether sled has it yet or not, a read sees the commit.
            assert!(s.contains(TreeId::Peers, &i.to_be_bytes()).unwrap());
            assert!(!s
                .contains(TreeId::Peers, &(i.wrapping_sub(1)).to_be_bytes())
                .unwrap());
        }
        assert!(
            s.redo_backlog().0 > 0,
            "no checkpoint yet: the log holds the redo"
        );
        // Closed without a flush or checkpoint, as a crash after the last commit.
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert_eq!(s.redo_backlog().0, 0);
    assert_eq!(s.tree(TreeId::Peers).len(), 1);
    assert_eq!(
        s.tree(TreeId::Masternodes)
            .get(b"last")
            .unwrap()
            .unwrap()
            .as_ref(),
        &199u32.to_be_bytes()
    );
}

#[test]
fn the_barrier_covers_values_sled_keeps_as_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::Commits, b"big", vec![7; 4 << 20]);
    s.commit(b).unwrap();
    s.checkpoint().unwrap();
    let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert!(blobs >= 1, "a 4 MiB value is a blob file");
    assert_eq!(
        s.durability.synced_blob_count(),
        blobs,
        "every blob file synced"
    );
    // A plain database loses nothing on a simulated cut.
    assert_eq!(s.lose_unflushed().unwrap(), 0);
}

#[test]
fn block_bodies_live_in_the_block_files_and_sled_keeps_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let hash = Hash32([5; 32]);
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Blocks, hash.0, vec![9; 300_000]);
        s.commit(b).unwrap();
        assert_eq!(s.block_bytes(&hash).unwrap(), Some(vec![9; 300_000]));
        let in_sled = s.tree(TreeId::Blocks).get(hash.0).unwrap().unwrap();
        assert_eq!(in_sled.len(), block_files::LOCATION_LEN);
        assert!(s.size_on_disk().unwrap() > 300_000);
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert_eq!(s.block_bytes(&hash).unwrap(), Some(vec![9; 300_000]));
    assert_eq!(s.block_bytes(&Hash32([6; 32])).unwrap(), None);
    // A location that points nowhere is a corrupt record, named.
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::Meta, b"x", vec![]);
    s.commit(b).unwrap();
    s.tree(TreeId::Blocks)
        .insert(hash.0, &[0u8; 3][..])
        .unwrap();
    let err = s.block_bytes(&hash).unwrap_err().to_string();
    assert!(err.contains("blocks") && err.contains("location"), "{err}");
}

#[test]
fn a_schema_3_database_moves_its_block_bodies_to_the_block_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let blocks = s.tree(TreeId::Blocks);
        for i in 0..600u32 {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&i.to_be_bytes());
            blocks
                .insert(hash, vec![i as u8; 100 + i as usize])
                .unwrap();
        }
        mark_schema(&s, 3);
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    for i in 0..600u32 {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&i.to_be_bytes());
        assert_eq!(
            s.block_bytes(&Hash32(hash)).unwrap(),
            Some(vec![i as u8; 100 + i as usize])
        );
        let in_sled = s.tree(TreeId::Blocks).get(hash).unwrap().unwrap();
        assert_eq!(in_sled.len(), block_files::LOCATION_LEN);
    }
    let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
    assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
    assert!(!s
        .tree(TreeId::Meta)
        .contains_key(meta_key::MOVING_BLOCK_BODIES)
        .unwrap());
}

#[test]
fn a_move_of_block_bodies_cut_short_resumes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let moved = Hash32([1; 32]);
    let left = Hash32([2; 32]);
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Blocks, moved.0, vec![1; 500]);
        s.commit(b).unwrap();
        s.checkpoint().unwrap();
        // As a move cut short leaves it: schema 4 and marked, one body moved, one still
        // in sled.
        s.tree(TreeId::Blocks).insert(left.0, vec![2; 700]).unwrap();
        s.tree(TreeId::Meta)
            .insert(meta_key::MOVING_BLOCK_BODIES, &[])
            .unwrap();
        mark_schema(&s, 4);
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert_eq!(s.block_bytes(&moved).unwrap(), Some(vec![1; 500]));
    assert_eq!(s.block_bytes(&left).unwrap(), Some(vec![2; 700]));
    assert!(!s
        .tree(TreeId::Meta)
        .contains_key(meta_key::MOVING_BLOCK_BODIES)
        .unwrap());
}

#[test]
fn a_schema_4_database_drops_its_stored_address_index() {
    let dir = tempfile::tempdir().unwrap();
    let utxo = OutPoint::new(Hash32([3; 32]), 0);
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Utxos, utxo.to_key(), vec![1, 2, 3]);
        // A schema-4 node's last block, still only in the log's redo: its index write
        // must not come back after the upgrade emptied the tree.
        b.put_raw(TreeId::AddressIndex, [7u8; 56], vec![]);
        s.commit(b).unwrap();
        s.tree(TreeId::AddressIndex)
            .insert([8u8; 56], &[][..])
            .unwrap();
        mark_schema(&s, 4);
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert!(s.tree(TreeId::AddressIndex).is_empty());
    assert_eq!(
        s.get_raw(TreeId::Utxos, &utxo.to_key()).unwrap().as_deref(),
        Some(&[1u8, 2, 3][..])
    );
    let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
    assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
    // An emptying cut short (marked 5, records left) is finished at the next open.
    s.tree(TreeId::AddressIndex)
        .insert([9u8; 56], &[][..])
        .unwrap();
    s.db.flush().unwrap();
    drop(s);
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert!(s.tree(TreeId::AddressIndex).is_empty());
}

#[test]
fn layer1_writes_are_read_at_once_and_survive_a_flush_and_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let op = OutPoint::new(Hash32([5; 32]), 1);
    let locked = UtxoState::Locked(Hash32([6; 32]));
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put(TreeId::UtxoStates, op.to_key(), &locked);
        b.put_raw(TreeId::PendingTxs, [1u8; 32], vec![1]);
        s.append(b).unwrap();
        assert_eq!(s.utxo_state(&op).unwrap(), locked, "visible at once");
        assert!(s.tree(TreeId::UtxoStates).is_empty(), "not in sled");
        s.flush().unwrap();
        let mut b = WriteBatch::new();
        b.remove(TreeId::PendingTxs, [1u8; 32]);
        b.put_raw(TreeId::PendingTxs, [2u8; 32], vec![2]);
        s.append(b).unwrap();
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert_eq!(s.utxo_state(&op).unwrap(), locked);
    let pending: Vec<_> = s
        .records(TreeId::PendingTxs)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(pending, vec![(vec![2u8; 32], vec![2])]);
}

#[test]
fn a_power_cut_loses_the_layer1_writes_no_flush_covered() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::FinalTxs, b"flushed", vec![1]);
    s.append(b).unwrap();
    s.flush().unwrap();
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::FinalTxs, b"appended", vec![1]);
    b.remove(TreeId::FinalTxs, b"flushed");
    s.append(b).unwrap();
    assert_eq!(s.lose_unflushed().unwrap(), 1, "one batch, one frame");
    assert!(s.log.get(TreeId::FinalTxs, b"flushed").is_some());
    assert!(s.log.get(TreeId::FinalTxs, b"appended").is_none());
}

#[test]
fn a_commit_is_durable_whole_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::UtxoStates, b"lock", vec![1]);
    b.put_raw(TreeId::Peers, b"peer", vec![1]);
    s.commit(b).unwrap();
    // No flush, no checkpoint: the commit's frame carries both halves.
    s.lose_unflushed().unwrap();
    assert!(s.log.get(TreeId::UtxoStates, b"lock").is_some());
    assert!(s.tree(TreeId::Peers).get(b"peer").unwrap().is_some());
}

#[test]
fn multi_tree_batch_lands_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    let mut b = WriteBatch::new();
    b.put_raw(TreeId::Peers, b"a", vec![1]);
    b.put_raw(TreeId::Masternodes, b"b", vec![2]);
    b.remove(TreeId::Peers, b"zz");
    s.commit(b).unwrap();
    assert_eq!(
        s.tree(TreeId::Peers).get(b"a").unwrap().unwrap().as_ref(),
        &[1]
    );
    assert_eq!(
        s.tree(TreeId::Masternodes)
            .get(b"b")
            .unwrap()
            .unwrap()
            .as_ref(),
        &[2]
    );
}

/// Waits (generously) for the mover to write a run of each index.
fn wait_until_both_indexes_have_files(s: &Storage) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while (s.index_file_stats().iter()).any(|(_, (files, _, _))| *files == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the tails never moved to files"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// One `tx_index` and one `address_txs` record for each transaction number in `range`.
fn index_batch(range: std::ops::Range<u32>) -> WriteBatch {
    let mut b = WriteBatch::new();
    for i in range {
        let txid = blake3::hash(&i.to_be_bytes());
        let loc = TxLocation {
            height: u64::from(i),
            index: i % 7,
        };
        b.put(TreeId::TxIndex, txid.as_bytes(), &loc);
        let mut hk = [0u8; 72];
        hk[..20].copy_from_slice(&[(i % 3) as u8; 20]);
        hk[20..28].copy_from_slice(&u64::from(i).to_be_bytes());
        hk[40..].copy_from_slice(txid.as_bytes());
        b.put_raw(TreeId::AddressTxs, hk, Vec::new());
    }
    b
}

/// Commits `index_batch` records `0..total`, `per_batch` to a commit.
fn commit_index_batches(s: &Storage, total: u32, per_batch: u32) {
    for start in (0..total).step_by(per_batch as usize) {
        s.commit(index_batch(start..(start + per_batch).min(total)))
            .unwrap();
    }
}

#[test]
fn grown_indexes_move_to_their_files_and_read_the_same_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let total = indexes::TAIL_RECORDS as u32 + 5_000;
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        commit_index_batches(&s, total, 10_000);
        wait_until_both_indexes_have_files(&s);
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert!((s.log.len(TreeId::TxIndex) as u64) < indexes::TAIL_RECORDS);
    assert!(
        s.tree(TreeId::TxIndex).is_empty(),
        "sled holds no index records"
    );
    for i in [0u32, 1, 4_242, total - 1] {
        let txid = Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes());
        assert_eq!(
            s.tx_location(&txid).unwrap(),
            Some(TxLocation {
                height: u64::from(i),
                index: i % 7
            })
        );
    }
    assert_eq!(s.tx_location(&Hash32([7; 32])).unwrap(), None);
    // One address's history in order, from files and tail together; a bounded scan stops.
    let mut heights = Vec::new();
    s.index_scan(TreeId::AddressTxs, &[1; 20], &[1; 72], |k, v| {
        assert!(v.is_empty());
        heights.push(u64::from_be_bytes(k[20..28].try_into().unwrap()));
        Ok(true)
    })
    .unwrap();
    let expected: Vec<u64> = (0..u64::from(total)).filter(|i| i % 3 == 1).collect();
    assert_eq!(heights, expected);
    let mut locations = 0;
    s.index_scan(TreeId::TxIndex, &[], &[0xff; 32], |_, v| {
        TxLocation::from_bytes(v).unwrap();
        locations += 1;
        Ok(locations < 10)
    })
    .unwrap();
    assert_eq!(locations, 10);
    assert!(s.size_on_disk().unwrap() > 0);
    // Every way of reading a record finds it, in the tail or in a file.
    let moved = Hash32(*blake3::hash(&3u32.to_be_bytes()).as_bytes());
    assert!(s.contains(TreeId::TxIndex, &moved.0).unwrap());
    assert_eq!(s.records(TreeId::TxIndex).unwrap().len(), total as usize);
    assert_eq!(s.records(TreeId::AddressTxs).unwrap().len(), total as usize);
}

#[test]
fn a_schema_7_database_gets_the_lthash_state_of_its_outputs_in_its_tip() {
    use crate::types::{Amount, KeyHash, TxOutput};
    let dir = tempfile::tempdir().unwrap();
    let outputs: Vec<(OutPoint, UtxoEntry)> = (0..50u8)
        .map(|i| {
            (
                OutPoint::new(Hash32([i; 32]), u32::from(i)),
                UtxoEntry {
                    output: TxOutput {
                        amount: Amount(1_000 + u64::from(i)),
                        key_hash: KeyHash([i; 20]),
                    },
                    height: Some(3),
                    coinbase: false,
                },
            )
        })
        .collect();
    let old = TipV7 {
        height: 3,
        hash: Hash32([7; 32]),
        timestamp_ms: 1_234,
        utxo_accumulator: [9; 32],
    };
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        // Where a schema-7 node kept its outputs: in sled.
        for (op, entry) in &outputs {
            s.tree(TreeId::Utxos)
                .insert(op.to_key(), entry.to_bytes())
                .unwrap();
        }
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Meta, meta_key::TIP, old.to_bytes());
        s.commit(b).unwrap();
        s.checkpoint().unwrap();
        mark_schema(&s, 7);
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
    assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
    let tip = s.tip().unwrap().unwrap();
    assert_eq!(
        (tip.height, tip.hash, tip.timestamp_ms),
        (3, Hash32([7; 32]), 1_234)
    );
    let expected = UtxoCommitment::of_set(outputs.iter().map(|(o, e)| (o, e)));
    assert_eq!(UtxoCommitment::from_bytes(&tip.utxo_state), expected);
    drop(s);
    // Opened again: nothing left to upgrade, the tip as written.
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert_eq!(s.tip().unwrap().unwrap(), tip);
}

#[test]
fn a_schema_6_database_moves_its_sled_tails_to_files_and_keeps_its_layer1_log() {
    let dir = tempfile::tempdir().unwrap();
    let total = indexes::TAIL_RECORDS as u32 + 1_000;
    let lock = OutPoint {
        txid: Hash32([5; 32]),
        index: 1,
    };
    {
        // Schema 6: the indexes' tails in sled (here the whole index, as a schema-5
        // database upgraded in the background leaves it), locks in `layer1.log`.
        let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
        for start in (0..total).step_by(20_000) {
            apply_plain(&s.trees, &index_batch(start..(start + 20_000).min(total))).unwrap();
        }
        // A damaged record stays readable as damaged, as it was in sled.
        s.tree(TreeId::TxIndex)
            .insert([9u8; 32], &[0xff; 3])
            .unwrap();
        let mut b = WriteBatch::new();
        b.put(
            TreeId::UtxoStates,
            lock.to_key(),
            &UtxoState::Locked(Hash32([6; 32])),
        );
        s.append(b).unwrap();
        s.flush().unwrap();
        s.checkpoint().unwrap();
        mark_schema(&s, 6);
    }
    std::fs::rename(
        dir.path().join(layer1_log::FILE_NAME),
        dir.path().join("layer1.log"),
    )
    .unwrap();
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
    assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
    assert!(s.tree(TreeId::TxIndex).is_empty() && s.tree(TreeId::AddressTxs).is_empty());
    let damaged = s.tx_location(&Hash32([9; 32])).unwrap_err();
    assert!(damaged.to_string().contains("tx_index"), "{damaged}");
    assert_eq!(
        s.utxo_state(&lock).unwrap(),
        UtxoState::Locked(Hash32([6; 32]))
    );
    for i in [0u32, 77, total - 1] {
        let txid = Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes());
        assert_eq!(
            s.tx_location(&txid).unwrap().map(|l| l.height),
            Some(u64::from(i))
        );
    }
    assert_eq!(s.records(TreeId::AddressTxs).unwrap().len(), total as usize);
    drop(s);
    assert!(!dir.path().join("layer1.log").exists());
    let dir_files = std::fs::read_dir(dir.path().join(runs::DIR_NAME))
        .unwrap()
        .count();
    assert!(dir_files >= 2);
}

/// An output as a test writes it: `i` names it and sets its amount.
fn test_output(i: u32) -> (OutPoint, Vec<u8>) {
    use crate::types::{Amount, KeyHash, TxOutput};
    let op = OutPoint::new(Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes()), i);
    let entry = UtxoEntry {
        output: TxOutput {
            amount: Amount(u64::from(i) + 1),
            key_hash: KeyHash([7; 20]),
        },
        height: Some(1),
        coinbase: false,
    };
    (op, entry.to_bytes())
}

fn set_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("utxos-"))
        .collect();
    names.sort();
    names
}

/// The confirmed set costs sled nothing: a crash brings it back from the log's redo, a file
/// takes over once the redo is big, and the log then keeps only what came after the file.
#[test]
fn the_utxo_set_comes_back_from_its_redo_and_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    // 150,000 outputs (≈ 72 bytes of redo each) in ten commits: past the redo a file is due
    // at.
    let n = 150_000u32;
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        for step in 0..10 {
            let mut b = WriteBatch::new();
            for i in step * n / 10..(step + 1) * n / 10 {
                let (op, entry) = test_output(i);
                b.put_raw(TreeId::Utxos, op.to_key(), entry);
            }
            s.commit(b).unwrap();
        }
        assert!(s.tree(TreeId::Utxos).is_empty(), "not in sled");
        // Closed without a checkpoint, as a crash after the last commit (the commits' own
        // checkpoints may have written a file on the way).
    }
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(s.records(TreeId::Utxos).unwrap().len(), n as usize);
        assert_eq!(
            set_files(dir.path()).len(),
            1,
            "one file, older ones removed"
        );
        // Spends after the file: only in the redo.
        let mut b = WriteBatch::new();
        for i in (0..n).step_by(2) {
            b.remove(TreeId::Utxos, test_output(i).0.to_key());
        }
        s.commit(b).unwrap();
        let (op, entry) = test_output(n);
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Utxos, op.to_key(), entry);
        s.commit(b).unwrap();
        s.checkpoint().unwrap();
        assert_eq!(s.redo_backlog().0, 0, "sled holds its part");
        assert!(
            s.log.pending_redo().0.len() >= 2,
            "the log keeps the set's redo since the file"
        );
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    let mut seen = 0;
    s.for_each_utxo(|op, entry| {
        let i = op.index;
        assert!(i % 2 == 1 || i == n, "spent outputs stay spent");
        assert_eq!(entry.output.amount.0, u64::from(i) + 1);
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, n as usize / 2 + 1);
    let (op, _) = test_output(n);
    assert!(s.utxo(&op).unwrap().is_some());
    assert!(s.size_on_disk().unwrap() > 0);
}

/// A snapshot's set is too big for a log frame: its file is written first, as the state after
/// the commit that follows; a file whose commit the log never made is passed over.
#[test]
fn a_set_too_big_for_a_frame_lands_as_a_file_with_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, _) = test_output(0);
    {
        let s = Storage::open_simulating_power_loss(dir.path(), 1 << 26).unwrap();
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Utxos, kept.to_key(), test_output(0).1);
        s.commit(b).unwrap();
        // ≈ 260,000 × 72 bytes: past a frame.
        let mut b = WriteBatch::new();
        for i in 1..260_000u32 {
            let (op, entry) = test_output(i);
            b.put_raw(TreeId::Utxos, op.to_key(), entry);
        }
        b.put_raw(TreeId::Meta, b"probe", vec![1]);
        s.commit(b).unwrap();
        assert_eq!(set_files(dir.path()).len(), 1, "the set went to a file");
        assert_eq!(s.records(TreeId::Utxos).unwrap().len(), 260_000);
        assert_eq!(s.get_raw(TreeId::Meta, b"probe").unwrap(), Some(vec![1]));
        // A power cut keeps it: the commit and its file were durable before it returned.
        s.lose_unflushed().unwrap();
        assert_eq!(s.records(TreeId::Utxos).unwrap().len(), 260_000);
        let last = s.log.last_seq();
        // What a crash between a file and its commit leaves: a file past the log's end.
        let files = set_files(dir.path());
        std::fs::copy(
            dir.path().join(files.last().unwrap()),
            dir.path().join(format!("utxos-{:016x}.set", last + 1)),
        )
        .unwrap();
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert_eq!(s.records(TreeId::Utxos).unwrap().len(), 260_000);
    assert!(s.utxo(&kept).unwrap().is_some());
    assert!(
        set_files(dir.path()).iter().all(|n| {
            let seq = u64::from_str_radix(&n["utxos-".len()..n.len() - ".set".len()], 16);
            seq.unwrap() <= s.log.last_seq()
        }),
        "the file past the log's end is gone"
    );
}

/// Schema 8 kept the set in sled: the upgrade applies the redo a schema-8 node left (into
/// sled, where it wrote outputs), writes sled's set as the first file, and empties sled's.
#[test]
fn a_schema_8_database_moves_its_outputs_from_sled_to_a_set_file() {
    let dir = tempfile::tempdir().unwrap();
    let (in_sled, in_redo) = (test_output(1), test_output(2));
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        s.tree(TreeId::Utxos)
            .insert(in_sled.0.to_key(), in_sled.1.clone())
            .unwrap();
        // The schema-8 node's last block, in the log's redo only.
        let mut b = WriteBatch::new();
        b.put_raw(TreeId::Utxos, in_redo.0.to_key(), in_redo.1.clone());
        b.put_raw(TreeId::Meta, b"probe", vec![1]);
        s.commit(b).unwrap();
        mark_schema(&s, 8);
    }
    for _ in 0..2 {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        let version = s.tree(TreeId::Meta).get(meta_key::SCHEMA_VERSION).unwrap();
        assert_eq!(version.unwrap().as_ref(), SCHEMA_VERSION.to_be_bytes());
        assert!(s.tree(TreeId::Utxos).is_empty(), "sled's copy emptied");
        assert_eq!(set_files(dir.path()).len(), 1);
        let got: Vec<OutPoint> = (s.records(TreeId::Utxos).unwrap().iter())
            .map(|(k, _)| OutPoint::from_key(k).unwrap())
            .collect();
        let mut want = vec![in_sled.0, in_redo.0];
        want.sort_by_key(|o| o.to_key());
        assert_eq!(got, want);
    }
    // An emptying cut short (marked 9, records left in sled) is finished at the next open.
    {
        let s = Storage::open(dir.path(), 1 << 26).unwrap();
        s.tree(TreeId::Utxos).insert(b"left", &[][..]).unwrap();
        s.db.flush().unwrap();
    }
    let s = Storage::open(dir.path(), 1 << 26).unwrap();
    assert!(s.tree(TreeId::Utxos).is_empty());
    assert_eq!(s.records(TreeId::Utxos).unwrap().len(), 2);
}

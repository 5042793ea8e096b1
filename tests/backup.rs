//! Backups and UTXO snapshots with real `timed` processes: a backup taken over RPC while
//! transfers keep arriving restores into a new data directory whose node reports the same
//! best block and UTXO-set commitment; damaged backups and tampered snapshots are refused
//! and leave the target directory as it was; a snapshot imports and its node starts at the
//! snapshot's certified height.

mod cluster;

use cluster::*;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use timed::backup::container::{ContainerReader, ContainerWriter, Kind};
use timed::backup::snapshot::{decode_header, SnapshotChunk};
use timed::config::keyfile;
use timed::ledger::history::{history_key, touched, Order};
use timed::ledger::UtxoCommitment;
use timed::storage::schema::split_final_record;
use timed::storage::{Storage, TreeId};
use timed::types::codec::Canonical;
use timed::types::{codec, Amount, Hash32, OutPoint, SecretKey, Transaction};

/// Runs `timed` with `args` and returns what it did.
fn timed<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run timed")
}

fn ok_json(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn refused(out: &Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} was accepted");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// Reads a snapshot file (checksum checked), lets `edit` change it, writes it with a valid
/// checksum: what someone who tampers with a file on purpose would do.
fn rewrite_snapshot(
    from: &Path,
    to: &Path,
    edit: impl FnOnce(&mut Vec<u8>, &mut Vec<SnapshotChunk>),
) {
    let file = std::io::BufReader::new(std::fs::File::open(from).unwrap());
    let (mut reader, mut header) = ContainerReader::open(file, Kind::Snapshot).unwrap();
    let mut chunks = Vec::new();
    while let Some(raw) = reader.next_chunk().unwrap() {
        chunks.push(SnapshotChunk::decode(&raw).unwrap());
    }
    edit(&mut header, &mut chunks);
    let mut w = ContainerWriter::new(Vec::new(), Kind::Snapshot, &header).unwrap();
    for c in &chunks {
        w.chunk(&codec::encode(c)).unwrap();
    }
    std::fs::write(to, w.finish().unwrap().0).unwrap();
}

fn outputs_mut(chunks: &mut [SnapshotChunk]) -> &mut Vec<timed::ledger::snapshot::SnapshotEntry> {
    chunks
        .iter_mut()
        .find_map(|c| match c {
            SnapshotChunk::Outputs(o) if !o.is_empty() => Some(o),
            _ => None,
        })
        .expect("the snapshot holds outputs")
}

#[test]
fn backup_under_load_restores_and_snapshots_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let url0 = info.nodes[0].rpc_url.clone();
    let url1 = info.nodes[1].rpc_url.clone();

    // Load: chained transfers from the faucet, each sent once the previous one is final.
    let faucet = keyfile::read(&info.faucet.key_file).unwrap();
    let genesis_hash = call(&url0, "getblockhash", json!([0])).unwrap();
    let genesis = call(&url0, "getblock", json!([genesis_hash, 2])).unwrap();
    let coinbase = Hash32::from_hex(genesis["tx"][0]["txid"].as_str().unwrap()).unwrap();
    let have = Amount::parse_decimal(&info.faucet.amount).unwrap().atoms();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let loader = {
        let (stop, sent, url) = (Arc::clone(&stop), Arc::clone(&sent), url0.clone());
        std::thread::spawn(move || {
            let bob = SecretKey::generate();
            let (mut from, mut have) = (OutPoint::new(coinbase, 0), have);
            while !stop.load(Ordering::Relaxed) {
                let (txid, change, left) = send(&url, &faucet, from, have, 100_000_000, &bob);
                wait_for(&format!("{txid} final"), || {
                    let v = call(&url, "getrawtransaction", json!([txid, true])).ok()?;
                    (v["instantlock"] == json!(true)).then_some(())
                });
                (from, have) = (change, left);
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_for("transfers final and a few blocks", || {
        (sent.load(Ordering::Relaxed) >= 3 && height(&url0)? >= 3).then_some(())
    });

    // Backup and snapshot over RPC, while transfers keep coming: file names, written by the
    // node in its backup directory (default <datadir>/backups).
    let cfg0 = info.nodes[0].config.clone();
    let backups0 = info.nodes[0].datadir.join("backups");
    let b = ok_json(
        &timed(&[
            OsStr::new("--config"),
            cfg0.as_os_str(),
            OsStr::new("backup"),
            OsStr::new("--to"),
            OsStr::new("node0.tbak"),
        ]),
        "backup",
    );
    let backup = PathBuf::from(b["path"].as_str().unwrap());
    assert_eq!(
        backup,
        std::fs::canonicalize(&backups0).unwrap().join("node0.tbak")
    );
    let s = ok_json(
        &timed(&[
            OsStr::new("--config"),
            cfg0.as_os_str(),
            OsStr::new("snapshot"),
            OsStr::new("export"),
            OsStr::new("--to"),
            OsStr::new("node0.tsnp"),
        ]),
        "snapshot export",
    );
    let snap = PathBuf::from(s["path"].as_str().unwrap());
    assert!(snap.starts_with(std::fs::canonicalize(&backups0).unwrap()));
    // Outside the backup directory: refused with a clear message, nothing written.
    let outside = tmp.path().join("outside.tbak");
    let msg = refused(
        &timed(&[
            OsStr::new("--config"),
            cfg0.as_os_str(),
            OsStr::new("backup"),
            OsStr::new("--to"),
            outside.as_os_str(),
        ]),
        "a backup outside the backup directory",
    );
    assert!(msg.contains("outside the backup directory"), "{msg}");
    assert!(!outside.exists());
    let after = sent.load(Ordering::Relaxed);
    wait_for("the load to go on after the backup", || {
        (sent.load(Ordering::Relaxed) > after).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    loader.join().expect("the load thread");

    // What the backup and the snapshot claim is what the chain says at their heights.
    let bh = b["height"].as_u64().unwrap();
    let best = b["bestblockhash"].as_str().unwrap().to_string();
    let commitment = b["utxocommitment"].as_str().unwrap().to_string();
    assert!(bh >= 3);
    assert_eq!(
        call(&url1, "getblockhash", json!([bh])).unwrap(),
        json!(best)
    );
    let block = call(&url1, "getblock", json!([best, 1])).unwrap();
    assert_eq!(block["utxocommitment"], json!(commitment));
    let sh = s["base_height"].as_u64().unwrap();
    let snap_hash = s["base_hash"].as_str().unwrap().to_string();
    assert_eq!(
        call(&url1, "getblockhash", json!([sh])).unwrap(),
        json!(snap_hash)
    );
    let block = call(&url1, "getblock", json!([snap_hash, 1])).unwrap();
    assert_eq!(block["utxocommitment"], s["txoutset_hash"]);
    // A backup never overwrites a file.
    let again = timed(&[
        OsStr::new("--config"),
        cfg0.as_os_str(),
        OsStr::new("backup"),
        OsStr::new("--to"),
        OsStr::new("node0.tbak"),
    ]);
    assert!(refused(&again, "a backup over an existing file").contains("already exists"));

    // Stop the network: the restored nodes below must not sync past what they restored.
    drop(procs);
    for pid in info.nodes.iter().filter_map(|n| n.pid) {
        wait_for("a killed node to be gone", || {
            process_gone(pid).then_some(())
        });
    }
    let mut procs = Procs(Vec::new(), Vec::new());

    // A stopped node is backed up from its data directory directly (its stale cookie is
    // noticed), once the killed process has let go of the database.
    let cfg1 = info.nodes[1].config.clone();
    let offline = tmp.path().join("node1.tbak");
    let o = wait_for("node 1's database to be free", || {
        let out = timed(&[
            OsStr::new("--config"),
            cfg1.as_os_str(),
            OsStr::new("backup"),
            OsStr::new("--to"),
            offline.as_os_str(),
        ]);
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("in use") {
            return None;
        }
        Some(ok_json(&out, "offline backup"))
    });
    assert!(o["height"].as_u64().unwrap() >= bh);
    // Restored, it is the stopped node's database record for record, in every tree.
    let copy_dir = tmp.path().join("node1-copy");
    ok_json(
        &timed(&[
            OsStr::new("--config"),
            cfg1.as_os_str(),
            OsStr::new("restore"),
            OsStr::new("--from"),
            offline.as_os_str(),
            OsStr::new("--datadir"),
            copy_dir.as_os_str(),
        ]),
        "restore of the offline backup",
    );
    {
        let original = Storage::open(&info.nodes[1].datadir.join("db"), 1 << 24).unwrap();
        let copy = Storage::open(&copy_dir.join("db"), 1 << 24).unwrap();
        // Both as the node opens them: the restore's check opened the copy's ledger, which
        // drops layer-1 records a block already made obsolete (see `Ledger::open`).
        let params = timed::ledger::LedgerParams::of(timed::types::Network::Localnet);
        let _ = timed::ledger::Ledger::open(original.clone(), params).unwrap();
        let _ = timed::ledger::Ledger::open(copy.clone(), params).unwrap();
        for tree in TreeId::ALL {
            // The layer-1 trees through the log, the rest through sled; for `blocks`, the
            // bodies (the locations in the block files may differ).
            let records = |s: &Storage| -> Vec<(Vec<u8>, Vec<u8>)> {
                s.records(tree)
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if tree == TreeId::Blocks {
                            let hash = timed::types::Hash32(k.as_ref().try_into().unwrap());
                            s.block_bytes(&hash).unwrap().unwrap()
                        } else {
                            v.to_vec()
                        };
                        (k.to_vec(), v)
                    })
                    .collect()
            };
            assert_eq!(records(&original), records(&copy), "tree {}", tree.name());
        }
    }

    // Damaged backups are refused and the target directory stays as it was.
    let target = tmp.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep.txt"), b"operator's file").unwrap();
    let bytes = std::fs::read(&backup).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    let flipped_path = tmp.path().join("flipped.tbak");
    std::fs::write(&flipped_path, &flipped).unwrap();
    let truncated_path = tmp.path().join("truncated.tbak");
    std::fs::write(&truncated_path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    for (bad, expect) in [(&flipped_path, "corrupt"), (&truncated_path, "truncated")] {
        let out = timed(&[
            OsStr::new("--config"),
            cfg0.as_os_str(),
            OsStr::new("restore"),
            OsStr::new("--from"),
            bad.as_os_str(),
            OsStr::new("--datadir"),
            target.as_os_str(),
        ]);
        let msg = refused(&out, "a damaged backup");
        assert!(msg.contains(expect), "{expect}: {msg}");
        assert_eq!(listing(&target), vec!["keep.txt".to_string()]);
    }

    // A backup of another chain (another genesis, or another network) is refused before
    // anything is written: a restore checks the file against the node's configuration.
    let genesis: Value =
        serde_json::from_str(&std::fs::read_to_string(&info.genesis).unwrap()).unwrap();
    for (name, network, edit) in [
        ("othergenesis", "localnet", "timestamp_ms"),
        ("othernetwork", "testnet", "network"),
    ] {
        let mut g = genesis.clone();
        if edit == "timestamp_ms" {
            g["timestamp_ms"] = json!(g["timestamp_ms"].as_u64().unwrap() + 1);
        } else {
            g["network"] = json!(network);
        }
        let gpath = tmp.path().join(format!("{name}-genesis.json"));
        std::fs::write(&gpath, g.to_string()).unwrap();
        let cfg = tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "network = {network:?}\ndatadir = {:?}\ngenesis = {:?}\n",
                tmp.path().join(name).display().to_string(),
                gpath.display().to_string()
            ),
        )
        .unwrap();
        let msg = refused(
            &timed(&[
                OsStr::new("--config"),
                cfg.as_os_str(),
                OsStr::new("restore"),
                OsStr::new("--from"),
                backup.as_os_str(),
            ]),
            "a backup of another chain",
        );
        assert!(
            msg.contains("the file is for localnet with genesis")
                && msg.contains(&format!(
                    "this node is configured for {network} with genesis"
                )),
            "{name}: {msg}"
        );
        assert!(!tmp.path().join(name).join("db").exists());
    }

    // The good backup restores into a new data directory, once.
    let port = free_base_port(1);
    let (restored_cfg, restored_url) = extra_node(
        tmp.path(),
        "restored",
        &info.genesis,
        port,
        &info.nodes[0].p2p_addr,
        "metrics_bind = \"\"",
    );
    let restored_dir = tmp.path().join("restored");
    let restore_args = [
        OsStr::new("--config"),
        restored_cfg.as_os_str(),
        OsStr::new("restore"),
        OsStr::new("--from"),
        backup.as_os_str(),
        OsStr::new("--datadir"),
        restored_dir.as_os_str(),
    ];
    let r = ok_json(&timed(&restore_args), "restore");
    assert_eq!(r["height"].as_u64(), Some(bh));
    assert_eq!(r["bestblockhash"].as_str(), Some(best.as_str()));
    let msg = refused(&timed(&restore_args), "a restore over a database");
    assert!(msg.contains("already holds a database"), "{msg}");
    // The address history, copied after the consensus task moved on, is node 0's as it was
    // at the backup's height: every record up to it, and above it only those of the
    // transactions then final at layer 1 (recorded at the next height, before their block).
    // Compared as a wallet sees it: the stored records and, for a transaction final but in
    // no block yet, the records its block will write (its place is fixed at finality, so a
    // payment final at height H - 1 whose block came after the backup is at H on both sides,
    // stored on one and pending on the other).
    {
        let original = wait_for("node 0's database to be free", || {
            Storage::open(&info.nodes[0].datadir.join("db"), 1 << 24).ok()
        });
        let copy = Storage::open(&restored_dir.join("db"), 1 << 24).unwrap();
        let history = |s: &Storage| -> Vec<(u64, Vec<u8>, Vec<u8>)> {
            let mut keys = std::collections::BTreeSet::new();
            s.index_scan(TreeId::AddressTxs, &[], &[0xff; 72], |k, _| {
                keys.insert(k.to_vec());
                Ok(true)
            })
            .unwrap();
            for (_, raw) in s.records(TreeId::FinalTxs).unwrap() {
                let ((height, time_ms, position), body) = split_final_record(&raw).unwrap();
                let tx = Transaction::from_bytes(body).unwrap();
                let order = Order {
                    height,
                    time_ms,
                    position,
                };
                for kh in touched(&tx) {
                    keys.insert(history_key(&kh, order, &tx.txid()).to_vec());
                }
            }
            keys.into_iter()
                .map(|k| {
                    let height = u64::from_be_bytes(k[20..28].try_into().unwrap());
                    (height, k[40..].to_vec(), k)
                })
                .collect()
        };
        let (before, after) = (history(&copy), history(&original));
        assert!(before.iter().any(|(h, _, _)| *h <= bh), "no history copied");
        let up_to = |v: &[(u64, Vec<u8>, Vec<u8>)]| -> Vec<Vec<u8>> {
            v.iter()
                .filter(|(h, _, _)| *h <= bh)
                .map(|(_, _, k)| k.clone())
                .collect()
        };
        assert_eq!(up_to(&before), up_to(&after));
        for (h, txid, key) in &before {
            if *h > bh {
                assert_eq!(*h, bh + 1, "a record above the backup's next height");
                assert!(
                    copy.contains(TreeId::FinalTxs, txid).unwrap(),
                    "a record at {h} of a transaction not final at the backup"
                );
                assert!(after.iter().any(|(_, _, k)| k == key));
            }
        }
        // No address index is stored since schema 5: a node builds it from the UTXOs.
        assert!(copy.tree(TreeId::AddressIndex).is_empty());
    }

    // Tampered snapshots are refused before anything is installed.
    let port2 = free_base_port(1);
    let (snap_cfg, snap_url) = extra_node(
        tmp.path(),
        "fromsnapshot",
        &info.genesis,
        port2,
        &info.nodes[0].p2p_addr,
        "metrics_bind = \"\"",
    );
    let snap_dir = tmp.path().join("fromsnapshot");
    let before = listing(&snap_dir);
    let import = |file: &Path| {
        timed(&[
            OsStr::new("--config"),
            snap_cfg.as_os_str(),
            OsStr::new("snapshot"),
            OsStr::new("import"),
            OsStr::new("--from"),
            file.as_os_str(),
        ])
    };
    let mut snap_bytes = std::fs::read(&snap).unwrap();
    let mid = snap_bytes.len() / 2;
    snap_bytes[mid] ^= 0x01;
    let flipped_snap = tmp.path().join("flipped.tsnp");
    std::fs::write(&flipped_snap, &snap_bytes).unwrap();
    let msg = refused(&import(&flipped_snap), "a snapshot with a flipped byte");
    assert!(msg.contains("corrupt"), "{msg}");

    // One output richer, checksum recomputed: the certified commitment catches it.
    let richer = tmp.path().join("richer.tsnp");
    rewrite_snapshot(&snap, &richer, |_, chunks| {
        let out = &mut outputs_mut(chunks)[0];
        out.1.output.amount = Amount(out.1.output.amount.atoms() + 1);
    });
    let msg = refused(&import(&richer), "a snapshot with a changed output");
    assert!(
        msg.contains("does not match the certified commitment"),
        "{msg}"
    );

    // ... and a header rewritten to commit to the changed set no longer carries a valid
    // certificate.
    let forged = tmp.path().join("forged.tsnp");
    rewrite_snapshot(&snap, &forged, |header, chunks| {
        let out = &mut outputs_mut(chunks)[0];
        out.1.output.amount = Amount(out.1.output.amount.atoms() + 1);
        let all: Vec<_> = chunks
            .iter()
            .filter_map(|c| match c {
                SnapshotChunk::Outputs(o) => Some(o.iter()),
                _ => None,
            })
            .flatten()
            .cloned()
            .collect();
        let forged = UtxoCommitment::of_set(all.iter().map(|(o, e, _)| (o, e))).digest();
        for c in chunks.iter_mut() {
            if let SnapshotChunk::Headers(h) = c {
                if let Some(last) = h.last_mut() {
                    last.header.utxo_commitment = forged;
                }
            }
        }
        let mut hd = decode_header(header).unwrap();
        hd.utxo_commitment = forged;
        *header = codec::encode(&hd);
    });
    let msg = refused(&import(&forged), "a snapshot with a forged header");
    assert!(
        msg.contains("certificate") || msg.contains("signature"),
        "{msg}"
    );
    assert_eq!(
        listing(&snap_dir),
        before,
        "a refused import changed the directory"
    );

    // The genuine snapshot imports.
    let i = ok_json(&import(&snap), "snapshot import");
    assert_eq!(i["height"].as_u64(), Some(sh));

    // Both nodes start and report what they were given.
    spawn_node(&restored_cfg, &tmp.path().join("restored.log"), &mut procs);
    spawn_node(&snap_cfg, &tmp.path().join("fromsnapshot.log"), &mut procs);
    let info_of = |url: &str| {
        wait_for(&format!("{url} to answer"), || {
            call(url, "getblockchaininfo", json!([])).ok()
        })
    };
    let v = info_of(&restored_url);
    assert_eq!(v["blocks"].as_u64(), Some(bh));
    assert_eq!(v["bestblockhash"], json!(best));
    assert_eq!(v["utxocommitment"], json!(commitment));
    let v = info_of(&snap_url);
    assert_eq!(v["blocks"].as_u64(), Some(sh));
    assert_eq!(v["bestblockhash"], json!(snap_hash));
    assert_eq!(v["utxocommitment"], s["txoutset_hash"]);
}

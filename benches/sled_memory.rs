//! How much memory sled 0.34 keeps for what it is given to store, whatever its cache capacity:
//! the experiment behind `storage::block_files` and RELIABILITY.md ("Soak").
//!
//! ```text
//! cargo bench --bench sled_memory -- [pattern] [cache MiB] [blocks]
//! ```
//!
//! Writes `blocks` batches (paced at 10 a second, so sled's background flusher and epoch
//! collection keep up as they do in a node) into a fresh sled database and prints resident
//! memory every 60 batches. Patterns:
//! - `bodies`: one 170 KB value per batch keyed by height (a block at 425 transfers/s);
//! - `indexes`: what a block of 850 transfers writes besides its body: 850 new random 32-byte
//!   keys (`tx_index`), 850 new address-history keys, 850 outputs created and 850 spent
//!   (`utxos`, `address_index`: the live set stays at 25,500);
//! - `churn`: only the outputs created and spent (the live set constant).
//!
//! Measured (RELIABILITY.md): `bodies` grows by exactly the bytes written, even with a 16 MiB
//! cache, because sled keeps a value past 128 KiB as a blob and charges its cache the blob
//! pointer's size; `churn` stays flat; `indexes` grows with the keys.

use std::time::{Duration, Instant};

const TRANSFERS: u64 = 850;
const LIVE_OUTPUTS: u64 = 25_500;

fn resident_mb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096 / 1_000_000)
}

/// A 32-byte key for `n`, spread over the key space as hashes are.
fn spread_key(n: u64, salt: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    let mut x = n.wrapping_add(salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in k.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    k
}

fn main() {
    // `cargo bench` passes `--bench`; the pattern, cache and count follow `--`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let pattern = args.first().map_or("indexes", String::as_str).to_string();
    let cache_mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let blocks: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(600);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache_mib << 20)
        .open()
        .expect("a fresh sled database");
    let trees: Vec<sled::Tree> = [
        "bodies",
        "tx_index",
        "address_txs",
        "utxos",
        "address_index",
    ]
    .iter()
    .map(|name| db.open_tree(name).expect("a tree"))
    .collect();
    println!("sled memory: pattern {pattern}, cache {cache_mib} MiB, {blocks} batches");
    let start = Instant::now();
    for height in 0..blocks {
        let mut batches: Vec<sled::Batch> = trees.iter().map(|_| Default::default()).collect();
        match pattern.as_str() {
            "bodies" => batches[0].insert(&height.to_be_bytes()[..], vec![9u8; 170_000]),
            "indexes" | "churn" => {
                for i in 0..TRANSFERS {
                    let n = height * TRANSFERS + i;
                    if pattern == "indexes" {
                        let txid = spread_key(n, 1);
                        batches[1].insert(&txid[..], &[1u8; 12][..]);
                        let owner = spread_key(n % LIVE_OUTPUTS, 2);
                        let mut history = owner[..20].to_vec();
                        history.extend_from_slice(&height.to_be_bytes());
                        history.extend_from_slice(&txid);
                        batches[2].insert(history, &[][..]);
                    }
                    let owner = spread_key(n % LIVE_OUTPUTS, 2);
                    let created = spread_key(n, 3);
                    batches[3].insert(&created[..], &[2u8; 45][..]);
                    let mut by_owner = owner[..20].to_vec();
                    by_owner.extend_from_slice(&created);
                    batches[4].insert(by_owner, &[][..]);
                    if n >= LIVE_OUTPUTS {
                        let spent = spread_key(n - LIVE_OUTPUTS, 3);
                        batches[3].remove(&spent[..]);
                        let mut by_owner = owner[..20].to_vec();
                        by_owner.extend_from_slice(&spent);
                        batches[4].remove(by_owner);
                    }
                }
            }
            other => {
                eprintln!("unknown pattern {other}: bodies, indexes or churn");
                std::process::exit(2);
            }
        }
        for (tree, batch) in trees.iter().zip(batches) {
            tree.apply_batch(batch).expect("a sled batch");
        }
        if (height + 1) % 60 == 0 {
            println!(
                "batches {:>5}  resident {:>5} MB  on disk {:>5} MB  {:>5.0} s",
                height + 1,
                resident_mb(),
                db.size_on_disk().unwrap_or(0) / 1_000_000,
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

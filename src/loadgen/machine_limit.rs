//! The machine's own limit, measured on the spot for `timed bench`: how fast this machine signs
//! and batch-verifies ed25519 signatures on all its cores, with the node's own verification
//! code. The machine is shared and noisy, so a throughput figure means something only beside
//! the limit measured in the same run (the ratio compares across machines and runs).

use std::time::{Duration, Instant};
use timed::types::signature::{verify_batch, VerifyItem};
use timed::types::{PublicKey, SecretKey, Signature};

/// How long each of the two rates is measured.
const MEASURE_FOR: Duration = Duration::from_millis(400);
/// Signatures per verification batch: a vote batch's or a block's worth.
const BATCH: usize = 64;

/// Signing and verification rates on every core, and the transfers a second the cryptography
/// alone would allow on a localnet of `nodes` (each transfer: one signature by its sender and
/// one verification per node; vote batches amortize to little).
#[derive(Clone, Copy, Debug)]
pub struct MachineLimit {
    pub threads: usize,
    pub signs_per_sec: f64,
    pub verifies_per_sec: f64,
    pub transfers_per_sec: f64,
}

/// Measures the rates now (about a second of every core).
pub fn measure(nodes: usize) -> MachineLimit {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let signs = on_every_core(threads, |deadline| {
        let key = SecretKey::generate();
        let mut n = 0u64;
        while Instant::now() < deadline {
            std::hint::black_box(key.sign(&n.to_le_bytes()));
            n += 1;
        }
        n
    });
    let verifies = on_every_core(threads, |deadline| {
        let keys: Vec<SecretKey> = (0..BATCH).map(|_| SecretKey::generate()).collect();
        let publics: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
        let messages: Vec<[u8; 8]> = (0..BATCH as u64).map(u64::to_le_bytes).collect();
        let signatures: Vec<Signature> =
            keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
        let items: Vec<VerifyItem<'_>> = (0..BATCH)
            .map(|i| VerifyItem {
                public_key: &publics[i],
                message: &messages[i],
                signature: &signatures[i],
            })
            .collect();
        let mut n = 0u64;
        while Instant::now() < deadline {
            std::hint::black_box(verify_batch(&items));
            n += BATCH as u64;
        }
        n
    });
    let secs = MEASURE_FOR.as_secs_f64();
    let (signs_per_sec, verifies_per_sec) = (signs as f64 / secs, verifies as f64 / secs);
    let per_transfer = 1.0 / signs_per_sec + nodes.max(1) as f64 / verifies_per_sec;
    MachineLimit {
        threads,
        signs_per_sec,
        verifies_per_sec,
        transfers_per_sec: 1.0 / per_transfer,
    }
}

/// Runs `work` on `threads` threads until one deadline; sums what they counted.
fn on_every_core(threads: usize, work: impl Fn(Instant) -> u64 + Sync) -> u64 {
    let deadline = Instant::now() + MEASURE_FOR;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| work(deadline)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_from_the_measured_rates() {
        let l = measure(4);
        assert!(l.threads >= 1);
        assert!(l.signs_per_sec > 0.0 && l.verifies_per_sec > 0.0);
        let expected = 1.0 / (1.0 / l.signs_per_sec + 4.0 / l.verifies_per_sec);
        assert!((l.transfers_per_sec - expected).abs() <= expected * 1e-9);
        assert!(l.transfers_per_sec < l.signs_per_sec);
    }
}

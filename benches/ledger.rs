//! Applying a block of 1,000 and of 10,000 one-in-one-out transfers: validation (all signatures
//! checked, as when syncing), commitment update, one atomic sled batch and its flush. And
//! installing a UTXO snapshot of 100,000 outputs over a fresh ledger (what fast sync and
//! `timed snapshot import` do once the headers are checked): the set's commitment computed and
//! compared with the header's, the outputs written in one batch and flushed.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use timed::ledger::BlockTemplate;
use timed::storage::WriteBatch;
use timed::types::block::BLOCK_VERSION;
use timed::types::{
    Amount, BlockHeader, CommitCertificate, Hash32, KeyHash, OutPoint, PublicKey, TxOutput,
    UtxoCommitment, UtxoEntry,
};

#[path = "fixture/mod.rs"]
mod fixture;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger/apply_block");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let f = fixture::funded_ledger(n, 100);
                    let txs = fixture::transfers(&f);
                    let block = f
                        .ledger
                        .build_block(BlockTemplate {
                            timestamp_ms: 0,
                            round: 0,
                            proposer: PublicKey([0; 32]),
                            payees: vec![(f.keys[0].public_key().key_hash(), 1)],
                            transactions: txs.into_iter().map(std::sync::Arc::new).collect(),
                            max_transactions: usize::MAX,
                            next_masternode_set_hash: Hash32::ZERO,
                            last_commit: None,
                        })
                        .expect("block builds")
                        .block;
                    let cert = CommitCertificate {
                        height: block.header.height,
                        round: 0,
                        block_hash: block.hash(),
                        precommits: Vec::new(),
                    };
                    (f, block, cert)
                },
                |(f, block, cert)| {
                    f.ledger.apply_block(&block, &cert).expect("block applies");
                    f
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn import_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger/import_snapshot");
    group.sample_size(10);
    let n = 100_000u32;
    let entries: Vec<_> = (0..n)
        .map(|i| {
            let txid = Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes());
            let entry = UtxoEntry {
                output: TxOutput {
                    amount: Amount(1_000 + u64::from(i)),
                    key_hash: KeyHash([(i % 251) as u8; 20]),
                },
                height: Some(1),
                coinbase: false,
            };
            (OutPoint::new(txid, i % 3), entry, None)
        })
        .collect();
    let commitment = UtxoCommitment::of_set(entries.iter().map(|(o, e, _)| (o, e)));
    let header = BlockHeader {
        version: BLOCK_VERSION,
        height: 1,
        prev_hash: Hash32::ZERO,
        timestamp_ms: 1,
        round: 0,
        proposer: PublicKey([0; 32]),
        tx_root: Hash32::ZERO,
        witness_root: Hash32::ZERO,
        utxo_commitment: commitment.digest(),
        next_masternode_set_hash: Hash32::ZERO,
        last_commit_hash: Hash32::ZERO,
        evidence_root: Hash32::ZERO,
    };
    let cert = CommitCertificate {
        height: 1,
        round: 0,
        block_hash: header.hash(),
        precommits: Vec::new(),
    };
    group.throughput(Throughput::Elements(u64::from(n)));
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter_batched(
            || fixture::funded_ledger(1, 1),
            |f| {
                f.ledger
                    .import_snapshot(&header, &cert, &entries, WriteBatch::new())
                    .expect("snapshot installs");
                f
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench, import_snapshot);
criterion_main!(benches);

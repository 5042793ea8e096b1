//! Applying a block of 1,000 and of 10,000 one-in-one-out transfers: validation (all signatures
//! checked, as when syncing), commitment update, one atomic sled batch and its flush.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use timed::ledger::BlockTemplate;
use timed::types::{CommitCertificate, Hash32, PublicKey};

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
                            transactions: txs,
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

criterion_group!(benches, bench);
criterion_main!(benches);

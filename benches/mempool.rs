//! Mempool insert: verification (batched signatures) plus the pool's checks, per transaction.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use timed::mempool::{Mempool, PoolLimits};

#[path = "fixture/mod.rs"]
mod fixture;

const TXS: usize = 1_000;

fn bench(c: &mut Criterion) {
    let f = fixture::funded_ledger(TXS, 50);
    let txs = fixture::transfers(&f);
    let mut group = c.benchmark_group("mempool");
    group.throughput(Throughput::Elements(TXS as u64));
    group.sample_size(20);
    group.bench_function("verify_many_then_insert/1000", |b| {
        b.iter_batched(
            || txs.clone(),
            |txs| {
                let mut pool = Mempool::new(fixture::NETWORK, PoolLimits::default());
                let now: u64 = 1_700_000_000_000;
                for v in Mempool::verify_many(fixture::NETWORK, txs) {
                    let v = v.expect("valid transaction");
                    pool.insert(v, &f.ledger, now).expect("accepted");
                }
                pool.len()
            },
            BatchSize::PerIteration,
        )
    });
    let verified: Vec<_> = Mempool::verify_many(fixture::NETWORK, txs.clone())
        .into_iter()
        .map(|v| v.expect("valid"))
        .collect();
    group.bench_function("insert_only/1000", |b| {
        b.iter_batched(
            || verified.clone(),
            |verified| {
                let mut pool = Mempool::new(fixture::NETWORK, PoolLimits::default());
                let now: u64 = 1_700_000_000_000;
                for v in verified {
                    pool.insert(v, &f.ledger, now).expect("accepted");
                }
                pool.len()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

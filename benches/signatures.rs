//! Signature verification: one strict check, and batches of 64, 256 and 1024.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use timed::types::signature::{verify, verify_batch, VerifyItem};
use timed::types::{PublicKey, SecretKey, Signature};

fn signed(n: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
    (0..n)
        .map(|i| {
            let key = SecretKey::from_bytes(&[(i % 251) as u8 + 1; 32]);
            let msg = format!("message {i}").into_bytes();
            let sig = key.sign(&msg);
            (key.public_key(), msg, sig)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let one = signed(1);
    c.bench_function("verify/single_strict", |b| {
        b.iter(|| assert!(verify(&one[0].0, &one[0].1, &one[0].2)))
    });
    let mut group = c.benchmark_group("verify/batch");
    for n in [64usize, 256, 1024] {
        let data = signed(n);
        let items: Vec<VerifyItem> = data
            .iter()
            .map(|(pk, m, s)| VerifyItem {
                public_key: pk,
                message: m,
                signature: s,
            })
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &items, |b, items| {
            b.iter(|| assert!(verify_batch(items).iter().all(|ok| *ok)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Seeded simulations of whole networks running the real consensus drivers: delays,
//! reordering, duplication, drops up to 30%, partitions that heal, crashes and restarts, and
//! Byzantine nodes below a third of the weight.
//!
//! `TIMED_SIM_SEEDS=<n>` sets how many random seeds run (default 48, sized for CI), from
//! `TIMED_SIM_SEEDS_FROM` (default 0);
//! `TIMED_SIM_SEED=<seed>` replays exactly one. A failure prints its seed.
//! `RUST_LOG=timed::consensus=trace,simulation=trace` logs a replay's every step, each line
//! with its node and virtual time (`TIMED_SIM_DEBUG=1` adds finals and commits).

mod sim;

use sim::{Byzantine, NodeSpec, Scenario, Sim};
use std::time::Instant;
use timed::types::Tier;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .try_init();
}

/// Runs one scenario; `Err` describes the failure with its seed and how to replay it.
fn try_seed(sc: Scenario) -> Result<(), String> {
    init_logs();
    let seed = sc.seed;
    let description = format!("{sc:?}");
    if std::env::var_os("TIMED_SIM_DEBUG").is_some() {
        eprintln!("seed {seed}: {description}");
    }
    let started = Instant::now();
    match Sim::new(sc).run() {
        Ok(report) => {
            eprintln!(
                "seed {seed}: ok, heights {:?}, {} transfers final, {} events, {:?}",
                report.heights,
                report.finalized,
                report.events,
                started.elapsed()
            );
            Ok(())
        }
        Err(v) => Err(format!(
            "seed {seed} failed: {v:?}\nscenario: {description}\nreplay a random seed with: TIMED_SIM_SEED={seed} cargo test --release --test simulation random_seeds\n(a set-change seed with: TIMED_SIM_SET_SEED={seed} cargo test --release --test simulation heavy_joins)"
        )),
    }
}

fn run_seed(sc: Scenario) {
    if let Err(e) = try_seed(sc) {
        panic!("{e}");
    }
}

#[test]
fn random_seeds() {
    if let Some(seed) = std::env::var("TIMED_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_seed(Scenario::random(seed));
        return;
    }
    let count: u64 = std::env::var("TIMED_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    // `TIMED_SIM_SEEDS_FROM=<k>` starts the sweep at seed k, to split a long sweep.
    let from: u64 = std::env::var("TIMED_SIM_SEEDS_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let started = Instant::now();
    let failures: Vec<String> = (from..from + count)
        .filter_map(|seed| try_seed(Scenario::random(seed)).err())
        .collect();
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed (listed above)",
        failures.len()
    );
    eprintln!("{count} seeds passed in {:?}", started.elapsed());
}

/// The slot engine (`finality::slots`) on small networks: the random fault scenarios with the
/// engine's threshold lowered to 4 voters, so every one of them runs it, and its announcement
/// fanout to 2, so that 4 to 10 nodes pass batches down a tree of two or three levels whose
/// relays may be the faulty, crashed or cut-off nodes.
/// `TIMED_SIM_SLOT_SEEDS=<n>` sets how many (16 by default).
#[test]
fn slot_engine_random_seeds() {
    sweep_slots(
        Scenario::random,
        "TIMED_SIM_SLOT_SEED",
        "TIMED_SIM_SLOT_SEEDS",
        16,
    );
}

/// Heavy joins and leaves during conflicting spends under the slot engine (its joint
/// transition rule). `TIMED_SIM_SLOT_SET_SEEDS=<n>` sets how many (4 by default).
#[test]
fn slot_engine_set_changes_never_split_finality() {
    sweep_slots(
        Scenario::set_changes,
        "TIMED_SIM_SLOT_SET_SEED",
        "TIMED_SIM_SLOT_SET_SEEDS",
        4,
    );
}

/// Runs `make(seed)` with the slot engine from 4 voters and an announcement fanout of 2 for
/// one seed (`<one>=<seed>`, to replay a failure) or the first `<many>` (default `default`),
/// and fails naming every failed seed.
fn sweep_slots(make: fn(u64) -> Scenario, one: &str, many: &str, default: u64) {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let (from, count) = match var(one) {
        Some(seed) => (seed, 1),
        None => (0, var(many).unwrap_or(default)),
    };
    let failures: Vec<String> = (from..from + count)
        .filter_map(|seed| {
            try_seed(Scenario {
                slot_engine_voters: 4,
                announce_fanout: 2,
                ..make(seed)
            })
            .err()
        })
        .collect();
    for f in &failures {
        eprintln!("{f} (with slot_engine_voters: 4, announce_fanout: 2; replay: {one}=<seed>)");
    }
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed",
        failures.len()
    );
}

#[test]
fn slot_engine_calm_network_finalizes_and_commits() {
    run_seed(Scenario {
        slot_engine_voters: 4,
        ..Scenario::calm(
            1,
            &[
                Tier::Bronze,
                Tier::Gold,
                Tier::Silver,
                Tier::Bronze,
                Tier::Bronze,
            ],
        )
    });
}

#[test]
fn slot_engine_node_that_misses_every_announcement_finalizes_by_asking() {
    // Certificates carry no txids: node 2 hears no announcement and must ask a certificate's
    // sender for each batch; every payment is still final on it (the run's liveness check).
    let report = Sim::new(Scenario {
        slot_engine_voters: 4,
        deaf_to_announcements: Some(2),
        ..Scenario::calm(3, &[Tier::Bronze; 5])
    })
    .run()
    .unwrap_or_else(|v| panic!("{v:?}"));
    assert!(report.finalized > 0);
    assert!(report.batch_requests > 0 && report.batch_answers > 0);
    assert_eq!(report.layer1_finals[2], report.finalized, "{report:?}");
}

#[test]
fn calm_network_finalizes_and_commits() {
    run_seed(Scenario::calm(1, &[Tier::Bronze; 4]));
}

#[test]
fn unequal_tiers_finalize_and_commit() {
    run_seed(Scenario::calm(
        2,
        &[
            Tier::Gold,
            Tier::Silver,
            Tier::Silver,
            Tier::Bronze,
            Tier::Gold,
            Tier::Bronze,
            Tier::Silver,
        ],
    ));
}

#[test]
fn same_seed_same_result() {
    let a = Sim::new(Scenario::random(7))
        .run()
        .map_err(|v| format!("{v:?}"));
    let b = Sim::new(Scenario::random(7))
        .run()
        .map_err(|v| format!("{v:?}"));
    assert!(a.is_ok(), "seed 7 must pass: {a:?}");
    assert_eq!(
        a.map(|r| (r.digest, r.heights, r.events)),
        b.map(|r| (r.digest, r.heights, r.events))
    );
}

/// Runs to `height`; panics with the seed on any violation.
fn run_to_height(sc: Scenario, height: u64) -> sim::Report {
    init_logs();
    let seed = sc.seed;
    match Sim::new(sc).run_until_height(height) {
        Ok(r) => r,
        Err(v) => panic!("seed {seed} failed: {v:?}"),
    }
}

/// Issue 11 §8: every honest node holds evidence against `offender`, and no honest node's
/// set counts it any more (a block carried the evidence).
fn assert_caught(report: &sim::Report, offender: timed::types::PublicKey) {
    assert!(!report.evidence_against.is_empty());
    for (i, held) in report.evidence_against.iter().enumerate() {
        assert!(
            held.contains(&offender),
            "honest node #{i} holds no evidence"
        );
    }
    for (i, voters) in report.voters.iter().enumerate() {
        assert!(
            !voters.contains(&offender),
            "honest node #{i} still counts the equivocator"
        );
    }
}

#[test]
fn twins_are_caught_by_evidence_and_leave_the_set() {
    let mut sc = Scenario::calm(3, &[Tier::Bronze; 5]);
    sc.nodes[4] = NodeSpec {
        tier: Tier::Bronze,
        byzantine: Some(Byzantine::Twin),
        twin_of: Some(0),
    };
    sc.nodes[0].byzantine = Some(Byzantine::Twin);
    // Slow, lossy links for a while: the twins' views of each round drift apart, so the
    // machines sharing the key sign different votes in one round.
    sc.max_delay = 400;
    sc.drop_rate = 0.2;
    sc.heal_at = 8_000;
    let report = run_to_height(sc, 12);
    assert_caught(&report, report.keys[0]);
}

#[test]
fn an_equivocator_is_caught_by_evidence_and_leaves_the_set() {
    let mut sc = Scenario::calm(5, &[Tier::Bronze; 4]);
    sc.nodes[3].byzantine = Some(Byzantine::Equivocate);
    let report = run_to_height(sc, 10);
    assert_caught(&report, report.keys[3]);
}

#[test]
fn signature_swapping_proposer_and_relay_never_get_a_body_stored() {
    // Weights 1 + 1 of 7: below a third. The run itself checks that every honest node's
    // stored blocks are byte-identical, verify, and replay from genesis on a fresh ledger.
    let mut sc = Scenario::calm(6, &[Tier::Bronze; 7]);
    sc.nodes[1].byzantine = Some(Byzantine::SwapSignaturesProposer);
    sc.nodes[2].byzantine = Some(Byzantine::SwapSignaturesRelay);
    sc.transfers = 30;
    let report = run_to_height(sc, 8);
    assert!(
        report.altered > 0,
        "the Byzantine nodes never got to swap a signature"
    );
}

#[test]
fn twins_sharing_a_key_never_commit_conflicting_blocks() {
    // Node 4 runs with node 0's key: two honest-looking machines that sign independently,
    // so they equivocate. Their key's weight is a quarter of the total: below a third.
    let mut sc = Scenario::calm(3, &[Tier::Bronze; 5]);
    sc.nodes[4] = NodeSpec {
        tier: Tier::Bronze,
        byzantine: Some(Byzantine::Twin),
        twin_of: Some(0),
    };
    sc.nodes[0].byzantine = Some(Byzantine::Twin);
    sc.double_spends = 4;
    sc.max_delay = 80;
    run_seed(sc);
}

/// A member floods validly signed votes for txids no one has, alongside double spends: the
/// per-voter bound and expiry keep its junk from costing more than it may, and honest
/// transfers still become final everywhere.
#[test]
fn a_junk_voting_member_stops_nothing() {
    for seed in 0..6 {
        let mut sc = Scenario::calm(seed, &[Tier::Bronze; 4]);
        sc.nodes[3].byzantine = Some(Byzantine::JunkVotes);
        sc.double_spends = 2;
        sc.drop_rate = 0.05;
        run_seed(sc);
    }
}

#[test]
fn silent_third_minus_one_cannot_stop_progress() {
    let mut sc = Scenario::calm(
        4,
        &[
            Tier::Silver,
            Tier::Silver,
            Tier::Silver,
            Tier::Bronze,
            Tier::Bronze,
        ],
    );
    // 10 of 32: below a third.
    sc.nodes[0].byzantine = Some(Byzantine::Silent);
    run_seed(sc);
}

#[test]
fn heavy_joins_and_leaves_during_conflicting_spends_never_split_finality() {
    if let Some(seed) = std::env::var("TIMED_SIM_SET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_seed(Scenario::set_changes(seed));
        return;
    }
    let seeds: u64 = std::env::var("TIMED_SIM_SET_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    // `TIMED_SIM_SET_SEEDS_FROM=<k>` starts at seed k, to split a long sweep.
    let from: u64 = std::env::var("TIMED_SIM_SET_SEEDS_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let failures: Vec<String> = (from..from + seeds)
        .filter_map(|seed| try_seed(Scenario::set_changes(seed)).err())
        .collect();
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed",
        failures.len()
    );
}

/// A node crashes, as by a power cut, while clients race conflicting spends: everything no
/// barrier covered is lost (`Storage::open_simulating_power_loss`).
fn power_cut(seed: u64) -> Scenario {
    let mut sc = Scenario::calm(seed, &[Tier::Bronze; 4]);
    sc.double_spends = 12;
    sc.transfers = 8;
    sc.submit_span = 2_000;
    let at = 150 + seed * 97 % 1_500;
    sc.crash = Some(((seed % 4) as usize, at, at + 400));
    // Liveness is judged after the restart, so every run has its cut.
    sc.heal_at = at + 1_000;
    sc
}

#[test]
fn power_cuts_during_conflicting_spends_lose_no_promise() {
    for seed in 0..16 {
        run_seed(power_cut(seed));
    }
}

/// Persist-before-promise is checked, not assumed: without the flush before a vote batch
/// leaves, a power cut loses locks the node voted for, it votes again for the other side of
/// a double spend, and the simulation catches an honest key signing both.
#[test]
fn a_missing_vote_barrier_is_caught() {
    init_logs();
    let mut outcomes = Vec::new();
    for seed in 0..64 {
        let mut sc = power_cut(seed);
        sc.vote_barrier = false;
        match Sim::new(sc).run() {
            Err(
                v @ (sim::Violation::HonestEquivocation { .. }
                | sim::Violation::ConflictingFinality { .. }),
            ) => {
                eprintln!("seed {seed}: without the barrier: {v:?}");
                return;
            }
            other => outcomes.push(format!("seed {seed}: {other:?}")),
        }
    }
    panic!(
        "no seed caught the missing barrier:\n{}",
        outcomes.join("\n")
    );
}

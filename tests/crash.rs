//! A real child process is killed with SIGKILL while it writes multi-tree batches; the
//! database must then open, and hold each batch entirely or not at all, and every batch the
//! child had flushed before the kill.
//!
//! The child is this same test binary re-run with `--ignored --exact crash_child_writer`, so
//! the test needs no extra binary and the writer uses the real `Storage` code.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use timed::storage::{Storage, TreeId, WriteBatch};

const DIR_ENV: &str = "TIMED_CRASH_TEST_DIR";
const START_ENV: &str = "TIMED_CRASH_TEST_START";
/// Trees every batch writes to, so a torn batch would show as a key present in some only.
const TREES: [TreeId; 4] = [
    TreeId::Peers,
    TreeId::Masternodes,
    TreeId::Consensus,
    TreeId::Commits,
];

fn batch_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Kills the child when dropped, so a failing assertion never leaves a process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "child process of kill9_mid_batch_leaves_whole_batches; run by that test"]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        panic!(
            "{DIR_ENV} is not set: this test is only run by kill9_mid_batch_leaves_whole_batches"
        );
    };
    let start: u64 = std::env::var(START_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let storage = Storage::open(std::path::Path::new(&dir), 64 << 20).unwrap();
    let payload = vec![0xabu8; 2048];
    for i in start.. {
        let mut batch = WriteBatch::new();
        for tree in TREES {
            let mut value = payload.clone();
            value.extend_from_slice(&i.to_be_bytes());
            batch.put_raw(tree, batch_key(i), value);
        }
        // Also move a counter, so each batch rewrites a key the previous one wrote.
        batch.put_raw(TreeId::Meta, b"crash_counter", i.to_be_bytes().to_vec());
        storage.commit(batch).unwrap();
        if i % 16 == 0 {
            storage.flush().unwrap();
            println!("flushed {i}");
        }
    }
}

fn spawn_writer(dir: &std::path::Path, start: u64) -> KillOnDrop {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(START_ENV, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// Reads the child's "flushed N" lines until it has flushed `target` batches past `start`.
fn wait_for_flushes(child: &mut KillOnDrop, start: u64, target: u64) -> u64 {
    let stdout = child.0.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("flushed ") {
            let n: u64 = n.trim().parse().unwrap();
            last = Some(n);
            if n >= start + target {
                return n;
            }
        }
        assert!(Instant::now() < deadline, "writer made no progress in time");
    }
    panic!("writer exited before flushing enough batches (last flushed: {last:?})");
}

#[test]
fn kill9_mid_batch_leaves_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut next_start = 0;
    for round in 0..3 {
        let mut child = spawn_writer(dir.path(), next_start);
        let flushed = wait_for_flushes(&mut child, next_start, 48 + round * 16);
        // SIGKILL: no destructor, no flush, wherever the writer is.
        child.0.kill().unwrap();
        child.0.wait().unwrap();

        let storage = Storage::open(dir.path(), 64 << 20).expect("database opens after kill -9");
        let mut i = 0;
        loop {
            let found: Vec<bool> = TREES
                .iter()
                .map(|t| storage.tree(*t).get(batch_key(i)).unwrap().is_some())
                .collect();
            assert!(
                found.iter().all(|f| *f) || found.iter().all(|f| !*f),
                "round {round}: batch {i} is torn: present in {found:?} of {TREES:?}"
            );
            if !found[0] {
                break;
            }
            for t in TREES {
                let v = storage.tree(t).get(batch_key(i)).unwrap().unwrap();
                assert_eq!(
                    &v[v.len() - 8..],
                    &i.to_be_bytes(),
                    "batch {i} value mixed up"
                );
            }
            i += 1;
        }
        // Batches land in order: none may exist after the first missing one.
        for j in i..i + 1000 {
            assert!(
                storage.tree(TREES[0]).get(batch_key(j)).unwrap().is_none(),
                "round {round}: batch {j} exists after missing batch {i}"
            );
        }
        assert!(
            i > flushed,
            "round {round}: flushed batch {flushed} was lost (only {i} survive)"
        );
        let counter = storage
            .tree(TreeId::Meta)
            .get(b"crash_counter")
            .unwrap()
            .unwrap();
        assert_eq!(
            counter.as_ref(),
            &(i - 1).to_be_bytes(),
            "counter disagrees with the batches"
        );
        next_start = i;
    }
}

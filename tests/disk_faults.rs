//! A node and its disk, with real `timed` processes: a data directory that fills up (a small
//! tmpfs) pauses the node with a clear error, log line, metric and `/ready` reason, and it
//! resumes by itself once space returns, having promised nothing it did not persist; a
//! read-only or damaged database stops the node at start with what to do, and the exit status
//! that keeps systemd from restarting it in a loop.
//!
//! The tmpfs tests need `mount` (root, or a user namespace that allows it); without it they
//! skip with a message.

mod cluster;

use cluster::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use timed::localnet::{LocalNode, LocalnetInfo};

/// The tmpfs for the data directory, and the reserve the node keeps on it.
const TMPFS_MB: u64 = 64;
const RESERVE_MB: u64 = 16;
/// How long a node without the guard may run on a full disk before a write fails.
const UNGUARDED_FILL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// A tmpfs mounted for the test's life (lazily unmounted on drop, even after a failure).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `mb` MiB at `at`, or says why it cannot.
    fn mount(at: &Path, mb: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount read-only");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts the test's tmpfs, or prints why the test skips.
fn tmpfs_or_skip(at: &Path, test: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(at, TMPFS_MB) {
        Ok(t) => Some(t),
        Err(why) => {
            eprintln!("skipping {test}: cannot mount a tmpfs ({why}); run as root to test it");
            None
        }
    }
}

/// A stopped localnet of `nodes` in `tmp`, with node `index`'s database copied onto a fresh
/// tmpfs: the mount, the localnet and the data directory there; None (the test skips) when
/// no tmpfs can be mounted.
fn on_tmpfs(
    tmp: &Path,
    nodes: u16,
    index: usize,
    test: &str,
) -> Option<(Tmpfs, LocalnetInfo, PathBuf)> {
    let fs = tmpfs_or_skip(&tmp.join("disk"), test)?;
    let info = stopped_localnet_of(nodes, &tmp.join("net"));
    let datadir = fs.0.join("data");
    copy_db(&info.nodes[index], &datadir);
    Some((fs, info, datadir))
}

/// Fills the tmpfs with a ballast file until half the reserve is left; its path.
fn fill_below_reserve(fs: &Tmpfs) -> PathBuf {
    let ballast = fs.0.join("ballast");
    let free = fs2::available_space(&fs.0).unwrap();
    let file = std::fs::File::create(&ballast).unwrap();
    fs2::FileExt::allocate(&file, free - (RESERVE_MB << 20) / 2).unwrap();
    ballast
}

/// Copies a stopped node's database into `datadir` (created), where the node will run.
fn copy_db(node: &LocalNode, datadir: &Path) {
    std::fs::create_dir_all(datadir.join("db")).unwrap();
    let from = node.datadir.join("db");
    let status = Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(datadir.join("db"))
        .status()
        .unwrap();
    assert!(status.success(), "copy the database");
}

/// `timed` for a localnet node, on `datadir`, keeping `reserve_mb` free.
fn node_command(node: &LocalNode, datadir: &Path, reserve_mb: u64) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_timed"));
    cmd.arg("--config")
        .arg(&node.config)
        .arg("--datadir")
        .arg(datadir)
        .args(["--min-free-disk-mb", &reserve_mb.to_string()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Starts the node with its output in `log`; its cookie is registered for `call`.
fn start_node(node: &LocalNode, datadir: &Path, log: &Path, procs: &mut Procs) -> u32 {
    let pid = spawn_command(node_command(node, datadir, RESERVE_MB), log, procs);
    register_cookie(&node.rpc_url, datadir.join(".cookie"));
    wait_for("the node to answer", || height(&node.rpc_url));
    pid
}

/// Runs the node to its end (it must refuse to start): exit status and output.
fn run_refused(node: &LocalNode, datadir: &Path) -> (Option<i32>, String) {
    let mut child = node_command(node, datadir, RESERVE_MB)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut procs = Procs(Vec::new(), vec![child.id()]);
    let status = wait_exit(&mut child, "the node to refuse to start");
    procs.1.clear();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status.code(), text)
}

fn metric(metrics_url: &str, name: &str) -> Option<f64> {
    let (_, body) = http_get(&format!("{metrics_url}/metrics"))?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

/// Whether `txid` is final at layer 1 or in a block on the node.
fn is_final(url: &str, txid: &str) -> bool {
    call(url, "getrawtransaction", json!([txid, true])).is_ok_and(|v| {
        v["instantlock"] == json!(true) || v.get("blockhash").is_some_and(|b| !b.is_null())
    })
}

#[test]
fn a_full_disk_pauses_the_node_and_freed_space_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((fs, info, datadir)) = on_tmpfs(tmp.path(), 1, 0, "the full-disk test") else {
        return;
    };
    let (url, metrics_url) = (&info.nodes[0].rpc_url, &info.nodes[0].metrics_url);
    let log = tmp.path().join("node.log");
    let mut procs = Procs(Vec::new(), Vec::new());
    let pid = start_node(&info.nodes[0], &datadir, &log, &mut procs);

    // Light load: a payment final and in a block before the disk fills.
    let (faucet, coins, have) = faucet_coins(&info, url);
    let payee = timed::types::SecretKey::generate();
    let (first, change, have) = send(url, &faucet, coins, have, 100_000_000, &payee);
    wait_final_and_confirmed(url, &first);
    let mut reported_final = vec![first];

    let ballast = fill_below_reserve(&fs);

    let (_, reason) = wait_for("/ready to say the disk is low", || {
        let (status, body) = http_get(&format!("{metrics_url}/ready"))?;
        (status == 503 && body.contains("disk low")).then_some((status, body))
    });
    assert!(reason.contains("min_free_disk_mb"), "{reason}");
    assert_eq!(metric(metrics_url, "timed_disk_low"), Some(1.0));
    let paused_at = height(url).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("disk low: the node stops taking new work"),
        "{text}"
    );

    // A submit is refused with -26 and the reason; nothing about it becomes final.
    let tx = timed::types::transfer::signed_transfer(
        NET,
        &faucet,
        &[change],
        vec![timed::types::TxOutput {
            amount: timed::types::Amount(have - 10_000),
            key_hash: payee.public_key().key_hash(),
        }],
    );
    let raw = hex::encode(timed::types::Canonical::to_bytes(&tx));
    match call(url, "sendrawtransaction", json!([raw])) {
        Err(timed::client::ClientError::Rpc { code, message, .. }) => {
            assert_eq!(code, -26, "{message}");
            assert!(
                message.contains("not taking new transactions")
                    && message.contains("free some space"),
                "{message}"
            );
        }
        other => panic!("a submit on a full disk must be refused, got {other:?}"),
    }
    assert!(!is_final(url, &tx.txid().to_hex()));
    // No block beyond the one a step in flight at the pause may have committed.
    assert!(height(url).unwrap() <= paused_at + 1);

    // Space returns: the node resumes by itself and finalizes again.
    std::fs::remove_file(&ballast).unwrap();
    wait_for("/ready to stop naming the disk", || {
        let (_, body) = http_get(&format!("{metrics_url}/ready"))?;
        (!body.contains("disk low")).then_some(())
    });
    assert_eq!(metric(metrics_url, "timed_disk_low"), Some(0.0));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("disk space back: the node takes new work again"));
    let second = call(url, "sendrawtransaction", json!([raw]))
        .expect("the same payment, sent again once space returned")
        .as_str()
        .unwrap()
        .to_string();
    wait_final_and_confirmed(url, &second);
    reported_final.push(second);
    assert!(height(url).unwrap() > paused_at + 1);

    // What the node reported final was durable: it survives kill -9 and a restart.
    signal(pid, "-KILL");
    wait_for("the killed node to be gone", || {
        process_gone(pid).then_some(())
    });
    start_node(
        &info.nodes[0],
        &datadir,
        &tmp.path().join("node2.log"),
        &mut procs,
    );
    for txid in &reported_final {
        assert!(
            is_final(url, txid),
            "{txid} was reported final before kill -9"
        );
    }
}

#[test]
fn without_the_guard_a_full_disk_stops_the_node_and_nothing_final_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((fs, info, datadir)) = on_tmpfs(tmp.path(), 1, 0, "the unguarded full-disk test")
    else {
        return;
    };
    let node = &info.nodes[0];
    let log = tmp.path().join("node.log");
    let mut procs = Procs(Vec::new(), Vec::new());
    // No reserve: sled meets the full disk itself.
    spawn_command(node_command(node, &datadir, 0), &log, &mut procs);
    register_cookie(&node.rpc_url, datadir.join(".cookie"));
    wait_for("the node to answer", || height(&node.rpc_url));
    let (faucet, coins, have) = faucet_coins(&info, &node.rpc_url);
    let payee = timed::types::SecretKey::generate();
    let (txid, _, _) = send(&node.rpc_url, &faucet, coins, have, 100_000_000, &payee);
    wait_final_and_confirmed(&node.rpc_url, &txid);

    // Every byte taken: the node goes on until a write fails, then stops rather than vote
    // without its locks on disk, with the status that has systemd restart it.
    let ballast = fs.0.join("ballast");
    let mut file = std::fs::File::create(&ballast).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    // Left in `procs`, so a failed wait still kills it.
    let child = &mut procs.0[0];
    // sled first fills the log segment it holds (up to 512 KiB at the chain's pace): longer
    // than `wait_for`'s deadline on a slow machine.
    let give_up = std::time::Instant::now() + UNGUARDED_FILL_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the node did not stop on a full disk"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(75), "{text}");
    assert!(
        text.contains("No space left on device") && text.contains("what to do: the disk holding"),
        "{text}"
    );

    // Space back, started again: what it reported final is there.
    std::fs::remove_file(&ballast).unwrap();
    start_node(node, &datadir, &tmp.path().join("node2.log"), &mut procs);
    assert!(is_final(&node.rpc_url, &txid), "{txid} was reported final");
}

#[test]
fn a_paused_masternode_lets_the_others_finalize_and_catches_up_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((fs, info, datadir)) = on_tmpfs(tmp.path(), 4, 3, "the paused-masternode test") else {
        return;
    };
    let mut procs = Procs(Vec::new(), Vec::new());
    for (i, node) in info.nodes[..3].iter().enumerate() {
        spawn_node(
            &node.config,
            &tmp.path().join(format!("node{i}.log")),
            &mut procs,
        );
    }
    // The fourth masternode (a quarter of the weight) runs on the small disk.
    let low = &info.nodes[3];
    start_node(low, &datadir, &tmp.path().join("node3.log"), &mut procs);
    let url = &info.nodes[0].rpc_url;
    let joined = wait_for("the network to commit blocks", || height(url)) + 2;
    wait_for("the fourth node to follow", || {
        height(&low.rpc_url).filter(|h| *h >= joined)
    });

    let ballast = fill_below_reserve(&fs);
    wait_for("the fourth node to pause", || {
        (metric(&low.metrics_url, "timed_disk_low")? == 1.0).then_some(())
    });

    // Three of four masternodes are a quorum: payments go on finalizing without it.
    let (faucet, coins, have) = faucet_coins(&info, url);
    let payee = timed::types::SecretKey::generate();
    let (txid, _, _) = send(url, &faucet, coins, have, 100_000_000, &payee);
    wait_final_and_confirmed(url, &txid);
    assert!(
        !is_final(&low.rpc_url, &txid),
        "a paused node takes in nothing"
    );

    std::fs::remove_file(&ballast).unwrap();
    wait_for("the fourth node to resume", || {
        (metric(&low.metrics_url, "timed_disk_low")? == 0.0).then_some(())
    });
    // It catches up by the normal sync: the payment's block reaches it.
    wait_final_and_confirmed(&low.rpc_url, &txid);
}

#[test]
fn a_read_only_data_directory_stops_the_node_at_start_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((fs, info, datadir)) = on_tmpfs(tmp.path(), 1, 0, "the read-only test") else {
        return;
    };
    fs.remount_read_only();
    let (code, out) = run_refused(&info.nodes[0], &datadir);
    // 78: the unit's RestartPreventExitStatus, since a restart cannot fix it.
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("read-only filesystem") && out.contains("Remount it read-write"),
        "{out}"
    );
    assert!(out.contains(&datadir.display().to_string()), "{out}");
}

#[test]
fn a_damaged_database_stops_the_node_at_start_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let info = stopped_localnet_of(1, &tmp.path().join("net"));
    let db_dir = info.nodes[0].datadir.join("db");
    assert!(
        db_dir.join(timed::node::CLEAN_STOP_FILE).exists(),
        "a clean stop leaves its mark"
    );
    let db_file = db_dir.join("db");
    let len = std::fs::metadata(&db_file).unwrap().len();
    // (damage, what the node must say): sled notices some damage itself; a log cut short
    // with its snapshot gone, sled reads as an older database, and the mark catches that.
    let cases: [(&str, Damage, &str); 3] = [
        (
            "bytes overwritten",
            &|d: &Path| {
                use std::io::{Seek, SeekFrom, Write};
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("db/db"))
                    .unwrap();
                f.seek(SeekFrom::Start(20)).unwrap();
                f.write_all(&[0xA5; 4096]).unwrap();
            },
            "damaged",
        ),
        (
            "log cut short",
            &|d: &Path| cut_log(d, len / 2),
            "lost data",
        ),
        ("log emptied", &|d: &Path| cut_log(d, 0), "no chain at all"),
    ];
    for (i, (what, damage, says)) in cases.into_iter().enumerate() {
        let datadir = tmp.path().join(format!("case{i}"));
        copy_db(&info.nodes[0], &datadir);
        damage(&datadir);
        let (code, out) = run_refused(&info.nodes[0], &datadir);
        assert_eq!(code, Some(78), "{what}: {out}");
        assert!(out.contains(says), "{what}: {out}");
        assert!(
            out.contains("is damaged") && out.contains("timed restore"),
            "{what}: {out}"
        );
    }
    // The undamaged copy still starts: the checks refuse only what is wrong.
    let datadir = tmp.path().join("intact");
    copy_db(&info.nodes[0], &datadir);
    let mut procs = Procs(Vec::new(), Vec::new());
    start_node(
        &info.nodes[0],
        &datadir,
        &tmp.path().join("intact.log"),
        &mut procs,
    );
}

/// Damage done to a copied data directory.
type Damage<'a> = &'a dyn Fn(&Path);

/// Cuts sled's log in `datadir` to `len` bytes and removes its snapshot files (with which
/// sled would notice the cut by itself).
fn cut_log(datadir: &Path, len: u64) {
    let db = datadir.join("db");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(db.join("db"))
        .unwrap();
    f.set_len(len).unwrap();
    for entry in std::fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap."))
        {
            std::fs::remove_file(path).unwrap();
        }
    }
}

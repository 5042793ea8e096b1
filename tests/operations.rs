//! What an operator relies on, with real `timed` processes: the systemd notification protocol
//! (READY=1 only once RPC answers, STATUS lines, watchdog pings, STOPPING=1 on SIGTERM), a
//! clean exit that removes the cookie and a restart that resumes the stopped chain, the data
//! directory lock that refuses a second node, logs (journald, JSON, levels), and
//! `--print-config` with its precedence and origins.

mod cluster;

use cluster::*;
use serde_json::json;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use timed::storage::Storage;

/// A single-masternode localnet, created by `timed localnet` and stopped again: its node's
/// config file, RPC URL (cookie registered) and data directory.
fn one_node_chain(dir: &Path) -> (PathBuf, String, PathBuf) {
    let info = stopped_localnet_of(1, dir);
    let node = &info.nodes[0];
    (
        node.config.clone(),
        node.rpc_url.clone(),
        node.datadir.clone(),
    )
}

/// `timed` with exactly the environment a test gives it (none of the caller's `TIMED_*`,
/// `RUST_LOG` or systemd variables).
fn timed() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_timed"));
    for (name, _) in std::env::vars_os() {
        let clear = name.to_str().is_some_and(|n| {
            n.starts_with("TIMED_")
                || matches!(
                    n,
                    "RUST_LOG"
                        | "NOTIFY_SOCKET"
                        | "WATCHDOG_USEC"
                        | "WATCHDOG_PID"
                        | "JOURNAL_STREAM"
                        | "STATE_DIRECTORY"
                )
        });
        if clear {
            cmd.env_remove(name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn spawn_logged(mut cmd: Command, log: &Path, procs: &mut Procs) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    procs.1.push(child.id());
    child
}

/// The datagrams a node sends to its `$NOTIFY_SOCKET`.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(path: PathBuf) -> NotifySocket {
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        NotifySocket {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    /// Waits for a datagram with the line `line` (or starting with it, for `STATUS=`),
    /// failing at once if the node exits first.
    fn wait_for(&mut self, line: &str, node: &mut Child, log: &Path) -> String {
        wait_for(&format!("{line} from the node"), || {
            if let Ok(Some(status)) = node.try_wait() {
                panic!(
                    "the node exited ({status}) before sending {line}; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            let mut buf = [0u8; 4096];
            let n = self.sock.recv(&mut buf).ok()?;
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            self.seen.push(msg.clone());
            msg.lines().any(|l| l.starts_with(line)).then_some(msg)
        })
    }
}

#[test]
fn systemd_notify_lock_sigterm_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, url, datadir) = one_node_chain(&tmp.path().join("net"));
    let mut procs = Procs(Vec::new(), Vec::new());
    let mut notify = NotifySocket::bind(tmp.path().join("notify.sock"));

    // Under "journald": JOURNAL_STREAM names the node's stderr (its log file here).
    let log = tmp.path().join("node.log");
    std::fs::File::create(&log).unwrap();
    let journal_stream = {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&log).unwrap();
        format!("{}:{}", meta.dev(), meta.ino())
    };
    let mut cmd = timed();
    cmd.arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "2000000")
        .env("JOURNAL_STREAM", &journal_stream);
    let out = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut node = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let pid = node.id();
    procs.1.push(pid);

    // READY=1 comes once RPC is bound: the RPC answers the moment it arrives.
    let ready = notify.wait_for("READY=1", &mut node, &log);
    assert!(ready.contains("STATUS=running at block"), "{ready}");
    let height = call(&url, "getblockcount", json!([]));
    assert!(height.is_ok(), "RPC after READY=1: {height:?}");
    // Status lines for `systemctl status`, and watchdog pings at half of WATCHDOG_USEC.
    notify.wait_for("STATUS=synced at block", &mut node, &log);
    notify.wait_for("WATCHDOG=1", &mut node, &log);

    // Journald adds its own timestamps: the node's text lines carry none.
    let text = std::fs::read_to_string(&log).unwrap();
    let running = text
        .lines()
        .find(|l| l.contains("timed running"))
        .unwrap_or_else(|| panic!("no start line in:\n{text}"));
    assert!(
        running.trim_start().starts_with("INFO"),
        "a timestamp under journald: {running}"
    );

    // A second node on the same data directory is refused before it touches anything.
    let cookie = datadir.join(".cookie");
    let cookie_before = std::fs::read_to_string(&cookie).unwrap();
    let second: Output = timed().arg("--config").arg(&cfg).output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!(
            "data directory {} is in use by another timed process (pid {pid})",
            datadir.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&cookie).unwrap(), cookie_before);
    assert!(call(&url, "getblockcount", json!([])).is_ok());
    let h_before_stop = height.unwrap().as_u64().unwrap();

    // SIGTERM: STOPPING=1, exit 0, cookie gone, lock released.
    signal(pid, "-TERM");
    notify.wait_for("STOPPING=1", &mut node, &log);
    let status = wait_exit(&mut node, "the node to stop");
    assert!(status.success(), "exit {status}");
    assert!(!cookie.exists(), "the cookie outlived the node");
    // What the node flushed is where it stopped.
    let stopped_at = {
        let storage = Storage::open_default(&datadir.join("db")).unwrap();
        storage.tip().unwrap().expect("a tip")
    };
    assert!(stopped_at.height >= h_before_stop);

    // The restart resumes exactly there; this run logs JSON, and RUST_LOG beats log_level.
    let log2 = tmp.path().join("node2.log");
    let mut cmd = timed();
    cmd.arg("--config")
        .arg(&cfg)
        .args(["--log-format", "json", "--log-level", "error"])
        .env("RUST_LOG", "warn,timed::node=info");
    let mut node = spawn_logged(cmd, &log2, &mut procs);
    wait_for("the restarted node's RPC", || {
        call(&url, "getblockcount", json!([])).ok()
    });
    let hash = call(&url, "getblockhash", json!([stopped_at.height])).unwrap();
    assert_eq!(hash, json!(stopped_at.hash.to_hex()));
    let text = std::fs::read_to_string(&log2).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string()), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "timed running"),
        "RUST_LOG did not win over log_level: {text}"
    );
    assert!(
        lines.iter().all(|l| l["level"] != "INFO"
            || l["target"]
                .as_str()
                .unwrap_or("")
                .starts_with("timed::node")),
        "an info line from outside timed::node: {text}"
    );
    signal(node.id(), "-TERM");
    assert!(wait_exit(&mut node, "the restarted node to stop").success());
}

#[test]
fn print_config_shows_precedence_and_origins() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("timed.toml");
    std::fs::write(
        &cfg,
        "network = \"testnet\"\nrpc_bind = \"127.0.0.1:30001\"\nmax_inbound = 9\n\
         listen = \"127.0.0.1:30000\"\n",
    )
    .unwrap();
    let out = timed()
        .arg("--print-config")
        .args(["--rpc-bind", "127.0.0.1:31001"])
        .env("TIMED_CONFIG", &cfg)
        .env("TIMED_RPC_BIND", "127.0.0.1:32001")
        .env("TIMED_MAX_OUTBOUND", "5")
        .env("TIMED_PEERS", "127.0.0.1:7,127.0.0.1:8")
        .env("TIMED_RPC_PASSWORD", "do-not-print-this-one")
        .env("STATE_DIRECTORY", "/var/lib/timed")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} =")) || l.starts_with(&format!("# {key} ")))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let file = format!("config file {}", cfg.display());
    assert!(text.contains(&format!(
        "# config file: {} (env TIMED_CONFIG)",
        cfg.display()
    )));
    assert_eq!(line("network"), format!("network = \"testnet\" # {file}"));
    assert_eq!(
        line("rpc_bind"),
        "rpc_bind = \"127.0.0.1:31001\" # flag --rpc-bind"
    );
    assert_eq!(
        line("max_outbound"),
        "max_outbound = 5 # env TIMED_MAX_OUTBOUND"
    );
    assert_eq!(
        line("peers"),
        "peers = [\"127.0.0.1:7\", \"127.0.0.1:8\"] # env TIMED_PEERS"
    );
    assert_eq!(line("max_inbound"), format!("max_inbound = 9 # {file}"));
    assert_eq!(
        line("datadir"),
        "datadir = \"/var/lib/timed\" # systemd $STATE_DIRECTORY"
    );
    assert_eq!(
        line("metrics_bind"),
        "metrics_bind = \"127.0.0.1:31002\" # default"
    );
    assert_eq!(
        line("rpc_password"),
        "# rpc_password = (hidden) # env TIMED_RPC_PASSWORD"
    );
    assert!(!text.contains("do-not-print-this-one"));
    assert!(text.contains("# genesis is not set"));
    // Printing works without a genesis; the reason the node would not start is shown.
    assert!(
        text.contains("# NOT VALID, the node refuses to start: config key `rpc_user`"),
        "{text}"
    );

    // A bad value from the environment stops the node before it creates anything.
    let datadir = tmp.path().join("never");
    let out = timed()
        .arg("--config")
        .arg(&cfg)
        .arg("--datadir")
        .arg(&datadir)
        .env("TIMED_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config key `listen` = \"nowhere\" is not valid: an IP address and port"),
        "{err}"
    );
    assert!(!datadir.exists());

    // A bad flag value is clap's error, naming the flag and the value.
    let out = timed()
        .args(["--print-config", "--max-inbound", "many"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-inbound") && err.contains("many"),
        "{err}"
    );
}

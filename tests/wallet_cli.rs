//! `timed wallet` and `timed rpc` as a person runs them: real `timed` processes, a real
//! localnet, and what the commands print and exit with, errors included.

mod cluster;

use cluster::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use timed::types::Network;

/// Runs `timed` with `args` in a clean environment (no TIMED_* variables; HOME in `home`, so
/// no default data directory of the machine's user is read).
fn timed(home: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_timed"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TIMED_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run timed")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `timed` and expects success; its stdout.
fn ok(home: &Path, args: &[&str]) -> String {
    let o = timed(home, args);
    assert!(
        o.status.success(),
        "timed {args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs `timed` and expects it to fail with exit code 1; its stderr.
fn fails(home: &Path, args: &[&str]) -> String {
    fails_with(1, home, args)
}

/// Runs `timed` and expects it to fail with exit code `code`; its stderr.
fn fails_with(code: i32, home: &Path, args: &[&str]) -> String {
    let o = timed(home, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "timed {args:?} should fail: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn keys_round_trip_and_an_absent_node_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let key = home.join("alice.key");
    let addr = ok(
        home,
        &[
            "--network",
            "localnet",
            "wallet",
            "new",
            "--out",
            path(&key),
        ],
    );
    let addr = addr.trim();
    assert!(addr.starts_with("TIME0"), "{addr}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = fails(
        home,
        &[
            "--network",
            "localnet",
            "wallet",
            "new",
            "--out",
            path(&key),
        ],
    );
    assert!(again.contains("refusing to overwrite"), "{again}");
    let shown = ok(
        home,
        &[
            "--network",
            "localnet",
            "wallet",
            "address",
            "--key",
            path(&key),
        ],
    );
    assert_eq!(shown.trim(), addr);
    // keygen, the older name, still works; mainnet addresses start with TIME1.
    let k2 = home.join("k2.key");
    assert!(ok(home, &["keygen", "--out", path(&k2)]).starts_with("TIME1"));

    // A node's keys as a genesis entry names them: an entry made of them is accepted.
    let keys: serde_json::Value =
        serde_json::from_str(&ok(home, &["masternode-keys", "--key", path(&key)])).unwrap();
    let genesis = serde_json::json!({
        "network": "localnet",
        "timestamp_ms": 1,
        "block_interval_ms": 1000,
        "allocations": [],
        "masternodes": [{
            "tier": "bronze",
            "operator_key": keys["operator_key"],
            "owner": addr,
            "p2p_addr": "127.0.0.1:1",
            "bls_key": keys["bls_key"],
            "bls_pop": keys["bls_pop"],
        }],
    });
    let parsed =
        timed::config::genesis::GenesisFile::parse(&genesis.to_string(), Network::Localnet);
    assert!(parsed.is_ok(), "{parsed:?}");
    let e = fails(
        home,
        &["masternode-keys", "--key", path(&home.join("none"))],
    );
    assert!(e.contains("none"), "{e}");

    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let e = fails(
        home,
        &[
            "--network",
            "localnet",
            "wallet",
            "balance",
            "--rpc",
            &url,
            "--address",
            addr,
        ],
    );
    assert!(
        e.contains(&format!("cannot reach the node at {url}")),
        "{e}"
    );
    assert!(
        e.contains("is timed running? start it with `timed localnet`"),
        "{e}"
    );
    let e = fails(home, &["rpc", "--rpc", &url, "getblockcount"]);
    assert!(e.contains("cannot reach the node"), "{e}");
}

#[test]
fn wallet_and_rpc_against_a_localnet() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let dir = home.join("net");
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, free_base_port(4), &mut procs);
    let node = &info.nodes[0];
    let url = node.rpc_url.as_str();
    let cookie = path(&node.rpc_cookie);
    let faucet = path(&info.faucet.key_file);
    let rpc = ["--rpc", url, "--rpc-cookie", cookie];

    // The node's network decides the address when no flag names one.
    let shown = ok(
        home,
        &[&["wallet", "address", "--key", faucet], &rpc[..]].concat(),
    );
    assert_eq!(shown.trim(), info.faucet.address);

    let (alice_key, alice) = new_wallet(home, "alice");
    let alice = alice.as_str();

    // Pay Alice and wait until final.
    let sent = ok(
        home,
        &[
            &[
                "wallet", "send", "--key", faucet, "--to", alice, "--amount", "2.5", "--wait",
            ],
            &rpc[..],
        ]
        .concat(),
    );
    let mut lines = sent.lines();
    let txid = lines.next().unwrap_or_default().to_string();
    assert_eq!(txid.len(), 64, "{sent}");
    assert!(
        lines.next().is_some_and(|l| l.starts_with("final in ")),
        "{sent}"
    );

    // The balance, with the cookie found from the data directory instead of --rpc-cookie
    // (sent because --rpc names that data directory's node, its config's rpc_bind).
    let node_dir = node.rpc_cookie.parent().unwrap();
    let config = node_dir.join("timed.toml");
    let balance = ok(
        home,
        &[
            "--config",
            path(&config),
            "wallet",
            "balance",
            "--rpc",
            url,
            "--key",
            path(&alice_key),
        ],
    );
    assert!(balance.contains("balance     2.50000000 TIME"), "{balance}");
    // Once in a block, the output shows as confirmed; URL and cookie come from the config.
    wait_final_and_confirmed(url, &txid);
    let utxos = ok(
        home,
        &[
            "--config",
            path(&config),
            "wallet",
            "utxos",
            "--address",
            alice,
        ],
    );
    let line = utxos
        .lines()
        .find(|l| l.starts_with(&format!("{txid}:0")))
        .unwrap_or_else(|| panic!("no {txid}:0 in {utxos}"));
    assert!(line.contains("2.50000000"), "{line}");
    assert!(line.contains("confirmed, height"), "{line}");

    // Errors a person can act on, and exit code 1.
    let e = fails(
        home,
        &[
            &[
                "wallet",
                "send",
                "--key",
                path(&alice_key),
                "--to",
                &info.faucet.address,
                "--amount",
                "100",
            ],
            &rpc[..],
        ]
        .concat(),
    );
    assert!(e.contains("insufficient funds"), "{e}");
    assert!(e.contains("has 2.50000000 TIME spendable"), "{e}");
    assert!(e.contains("needs 100.0"), "{e}");

    let last = if alice.ends_with('x') { 'y' } else { 'x' };
    let mistyped = format!("{}{last}", &alice[..alice.len() - 1]);
    let e = fails(
        home,
        &[
            &[
                "wallet", "send", "--key", faucet, "--to", &mistyped, "--amount", "1",
            ],
            &rpc[..],
        ]
        .concat(),
    );
    assert!(e.contains("bad --to address"), "{e}");
    assert!(e.contains(&mistyped), "{e}");

    let e = fails(
        home,
        &[
            "wallet",
            "balance",
            "--rpc",
            url,
            "--rpc-user",
            "mallory",
            "--rpc-password",
            "not-the-password",
            "--address",
            alice,
        ],
    );
    assert!(e.contains("refused the credentials"), "{e}");
    assert!(e.contains("check --rpc-cookie / --rpc-user"), "{e}");

    // timed rpc: raw results, bitcoin-cli's error block and exit status (|code| mod 256).
    let count: u64 = ok(home, &[&["rpc"], &rpc[..], &["getblockcount"]].concat())
        .trim()
        .parse()
        .expect("a block count");
    assert!(count >= 1);
    let hash = ok(home, &[&["rpc"], &rpc[..], &["getblockhash", "0"]].concat());
    assert_eq!(hash.trim().len(), 64, "a bare hash, not JSON: {hash}");
    let tx = ok(
        home,
        &[&["rpc"], &rpc[..], &["getrawtransaction", &txid, "true"]].concat(),
    );
    let tx: serde_json::Value = serde_json::from_str(&tx).expect("pretty JSON");
    assert_eq!(tx["txid"], serde_json::json!(txid));
    let e = fails_with(89, home, &[&["rpc"], &rpc[..], &["nosuchmethod"]].concat());
    assert!(e.starts_with("error code: -32601\nerror message:\n"), "{e}");
    let e = fails_with(
        8,
        home,
        &[&["rpc"], &rpc[..], &["getblockhash", "99999999"]].concat(),
    );
    assert!(e.starts_with("error code: -8\nerror message:\n"), "{e}");
    let e = fails_with(
        5,
        home,
        &[&["rpc"], &rpc[..], &["getblock", &"0".repeat(64)]].concat(),
    );
    assert!(e.starts_with("error code: -5\nerror message:\n"), "{e}");
}

#[test]
fn history_lists_net_amounts_newest_last() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let dir = home.join("net");
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, free_base_port(4), &mut procs);
    let node = &info.nodes[0];
    let url = node.rpc_url.as_str();
    let rpc = ["--rpc", url, "--rpc-cookie", path(&node.rpc_cookie)];
    let faucet = path(&info.faucet.key_file);
    let (alice_key, alice) = new_wallet(home, "alice");
    let alice = alice.as_str();
    let send = |key: &str, to: &str, amount: &str| -> String {
        let out = ok(
            home,
            &[
                &[
                    "wallet", "send", "--key", key, "--to", to, "--amount", amount, "--wait",
                ],
                &rpc[..],
            ]
            .concat(),
        );
        out.lines().next().unwrap_or_default().to_string()
    };
    let paid = send(faucet, alice, "2.5");
    let back = send(path(&alice_key), &info.faucet.address, "1");
    wait_final_and_confirmed(url, &back);

    let history = ok(
        home,
        &[&["wallet", "history", "--key", path(&alice_key)], &rpc[..]].concat(),
    );
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(lines[0].starts_with(&paid), "{history}");
    assert!(lines[0].contains("+2.50000000 TIME  height "), "{history}");
    // Alice paid 1 TIME and the fee.
    assert!(lines[1].starts_with(&back), "{history}");
    assert!(lines[1].contains("-1.0000"), "{history}");
    assert!(lines[1].contains(" TIME  height "), "{history}");

    // The faucet: its genesis output first; --last keeps the newest, whose input's previous
    // output (outside the window) is fetched for the net amount.
    let faucet_history = ok(
        home,
        &[
            &["wallet", "history", "--address", &info.faucet.address],
            &rpc[..],
        ]
        .concat(),
    );
    let first = faucet_history.lines().next().unwrap_or_default();
    assert!(
        first.contains("+1000000.00000000 TIME  height 0"),
        "{faucet_history}"
    );
    let newest = ok(
        home,
        &[
            &[
                "wallet",
                "history",
                "--address",
                &info.faucet.address,
                "--last",
                "1",
            ],
            &rpc[..],
        ]
        .concat(),
    );
    assert_eq!(newest.lines().count(), 1, "{newest}");
    assert!(newest.starts_with(&back), "{newest}");
    assert!(newest.contains("+1.00000000 TIME"), "{newest}");
}

/// `timed wallet new` for a localnet key in `home`: the key file and its address.
fn new_wallet(home: &Path, name: &str) -> (std::path::PathBuf, String) {
    let key = home.join(format!("{name}.key"));
    let address = ok(
        home,
        &[
            "--network",
            "localnet",
            "wallet",
            "new",
            "--out",
            path(&key),
        ],
    );
    (key, address.trim().to_string())
}

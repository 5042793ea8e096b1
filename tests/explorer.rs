//! The block explorer as people use it: a real localnet of `timed` processes, plain HTTP
//! for what a script sees, and a real browser (Debian's chromium, headless, driven through
//! chromedriver) for what a person sees: the tip rising on screen, a transfer sent with
//! `timed wallet send` appearing live, its page showing the quorum certificate, the address
//! page showing the new balance, and a bad search saying what is wrong.
//!
//! Screenshots of each page go to `target/tmp/explorer-screenshots/`. Without a browser (none
//! installed and none installable) the browser part is skipped with the reason printed.

mod browser;
mod cluster;

use cluster::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use timed::client;

/// Runs `timed` with `args` (no `TIMED_*` variables of the caller); its stdout, or the test
/// fails with what it printed.
fn timed_ok(args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_timed"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TIMED_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run timed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "timed {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// GET `url`: status and body (any status).
fn get(url: &str) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(30))
        .build();
    match agent.get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn get_json(url: &str) -> Option<Value> {
    let (status, body) = get(url);
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn the_explorer_shows_the_chain_live_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new(), Vec::new());
    let base = free_base_port(5);
    let info = start_localnet(dir.path(), base, &mut procs);
    let node0 = &info.nodes[0];
    let explorer = node0.explorer_url.clone();
    assert_eq!(
        explorer,
        format!("{}/explorer/", node0.metrics_url),
        "localnet.json names each node's explorer on its metrics port"
    );

    // The RPC methods behind the block and masternode pages: who signed a block, with what
    // weight, and which masternodes signed recently.
    let rpc = &node0.rpc_url;
    let hash = wait_for("block 1", || call(rpc, "getblockhash", json!([1])).ok());
    let commit = call(rpc, "getblockcommit", json!([hash])).unwrap();
    assert_eq!(commit["height"], 1);
    let signers = commit["signers"].as_array().unwrap().len() as u64;
    assert_eq!(
        commit["weight"], signers,
        "four bronze masternodes weigh 1 each"
    );
    assert!(signers >= commit["quorum"].as_u64().unwrap(), "{commit}");
    let genesis = call(rpc, "getblockhash", json!([0])).unwrap();
    let none = call(rpc, "getblockcommit", json!([genesis])).unwrap_err();
    assert!(
        matches!(&none, client::ClientError::Rpc { code: -5, message, .. } if message.contains("genesis has none")),
        "{none}"
    );
    let activity = call(rpc, "masternodeactivity", json!([10])).unwrap();
    let signed_lately = activity["masternodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["last_signed_height"].as_u64().is_some_and(|h| h >= 1))
        .count();
    assert!(signed_lately >= 3, "a quorum signed recently: {activity}");
    let bad = call(rpc, "masternodeactivity", json!([0])).unwrap_err();
    assert!(
        matches!(bad, client::ClientError::Rpc { code: -8, .. }),
        "{bad}"
    );

    // What a script sees, on the metrics port beside /metrics.
    let (status, page) = get(&explorer);
    assert_eq!(status, 200);
    assert!(page.contains("TimeCoin explorer"));
    assert!(get(&format!("{}/metrics", node0.metrics_url))
        .1
        .contains("timed_chain_height"));
    let (status, body) = get(&format!("{explorer}api/search?q=nonsense"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("nonsense is not a block height"), "{body}");
    let post = ureq::post(&format!("{explorer}api/summary")).send_string("{}");
    assert!(matches!(post, Err(ureq::Error::Status(405, _))), "{post:?}");

    // A node whose explorer has a port of its own, serving nothing else, with a small rate.
    let own = free_port();
    let (cfg, _) = extra_node(
        dir.path(),
        "viewer",
        &info.genesis,
        base + 40,
        &node0.p2p_addr,
        &format!("explorer = \"127.0.0.1:{own}\"\nexplorer_rate_limit = 5\n"),
    );
    spawn_node(&cfg, &dir.path().join("viewer.log"), &mut procs);
    let own_url = format!("http://127.0.0.1:{own}");
    wait_for("the viewer's explorer to show blocks", || {
        let s = get_json(&format!("{own_url}/explorer/api/summary"))?;
        (s["height"].as_u64()? >= 1).then_some(())
    });
    assert_eq!(get(&format!("{own_url}/metrics")).0, 404);
    // Five a second, ten in a burst: back-to-back requests soon get 429.
    let refused = (0..200)
        .map(|_| get(&format!("{own_url}/explorer/explorer.css")))
        .find(|(status, _)| *status == 429);
    let (_, why) = refused.expect("HTTP 429 once past the rate limit");
    assert!(why.contains("slow down"), "{why}");

    // What a person sees.
    let browser = match browser::Browser::launch() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIPPED the browser part of the explorer test: {why}");
            return;
        }
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer-screenshots");
    let shot = |name: &str| {
        let file = shots.join(format!("{name}.png"));
        browser.screenshot(&file).unwrap();
        eprintln!("screenshot: {}", file.display());
    };
    browser.goto(&explorer).unwrap();
    let height_on_screen = || {
        browser
            .text("#tip-height")
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let first = wait_for("the tip height on screen", height_on_screen);
    wait_for("the live feed to connect", || {
        (browser.text("#live")? == "live").then_some(())
    });
    wait_for("the tip to rise on screen without a reload", || {
        height_on_screen().filter(|h| *h > first + 1)
    });
    wait_for("the recent blocks with their commit signers", || {
        let cell = browser.text("#blocks tr td:last-child")?;
        cell.contains("signers").then_some(())
    });
    shot("1-home");

    // A transfer sent with the wallet appears live on the page.
    let alice_key = dir.path().join("alice.key");
    let alice = timed_ok(&[
        "--network",
        "localnet",
        "wallet",
        "new",
        "--out",
        path(&alice_key),
    ])
    .trim()
    .to_string();
    let sent = timed_ok(&[
        "--config",
        path(&node0.config),
        "wallet",
        "send",
        "--key",
        path(&info.faucet.key_file),
        "--to",
        &alice,
        "--amount",
        "1.5",
        "--wait",
    ]);
    let txid = sent
        .split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no txid in: {sent}"))
        .to_string();
    wait_for("the transfer among the live finalized transactions", || {
        (browser.count(&format!("#finals tr[data-txid=\"{txid}\"]")) == 1).then_some(())
    });
    shot("2-home-with-transfer");

    // Search takes the user to its page, which shows the votes that made it final.
    browser
        .script(&format!(
            "document.querySelector('#search-input').value = '{txid}';\
             document.querySelector('#search button').click();"
        ))
        .unwrap();
    wait_for("the transaction confirmed on its page", || {
        (browser.text("#tx-state")? == "confirmed").then_some(())
    });
    let signers = browser.count("#certificate .cert-row");
    let page = browser.script("return document.body.innerText;").unwrap();
    let votes = page.as_str().unwrap_or_default();
    assert!(
        signers >= 3,
        "the certificate shows a quorum (3 of 4 bronze masternodes): {signers} rows in {votes}"
    );
    assert!(
        votes.contains("weight 3 / quorum 3") || votes.contains("weight 4 / quorum 3"),
        "{votes}"
    );
    assert!(browser
        .text("#block-commit")
        .is_some_and(|t| t.contains("signers")));
    let took = browser.text("#time-to-finality");
    assert!(
        took.as_deref().is_some_and(|t| t.contains(" ms")),
        "the page shows how long finality took: {took:?} in {votes}"
    );
    shot("3-transaction");

    // A bad query says what was wrong.
    browser
        .script(
            "document.querySelector('#search-input').value = 'abc123';\
             document.querySelector('#search button').click();",
        )
        .unwrap();
    let why = wait_for("the search error", || {
        let hidden = browser.script("return document.querySelector('#search-error').hidden;");
        let text = browser.text("#search-error")?;
        (hidden.ok()? == Value::Bool(false)).then_some(text)
    });
    assert!(
        why.contains("64 hexadecimal characters; abc123 has 6"),
        "{why}"
    );
    shot("4-bad-search");

    // The address page shows the new balance and the payment in its history.
    browser
        .goto(&format!("{explorer}#/address/{alice}"))
        .unwrap();
    wait_for("alice's balance on her page", || {
        (browser.text("#balance")? == "1.50000000 TIME").then_some(())
    });
    assert_eq!(browser.count("#history .history-row"), 1);
    shot("5-address");

    // The other pages load and show what they list.
    browser.goto(&format!("{explorer}#/masternodes")).unwrap();
    wait_for("four masternodes", || {
        (browser.count(".masternode-row") == 4).then_some(())
    });
    shot("6-masternodes");
    for (page, heading) in [("pool", "Pool"), ("peers", "Peers")] {
        browser.goto(&format!("{explorer}#/{page}")).unwrap();
        wait_for(page, || {
            browser.text("h1").filter(|h| h.starts_with(heading))
        });
        assert!(browser.text("#view-error").is_none());
        shot(&format!("7-{page}"));
    }
    let block_page = format!("{explorer}#/block/1");
    browser.goto(&block_page).unwrap();
    wait_for("block 1 with its commit certificate", || {
        (browser.count("#commit .signer-row") >= 3).then_some(())
    });
    shot("8-block");
}

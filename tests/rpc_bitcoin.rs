//! The RPC server as Bitcoin clients see it, on a real 4-node localnet: every listed method
//! through JSON-RPC 1.0 requests (no `jsonrpc` field, `text/plain`, cookie auth) and 2.0
//! requests, Bitcoin's result shapes and error codes, a transaction built, signed and sent
//! with raw-transaction calls and seen final over a WebSocket subscription, and hostile
//! requests the node survives.

mod cluster;

use base64::Engine;
use cluster::*;
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::time::{Duration, Instant};
use timed::rpc_api::catalog::METHODS;

/// A plain HTTP client with the node's cookie: nothing of timed's own client.
struct Rpc {
    url: String,
    auth: String,
    /// A fresh connection per request: a kept-alive one the node closed meanwhile fails a
    /// POST with "broken pipe" (ureq does not retry POSTs), which is not what is tested here.
    agent: ureq::Agent,
}

impl Rpc {
    fn new(url: &str, cookie: &std::path::Path) -> Rpc {
        let pair = std::fs::read_to_string(cookie).unwrap();
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.trim())
        );
        Rpc::with_auth(url, auth)
    }

    fn with_auth(url: &str, auth: String) -> Rpc {
        Rpc {
            url: url.to_string(),
            auth,
            agent: ureq::AgentBuilder::new().max_idle_connections(0).build(),
        }
    }

    /// POSTs `body`; returns the HTTP status and body, whatever the status.
    fn raw(&self, body: &str, content_type: Option<&str>) -> (u16, String) {
        self.try_raw(body, content_type)
            .unwrap_or_else(|e| panic!("transport error: {e}"))
    }

    /// [`Self::raw`], with a transport error returned rather than a panic.
    fn try_raw(&self, body: &str, content_type: Option<&str>) -> Result<(u16, String), String> {
        let mut req = (self.agent.post(&self.url))
            .timeout(Duration::from_secs(60))
            .set("Authorization", &self.auth);
        if let Some(ct) = content_type {
            req = req.set("Content-Type", ct);
        }
        match req.send_string(body) {
            Ok(r) => Ok((r.status(), r.into_string().map_err(|e| e.to_string())?)),
            Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A Bitcoin-style 1.0 call: checks the legacy reply shape and bitcoind's HTTP status.
    fn v1(&self, method: &str, params: Value) -> Result<Value, (i64, String)> {
        let body = json!({"method": method, "params": params, "id": "t"}).to_string();
        let (status, text) = self.raw(&body, Some("text/plain"));
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method}: {text}"));
        let o = v.as_object().unwrap();
        assert!(
            o.contains_key("result") && o.contains_key("error"),
            "{method}: {v}"
        );
        assert!(
            !o.contains_key("jsonrpc"),
            "{method}: a 1.0 reply has no jsonrpc field"
        );
        assert_eq!(v["id"], "t");
        if v["error"].is_null() {
            assert_eq!(status, 200);
            Ok(v["result"].clone())
        } else {
            assert!(v["result"].is_null());
            let code = v["error"]["code"].as_i64().unwrap();
            let want = match code {
                -32601 => 404,
                -32600 => 400,
                _ => 500,
            };
            assert_eq!(status, want, "{method}: bitcoind's status for {code}");
            Err((code, v["error"]["message"].as_str().unwrap().to_string()))
        }
    }

    /// A strict JSON-RPC 2.0 call.
    fn v2(&self, method: &str, params: Value) -> Result<Value, (i64, String)> {
        let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 7});
        let (status, text) = self.raw(&body.to_string(), Some("application/json"));
        assert_eq!(status, 200, "{method}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], 7);
        match v.get("error") {
            None => Ok(v["result"].clone()),
            Some(e) => {
                assert!(v.get("result").is_none(), "2.0 errors carry no result");
                Err((
                    e["code"].as_i64().unwrap(),
                    e["message"].as_str().unwrap().to_string(),
                ))
            }
        }
    }

    /// Both dialects agree (for reads that do not change between the two calls).
    fn both(&self, method: &str, params: Value) -> Value {
        let a = self
            .v1(method, params.clone())
            .unwrap_or_else(|e| panic!("{method}: {e:?}"));
        let b = self
            .v2(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e:?}"));
        assert_eq!(a.is_object(), b.is_object(), "{method}");
        a
    }

    fn code(&self, method: &str, params: Value) -> i64 {
        let one = self
            .v1(method, params.clone())
            .err()
            .unwrap_or_else(|| panic!("{method} {params} must fail"))
            .0;
        let two = self.v2(method, params).err().unwrap().0;
        assert_eq!(one, two, "{method}: same code in both dialects");
        one
    }
}

#[test]
fn bitcoin_clients_work_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(dir.path(), free_base_port(4), &mut procs);
    let node = &info.nodes[0];
    let rpc = Rpc::new(&node.rpc_url, &node.rpc_cookie);
    wait_for("blocks", || (height(&node.rpc_url)? >= 2).then_some(()));
    wait_for("peers", || {
        (call(&node.rpc_url, "getconnectioncount", json!([]))
            .ok()?
            .as_u64()?
            == 3)
            .then_some(())
    });

    let covered = reads_and_errors(&rpc, &info);
    let mut covered2 = raw_transaction_flow(&rpc, &info);
    a_batch_of_transfers(&rpc, &info);
    covered2.extend(covered);
    hostile_requests_leave_it_serving(&rpc);
    rate_limit_and_salted_credentials(dir.path(), &info, &mut procs);
    covered2.extend(files_on_the_node(&rpc, dir.path()));
    // Every method of the catalog was driven (stop last, below).
    for m in METHODS {
        assert!(
            m.name == "stop" || covered2.contains(&m.name),
            "{} was not exercised",
            m.name
        );
    }
    // `stop` answers, then the process exits 0 and removes its cookie.
    assert_eq!(rpc.v1("stop", json!([])).unwrap(), "timed stopping");
    let pid = node.pid.expect("a started node has a pid");
    wait_for("node 0 stopped", || {
        (!node.rpc_cookie.exists() && cluster::process_gone(pid)).then_some(())
    });
    a_corrupt_record_is_a_database_error(node, &mut procs);
}

/// A block record damaged on disk while the node was stopped: the node starts, answers -20
/// for that block, and goes on serving everything else.
fn a_corrupt_record_is_a_database_error(node: &timed::localnet::LocalNode, procs: &mut Procs) {
    let lock = wait_for("node 0's lock", || {
        timed::storage::DataDirLock::acquire(&node.datadir).ok()
    });
    let h1 = {
        let storage = timed::storage::Storage::open(&node.datadir.join("db"), 16 << 20).unwrap();
        let h1 = storage.block_hash_at(1).unwrap().unwrap();
        cluster::damage_block_body(&storage, &node.datadir.join("db"), &h1);
        h1
    };
    drop(lock);
    spawn_node(&node.config, &node.log.with_extension("restart.log"), procs);
    let rpc = wait_for("node 0 back", || {
        node.rpc_cookie.exists().then_some(())?;
        let rpc = Rpc::new(&node.rpc_url, &node.rpc_cookie);
        rpc.v2("getblockcount", json!([])).ok().map(|_| rpc)
    });
    let (code, message) = rpc.v1("getblock", json!([h1.to_hex()])).unwrap_err();
    assert_eq!(code, -20, "{message}");
    assert!(message.contains("Database error"), "{message}");
    assert_eq!(rpc.code("getblockheader", json!([h1.to_hex()])), -20);
    assert!(rpc.both("getblockhash", json!([2])).is_string());
}

/// Reads in both dialects and each error code; returns the methods it called.
fn reads_and_errors(rpc: &Rpc, info: &timed::localnet::LocalnetInfo) -> Vec<&'static str> {
    let zero = "0".repeat(64);
    let info_v = rpc.both("getblockchaininfo", json!([]));
    assert_eq!(info_v["chain"], "localnet");
    assert!(info_v["blocks"].as_u64().unwrap() >= 2);
    assert!(rpc.both("getblockcount", json!([])).as_u64().is_some());
    assert_eq!(
        rpc.both("getbestblockhash", json!([]))
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let h1 = rpc.both("getblockhash", json!([1]));
    assert_eq!(rpc.code("getblockhash", json!([-1])), -8);
    assert_eq!(
        rpc.code("getblockhash", json!(["one"])),
        -3,
        "wrong JSON type"
    );
    assert_eq!(
        rpc.code("getblockhash", json!([])),
        -32602,
        "missing argument"
    );
    let b = rpc.both("getblock", json!([h1]));
    assert_eq!(b["height"], 1);
    assert!(b["tx"][0].is_string());
    assert!(rpc.both("getblock", json!([h1, 0])).is_string());
    assert!(rpc.both("getblock", json!([h1, 2]))["tx"][0]["txid"].is_string());
    // Named parameters, as python-bitcoinlib and others send them.
    let named = rpc
        .v1("getblock", json!({"blockhash": h1, "verbosity": 2}))
        .unwrap();
    assert!(named["tx"][0]["vout"].is_array());
    assert_eq!(rpc.v1("getblock", json!({"hash": h1})).unwrap_err().0, -8);
    assert_eq!(rpc.code("getblock", json!([zero])), -5);
    assert_eq!(rpc.code("getblock", json!(["xyz"])), -8);
    let header = rpc.both("getblockheader", json!([h1]));
    assert_eq!(header["hash"], h1);
    assert!(header.get("tx").is_none());
    assert!(rpc.both("getblockheader", json!([h1, false])).is_string());

    // The UTXO set: its commitment is the one the best block's header carries.
    let set = wait_for("a stable tip", || {
        let set = rpc.v1("gettxoutsetinfo", json!([])).ok()?;
        let best = rpc.v1("getblock", json!([set["bestblock"]])).ok()?;
        (best["utxocommitment"] == set["utxocommitment"]).then_some(set)
    });
    assert!(set["txouts"].as_u64().unwrap() >= 1);
    assert!(set["total_amount"].as_f64().unwrap() >= 1_000_000.0);
    assert_eq!(
        set["commitment_type"], "lthash16",
        "the header's commitment since schema 8"
    );
    let _ = rpc.both("gettxoutsetinfo", json!([]));

    let mp = rpc.both("getmempoolinfo", json!([]));
    assert!(mp["size"].is_u64() && mp["mempoolminfee"].is_f64());
    assert!(rpc.both("getrawmempool", json!([])).is_array());
    assert!(rpc.both("getrawmempool", json!([true])).is_object());
    assert_eq!(rpc.code("getmempoolentry", json!([zero])), -5);
    assert_eq!(rpc.code("getrawtransaction", json!([zero, true])), -5);
    assert_eq!(rpc.code("decoderawtransaction", json!(["zz"])), -22);
    let fee = rpc.both("estimatesmartfee", json!([6]));
    assert!(fee["feerate"].as_f64().unwrap() > 0.0);
    assert_eq!(rpc.code("estimatesmartfee", json!([0])), -8);

    let addr = &info.faucet.address;
    assert_eq!(rpc.both("validateaddress", json!([addr]))["isvalid"], true);
    assert_eq!(
        rpc.both("validateaddress", json!(["TIME1nope"]))["isvalid"],
        false
    );

    let net = rpc.both("getnetworkinfo", json!([]));
    assert_eq!(net["connections"], 3);
    assert!(net["subversion"].as_str().unwrap().starts_with("/timed:"));
    assert_eq!(
        rpc.both("getpeerinfo", json!([])).as_array().unwrap().len(),
        3
    );
    assert_eq!(rpc.both("getconnectioncount", json!([])), 3);
    assert!(rpc
        .v1("addnode", json!(["127.0.0.1:9", "add"]))
        .unwrap()
        .is_null());
    assert_eq!(rpc.code("addnode", json!(["127.0.0.1:9", "add"])), -23);
    assert!(rpc
        .v2("addnode", json!(["127.0.0.1:9", "remove"]))
        .unwrap()
        .is_null());
    assert_eq!(rpc.code("addnode", json!(["127.0.0.1:9", "remove"])), -24);
    assert_eq!(rpc.code("addnode", json!(["nowhere", "add"])), -8);
    assert!(rpc
        .v1("setban", json!(["192.0.2.7", "add", 600]))
        .unwrap()
        .is_null());
    assert_eq!(rpc.code("setban", json!(["192.0.2.7", "add"])), -23);
    let banned = rpc.both("listbanned", json!([]));
    assert!(banned
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["address"] == "192.0.2.7"));
    assert!(rpc
        .v1("setban", json!(["192.0.2.7", "remove"]))
        .unwrap()
        .is_null());
    assert_eq!(rpc.code("setban", json!(["192.0.2.7", "remove"])), -30);
    assert_eq!(rpc.code("setban", json!(["not-an-ip", "add"])), -30);
    // A node key is banned from every address; listbanned shows it beside the IPs.
    let key = timed::types::SecretKey::generate().public_key().to_hex();
    assert!(rpc
        .v1("setban", json!([key, "add", 600]))
        .unwrap()
        .is_null());
    assert_eq!(rpc.code("setban", json!([key, "add"])), -23);
    let banned = rpc.both("listbanned", json!([]));
    assert!(banned
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["address"] == json!(key) && b["type"] == "node_key"));
    assert!(rpc.v2("setban", json!([key, "remove"])).unwrap().is_null());
    assert_eq!(rpc.code("setban", json!([key, "remove"])), -30);
    assert!(rpc
        .v1("setban", json!(["192.0.2.8", "add"]))
        .unwrap()
        .is_null());
    assert!(rpc.v1("clearbanned", json!([])).unwrap().is_null());
    assert!(rpc
        .both("listbanned", json!([]))
        .as_array()
        .unwrap()
        .is_empty());

    let cons = rpc.both("getconsensusinfo", json!([]));
    for key in [
        "height",
        "round",
        "step",
        "proposer",
        "quorum_weight",
        "last_block_time",
    ] {
        assert!(cons.get(key).is_some(), "getconsensusinfo.{key}");
    }
    assert_eq!(
        rpc.both("masternodelist", json!([]))
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(rpc.both("masternodestatus", json!([]))["status"], "ENABLED");
    assert_eq!(
        rpc.both("masternodestatus", json!([zero]))["status"],
        "NOT_REGISTERED"
    );
    assert!(
        rpc.both("listevidence", json!([]))
            .as_array()
            .unwrap()
            .is_empty(),
        "an honest localnet holds no equivocation evidence"
    );
    // Who signed block 1 with what weight, and which masternodes signed lately.
    let commit = rpc.both("getblockcommit", json!([h1]));
    assert_eq!(commit["hash"], h1);
    assert!(commit["weight"].as_u64().unwrap() >= commit["quorum"].as_u64().unwrap());
    assert_eq!(rpc.code("getblockcommit", json!([zero])), -5);
    let activity = rpc.both("masternodeactivity", json!([]));
    assert_eq!(activity["masternodes"].as_array().unwrap().len(), 4);
    assert_eq!(rpc.code("masternodeactivity", json!([0])), -8);
    assert!(rpc.both("uptime", json!([])).is_u64());
    let help = rpc.both("help", json!([]));
    assert!(help.as_str().unwrap().contains("getblockcount"));
    assert!(rpc
        .both("help", json!(["getblock"]))
        .as_str()
        .unwrap()
        .starts_with("getblock blockhash"));
    assert_eq!(rpc.code("help", json!(["nosuchmethod"])), -8);
    assert_eq!(rpc.code("nosuchmethod", json!([])), -32601);
    assert_eq!(rpc.code("listunspent", json!([])), -8);

    vec![
        "getblockchaininfo",
        "getblockcount",
        "getbestblockhash",
        "getblockhash",
        "getblock",
        "getblockheader",
        "gettxoutsetinfo",
        "getmempoolinfo",
        "getrawmempool",
        "getmempoolentry",
        "estimatesmartfee",
        "validateaddress",
        "getnetworkinfo",
        "getpeerinfo",
        "getconnectioncount",
        "addnode",
        "setban",
        "listbanned",
        "clearbanned",
        "getconsensusinfo",
        "masternodelist",
        "masternodestatus",
        "listevidence",
        "getblockcommit",
        "masternodeactivity",
        "uptime",
        "help",
        "decoderawtransaction",
    ]
}

/// createrawtransaction + signrawtransactionwithkey + sendrawtransaction, final through
/// gettransactionfinality and a WebSocket subscription; then -27 and -26; address queries.
fn raw_transaction_flow(rpc: &Rpc, info: &timed::localnet::LocalnetInfo) -> Vec<&'static str> {
    let faucet_key = std::fs::read_to_string(&info.faucet.key_file).unwrap();
    let faucet = &info.faucet.address;
    let coins = rpc.both("listunspent", json!([0, 9_999_999, [faucet]]));
    let coin = coins[0].clone();
    assert_eq!(coin["address"], *faucet);
    let utxos = rpc.both("getaddressutxos", json!([{"addresses": [faucet]}]));
    assert_eq!(utxos[0]["txid"], coin["txid"]);
    let value = coin["amount"].as_f64().unwrap();
    let out = rpc.both("gettxout", json!([coin["txid"], coin["vout"]]));
    assert_eq!(out["value"].as_f64().unwrap(), value);
    let bob = timed::types::SecretKey::generate();
    let bob_addr =
        timed::types::Address::from_public_key(cluster::NET, &bob.public_key()).to_string();
    let change = value - 5.0 - 0.001;
    let unsigned = rpc
        .both(
            "createrawtransaction",
            json!([[{"txid": coin["txid"], "vout": coin["vout"]}], {bob_addr.clone(): 5.0, faucet.clone(): change}]),
        )
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        rpc.code("createrawtransaction", json!([[], {"TIME1bad": 1}])),
        -5
    );
    let signed = rpc.both(
        "signrawtransactionwithkey",
        json!([unsigned, [faucet_key.trim()]]),
    );
    assert_eq!(signed["complete"], true);
    let wrong = rpc.both(
        "signrawtransactionwithkey",
        json!([unsigned, [hex::encode(bob.to_bytes())]]),
    );
    assert_eq!(wrong["complete"], false);
    let hex_tx = signed["hex"].as_str().unwrap().to_string();
    let decoded = rpc.both("decoderawtransaction", json!([hex_tx]));

    // Subscribe before sending, then send once over 1.0.
    let mut ws = Subscriber::connect(&rpc.url, &rpc.auth, "subscribefinality", json!([]));
    let mut watch = Subscriber::connect(
        &rpc.url,
        &rpc.auth,
        "subscribeaddresses",
        json!([[bob_addr]]),
    );
    let mut blocks = Subscriber::connect(&rpc.url, &rpc.auth, "subscribeblocks", json!([]));
    let txid = rpc.v1("sendrawtransaction", json!([hex_tx])).unwrap();
    assert_eq!(txid, decoded["txid"]);
    ws.wait_for(|n| n["txid"] == txid);
    watch.wait_for(|n| n["txid"] == txid && n["address"] == bob_addr);
    blocks.wait_for(|n| n["height"].is_u64() && n["hash"].is_string());
    // A bad address is refused; one connection holds at most 32 subscriptions.
    let bad = blocks.call(2, "subscribeaddresses", json!([["TIME0bad"]]));
    assert_eq!(bad["error"]["code"], -8, "{bad}");
    for id in 3..34 {
        let r = blocks.call(id, "subscribefinality", json!([]));
        assert!(r.get("result").is_some(), "subscription {id}: {r}");
    }
    let over = blocks.call(40, "subscribefinality", json!([]));
    assert!(over.get("error").is_some(), "the 33rd subscription: {over}");
    // One connection may have 64 calls running: of 80 ten-second waits (long, so none ends
    // before the last is sent, however loaded the machine), the last 16 are refused at once.
    let unknown = "22".repeat(32);
    for id in 100..180 {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": "waittransactionfinality", "params": [unknown, 10]});
        blocks
            .socket
            .send(tungstenite::Message::text(req.to_string()))
            .unwrap();
    }
    let mut refused = 0;
    let mut answered = 0;
    let deadline = Instant::now() + DEADLINE;
    while answered < 80 {
        let v = blocks.next_json(deadline).expect("replies to the waits");
        if v["id"].as_u64().is_some_and(|id| id >= 100) {
            answered += 1;
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            if msg.contains("in flight") {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 16, "64 run, the rest are refused");
    let fin = rpc.both("waittransactionfinality", json!([txid, 60]));
    assert_eq!(fin["final"], true);
    let fin = rpc.both("gettransactionfinality", json!([txid]));
    assert!(fin["weight"].as_u64().unwrap() >= fin["quorum"].as_u64().unwrap());
    if fin["state"] == "final" {
        let batches = fin["certificate"]["batches"].as_array().unwrap();
        assert!(!batches.is_empty() && batches[0]["voter"].is_string());
        // Sent to this node and made final here: it knows how long that took.
        assert!(fin["time_to_finality_ms"].is_u64(), "{fin}");
    }
    let raw = rpc.both("getrawtransaction", json!([txid, true]));
    assert_eq!(raw["instantlock"], true);
    assert!(raw["finalized"]["quorum"].is_u64());

    // The same transaction again: already final (-27). A double spend of the coin: -26.
    assert_eq!(rpc.code("sendrawtransaction", json!([hex_tx])), -27);
    let double = rpc
        .v2(
            "createrawtransaction",
            json!([[{"txid": coin["txid"], "vout": coin["vout"]}], {bob_addr.clone(): 1.0}]),
        )
        .unwrap();
    let double = rpc
        .v2(
            "signrawtransactionwithkey",
            json!([double, [faucet_key.trim()]]),
        )
        .unwrap();
    assert_eq!(rpc.code("sendrawtransaction", json!([double["hex"]])), -26);
    // Inputs that do not exist: signing refuses them, and a transaction signed elsewhere
    // spending them gets -25.
    let ghost = rpc
        .v2(
            "createrawtransaction",
            json!([[{"txid": "11".repeat(32), "vout": 0}], {bob_addr.clone(): 1.0}]),
        )
        .unwrap();
    let ghost_signed = rpc
        .v2(
            "signrawtransactionwithkey",
            json!([ghost, [faucet_key.trim()]]),
        )
        .unwrap();
    assert_eq!(ghost_signed["complete"], false);
    let key = timed::config::keyfile::read(&info.faucet.key_file).unwrap();
    let missing = timed::types::transfer::signed_transfer(
        cluster::NET,
        &key,
        &[timed::types::OutPoint::new(
            timed::types::Hash32([0x11; 32]),
            0,
        )],
        vec![timed::types::TxOutput {
            amount: timed::types::Amount(100_000_000),
            key_hash: bob.public_key().key_hash(),
        }],
    );
    use timed::types::Canonical;
    assert_eq!(
        rpc.code(
            "sendrawtransaction",
            json!([hex::encode(missing.to_bytes())])
        ),
        -25
    );
    assert_eq!(rpc.code("sendrawtransaction", json!(["00"])), -22);
    // The spent coin is gone from gettxout; bob's history and balance show the payment.
    assert!(rpc
        .both("gettxout", json!([coin["txid"], coin["vout"]]))
        .is_null());
    let txids = rpc.both("getaddresstxids", json!([{"addresses": [bob_addr]}]));
    assert_eq!(txids, json!([txid]));
    let bal = rpc.both("getaddressbalance", json!([[bob_addr]]));
    assert_eq!(bal["balance"], 500_000_000u64);
    vec![
        "listunspent",
        "getaddressutxos",
        "gettxout",
        "createrawtransaction",
        "signrawtransactionwithkey",
        "sendrawtransaction",
        "waittransactionfinality",
        "gettransactionfinality",
        "getrawtransaction",
        "getaddresstxids",
        "getaddressbalance",
        "backup",
        "dumptxoutset",
    ]
}

/// A JSON-RPC batch of transfers, as an exchange sends its withdrawals: every call answered
/// in order as if sent alone, and a read after the transfers in the same batch sees them
/// (the node checks a batch's transfers together: `rpc::batch`).
fn a_batch_of_transfers(rpc: &Rpc, info: &timed::localnet::LocalnetInfo) {
    use timed::types::{Amount, Canonical, OutPoint, SecretKey, TxOutput};
    const COIN: u64 = 100_000_000;
    const FEE: u64 = 100_000;
    let key = timed::config::keyfile::read(&info.faucet.key_file).unwrap();
    let faucet = key.public_key().key_hash();
    let coins = rpc.both("listunspent", json!([0, 9_999_999, [info.faucet.address]]));
    let coin = (coins.as_array().unwrap().iter())
        .max_by(|a, b| {
            a["amount"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["amount"].as_f64().unwrap())
        })
        .unwrap()
        .clone();
    let atoms = (coin["amount"].as_f64().unwrap() * COIN as f64).round() as u64;
    let coin_txid = timed::types::Hash32::from_hex(coin["txid"].as_str().unwrap()).unwrap();
    let carol = SecretKey::generate();
    let to = |key_hash, amount| TxOutput {
        amount: Amount(amount),
        key_hash,
    };
    // Six coins for carol, each then sent back in its own transfer.
    let mut outputs = vec![to(carol.public_key().key_hash(), COIN); 6];
    outputs.push(to(faucet, atoms - 6 * COIN - FEE));
    let split = timed::types::transfer::signed_transfer(
        cluster::NET,
        &key,
        &[OutPoint::new(
            coin_txid,
            coin["vout"].as_u64().unwrap() as u32,
        )],
        outputs,
    );
    let split_id = rpc.both("sendrawtransaction", json!([hex::encode(split.to_bytes())]));
    assert_eq!(
        rpc.both("waittransactionfinality", json!([split_id, 60]))["final"],
        true
    );
    let transfers: Vec<timed::types::Transaction> = (0..6)
        .map(|j| {
            timed::types::transfer::signed_transfer(
                cluster::NET,
                &carol,
                &[OutPoint::new(split.txid(), j)],
                vec![to(faucet, COIN - FEE)],
            )
        })
        .collect();
    let hex_of = |t: &timed::types::Transaction| hex::encode(t.to_bytes());
    let mut batch: Vec<Value> = (transfers.iter().enumerate())
        .map(|(j, t)| json!({"jsonrpc": "2.0", "id": j, "method": "sendrawtransaction", "params": [hex_of(t)]}))
        .collect();
    let last = transfers[5].txid().to_hex();
    batch.push(json!({"jsonrpc": "2.0", "id": "read", "method": "getrawtransaction", "params": [last, true]}));
    batch.push(
        json!({"id": "again", "method": "sendrawtransaction", "params": [hex_of(&transfers[0])]}),
    );
    let (status, body) = rpc.raw(&Value::Array(batch).to_string(), None);
    assert_eq!(status, 200, "{body}");
    let replies: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(replies.len(), 8, "{body}");
    for (j, t) in transfers.iter().enumerate() {
        assert_eq!(replies[j]["id"], j, "{body}");
        assert_eq!(replies[j]["result"], t.txid().to_hex(), "{body}");
    }
    assert_eq!(replies[6]["id"], "read");
    assert_eq!(replies[6]["result"]["txid"], last, "{body}");
    // Sent again: the same txid while it waits for votes, -27 once final (bitcoind's dialect).
    let again = &replies[7];
    assert_eq!(again["id"], "again");
    assert!(
        again["result"] == transfers[0].txid().to_hex() || again["error"]["code"] == -27,
        "{again}"
    );
    for t in &transfers {
        let fin = rpc.both("waittransactionfinality", json!([t.txid().to_hex(), 60]));
        assert_eq!(fin["final"], true, "{fin}");
    }
}

/// Oversized bodies, a 10,000-entry batch, invalid JSON, wrong types, unknown methods,
/// wrong credentials: each gets an error, and the node keeps serving.
fn hostile_requests_leave_it_serving(rpc: &Rpc) {
    // The node answers 413 once it has read the length and closes: a client still writing
    // the body may see the connection closed under it instead (a broken pipe or a reset),
    // which is the same refusal. Either way the node goes on serving (below).
    match rpc.try_raw(&"x".repeat(9 << 20), Some("text/plain")) {
        Ok((status, _)) => assert_eq!(status, 413),
        Err(e) => assert!(
            e.contains("Broken pipe") || e.contains("reset"),
            "an oversized body was neither refused with 413 nor cut off: {e}"
        ),
    }
    let batch: Vec<Value> = (0..10_000)
        .map(|i| json!({"method": "getblockcount", "id": i}))
        .collect();
    let (_, text) = rpc.raw(&Value::Array(batch).to_string(), None);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], -32600);
    let small: Vec<Value> = (0..50)
        .map(|i| json!({"method": "getblockcount", "id": i}))
        .chain([json!({"jsonrpc": "2.0", "method": "nosuch", "id": "x"})])
        .collect();
    let (status, text) = rpc.raw(&Value::Array(small).to_string(), Some("application/json"));
    assert_eq!(status, 200);
    let replies: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(replies.len(), 51);
    assert!(replies
        .iter()
        .any(|r| r["id"] == "x" && r["error"]["code"] == -32601));
    let (status, text) = rpc.raw("{\"method\": \"getblockcount\", ", Some("text/plain"));
    assert_eq!(status, 500);
    assert!(text.contains("-32700"));
    let (status, _) = rpc.raw("[]", None);
    assert_eq!(status, 400);
    assert_eq!(rpc.code("getblock", json!([{"not": "a hash"}])), -3);
    let intruder = Rpc::with_auth(&rpc.url, "Basic X19jb29raWVfXzp3cm9uZw==".into());
    let started = Instant::now();
    let resp = ureq::post(&intruder.url)
        .set("Authorization", &intruder.auth)
        .send_string("{}");
    assert!(matches!(resp, Err(ureq::Error::Status(401, _))));
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Still serving, in both dialects.
    assert!(rpc.v1("getblockcount", json!([])).unwrap().is_u64());
    assert!(rpc.v2("getblockcount", json!([])).unwrap().is_u64());
}

/// A WebSocket subscriber (plain tungstenite, Basic auth header).
struct Subscriber {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
}

impl Subscriber {
    fn connect(url: &str, auth: &str, method: &str, params: Value) -> Subscriber {
        use tungstenite::client::IntoClientRequest;
        let ws_url = url.replacen("http://", "ws://", 1);
        let mut req = ws_url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", auth.parse().unwrap());
        let (mut socket, _) = tungstenite::connect(req).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_mut() {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        }
        let sub = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        socket
            .send(tungstenite::Message::text(sub.to_string()))
            .unwrap();
        let mut s = Subscriber { socket };
        let reply = s
            .next_json(Instant::now() + DEADLINE)
            .expect("subscription reply");
        assert!(reply.get("result").is_some(), "{method}: {reply}");
        s
    }

    /// Sends one more call on this connection and returns its reply (skipping
    /// notifications).
    fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.socket
            .send(tungstenite::Message::text(req.to_string()))
            .unwrap();
        let deadline = Instant::now() + DEADLINE;
        while let Some(v) = self.next_json(deadline) {
            if v["id"] == id {
                return v;
            }
        }
        panic!("no reply to {method}");
    }

    fn next_json(&mut self, deadline: Instant) -> Option<Value> {
        while Instant::now() < deadline {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(t)) => return serde_json::from_str(&t).ok(),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("websocket: {e}"),
            }
        }
        None
    }

    /// Reads notifications until one's result satisfies `f`.
    fn wait_for(&mut self, f: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while let Some(n) = self.next_json(deadline) {
            if f(&n["params"]["result"]) {
                return;
            }
        }
        panic!("no matching notification before the deadline");
    }
}

/// A node with `rpc_rate_limit = 5` and an `rpc_auth` entry: the salted credential works,
/// a burst past the limit gets HTTP 429, and a second later it serves again.
fn rate_limit_and_salted_credentials(
    dir: &std::path::Path,
    info: &timed::localnet::LocalnetInfo,
    procs: &mut Procs,
) {
    // Bitcoin's rpcauth.py scheme: HMAC-SHA256 keyed by the salt over the password.
    let salt = "3a1f7c";
    let hash = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(salt.as_bytes()).unwrap();
        mac.update(b"horse battery");
        hex::encode(mac.finalize().into_bytes())
    };
    let port = free_base_port(1);
    let (cfg, url) = extra_node(
        dir,
        "limited",
        &info.genesis,
        port,
        &info.nodes[0].p2p_addr,
        &format!("rpc_rate_limit = 5\nrpc_auth = [\"carol:{salt}${hash}\"]"),
    );
    spawn_node(&cfg, &dir.join("limited.log"), procs);
    let carol = Rpc::with_auth(
        &url,
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("carol:horse battery")
        ),
    );
    wait_for("the limited node's RPC", || {
        std::thread::sleep(Duration::from_millis(300));
        carol.v2("getblockcount", json!([])).ok()
    });
    let statuses: Vec<u16> = (0..40)
        .map(|_| carol.raw(r#"{"method":"uptime","id":1}"#, None).0)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    wait_for("the rate limit to refill", || {
        std::thread::sleep(Duration::from_millis(500));
        carol.v1("uptime", json!([])).ok()
    });
}

/// The methods that write files on the node's machine (tests/backup.rs checks the files):
/// both dialects, names resolved in the node's backup directory, and the refusals (-8) of
/// an existing file and of anything outside that directory.
fn files_on_the_node(rpc: &Rpc, dir: &std::path::Path) -> Vec<&'static str> {
    let b = rpc.v1("backup", json!(["a.tbak"])).unwrap();
    assert!(b["height"].is_u64(), "{b}");
    assert!(
        b["path"].as_str().unwrap().ends_with("/backups/a.tbak"),
        "{b}"
    );
    assert!(rpc.v2("backup", json!(["b.tbak"])).unwrap()["height"].is_u64());
    let s = rpc.v1("dumptxoutset", json!(["a.tsnp"])).unwrap();
    assert!(
        s["base_height"].is_u64() && s["coins_written"].is_u64(),
        "{s}"
    );
    assert!(rpc.v2("dumptxoutset", json!(["b.tsnp"])).unwrap()["base_hash"].is_string());
    assert_eq!(
        rpc.code("backup", json!(["a.tbak"])),
        -8,
        "never overwrites"
    );
    let outside = dir.join("outside.tbak");
    assert_eq!(
        rpc.code("backup", json!([outside.to_str().unwrap()])),
        -8,
        "outside the backup directory"
    );
    assert!(!outside.exists());
    assert_eq!(rpc.code("dumptxoutset", json!(["../up.tsnp"])), -8);
    assert_eq!(
        rpc.code("backup", json!(["no/such/dir/c.tbak"])),
        -8,
        "a directory that does not exist"
    );
    vec!["backup", "dumptxoutset"]
}

//! Issue 11 §1 on real `timed` processes: what layer 1 makes final, layer 2 always includes.
//!
//! * A masternode registration and a spend of its collateral offered within one block
//!   interval, in either order: at most one becomes final, and blocks keep coming.
//! * Final transactions totalling well over one block's byte limit: blocks fill up to the
//!   limit and carry the rest, until every one is confirmed.

mod cluster;

use cluster::*;
use serde_json::json;
use timed::config::keyfile;
use timed::types::codec::MAX_BLOCK_BYTES;
use timed::types::transfer::{signed_transfer, signed_with_payload};
use timed::types::{
    Address, Amount, Canonical, Hash32, MasternodeRegistration, OutPoint, SecretKey, Tier,
    Transaction, TxOutput, TxPayload,
};

/// The faucet's largest coin, as the node at `url` sees it.
fn faucet_coin(url: &str, faucet: &SecretKey) -> (OutPoint, u64) {
    let addr = Address::from_public_key(NET, &faucet.public_key()).to_string();
    wait_for("the faucet's coins", || {
        let list = call(url, "getaddressutxos", json!([[addr]])).ok()?;
        list.as_array()?
            .iter()
            .filter_map(|u| {
                let txid = Hash32::from_hex(u["txid"].as_str()?).ok()?;
                let index = u32::try_from(u["outputIndex"].as_u64()?).ok()?;
                Some((OutPoint::new(txid, index), u["satoshis"].as_u64()?))
            })
            .max_by_key(|(_, atoms)| *atoms)
    })
}

fn submit(url: &str, tx: &Transaction) -> Result<(), String> {
    call(
        url,
        "sendrawtransaction",
        json!([hex::encode(tx.to_bytes())]),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Submits until the node has it: a busy node may not answer within the client's timeout,
/// which does not mean it refused.
fn submit_surely(url: &str, tx: &Transaction) {
    wait_for(&format!("{url} to accept {}", tx.txid()), || {
        match submit(url, tx) {
            Ok(()) => Some(()),
            Err(e) if e.contains("already") => Some(()),
            Err(_) => None,
        }
    });
}

fn out(to: &SecretKey, atoms: u64) -> TxOutput {
    TxOutput {
        amount: Amount(atoms),
        key_hash: to.public_key().key_hash(),
    }
}

fn is_final(url: &str, tx: &Transaction) -> bool {
    call(url, "getrawtransaction", json!([tx.txid().to_hex(), true]))
        .is_ok_and(|v| v["instantlock"] == json!(true))
}

/// The height of the block that confirmed `tx` on the node at `url`, if any.
fn block_height(url: &str, tx: &Transaction) -> Option<u64> {
    call(url, "getrawtransaction", json!([tx.txid().to_hex(), true]))
        .ok()
        .and_then(|v| v["blockheight"].as_u64())
}

const TIME: u64 = 100_000_000;
const FEE: u64 = 100_000;

#[test]
fn a_registration_and_a_spend_of_its_collateral_never_stop_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    let faucet = keyfile::read(&info.faucet.key_file).unwrap();

    // Two owners, each with a confirmed Bronze collateral and a fee coin.
    let owners = [SecretKey::generate(), SecretKey::generate()];
    let collateral = Tier::Bronze.collateral().0;
    let (coin, have) = faucet_coin(&urls[0], &faucet);
    let mut outputs = Vec::new();
    for o in &owners {
        outputs.push(out(o, collateral));
        outputs.push(out(o, 5 * TIME));
    }
    outputs.push(out(&faucet, have - 2 * (collateral + 5 * TIME) - FEE));
    let funding = signed_transfer(NET, &faucet, &[coin], outputs);
    submit_surely(&urls[0], &funding);
    wait_final_and_confirmed(&urls[0], &funding.txid().to_hex());
    let mut spare = (
        OutPoint::new(funding.txid(), 4),
        have - 2 * (collateral + 5 * TIME) - FEE,
    );

    for (i, owner) in owners.iter().enumerate() {
        let collateral_op = OutPoint::new(funding.txid(), 2 * i as u32);
        let fee_coin = OutPoint::new(funding.txid(), 2 * i as u32 + 1);
        let spend = signed_transfer(
            NET,
            owner,
            &[collateral_op],
            vec![out(&SecretKey::generate(), collateral - FEE)],
        );
        // The attacker's choice: the registration sorts after the spend, the order in which a
        // block that held both could not place the registration.
        let operator = SecretKey::generate();
        let mut change = 5 * TIME - FEE;
        let registration = loop {
            let mut reg = signed_with_payload(
                NET,
                owner,
                &[fee_coin],
                vec![out(owner, change)],
                TxPayload::from(MasternodeRegistration::new(
                    Tier::Bronze,
                    collateral_op,
                    &operator,
                    format!("127.0.0.1:{}", base + 90),
                )),
            );
            reg.sign_operator(NET, &operator);
            if reg.txid() > spend.txid() {
                break reg;
            }
            change -= 1;
        };
        // Both within one block interval, to different nodes; registration first, then the
        // spend first. The second may be refused as a conflict: that is the defence.
        let (first, second) = if i == 0 {
            (&registration, &spend)
        } else {
            (&spend, &registration)
        };
        let _ = submit(&urls[0], first);
        let _ = submit(&urls[1], second);

        // Blocks keep coming, and a later payment is final and confirmed everywhere.
        let start = height(&urls[0]).unwrap_or(0);
        let (c, have) = spare;
        let pay = signed_transfer(
            NET,
            &faucet,
            &[c],
            vec![
                out(&SecretKey::generate(), TIME),
                out(&faucet, have - TIME - FEE),
            ],
        );
        submit_surely(&urls[2], &pay);
        for url in &urls {
            wait_final_and_confirmed(url, &pay.txid().to_hex());
            wait_for("three more blocks", || {
                (height(url)? >= start + 3).then_some(())
            });
        }
        spare = (OutPoint::new(pay.txid(), 1), have - TIME - FEE);
        // The two conflict only while the registration is pending: once its block commits,
        // spending the collateral is how a masternode leaves, and a new spend may be final.
        // Both final is a violation unless the registration was confirmed strictly first.
        for url in &urls {
            if is_final(url, &registration) && is_final(url, &spend) {
                let (r, x) = (block_height(url, &registration), block_height(url, &spend));
                assert!(
                    r.is_some_and(|r| x.is_none_or(|x| x > r)),
                    "a registration and a spend of its collateral both final on {url} while \
                     they conflicted (registration in block {r:?}, spend in {x:?})"
                );
            }
        }
    }
}

#[test]
fn final_transactions_over_a_blocks_byte_limit_are_all_confirmed() {
    const FANS: usize = 84;
    const FAN: usize = 1_000;
    const INPUTS: usize = 700;
    const COIN: u64 = 2_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let base = free_base_port(4);
    let mut procs = Procs(Vec::new(), Vec::new());
    let info = start_localnet(&dir, base, &mut procs);
    let urls: Vec<String> = info.nodes.iter().map(|n| n.rpc_url.clone()).collect();
    let faucet = keyfile::read(&info.faucet.key_file).unwrap();
    let holder = SecretKey::generate();

    // The faucet splits a coin for the fan-outs; each fan-out makes 1,000 small coins.
    let fan_in = FAN as u64 * COIN + FEE;
    let (coin, have) = faucet_coin(&urls[0], &faucet);
    let mut outputs: Vec<TxOutput> = (0..FANS).map(|_| out(&holder, fan_in)).collect();
    outputs.push(out(&faucet, have - FANS as u64 * fan_in - FEE));
    let split = signed_transfer(NET, &faucet, &[coin], outputs);
    submit_surely(&urls[0], &split);
    wait_final_and_confirmed(&urls[0], &split.txid().to_hex());
    let fans: Vec<Transaction> = (0..FANS)
        .map(|i| {
            signed_transfer(
                NET,
                &holder,
                &[OutPoint::new(split.txid(), i as u32)],
                vec![out(&holder, COIN); FAN],
            )
        })
        .collect();
    for (i, tx) in fans.iter().enumerate() {
        submit_surely(&urls[i % urls.len()], tx);
    }
    // Big transactions spending the fan-outs' coins (final, not yet confirmed), ~92 KB each.
    let coins: Vec<OutPoint> = fans
        .iter()
        .flat_map(|t| (0..FAN as u32).map(move |v| OutPoint::new(t.txid(), v)))
        .collect();
    let big: Vec<Transaction> = coins
        .chunks(INPUTS)
        .filter(|c| c.len() == INPUTS)
        .map(|c| {
            signed_transfer(
                NET,
                &holder,
                c,
                vec![out(&holder, INPUTS as u64 * COIN - FEE)],
            )
        })
        .collect();
    let total: usize = fans.iter().chain(&big).map(Transaction::encoded_len).sum();
    assert!(total > MAX_BLOCK_BYTES * 3 / 2, "{total} bytes");
    for tx in &fans {
        wait_for("the fan-outs final", || {
            is_final(&urls[0], tx).then_some(())
        });
    }
    for (i, tx) in big.iter().enumerate() {
        submit_surely(&urls[i % urls.len()], tx);
    }
    for url in [&urls[0], &urls[3]] {
        for tx in fans.iter().chain(&big) {
            wait_final_and_confirmed(url, &tx.txid().to_hex());
        }
    }
    // More than one block carried them: none holds more than its limit.
    let mut heights = std::collections::BTreeSet::new();
    for tx in &big {
        let v = call(
            &urls[0],
            "getrawtransaction",
            json!([tx.txid().to_hex(), true]),
        )
        .unwrap();
        heights.insert(v["blockhash"].as_str().unwrap().to_string());
    }
    assert!(heights.len() >= 2, "carried over several blocks");
    for hash in heights {
        let raw = call(&urls[0], "getblock", json!([hash, 0])).unwrap();
        let bytes = hex::decode(raw.as_str().unwrap()).unwrap();
        assert!(bytes.len() <= MAX_BLOCK_BYTES);
    }
}

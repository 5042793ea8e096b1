//! Targets for the canonical codec: a transaction, a block, and every P2P message body.

use crate::consensus::certificate::verify_commit;
use crate::consensus::driver::WireMessage;
use crate::consensus::snapshot::HeaderChain;
use crate::network::frame::Frame;
use crate::network::message::{NetMessage, MAX_ADDRS};
use crate::types::{Block, Canonical, Network, Transaction};

/// A transaction as a peer or `sendrawtransaction` hands it over: strict decoding, then
/// every check that needs no ledger. Property: the bytes are the value's only encoding, the
/// RPC's hex path agrees with the binary one, and the txid ignores signatures.
pub fn transaction(data: &[u8]) {
    let Ok(tx) = Transaction::from_bytes(data) else {
        return;
    };
    assert_eq!(
        tx.to_bytes(),
        data,
        "a decoded transaction re-encodes differently"
    );
    assert_eq!(tx.encoded_len(), data.len());
    let hex_tx = crate::rpc::rawbuild::decode_hex_tx(&hex::encode(data));
    assert_eq!(
        hex_tx.ok().as_ref(),
        Some(&tx),
        "the RPC hex path disagrees"
    );
    let txid = tx.txid();
    let mut unsigned = tx.clone();
    for input in &mut unsigned.inputs {
        input.signature = crate::types::Signature([0; 64]);
    }
    assert_eq!(unsigned.txid(), txid, "a signature changed the txid");
    inspect_transaction(&tx);
}

/// What the door and the RPC views do with a decoded transaction; none of it may panic.
fn inspect_transaction(tx: &Transaction) {
    let _ = tx.check_structure(true);
    let _ = tx.check_structure(false);
    let _ = tx.total_output();
    let _ = tx.claimed_outpoints().count();
    let _ = tx.verify_signatures(Network::Localnet);
    let _ = crate::rpc::json::transaction(Network::Localnet, tx, None);
}

/// A block as it arrives in a proposal or a sync page. Property: canonical, and the
/// structural checks and the RPC view never panic whatever the block holds.
pub fn block(data: &[u8]) {
    let Ok(block) = Block::from_bytes(data) else {
        return;
    };
    assert_eq!(
        block.to_bytes(),
        data,
        "a decoded block re-encodes differently"
    );
    inspect_block(&block);
}

fn inspect_block(block: &Block) {
    let _ = block.check_structure();
    let _ = block.hash();
    let _ = block.txids();
    let _ = crate::types::block::witness_root(&block.transactions);
    let _ = crate::types::evidence::evidence_root(&block.evidence);
    for e in &block.evidence {
        let _ = e.check_conflict();
        let _ = e.describe();
    }
    let _ = crate::rpc::json::block(Network::Localnet, block, block.header.height, None, 2);
}

/// A frame's type byte and body (`data[0]`, `data[1..]`), decoded as the peer reader does.
/// Property: a decoded message encodes to a frame that decodes to the same message, with the
/// same body bytes (an `Addr` list past `MAX_ADDRS` is cut, so only its first part must
/// survive).
pub fn wire_message(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let frame = Frame {
        kind,
        body: body.to_vec(),
    };
    let Ok(message) = NetMessage::from_frame(&frame) else {
        return;
    };
    let again = message.to_frame();
    assert_eq!(again.kind, kind, "a message changed its frame type");
    assert_eq!(
        NetMessage::from_frame(&again).as_ref(),
        Ok(&message),
        "a message does not survive a round trip"
    );
    let cut = matches!(&message, NetMessage::Addr(a) if a.len() == MAX_ADDRS);
    if !cut {
        assert_eq!(again.body, frame.body, "a message re-encodes differently");
    }
    let _ = message.is_priority();
    let _ = crate::network::message::kind_name(kind);
    if let NetMessage::Consensus(w) = &message {
        inspect_consensus(w);
    }
}

/// The stateless checks the node runs on a consensus message before anything else.
fn inspect_consensus(w: &WireMessage) {
    let net = Network::Localnet;
    match w {
        WireMessage::Transaction(tx) => inspect_transaction(tx),
        WireMessage::VoteBatch(b) => {
            let _ = b.id();
            let _ = b.verify(net);
        }
        WireMessage::Proposal(p) => {
            let _ = p.verify(net);
            inspect_block(&p.block);
        }
        WireMessage::CompactProposal(p) => {
            let _ = p.verify(net);
            let _ = p.binds_to_header();
            inspect_transaction(&p.coinbase);
            inspect_block(&p.fill(Vec::new()).block);
        }
        WireMessage::Vote(v) => {
            let _ = v.verify(net);
        }
        WireMessage::Finality { tx, batches } => {
            inspect_transaction(tx);
            for b in batches {
                let _ = b.verify(net);
            }
        }
        WireMessage::Blocks(list) => {
            let (_, set) = super::files::genesis();
            for (b, c) in list {
                inspect_block(b);
                let _ = c.hash();
                let _ = verify_commit(c, set, net, b.header.height, &b.hash());
            }
        }
        WireMessage::Headers(list) => {
            // As fast sync takes a page: verified from genesis, in order.
            let (genesis, set) = super::files::genesis();
            let mut chain = HeaderChain::new(net, genesis.hash(), set.clone());
            let _ = chain.accept_page(list, list.last().map_or(0, |e| e.header.height));
            let _ = crate::consensus::snapshot::page_is_full(list);
        }
        WireMessage::Evidence(e) => {
            let _ = e.check_conflict();
            let _ = e.describe();
            let _ = e.id();
        }
        WireMessage::SlotAnnouncement(a) => {
            let _ = a.verify(net);
            let _ = a.root();
        }
        WireMessage::SlotCertificate(certificate) => {
            let _ = certificate.signer_positions().count();
        }
        WireMessage::SlotFinality { tx, proof } => {
            inspect_transaction(tx);
            let _ = proof.path_holds();
        }
        WireMessage::SlotShare(_)
        | WireMessage::LockReport(_)
        | WireMessage::Snapshot(_)
        | WireMessage::GetFinality(_)
        | WireMessage::GetSlotBatch { .. }
        | WireMessage::TxInv(_)
        | WireMessage::GetTxs(_)
        | WireMessage::GetProposal { .. }
        | WireMessage::GetBlocks { .. }
        | WireMessage::GetHeaders { .. }
        | WireMessage::GetSnapshot { .. } => {}
    }
}

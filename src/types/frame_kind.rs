//! The type byte of each P2P frame: wire vocabulary shared by the network, which encodes
//! messages under them, and the metrics, which count traffic by them.

pub const HELLO: u8 = 1;
pub const PING: u8 = 2;
pub const PONG: u8 = 3;
pub const ADDR: u8 = 4;
pub const PROOF: u8 = 5;
pub const TRANSACTION: u8 = 10;
pub const VOTE_BATCH: u8 = 11;
pub const PROPOSAL: u8 = 12;
pub const VOTE: u8 = 13;
pub const GET_FINALITY: u8 = 14;
pub const FINALITY: u8 = 15;
pub const GET_BLOCKS: u8 = 16;
pub const BLOCKS: u8 = 17;
pub const GET_HEADERS: u8 = 18;
pub const HEADERS: u8 = 19;
pub const GET_SNAPSHOT: u8 = 20;
pub const SNAPSHOT: u8 = 21;
pub const EVIDENCE: u8 = 22;
pub const SLOT_ANNOUNCEMENT: u8 = 23;
pub const SLOT_SHARE: u8 = 24;
pub const LOCK_REPORT: u8 = 25;
pub const SLOT_CERTIFICATE: u8 = 26;
pub const SLOT_FINALITY: u8 = 27;
pub const GET_SLOT_BATCH: u8 = 28;
pub const COMPACT_PROPOSAL: u8 = 29;
pub const GET_PROPOSAL: u8 = 30;
pub const TX_INV: u8 = 31;
pub const GET_TXS: u8 = 32;

/// A frame type's name, for metrics labels; every unassigned byte is `unknown`, so the
/// label set stays bounded whatever peers send.
pub fn name(k: u8) -> &'static str {
    match k {
        HELLO => "hello",
        PING => "ping",
        PONG => "pong",
        ADDR => "addr",
        PROOF => "proof",
        TRANSACTION => "transaction",
        VOTE_BATCH => "vote_batch",
        PROPOSAL => "proposal",
        VOTE => "vote",
        GET_FINALITY => "get_finality",
        FINALITY => "finality",
        GET_BLOCKS => "get_blocks",
        BLOCKS => "blocks",
        GET_HEADERS => "get_headers",
        HEADERS => "headers",
        GET_SNAPSHOT => "get_snapshot",
        SNAPSHOT => "snapshot",
        EVIDENCE => "evidence",
        SLOT_ANNOUNCEMENT => "slot_announcement",
        SLOT_SHARE => "slot_share",
        LOCK_REPORT => "lock_report",
        SLOT_CERTIFICATE => "slot_certificate",
        SLOT_FINALITY => "slot_finality",
        GET_SLOT_BATCH => "get_slot_batch",
        COMPACT_PROPOSAL => "compact_proposal",
        GET_PROPOSAL => "get_proposal",
        TX_INV => "tx_inv",
        GET_TXS => "get_txs",
        _ => "unknown",
    }
}

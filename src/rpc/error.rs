//! Bitcoin's RPC error codes (`src/rpc/protocol.h`), so clients can branch on them.

use jsonrpsee::types::ErrorObjectOwned;

/// Unexpected failure inside the node.
pub const MISC_ERROR: i32 = -1;
/// An argument of the wrong type.
pub const TYPE_ERROR: i32 = -3;
/// No such address, key, transaction or block.
pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
/// An argument out of range or malformed.
pub const INVALID_PARAMETER: i32 = -8;
/// The transaction or block could not be decoded.
pub const DESERIALIZATION_ERROR: i32 = -22;
/// Inputs missing or already spent.
pub const VERIFY_ERROR: i32 = -25;
/// Refused by policy or consensus rules.
pub const VERIFY_REJECTED: i32 = -26;
/// Already final or confirmed.
pub const VERIFY_ALREADY_IN_CHAIN: i32 = -27;
/// The node is still starting.
pub const IN_WARMUP: i32 = -28;
/// `addnode add` / `setban add` of something already there.
pub const CLIENT_NODE_ALREADY_ADDED: i32 = -23;
/// `addnode remove` of an address never added.
pub const CLIENT_NODE_NOT_ADDED: i32 = -24;
/// `setban` of a malformed address, or `remove` of one not banned.
pub const CLIENT_INVALID_IP_OR_SUBNET: i32 = -30;
/// A wait that ended without its condition.
pub const TIMEOUT_WAITING: i32 = -1;

/// JSON-RPC's code for a missing or extra argument.
pub const INVALID_PARAMS: i32 = -32602;

/// A positional argument that did not parse: a JSON value of the wrong type is Bitcoin's
/// -3 (`RPC_TYPE_ERROR`); a missing one keeps JSON-RPC's -32602. The message says which.
pub fn invalid_param(e: ErrorObjectOwned) -> ErrorObjectOwned {
    let detail = e
        .data()
        .map(|d| d.get().trim_matches('"').to_string())
        .unwrap_or_default();
    if detail.contains("invalid type") || detail.contains("invalid value") {
        err(
            TYPE_ERROR,
            format!("JSON value is not of the expected type: {detail}"),
        )
    } else if detail.is_empty() {
        err(INVALID_PARAMS, e.message().to_string())
    } else {
        err(INVALID_PARAMS, format!("Invalid params: {detail}"))
    }
}

pub fn err(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

/// Bitcoin's `RPC_DATABASE_ERROR`.
pub const DATABASE_ERROR: i32 = -20;

/// An unexpected failure inside the node (a task that died, a reply that would not encode).
pub fn internal(e: impl std::fmt::Display) -> ErrorObjectOwned {
    err(MISC_ERROR, format!("internal error: {e}"))
}

/// A database read that failed or found a corrupt record: the node's disk, not the client.
pub fn database(e: impl std::fmt::Display) -> ErrorObjectOwned {
    err(DATABASE_ERROR, format!("Database error: {e}"))
}

pub type RpcResult<T> = Result<T, ErrorObjectOwned>;

//! What the JSON-RPC API offers, apart from serving it: every method and subscription with its
//! parameters and help (`catalog`), and who may call which (`whitelist`). Both the server
//! (`rpc`) and the configuration (`config`, which checks `rpc_whitelist` names real methods
//! when the file is read) use them, so they sit below both.

pub mod catalog;
pub mod whitelist;

//! Wallet-side helpers: key files, building and signing transactions, and spending a key's
//! outputs through a node's RPC.

pub mod command;
pub mod keyfile;
pub mod send;
pub mod transfer;

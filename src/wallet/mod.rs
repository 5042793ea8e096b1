//! Wallet-side helpers: key files, building and signing transactions.

pub mod keyfile;
pub mod transfer;

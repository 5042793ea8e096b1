//! Wallet-side helpers: key files.

pub mod keyfile;

//! `timed backup`, `timed restore` and `timed snapshot export|import`.
//!
//! A running node holds its database (sled refuses a second opener), so `backup` and
//! `snapshot export` ask it over RPC to write the file; when no node runs on the data
//! directory (no `.cookie`, or nothing answers), they open the database directly.

use super::{dump, restore, snapshot, BackupError, Result};
use crate::config::{NodeParams, Overrides};
use crate::rpc::client;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `timed backup` waits for the node to write the file.
pub const RPC_BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The file to write (must not exist). With a running node, the node writes it: the
    /// node's user must be able to create it.
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
    /// Replace the database the data directory already holds (it is kept as db.replaced-*).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Write the UTXO set at the tip with the certified headers from genesis to it.
    Export {
        /// The file to write (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
    /// Verify a snapshot against the configured genesis and install it in a new data
    /// directory; the node then follows blocks from the snapshot's height.
    Import {
        /// The snapshot file.
        #[arg(long)]
        from: PathBuf,
        /// Replace the database the data directory already holds (kept as db.replaced-*).
        #[arg(long)]
        force: bool,
    },
}

/// Prints what a command did, as JSON on stdout (for scripts).
fn print(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => tracing::warn!(error = %e, "cannot print the summary"),
    }
}

/// A path the node (whose working directory is not ours) can use.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(super::io_at(path))
}

/// The RPC address to dial: a wildcard bind is reached on loopback.
fn loopback(bind: SocketAddr) -> SocketAddr {
    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn rpc_url(bind: SocketAddr) -> String {
    format!("http://{}", loopback(bind))
}

/// Asks the running node to run `method` with `path`; `None` if no node answers on this
/// data directory (no cookie, or nothing listening), so the caller may open it directly.
fn ask_node(params: &NodeParams, method: &str, path: &Path) -> Result<Option<Value>> {
    let cookie = params.datadir.join(crate::rpc::auth::COOKIE_FILE);
    if !cookie.exists() {
        return Ok(None);
    }
    let base = rpc_url(params.rpc_bind);
    let probe = loopback(params.rpc_bind);
    if std::net::TcpStream::connect_timeout(&probe, Duration::from_secs(5)).is_err() {
        tracing::warn!(
            cookie = %cookie.display(),
            rpc = %base,
            "a cookie is there but no node answers (it may have crashed); opening the database directly"
        );
        return Ok(None);
    }
    let url = client::with_cookie(&base, &cookie)?;
    tracing::info!(rpc = %base, method, "asking the running node to write the file");
    let waiting = super::progress::Progress::new("the node is writing the file", None, true);
    let reply = client::call(
        &url,
        method,
        json!([path.display().to_string()]),
        RPC_BACKUP_TIMEOUT,
    );
    waiting.finish();
    Ok(Some(reply?))
}

/// `timed backup --to FILE`.
pub fn backup(over: &Overrides, args: &BackupArgs) -> Result<()> {
    let params = NodeParams::resolve(over)?;
    let to = absolute(&args.to)?;
    if to.exists() {
        return Err(BackupError::Exists(to));
    }
    match ask_node(&params, "backup", &to)? {
        Some(v) => print(&v),
        None => print(&dump::backup_offline(
            &params.datadir,
            params.network,
            &to,
            true,
        )?),
    }
    Ok(())
}

/// `timed restore --from FILE --datadir DIR`.
pub fn restore(over: &Overrides, args: &RestoreArgs) -> Result<()> {
    let datadir = match (&over.keys.datadir, &over.config) {
        (Some(d), _) => d.clone(),
        (None, Some(_)) => NodeParams::resolve(over)?.datadir,
        (None, None) => {
            return Err(BackupError::Refused(
                "say where to restore: --datadir DIR (or --config with a datadir)".into(),
            ))
        }
    };
    print(&restore::restore(&args.from, &datadir, args.force, true)?);
    Ok(())
}

/// `timed snapshot export|import`.
pub fn snapshot(over: &Overrides, cmd: &SnapshotCommand) -> Result<()> {
    let params = NodeParams::resolve(over)?;
    match cmd {
        SnapshotCommand::Export { to } => {
            let to = absolute(to)?;
            if to.exists() {
                return Err(BackupError::Exists(to));
            }
            match ask_node(&params, "dumptxoutset", &to)? {
                Some(v) => print(&v),
                None => print(&snapshot::export_offline(&params, &to)?),
            }
        }
        SnapshotCommand::Import { from, force } => print(&snapshot::import(
            from,
            &params,
            &params.datadir,
            *force,
            true,
        )?),
    }
    Ok(())
}

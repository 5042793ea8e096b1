//! `timed backup`, `timed restore` and `timed snapshot export|import`.
//!
//! A running node holds its database (sled refuses a second opener), so `backup` and
//! `snapshot export` ask it over RPC to write the file; when no node runs on the data
//! directory (no `.cookie`, or nothing answers), they open the database directly.

use super::{dump, restore, snapshot, BackupError, Result};
use crate::client;
use crate::config::{NodeParams, Overrides};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `timed backup` waits for the node to write the file.
pub const RPC_BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The file to write (must not exist): a name, written in the node's backup directory
    /// (`backup_dir`, default <datadir>/backups), or an absolute path inside it. With no node
    /// running, an absolute path may be anywhere.
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
        /// The file to write (must not exist), in the backup directory as for `backup --to`.
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

/// Where a backup goes when this process writes it (no node runs): a relative name inside
/// the backup directory, as the node would put it; an absolute path as given (the operator's
/// own shell, not an RPC credential, chose it).
fn offline_target(params: &NodeParams, to: &Path) -> Result<PathBuf> {
    if to.is_absolute() {
        return Ok(to.to_path_buf());
    }
    std::fs::create_dir_all(&params.backup_dir).map_err(super::io_at(&params.backup_dir))?;
    let target = params.backup_dir.join(to);
    if target.exists() {
        return Err(BackupError::Exists(target));
    }
    Ok(target)
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
    let cookie = params.datadir.join(crate::client::COOKIE_FILE);
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
    match reply {
        // The node went away between the probe and the call (it was being stopped or had
        // just been killed): if nothing listens now, the database is the caller's to open.
        // Opening it is safe either way: a live node's lock on it refuses the caller.
        Err(client::ClientError::Transport { .. } | client::ClientError::Unreachable { .. })
            if std::net::TcpStream::connect_timeout(&probe, Duration::from_secs(5)).is_err() =>
        {
            tracing::warn!(
                rpc = %base,
                "the node stopped answering while asked (it is gone now); opening the database directly"
            );
            Ok(None)
        }
        reply => Ok(Some(reply?)),
    }
}

/// `timed backup --to FILE`.
pub fn backup(over: &Overrides, args: &BackupArgs) -> Result<()> {
    let params = NodeParams::resolve(over)?;
    // A running node resolves the name in its backup directory (and refuses anything else).
    match ask_node(&params, "backup", &args.to)? {
        Some(v) => print(&v),
        None => print(&dump::backup_offline(
            &params.datadir,
            params.network,
            &offline_target(&params, &args.to)?,
            true,
        )?),
    }
    Ok(())
}

/// `timed restore --from FILE --datadir DIR`.
pub fn restore(over: &Overrides, args: &RestoreArgs) -> Result<()> {
    if over.keys.datadir.is_none() && over.config.is_none() {
        return Err(BackupError::Refused(
            "say where to restore: --datadir DIR (or --config with a datadir)".into(),
        ));
    }
    // The network and genesis the backup must belong to: the node's configuration.
    let params = NodeParams::resolve(over)?;
    print(&restore::restore(
        &args.from,
        &params,
        &params.datadir,
        args.force,
        true,
    )?);
    Ok(())
}

/// `timed snapshot export|import`.
pub fn snapshot(over: &Overrides, cmd: &SnapshotCommand) -> Result<()> {
    let params = NodeParams::resolve(over)?;
    match cmd {
        SnapshotCommand::Export { to } => match ask_node(&params, "dumptxoutset", to)? {
            Some(v) => print(&v),
            None => print(&snapshot::export_offline(
                &params,
                &offline_target(&params, to)?,
            )?),
        },
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

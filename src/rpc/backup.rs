//! Admin methods that write files on the node's machine: `backup "file"` (the whole
//! database, consistent at one height) and `dumptxoutset "file"` (Bitcoin's name: the UTXO set
//! at the tip with the certified headers to it).
//!
//! They write only inside the configured `backup_dir` (default `<datadir>/backups`, created
//! when first needed, owner-only): a relative name resolves inside it, an absolute path must
//! lie inside it (after symbolic links are resolved), anything else is refused with -8. An
//! existing file is never overwritten, even one created while the file is written (atomic
//! no-replace, `backup::files::write_new_file`). So an RPC credential cannot make the node
//! write over its own files or anyone else's; per-user method lists (`rpc_whitelist`) can
//! keep these methods from credentials that need only to read.
//!
//! The consistent part of each copy runs on the consensus task through
//! `ConsensusHandle::query` (no write can happen meanwhile); the rest is written on the
//! blocking pool. One such job runs at a time.

use super::error::{err, internal, RpcResult, INVALID_PARAMETER, MISC_ERROR};
use crate::backup::{dump, snapshot, BackupError};
use crate::context::NodeContext;
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The right to write a backup or snapshot file: one job at a time per node (per RPC module,
/// not per process, so two nodes in one test process do not share it). Held while set;
/// cleared by the `JobSlot` however the job ends.
#[derive(Clone, Default)]
struct OneJob(Arc<AtomicBool>);

struct JobSlot(Arc<AtomicBool>);

impl OneJob {
    fn take(&self) -> RpcResult<JobSlot> {
        (self.0)
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| JobSlot(self.0.clone()))
            .map_err(|_| err(MISC_ERROR, "a backup or snapshot is already being written"))
    }
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    let job = OneJob::default();
    let backup_job = job.clone();
    m.register_async_method("backup", move |p, ctx, _| {
        let job = backup_job.clone();
        async move {
            let path = destination(p, &ctx.params.backup_dir).await?;
            let _slot = job.take()?;
            let network = ctx.params.network;
            tracing::info!(path = %path.display(), "backup requested over RPC");
            let capture = ctx
                .consensus
                .query(move |d| dump::capture_state(d.ledger().storage(), network))
                .await
                .map_err(|_| err(MISC_ERROR, "the node is shutting down"))?
                .map_err(failed)?;
            let storage = ctx.storage.clone();
            let summary = tokio::task::spawn_blocking(move || {
                dump::write_backup_file(&storage, capture, &path, false)
            })
            .await
            .map_err(internal)?
            .map_err(failed)?;
            serde_json::to_value(summary).map_err(internal)
        }
    })?;
    m.register_async_method("dumptxoutset", move |p, ctx, _| {
        let job = job.clone();
        async move {
            let path = destination(p, &ctx.params.backup_dir).await?;
            let _slot = job.take()?;
            tracing::info!(path = %path.display(), "UTXO snapshot requested over RPC");
            let (tip, entries) = ctx
                .consensus
                .query(|d| d.ledger().snapshot_entries())
                .await
                .map_err(|_| err(MISC_ERROR, "the node is shutting down"))?;
            let tip = tip.ok_or_else(|| err(MISC_ERROR, "the node has no chain yet"))?;
            let (storage, network) = (ctx.storage.clone(), ctx.params.network);
            let summary = tokio::task::spawn_blocking(move || {
                snapshot::write_snapshot_file(&storage, network, &tip, &entries, &path)
            })
            .await
            .map_err(internal)?
            .map_err(failed)?;
            serde_json::to_value(summary).map_err(internal)
        }
    })?;
    Ok(())
}

/// The one parameter, a file in the backup directory that does not exist yet.
async fn destination(p: Params<'static>, dir: &Path) -> RpcResult<PathBuf> {
    let text: String = p.sequence().next().map_err(super::error::invalid_param)?;
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || resolve_in(&dir, &text))
        .await
        .map_err(internal)?
}

/// Where `given` (a name relative to `dir`, or an absolute path) lands, if inside `dir`.
pub(crate) fn resolve_in(dir: &Path, given: &str) -> RpcResult<PathBuf> {
    let refuse = |why: String| Err(err(INVALID_PARAMETER, why));
    let path = Path::new(given);
    let Some(name) = path.file_name() else {
        return refuse(format!("{given:?}: name a file (in {})", dir.display()));
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return refuse(format!("{given:?}: `..` is not allowed in a backup path"));
    }
    make_dir(dir).map_err(|e| {
        err(
            MISC_ERROR,
            format!("cannot create the backup directory {}: {e}", dir.display()),
        )
    })?;
    let base = std::fs::canonicalize(dir).map_err(|e| {
        err(
            MISC_ERROR,
            format!("the backup directory {}: {e}", dir.display()),
        )
    })?;
    let joined = dir.join(path);
    // The directory the file goes into, with every symbolic link resolved.
    let parent = joined.parent().unwrap_or(dir);
    let parent = std::fs::canonicalize(parent).map_err(|e| {
        err(
            INVALID_PARAMETER,
            format!("{given:?}: {} ({e})", parent.display()),
        )
    })?;
    if !parent.starts_with(&base) {
        return refuse(format!(
            "{given:?} is outside the backup directory {} (config key backup_dir): give a \
             file name, which is written there",
            dir.display()
        ));
    }
    let target = parent.join(name);
    if std::fs::symlink_metadata(&target).is_ok() {
        return refuse(format!(
            "{} already exists; a backup never overwrites a file",
            target.display()
        ));
    }
    Ok(target)
}

/// Creates the backup directory (and its parents) if missing, owner-only.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn failed(e: BackupError) -> jsonrpsee::types::ErrorObjectOwned {
    err(MISC_ERROR, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_job_at_a_time_per_node_and_the_slot_frees_itself() {
        let (node_a, node_b) = (OneJob::default(), OneJob::default());
        let slot = node_a.take().unwrap();
        let busy = node_a.clone().take().err().unwrap();
        assert!(busy.message().contains("already being written"), "{busy:?}");
        // Another node in the same process is not held up by this one's job.
        let other = node_b.take().unwrap();
        drop(slot);
        let again = node_a.take().unwrap();
        drop((again, other));
    }

    fn refusal(dir: &Path, given: &str) -> String {
        match resolve_in(dir, given) {
            Ok(p) => panic!("{given} accepted as {}", p.display()),
            Err(e) => {
                assert_eq!(e.code(), INVALID_PARAMETER, "{}", e.message());
                e.message().to_string()
            }
        }
    }

    #[test]
    fn files_land_only_inside_the_backup_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data").join("backups");
        // Created on first use; a name resolves inside it.
        let p = resolve_in(&dir, "node.tbak").unwrap();
        assert!(dir.is_dir());
        let base = std::fs::canonicalize(&dir).unwrap();
        assert_eq!(p, base.join("node.tbak"));
        // An absolute path inside it is fine, as is a subdirectory that exists.
        std::fs::create_dir(dir.join("weekly")).unwrap();
        let inside = dir.join("weekly").join("a.tbak");
        assert_eq!(
            resolve_in(&dir, inside.to_str().unwrap()).unwrap(),
            base.join("weekly").join("a.tbak")
        );
        // Outside: absolute, `..`, or through a symbolic link.
        let outside = tmp.path().join("elsewhere.tbak");
        let msg = refusal(&dir, outside.to_str().unwrap());
        assert!(msg.contains("outside the backup directory"), "{msg}");
        assert!(refusal(&dir, "../x.tbak").contains(".."));
        assert!(refusal(&dir, "/etc/passwd").contains("outside"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.path(), dir.join("escape")).unwrap();
            assert!(refusal(&dir, "escape/x.tbak").contains("outside"));
            // An existing name, even a dangling link, is never replaced.
            std::os::unix::fs::symlink("/nonexistent", dir.join("dangling")).unwrap();
            assert!(refusal(&dir, "dangling").contains("already exists"));
        }
        std::fs::write(dir.join("old.tbak"), b"x").unwrap();
        assert!(refusal(&dir, "old.tbak").contains("already exists"));
        assert!(refusal(&dir, "").contains("name a file"));
    }
}

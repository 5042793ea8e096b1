//! Control: `stop`, `uptime`.

use super::error::RpcResult;
use crate::node::NodeContext;
use jsonrpsee::RpcModule;
use std::sync::Arc;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_method("stop", |_, ctx, _| -> RpcResult<&'static str> {
        tracing::info!("stop requested over RPC");
        ctx.shutdown.cancel();
        Ok("timed stopping")
    })?;
    m.register_method("uptime", |_, ctx, _| -> RpcResult<u64> {
        Ok(ctx.started.elapsed().as_secs())
    })?;
    Ok(())
}

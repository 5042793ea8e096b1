//! Control: `help`, `stop`, `uptime`.

use super::error::{err, invalid_param, RpcResult, INVALID_PARAMETER};
use crate::context::NodeContext;
use crate::rpc_api::catalog::{self, METHODS, SUBSCRIPTIONS};
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
    m.register_method("help", |p, _, _| -> RpcResult<String> {
        let command: Option<String> = p.sequence().optional_next().map_err(invalid_param)?;
        help(command.as_deref())
    })?;
    Ok(())
}

/// bitcoind's help text shape: the list by category, or one method's usage and meaning.
fn help(command: Option<&str>) -> RpcResult<String> {
    if let Some(name) = command {
        return match catalog::find(name) {
            Some(spec) => Ok(format!("{}\n\n{}\n", spec.usage(), spec.summary)),
            None => Err(err(
                INVALID_PARAMETER,
                format!("help: unknown command: {name}"),
            )),
        };
    }
    let mut out = String::new();
    let mut category = "";
    for spec in METHODS {
        if spec.category != category {
            category = spec.category;
            out.push_str(&format!("\n== {} ==\n", capitalized(category)));
        }
        out.push_str(&spec.usage());
        out.push('\n');
    }
    out.push_str("\n== Subscriptions (WebSocket) ==\n");
    for (sub, _, _, params, _) in SUBSCRIPTIONS {
        out.push_str(&format!("{sub} {params}\n"));
    }
    Ok(out.trim_start().to_string())
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

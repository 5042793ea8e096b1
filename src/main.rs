/// `timed bench`: the end-to-end load generator against a localnet. Part of the binary, not
/// of the daemon's library: a node never runs it, and it reaches the node only as a client
/// (RPC, the localnet's description) and through the library's public wallet and types.
mod loadgen;

use std::process::ExitCode;
use timed::cli::{Cli, Command};
use timed::config::{Effective, NodeParams};
use timed::types::Network;

/// The process's allocator. Under load glibc's spent about an eighth of the machine in
/// `_int_malloc`, `unlink_chunk` and `malloc_consolidate` on the sled thread alone (sled copies
/// a leaf on every insert, so the heap churns through mid-sized blocks that glibc keeps
/// coalescing); mimalloc's size-class pages do the same work without the searching.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    without_transparent_huge_pages();
    let cli = Cli::parse_args();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Not `{e:#}`: every error of the crate already says its cause in its message,
            // and the chain would repeat it.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc maps memory in 2 MiB-aligned regions, and where the kernel's transparent huge
/// pages are `always` (as on many hosts) every region touched became a whole 2 MiB page: an
/// idle node held ≈ 66 MB instead of ≈ 16. Turned off for this process and its children
/// (localnet nodes); throughput measured the same either way (BENCHMARKS.md, stop 25).
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; no memory is touched.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        None => run_node(&cli),
        Some(command) => run_command(command, &cli),
    }
}

fn run_node(cli: &Cli) -> anyhow::Result<ExitCode> {
    if cli.print_config {
        print!("{}", Effective::gather(&cli.overrides())?.render());
        return Ok(ExitCode::SUCCESS);
    }
    // The config first: its log_level and log_format decide how the node logs.
    let params = match NodeParams::resolve(&cli.overrides()) {
        Ok(params) => params,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(timed::cli::EXIT_CONFIG));
        }
    };
    timed::logging::init(params.log_format, Some(&params.log_level));
    let runtime = tokio::runtime::Runtime::new()?;
    if let Err(e) = runtime.block_on(timed::node::run(params.clone())) {
        eprintln!("error: {e}");
        let fault = timed::node::classify(&e);
        if let Some(fault) = fault {
            eprintln!("what to do: {}", fault.remedy(&params.datadir));
        }
        return Ok(ExitCode::from(e.exit_code()));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_command(command: &Command, cli: &Cli) -> anyhow::Result<ExitCode> {
    if !matches!(command, Command::Run) {
        anyhow::ensure!(
            !cli.print_config,
            "--print-config shows the node's configuration: use it without a command"
        );
        timed::logging::init(cli.log_format.unwrap_or_default(), None);
    }
    match command {
        Command::Run => return run_node(cli),
        Command::Localnet(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(timed::localnet::run(args.clone()))?;
        }
        Command::Wallet(cmd) => timed::wallet::command::run(&cli.overrides(), cmd)?,
        // bitcoin-cli's output and exit status: its own printing, not main's `error: ...`.
        Command::Rpc(args) => return Ok(timed::rpc_cli::run(&cli.overrides(), args)),
        Command::Bench(args) => loadgen::run(args)?,
        Command::Backup(a) => timed::backup::command::backup(&cli.overrides(), a)?,
        Command::Restore(a) => timed::backup::command::restore(&cli.overrides(), a)?,
        Command::Snapshot(c) => timed::backup::command::snapshot(&cli.overrides(), c)?,
        Command::Completions { shell } => {
            timed::cli::write_completions(*shell, &mut std::io::stdout())
        }
        Command::Man => timed::cli::write_man_page(&mut std::io::stdout())?,
        Command::MasternodeKeys { key } => {
            let key = timed::config::keyfile::read(key)?;
            let keys = timed::config::genesis::MasternodeKeys::of(&key);
            println!("{}", serde_json::to_string_pretty(&keys)?);
        }
        Command::Keygen { out } => {
            let network = cli.network.unwrap_or(Network::Mainnet);
            println!("{}", timed::wallet::command::new_key(out, network)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

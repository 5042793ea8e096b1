use clap::Parser;
use std::process::ExitCode;
use timed::cli::{Cli, Command, LogFormat};
use timed::types::Network;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        None | Some(Command::Run) => {
            let params = timed::config::NodeParams::resolve(&cli.overrides())?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(timed::node::run(params))?;
        }
        Some(Command::Localnet(args)) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(timed::localnet::run(args.clone()))?;
        }
        Some(Command::Wallet(cmd)) => timed::wallet::command::run(&cli.overrides(), cmd)?,
        // bitcoin-cli's output and exit status: its own printing, not main's `error: ...`.
        Some(Command::Rpc(args)) => return Ok(timed::rpc_cli::run(&cli.overrides(), args)),
        Some(Command::Bench(args)) => timed::loadgen::run(args)?,
        Some(Command::Backup(a)) => timed::backup::command::backup(&cli.overrides(), a)?,
        Some(Command::Restore(a)) => timed::backup::command::restore(&cli.overrides(), a)?,
        Some(Command::Snapshot(c)) => timed::backup::command::snapshot(&cli.overrides(), c)?,
        Some(Command::Keygen { out }) => {
            let network = cli.network.unwrap_or(Network::Mainnet);
            println!("{}", timed::wallet::command::new_key(out, network)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file (localnet, systemd) gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

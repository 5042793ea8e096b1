use std::process::ExitCode;
use timed::cli::{Cli, Command};
use timed::config::{Effective, NodeParams};
use timed::types::{Address, Network};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        None => run_node(&cli),
        Some(command) => run_command(command, &cli),
    }
}

fn run_node(cli: &Cli) -> anyhow::Result<()> {
    if cli.print_config {
        print!("{}", Effective::gather(&cli.overrides())?.render());
        return Ok(());
    }
    // The config first: its log_level and log_format decide how the node logs.
    let params = NodeParams::resolve(&cli.overrides())?;
    timed::logging::init(params.log_format, Some(&params.log_level));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(timed::node::run(params))?;
    Ok(())
}

fn run_command(command: &Command, cli: &Cli) -> anyhow::Result<()> {
    if !matches!(command, Command::Run) {
        anyhow::ensure!(
            !cli.print_config,
            "--print-config shows the node's configuration: use it without a command"
        );
        timed::logging::init(cli.log_format.unwrap_or_default(), None);
    }
    match command {
        Command::Run => run_node(cli)?,
        Command::Localnet(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(timed::localnet::run(args.clone()))?;
        }
        Command::Wallet(cmd) => timed::wallet::command::run(cmd)?,
        Command::Bench(args) => timed::loadgen::run(args)?,
        Command::Keygen { out } => {
            let key = timed::types::SecretKey::generate();
            timed::wallet::keyfile::write_new(out, &key)?;
            let network = cli.network.unwrap_or(Network::Mainnet);
            println!("{}", Address::from_public_key(network, &key.public_key()));
        }
    }
    Ok(())
}

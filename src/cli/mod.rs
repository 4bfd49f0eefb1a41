//! Client commands (placeholder until the client lands).

use clap::{Args, Subcommand};

/// Options every client command takes.
#[derive(Args, Clone, Debug)]
pub struct ClientOptions {
    /// Address of the ledger service.
    #[arg(
        long,
        global = true,
        env = "MFI_LEDGER_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Client commands.
#[derive(Subcommand, Clone, Debug)]
pub enum ClientCommand {
    /// Show the journal's head.
    Info,
}

/// Runs a client command.
pub async fn run(_options: ClientOptions, _command: ClientCommand) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}

//! The `punktfunk` binary: parses the command line and calls into the library. Kept thin.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// punktfunk: low-latency desktop and game streaming host.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check this machine against a tuning profile and print what to change.
    Tune {
        /// Profile to check (default: built-in defaults).
        #[arg(long)]
        profile: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Tune { profile } => match punktfunk_control::tune::report(profile.as_deref()) {
            Ok((text, _)) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("punktfunk tune: {e}");
                ExitCode::from(2)
            }
        },
    }
}

//! The `punktfunk` binary: parses the command line and calls into the library. Kept thin.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use punktfunk_control::host::cli::{self, ApiClient, CliError};
use punktfunk_control::host::serve::{self, ServeOptions};
use punktfunk_control::host::state::StateDir;

/// punktfunk: low-latency desktop and game streaming host.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct ApiArgs {
    /// State directory of the running host (default ~/.local/share/punktfunk).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Management API address (default: from the state directory, else 127.0.0.1:47990).
    #[arg(long)]
    api: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the GameStream host: nvhttp (pairing, launch), management API and mDNS.
    Serve {
        /// Tuning profile (default: built-in defaults).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// State directory (default ~/.local/share/punktfunk).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Base port; every other port is derived from it (default 47989).
        #[arg(long)]
        base_port: Option<u16>,
        /// Management API address (default 127.0.0.1:<base port + 1>).
        #[arg(long)]
        api: Option<SocketAddr>,
        /// Address for the nvhttp listeners (default: all interfaces).
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Do not advertise the host with mDNS.
        #[arg(long)]
        no_mdns: bool,
    },
    /// Enter the PIN a pairing Moonlight client shows.
    Pin {
        /// The 4-digit PIN.
        pin: String,
        /// Name for the client.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List paired clients.
    Clients {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Unpair a client (its id from `punktfunk clients`).
    Unpair {
        /// Client id.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Check this machine against a tuning profile and print what to change.
    Tune {
        /// Profile to check (default: built-in defaults).
        #[arg(long)]
        profile: Option<PathBuf>,
    },
}

fn api_client(args: &ApiArgs) -> Result<ApiClient, CliError> {
    let dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => StateDir::default_path()?,
    };
    ApiClient::discover(Path::new(&dir), args.api)
}

fn report<T>(
    name: &str,
    r: Result<T, impl std::fmt::Display>,
    ok: impl FnOnce(T) -> ExitCode,
) -> ExitCode {
    match r {
        Ok(v) => ok(v),
        Err(e) => {
            eprintln!("punktfunk {name}: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            profile,
            state_dir,
            base_port,
            api,
            bind,
            no_mdns,
        } => {
            let opts = ServeOptions {
                state_dir,
                profile,
                base_port,
                management_addr: api,
                bind,
                mdns: !no_mdns,
            };
            report("serve", serve::run_blocking(opts), |()| ExitCode::SUCCESS)
        }
        Command::Pin { pin, name, api } => report(
            "pin",
            api_client(&api).and_then(|c| cli::pin(&c, &pin, name.as_deref())),
            |(text, paired)| {
                print!("{text}");
                if paired {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            },
        ),
        Command::Clients { api } => report(
            "clients",
            api_client(&api).and_then(|c| cli::clients(&c)),
            |text| {
                print!("{text}");
                ExitCode::SUCCESS
            },
        ),
        Command::Unpair { id, api } => report(
            "unpair",
            api_client(&api).and_then(|c| cli::unpair(&c, &id)),
            |text| {
                print!("{text}");
                ExitCode::SUCCESS
            },
        ),
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

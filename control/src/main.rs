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
        /// UDP port of the punktfunk/1 listener.
        #[arg(long, default_value_t = punktfunk_control::pf1::DEFAULT_PORT)]
        pf1_port: u16,
        /// Do not run the punktfunk/1 listener.
        #[arg(long)]
        no_pf1: bool,
        /// punktfunk/1: also stream to clients that are NOT paired (labs only; logged as a
        /// warning; their input is dropped all the same). Default: pairing required.
        #[arg(long)]
        allow_unpaired: bool,
        /// Accepted for old scripts: pairing is required by default now.
        #[arg(long, hide = true, conflicts_with = "allow_unpaired")]
        require_pairing: bool,
    },
    /// Connect to a punktfunk/1 host, receive, decode and report its stream: runs the
    /// reference client `punktfunk-client` (built on the client core's C ABI) installed beside
    /// this binary, with the same arguments (`punktfunk client --help` lists them).
    #[command(disable_help_flag = true)]
    Client {
        /// Arguments of `punktfunk-client`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Enter the PIN a pairing Moonlight client shows: arms the pairing window with it and
    /// gives it to the waiting client (with nobody waiting: to the next client that pairs).
    /// With --pf1, open the punktfunk/1 pairing window: one client may pair with the PIN
    /// printed.
    Pin {
        /// The 4-digit PIN (with --pf1: 4 to 10 digits of your choice, or leave it out and the
        /// host generates one).
        #[arg(required_unless_present = "pf1")]
        pin: Option<String>,
        /// Open the punktfunk/1 pairing window instead.
        #[arg(long)]
        pf1: bool,
        /// With --pf1: close the pairing window instead of opening it.
        #[arg(long, requires = "pf1", conflicts_with = "pin")]
        close: bool,
        /// Name for the client.
        #[arg(long)]
        name: Option<String>,
        /// The waiting pairing to give the PIN to (its id from `punktfunk pairing`); needed
        /// when several clients wait.
        #[arg(long, value_name = "ID", conflicts_with = "pf1")]
        to: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show the pairing window and the clients waiting to pair (address, certificate
    /// fingerprint, age); cancel one or close the window.
    Pairing {
        /// Cancel the pairing with this id.
        #[arg(long, value_name = "ID", conflicts_with = "close")]
        cancel: Option<String>,
        /// Close the pairing window (after too many wrong PINs: lets clients wait again).
        #[arg(long)]
        close: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the live streaming sessions of both protocols (client, mode, codec, bitrate,
    /// frames sent, loss, FEC).
    Status {
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
    /// Check this machine against a tuning profile and print what to change (`tune` = `tune
    /// check`; exit 1 when the profile cannot be honoured as written), or make the safe fixes
    /// (`tune apply`, as root).
    Tune {
        /// Profile to check (default: built-in defaults).
        #[arg(long, global = true)]
        profile: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<TuneAction>,
    },
    /// Loss and latency sweep (docs/sweeps.md): runs the `sweep` binary installed beside this
    /// one (`cargo build --release -p punktfunk-bench --bin sweep`) with these arguments, e.g.
    /// `punktfunk sweep --quick --out DIR`; `punktfunk sweep --help` lists them.
    #[command(disable_help_flag = true)]
    Sweep {
        /// Everything after `sweep`, handed on unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `punktfunk tune` actions.
#[derive(Debug, Subcommand)]
enum TuneAction {
    /// Every finding with the command that fixes it (the default).
    Check,
    /// Make the fixes that are safe to make unasked (sysctl limits, NIC rings, interrupt
    /// affinity), then check again. Needs root.
    Apply,
}

/// Replaces this process with the program `name` from this binary's directory (where cargo
/// and the install put them all), else from `PATH`, with `args`. Returns only if that failed:
/// the program tried and why.
fn exec_beside(name: &str, args: &[std::ffi::OsString]) -> (PathBuf, std::io::Error) {
    use std::os::unix::process::CommandExt as _;
    let beside = std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(name))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from(name));
    let err = std::process::Command::new(&program).args(args).exec();
    (program, err)
}

/// `punktfunk sweep …`: becomes the `sweep` binary (its own `--punktfunk` default then finds
/// this binary).
fn sweep(args: &[std::ffi::OsString]) -> ExitCode {
    let (program, err) = exec_beside("sweep", args);
    eprintln!(
        "punktfunk sweep: cannot run {} ({err}); build it with `cargo build --release -p \
         punktfunk-bench --bin sweep` (it is installed beside punktfunk)",
        program.display()
    );
    ExitCode::from(2)
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

/// `punktfunk client ARGS…`: becomes `punktfunk-client ARGS…` (the reference client).
fn client(args: &[std::ffi::OsString]) -> ExitCode {
    let (program, err) = exec_beside("punktfunk-client", args);
    eprintln!(
        "punktfunk client: cannot run {}: {err} (build it: cargo build -p punktfunk-client)",
        program.display()
    );
    ExitCode::FAILURE
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
            pf1_port,
            no_pf1,
            allow_unpaired,
            require_pairing: _,
        } => {
            let opts = ServeOptions {
                state_dir,
                profile,
                base_port,
                management_addr: api,
                bind,
                mdns: !no_mdns,
                pf1_port: (!no_pf1).then_some(pf1_port),
                allow_unpaired,
            };
            report("serve", serve::run_blocking(opts), |()| ExitCode::SUCCESS)
        }
        Command::Client { args } => client(&args),
        Command::Pin {
            pin,
            pf1: true,
            close,
            api,
            ..
        } => report(
            "pin",
            api_client(&api).and_then(|c| {
                if close {
                    cli::pf1_close(&c)
                } else {
                    cli::pf1_pin(&c, pin.as_deref())
                }
            }),
            |text| {
                print!("{text}");
                ExitCode::SUCCESS
            },
        ),
        Command::Pin {
            pin, name, to, api, ..
        } => report(
            "pin",
            // clap requires the PIN without --pf1.
            api_client(&api).and_then(|c| {
                cli::pin(
                    &c,
                    pin.as_deref().unwrap_or_default(),
                    name.as_deref(),
                    to.as_deref(),
                )
            }),
            |(text, paired)| {
                print!("{text}");
                if paired {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            },
        ),
        Command::Pairing { cancel, close, api } => report(
            "pairing",
            api_client(&api).and_then(|c| match (cancel, close) {
                (Some(id), _) => cli::pairing_cancel(&c, &id),
                (None, true) => cli::pairing_close(&c),
                (None, false) => cli::pairing(&c),
            }),
            |text| {
                print!("{text}");
                ExitCode::SUCCESS
            },
        ),
        Command::Status { api } => report(
            "status",
            api_client(&api).and_then(|c| cli::status(&c)),
            |text| {
                print!("{text}");
                ExitCode::SUCCESS
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
        Command::Sweep { args } => sweep(&args),
        Command::Tune { profile, action } => match match action {
            Some(TuneAction::Apply) => punktfunk_control::tune::apply(profile.as_deref()),
            Some(TuneAction::Check) | None => punktfunk_control::tune::report(profile.as_deref()),
        } {
            Ok((text, warned)) => {
                print!("{text}");
                if warned {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("punktfunk tune: {e}");
                ExitCode::from(2)
            }
        },
    }
}

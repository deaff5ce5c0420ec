//! `punktfunk-client HOST` (also `punktfunk client HOST`): the reference punktfunk/1 client,
//! built on the client core's C ABI ([`punktfunk_core::reference`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use punktfunk_control::host::state::StateDir;
use punktfunk_control::pf1::{Mode, Pin};
use punktfunk_core::reference::{self, ConnectOptions};

/// Connect to a punktfunk/1 host, receive, decode and report its stream.
#[derive(Debug, Parser)]
#[command(name = "punktfunk client", version)]
struct Args {
    /// HOST or HOST:PORT (default port 47900).
    host: String,
    /// Pair with the host: give the PIN it shows, or leave it out to be asked for it.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "PIN")]
    pair: Option<String>,
    /// Mode to ask for, WIDTHxHEIGHT@FPS.
    #[arg(long, default_value = "1920x1080@60", value_parser = parse_mode)]
    mode: Mode,
    /// Switch to this mode half way through the run (renegotiation).
    #[arg(long, alias = "reconfigure", value_parser = parse_mode)]
    remode: Option<Mode>,
    /// Name the host shows for this client (default: this machine's host name).
    #[arg(long)]
    name: Option<String>,
    /// Seconds to receive before saying Goodbye.
    #[arg(long, alias = "hold", default_value_t = 5.0)]
    duration: f64,
    /// Write the received stream (Annex-B, or AV1 OBUs) to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Write statistics as JSON to this file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Drop this share of data-plane datagrams on receipt (testing FEC).
    #[arg(long, default_value_t = 0.0)]
    inject_loss: f64,
    /// Receive only: do not decode (no capture → decoded latency).
    #[arg(long, conflicts_with = "window")]
    no_decode: bool,
    /// Show the stream in a window (Wayland) and send its keyboard and mouse to the host.
    #[arg(long)]
    window: bool,
    /// State directory (identity, known hosts); default as `punktfunk serve`'s.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    let bad = || format!("{s:?} is not WIDTHxHEIGHT@FPS");
    let (wh, fps) = s.split_once('@').ok_or_else(bad)?;
    let (w, h) = wh.split_once('x').ok_or_else(bad)?;
    let n = |v: &str| v.trim().parse::<u16>().map_err(|_| bad());
    Ok(Mode::new(n(w)?, n(h)?, n(fps)?))
}

fn run(a: Args) -> Result<String, String> {
    if !(0.0..=86_400.0).contains(&a.duration) || !(0.0..1.0).contains(&a.inject_loss) {
        return Err("--duration must be 0..=86400 s and --inject-loss in [0, 1)".into());
    }
    let pair = match a.pair.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(p) => Some(Some(Pin::parse(p).map_err(|e| e.to_string())?)),
    };
    let dir = match a.state_dir {
        Some(d) => d,
        None => StateDir::default_path().map_err(|e| e.to_string())?,
    };
    let name = a.name.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "punktfunk client".into())
    });
    reference::run(ConnectOptions {
        host: a.host,
        state_dir: StateDir::open(dir).map_err(|e| e.to_string())?,
        pair,
        mode: a.mode,
        remodes: a.remode.into_iter().collect(),
        name,
        duration: std::time::Duration::from_secs_f64(a.duration),
        record: a.record,
        stats_json: a.stats_json,
        inject_loss: a.inject_loss,
        inputs: Vec::new(),
        decode: !a.no_decode,
        window: a.window,
    })
    .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("punktfunk client: {e}");
            ExitCode::FAILURE
        }
    }
}

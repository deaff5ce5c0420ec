//! Loss and latency sweeps on a network-namespace testbed (docs/sweeps.md).
//!
//! ```text
//! cargo build --release -p punktfunk-control --bin punktfunk
//! sudo target/release/sweep [--ci | --quick | --full] --out DIR [--punktfunk PATH] [--prefix P]
//! ```
//!
//! Across a real LAN: `sweep --lan --iface IF --peer [USER@]ADDR …` runs the host here and the
//! client on the peer over ssh (docs/sweeps.md "Across a LAN").
//!
//! Writes DIR/sweep.csv (after every point), DIR/summary.md and DIR/{recovered,latency,
//! goodput}.png; the points' logs stay in DIR/work. Needs root (network namespaces).
//! `sweep relay …` is the impairment relay the sweep starts in its router namespace.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use punktfunk_bench::impair::{ImpairConfig, LossModel};
use punktfunk_bench::sweep::lan::Lan;
use punktfunk_bench::sweep::testbed::{Bed, Testbed};
use punktfunk_bench::sweep::{self, Size, plot, relay, run::Runner};

#[derive(Parser)]
#[command(about = "Loss and latency sweeps over network namespaces (docs/sweeps.md)")]
struct Cli {
    #[command(subcommand)]
    relay: Option<Relay>,
    #[command(flatten)]
    sweep: SweepArgs,
}

#[derive(Args)]
struct SweepArgs {
    /// A handful of points (under a minute): what CI runs.
    #[arg(long, conflicts_with_all = ["quick", "full"])]
    ci: bool,
    /// Every figure with few points (under 10 minutes on a 2-core machine).
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Every figure with more points and 10 s per point.
    #[arg(long)]
    full: bool,
    /// Output folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `punktfunk` binary (default: beside this one).
    #[arg(long)]
    punktfunk: Option<PathBuf>,
    /// Python with moonlight-python, for GameStream points (default: the repository's
    /// tests/.venv, which scripts/setup.sh makes).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Prefix of the testbed's namespaces and devices (1-8 characters).
    #[arg(long, default_value = "pfsw")]
    prefix: String,
    /// Only the points of these groups (comma-separated: loss, bursts, delay, bitrate, link).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seconds per point instead of the size's default.
    #[arg(long)]
    seconds: Option<f64>,
    /// Run across a real LAN: the host here on --iface, the client on --peer over ssh
    /// (docs/sweeps.md "Across a LAN").
    #[arg(long, requires_all = ["iface", "peer"])]
    lan: bool,
    /// This machine's interface towards the peer (--lan).
    #[arg(long, requires = "lan")]
    iface: Option<String>,
    /// The peer, as ssh reaches it: [USER@]ADDR (--lan; root for nftables loss without netem).
    #[arg(long, requires = "lan")]
    peer: Option<String>,
    /// The ssh command and its options (--lan).
    #[arg(long, default_value = "ssh -o BatchMode=yes -o ConnectTimeout=10")]
    ssh: String,
    /// Folder on the peer under which the sweep makes (and removes) its own (--lan).
    #[arg(long, default_value = "/tmp")]
    peer_dir: PathBuf,
    /// The `punktfunk` binary on the peer (--lan; default: the same path as here).
    #[arg(long)]
    peer_punktfunk: Option<PathBuf>,
    /// Python with moonlight-python on the peer (--lan; default: the same path as here).
    #[arg(long)]
    peer_python: Option<PathBuf>,
    /// The end-to-end harness folder on the peer (--lan; default: the same path as here).
    #[arg(long)]
    peer_e2e: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Relay {
    /// The impairment relay (started by the sweep inside its router namespace).
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        tun: String,
        #[arg(long)]
        stats: PathBuf,
        #[arg(long, default_value_t = 0)]
        delay_us: u64,
        #[arg(long, default_value_t = 0)]
        jitter_us: u64,
        #[arg(long, default_value_t = 0.0)]
        reorder: f64,
        #[arg(long, default_value_t = 2000)]
        reorder_gap_us: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Gilbert–Elliott: p_gb,p_bg,loss_good,loss_bad.
        #[arg(long)]
        ge: Option<String>,
        /// Bernoulli loss probability.
        #[arg(long)]
        bernoulli: Option<f64>,
    },
}

fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || s.store(true, Ordering::Relaxed)) {
        eprintln!("sweep: no Ctrl-C handler ({e}); an interrupted run leaves its namespaces");
    }
    stop
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.relay {
        Some(Relay::Relay {
            tun,
            stats,
            delay_us,
            jitter_us,
            reorder,
            reorder_gap_us,
            seed,
            ge,
            bernoulli,
        }) => {
            let loss = match (ge, bernoulli) {
                (Some(g), _) => {
                    let v: Vec<f64> = g.split(',').filter_map(|x| x.parse().ok()).collect();
                    if v.len() != 4 {
                        eprintln!("relay: --ge wants p_gb,p_bg,loss_good,loss_bad");
                        return std::process::ExitCode::FAILURE;
                    }
                    LossModel::GilbertElliott {
                        p_gb: v[0],
                        p_bg: v[1],
                        loss_good: v[2],
                        loss_bad: v[3],
                    }
                }
                (None, Some(p)) => LossModel::Bernoulli { p },
                (None, None) => LossModel::None,
            };
            let cfg = ImpairConfig {
                loss,
                delay_us,
                jitter_us,
                reorder,
                reorder_gap_us,
                seed,
                ..ImpairConfig::default()
            };
            let stop = stop_flag();
            eprintln!("relaying on {tun}: {cfg:?}");
            relay::run(&tun, cfg, &stats, stop)
        }
        None => sweep_main(cli.sweep),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sweep: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn sweep_main(a: SweepArgs) -> Result<(), String> {
    let size = if a.ci {
        Size::Ci
    } else if a.full {
        Size::Full
    } else {
        Size::Quick
    };
    let out = a.out.ok_or("--out DIR is required")?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let punktfunk = a
        .punktfunk
        .unwrap_or_else(|| me.with_file_name("punktfunk"));
    let reference = punktfunk.with_file_name("punktfunk-client");
    if !punktfunk.is_file() || !reference.is_file() {
        return Err(format!(
            "{} or {} not found: build them (cargo build --release -p punktfunk-control -p \
             punktfunk-client --bins) or pass --punktfunk",
            punktfunk.display(),
            reference.display()
        ));
    }
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let stop = stop_flag();
    let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let python = a
        .python
        .unwrap_or_else(|| repo.join("tests/.venv/bin/python"));
    let e2e = repo.join("tests/e2e");
    let mut bed: Box<dyn Bed> = match (&a.iface, &a.peer) {
        (Some(iface), Some(peer)) if a.lan => {
            // Our own folder under --peer-dir: the one the sweep removes at the end.
            let peer_work = a
                .peer_dir
                .join(format!("punktfunk-sweep-{}", std::process::id()));
            let lan = Lan::up(iface, peer, &a.ssh, &work, &peer_work)?;
            eprintln!(
                "sweep: across {iface} ({}) to {peer}; {}",
                lan.address(),
                if lan.has_netem() {
                    "tc netem shapes the link"
                } else {
                    "no netem here: tbf rate and the peer's nftables loss only"
                }
            );
            Box::new(lan)
        }
        _ => Box::new(Testbed::up(&a.prefix)?),
    };
    let runner = Runner {
        client_punktfunk: a.peer_punktfunk.unwrap_or_else(|| punktfunk.clone()),
        client_python: a.peer_python.unwrap_or_else(|| python.clone()),
        client_e2e: a.peer_e2e.unwrap_or_else(|| e2e.clone()),
        punktfunk,
        sweep: me,
        work,
        python,
        e2e,
    };
    let mut points = sweep::plan(size);
    if !a.only.is_empty() {
        points.retain(|p| a.only.iter().any(|g| g == p.group));
    }
    if let Some(s) = a.seconds {
        if !(1.0..=600.0).contains(&s) {
            return Err("--seconds must be in 1..=600".into());
        }
        for p in &mut points {
            p.seconds = s;
        }
    }
    if points.is_empty() {
        return Err(format!("--only {:?} selects no point", a.only));
    }
    let started = Instant::now();
    let mut results = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            eprintln!("\nsweep: interrupted; tearing the testbed down");
            break;
        }
        let done = i as f64 / points.len() as f64;
        let eta = if i > 0 {
            started.elapsed().as_secs_f64() / done * (1.0 - done)
        } else {
            0.0
        };
        let filled = (done * 30.0) as usize;
        eprint!(
            "\r[{}{}] {}/{} {} {:<40} ETA {:>4.0} s",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            i + 1,
            points.len(),
            p.group,
            format!("{:?} {}", p.loss.describe().0, p.fec.label()),
            eta
        );
        let m = runner.point(bed.as_mut(), i, p);
        if let Some(e) = &m.error {
            eprintln!("\npoint {i}: {e}");
        }
        results.push((*p, m));
        plot::write_csv(&out, &results)?;
    }
    eprintln!();
    drop(bed);
    let mut command = format!(
        "sweep --{} --out {}",
        match size {
            Size::Ci => "ci",
            Size::Quick => "quick",
            Size::Full => "full",
        },
        out.display()
    );
    if let (true, Some(i), Some(p)) = (a.lan, &a.iface, &a.peer) {
        command.push_str(&format!(" --lan --iface {i} --peer {p}"));
    }
    plot::plots(&out, &results)?;
    plot::summary(
        &out,
        &command,
        &punktfunk_bench::machine(),
        started.elapsed().as_secs_f64() / 60.0,
        &results,
    )?;
    println!(
        "sweep: {} points, {} failed; {}",
        results.len(),
        results.iter().filter(|(_, m)| m.error.is_some()).count(),
        out.join("summary.md").display()
    );
    if stop.load(Ordering::Relaxed) {
        return Err("interrupted".into());
    }
    Ok(())
}

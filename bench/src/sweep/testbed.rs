//! The sweep's testbed (act): three network namespaces — host, router, client — joined by two
//! veth pairs, with the knobs a point turns: Bernoulli loss (nftables in the client's
//! prerouting chain; this kernel has no netem), a link rate (tbf on the router's client-side
//! veth) and the relay's route (host → client packets through the router's TUN device).
//!
//! Every name starts with the prefix (at most 8 characters), so a sweep never touches another
//! run's namespaces; `up` removes leftovers of an earlier run with the same prefix, and
//! [`Testbed`] removes everything on drop. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::impair::ImpairConfig;

/// Where a sweep point runs (act): the namespace [`Testbed`] or a real LAN
/// ([`super::lan::Lan`]). Each says how to start a program on the host's and on the client's
/// side, where the client's files live and how to read them back, and turns the point's
/// knobs.
pub trait Bed {
    /// A command that runs `program args…` where the host runs.
    fn host(&self, program: &Path, args: &[String]) -> Command;
    /// A command that runs `program args…` where the client runs; it ends by itself after
    /// `limit` at the latest, even where killing the local process cannot reach it.
    fn client(&self, program: &Path, args: &[String], limit: Duration) -> Command;
    /// The address the client reaches the host at.
    fn host_ip(&self) -> String;
    /// The client side's folder for `name` under the point's work folder `local` (the same
    /// folder where both sides share a file system); made if missing.
    fn client_dir(&self, local: &Path, name: &str) -> Result<PathBuf, String>;
    /// Reads a file the client wrote (a path [`Bed::client_dir`] gave).
    fn read_client_file(&self, path: &Path) -> Result<String, String>;
    /// Drops `pct` percent of the host's packets to the client (0: none).
    fn set_loss(&mut self, pct: u32) -> Result<(), String>;
    /// Limits the host → client link to `mbps`; `None`: the link's own rate.
    fn set_rate(&mut self, mbps: Option<u32>) -> Result<(), String>;
    /// Starts the point's bursts, delay, jitter and reordering (`cfg`), with its files in `dir`
    /// and `sweep` the sweep binary (its `relay` subcommand).
    fn impair(&mut self, cfg: &ImpairConfig, dir: &Path, sweep: &Path) -> Result<(), String>;
    /// Stops what [`Bed::impair`] started: `(lost, reordered)` packets where it counts them.
    fn unimpair(&mut self) -> Result<(u64, u64), String>;
}

/// Host address (host namespace).
pub const HOST_IP: &str = "10.78.0.1";
/// Client address (client namespace).
pub const CLIENT_IP: &str = "10.78.1.2";
/// Routing table of the relay's path.
const RELAY_TABLE: &str = "100";

/// A running testbed; torn down on drop.
#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    relay_route: bool,
    /// The running relay and its statistics file.
    relay: Option<(Child, PathBuf)>,
}

/// `tc` arguments limiting `dev`'s egress to `mbps` with a token bucket: a burst of at least
/// 1 ms of traffic and 16 KiB, 50 ms of queue.
pub(super) fn tbf_args(dev: &str, mbps: u32) -> Vec<String> {
    let burst = (u64::from(mbps) * 1_000_000 / 8 / 1000).max(16_384);
    ["qdisc", "add", "dev", dev, "root", "tbf", "rate"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([
            format!("{mbps}mbit"),
            "burst".into(),
            burst.to_string(),
            "latency".into(),
            "50ms".into(),
        ])
        .collect()
}

/// Runs `cmd args…`; an error carries the command and its stderr.
fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    output(cmd, args).map(drop)
}

/// Runs `cmd args…` and returns its standard output; an error carries the command and its
/// stderr.
pub(super) fn output(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Testbed {
    /// Builds the testbed for `prefix` (letters, digits, `-`; 1–8 characters).
    pub fn up(prefix: &str) -> Result<Self, String> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 8
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(format!("prefix {prefix:?}: 1-8 letters, digits or '-'"));
        }
        remove(prefix);
        let bed = Self {
            prefix: prefix.to_owned(),
            relay_route: false,
            relay: None,
        };
        bed.build()
            .map_err(|e| format!("testbed: {e} (needs root and iproute2, nftables)"))?;
        Ok(bed)
    }

    /// Namespace of `role` (`h`, `r`, `c`).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// The TUN device in the router namespace.
    pub fn tun(&self) -> String {
        format!("{}-t", self.prefix)
    }

    fn dev(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn build(&self) -> Result<(), String> {
        let (h, r, c) = (self.ns("h"), self.ns("r"), self.ns("c"));
        for ns in [&h, &r, &c] {
            run("ip", &["netns", "add", ns])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (hr, rh, rc, cr) = (
            self.dev("hr"),
            self.dev("rh"),
            self.dev("rc"),
            self.dev("cr"),
        );
        run(
            "ip",
            &[
                "link", "add", &hr, "netns", &h, "type", "veth", "peer", "name", &rh, "netns", &r,
            ],
        )?;
        run(
            "ip",
            &[
                "link", "add", &rc, "netns", &r, "type", "veth", "peer", "name", &cr, "netns", &c,
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &h,
                "addr",
                "add",
                &format!("{HOST_IP}/24"),
                "dev",
                &hr,
            ],
        )?;
        run(
            "ip",
            &["-n", &r, "addr", "add", "10.78.0.254/24", "dev", &rh],
        )?;
        run(
            "ip",
            &["-n", &r, "addr", "add", "10.78.1.254/24", "dev", &rc],
        )?;
        run(
            "ip",
            &[
                "-n",
                &c,
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                &cr,
            ],
        )?;
        // A veth passes GSO trains whole; one segment per packet makes the host's stack split
        // them as a NIC without USO does, so loss and the relay see single datagrams.
        run("ip", &["-n", &h, "link", "set", &hr, "gso_max_segs", "1"])?;
        for (ns, dev) in [(&h, &hr), (&r, &rh), (&r, &rc), (&c, &cr)] {
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        run(
            "ip",
            &["-n", &h, "route", "add", "default", "via", "10.78.0.254"],
        )?;
        run(
            "ip",
            &["-n", &c, "route", "add", "default", "via", "10.78.1.254"],
        )?;
        for key in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ] {
            run("ip", &["netns", "exec", &r, "sysctl", "-qw", key])?;
        }
        let tun = self.tun();
        run(
            "ip",
            &["-n", &r, "tuntap", "add", "dev", &tun, "mode", "tun"],
        )?;
        run(
            "ip",
            &[
                "netns",
                "exec",
                &r,
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{tun}.rp_filter=0"),
            ],
        )?;
        run("ip", &["-n", &r, "link", "set", &tun, "up"])?;
        run(
            "ip",
            &[
                "-n",
                &r,
                "route",
                "add",
                "default",
                "dev",
                &tun,
                "table",
                RELAY_TABLE,
            ],
        )?;
        self.nft(&["add", "table", "inet", "pfsweep"])?;
        self.nft(&[
            "add",
            "chain",
            "inet",
            "pfsweep",
            "pre",
            "{ type filter hook prerouting priority -300; policy accept; }",
        ])
    }

    /// Runs `nft args…` in the client namespace (its `inet pfsweep` table holds the loss rule).
    fn nft(&self, args: &[&str]) -> Result<(), String> {
        let c = self.ns("c");
        let mut argv = vec!["netns", "exec", c.as_str(), "nft"];
        argv.extend_from_slice(args);
        run("ip", &argv)
    }

    /// Drops `pct` percent of the packets reaching the client (0: none).
    fn drop_pct(&self, pct: u32) -> Result<(), String> {
        self.nft(&["flush", "chain", "inet", "pfsweep", "pre"])?;
        if pct > 0 {
            let n = pct.to_string();
            let dev = self.dev("cr");
            self.nft(&[
                "add", "rule", "inet", "pfsweep", "pre", "iifname", &dev, "numgen", "random",
                "mod", "100", "<", &n, "counter", "drop",
            ])?;
        }
        Ok(())
    }

    /// Limits the router → client link to `mbps` (token bucket, 50 ms of queue); `None`: the
    /// veth's own rate.
    fn shape(&self, mbps: Option<u32>) -> Result<(), String> {
        let (r, rc) = (self.ns("r"), self.dev("rc"));
        // Absent the first time: ignore the error.
        let _ = run(
            "ip",
            &[
                "netns", "exec", &r, "tc", "qdisc", "del", "dev", &rc, "root",
            ],
        );
        if let Some(m) = mbps {
            let mut argv = vec!["netns".to_owned(), "exec".into(), r, "tc".into()];
            argv.extend(tbf_args(&rc, m));
            run("ip", &argv.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    }

    /// Sends host → client packets through the relay's TUN device (`on`) or straight on.
    fn set_relay_route(&mut self, on: bool) -> Result<(), String> {
        if on == self.relay_route {
            return Ok(());
        }
        let (r, rh) = (self.ns("r"), self.dev("rh"));
        let verb = if on { "add" } else { "del" };
        run(
            "ip",
            &["-n", &r, "rule", verb, "iif", &rh, "lookup", RELAY_TABLE],
        )?;
        self.relay_route = on;
        Ok(())
    }
}

impl Bed for Testbed {
    fn host(&self, program: &Path, args: &[String]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns("h")])
            .arg(program)
            .args(args);
        c
    }

    fn client(&self, program: &Path, args: &[String], _limit: Duration) -> Command {
        // A local child: the runner's own deadline stops it.
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns("c")])
            .arg(program)
            .args(args);
        c
    }

    fn host_ip(&self) -> String {
        HOST_IP.to_owned()
    }

    fn client_dir(&self, local: &Path, name: &str) -> Result<PathBuf, String> {
        let d = local.join(name);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(d)
    }

    fn read_client_file(&self, path: &Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn set_loss(&mut self, pct: u32) -> Result<(), String> {
        self.drop_pct(pct)
    }

    fn set_rate(&mut self, mbps: Option<u32>) -> Result<(), String> {
        self.shape(mbps)
    }

    fn impair(&mut self, cfg: &ImpairConfig, dir: &Path, sweep: &Path) -> Result<(), String> {
        // The relay first, its route second: no packet goes into a TUN nobody reads.
        let log_path = dir.join("relay.log");
        let stats = dir.join("relay.json");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns("r")])
            .arg(sweep)
            .arg("relay")
            .args(["--tun", &self.tun()])
            .arg("--stats")
            .arg(&stats)
            .args(super::run::relay_args(cfg))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("relay: {e}"))?;
        if let Err(e) =
            super::run::wait_for_log(&log_path, "relaying", &mut child, Duration::from_secs(5))
        {
            super::run::stop(&mut child);
            return Err(e);
        }
        self.relay = Some((child, stats));
        self.set_relay_route(true)
    }

    fn unimpair(&mut self) -> Result<(u64, u64), String> {
        self.set_relay_route(false)?;
        let Some((mut child, stats)) = self.relay.take() else {
            return Ok((0, 0));
        };
        super::run::stop(&mut child);
        let s: serde_json::Value = std::fs::read_to_string(&stats)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or("the relay wrote no statistics")?;
        Ok((
            s["lost"].as_u64().unwrap_or(0) + s["overflow"].as_u64().unwrap_or(0),
            s["reordered"].as_u64().unwrap_or(0),
        ))
    }
}

/// Removes every namespace (and with them their devices) of `prefix`.
pub fn remove(prefix: &str) {
    for role in ["h", "r", "c"] {
        let _ = run("ip", &["netns", "del", &format!("{prefix}-{role}")]);
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.relay.take() {
            super::run::stop(&mut child);
        }
        remove(&self.prefix);
    }
}

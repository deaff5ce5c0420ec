//! The sweep across a real LAN (act): the host runs here, the client on a peer machine reached
//! over ssh (`--lan --iface IF --peer [USER@]ADDR`, docs/sweeps.md "Across a LAN").
//!
//! The knobs act on this machine's interface and on the peer:
//!
//! * with `tc netem` (module `sch_netem`), one netem qdisc on IF's egress carries the point's
//!   loss (Bernoulli or Gilbert–Elliott), delay, jitter, reordering and link rate
//!   ([`super::netem_args`]);
//! * without it (this sandbox's kernel), the link rate is a tbf qdisc on IF and Bernoulli loss
//!   an nftables rule in the peer's prerouting chain, as on the namespace testbed; points that
//!   need bursts, delay, jitter or reordering fail with that reason (the TUN relay needs a
//!   router between the two machines, which a LAN hop does not have).
//!
//! The peer needs the `punktfunk` binary (and for GameStream points Python with
//! moonlight-python and the harness) at the paths given, `timeout` (coreutils), `nft` when
//! netem is missing, and an ssh login that may run them (root for nft). Every remote command
//! runs under `timeout`, so a lost ssh connection cannot leave a client streaming. The qdisc,
//! the peer's nftables table and the peer's work folder are removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::impair::ImpairConfig;

use super::testbed::{Bed, output as local, tbf_args};

/// A LAN hop to a peer; torn down on drop.
#[derive(Debug)]
pub struct Lan {
    iface: String,
    peer: String,
    ssh: Vec<String>,
    host_ip: String,
    /// This machine's work folder, mirrored under `peer_work` on the peer.
    work: PathBuf,
    peer_work: PathBuf,
    netem: bool,
    /// The peer's `inet pfsweep` table exists.
    peer_table: bool,
    loss_pct: u32,
    rate_mbps: Option<u32>,
    impairment: Option<ImpairConfig>,
}

/// `s` quoted for a POSIX shell (the remote side of ssh joins its arguments into one line).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Lan {
    /// Checks the interface, the ssh login and netem, and prepares the peer. `ssh` is the ssh
    /// program and its options (split on spaces), `peer_work` the peer's folder for the
    /// client's files, `work` this machine's.
    pub fn up(
        iface: &str,
        peer: &str,
        ssh: &str,
        work: &Path,
        peer_work: &Path,
    ) -> Result<Self, String> {
        let addrs = local("ip", &["-4", "-o", "addr", "show", "dev", iface])
            .map_err(|e| format!("--iface {iface}: {e}"))?;
        // `2: eth0    inet 192.168.1.10/24 brd … scope global eth0`
        let host_ip = addrs
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .ok_or(format!("--iface {iface} has no IPv4 address"))?
            .to_owned();
        let ssh: Vec<String> = ssh.split_whitespace().map(str::to_owned).collect();
        if ssh.is_empty() {
            return Err("--ssh is empty".into());
        }
        let mut lan = Self {
            iface: iface.to_owned(),
            peer: peer.to_owned(),
            ssh,
            host_ip,
            work: work.to_owned(),
            peer_work: peer_work.to_owned(),
            netem: false,
            peer_table: false,
            loss_pct: 0,
            rate_mbps: None,
            impairment: None,
        };
        lan.remote("true")
            .map_err(|e| format!("ssh to the peer {peer}: {e}"))?;
        lan.remote(&format!(
            "mkdir -p {}",
            shell_quote(&peer_work.to_string_lossy())
        ))?;
        // netem present: a qdisc can be made (and is removed again at once).
        lan.netem = local(
            "tc",
            &[
                "qdisc", "replace", "dev", iface, "root", "netem", "delay", "0ms",
            ],
        )
        .is_ok();
        let _ = local("tc", &["qdisc", "del", "dev", iface, "root"]);
        if !lan.netem {
            let host = lan.host_ip.clone();
            lan.remote(&format!(
                "nft delete table inet pfsweep 2>/dev/null; nft add table inet pfsweep && \
                 nft add chain inet pfsweep pre '{{ type filter hook prerouting priority -300; \
                 policy accept; }}' && nft add rule inet pfsweep pre ip saddr {host} counter"
            ))
            .map_err(|e| format!("nftables on the peer (loss without netem): {e}"))?;
            lan.peer_table = true;
        }
        Ok(lan)
    }

    /// Whether this machine's kernel has netem (the impairments beyond Bernoulli loss).
    pub fn has_netem(&self) -> bool {
        self.netem
    }

    /// The host's address on the LAN.
    pub fn address(&self) -> &str {
        &self.host_ip
    }

    /// An ssh command running `line` (a shell line) on the peer.
    fn ssh_command(&self, line: &str) -> Command {
        let mut c = Command::new(&self.ssh[0]);
        c.args(&self.ssh[1..]).arg(&self.peer).arg("--").arg(line);
        c
    }

    /// Runs `line` on the peer, returning its standard output.
    fn remote(&self, line: &str) -> Result<String, String> {
        let out = self
            .ssh_command(line)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", self.ssh[0]))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "on {}: `{line}`: {} {}",
                self.peer,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Puts the current loss, rate and impairment on the interface (and the peer).
    fn apply(&self) -> Result<(), String> {
        let _ = local("tc", &["qdisc", "del", "dev", &self.iface, "root"]);
        if self.netem {
            let args = super::netem_args(self.loss_pct, self.rate_mbps, self.impairment.as_ref());
            if args.is_empty() {
                return Ok(());
            }
            let mut argv = vec!["qdisc", "add", "dev", &self.iface, "root", "netem"];
            argv.extend(args.iter().map(String::as_str));
            return local("tc", &argv).map(drop);
        }
        if self.impairment.is_some() {
            return Err(format!(
                "bursts, delay, jitter and reordering across a LAN need tc netem on {}; this \
                 kernel has none (sch_netem)",
                self.iface
            ));
        }
        if let Some(m) = self.rate_mbps {
            let argv = tbf_args(&self.iface, m);
            local("tc", &argv.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        let host = &self.host_ip;
        let rule = if self.loss_pct > 0 {
            format!(
                " && nft add rule inet pfsweep pre 'ip saddr {host} numgen random mod 100 < {} \
                 counter drop'",
                self.loss_pct
            )
        } else {
            String::new()
        };
        self.remote(&format!("nft flush chain inet pfsweep pre{rule}"))
            .map(drop)
    }
}

impl Bed for Lan {
    fn host(&self, program: &Path, args: &[String]) -> Command {
        let mut c = Command::new(program);
        c.args(args);
        c
    }

    fn client(&self, program: &Path, args: &[String], limit: Duration) -> Command {
        let mut line = format!(
            "exec timeout -k 5 {} {}",
            limit.as_secs().max(1),
            shell_quote(&program.to_string_lossy())
        );
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let mut c = self.ssh_command(&line);
        c.stdin(Stdio::null());
        c
    }

    fn host_ip(&self) -> String {
        self.host_ip.clone()
    }

    fn client_dir(&self, local: &Path, name: &str) -> Result<PathBuf, String> {
        let rel = local.strip_prefix(&self.work).unwrap_or(Path::new(""));
        let d = self.peer_work.join(rel).join(name);
        self.remote(&format!("mkdir -p {}", shell_quote(&d.to_string_lossy())))?;
        Ok(d)
    }

    fn read_client_file(&self, path: &Path) -> Result<String, String> {
        self.remote(&format!("cat {}", shell_quote(&path.to_string_lossy())))
    }

    fn set_loss(&mut self, pct: u32) -> Result<(), String> {
        self.loss_pct = pct;
        self.apply()
    }

    fn set_rate(&mut self, mbps: Option<u32>) -> Result<(), String> {
        self.rate_mbps = mbps;
        self.apply()
    }

    fn impair(&mut self, cfg: &ImpairConfig, _dir: &Path, _sweep: &Path) -> Result<(), String> {
        self.impairment = Some(*cfg);
        let r = self.apply();
        if r.is_err() {
            self.impairment = None;
        }
        r
    }

    fn unimpair(&mut self) -> Result<(u64, u64), String> {
        // netem counts its drops in the qdisc's statistics, not split by cause: the sweep's
        // relay columns stay zero across a LAN.
        self.impairment = None;
        self.apply()?;
        Ok((0, 0))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = local("tc", &["qdisc", "del", "dev", &self.iface, "root"]);
        let mut line = format!("rm -rf {}", shell_quote(&self.peer_work.to_string_lossy()));
        if self.peer_table {
            line.push_str("; nft delete table inet pfsweep");
        }
        let _ = self.remote(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting_keeps_every_argument_one_word() {
        assert_eq!(shell_quote("/usr/bin/punktfunk"), "/usr/bin/punktfunk");
        assert_eq!(shell_quote("1280x720@60"), "1280x720@60");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}

//! The sweep in its CI form (`sweep --ci`): a real testbed of three network namespaces, the
//! real `punktfunk serve` and `punktfunk client`, nftables loss and the impairment relay; the
//! CSV it writes is checked here (docs/sweeps.md "CI").
//!
//! What is checked is what the testbed guarantees, not how fast this machine is: every point
//! ran; the columns are there; a lossless link delivers; Bernoulli loss made FEC work; the
//! relay lost packets in bursts and reordered; its 2 ms of delay is a floor under the
//! latency; a GameStream stream (moonlight-python from tests/.venv, which scripts/setup.sh
//! makes) ran under 5 % loss with the host's own frame count and stamp latencies; plots and
//! summary exist.

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The columns (docs/sweeps.md "CSV").
const REQUIRED: [&str; 10] = [
    "protocol",
    "loss_model",
    "loss_pct",
    "fec_pct",
    "bitrate_mbps",
    "send_path",
    "frames_recovered_pct",
    "goodput_mbps",
    "latency_us_p50",
    "latency_us_p99",
];

type Row<'a> = HashMap<&'a str, &'a str>;

/// The sweep's CSV as rows by column name; the columns must be there.
fn parse(csv: &str) -> Vec<Row<'_>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    for col in REQUIRED {
        assert!(header.contains(&col), "column {col} missing: {header:?}");
    }
    lines
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            assert_eq!(v.len(), header.len(), "{l}");
            header.iter().copied().zip(v).collect()
        })
        .collect()
}

/// A numeric cell.
fn num(r: &Row<'_>, k: &str) -> f64 {
    r[k].parse().unwrap_or_else(|_| panic!("{k} = {:?}", r[k]))
}

/// Whether this process runs as root (from /proc, no libc call); skips the test otherwise.
fn root_or_skip(what: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        skip::skip("netns", format!("{what} needs root (network namespaces)"));
    }
    root
}

/// The `punktfunk` binary beside the sweep (and `punktfunk-client`, which `punktfunk client`
/// runs), built if missing.
fn punktfunk_binary(sweep: &Path) -> PathBuf {
    let punktfunk = sweep.with_file_name("punktfunk");
    if !punktfunk.is_file() || !sweep.with_file_name("punktfunk-client").is_file() {
        // `cargo test --workspace` builds them (the crates' integration tests need them).
        let built = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "punktfunk-control",
                "-p",
                "punktfunk-client",
                "--bins",
            ])
            .status()
            .expect("cargo");
        assert!(built.success());
    }
    punktfunk
}

#[test]
fn ci_sweep_writes_a_csv_that_shows_loss_fec_and_the_relay_at_work() {
    if !root_or_skip("the sweep's testbed") {
        return;
    }
    let sweep = PathBuf::from(env!("CARGO_BIN_EXE_sweep"));
    let punktfunk = punktfunk_binary(&sweep);
    let out = std::env::temp_dir().join(format!("pf-sweep-ci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(&sweep)
        .args([
            "--ci",
            "--prefix",
            &format!("pft{}", std::process::id() % 10_000),
        ])
        .arg("--out")
        .arg(&out)
        .arg("--punktfunk")
        .arg(&punktfunk)
        .output()
        .expect("run the sweep");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "sweep failed: {log}");

    let csv = std::fs::read_to_string(out.join("sweep.csv")).expect("sweep.csv");
    let rows = parse(&csv);
    println!("{csv}");
    assert_eq!(rows.len(), 5, "{csv}");
    for r in &rows {
        assert_eq!(r["error"], "", "{r:?}");
        assert!(num(r, "frames_sent") >= 30.0, "{r:?}");
        assert!(num(r, "goodput_mbps") > 0.0, "{r:?}");
        assert!(
            num(r, "latency_us_p99") >= num(r, "latency_us_p50"),
            "{r:?}"
        );
    }
    let find = |model: &str, group: &str| {
        rows.iter()
            .find(|r| r["loss_model"] == model && r["group"] == group)
            .unwrap_or_else(|| panic!("no {model}/{group} row: {csv}"))
    };
    // A lossless veth delivers (a frame or two may still fall to a full socket buffer on a
    // loaded machine; FEC covers that too).
    let clean = find("none", "loss");
    assert!(num(clean, "frames_recovered_pct") >= 95.0, "{clean:?}");
    // 5 % Bernoulli loss by nftables: FEC repaired frames.
    let bern = find("bernoulli", "loss");
    assert_eq!(num(bern, "loss_pct"), 5.0);
    assert!(num(bern, "frames_recovered") > 0.0, "{bern:?}");
    // Bursts through the relay: packets lost there, and frames needed FEC or were lost.
    let ge = find("gilbert-elliott", "bursts");
    assert!(num(ge, "relay_lost") > 0.0, "{ge:?}");
    assert!(
        num(ge, "frames_recovered") + num(ge, "frames_lost") > 0.0,
        "{ge:?}"
    );
    // Delay 2 ms, jitter 1 ms, 1 % reordered: the relay reordered, and no frame arrives
    // before its 2 ms.
    let delay = find("none", "delay");
    assert_eq!(num(delay, "delay_ms"), 2.0);
    assert!(num(delay, "relay_reordered") > 0.0, "{delay:?}");
    assert!(num(delay, "latency_us_p50") >= 2000.0, "{delay:?}");
    // GameStream under 5 % loss: the host counted what it sent, moonlight-common-c handed
    // most of it out, and the stamps gave latencies.
    let gs = rows
        .iter()
        .find(|r| r["protocol"] == "gamestream")
        .unwrap_or_else(|| panic!("no gamestream row: {csv}"));
    assert_eq!((gs["loss_model"], num(gs, "loss_pct")), ("bernoulli", 5.0));
    assert!(
        num(gs, "frames_sent") >= num(gs, "frames_complete"),
        "{gs:?}"
    );
    assert!(num(gs, "frames_recovered_pct") >= 50.0, "{gs:?}");
    assert!(num(gs, "latency_us_p50") > 0.0, "{gs:?}");
    assert!(rows.iter().filter(|r| r["protocol"] == "pf1").count() == 4);
    for f in ["summary.md", "recovered.png", "latency.png"] {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Runs `cmd args…`, panicking with its stderr when it fails.
fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by one veth stand in for two machines on a LAN; the "peer" runs a
/// real sshd (its own host key, a key pair made here for root's login). Removed on drop.
struct FakeLan {
    ns: [String; 2],
    sshd: Option<std::process::Child>,
    dir: PathBuf,
}

impl Drop for FakeLan {
    fn drop(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn lan_sweep_runs_the_client_on_the_peer_over_ssh() {
    if !root_or_skip("the LAN sweep's stand-in LAN") {
        return;
    }
    if !Path::new("/usr/sbin/sshd").is_file() {
        skip::skip(
            "sshd",
            "the LAN sweep's peer needs openssh-server (scripts/setup.sh)",
        );
        return;
    }
    let sweep = PathBuf::from(env!("CARGO_BIN_EXE_sweep"));
    let punktfunk = punktfunk_binary(&sweep);
    let id = std::process::id() % 10_000;
    let (h, c) = (format!("pflh{id}"), format!("pflc{id}"));
    let dir = std::env::temp_dir().join(format!("pf-sweep-lan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut lan = FakeLan {
        ns: [h.clone(), c.clone()],
        sshd: None,
        dir: dir.clone(),
    };
    let (hv, cv) = (format!("pfl{id}a"), format!("pfl{id}b"));
    for ns in [&h, &c] {
        sh("ip", &["netns", "add", ns]);
        sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
    }
    sh(
        "ip",
        &[
            "link", "add", &hv, "netns", &h, "type", "veth", "peer", "name", &cv, "netns", &c,
        ],
    );
    sh("ip", &["-n", &h, "addr", "add", "10.79.0.1/24", "dev", &hv]);
    sh("ip", &["-n", &c, "addr", "add", "10.79.0.2/24", "dev", &cv]);
    // One datagram per packet, as a NIC without USO puts them on the wire.
    sh("ip", &["-n", &h, "link", "set", &hv, "gso_max_segs", "1"]);
    sh("ip", &["-n", &h, "link", "set", &hv, "up"]);
    sh("ip", &["-n", &c, "link", "set", &cv, "up"]);

    let key = dir.join("id");
    let host_key = dir.join("host_key");
    for k in [&key, &host_key] {
        sh(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", &k.to_string_lossy()],
        );
    }
    let auth = dir.join("authorized_keys");
    std::fs::copy(dir.join("id.pub"), &auth).unwrap();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 10.79.0.2\nPort 22\nHostKey {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nPidFile {}\n",
            host_key.display(),
            auth.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    // sshd's privilege-separation folder.
    std::fs::create_dir_all("/run/sshd").unwrap();
    lan.sshd = Some(
        Command::new("ip")
            .args(["netns", "exec", &c, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&config)
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd"),
    );
    let ssh = format!(
        "ssh -i {} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o LogLevel=ERROR -o ConnectTimeout=5",
        key.display()
    );
    // sshd listens within a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut probe = Command::new("ip");
        probe.args(["netns", "exec", &h]);
        probe
            .args(ssh.split_whitespace())
            .args(["root@10.79.0.2", "true"]);
        if probe.output().is_ok_and(|o| o.status.success()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sshd did not come up: {}",
            std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let out = dir.join("out");
    let run = Command::new("ip")
        .args(["netns", "exec", &h])
        .arg(&sweep)
        .args(["--ci", "--lan", "--iface", &hv, "--peer", "root@10.79.0.2"])
        .args(["--ssh", &ssh])
        .arg("--peer-dir")
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .arg("--punktfunk")
        .arg(&punktfunk)
        .output()
        .expect("run the sweep");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "sweep failed: {log}");
    assert!(log.contains("across"), "{log}");
    let netem = !log.contains("no netem here");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).expect("sweep.csv");
    let rows = parse(&csv);
    println!("{csv}");
    assert_eq!(rows.len(), 5, "{csv}");
    for r in &rows {
        let needs_netem = r["group"] == "bursts" || r["group"] == "delay";
        if needs_netem && !netem {
            // Said plainly, not run half.
            assert!(r["error"].contains("need tc netem"), "{r:?}");
            continue;
        }
        assert_eq!(r["error"], "", "{r:?}");
        assert!(num(r, "frames_sent") >= 30.0, "{r:?}");
        assert!(num(r, "goodput_mbps") > 0.0, "{r:?}");
    }
    // 5 % loss on the peer (nftables, or netem here): the client on the peer repaired frames
    // with FEC, and the GameStream client there (moonlight-python over ssh) streamed.
    let bern = rows
        .iter()
        .find(|r| r["protocol"] == "pf1" && r["loss_model"] == "bernoulli")
        .expect("pf1 bernoulli row");
    assert!(num(bern, "frames_recovered") > 0.0, "{bern:?}");
    let gs = rows
        .iter()
        .find(|r| r["protocol"] == "gamestream")
        .expect("gamestream row");
    assert!(num(gs, "frames_recovered_pct") >= 50.0, "{gs:?}");
    // The sweep removed its folder on the peer and the peer's nftables table.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("punktfunk-sweep-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let tables = Command::new("ip")
        .args(["netns", "exec", &c, "nft", "list", "tables"])
        .output()
        .expect("nft");
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("pfsweep"),
        "the peer's table stayed"
    );
}

#[test]
fn punktfunk_sweep_runs_the_sweep_installed_beside_it() {
    let sweep = PathBuf::from(env!("CARGO_BIN_EXE_sweep"));
    let punktfunk = punktfunk_binary(&sweep);
    let out = Command::new(&punktfunk)
        .args(["sweep", "--help"])
        .output()
        .expect("punktfunk sweep");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Loss and latency sweeps"), "{text}");
    assert!(text.contains("--lan"), "{text}");
    // Arguments reach the sweep unchanged: its own error for a missing --peer.
    let out = Command::new(&punktfunk)
        .args(["sweep", "--lan", "--iface", "lo"])
        .output()
        .expect("punktfunk sweep");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--peer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

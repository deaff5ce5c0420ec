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
use std::path::PathBuf;
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

#[test]
fn ci_sweep_writes_a_csv_that_shows_loss_fec_and_the_relay_at_work() {
    // The effective uid, from /proc (no libc call).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        skip::skip(
            "netns",
            "the sweep's testbed needs root (network namespaces)",
        );
        return;
    }
    let sweep = PathBuf::from(env!("CARGO_BIN_EXE_sweep"));
    let punktfunk = sweep.with_file_name("punktfunk");
    if !punktfunk.is_file() {
        // `cargo test --workspace` builds it (punktfunk-control's integration tests need it).
        let built = Command::new(env!("CARGO"))
            .args(["build", "-p", "punktfunk-control", "--bin", "punktfunk"])
            .status()
            .expect("cargo");
        assert!(built.success());
    }
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
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    for col in REQUIRED {
        assert!(header.contains(&col), "column {col} missing: {header:?}");
    }
    let rows: Vec<HashMap<&str, &str>> = lines
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            assert_eq!(v.len(), header.len(), "{l}");
            header.iter().copied().zip(v).collect()
        })
        .collect();
    println!("{csv}");
    assert_eq!(rows.len(), 5, "{csv}");
    let num = |r: &HashMap<&str, &str>, k: &str| -> f64 {
        r[k].parse().unwrap_or_else(|_| panic!("{k} = {:?}", r[k]))
    };
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

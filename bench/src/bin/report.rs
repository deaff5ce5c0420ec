//! Headline figures of punktfunk, each against a baseline measured in the same run.
//!
//! `cargo run --release -p punktfunk-bench --bin report [-- --no-write]`
//!
//! Prints one `NAME ours=… baseline=… ratio=…` line per figure and rewrites
//! docs/benchmarks.md (unless `--no-write`). Takes about a minute; the issue allows three.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use punktfunk_bench::fec::{Gf8Recovery, Gf8Workload};
use punktfunk_bench::pf1;
use punktfunk_bench::send::{self, Throughput};
use punktfunk_bench::{Line, compare, us};
use punktfunk_engine::fec::Kernel;
use punktfunk_engine::io::{Caps, SendPath};

const SHARD: usize = 1408;

fn gf8_encode(kernel: Kernel, name: &str) -> Line {
    let mut w = Gf8Workload::new(100, 20, SHARD, kernel);
    let mut b = Gf8Workload::new(100, 20, SHARD, kernel);
    let (ours, base) = compare(
        || w.encode_ours(),
        || b.encode_baseline(),
        Duration::from_millis(100),
        9,
    );
    Line {
        name: name.into(),
        ours: us(ours),
        baseline: us(base),
        ratio: base.as_secs_f64() / ours.as_secs_f64(),
        note: format!(
            "GF(2^8) encode, 100 data + 20 parity x {SHARD} B, our `{kernel}` kernel vs \
             reed-solomon-erasure 6 (simd-accel); time per block, ratio = theirs / ours"
        ),
    }
}

fn gf8_reconstruct(kernel: Kernel, name: &str) -> Line {
    let data = Gf8Workload::new(100, 20, SHARD, kernel).data;
    let mut r = Gf8Recovery::new(100, 20, SHARD, 20, kernel);
    let mut rb = Gf8Recovery::new(100, 20, SHARD, 20, kernel);
    let (ours, base) = compare(
        || r.recover_ours(),
        || rb.recover_baseline(),
        Duration::from_millis(100),
        9,
    );
    assert!(
        r.verify(&data) && rb.verify(&data),
        "recovery produced wrong data"
    );
    Line {
        name: name.into(),
        ours: us(ours),
        baseline: us(base),
        ratio: base.as_secs_f64() / ours.as_secs_f64(),
        note: format!(
            "GF(2^8) recovery of 20 lost data shards, 100+20 x {SHARD} B, our `{kernel}` \
             kernel vs reed-solomon-erasure reconstruct_data; ratio = theirs / ours"
        ),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Interleaved rounds of engine path, sendto baseline and io_uring+GSO ceiling for one frame
/// size; returns the two lines.
fn send_lines(caps: &Caps, frame_kb: usize, suffix: &str) -> [Line; 2] {
    let len = frame_kb * 1024;
    // About 300 MB of payload per engine/ceiling run, a fifth of that for sendto.
    let frames = (300 * 1024 / frame_kb) as u64;
    let (mut eng, mut st, mut ceil) = (Vec::new(), Vec::new(), Vec::new());
    let mut delivered = 1.0f64;
    for _ in 0..5 {
        let check = |t: Throughput, d: &mut f64| {
            *d = d.min(t.delivered);
            t.gbps
        };
        eng.push(check(send::engine_path(caps, len, frames), &mut delivered));
        st.push(check(
            send::prebuilt_path(caps, SendPath::Sendto, len, frames / 5),
            &mut delivered,
        ));
        ceil.push(check(
            send::prebuilt_path(caps, SendPath::UringGso, len, frames),
            &mut delivered,
        ));
    }
    let (e, s, c) = (median(eng), median(st), median(ceil));
    let gb = |x: f64| format!("{x:.2}Gbit/s");
    let what = format!(
        "{frame_kb} KiB frames, payload Gbit/s on loopback to a GRO receiver thread \
         (lowest delivery ratio seen {:.3})",
        delivered
    );
    [
        Line {
            name: format!("send-vs-sendto{suffix}"),
            ours: gb(e),
            baseline: gb(s),
            ratio: e / s,
            note: format!(
                "engine path (pipeline: hand-off copy, packetize + GF(2^8) FEC 20 %, io_uring+GSO \
                 send) vs a plain sendto loop over the same pre-built datagrams; {what}"
            ),
        },
        Line {
            name: format!("send-vs-ceiling{suffix}"),
            ours: gb(e),
            baseline: gb(c),
            ratio: e / c,
            note: format!(
                "the same engine path vs raw io_uring+GSO send of the pre-built datagrams \
                 (this machine's ceiling); {what}"
            ),
        },
    ]
}

fn latency_line(caps: &Caps) -> Line {
    let (frames, fps) = (240, 60);
    let mut ours = send::engine_latency(caps, 1 << 20, frames, fps);
    let mut naive = send::naive_latency(caps, 1 << 20, frames, fps);
    let (o50, o99) = (
        send::quantile(&mut ours, 0.5),
        send::quantile(&mut ours, 0.99),
    );
    let (n50, n99) = (
        send::quantile(&mut naive, 0.5),
        send::quantile(&mut naive, 0.99),
    );
    Line {
        name: "frame-latency".into(),
        ours: format!("p50={o50:.0}us,p99={o99:.0}us"),
        baseline: format!("p50={n50:.0}us,p99={n99:.0}us"),
        ratio: n50 / o50,
        note: format!(
            "1 MiB frame handed to the engine -> send of its last datagram returned, {frames} \
             frames at {fps} fps, through the pipeline (rings, FEC stage, io_uring+GSO send \
             stage) vs one thread doing copy + packetize + FEC + sendto per datagram; \
             ratio = naive p50 / ours p50"
        ),
    }
}

fn pf1_goodput(caps: &Caps) -> Line {
    // Median of three 3-second runs of 1 MiB frames.
    let mut runs: Vec<_> = (0..3)
        .map(|_| pf1::goodput(caps, 1 << 20, 3.0, 0.01))
        .collect();
    runs.sort_by(|a, b| a.gbps.total_cmp(&b.gbps));
    let unrecoverable: u64 = runs.iter().map(|r| r.unrecoverable).sum();
    let m = &runs[1];
    Line {
        name: "pf1-goodput".into(),
        ours: format!("{:.2}Gbit/s", m.gbps),
        baseline: format!("{:.2}Gbit/s", m.ceiling_gbps),
        ratio: m.gbps / m.ceiling_gbps,
        note: format!(
            "punktfunk/1 data plane on loopback: 1 MiB frames, GF(2^16) FEC {} % + AES-128-GCM + \
             io_uring/GSO sender thread, GRO receiver thread decrypting and reassembling, 1 % \
             random datagram loss injected at the receiver; vs the raw io_uring+GSO send of the \
             same datagrams (ceiling); {} unrecoverable frames in 3 runs (goal 0 and >= 2.5 Gbit/s)",
            pf1::PARITY_PERCENT,
            unrecoverable
        ),
    }
}

fn pf1_reconfigure() -> Line {
    let (mut remode, mut fresh) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (r, f) = pf1::reconfigure_once();
        remode.push(r);
        fresh.push(f);
    }
    let (r, f) = (median(remode), median(fresh));
    Line {
        name: "pf1-reconfigure".into(),
        ours: format!("{r:.1}ms"),
        baseline: format!("{f:.1}ms"),
        ratio: f / r,
        note: "punktfunk/1 renegotiation on loopback: Reconfigure{640x360@30} sent by the \
               reference client to the first frame of the new mode received (host rebuilds \
               pattern source and openh264 encoder, IDR), vs a fresh session (QUIC handshake, \
               Hello/Welcome/Start, pipeline start) to its first frame; medians of 3"
            .into(),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {cores} cores, Linux {kernel}, FEC kernel {}",
        Kernel::detect()
    )
}

fn write_doc(lines: &[Line], elapsed: Duration) -> std::io::Result<()> {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo run --release -p punktfunk-bench --bin report` (do not edit by hand; \
         rerun it). Every figure is measured against its baseline in the same run, rounds \
         interleaved so that background load hits both alike; medians are shown.\n"
    );
    let _ = writeln!(
        s,
        "Machine: {}. Report run took {:.0} s.\n",
        machine(),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(s, "```text");
    for l in lines {
        let _ = writeln!(s, "{l}");
    }
    let _ = writeln!(s, "```\n");
    let _ = writeln!(
        s,
        "| Line | What is measured |\n|------|------------------|"
    );
    for l in lines {
        let _ = writeln!(s, "| `{}` | {} |", l.name, l.note);
    }
    let _ = writeln!(
        s,
        "\nComponent benches (criterion, one group per component: `fec-gf8-*`, `fec-gf16-*`, \
         `packetize-1MB`, `ring-handoff`, `send-paths`): `cargo bench -p punktfunk-bench`. \
         Per-path send figures and their method: docs/io.md. Encoder figures: docs/capture.md \
         once the capture crate lands."
    );
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"),
        s,
    )
}

fn main() {
    let write = !std::env::args().any(|a| a == "--no-write");
    let start = Instant::now();
    let best = Kernel::detect();
    let caps = Caps::probe();
    let mut lines = vec![
        gf8_encode(best, "gf8-encode"),
        gf8_reconstruct(best, "gf8-reconstruct"),
    ];
    for k in Kernel::available().filter(|&k| k != best && k != Kernel::Scalar) {
        lines.push(gf8_encode(k, &format!("gf8-encode-{k}")));
    }
    for l in &lines {
        println!("{l}");
    }
    let mut more = Vec::new();
    more.extend(send_lines(&caps, 1024, ""));
    more.extend(send_lines(&caps, 256, "-256k"));
    more.push(latency_line(&caps));
    more.push(pf1_goodput(&caps));
    more.push(pf1_reconfigure());
    for l in &more {
        println!("{l}");
    }
    lines.extend(more);
    if write {
        match write_doc(&lines, start.elapsed()) {
            Ok(()) => println!("wrote docs/benchmarks.md"),
            Err(e) => eprintln!("could not write docs/benchmarks.md: {e}"),
        }
    }
}

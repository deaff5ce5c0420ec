//! Headline figures of punktfunk, each against a baseline measured in the same run.
//!
//! `cargo run --release -p punktfunk-bench --bin report [-- --no-write] [--only GROUP,…]`
//!
//! Prints one `NAME ours=… baseline=… ratio=…` line per figure and rewrites
//! docs/benchmarks.md (unless `--no-write`, or `--only`: a partial run never rewrites it).
//! Groups: `gf8`, `send`, `frame-latency`, `pf1-goodput`, `pf1-reconfigure`, `pf1-decoded`,
//! `sessions-scaling`, `under-load`. A full run takes about two and a half minutes.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use punktfunk_bench::fec::{Gf8Recovery, Gf8Workload};
use punktfunk_bench::pf1;
use punktfunk_bench::send::{self, Throughput};
use punktfunk_bench::serve::{self, ScalingPoint};
use punktfunk_bench::{Line, compare, us};
use punktfunk_control::pf1::Mode;
use punktfunk_engine::config::ThreadPriority;
use punktfunk_engine::fec::Kernel;
use punktfunk_engine::io::pin;
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
    // Median of three 3-second runs of 1 MiB frames through the pipeline `serve` builds,
    // interleaved with runs of the direct sender this line measured before (for comparison).
    let mut direct = Vec::new();
    let mut runs: Vec<_> = (0..3)
        .map(|_| {
            let g = serve::goodput(caps, &serve::GoodputConfig::default());
            eprintln!("  pf1-goodput run: {g}");
            let d = pf1::goodput_with(
                caps,
                &pf1::GoodputConfig {
                    ceiling: false,
                    ..Default::default()
                },
            );
            eprintln!("  pf1-goodput direct sender: {d}");
            direct.push(d.gbps);
            g
        })
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
            "punktfunk/1 on loopback through the pipeline `serve` runs (since issue 8; before, \
             a direct sender `serve` never used): `PipelineBuilder::spawn` with the host's \
             profile defaults (pacing off, priority `{}`) and `control::pf1::media`'s packetize \
             stage (GF(2^16) FEC {} % + AES-128-GCM), a source copying 1 MiB frames into pool \
             buffers at most {} frames ahead of the receiver, io_uring/GSO send stage; GRO \
             receiver thread decrypting and reassembling, 1 % random datagram loss injected \
             there; goodput = frame payload delivered. Baseline: the raw io_uring+GSO send of \
             the same datagrams (ceiling); {} unrecoverable frames in 3 runs (goal 0 and >= \
             2.5 Gbit/s); the direct sender (`Pf1FrameSender` on one thread, what this line \
             measured before) gave {:.2} Gbit/s in the same run",
            ThreadPriority::default(),
            pf1::PARITY_PERCENT,
            pf1::WINDOW,
            unrecoverable,
            median(direct),
        ),
    }
}

fn sessions_scaling(caps: &Caps) -> Line {
    let mode = Mode::new(1280, 720, 60);
    let (warmup, measure) = (Duration::from_secs(1), Duration::from_secs(5));
    let points = serve::sessions_scaling(caps, &[1, 2, 4], mode, warmup, measure);
    for p in &points {
        eprintln!("  sessions-scaling: {p}");
    }
    let fmt =
        |p: &ScalingPoint| format!("{}:{:.1}%core/{:.1}fps", p.sessions, p.cpu_percent, p.fps);
    let one = &points[0];
    let four = &points[points.len() - 1];
    // CPU per frame delivered: at 4 sessions a stream may get fewer frames for its CPU.
    let per_frame = |p: &ScalingPoint| p.cpu_percent / p.fps.max(1e-9);
    let clients = points
        .iter()
        .map(|p| format!("{:.0} %", p.client_cpu_percent))
        .collect::<Vec<_>>()
        .join(" / ");
    Line {
        name: "sessions-scaling".into(),
        ours: points[1..].iter().map(fmt).collect::<Vec<_>>().join(","),
        baseline: fmt(one),
        ratio: per_frame(one) / per_frame(four),
        note: format!(
            "host CPU per stream (% of one core: CPU time of every thread of the process but \
             the loopback drain threads, read per thread from /proc/self/task/*/schedstat, \
             over {} s after {} s warm-up, divided by sessions and wall time) and frames sent \
             per second per stream, for N = 1, 2, 4 concurrent punktfunk/1 sessions of the \
             host's media (test pattern -> openh264 {mode}, 20 Mbit/s, `control::pf1::media` \
             stages, profile defaults, `PipelineBuilder::spawn`), each to its own loopback \
             drain; ours = N:CPU/fps for 2 and 4, baseline = 1 session; ratio = CPU per frame \
             at 1 session / CPU per frame at 4 (> 1: a stream costs less when sessions share \
             the machine). Drain threads used {clients} of a core (left out); slowest stream at \
             4: {:.1} fps; frames dropped in the pipelines at 4: {}",
            measure.as_secs(),
            warmup.as_secs(),
            four.min_fps,
            four.dropped,
        ),
    }
}

fn under_load(caps: &Caps) -> Vec<Line> {
    let hogs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (nice, _) = pin::current_thread_priority();
    let mut lines = Vec::new();
    for (priority, suffix) in [
        (ThreadPriority::Normal, ""),
        (ThreadPriority::High, "-high"),
        (ThreadPriority::Realtime, "-realtime"),
    ] {
        let (rounds, frames, seconds) = (2, 240, 2.0);
        let u = serve::under_load(caps, priority, hogs, rounds, frames, seconds);
        let (g_idle, g_loaded) = u.goodput_gbps();
        let (lost_idle, lost_loaded) = u.unrecoverable();
        eprintln!(
            "  under-load{suffix}: p50 {:.0}/{:.0} us, p99 {:.0}/{:.0} us idle/loaded; goodput \
             {g_idle:.2}/{g_loaded:.2} Gbit/s",
            u.p50_idle, u.p50_loaded, u.p99_idle, u.p99_loaded
        );
        for g in u.goodput_idle.iter().chain(&u.goodput_loaded) {
            eprintln!("    {g}");
        }
        let refused = if priority != ThreadPriority::Normal
            && matches!(
                std::thread::spawn(move || pin::set_current_thread_priority(priority))
                    .join()
                    .expect("asking never panics"),
                pin::PriorityOutcome::Refused { .. }
            ) {
            " (REFUSED here: the threads ran at normal priority)"
        } else {
            ""
        };
        let how = match priority {
            ThreadPriority::Normal => {
                format!("stage threads at normal priority (nice {nice}), like the hogs")
            }
            ThreadPriority::High => format!(
                "stage threads at pipeline.priority = \"high\" (nice {}){refused}",
                ThreadPriority::HIGH_NICE
            ),
            p => format!(
                "stage threads at pipeline.priority = \"{p}\" (SCHED_FIFO {}){refused}",
                ThreadPriority::REALTIME_PRIORITY
            ),
        };
        let what = format!(
            "{hogs} busy threads at nice {nice} (one per core, standing in for a game) vs the \
             idle machine, {rounds} alternating idle/loaded rounds in the same run; {how}; the \
             loopback receiver (the client) at the same priority as the stages"
        );
        lines.push(Line {
            name: format!("under-load-p99{suffix}"),
            ours: format!("{:.0}us", u.p99_loaded),
            baseline: format!("{:.0}us", u.p99_idle),
            ratio: u.p99_loaded / u.p99_idle,
            note: format!(
                "`frame-latency`'s engine path (1 MiB frames at 60 fps, {frames} frames per \
                 round, samples pooled) p99 under load (ours) and idle (baseline); ratio = \
                 loaded / idle (1 = unaffected, higher is worse); p50 {:.0} us loaded, {:.0} us \
                 idle; {what}",
                u.p50_loaded, u.p50_idle
            ),
        });
        lines.push(Line {
            name: format!("under-load-goodput{suffix}"),
            ours: format!("{g_loaded:.2}Gbit/s"),
            baseline: format!("{g_idle:.2}Gbit/s"),
            ratio: g_loaded / g_idle,
            note: format!(
                "`pf1-goodput`'s serve pipeline (1 MiB frames, 1 % loss, {seconds} s per round, \
                 mean of the rounds) under load (ours) and idle (baseline); ratio = loaded / \
                 idle (1 = unaffected, lower is worse); unrecoverable frames {lost_loaded} \
                 loaded, {lost_idle} idle; {what}"
            ),
        });
    }
    lines
}

/// Capture and capture→encoded at 1080p from a private headless sway, against the test
/// pattern; no lines (and a note on stderr) where sway cannot run.
fn desktop_capture() -> Vec<Line> {
    use punktfunk_bench::desktop::{measure, percentile};
    let cost = match measure(1920, 1080, 60) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("desktop-capture not measured: {e}");
            return Vec::new();
        }
    };
    let (d, p) = (&cost.desktop, &cost.pattern);
    let ms = |v: &[f64], q: f64| percentile(v, q) / 1000.0;
    vec![
        Line {
            name: "desktop-capture-1080p".into(),
            ours: format!(
                "p50={:.2}ms,p99={:.2}ms",
                ms(&d.capture_us, 50.0),
                ms(&d.capture_us, 99.0)
            ),
            baseline: format!(
                "p50={:.2}ms,p99={:.2}ms",
                ms(&p.capture_us, 50.0),
                ms(&p.capture_us, 99.0)
            ),
            ratio: percentile(&p.capture_us, 50.0) / percentile(&d.capture_us, 50.0),
            note: "one 1920x1080 frame of a headless sway output (pixman) through wlr-screencopy into our SHM buffer, read, converted BGRx→I420, vs the test pattern rendered at 1080p; 60 frames each, alternating; ratio < 1: capture costs more than the pattern"
                .into(),
        },
        Line {
            name: "desktop-to-encoded-1080p".into(),
            ours: format!(
                "p50={:.2}ms,p99={:.2}ms",
                ms(&d.to_encoded_us, 50.0),
                ms(&d.to_encoded_us, 99.0)
            ),
            baseline: format!(
                "p50={:.2}ms,p99={:.2}ms",
                ms(&p.to_encoded_us, 50.0),
                ms(&p.to_encoded_us, 99.0)
            ),
            ratio: percentile(&p.to_encoded_us, 50.0) / percentile(&d.to_encoded_us, 50.0),
            note: "capture (as above) plus openh264 at 1080p, 20 Mbit/s: capture→encoded latency of the sway path vs the pattern path"
                .into(),
        },
    ]
}

/// Software encoders at 1080p60 against openh264 (bench::codecs): the lines at 10 Mbit/s and
/// the whole table (5, 10, 20 Mbit/s) for docs/benchmarks.md.
fn encoders() -> (Vec<Line>, String) {
    use punktfunk_bench::codecs::{rate_at_psnr, sweep};
    let (points, table) = sweep((1920, 1080, 60), &[5000, 10_000, 20_000], 90);
    let at = |name: &str, ten: bool, kbps: u32| {
        points
            .iter()
            .find(|p| p.encoder == name && p.format.ten_bit == ten && p.target_kbps == kbps)
    };
    let Some(base) = at("openh264", false, 10_000) else {
        eprintln!("encoders not measured: openh264 failed\n{table}");
        return (Vec::new(), table);
    };
    let curve = |name: &str, ten: bool| -> Vec<_> {
        points
            .iter()
            .filter(|p| p.encoder == name && p.format.ten_bit == ten)
            .cloned()
            .collect()
    };
    let base_rate = |psnr| rate_at_psnr(&curve("openh264", false), psnr);
    let mut lines = Vec::new();
    for (name, ten) in [
        ("libx264", false),
        ("libx265", false),
        ("libx265", true),
        ("libaom-av1", false),
        ("libaom-av1", true),
        ("libsvtav1", false),
        ("libsvtav1", true),
    ] {
        let Some(p) = at(name, ten, 10_000) else {
            continue;
        };
        // Bits for the same quality: this encoder's rate at openh264's 10 Mbit/s PSNR, where
        // its curve reaches it; otherwise openh264's rate at this encoder's PSNR, inverted.
        let same_q = rate_at_psnr(&curve(name, ten), base.psnr_mean)
            .map(|r| format!("{:.0}kbit/s@{:.1}dB", r, base.psnr_mean))
            .or_else(|| {
                base_rate(p.psnr_mean)
                    .map(|r| format!("openh264 needs {r:.0}kbit/s@{:.1}dB", p.psnr_mean))
            })
            .unwrap_or_else(|| "n/a".into());
        let tag = if ten { "-10bit" } else { "" };
        lines.push(Line {
            name: format!("encode-{name}{tag}-1080p"),
            ours: format!(
                "p50={:.2}ms,p99={:.2}ms,psnr={:.2}dB,rate={:.0}kbit/s,same-psnr={same_q}",
                p.ms(50.0),
                p.ms(99.0),
                p.psnr_mean,
                p.actual_kbps
            ),
            baseline: format!(
                "p50={:.2}ms,p99={:.2}ms,psnr={:.2}dB,rate={:.0}kbit/s",
                base.ms(50.0),
                base.ms(99.0),
                base.psnr_mean,
                base.actual_kbps
            ),
            ratio: base.ms(50.0) / p.ms(50.0),
            note: format!(
                "{name}{} with serve's settings vs openh264, 1920x1080@60 at 10 Mbit/s, 90 frames of \
                 the pattern with a scrolling texture; time from encode call to the frame's own \
                 access unit; PSNR of luma decoded by libavcodec; ratio = openh264 p50 / ours \
                 (< 1: slower); same-psnr: bitrate for openh264's PSNR from the 5/10/20 Mbit/s curve",
                if ten { " 10-bit" } else { "" }
            ),
        });
    }
    (lines, table)
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

fn pf1_decoded() -> Line {
    let (reassembled, decoded, p99) = pf1::decoded_latency_once();
    Line {
        name: "pf1-decoded-latency".into(),
        ours: format!("{:.2}ms", decoded as f64 / 1e3),
        baseline: format!("{:.2}ms", reassembled as f64 / 1e3),
        ratio: reassembled as f64 / decoded.max(1) as f64,
        note: format!(
            "the reference client (punktfunk client, on the C ABI core) on loopback, 1280x720@60 \
             test pattern for 3 s: capture → decoded p50 (openh264 decode, the pattern's stamp \
             read from the decoded picture; p99 {:.2} ms) vs capture → reassembled p50 (the same \
             frames before decoding); ratio < 1: what decoding adds",
            p99 as f64 / 1e3
        ),
    }
}

fn machine() -> String {
    format!(
        "{}, FEC kernel {}",
        punktfunk_bench::machine(),
        Kernel::detect()
    )
}

fn write_doc(lines: &[Line], encoder_table: &str, elapsed: Duration) -> std::io::Result<()> {
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
         Per-path send figures and their method: docs/io.md. Encoder figures: the \"Encoders\" table below.\n\nOutside this report (it needs the capture feature \
         `mutter` and a mutter binary): the cost of a Mutter virtual monitor at 1080p, \
         `cargo test --release -p punktfunk-capture --features mutter --test virtual_mutter -- \
         --ignored --nocapture virtual_mutter_capture_cost`; figures, machine and method in \
         docs/capture.md, \"Mutter (GNOME)\", \"Cost (measured)\".\n\n\
         Measured by tests, not by this report: KWin capture \
         (capture feature `kwin`), a 1920x1080 KWin 5.27 window stream through PipeWire into our \
         buffer, 1.5 ms of process CPU per frame (release, Intel Xeon 2 vCPUs; `cargo test \
         --release -p punktfunk-capture --features kwin --test virtual_kwin \
         virtual_kwin_window_capture -- --nocapture`; method: docs/capture.md \"KWin (KDE)\")."
    );
    if !encoder_table.is_empty() {
        let _ = writeln!(
            s,
            "\n## Encoders\n\nEvery software encoder at 1920x1080@60 (`encoders` group; also \
             `cargo run --release -p punktfunk-bench --bin codecs`), serve's settings \
             (docs/capture.md \"Encoders\"), 90 frames of the test pattern with a scrolling \
             textured band per point, same machine as above:\n\n{encoder_table}"
        );
    }
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"),
        s,
    )
}

const GROUPS: [&str; 10] = [
    "desktop-capture",
    "encoders",
    "gf8",
    "send",
    "frame-latency",
    "pf1-goodput",
    "pf1-reconfigure",
    "pf1-decoded",
    "sessions-scaling",
    "under-load",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only: Option<Vec<String>> = args.iter().position(|a| a == "--only").map(|i| {
        args.get(i + 1)
            .map(|g| g.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    });
    if let Some(groups) = &only
        && let Some(bad) = groups.iter().find(|g| !GROUPS.contains(&g.as_str()))
    {
        eprintln!("unknown group {bad:?}; groups: {}", GROUPS.join(", "));
        std::process::exit(2);
    }
    let run = |group: &str| only.as_ref().is_none_or(|g| g.iter().any(|x| x == group));
    let write = only.is_none() && !args.iter().any(|a| a == "--no-write");
    let start = Instant::now();
    let best = Kernel::detect();
    let caps = Caps::probe();
    let mut lines = Vec::new();
    let emit = |more: Vec<Line>, lines: &mut Vec<Line>| {
        for l in &more {
            println!("{l}");
        }
        lines.extend(more);
    };
    if run("gf8") {
        let mut more = vec![
            gf8_encode(best, "gf8-encode"),
            gf8_reconstruct(best, "gf8-reconstruct"),
        ];
        for k in Kernel::available().filter(|&k| k != best && k != Kernel::Scalar) {
            more.push(gf8_encode(k, &format!("gf8-encode-{k}")));
        }
        emit(more, &mut lines);
    }
    if run("send") {
        let mut more = Vec::new();
        more.extend(send_lines(&caps, 1024, ""));
        more.extend(send_lines(&caps, 256, "-256k"));
        emit(more, &mut lines);
    }
    if run("frame-latency") {
        emit(vec![latency_line(&caps)], &mut lines);
    }
    if run("pf1-goodput") {
        emit(vec![pf1_goodput(&caps)], &mut lines);
    }
    if run("pf1-reconfigure") {
        emit(vec![pf1_reconfigure()], &mut lines);
    }
    if run("pf1-decoded") {
        emit(vec![pf1_decoded()], &mut lines);
    }
    if run("sessions-scaling") {
        emit(vec![sessions_scaling(&caps)], &mut lines);
    }
    if run("under-load") {
        emit(under_load(&caps), &mut lines);
    }
    if run("desktop-capture") {
        emit(desktop_capture(), &mut lines);
    }
    let mut encoder_table = String::new();
    if run("encoders") {
        let (more, table) = encoders();
        print!("{table}");
        encoder_table = table;
        emit(more, &mut lines);
    }
    if write {
        match write_doc(&lines, &encoder_table, start.elapsed()) {
            Ok(()) => println!("wrote docs/benchmarks.md"),
            Err(e) => eprintln!("could not write docs/benchmarks.md: {e}"),
        }
    }
}

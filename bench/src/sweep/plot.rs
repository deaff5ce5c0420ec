//! A sweep's outputs (act): `sweep.csv`, `summary.md` and three PNG plots in the output folder.
//!
//! Plots (plotters, drawn in memory; labels in DejaVu Sans from fonts-dejavu-core):
//! * `recovered.png`: frames delivered complete (%) against Bernoulli loss, one line per FEC
//!   setting;
//! * `latency.png`: capture → reassembled latency p50 and p99 against bitrate, no loss;
//! * `goodput.png`: goodput against the link rate, one line per send path.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use plotters::prelude::*;

use super::{CSV_HEADER, Measured, Point, csv_row, falloff};

/// The font the plots' text uses.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Writes the CSV (all rows so far; called after every point so an interrupted sweep keeps
/// what it measured).
pub fn write_csv(out: &Path, results: &[(Point, Measured)]) -> Result<(), String> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for (p, m) in results {
        text.push_str(&csv_row(p, m));
        text.push('\n');
    }
    let tmp = out.join("sweep.csv.tmp");
    fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, out.join("sweep.csv")).map_err(|e| e.to_string())
}

fn ok(results: &[(Point, Measured)], group: &str) -> Vec<(Point, Measured)> {
    results
        .iter()
        .filter(|(p, m)| p.group == group && m.error.is_none())
        .cloned()
        .collect()
}

/// Loads the font once per process (plotters keeps it for the process's lifetime).
fn font() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes =
                fs::read(FONT).map_err(|e| format!("{FONT}: {e} (install fonts-dejavu-core)"))?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT}: not a usable TrueType font"))
        })
        .clone()
}

/// One line of a plot: legend and points.
type Line = (String, Vec<(f64, f64)>);

/// Draws `lines` into `path`.
fn chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
) -> Result<(), String> {
    font()?;
    let pts = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(()); // nothing measured for this figure
    }
    let pad = |a: f64, b: f64| ((b - a).abs() * 0.08).max(0.5);
    let (xp, yp) = (pad(x0, x1), pad(y0, y1));
    let e = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x0 - xp)..(x1 + xp), (y0 - yp)..(y1 + yp))
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (label, p)) in lines.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba().stroke_width(3);
        c.draw_series(LineSeries::new(p.iter().copied(), colour))
            .map_err(|x| e(&x))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour));
        c.draw_series(
            p.iter()
                .map(|&(x, y)| Circle::new((x, y), 4, colour.filled())),
        )
        .map_err(|x| e(&x))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// Points grouped into one line per label, in order of first appearance.
fn legend_lines(points: impl Iterator<Item = (String, (f64, f64))>) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for (label, at) in points {
        match lines.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(at),
            None => lines.push((label, vec![at])),
        }
    }
    lines
}

/// The three plots.
pub fn plots(out: &Path, results: &[(Point, Measured)]) -> Result<(), String> {
    // Delivered % against Bernoulli loss, per protocol and FEC setting.
    let mut loss = ok(results, "loss");
    loss.extend(ok(results, "gamestream"));
    let lines = legend_lines(loss.iter().map(|(p, m)| {
        (
            format!("{} {}", p.protocol.name(), p.fec.label()),
            (p.loss.describe().1, m.delivered_pct()),
        )
    }));
    chart(
        &out.join("recovered.png"),
        "frames delivered complete under random loss",
        "Bernoulli loss (%)",
        "frames delivered (%)",
        &lines,
    )?;
    // Latency against bitrate (no loss): the bitrate group and the loss group's lossless
    // fixed-20 % point.
    let mut lat: Vec<(f64, f64, f64)> = results
        .iter()
        .filter(|(p, m)| {
            m.error.is_none()
                && (p.group == "bitrate"
                    || (p.group == "loss"
                        && p.nft_loss() == 0
                        && !p.fec.adaptive
                        && p.fec.percent == 20))
        })
        .filter_map(|(p, m)| {
            Some((
                f64::from(p.bitrate_mbps),
                m.latency_us_p50? as f64 / 1000.0,
                m.latency_us_p99? as f64 / 1000.0,
            ))
        })
        .collect();
    lat.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart(
        &out.join("latency.png"),
        "punktfunk/1: capture to reassembled frame, no loss",
        "bitrate (Mbit/s)",
        "latency (ms)",
        &[
            ("p50".into(), lat.iter().map(|l| (l.0, l.1)).collect()),
            ("p99".into(), lat.iter().map(|l| (l.0, l.2)).collect()),
        ],
    )?;
    // Goodput against link rate, per send path (rate-limited points only).
    let lines = legend_lines(ok(results, "link").iter().filter_map(|(p, m)| {
        Some((
            format!("{}, pacing {}", p.send.name(), p.send.pacing_share),
            (f64::from(p.link_mbps?), m.goodput_mbps),
        ))
    }));
    chart(
        &out.join("goodput.png"),
        "punktfunk/1: goodput of a 30 Mbit/s stream against link rate",
        "link rate (Mbit/s, tbf)",
        "goodput (Mbit/s)",
        &lines,
    )
}

/// `summary.md`: how the sweep ran, the headline findings, and every point.
pub fn summary(
    out: &Path,
    command: &str,
    machine: &str,
    minutes: f64,
    results: &[(Point, Measured)],
) -> Result<(), String> {
    let mut s = String::new();
    let _ = writeln!(s, "# Sweep summary\n");
    let _ = writeln!(s, "Command: `{command}`  ");
    let _ = writeln!(s, "Machine: {machine}  ");
    let _ = writeln!(
        s,
        "{} points in {minutes:.1} min; {} failed. Testbed: host, router and client network \
         namespaces joined by veths; Bernoulli loss by nftables in the client's prerouting \
         chain, bursts/delay/jitter/reordering by the userspace relay on the router, link rates \
         by tbf (docs/sweeps.md). Frames delivered = frames the client completed (with or \
         without FEC) as a share of complete + declared lost.\n",
        results.len(),
        results.iter().filter(|(_, m)| m.error.is_some()).count()
    );
    let _ = writeln!(
        s,
        "## Where the curves fall off (≥ 99 % of frames delivered)\n"
    );
    for (protocol, fec, held, failed) in falloff(results, 99.0) {
        let held = held.map_or("none".into(), |h| format!("{h} %"));
        let failed = failed.map_or("not within the sweep".into(), |f| format!("{f} %"));
        let _ = writeln!(
            s,
            "* {} {}: holds up to {held} loss; first below at {failed}",
            protocol.name(),
            fec.label()
        );
    }
    let _ = writeln!(s, "\n## Every point\n");
    let _ = writeln!(
        s,
        "| group | loss | FEC | bitrate | link | path | delay/jitter/reorder | delivered % | recovered by FEC | lost | goodput Mbit/s | latency p50 / p99 ms | host CPU % (encode, send) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (p, m) in results {
        let (model, pct, burst) = p.loss.describe();
        let loss = match model {
            "none" => "0".to_owned(),
            "bernoulli" => format!("{pct} %"),
            _ => format!("{pct} % bursts of {burst}"),
        };
        let ms = |v: Option<i64>| v.map_or("-".into(), |v| format!("{:.1}", v as f64 / 1000.0));
        if let Some(err) = &m.error {
            let _ = writeln!(
                s,
                "| {} | {loss} | {} | {} | | | | failed: {} | | | | | |",
                p.group,
                p.fec.label(),
                p.bitrate_mbps,
                err.replace('|', "/")
            );
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {loss} | {} | {} | {} | {} {} | {}/{}/{} | {:.2} | {} | {} | {:.1} | {} / {} | {:.0} ({:.0}, {:.0}) |",
            p.group,
            p.fec.label(),
            p.bitrate_mbps,
            p.link_mbps.map_or("veth".into(), |r| r.to_string()),
            p.send.name(),
            p.send.pacing_share,
            p.delay_ms,
            p.jitter_ms,
            p.reorder_pct,
            m.delivered_pct(),
            m.frames_recovered,
            m.frames_lost,
            m.goodput_mbps,
            ms(m.latency_us_p50),
            ms(m.latency_us_p99),
            m.cpu_total_pct,
            m.cpu_encode_pct,
            m.cpu_send_pct,
        );
    }
    let _ = writeln!(
        s,
        "\nPlots: `recovered.png`, `latency.png`, `goodput.png`; data: `sweep.csv`."
    );
    fs::write(out.join("summary.md"), s).map_err(|e| e.to_string())
}

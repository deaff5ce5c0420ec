//! Loss and latency sweeps over a network-namespace testbed (docs/sweeps.md).
//!
//! ```text
//!  plan (this file, pure)        what to measure: the grid of points, the CSV row of a result,
//!                                the profile a point runs with, the summary's headline
//!  testbed.rs  (act)             three namespaces joined by veths, nftables loss, tbf rate,
//!                                the relay's route on and off; torn down on drop and on Ctrl-C
//!  tun.rs      (act, unsafe)     a TUN device opened by name (ioctl TUNSETIFF)
//!  relay.rs    (act)             the impairment relay: TUN ─► crate::impair ─► TUN
//!  lan.rs      (act)             the same knobs across a real LAN: tc netem (or tbf + the
//!                                peer's nftables) on this machine's interface, the client
//!                                on the peer over ssh
//!  run.rs      (act)             one point: `punktfunk serve` on the bed's host side,
//!                                `punktfunk client` on its client side, CPU per stage from /proc
//!  plot.rs     (act)             CSV, markdown summary and PNG plots into the output folder
//! ```
//!
//! ```text
//!   ns host 10.78.0.1 ──veth── ns router ──veth── ns client 10.78.1.2
//!                              10.78.0.254 │ 10.78.1.254 (tbf: link rate; client prerouting:
//!                                          │              nftables Bernoulli loss)
//!                       host → client packets, when the point needs the relay:
//!                       ip rule iif <router's host veth> → table 100 → dev tun
//!                       relay: read tun → loss model, delay, jitter, reorder → write tun
//!                       → main table → client
//! ```

pub mod lan;
pub mod plot;
pub mod relay;
pub mod run;
pub mod testbed;
#[allow(unsafe_code)]
pub mod tun;

use crate::impair::{ImpairConfig, LossModel};

/// Which protocol a point streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// punktfunk/1: `punktfunk client` against `punktfunk serve`.
    Pf1,
    /// GameStream: moonlight-python (moonlight-common-c) against `punktfunk serve`, through
    /// the end-to-end harness's `tests/e2e/streaming.py`.
    GameStream,
}

impl Protocol {
    /// The name in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pf1 => "pf1",
            Self::GameStream => "gamestream",
        }
    }
}

/// How a point's link loses packets (host → client).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// No loss.
    None,
    /// Independent loss, in percent: an nftables `numgen random` rule in the client's
    /// prerouting chain.
    Bernoulli(f64),
    /// Gilbert–Elliott bursts of `mean_burst` packets averaging `pct` percent: the relay.
    Bursts {
        /// Long-run loss, percent.
        pct: f64,
        /// Mean burst length, packets.
        mean_burst: f64,
    },
}

impl Loss {
    /// `(model name, percent, mean burst length)` for the CSV.
    pub fn describe(self) -> (&'static str, f64, f64) {
        match self {
            Self::None => ("none", 0.0, 0.0),
            Self::Bernoulli(p) => ("bernoulli", p, 1.0),
            Self::Bursts { pct, mean_burst } => ("gilbert-elliott", pct, mean_burst),
        }
    }
}

/// FEC of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fec {
    /// Parity percent (the start value when adaptive).
    pub percent: u8,
    /// Parity follows the client's loss reports.
    pub adaptive: bool,
}

impl Fec {
    /// `"fixed"` or `"adaptive"`.
    pub fn mode(self) -> &'static str {
        if self.adaptive { "adaptive" } else { "fixed" }
    }

    /// `"20% fixed"`, `"adaptive from 20%"`: a plot legend.
    pub fn label(self) -> String {
        if self.adaptive {
            format!("adaptive (from {} %)", self.percent)
        } else {
            format!("{} % fixed", self.percent)
        }
    }
}

/// The host's send path of a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendPath {
    /// io_uring with UDP GSO (`"uring-gso"`), or io_uring without (`"uring"`).
    pub gso: bool,
    /// `[pacing] frame_share`.
    pub pacing_share: f32,
}

impl SendPath {
    /// The CSV name: `gso` or `no-gso`.
    pub fn name(self) -> &'static str {
        if self.gso { "gso" } else { "no-gso" }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Protocol.
    pub protocol: Protocol,
    /// Loss model.
    pub loss: Loss,
    /// One-way delay added by the relay, ms.
    pub delay_ms: f64,
    /// Jitter added by the relay (uniform 0..=jitter, order kept), ms.
    pub jitter_ms: f64,
    /// Packets the relay holds back behind later ones, percent.
    pub reorder_pct: f64,
    /// FEC.
    pub fec: Fec,
    /// Encoder bitrate, Mbit/s.
    pub bitrate_mbps: u32,
    /// Link rate (tbf on the router's client side), Mbit/s; `None`: the veth's own.
    pub link_mbps: Option<u32>,
    /// Send path.
    pub send: SendPath,
    /// Stream mode: width, height, fps.
    pub mode: (u32, u32, u32),
    /// Seconds the client receives.
    pub seconds: f64,
    /// Which figure this point belongs to (`loss`, `bursts`, `bitrate`, `link`, `delay`).
    pub group: &'static str,
}

impl Point {
    /// Whether the point needs the userspace relay (bursts, delay, jitter, reordering).
    pub fn uses_relay(&self) -> bool {
        matches!(self.loss, Loss::Bursts { .. })
            || self.delay_ms > 0.0
            || self.jitter_ms > 0.0
            || self.reorder_pct > 0.0
    }

    /// The nftables loss percentage (Bernoulli points only), whole percent.
    pub fn nft_loss(&self) -> u32 {
        match self.loss {
            Loss::Bernoulli(p) => p.round().clamp(0.0, 100.0) as u32,
            _ => 0,
        }
    }

    /// The relay's configuration, seeded by `seed`.
    pub fn impairment(&self, seed: u64) -> ImpairConfig {
        ImpairConfig {
            loss: match self.loss {
                Loss::Bursts { pct, mean_burst } => LossModel::bursts(pct / 100.0, mean_burst),
                _ => LossModel::None,
            },
            delay_us: (self.delay_ms * 1000.0) as u64,
            jitter_us: (self.jitter_ms * 1000.0) as u64,
            reorder: self.reorder_pct / 100.0,
            reorder_gap_us: 2_000,
            seed,
            ..ImpairConfig::default()
        }
    }

    /// The tuning profile `punktfunk serve` runs this point with.
    pub fn profile(&self) -> String {
        let (_, _, fps) = self.mode;
        format!(
            "# written by the sweep (bench/src/sweep)\n\
             [pipeline]\npriority = \"normal\"\n\n\
             [send]\npath = \"{path}\"\n\n\
             [pacing]\nframe_share = {share}\n\n\
             [fec]\npercent = {pct}\nadaptive = {adaptive}\n\n\
             [video]\nbitrate_kbps = {kbps}\nfps = {fps}\n\n\
             [capture]\nsource = \"test-pattern\"\npattern_noise = true\n",
            path = if self.send.gso { "uring-gso" } else { "uring" },
            share = self.send.pacing_share,
            pct = self.fec.percent,
            adaptive = self.fec.adaptive,
            kbps = self.bitrate_mbps * 1000,
        )
    }
}

/// The size of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A handful of points for CI (under a minute).
    Ci,
    /// Every figure, few points each (under 10 minutes here).
    Quick,
    /// Every figure, more points and longer runs.
    Full,
}

/// The points of a sweep of `size`, in run order.
pub fn plan(size: Size) -> Vec<Point> {
    let (secs, mode) = match size {
        Size::Ci => (3.0, (640, 360, 30)),
        Size::Quick => (4.0, (1280, 720, 60)),
        Size::Full => (10.0, (1280, 720, 60)),
    };
    let base = Point {
        protocol: Protocol::Pf1,
        loss: Loss::None,
        delay_ms: 0.0,
        jitter_ms: 0.0,
        reorder_pct: 0.0,
        fec: Fec {
            percent: 20,
            adaptive: false,
        },
        bitrate_mbps: if size == Size::Ci { 4 } else { 10 },
        link_mbps: None,
        send: SendPath {
            gso: true,
            pacing_share: 0.5,
        },
        mode,
        seconds: secs,
        group: "loss",
    };
    let mut points = Vec::new();
    let (losses, fecs): (&[f64], Vec<Fec>) = match size {
        Size::Ci => (&[0.0, 5.0], vec![base.fec]),
        Size::Quick => (
            &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0],
            vec![
                Fec {
                    percent: 10,
                    adaptive: false,
                },
                base.fec,
                Fec {
                    percent: 20,
                    adaptive: true,
                },
            ],
        ),
        Size::Full => (
            &[0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0],
            vec![
                Fec {
                    percent: 5,
                    adaptive: false,
                },
                Fec {
                    percent: 10,
                    adaptive: false,
                },
                base.fec,
                Fec {
                    percent: 40,
                    adaptive: false,
                },
                Fec {
                    percent: 20,
                    adaptive: true,
                },
            ],
        ),
    };
    for fec in &fecs {
        for &l in losses {
            points.push(Point {
                fec: *fec,
                loss: if l > 0.0 {
                    Loss::Bernoulli(l)
                } else {
                    Loss::None
                },
                ..base
            });
        }
    }
    // Bursts at the same mean loss as a Bernoulli point: what burstiness costs.
    let bursts: &[(f64, f64)] = match size {
        Size::Ci => &[(5.0, 4.0)],
        Size::Quick => &[(2.0, 4.0), (5.0, 4.0)],
        Size::Full => &[(2.0, 2.0), (2.0, 8.0), (5.0, 2.0), (5.0, 4.0), (5.0, 8.0)],
    };
    for fec in fecs.iter().filter(|f| f.percent == 20) {
        for &(pct, mean_burst) in bursts {
            points.push(Point {
                fec: *fec,
                loss: Loss::Bursts { pct, mean_burst },
                group: "bursts",
                ..base
            });
        }
    }
    // Delay, jitter and reordering (the relay), no loss.
    let delays: &[(f64, f64, f64)] = match size {
        Size::Ci => &[],
        Size::Quick => &[(5.0, 2.0, 0.0), (5.0, 2.0, 2.0)],
        Size::Full => &[
            (2.0, 0.0, 0.0),
            (10.0, 0.0, 0.0),
            (10.0, 5.0, 0.0),
            (10.0, 5.0, 2.0),
        ],
    };
    for &(delay_ms, jitter_ms, reorder_pct) in delays {
        points.push(Point {
            delay_ms,
            jitter_ms,
            reorder_pct,
            group: "delay",
            ..base
        });
    }
    // Latency against bitrate, no loss.
    let rates: &[u32] = match size {
        Size::Ci => &[],
        Size::Quick => &[5, 20, 40],
        Size::Full => &[5, 20, 40, 80],
    };
    for &bitrate_mbps in rates {
        points.push(Point {
            bitrate_mbps,
            group: "bitrate",
            ..base
        });
    }
    // Goodput against link rate, per send path.
    let links: &[Option<u32>] = match size {
        Size::Ci => &[],
        Size::Quick => &[Some(20), Some(50), None],
        Size::Full => &[Some(10), Some(20), Some(50), Some(100), None],
    };
    let paths: &[SendPath] = match size {
        Size::Ci => &[],
        _ => &[
            SendPath {
                gso: true,
                pacing_share: 0.5,
            },
            SendPath {
                gso: false,
                pacing_share: 0.5,
            },
            SendPath {
                gso: true,
                pacing_share: 0.25,
            },
        ],
    };
    for &send in paths {
        for &link_mbps in links {
            points.push(Point {
                link_mbps,
                send,
                bitrate_mbps: 30,
                group: "link",
                ..base
            });
        }
    }
    if size == Size::Ci {
        points.push(Point {
            delay_ms: 2.0,
            jitter_ms: 1.0,
            reorder_pct: 1.0,
            group: "delay",
            ..base
        });
    }
    // GameStream through moonlight-common-c: random loss against FEC (its parity is per FEC
    // block of at most 255 shards, adaptive from the client's loss statistics).
    let gs_losses: &[f64] = match size {
        Size::Ci => &[5.0],
        Size::Quick => &[0.0, 5.0, 10.0, 20.0],
        Size::Full => &[0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0],
    };
    let gs_fecs: Vec<Fec> = match size {
        Size::Ci => vec![base.fec],
        _ => fecs.iter().copied().filter(|f| f.percent == 20).collect(),
    };
    for fec in &gs_fecs {
        for &l in gs_losses {
            points.push(Point {
                protocol: Protocol::GameStream,
                fec: *fec,
                loss: if l > 0.0 {
                    Loss::Bernoulli(l)
                } else {
                    Loss::None
                },
                // moonlight-python decodes every frame in Python: 60 fps at 720p keeps up.
                group: "gamestream",
                ..base
            });
        }
    }
    points
}

/// What one point measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Frames the client completed (with or without FEC).
    pub frames_complete: u64,
    /// Frames that needed FEC to complete.
    pub frames_recovered: u64,
    /// Frames the client declared lost.
    pub frames_lost: u64,
    /// Frame bytes per second delivered, Mbit/s.
    pub goodput_mbps: f64,
    /// Capture → reassembled latency quantiles, µs (same clock: namespaces share it).
    pub latency_us_p50: Option<i64>,
    /// 99th percentile.
    pub latency_us_p99: Option<i64>,
    /// Host CPU over the run, percent of one core: all threads, then per stage.
    pub cpu_total_pct: f64,
    /// `pf-capture`.
    pub cpu_capture_pct: f64,
    /// `pf-encode`.
    pub cpu_encode_pct: f64,
    /// `pf-fec`.
    pub cpu_fec_pct: f64,
    /// `pf-send*`.
    pub cpu_send_pct: f64,
    /// Packets the relay lost / held back (relay points).
    pub relay_lost: u64,
    /// Packets the relay reordered.
    pub relay_reordered: u64,
    /// Frames the host sent in the stream by its own count (GameStream: its "stream stopped"
    /// line), when known; else complete + lost.
    pub host_sent: Option<u64>,
    /// Why the point has no result, if it failed.
    pub error: Option<String>,
}

impl Measured {
    /// Frames the host sent, as the client accounts for them (complete + declared lost).
    pub fn frames_sent(&self) -> u64 {
        self.host_sent
            .unwrap_or(self.frames_complete + self.frames_lost)
    }

    /// Frames delivered complete, percent of those sent.
    pub fn delivered_pct(&self) -> f64 {
        let sent = self.frames_sent();
        if sent == 0 {
            0.0
        } else {
            100.0 * self.frames_complete as f64 / sent as f64
        }
    }
}

/// The CSV header (the issue's columns first, then the rest).
pub const CSV_HEADER: &str = "protocol,loss_model,loss_pct,fec_pct,bitrate_mbps,send_path,\
frames_recovered_pct,goodput_mbps,latency_us_p50,latency_us_p99,fec_mode,burst_len,delay_ms,\
jitter_ms,reorder_pct,link_mbps,pacing_share,width,height,fps,seconds,frames_sent,\
frames_complete,frames_recovered,frames_lost,host_cpu_pct,cpu_capture_pct,cpu_encode_pct,\
cpu_fec_pct,cpu_send_pct,relay_lost,relay_reordered,group,error";

/// One CSV row for `p` and what it measured (no quoting needed: no field holds a comma; the
/// error's commas are replaced).
pub fn csv_row(p: &Point, m: &Measured) -> String {
    let (model, pct, burst) = p.loss.describe();
    let opt = |v: Option<i64>| v.map_or_else(String::new, |v| v.to_string());
    format!(
        "{},{},{},{},{},{},{:.3},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{},{},{},{}",
        p.protocol.name(),
        model,
        pct,
        p.fec.percent,
        p.bitrate_mbps,
        p.send.name(),
        m.delivered_pct(),
        m.goodput_mbps,
        opt(m.latency_us_p50),
        opt(m.latency_us_p99),
        p.fec.mode(),
        burst,
        p.delay_ms,
        p.jitter_ms,
        p.reorder_pct,
        p.link_mbps.map_or_else(String::new, |r| r.to_string()),
        p.send.pacing_share,
        p.mode.0,
        p.mode.1,
        p.mode.2,
        p.seconds,
        m.frames_sent(),
        m.frames_complete,
        m.frames_recovered,
        m.frames_lost,
        m.cpu_total_pct,
        m.cpu_capture_pct,
        m.cpu_encode_pct,
        m.cpu_fec_pct,
        m.cpu_send_pct,
        m.relay_lost,
        m.relay_reordered,
        p.group,
        m.error.as_deref().unwrap_or("").replace([',', '\n'], ";"),
    )
}

/// For each protocol and FEC setting of the random-loss groups (`loss`, `gamestream`): the
/// highest Bernoulli loss at which at least `target` percent of frames arrived complete, and
/// the lowest at which fewer did.
pub fn falloff(
    results: &[(Point, Measured)],
    target: f64,
) -> Vec<(Protocol, Fec, Option<f64>, Option<f64>)> {
    let random = |p: &Point| p.group == "loss" || p.group == "gamestream";
    let mut keys: Vec<(Protocol, Fec)> = Vec::new();
    for (p, _) in results.iter().filter(|(p, _)| random(p)) {
        if !keys.contains(&(p.protocol, p.fec)) {
            keys.push((p.protocol, p.fec));
        }
    }
    keys.into_iter()
        .map(|(protocol, fec)| {
            let mut pts: Vec<(f64, f64)> = results
                .iter()
                .filter(|(p, m)| {
                    random(p) && p.protocol == protocol && p.fec == fec && m.error.is_none()
                })
                .map(|(p, m)| (p.loss.describe().1, m.delivered_pct()))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let held = pts
                .iter()
                .filter(|(_, d)| *d >= target)
                .map(|(l, _)| *l)
                .reduce(f64::max);
            let failed = pts.iter().find(|(_, d)| *d < target).map(|(l, _)| *l);
            (protocol, fec, held, failed)
        })
        .collect()
}

/// The `tc qdisc … netem` arguments for a LAN point (after `netem`): Bernoulli `loss_pct`, the
/// link rate and the relay's impairment `imp` in netem's terms; empty when the point needs
/// none of them.
///
/// netem's differences from our relay: its jitter is ± around the delay (ours adds 0..=J and
/// keeps order), so the delay is centred (`delay + J/2 ± J/2`) and netem may reorder jittered
/// packets; its `reorder` sends the chosen packets at once and delays the others, so it needs a
/// delay (the relay's reorder gap when the point has none). Gilbert–Elliott maps one to one
/// (`gemodel p r 1-h 1-k`).
pub fn netem_args(
    loss_pct: u32,
    rate_mbps: Option<u32>,
    imp: Option<&ImpairConfig>,
) -> Vec<String> {
    let mut a = Vec::new();
    let pct = |x: f64| format!("{:.4}%", x * 100.0);
    match imp.map(|i| i.loss) {
        Some(LossModel::GilbertElliott {
            p_gb,
            p_bg,
            loss_good,
            loss_bad,
        }) => a.extend([
            "loss".into(),
            "gemodel".into(),
            pct(p_gb),
            pct(p_bg),
            pct(loss_bad),
            pct(loss_good),
        ]),
        Some(LossModel::Bernoulli { p }) => a.extend(["loss".into(), "random".into(), pct(p)]),
        _ if loss_pct > 0 => a.extend(["loss".into(), "random".into(), format!("{loss_pct}%")]),
        _ => {}
    }
    if let Some(i) = imp {
        let mut delay = i.delay_us + i.jitter_us / 2;
        if i.reorder > 0.0 && delay == 0 {
            delay = i.reorder_gap_us;
        }
        if delay > 0 {
            a.extend(["delay".into(), format!("{delay}us")]);
            if i.jitter_us > 0 {
                a.push(format!("{}us", i.jitter_us / 2));
            }
        }
        if i.reorder > 0.0 {
            a.extend(["reorder".into(), pct(i.reorder)]);
        }
    }
    if let Some(m) = rate_mbps {
        a.extend(["rate".into(), format!("{m}mbit")]);
    }
    if !a.is_empty() {
        a.extend(["limit".into(), "100000".into()]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_carries_each_knob_in_its_own_terms() {
        assert!(netem_args(0, None, None).is_empty());
        let j = |a: Vec<String>| a.join(" ");
        assert_eq!(j(netem_args(5, None, None)), "loss random 5% limit 100000");
        assert_eq!(
            j(netem_args(0, Some(100), None)),
            "rate 100mbit limit 100000"
        );
        let ge = ImpairConfig {
            loss: LossModel::GilbertElliott {
                p_gb: 0.01,
                p_bg: 0.25,
                loss_good: 0.0,
                loss_bad: 1.0,
            },
            delay_us: 2_000,
            jitter_us: 1_000,
            reorder: 0.0,
            ..ImpairConfig::default()
        };
        assert_eq!(
            j(netem_args(0, None, Some(&ge))),
            "loss gemodel 1.0000% 25.0000% 100.0000% 0.0000% delay 2500us 500us limit 100000"
        );
        // Reordering without delay: the relay's gap becomes netem's delay.
        let re = ImpairConfig {
            reorder: 0.02,
            reorder_gap_us: 2_000,
            ..ImpairConfig::default()
        };
        assert_eq!(
            j(netem_args(0, Some(50), Some(&re))),
            "delay 2000us reorder 2.0000% rate 50mbit limit 100000"
        );
    }

    #[test]
    fn plans_cover_every_figure() {
        for size in [Size::Ci, Size::Quick, Size::Full] {
            let pts = plan(size);
            assert!(pts.iter().any(|p| p.group == "loss" && p.nft_loss() > 0));
            assert!(pts.iter().any(|p| p.group == "bursts" && p.uses_relay()));
            assert!(pts.iter().any(|p| p.group == "delay" && p.uses_relay()));
            assert!(pts.iter().all(|p| p.seconds > 0.0 && p.fec.percent > 0));
            assert!(
                pts.iter()
                    .any(|p| p.protocol == Protocol::GameStream && p.nft_loss() > 0)
            );
            if size != Size::Ci {
                for g in ["bitrate", "link"] {
                    assert!(pts.iter().any(|p| p.group == g), "{size:?} {g}");
                }
                assert!(pts.iter().any(|p| !p.send.gso));
                assert!(pts.iter().any(|p| p.fec.adaptive));
            }
        }
        // Quick fits 10 minutes at about 3 s of set-up per point.
        let q = plan(Size::Quick);
        // GameStream points cost about 6 s more (launch, RTSP, quitting).
        let cost = |p: &Point| {
            p.seconds
                + if p.protocol == Protocol::Pf1 {
                    3.0
                } else {
                    9.0
                }
        };
        let secs: f64 = q.iter().map(cost).sum();
        assert!(secs < 540.0, "{secs} s");
        assert!(plan(Size::Ci).iter().map(cost).sum::<f64>() < 60.0);
    }

    #[test]
    fn bernoulli_goes_to_nftables_and_the_rest_to_the_relay() {
        let p = plan(Size::Quick);
        let b = p.iter().find(|p| p.loss == Loss::Bernoulli(5.0)).unwrap();
        assert_eq!((b.nft_loss(), b.uses_relay()), (5, false));
        let g = p
            .iter()
            .find(|p| matches!(p.loss, Loss::Bursts { .. }))
            .unwrap();
        assert_eq!(g.nft_loss(), 0);
        assert!(g.uses_relay());
        let c = g.impairment(3);
        assert!((c.loss.mean_loss() - g.loss.describe().1 / 100.0).abs() < 1e-9);
    }

    #[test]
    fn profile_carries_the_point() {
        let mut p = plan(Size::Ci)[0];
        p.fec = Fec {
            percent: 10,
            adaptive: true,
        };
        p.send.gso = false;
        let text = p.profile();
        for want in [
            "percent = 10",
            "adaptive = true",
            "path = \"uring\"",
            "pattern_noise = true",
            "bitrate_kbps = 4000",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        let parsed = punktfunk_tuning::parse(&text, std::path::Path::new("sweep"), None);
        let loaded = parsed.unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(loaded.settings.fec.adaptive);
        assert!(loaded.settings.pattern_noise);
        assert_eq!(loaded.settings.fec.percent, 10);
    }

    #[test]
    fn csv_rows_match_the_header() {
        let p = plan(Size::Ci)[1];
        let m = Measured {
            frames_complete: 99,
            frames_lost: 1,
            frames_recovered: 30,
            goodput_mbps: 3.9,
            latency_us_p50: Some(4000),
            error: Some("a, b\nc".into()),
            ..Measured::default()
        };
        let row = csv_row(&p, &m);
        assert_eq!(
            row.split(',').count(),
            CSV_HEADER.split(',').count(),
            "{row}"
        );
        assert!(
            row.starts_with("pf1,bernoulli,5,20,4,gso,99.000,3.900,4000,,fixed,"),
            "{row}"
        );
        assert!(row.ends_with(",loss,a; b;c"), "{row}");
    }

    #[test]
    fn falloff_finds_where_curves_drop() {
        let pts = plan(Size::Quick);
        let results: Vec<(Point, Measured)> = pts
            .iter()
            .filter(|p| p.group == "loss")
            .map(|p| {
                let l = p.loss.describe().1;
                // 20 % FEC holds to 10 %, 10 % FEC to 5 %.
                let limit = f64::from(p.fec.percent) / 2.0;
                let lost = if l > limit { 10 } else { 0 };
                (
                    *p,
                    Measured {
                        frames_complete: 100 - lost,
                        frames_lost: lost,
                        ..Measured::default()
                    },
                )
            })
            .collect();
        let f = falloff(&results, 99.0);
        let ten = f.iter().find(|(_, fec, ..)| fec.percent == 10).unwrap();
        assert_eq!((ten.2, ten.3), (Some(5.0), Some(10.0)));
        let twenty = f
            .iter()
            .find(|(_, fec, ..)| fec.percent == 20 && !fec.adaptive)
            .unwrap();
        assert_eq!((twenty.2, twenty.3), (Some(10.0), Some(20.0)));
        assert!(f.iter().all(|(p, ..)| *p == Protocol::Pf1));
    }
}

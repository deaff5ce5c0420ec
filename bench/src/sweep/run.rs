//! One sweep point (act): the impairment (if the point needs it), `punktfunk serve` on the
//! bed's host side with the point's profile, the client on its client side for the point's
//! seconds (`punktfunk client`, or for GameStream moonlight-python through the end-to-end
//! harness's `streaming.py`, paired once per sweep), the host's CPU per stage from `/proc`, and
//! the client's statistics.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::testbed::Bed;
use super::{Measured, Point};

/// Where the binaries are and where a point's files go.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The `punktfunk` binary (serve and client).
    pub punktfunk: PathBuf,
    /// This sweep binary (its `relay` subcommand).
    pub sweep: PathBuf,
    /// Folder for profiles, logs, state and statistics of each point.
    pub work: PathBuf,
    /// Python with moonlight-python (`tests/.venv/bin/python`), for GameStream points.
    pub python: PathBuf,
    /// The end-to-end harness (`tests/e2e`: `pair_client.py`, `streaming.py`).
    pub e2e: PathBuf,
    /// The `punktfunk` binary, Python and harness where the client runs (the same paths on
    /// the namespace testbed; the peer's on a LAN).
    pub client_punktfunk: PathBuf,
    /// See [`Runner::client_punktfunk`].
    pub client_python: PathBuf,
    /// See [`Runner::client_punktfunk`].
    pub client_e2e: PathBuf,
}

/// GameStream ports of the sweep's host (HTTPS is base − 5).
const GS_BASE_PORT: u16 = 47989;
/// The PIN the sweep pairs its moonlight-python identity with.
const GS_PIN: &str = "1357";

/// Per-thread CPU time of a process: thread id → (name, clock ticks of user + system).
fn thread_ticks(pid: u32) -> HashMap<String, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state …`: comm may hold spaces; fields 14 and 15 (utime, stime) count
        // from after the closing parenthesis.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        out.insert(t.file_name().to_string_lossy().into_owned(), (name, ticks));
    }
    out
}

/// CPU percent of one core between two snapshots `wall` apart: all threads, then the stage
/// threads by name (`pf-capture`, `pf-encode`, `pf-fec`, `pf-send*`). Threads that started
/// after `a` count from zero; threads gone by `b` are not counted (snapshot while streaming).
fn cpu_between(
    a: &HashMap<String, (String, u64)>,
    b: &HashMap<String, (String, u64)>,
    wall: Duration,
) -> [f64; 5] {
    // USER_HZ: /proc reports CPU time in 1/100 s on every Linux architecture.
    const HZ: f64 = 100.0;
    let secs = wall.as_secs_f64().max(1e-3);
    let mut g = [0f64; 5];
    for (tid, (name, after)) in b {
        let before = a.get(tid).map_or(0, |(_, t)| *t);
        let used = after.saturating_sub(before) as f64 / HZ / secs * 100.0;
        g[0] += used;
        let i = if name.starts_with("pf-capture") {
            1
        } else if name.starts_with("pf-encode") {
            2
        } else if name.starts_with("pf-fec") {
            3
        } else if name.starts_with("pf-send") {
            4
        } else {
            continue;
        };
        g[i] += used;
    }
    g
}

/// Waits for `client` (started at `started`) to exit, at most `limit`, snapshotting the host's
/// threads at `window.0` and `window.1` seconds in; returns its exit status and the host's CPU
/// between the snapshots ([`cpu_between`]; zeros when the client ended before the second).
fn wait_measuring(
    host: u32,
    client: &mut Child,
    started: Instant,
    window: (f64, f64),
    limit: Duration,
) -> Result<(std::process::ExitStatus, [f64; 5]), String> {
    let deadline = started + limit;
    let (mut before, mut after) = (None, None);
    let status = loop {
        let t = started.elapsed().as_secs_f64();
        if before.is_none() && t >= window.0 {
            before = Some((Instant::now(), thread_ticks(host)));
        } else if before.is_some() && after.is_none() && t >= window.1 {
            after = Some((Instant::now(), thread_ticks(host)));
        }
        if let Some(st) = client.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if Instant::now() > deadline {
            stop(client);
            return Err("did not finish in time".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let cpu = match (before, after) {
        (Some((t0, a)), Some((t1, b))) => cpu_between(&a, &b, t1 - t0),
        _ => [0.0; 5],
    };
    Ok((status, cpu))
}

/// Sends SIGTERM to `child` and waits up to 5 s, then kills it.
pub(super) fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until `log` contains `needle` or `timeout` passes (or `child` exits).
pub(super) fn wait_for_log(
    log: &Path,
    needle: &str,
    child: &mut Child,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!(
                "exited ({st}) before {needle:?}; see {}",
                log.display()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no {needle:?} within {timeout:?}; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Runner {
    /// Runs point number `n` on `bed`; a failure is recorded in the result, not returned.
    pub fn point(&self, bed: &mut dyn Bed, n: usize, p: &Point) -> Measured {
        match self.try_point(bed, n, p) {
            Ok(m) => m,
            Err(e) => Measured {
                error: Some(e),
                ..Measured::default()
            },
        }
    }

    fn try_point(&self, bed: &mut dyn Bed, n: usize, p: &Point) -> Result<Measured, String> {
        let dir = self.work.join(format!("point-{n:03}"));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        bed.set_loss(p.nft_loss())?;
        bed.set_rate(p.link_mbps)?;
        let impaired = p.uses_relay();
        if impaired {
            bed.impair(&p.impairment(n as u64 + 1), &dir, &self.sweep)?;
        }
        let result = match p.protocol {
            super::Protocol::Pf1 => self.stream(&*bed, &dir, p),
            super::Protocol::GameStream => self.gamestream(&*bed, &dir, p),
        };
        let counted = if impaired { bed.unimpair() } else { Ok((0, 0)) };
        let mut m = result?;
        (m.relay_lost, m.relay_reordered) = counted?;
        Ok(m)
    }

    /// Starts `punktfunk serve` on the bed's host side with `profile`, `state`, no mDNS and
    /// `extra`, logging to `log`.
    fn serve(
        &self,
        bed: &dyn Bed,
        profile: &Path,
        state: &Path,
        extra: &[String],
        log: &Path,
    ) -> Result<Child, String> {
        let mut args = vec![
            "serve".into(),
            "--profile".into(),
            path(profile),
            "--state-dir".into(),
            path(state),
            "--no-mdns".into(),
        ];
        args.extend_from_slice(extra);
        bed.host(&self.punktfunk, &args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?)
            .spawn()
            .map_err(|e| format!("serve: {e}"))
    }

    /// Host and client for one point.
    fn stream(&self, bed: &dyn Bed, dir: &Path, p: &Point) -> Result<Measured, String> {
        let profile = dir.join("profile.toml");
        fs::write(&profile, p.profile()).map_err(|e| e.to_string())?;
        let host_log = dir.join("host.log");
        let mut host = self.serve(
            bed,
            &profile,
            &dir.join("host-state"),
            &[
                "--allow-unpaired".into(),
                "--api".into(),
                "127.0.0.1:48100".into(),
            ],
            &host_log,
        )?;
        let r = (|| {
            wait_for_log(
                &host_log,
                "punktfunk/1 listening",
                &mut host,
                Duration::from_secs(15),
            )?;
            let cdir = bed.client_dir(dir, "client")?;
            let stats = cdir.join("client.json");
            let (w, h, fps) = p.mode;
            let limit = Duration::from_secs_f64(p.seconds + 30.0);
            let started = Instant::now();
            let mut client = bed
                .client(
                    &self.client_punktfunk,
                    &[
                        "client".into(),
                        bed.host_ip(),
                        "--mode".into(),
                        format!("{w}x{h}@{fps}"),
                        "--duration".into(),
                        p.seconds.to_string(),
                        "--stats-json".into(),
                        path(&stats),
                        "--state-dir".into(),
                        path(&cdir.join("state")),
                        "--name".into(),
                        "sweep".into(),
                        // Receive only, as a loss/latency probe: decoding would share the
                        // two cores with the host being measured.
                        "--no-decode".into(),
                    ],
                    limit,
                )
                .stdout(Stdio::null())
                .stderr(fs::File::create(dir.join("client.log")).map_err(|e| e.to_string())?)
                .spawn()
                .map_err(|e| format!("client: {e}"))?;
            // CPU from 1 s in (the stream runs) to 0.3 s before the client's end (the
            // session's threads still exist).
            let window = (1.0f64.min(p.seconds / 3.0), (p.seconds - 0.3).max(0.5));
            let (status, cpu) = wait_measuring(host.id(), &mut client, started, window, limit)
                .map_err(|e| format!("the client {e}"))?;
            if !status.success() {
                return Err(format!(
                    "client exited with {status}; see {}",
                    dir.join("client.log").display()
                ));
            }
            let text = bed.read_client_file(&stats)?;
            let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let u = |k: &str| j[k].as_u64().unwrap_or(0);
            Ok(Measured {
                frames_complete: u("frames_complete"),
                frames_recovered: u("frames_recovered_by_fec"),
                frames_lost: u("frames_unrecoverable"),
                goodput_mbps: j["goodput_bps"].as_f64().unwrap_or(0.0) / 1e6,
                latency_us_p50: j["latency_us_p50"].as_i64(),
                latency_us_p99: j["latency_us_p99"].as_i64(),
                cpu_total_pct: cpu[0],
                cpu_capture_pct: cpu[1],
                cpu_encode_pct: cpu[2],
                cpu_fec_pct: cpu[3],
                cpu_send_pct: cpu[4],
                ..Measured::default()
            })
        })();
        stop(&mut host);
        r
    }
}

impl Runner {
    /// A GameStream point: `serve` with the point's profile on a host state shared by every
    /// GameStream point (so moonlight-python pairs once, at the first), then `streaming.py` in
    /// the client namespace: frames handed out by moonlight-common-c against the host's own
    /// count, goodput, capture → decoded latency.
    fn gamestream(&self, bed: &dyn Bed, dir: &Path, p: &Point) -> Result<Measured, String> {
        if !self.python.is_file() || !self.e2e.join("streaming.py").is_file() {
            return Err(format!(
                "no moonlight-python at {} (scripts/setup.sh makes tests/.venv) or no harness in {}",
                self.python.display(),
                self.e2e.display()
            ));
        }
        let profile = dir.join("profile.toml");
        fs::write(&profile, p.profile()).map_err(|e| e.to_string())?;
        let state = self.work.join("gs-host-state");
        // The client's identity and the host's certificate, kept by the client's side; the
        // marker says the pairing is done.
        let client_dir = bed.client_dir(&self.work, "gs-client")?;
        let cert = client_dir.join("host-cert.pem");
        let paired = self.work.join("gs-paired");
        let _ = fs::remove_file(state.join("run.json"));
        let host_log = dir.join("host.log");
        let host_ip = bed.host_ip();
        let base = GS_BASE_PORT.to_string();
        let https = (GS_BASE_PORT - 5).to_string();
        let mut host = self.serve(
            bed,
            &profile,
            &state,
            &[
                "--base-port".into(),
                base.clone(),
                "--bind".into(),
                host_ip.clone(),
                "--no-pf1".into(),
            ],
            &host_log,
        )?;
        let common: Vec<String> = vec![
            "--config-dir".into(),
            path(&client_dir),
            "--address".into(),
            host_ip,
            "--http-port".into(),
            base,
            "--https-port".into(),
            https,
        ];
        let r = (|| {
            let deadline = Instant::now() + Duration::from_secs(15);
            while !state.join("run.json").exists() {
                if Instant::now() > deadline
                    || host.try_wait().map_err(|e| e.to_string())?.is_some()
                {
                    return Err(format!("serve did not start; see {}", host_log.display()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !paired.is_file() {
                self.pair(bed, &state, &common, &cert, dir)?;
                fs::write(&paired, b"").map_err(|e| e.to_string())?;
            }
            let (w, h, fps) = p.mode;
            let limit = Duration::from_secs_f64(p.seconds + 60.0);
            let mut args = vec![path(&self.client_e2e.join("streaming.py"))];
            args.extend(common.iter().cloned());
            args.extend([
                "--cert".into(),
                path(&cert),
                "--seconds".into(),
                p.seconds.to_string(),
                "--mode".into(),
                format!("{w}x{h}x{fps}"),
                "--bitrate".into(),
                (p.bitrate_mbps * 1000).to_string(),
            ]);
            let started = Instant::now();
            let mut child = bed
                .client(&self.client_python, &args, limit)
                .stdout(Stdio::piped())
                .stderr(fs::File::create(dir.join("client.log")).map_err(|e| e.to_string())?)
                .spawn()
                .map_err(|e| format!("streaming.py: {e}"))?;
            // CPU while frames flow: launch and RTSP take about a second.
            let window = (1.5f64.min(p.seconds / 2.0), p.seconds.max(1.0));
            let (status, cpu) = wait_measuring(host.id(), &mut child, started, window, limit)
                .map_err(|e| format!("streaming.py {e}"))?;
            let mut out = String::new();
            if let Some(mut o) = child.stdout.take() {
                use std::io::Read as _;
                let _ = o.read_to_string(&mut out);
            }
            if !status.success() {
                return Err(format!(
                    "streaming.py exited with {status}; see {}",
                    dir.join("client.log").display()
                ));
            }
            let last = out.lines().last().unwrap_or("");
            let j: serde_json::Value = serde_json::from_str(last)
                .map_err(|e| format!("streaming.py output: {e}: {last:?}"))?;
            let u = |k: &str| j[k].as_u64().unwrap_or(0);
            let received = u("frames_received");
            Ok(Measured {
                frames_complete: received,
                frames_lost: u("frames_missing"),
                goodput_mbps: j["goodput_bps"].as_f64().unwrap_or(0.0) / 1e6,
                latency_us_p50: j["latency_us_p50"].as_i64(),
                latency_us_p99: j["latency_us_p99"].as_i64(),
                cpu_total_pct: cpu[0],
                cpu_capture_pct: cpu[1],
                cpu_encode_pct: cpu[2],
                cpu_fec_pct: cpu[3],
                cpu_send_pct: cpu[4],
                ..Measured::default()
            })
        })();
        stop(&mut host);
        let mut m = r?;
        // The host's own count of the frames it sent in this stream.
        let log = fs::read_to_string(&host_log).unwrap_or_default();
        m.host_sent = log
            .lines()
            .rev()
            .filter(|l| l.contains("stream stopped"))
            .filter_map(|l| {
                let i = l.find("video_frames=")? + "video_frames=".len();
                let digits: String = l[i..].chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .next();
        if let Some(sent) = m.host_sent {
            m.frames_lost = sent.saturating_sub(m.frames_complete);
        }
        Ok(m)
    }

    /// Pairs the sweep's moonlight-python identity with the host (the operator's PIN through
    /// `punktfunk pin`, the client's side through `pair_client.py`), which keeps the host's
    /// certificate in `cert` on the client's side.
    fn pair(
        &self,
        bed: &dyn Bed,
        state: &Path,
        common: &[String],
        cert: &Path,
        dir: &Path,
    ) -> Result<(), String> {
        let mut args = vec![path(&self.client_e2e.join("pair_client.py"))];
        args.extend(common.iter().cloned());
        args.extend([
            "--pin".into(),
            GS_PIN.into(),
            "--cert-out".into(),
            path(cert),
        ]);
        let mut pairing = bed
            .client(&self.client_python, &args, Duration::from_secs(120))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("pairing.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("pair_client.py: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let armed = bed
                .host(
                    &self.punktfunk,
                    &[
                        "pin".into(),
                        GS_PIN.into(),
                        "--state-dir".into(),
                        path(state),
                    ],
                )
                .output()
                .map_err(|e| format!("punktfunk pin: {e}"))?;
            if armed.status.success() {
                break;
            }
            if Instant::now() > deadline {
                stop(&mut pairing);
                return Err(format!(
                    "the PIN was never taken: {}",
                    String::from_utf8_lossy(&armed.stderr).trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(st) = pairing.try_wait().map_err(|e| e.to_string())? {
                return if st.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "pairing failed; see {}",
                        dir.join("pairing.log").display()
                    ))
                };
            }
            if Instant::now() > deadline {
                stop(&mut pairing);
                return Err("pairing did not finish".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A path as a command-line argument.
fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The relay's command-line arguments for `cfg` (parsed back by the `sweep relay`
/// subcommand).
pub fn relay_args(cfg: &crate::impair::ImpairConfig) -> Vec<String> {
    use crate::impair::LossModel;
    let mut a = vec![
        format!("--delay-us={}", cfg.delay_us),
        format!("--jitter-us={}", cfg.jitter_us),
        format!("--reorder={}", cfg.reorder),
        format!("--reorder-gap-us={}", cfg.reorder_gap_us),
        format!("--seed={}", cfg.seed),
    ];
    if let LossModel::GilbertElliott {
        p_gb,
        p_bg,
        loss_good,
        loss_bad,
    } = cfg.loss
    {
        a.push(format!("--ge={p_gb},{p_bg},{loss_good},{loss_bad}"));
    }
    if let LossModel::Bernoulli { p } = cfg.loss {
        a.push(format!("--bernoulli={p}"));
    }
    a
}

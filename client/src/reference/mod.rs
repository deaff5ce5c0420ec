//! The reference punktfunk/1 client (`punktfunk-client HOST`, also `punktfunk client HOST`),
//! built on the C ABI through [`binding`] like any native client (act: threads, the terminal,
//! files).
//!
//! ```text
//!  main thread: Client::connect ─► poll events
//!      PIN_NEEDED  → read the PIN on stdin (another thread) → pair
//!      STARTED     → timers: input events at 40 % of the run, mode switches evenly spaced,
//!                    Goodbye (close) at the end
//!      RECONFIGURED, FRAMES_LOST, CLOSED → the report
//!  frame thread: next_frame (pull API, one reused buffer) ─► record (Annex-B / OBUs)
//!                 ─► decode (openh264 / libavcodec) ─► picture size, the pattern's stamp
//!                    → capture → decoded latency; DISCONTINUITY → wait for a keyframe
//!  end: close → final statistics → summary line, --stats-json
//! ```

pub mod binding;
pub mod decode;
#[cfg(feature = "window")]
pub mod window;

#[cfg(feature = "window")]
use window::Presenter;

/// Stands in for the window's presenter in builds without the `window` feature (never made).
#[cfg(not(feature = "window"))]
#[derive(Debug)]
pub struct Presenter(());

#[cfg(not(feature = "window"))]
impl Presenter {
    fn take_buffer(&self) -> decode::Picture {
        decode::Picture::default()
    }
    fn show(&self, _: decode::Picture) {}
    fn closed(&self) -> bool {
        false
    }
    fn exit(&self) {}
    fn presented(&self) -> u64 {
        0
    }
    fn forwarded(&self) -> u64 {
        0
    }
}

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use punktfunk_capture::annexb::sps_size;
use punktfunk_capture::clock::monotonic_us;
use punktfunk_control::host::state::StateDir;
use punktfunk_control::input::InputEvent;
use punktfunk_control::pf1::{Fingerprint, GoodbyeReason, Mode, Pin};

use crate::abi::{self, PfEvent, PfInput, PfStats};
use binding::{AbiError, Client, Connect, sized};
use decode::Decoder;

/// What the reference client was asked for.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `HOST` or `HOST:PORT` (default port 47900).
    pub host: String,
    /// The state directory holding the client identity and known hosts.
    pub state_dir: StateDir,
    /// `--pair`: run the PIN ceremony; `Some(pin)` if given on the command line.
    pub pair: Option<Option<Pin>>,
    /// The mode to ask for.
    pub mode: Mode,
    /// Ask for these modes in turn during the run (renegotiation), evenly spaced.
    pub remodes: Vec<Mode>,
    /// The name the host shows.
    pub name: String,
    /// How long to receive before saying Goodbye.
    pub duration: Duration,
    /// Write the received stream here.
    pub record: Option<PathBuf>,
    /// Write statistics as JSON here.
    pub stats_json: Option<PathBuf>,
    /// Drop this share of data-plane datagrams on receipt (testing FEC; 0 normally).
    pub inject_loss: f64,
    /// Input events to send once 40 % of `duration` has passed, 50 ms apart.
    pub inputs: Vec<InputEvent>,
    /// Decode every frame (and read the pattern's stamp); off: receive only.
    pub decode: bool,
    /// Present the pictures in a window and forward its keyboard and mouse (needs `decode`
    /// and the `window` feature).
    pub window: bool,
}

/// Why the reference client failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// An ABI call failed.
    #[error(transparent)]
    Abi(#[from] AbiError),
    /// The session ended without reaching its goal.
    #[error("{0}")]
    Ended(String),
    /// A file (recording, statistics) or a thread.
    #[error("{0}")]
    Io(String),
}

/// What the frame thread saw.
#[derive(Debug, Default)]
struct Seen {
    frames: u64,
    decoded: u64,
    decode_errors: u64,
    stamps: u64,
    decoded_latency_us: Vec<i64>,
    modes: Vec<(u32, u32)>,
    first_frame: Option<Instant>,
    first_new_mode: Option<Instant>,
    discontinuities: u64,
}

fn quantile(v: &[i64], q: f64) -> Option<i64> {
    let mut v = v.to_vec();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[((v.len() - 1) as f64 * q).round() as usize])
}

/// An [`InputEvent`] as the C ABI's `PfInput` (the kinds the reference client sends).
pub fn to_pf_input(ev: &InputEvent) -> Result<PfInput, String> {
    let mut i: PfInput = sized();
    match *ev {
        InputEvent::Key {
            down,
            code,
            modifiers,
            ..
        } => {
            i.kind = abi::PF_INPUT_KEY;
            i.down = u8::from(down);
            i.code = code;
            i.modifiers = modifiers.0;
        }
        InputEvent::MouseMove { dx, dy } => {
            i.kind = abi::PF_INPUT_MOUSE_MOVE;
            (i.x, i.y) = (dx.into(), dy.into());
        }
        InputEvent::MouseAbsolute {
            x,
            y,
            width,
            height,
        } => {
            i.kind = abi::PF_INPUT_MOUSE_POSITION;
            (i.x, i.y) = (x.into(), y.into());
            (i.ref_width, i.ref_height) = (i32::from(width) + 1, i32::from(height) + 1);
        }
        InputEvent::MouseButton { down, button } => {
            i.kind = abi::PF_INPUT_MOUSE_BUTTON;
            i.down = u8::from(down);
            i.button = button.to_wire();
        }
        InputEvent::Scroll { amount } => {
            i.kind = abi::PF_INPUT_SCROLL;
            i.y = amount.into();
        }
        InputEvent::HScroll { amount } => {
            i.kind = abi::PF_INPUT_HSCROLL;
            i.x = amount.into();
        }
        ref other => return Err(format!("the reference client does not send {other:?}")),
    }
    Ok(i)
}

fn fingerprint_hex(b: &[u8; 32]) -> String {
    Fingerprint(*b).to_hex()
}

fn closed_text(ev: &PfEvent) -> String {
    // SAFETY: the library NUL-terminates `text`.
    let text = unsafe { std::ffi::CStr::from_ptr(ev.text.as_ptr()) }.to_string_lossy();
    let who = if ev.by_peer != 0 { "peer" } else { "local" };
    let reason = u16::try_from(ev.reason).map_or(GoodbyeReason::Other(u16::MAX), |c| {
        GoodbyeReason::from_code(c)
    });
    format!("{reason} ({who}): {text}")
}

/// Runs the client; returns the report to print.
pub fn run(opts: ConnectOptions) -> Result<String, ConnectError> {
    let began = Instant::now();
    let (pair, pin) = match &opts.pair {
        None => (false, None),
        Some(p) => (true, p.as_ref().map(|p| p.as_str().to_owned())),
    };
    let client = Arc::new(Client::connect(&Connect {
        host: &opts.host,
        state_dir: opts.state_dir.path(),
        name: &opts.name,
        pin: pin.as_deref(),
        flags: if pair { abi::PF_CONNECT_PAIR } else { 0 },
        width: opts.mode.width,
        height: opts.mode.height,
        fps: opts.mode.fps,
        codecs: decode::codecs(),
        frame_queue: 16,
        test_drop_per_million: (opts.inject_loss.clamp(0.0, 0.999_999) * 1e6) as u32,
    })?);
    let inputs = opts
        .inputs
        .iter()
        .map(to_pf_input)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConnectError::Io)?;
    let (presenter, window_thread) = open_window(&opts, &client)?;
    let stop = Arc::new(AtomicBool::new(false));
    // The stream's codec (PF_EVENT_STARTED), for the frame thread's decoder.
    let codec = Arc::new(AtomicU32::new(0));
    let frames = {
        let (client, stop, codec) = (client.clone(), stop.clone(), codec.clone());
        let (record, decode) = (opts.record.clone(), opts.decode || opts.window);
        let presenter = presenter.clone();
        std::thread::Builder::new()
            .name("frames".into())
            .spawn(move || {
                frame_thread(&client, &stop, &codec, record, decode, presenter.as_deref())
            })
            .map_err(|e| ConnectError::Io(e.to_string()))?
    };
    let mut report = String::new();
    let mut paired = None;
    let mut started: Option<Instant> = None;
    let mut remode_asked = None;
    let mut schedule: Vec<(Duration, Action)> = Vec::new();
    let (pin_tx, pin_rx) = std::sync::mpsc::channel::<String>();
    loop {
        // Timers first: a due action runs before the next wait.
        if let Some(at) = started {
            let now = at.elapsed();
            while let Some(i) = schedule.iter().position(|(t, _)| *t <= now) {
                let (_, action) = schedule.remove(i);
                match action {
                    Action::Input(ev) => {
                        if let Err(e) = client.send_input(&ev) {
                            report.push_str(&format!("input refused: {e}\n"));
                        }
                    }
                    Action::Mode(m, first) => {
                        if first {
                            remode_asked = Some(Instant::now());
                        }
                        if let Err(e) = client.request_mode(m.width, m.height, m.fps) {
                            report.push_str(&format!("mode request refused: {e}\n"));
                        }
                    }
                }
            }
            if now >= opts.duration {
                break;
            }
        }
        if presenter.as_ref().is_some_and(|p| p.closed()) {
            report.push_str("window closed\n");
            break;
        }
        if let Ok(pin) = pin_rx.try_recv()
            && let Err(e) = client.pair(&pin)
        {
            report.push_str(&format!("pairing: {e}\n"));
        }
        let ev = match client.poll_event(20)? {
            Some(ev) => ev,
            None => continue,
        };
        match ev.kind {
            abi::PF_EVENT_CONNECTED => {
                report.push_str(&format!(
                    "connected to {}, host certificate {}{}\n",
                    opts.host,
                    fingerprint_hex(&ev.fingerprint),
                    match ev.trust {
                        abi::PF_TRUST_FIRST_USE => " (first use: pinned)",
                        abi::PF_TRUST_CHANGED => " (changed from the pin: pairing decides)",
                        _ => "",
                    }
                ));
            }
            abi::PF_EVENT_PIN_NEEDED => {
                eprint!("Enter the {}-digit PIN the host shows: ", ev.pin_digits);
                let tx = pin_tx.clone();
                // Read on another thread: the core keeps the connection alive meanwhile.
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let _ = std::io::stdin().lock().read_line(&mut line);
                    let _ = tx.send(line.trim().to_owned());
                });
            }
            abi::PF_EVENT_PAIRED => {
                paired = Some(ev.ok != 0);
                report.push_str(if ev.ok != 0 {
                    "paired\n"
                } else {
                    "pairing refused\n"
                });
            }
            abi::PF_EVENT_STARTED => {
                report.push_str(&format!(
                    "session {}: {}x{}@{} codec {}, FEC {}% parity\n",
                    ev.session_id, ev.width, ev.height, ev.fps, ev.codec, ev.parity_percent
                ));
                started = Some(Instant::now());
                codec.store(ev.codec, Ordering::SeqCst);
                for (k, i) in inputs.iter().enumerate() {
                    schedule.push((
                        opts.duration * 2 / 5 + Duration::from_millis(50 * k as u64),
                        Action::Input(*i),
                    ));
                }
                let steps = u32::try_from(opts.remodes.len()).unwrap_or(u32::MAX - 1) + 1;
                for (k, m) in opts.remodes.iter().enumerate() {
                    let at = opts.duration / steps * (k as u32 + 1);
                    schedule.push((at, Action::Mode(*m, k == 0)));
                }
            }
            abi::PF_EVENT_RECONFIGURED => report.push_str(&format!(
                "reconfigured: {}x{}@{} from frame {} (epoch {})\n",
                ev.width, ev.height, ev.fps, ev.first_frame_id, ev.epoch
            )),
            abi::PF_EVENT_FRAMES_LOST => {}
            abi::PF_EVENT_CLOSED => {
                report.push_str(&format!("closed: {}\n", closed_text(&ev)));
                break;
            }
            _ => {}
        }
    }
    // The Goodbye: close ends the session, then the frame thread drains and stops.
    stop.store(true, Ordering::SeqCst);
    let seen = frames
        .join()
        .map_err(|_| ConnectError::Io("frame thread panicked".into()))??;
    let (presented, forwarded) = match &presenter {
        Some(p) => {
            p.exit();
            (p.presented(), p.forwarded())
        }
        None => (0, 0),
    };
    drop(presenter);
    if let Some(t) = window_thread {
        let _ = t.join();
    }
    let client = Arc::try_unwrap(client).map_err(|_| ConnectError::Io("client in use".into()))?;
    let (stats, diag) = client.close_with_diagnostics()?;
    if pair && paired != Some(true) {
        return Err(ConnectError::Ended(format!("{report}not paired")));
    }
    if started.is_none() {
        return Err(ConnectError::Ended(format!("{report}no session")));
    }
    let reconfigure_ms = remode_asked.and_then(|a| {
        seen.first_new_mode
            .map(|t| t.saturating_duration_since(a).as_secs_f64() * 1e3)
    });
    report.push_str(&summary(&stats, &seen, reconfigure_ms));
    if opts.window {
        report.push_str(&format!(
            "window: {presented} pictures presented, {forwarded} input events forwarded\n"
        ));
    }
    if let Some(path) = &opts.stats_json {
        let first_frame_ms = seen
            .first_frame
            .map(|t| t.saturating_duration_since(began).as_secs_f64() * 1e3);
        let mut json = stats_json(&stats, &seen, &diag, reconfigure_ms, first_frame_ms);
        if opts.window {
            json["window_presented"] = presented.into();
            json["window_input_forwarded"] = forwarded.into();
        }
        let json = json.to_string();
        std::fs::write(path, json + "\n")
            .map_err(|e| ConnectError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(report)
}

/// Something the main loop does at a time after the start.
#[derive(Debug, Clone, Copy)]
enum Action {
    Input(PfInput),
    /// A mode switch; `true` for the first (timed for `reconfigure_ms`).
    Mode(Mode, bool),
}

fn frame_thread(
    client: &Client,
    stop: &AtomicBool,
    stream_codec: &AtomicU32,
    record: Option<PathBuf>,
    decode: bool,
    presenter: Option<&Presenter>,
) -> Result<Seen, ConnectError> {
    let mut out = match &record {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| ConnectError::Io(format!("{}: {e}", p.display())))?,
        )),
        None => None,
    };
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut decoder: Option<(u32, Decoder)> = None;
    let mut waiting_for_keyframe = false;
    // After `stop`, drain what is queued (a short timeout), then end.
    loop {
        let timeout = if stop.load(Ordering::Relaxed) { 0 } else { 20 };
        let info = match client.next_frame(&mut buf, timeout) {
            Ok(Some(info)) => info,
            Ok(None) if stop.load(Ordering::Relaxed) => break,
            Ok(None) => continue,
            Err(e) if e.code == abi::PF_ERR_CLOSED => break,
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        let au = &buf[..info.size as usize];
        seen.frames += 1;
        seen.first_frame.get_or_insert(now);
        let keyframe = info.flags & abi::PF_FRAME_KEYFRAME != 0;
        if info.flags & abi::PF_FRAME_NEW_MODE != 0 && info.mode_id != 0 {
            seen.first_new_mode.get_or_insert(now);
        }
        if keyframe
            && let Some(size) = sps_size(au)
            && !seen.modes.contains(&size)
        {
            seen.modes.push(size);
        }
        if let Some(w) = &mut out {
            w.write_all(au)
                .map_err(|e| ConnectError::Io(format!("recording: {e}")))?;
        }
        if !decode {
            continue;
        }
        if info.flags & abi::PF_FRAME_DISCONTINUITY != 0 && !keyframe {
            seen.discontinuities += 1;
            waiting_for_keyframe = true;
            let _ = client.request_keyframe();
        }
        if waiting_for_keyframe && !keyframe {
            continue;
        }
        waiting_for_keyframe = false;
        // The first frame can overtake PF_EVENT_STARTED on its way to the main thread.
        let waited = Instant::now();
        let mut codec = stream_codec.load(Ordering::SeqCst);
        while codec == 0 && waited.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
            codec = stream_codec.load(Ordering::SeqCst);
        }
        if decoder.as_ref().is_none_or(|(c, _)| *c != codec) {
            decoder = Some((codec, Decoder::new(codec).map_err(ConnectError::Io)?));
        }
        let Some((_, d)) = decoder.as_mut() else {
            continue;
        };
        let mut rgb = presenter.map(Presenter::take_buffer);
        match d.decode(au, rgb.as_mut()) {
            Ok(Some(pic)) => {
                if let (Some(p), Some(buf)) = (presenter, rgb.take()) {
                    p.show(buf);
                }
                let at = monotonic_us();
                seen.decoded += 1;
                if !seen.modes.contains(&(pic.width, pic.height)) {
                    seen.modes.push((pic.width, pic.height));
                }
                if let Some(stamp) = pic.stamp {
                    seen.stamps += 1;
                    seen.decoded_latency_us
                        .push((i128::from(at) - i128::from(stamp.capture_us)) as i64);
                }
            }
            Ok(None) => {}
            Err(e) => {
                seen.decode_errors += 1;
                tracing::warn!(error = %e, frame = info.frame_id, "decode failed");
                waiting_for_keyframe = true;
                let _ = client.request_keyframe();
            }
        }
    }
    if let Some(mut w) = out {
        w.flush()
            .map_err(|e| ConnectError::Io(format!("recording: {e}")))?;
    }
    Ok(seen)
}

fn summary(stats: &PfStats, seen: &Seen, reconfigure_ms: Option<f64>) -> String {
    let opt = |v: i64| if v < 0 { "-".into() } else { v.to_string() };
    format!(
        "received {} frames ({} needed FEC, {} unrecoverable, {} dropped by the queue), \
         decoded {} ({} stamps, {} errors), goodput {:.1} Mbit/s, modes {}, latency \
         capture→reassembled p50 {} us p99 {} us, capture→decoded p50 {} us p99 {} us{}\n",
        stats.frames_complete,
        stats.frames_recovered,
        stats.frames_lost,
        stats.frames_dropped,
        seen.decoded,
        seen.stamps,
        seen.decode_errors,
        stats.goodput_bps as f64 / 1e6,
        modes(seen).join(", "),
        opt(stats.latency_us_p50),
        opt(stats.latency_us_p99),
        quantile(&seen.decoded_latency_us, 0.5).map_or("-".into(), |v| v.to_string()),
        quantile(&seen.decoded_latency_us, 0.99).map_or("-".into(), |v| v.to_string()),
        reconfigure_ms.map_or(String::new(), |ms| format!(
            ", new mode {ms:.1} ms after asking"
        )),
    )
}

fn modes(seen: &Seen) -> Vec<String> {
    seen.modes.iter().map(|(w, h)| format!("{w}x{h}")).collect()
}

/// The statistics file of `--stats-json`.
fn stats_json(
    stats: &PfStats,
    seen: &Seen,
    diag: &crate::core::CoreStats,
    reconfigure_ms: Option<f64>,
    first_frame_ms: Option<f64>,
) -> serde_json::Value {
    let opt = |v: i64| (v >= 0).then_some(v);
    serde_json::json!({
        "frames_complete": stats.frames_complete,
        "frames_unrecoverable": stats.frames_lost,
        "frames_recovered_by_fec": stats.frames_recovered,
        "frames_dropped": stats.frames_dropped,
        "keyframes": stats.keyframes,
        "datagrams": stats.datagrams,
        "payload_bytes": stats.payload_bytes,
        "modes_seen": modes(seen),
        "mode_switches": stats.mode_switches,
        "goodput_bps": stats.goodput_bps,
        "latency_us_p50": opt(stats.latency_us_p50),
        "latency_us_p99": opt(stats.latency_us_p99),
        "frames_decoded": seen.decoded,
        "decode_errors": seen.decode_errors,
        "stamps_read": seen.stamps,
        "discontinuities": seen.discontinuities,
        "decoded_latency_us_p50": quantile(&seen.decoded_latency_us, 0.5),
        "decoded_latency_us_p99": quantile(&seen.decoded_latency_us, 0.99),
        "reconfigure_ms": reconfigure_ms,
        "first_frame_ms": first_frame_ms,
        "input_sent": stats.input_sent,
        "rtt_us": stats.rtt_us,
        "buffers_created": stats.buffers_created,
        "key_rotations": stats.key_rotations,
        "datagrams_per_generation": diag.receive.datagrams_per_generation,
        "retired_key_datagrams": diag.receive.retired_key_datagrams,
    })
}

/// The window's thread handle.
type WindowThread = Option<std::thread::JoinHandle<()>>;

/// Opens the window if asked for.
#[cfg(feature = "window")]
fn open_window(
    opts: &ConnectOptions,
    client: &Arc<Client>,
) -> Result<(Option<Arc<Presenter>>, WindowThread), ConnectError> {
    if !opts.window {
        return Ok((None, None));
    }
    let (p, t) = window::open(
        client.clone(),
        format!("punktfunk — {}", opts.host),
        u32::from(opts.mode.width),
        u32::from(opts.mode.height),
    )
    .map_err(ConnectError::Io)?;
    Ok((Some(p), Some(t)))
}

#[cfg(not(feature = "window"))]
fn open_window(
    opts: &ConnectOptions,
    _: &Arc<Client>,
) -> Result<(Option<Arc<Presenter>>, WindowThread), ConnectError> {
    if opts.window {
        return Err(ConnectError::Io(
            "this build has no window (feature `window` is off)".into(),
        ));
    }
    Ok((None, None))
}

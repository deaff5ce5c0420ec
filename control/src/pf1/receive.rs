//! A client's media side (act; the client core in crate `punktfunk-client` runs it): receive
//! the punktfunk/1 data plane, decrypt, FEC-decode and reassemble frames, send loss reports
//! back, keep statistics, hand every frame to the core's [`FrameSink`].
//!
//! ```text
//! UDP (GRO) ─► Pf1ReceiveLoop ─► Pf1Receiver (AES-GCM, GF(2^16) recovery, in-order frames)
//!                                   │ every 100 ms: take_loss_report ─► ClientCommand::LossReport
//!                                   ▼
//!                      ReceiveStats (frames, modes from keyframe SPS, latency, goodput)
//!                      FrameSink (the core's frame queue or callback)
//!
//! install_key(g) ─► (next poll, ≤ 20 ms) Pf1Receiver::install_key ─► ClientCommand::KeyInstalled
//!                   (the session acknowledges; the host switches its sender)
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use punktfunk_capture::annexb::sps_size;
use punktfunk_capture::clock::monotonic_us;
use punktfunk_engine::io::pf1::Pf1ReceiveLoop;
use punktfunk_engine::io::{Caps, ReceiveConfig, UdpReceiver};
use punktfunk_engine::pf1::{
    DataKey, KEY_MATERIAL_LEN, Pf1Event, Pf1Receiver, Pf1ReceiverConfig, ReceivedFrame,
};

use super::KeyMaterial;
use super::message::LossReport;
use super::net::{ClientCommand, ClientHandle};

/// Latency samples kept: the latest frames' (about 4.5 minutes at 60 fps).
pub const LATENCY_WINDOW: usize = 16_384;

/// What the receiver saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiveStats {
    /// Frames delivered complete.
    pub frames_complete: u64,
    /// Frames declared lost.
    pub frames_unrecoverable: u64,
    /// Frames that needed FEC.
    pub frames_recovered_by_fec: u64,
    /// Datagrams received.
    pub datagrams: u64,
    /// Frame bytes delivered.
    pub payload_bytes: u64,
    /// Picture sizes seen in keyframes' SPS, in order of first appearance.
    pub modes_seen: Vec<(u32, u32)>,
    /// Keyframes delivered.
    pub keyframes: u64,
    /// Capture → reassembled latency samples, µs, of the latest [`LATENCY_WINDOW`] frames
    /// (meaningful when host and client share a clock, i.e. the same machine).
    pub latency_us: Vec<i64>,
    /// First and last frame arrival.
    pub first_frame: Option<Instant>,
    /// Last frame arrival.
    pub last_frame: Option<Instant>,
    /// Arrival of the first frame of each new mode after the first: (mode id, when).
    pub new_modes: Vec<(u16, Instant)>,
    /// Key generations installed after the first (rotations).
    pub key_rotations: u64,
    /// Datagrams authenticated per key generation: (generation, datagrams), in order.
    pub datagrams_per_generation: Vec<(u32, u64)>,
    /// Datagrams refused because their key generation was retired (stragglers, replays).
    pub retired_key_datagrams: u64,
}

impl ReceiveStats {
    /// Frame bytes per second between the first and last frame, in bit/s.
    pub fn goodput_bps(&self) -> f64 {
        match (self.first_frame, self.last_frame) {
            (Some(a), Some(b)) if b > a => self.payload_bytes as f64 * 8.0 / (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Records the latency of the frame just counted in `frames_complete`, keeping the latest
    /// [`LATENCY_WINDOW`] samples (a long session's statistics stay small and cheap to query).
    pub fn push_latency(&mut self, sample: i64) {
        if self.latency_us.len() < LATENCY_WINDOW {
            self.latency_us.push(sample);
        } else {
            let i = (self.frames_complete.saturating_sub(1) as usize) % LATENCY_WINDOW;
            self.latency_us[i] = sample;
        }
    }

    /// The `q` quantile of the latency samples.
    pub fn latency_quantile(&self, q: f64) -> Option<i64> {
        let mut v = self.latency_us.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        Some(v[((v.len() - 1) as f64 * q).round() as usize])
    }
}

/// Where reassembled frames go besides the statistics: the client core's frame queue or
/// callback. Called on the receive thread; `frame.data` is valid for the call only.
pub trait FrameSink: Send + Sync {
    /// A complete access unit.
    fn frame(&self, frame: &ReceivedFrame);
    /// `count` frames cannot be recovered (the decoder needs the next keyframe).
    fn lost(&self, first: u32, count: u32);
}

/// Options of the media side.
#[derive(Clone, Default)]
pub struct ReceiveOptions {
    /// Drop this share of datagrams before the receiver (seeded; tests and benches).
    pub inject_loss: f64,
    /// Hand every frame to this sink too.
    pub sink: Option<Arc<dyn FrameSink>>,
}

impl std::fmt::Debug for ReceiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveOptions")
            .field("inject_loss", &self.inject_loss)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

/// A running receiver.
#[derive(Debug)]
pub struct Receiving {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
    stats: Arc<Mutex<ReceiveStats>>,
    /// Keys for the receive thread: the first one starts it, later ones are key updates.
    keys: Arc<Mutex<Vec<DataKey>>>,
    port: u16,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Receiving {
    /// Binds the data-plane socket (any port) and starts the thread. The key arrives later,
    /// with [`Receiving::set_key`] (the port must be announced before the key exists).
    pub fn bind(opts: ReceiveOptions, control: ClientHandle) -> std::io::Result<Self> {
        let caps = Caps::probe();
        let udp = UdpReceiver::bind(
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            &ReceiveConfig {
                gro: true,
                socket_receive_buffer: 32 << 20,
                ..Default::default()
            },
            &caps,
        )
        .map_err(std::io::Error::other)?;
        let port = udp.local_addr().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<Mutex<ReceiveStats>> = Arc::default();
        let keys: Arc<Mutex<Vec<DataKey>>> = Arc::default();
        let (s, st, k) = (stop.clone(), stats.clone(), keys.clone());
        let thread = std::thread::Builder::new()
            .name("pf1-receive".into())
            .spawn(move || run(udp, &s, &st, &k, opts, control))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            stats,
            keys,
            port,
        })
    }

    /// The local data-plane port to announce in Start.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Installs the data-plane key (the first 20 bytes of the exported key material).
    pub fn set_key(&self, material: &[u8]) {
        let mut m = [0u8; KEY_MATERIAL_LEN];
        m.copy_from_slice(&material[..KEY_MATERIAL_LEN]);
        lock(&self.keys).push(DataKey::from_key_material(&m));
    }

    /// Hands key generation `generation` to the receive thread, which installs it beside the
    /// key in use and then sends [`ClientCommand::KeyInstalled`] (the acknowledgement).
    pub fn install_key(&self, generation: u32, material: &KeyMaterial) {
        let mut m = [0u8; KEY_MATERIAL_LEN];
        m.copy_from_slice(&material.0[..KEY_MATERIAL_LEN]);
        lock(&self.keys).push(DataKey::from_key_material(&m).with_generation(generation));
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> ReceiveStats {
        lock(&self.stats).clone()
    }

    /// Stops the thread and returns the final statistics.
    pub fn finish(mut self) -> Result<ReceiveStats, String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| "receive thread panicked".to_string())??;
        }
        Ok(self.stats())
    }
}

fn run(
    udp: UdpReceiver,
    stop: &AtomicBool,
    stats: &Mutex<ReceiveStats>,
    keys: &Mutex<Vec<DataKey>>,
    opts: ReceiveOptions,
    control: ClientHandle,
) -> Result<(), String> {
    // Wait for the key (Welcome → Start → params): datagrams cannot be opened before.
    let key = loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        {
            let mut k = lock(keys);
            if !k.is_empty() {
                break k.remove(0);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let receiver =
        Pf1Receiver::new(Pf1ReceiverConfig::default(), key).map_err(|e| e.to_string())?;
    let mut rl = Pf1ReceiveLoop::new(udp, receiver);
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let threshold = (opts.inject_loss.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
    let mut window = 0u32;
    let mut last_report = Instant::now();
    let mut complete_at_report = 0u64;
    let mut mode = 0u16;
    let mut new_keys = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Key updates: install, then acknowledge through the control session.
        std::mem::swap(&mut new_keys, &mut *lock(keys));
        for k in new_keys.drain(..) {
            let generation = k.generation();
            rl.receiver_mut().install_key(k);
            lock(stats).key_rotations += 1;
            control.send(ClientCommand::KeyInstalled(generation));
        }
        let keep = |_: &[u8]| {
            // xorshift64*: cheap, seeded, good enough to drop a share of datagrams.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >= threshold
        };
        rl.poll_filtered(Duration::from_millis(20), keep, |rx, ev| {
            let mut st = lock(stats);
            match ev {
                Pf1Event::Frame(f) => {
                    let now = Instant::now();
                    st.first_frame.get_or_insert(now);
                    st.last_frame = Some(now);
                    st.frames_complete += 1;
                    st.payload_bytes += f.data.len() as u64;
                    st.frames_recovered_by_fec += u64::from(f.recovered_shards > 0);
                    st.push_latency(f.latency_at(monotonic_us()));
                    if f.keyframe {
                        st.keyframes += 1;
                        if let Some(size) = sps_size(&f.data)
                            && !st.modes_seen.contains(&size)
                        {
                            st.modes_seen.push(size);
                        }
                    }
                    if f.new_mode && f.mode != mode {
                        mode = f.mode;
                        st.new_modes.push((f.mode, now));
                    }
                    drop(st);
                    if let Some(sink) = &opts.sink {
                        sink.frame(&f);
                    }
                    rx.recycle(f.data);
                }
                Pf1Event::FramesLost { first, count } => {
                    st.frames_unrecoverable += u64::from(count);
                    drop(st);
                    if let Some(sink) = &opts.sink {
                        sink.lost(first, count);
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
        if last_report.elapsed() >= Duration::from_millis(100) {
            last_report = Instant::now();
            let r = rl.receiver_mut().take_loss_report();
            let mut st = lock(stats);
            st.datagrams = rl.receiver().stats().datagrams;
            st.retired_key_datagrams = rl.receiver().stats().retired_key;
            rl.receiver_mut()
                .drain_retired_keys(|g, n| st.datagrams_per_generation.push((g, n)));
            let complete = st.frames_complete;
            drop(st);
            window = window.wrapping_add(1);
            control.send(ClientCommand::LossReport(LossReport {
                window_id: window,
                expected: r.expected,
                received: r.received,
                frames_complete: (complete - complete_at_report) as u32,
                frames_unrecoverable: r.frames_lost,
            }));
            complete_at_report = complete;
        }
    }
    {
        let mut st = lock(stats);
        st.datagrams = rl.receiver().stats().datagrams;
        st.retired_key_datagrams = rl.receiver().stats().retired_key;
        rl.receiver_mut()
            .drain_retired_keys(|g, n| st.datagrams_per_generation.push((g, n)));
        let mut held: Vec<(u32, u64)> = rl.receiver().key_datagrams().collect();
        held.sort_unstable();
        st.datagrams_per_generation.extend(held);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_keeps_the_latest_window_of_samples() {
        let mut st = ReceiveStats::default();
        // Old frames 1 ms, then a full window of 5 ms: the old ones are gone.
        for v in std::iter::repeat_n(1_000, 100).chain(std::iter::repeat_n(5_000, LATENCY_WINDOW)) {
            st.frames_complete += 1;
            st.push_latency(v);
        }
        assert_eq!(st.latency_us.len(), LATENCY_WINDOW);
        assert_eq!(st.latency_quantile(0.0), Some(5_000));
        assert_eq!(st.latency_quantile(1.0), Some(5_000));
    }
}

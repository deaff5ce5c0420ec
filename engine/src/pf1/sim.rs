//! Whole-path tests of the pure data plane: property tests of the sender → receiver round
//! trip, and a deterministic session simulation (virtual clock; seeded loss, delay and
//! reordering) with the adaptive FEC controller in the loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn key() -> DataKey {
    DataKey::from_key_material(&[0x42; KEY_MATERIAL_LEN])
}

/// Frame `id`'s content: cheap, position- and id-dependent.
fn content(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64).wrapping_mul(0x9e37_79b9).wrapping_add(id * 131) as u8 ^ (i >> 11) as u8
        })
        .collect()
}

/// Shuffles `v` locally: every element moves at most `window` places.
fn local_shuffle<T>(v: &mut [T], window: usize, rng: &mut ChaCha8Rng) {
    for start in (0..v.len()).step_by(window.max(1)) {
        let end = (start + window).min(v.len());
        let chunk = &mut v[start..end];
        for i in (1..chunk.len()).rev() {
            chunk.swap(i, rng.random_range(0..=i));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random frame sizes up to 8 MB, random loss within each frame's parity budget, local
    /// reordering and duplicates: every frame arrives byte-exact and in order.
    #[test]
    fn frames_survive_loss_reordering_and_duplicates(
        sizes in prop::collection::vec(
            prop_oneof![0usize..5_000, 5_000usize..300_000, 300_000usize..(8 << 20)],
            1..4,
        ),
        pct in 5u8..=50,
        window in 1usize..64,
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let config = Pf1SenderConfig { parity_percent: pct, ..Default::default() };
        let mut tx = Pf1Sender::new(config, key()).unwrap();
        let mut rx = Pf1Receiver::new(Pf1ReceiverConfig::default(), key()).unwrap();
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, &len) in sizes.iter().enumerate() {
            let frame = content(id as u64, len);
            out.resize(tx.max_output(len), 0);
            let p = tx.packetize(&frame, &FrameInfo::default(), &mut out).unwrap();
            let l = p.layout;
            let mut dgs: Vec<&[u8]> = out[..p.len()].chunks(l.stride).collect();
            // Lose up to the parity budget, anywhere.
            let lose = rng.random_range(0..=l.parity_shards);
            for _ in 0..lose {
                let i = rng.random_range(0..dgs.len());
                dgs.remove(i);
            }
            // Duplicate a few, right after themselves, then reorder locally.
            let dups = rng.random_range(0..=dgs.len().min(20));
            for _ in 0..dups {
                let i = rng.random_range(0..dgs.len());
                dgs.insert(i, dgs[i]);
            }
            local_shuffle(&mut dgs, window, &mut rng);
            for d in &dgs {
                let _ = rx.handle_datagram(now, d);
            }
            match rx.poll_event() {
                Some(Pf1Event::Frame(f)) => {
                    prop_assert_eq!(f.frame_id, id as u32);
                    prop_assert!(f.data == frame, "frame {} differs", id);
                    rx.recycle(f.data);
                }
                other => prop_assert!(false, "frame {}: {:?}", id, other),
            }
            prop_assert!(rx.poll_event().is_none());
        }
        let s = rx.stats();
        prop_assert_eq!(s.frames_unrecoverable, 0);
        prop_assert_eq!(s.auth_failures + s.malformed, 0);
    }

    /// Arbitrary bytes never panic the receiver, and a datagram mutated anywhere is refused.
    #[test]
    fn mutated_datagrams_are_refused(
        at in 0usize..1460,
        bit in 0u8..8,
        noise in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut tx = Pf1Sender::new(Pf1SenderConfig::default(), key()).unwrap();
        let mut rx = Pf1Receiver::new(Pf1ReceiverConfig::default(), key()).unwrap();
        let now = Instant::now();
        let _ = rx.handle_datagram(now, &noise);
        let mut out = vec![0u8; tx.max_output(10_000)];
        let p = tx.packetize(&[9; 10_000], &FrameInfo::default(), &mut out).unwrap();
        let mut dg = out[..p.layout.stride].to_vec();
        dg[at] ^= 1 << bit;
        prop_assert!(rx.handle_datagram(now, &dg).is_err());
        prop_assert!(rx.poll_event().is_none());
    }
}

/// A datagram in flight in the simulated network.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    arrival: Duration,
    seq: u64,
    bytes: Vec<u8>,
}

/// Seeded network: random loss, base delay plus uniform jitter (which reorders nearby
/// datagrams), delivery in arrival order.
struct Net {
    rng: ChaCha8Rng,
    loss: f64,
    delay: Duration,
    jitter: Duration,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
}

impl Net {
    fn send(&mut self, at: Duration, bytes: &[u8]) {
        if self.rng.random::<f64>() < self.loss {
            return;
        }
        let jitter = self.jitter.mul_f64(self.rng.random::<f64>());
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            arrival: at + self.delay + jitter,
            seq: self.seq,
            bytes: bytes.to_vec(),
        }));
    }

    fn pop_until(&mut self, t: Duration) -> Option<InFlight> {
        if self.queue.peek().is_some_and(|Reverse(d)| d.arrival <= t) {
            self.queue.pop().map(|Reverse(d)| d)
        } else {
            None
        }
    }
}

/// Per-phase outcome of [`Session::run`].
#[derive(Debug, Default, Clone, Copy)]
struct Phase {
    delivered: u64,
    lost: u64,
}

/// Host and client over the simulated network, on a virtual clock.
struct Session {
    tx: Pf1Sender,
    rx: Pf1Receiver,
    fec: FecController,
    net: Net,
    rng: ChaCha8Rng,
    epoch: Instant,
    next_frame: u64,
    out: Vec<u8>,
    /// Whether the controller's output reaches the sender.
    adaptive: bool,
}

const FRAME_INTERVAL: Duration = Duration::from_nanos(16_666_667);
const FRAMES_PER_REPORT: u64 = 6;

impl Session {
    fn new(seed: u64) -> Self {
        Self {
            tx: Pf1Sender::new(Pf1SenderConfig::default(), key()).unwrap(),
            rx: Pf1Receiver::new(Pf1ReceiverConfig::default(), key()).unwrap(),
            fec: FecController::new(FecControllerConfig::default()).unwrap(),
            net: Net {
                rng: ChaCha8Rng::seed_from_u64(seed),
                loss: 0.0,
                delay: Duration::from_millis(5),
                jitter: Duration::from_millis(1),
                queue: BinaryHeap::new(),
                seq: 0,
            },
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xffff),
            epoch: Instant::now(),
            next_frame: 0,
            out: Vec::new(),
            adaptive: true,
        }
    }

    /// Delivers everything that arrived by `t` and checks each frame against its content.
    fn client_until(&mut self, t: Duration, phase: &mut Phase) {
        while let Some(d) = self.net.pop_until(t) {
            let now = self.epoch + d.arrival;
            let _ = self.rx.handle_datagram(now, &d.bytes);
        }
        self.rx.handle_timeout(self.epoch + t);
        while let Some(e) = self.rx.poll_event() {
            match e {
                Pf1Event::Frame(f) => {
                    let expect = content(u64::from(f.frame_id), f.data.len());
                    assert!(f.data == expect, "frame {} corrupted", f.frame_id);
                    phase.delivered += 1;
                    self.rx.recycle(f.data);
                }
                Pf1Event::FramesLost { count, .. } => phase.lost += u64::from(count),
            }
        }
    }

    /// Runs `frames` frames at 60 fps through a network losing `loss` of the datagrams.
    fn run(&mut self, frames: u64, loss: f64) -> Phase {
        self.net.loss = loss;
        let mut phase = Phase::default();
        for _ in 0..frames {
            let id = self.next_frame;
            self.next_frame += 1;
            let t = FRAME_INTERVAL * id as u32;
            self.client_until(t, &mut phase);
            if self.adaptive && id.is_multiple_of(FRAMES_PER_REPORT) {
                // The client's report reaches the host's controller; the host applies it.
                let report = self.rx.take_loss_report();
                self.fec.handle_report(&report);
                self.tx.set_parity_percent(self.fec.parity_percent());
                self.tx.set_loss_estimate(self.fec.loss_estimate());
            }
            // A keyframe of ~1 MB every 2 s, P-frames of 60–300 KB in between.
            let len = if id.is_multiple_of(120) {
                1 << 20
            } else {
                self.rng.random_range(60_000..300_000)
            };
            let frame = content(id, len);
            self.out.resize(self.tx.max_output(len), 0);
            let p = self
                .tx
                .packetize(
                    &frame,
                    &FrameInfo {
                        capture_us: t.as_micros() as u64,
                        ..Default::default()
                    },
                    &mut self.out,
                )
                .unwrap();
            // Paced over half the frame interval.
            let n = p.layout.datagrams();
            for (k, dg) in self.out[..p.len()].chunks(p.layout.stride).enumerate() {
                let at = t + (FRAME_INTERVAL / 2).mul_f64(k as f64 / n as f64);
                self.net.send(at, dg);
            }
        }
        // Drain the network.
        let end = FRAME_INTERVAL * self.next_frame as u32 + Duration::from_millis(300);
        self.client_until(end, &mut phase);
        phase
    }
}

#[test]
fn adaptive_fec_converges_under_ten_percent_loss() {
    let mut s = Session::new(2024);
    // Warm-up at 10 % loss: starts at 20 % parity and the controller finds its level.
    let warm = s.run(120, 0.10);
    let pct_after_warmup = s.fec.parity_percent();
    // Steady 10 % loss for 20 s: frames stop being lost.
    let steady = s.run(1200, 0.10);
    let est = s.fec.loss_estimate();
    assert!((0.09..0.13).contains(&est), "loss estimate {est}");
    let pct = s.fec.parity_percent();
    assert!((12..=25).contains(&pct), "parity {pct} %");
    assert!(
        steady.lost == 0,
        "{} of 1200 frames lost at steady 10 % loss ({warm:?}, {pct_after_warmup} % after warm-up)",
        steady.lost
    );
    assert_eq!(steady.delivered + steady.lost, 1200);
    // A clean link: parity decays to the floor and nothing is lost.
    let clean = s.run(900, 0.0);
    assert_eq!(clean.lost, 0);
    assert_eq!(s.fec.parity_percent(), 5);
    let stats = s.rx.stats();
    assert_eq!(stats.auth_failures + stats.malformed + stats.duplicates, 0);
    eprintln!(
        "warm-up {warm:?} → {pct_after_warmup} %, steady {steady:?} at {pct} % \
         (loss est {est:.3}), clean {clean:?}; stats {stats:?}"
    );
}

#[test]
fn fixed_low_parity_loses_frames_that_adaptive_saves() {
    // The same network with parity fixed at 5 % and no loss estimate: the baseline the
    // adaptive run beats.
    let mut s = Session::new(2024);
    s.adaptive = false;
    s.tx.set_parity_percent(5);
    let phase = s.run(300, 0.10);
    assert!(phase.lost > 250, "{phase:?}");
}

//! The impairment relay (act): packets routed into the testbed router's TUN device go through
//! [`crate::impair::Impairment`] and are written back into it, to be forwarded on to the
//! client (docs/sweeps.md "Impairment relay").
//!
//! Run as its own process inside the router namespace (`sweep relay …`, started by
//! [`super::run`]); it stops on SIGINT/SIGTERM and writes its counters as JSON.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::impair::{ImpairConfig, Impairment};

use super::tun::Tun;

/// Relays until `stop`, then writes the counters to `stats` as JSON.
pub fn run(
    tun: &str,
    config: ImpairConfig,
    stats: &Path,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut dev = Tun::open(tun).map_err(|e| format!("open TUN {tun}: {e}"))?;
    let mut link = Impairment::new(config).ok_or("impairment probabilities outside 0..=1")?;
    let start = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::with_capacity(65_536);
    let mut write_errors = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_micros() as u64;
        let mut idle = true;
        // Take in everything waiting (bounded per round so releases are not starved).
        for _ in 0..256 {
            match dev.recv(&mut buf) {
                Ok(Some(n)) => {
                    idle = false;
                    link.push(now, &buf[..n]);
                }
                Ok(None) => break,
                Err(e) => return Err(format!("read {tun}: {e}")),
            }
        }
        let now = start.elapsed().as_micros() as u64;
        while link.pop_due(now, &mut out) {
            idle = false;
            if dev.send(&out).is_err() {
                write_errors += 1;
            }
        }
        if idle {
            // Sleep to the next release, at most 200 µs (new packets wait at most that long:
            // the relay's own added latency, measured in docs/sweeps.md).
            let wait = link
                .next_release()
                .map_or(200, |t| t.saturating_sub(now).min(200));
            std::thread::sleep(Duration::from_micros(wait.max(20)));
        }
    }
    let s = link.stats();
    let json = serde_json::json!({
        "packets": s.packets,
        "lost": s.lost,
        "bursts": s.bursts,
        "overflow": s.overflow,
        "reordered": s.reordered,
        "released": s.released,
        "write_errors": write_errors,
        "queued_at_stop": link.queued(),
    });
    std::fs::write(stats, json.to_string()).map_err(|e| format!("write {}: {e}", stats.display()))
}

//! The accept loop shared by the nvhttp listeners and the management API (act): every
//! connection is admitted, evicted and timed by a [`ConnTable`](crate::limits::ConnTable);
//! this file only moves the verdicts onto tokio tasks and sockets.
//!
//! ```text
//!  accept ─► table.handle_accept ─► Refuse: close
//!                                 ─► Admit / AdmitEvicting (evicted's kill switch fires)
//!           spawn: select! { handler(stream, progress)   ─► Close::Done | Malformed
//!                            kill switch                 ─► evicted (counted at admission)
//!                            watchdog(progress deadline) ─► Close::TimedOut }
//!           ─► table.handle_closed
//!  every second and every accept ─► poll_summary ─► one `warn` line per listener per 10 s
//! ```
//!
//! One tokio task per connection, bounded by the table's `max_connections` (evicted tasks
//! end at their next poll, so the count never runs far past it). The watchdog holds the
//! connection to a *total* deadline: from accept until the handler reports a complete
//! request ([`Progress::request`]), and from [`Progress::respond`] until the handler returns.
//! Between the two the handler bounds its own waits (pairing's PIN wait, a launch).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::limits::{Admission, Close, ConnId, Listener};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Must be done by then.
    Until(Instant),
    /// The handler bounds its own waits.
    Open,
}

/// What a connection's handler tells the watchdog and the table.
#[derive(Debug)]
pub struct Progress {
    listener: Arc<Listener>,
    id: ConnId,
    stage: watch::Sender<Stage>,
}

impl Progress {
    /// The first request is complete: the connection is no longer evictable nor under the
    /// request deadline. False if it was evicted meanwhile (its kill switch has fired).
    pub fn request(&self) -> bool {
        let kept = self.listener.table().handle_request(self.id);
        if kept {
            self.stage.send_replace(Stage::Open);
        }
        kept
    }

    /// The response is ready: it must be written within the response deadline.
    pub fn respond(&self) {
        let deadline = self.listener.table().handle_response(Instant::now());
        self.stage.send_replace(Stage::Until(deadline));
    }
}

/// Resolves when the connection's current deadline passes.
async fn watchdog(mut rx: watch::Receiver<Stage>) {
    loop {
        let stage = *rx.borrow_and_update();
        let changed = match stage {
            Stage::Until(deadline) => tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => return,
                r = rx.changed() => r,
            },
            Stage::Open => rx.changed().await,
        };
        if changed.is_err() {
            // The handler is gone; the select around us ends this task.
            std::future::pending::<()>().await;
        }
    }
}

type KillSwitches = Arc<Mutex<HashMap<ConnId, oneshot::Sender<()>>>>;

fn lock(k: &KillSwitches) -> std::sync::MutexGuard<'_, HashMap<ConnId, oneshot::Sender<()>>> {
    // A map of channel ends; a panicking holder leaves it usable.
    k.lock().unwrap_or_else(PoisonError::into_inner)
}

fn log_summary(listener: &Listener, now: Instant) {
    if let Some(s) = listener.poll_summary(now) {
        tracing::warn!("{s}");
    }
}

/// Accepts on `socket` until `shutdown` turns true, serving each admitted connection with
/// `handler` under `listener`'s limits. The handler returns how the connection ended.
pub async fn serve<H, Fut>(
    socket: TcpListener,
    listener: Arc<Listener>,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(TcpStream, SocketAddr, Arc<Progress>) -> Fut,
    Fut: Future<Output = Close> + Send + 'static,
{
    let kills: KillSwitches = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            r = socket.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: say so at most once a summary interval.
                    let now = Instant::now();
                    if last_accept_error.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                        tracing::warn!(listener = listener.name(), error = %e, "accept failed");
                        last_accept_error = Some(now);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tick.tick() => {
                log_summary(&listener, Instant::now());
                continue;
            }
            _ = shutdown.changed() => break,
        };
        let now = Instant::now();
        let admission = listener.table().handle_accept(now);
        let (id, deadline) = match admission {
            Admission::Refuse => {
                drop(stream);
                log_summary(&listener, now);
                continue;
            }
            Admission::Admit { id, deadline } => (id, deadline),
            Admission::AdmitEvicting {
                id,
                deadline,
                evicted,
            } => {
                if let Some(kill) = lock(&kills).remove(&evicted) {
                    let _ = kill.send(());
                }
                (id, deadline)
            }
        };
        log_summary(&listener, now);
        let (kill_tx, kill_rx) = oneshot::channel();
        lock(&kills).insert(id, kill_tx);
        let (stage_tx, stage_rx) = watch::channel(Stage::Until(deadline));
        let progress = Arc::new(Progress {
            listener: Arc::clone(&listener),
            id,
            stage: stage_tx,
        });
        let _ = stream.set_nodelay(true);
        let conn = handler(stream, peer, progress);
        let listener = Arc::clone(&listener);
        let kills = Arc::clone(&kills);
        tokio::spawn(async move {
            let how = tokio::select! {
                how = conn => how,
                // Evicted (or the loop is gone): the table counted it already.
                _ = kill_rx => Close::Done,
                () = watchdog(stage_rx) => Close::TimedOut,
            };
            lock(&kills).remove(&id);
            listener.table().handle_closed(id, how);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::LimitsConfig;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[derive(Default)]
    struct Hold {
        holding: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    /// A line protocol: the request is complete at the first `\n`; the reply is `ok\n`. A
    /// `hold` request signals `holding` once it is serving, then waits for `release`.
    async fn start(
        limits: LimitsConfig,
        hold: Arc<Hold>,
    ) -> (SocketAddr, Arc<Listener>, watch::Sender<bool>) {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let listener = Listener::new("test", limits);
        let (stop_tx, stop_rx) = watch::channel(false);
        let l = Arc::clone(&listener);
        tokio::spawn(serve(
            socket,
            l,
            stop_rx,
            move |mut stream, _peer, progress| {
                let hold = Arc::clone(&hold);
                async move {
                    let mut buf = Vec::new();
                    let mut byte = [0u8; 1];
                    loop {
                        match stream.read(&mut byte).await {
                            Ok(1) if byte[0] == b'\n' => break,
                            Ok(1) => buf.push(byte[0]),
                            _ => return Close::Done,
                        }
                    }
                    if buf == b"hold" {
                        progress.request();
                        hold.holding.notify_one();
                        hold.release.notified().await;
                    } else if buf != b"hello" {
                        return Close::Malformed;
                    }
                    progress.request();
                    progress.respond();
                    let _ = stream.write_all(b"ok\n").await;
                    Close::Done
                }
            },
        ));
        (addr, listener, stop_tx)
    }

    async fn closed_by_host(c: &mut tokio::net::TcpStream) -> bool {
        let mut b = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(30), c.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    async fn hello(addr: SocketAddr) -> String {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"hello\n").await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(30), c.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    #[tokio::test]
    async fn a_full_listener_evicts_its_oldest_half_open_connection() {
        let limits = LimitsConfig {
            max_connections: 2,
            ..LimitsConfig::default()
        };
        let (addr, listener, _stop) = start(limits, Arc::default()).await;
        let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut b = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Both are in the table before the real one comes.
        while listener.stats().accepted < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(hello(addr).await, "ok\n");
        assert!(
            closed_by_host(&mut a).await,
            "the oldest idle one is evicted"
        );
        let s = listener.stats();
        assert_eq!((s.evicted, s.refused), (1, 0));
        // b is still open and can still send its request.
        b.write_all(b"hello\n").await.unwrap();
        let mut out = [0u8; 3];
        b.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"ok\n");
    }

    #[tokio::test]
    async fn a_full_listener_of_serving_connections_refuses() {
        let limits = LimitsConfig {
            max_connections: 1,
            ..LimitsConfig::default()
        };
        let hold = Arc::new(Hold::default());
        let (addr, listener, _stop) = start(limits, Arc::clone(&hold)).await;
        let mut serving = tokio::net::TcpStream::connect(addr).await.unwrap();
        serving.write_all(b"hold\n").await.unwrap();
        // The handler says when the request is complete and it holds.
        hold.holding.notified().await;
        let mut late = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_by_host(&mut late).await);
        assert_eq!(listener.stats().refused, 1);
        hold.release.notify_one();
        let mut out = [0u8; 3];
        serving.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"ok\n");
    }

    #[tokio::test]
    async fn a_dripping_connection_is_cut_at_the_total_deadline() {
        let limits = LimitsConfig {
            request_deadline: Duration::from_secs(1),
            ..LimitsConfig::default()
        };
        let (addr, listener, _stop) = start(limits, Arc::default()).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        // 100 bytes at one per 100 ms would take 10 s; each byte comes well within any
        // per-read timeout.
        let mut cut = false;
        for _ in 0..100 {
            if c.write_all(b"h").await.is_err() {
                cut = true;
                break;
            }
            let mut b = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(100), c.read(&mut b)).await {
                Ok(Ok(0) | Err(_)) => {
                    cut = true;
                    break;
                }
                Ok(Ok(_)) => panic!("answered an incomplete request"),
                Err(_) => {}
            }
        }
        assert!(cut, "the drip outlived its deadline");
        while listener.stats().timed_out == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(listener.stats().open, 0);
        // The listener still serves.
        assert_eq!(hello(addr).await, "ok\n");
    }
}

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

//! `punktfunk serve`'s punktfunk/1 listener (act): the host identity and paired list from the
//! state directory, a UDP socket, and a [`HostDriver`] on its own thread.
//!
//! It logs the PIN a pairing client must type, persists newly paired clients to
//! `pf1-clients.json`, enforces `--require-pairing`, answers Hello with the profile's
//! parameters, and hands every started session to [`Pf1Media`], which streams to it (engine
//! pipeline, GF(2^16) FEC, AES-GCM data plane) and rebuilds source and encoder on Reconfigure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread::JoinHandle;

use super::host::{HostConfig, HostEvent, HostSession, SessionOffer};
use super::media::{MediaOptions, Pf1Media};
use super::net::{HostCommand, HostDriver, HostHandle, NetError};
use super::tls::Fingerprint;
use super::trust::{self, Role};
use super::{Codec, FecScheme, GoodbyeReason, Pin};
use crate::host::state::{StateDir, StateError, os_random};

/// Payload bytes per FEC shard offered to clients: fits a 1500-byte MTU with IP, UDP and the
/// data-plane header and tag.
pub const SHARD_PAYLOAD: u16 = 1344;

/// How `serve` runs punktfunk/1.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// UDP port of the control plane (default [`super::DEFAULT_PORT`]).
    pub port: u16,
    /// Address to bind (default: all interfaces, IPv6 and IPv4).
    pub bind: Option<IpAddr>,
    /// Refuse unpaired clients.
    pub require_pairing: bool,
    /// The data-plane UDP port announced in Welcome (default: control port + 1).
    pub data_port: u16,
    /// Parity percentage announced in Welcome (the profile's FEC percentage).
    pub parity_percent: u8,
    /// The codec the host prefers, if the client decodes it (else H.264).
    pub codec: Codec,
    /// Media settings (socket binding, send path, bitrate).
    pub media: MediaOptions,
}

impl ListenerOptions {
    /// Defaults for `port`: data port `port + 1`, 20 % parity, H.264, pairing optional.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            bind: None,
            require_pairing: false,
            data_port: port.wrapping_add(1).max(1),
            parity_percent: 20,
            codec: Codec::H264,
            media: MediaOptions::default(),
        }
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerError {
    /// The state directory (identity, paired list).
    #[error(transparent)]
    State(#[from] StateError),
    /// The UDP socket.
    #[error("punktfunk/1: cannot listen on UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The session or driver.
    #[error("punktfunk/1: {0}")]
    Net(#[from] NetError),
    /// The thread.
    #[error("punktfunk/1: cannot start the listener thread: {0}")]
    Thread(std::io::Error),
}

/// A running punktfunk/1 listener.
#[derive(Debug)]
pub struct Listener {
    handle: HostHandle,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
    fingerprint: Fingerprint,
}

fn bind(opts: &ListenerOptions) -> Result<UdpSocket, ListenerError> {
    let candidates: Vec<IpAddr> = match opts.bind {
        Some(ip) => vec![ip],
        None => vec![
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ],
    };
    let mut last = None;
    for ip in candidates {
        let addr = SocketAddr::new(ip, opts.port);
        match UdpSocket::bind(addr) {
            Ok(s) => return Ok(s),
            Err(source) => last = Some(ListenerError::Bind { addr, source }),
        }
    }
    Err(last.unwrap_or(ListenerError::Bind {
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, opts.port)),
        source: std::io::Error::other("no address to bind"),
    }))
}

/// What the listener does with each event (see the module docs).
fn on_event(
    state: &StateDir,
    opts: &ListenerOptions,
    media: &mut Pf1Media,
    s: &mut HostSession,
    ev: HostEvent,
) {
    let now = std::time::Instant::now();
    match ev {
        HostEvent::Connected {
            conn,
            peer,
            fingerprint,
        } => {
            tracing::debug!(%conn, %peer, client = %fingerprint.short(), "punktfunk/1 connection");
        }
        HostEvent::PairingPin {
            conn,
            pin,
            client_name,
            fingerprint,
        } => {
            tracing::info!(
                %conn,
                client = %client_name,
                fingerprint = %fingerprint.short(),
                "punktfunk/1 pairing request: type PIN {} into the client",
                pin.as_str()
            );
        }
        HostEvent::PairingResult {
            conn,
            fingerprint,
            client_name,
            ok,
        } => {
            if !ok {
                tracing::warn!(%conn, client = %client_name, "punktfunk/1 pairing failed (wrong PIN?)");
                return;
            }
            let saved = trust::load_paired_clients(state).and_then(|mut list| {
                list.add(fingerprint, &client_name, trust::unix_now());
                trust::save_paired_clients(state, &list)
            });
            match saved {
                Ok(()) => {
                    tracing::info!(%conn, client = %client_name, fingerprint = %fingerprint.short(), "punktfunk/1 client paired");
                }
                Err(e) => {
                    // Not durable: do not let it stream as paired.
                    tracing::error!(error = %e, "punktfunk/1: cannot save the paired client");
                    s.untrust(&fingerprint);
                    let _ = s.goodbye(
                        now,
                        conn,
                        GoodbyeReason::Internal,
                        "the host could not save the pairing",
                    );
                }
            }
        }
        HostEvent::HelloReceived {
            conn,
            hello,
            fingerprint,
            paired,
        } => {
            let codec = if hello.codecs.contains(opts.codec) {
                opts.codec
            } else if hello.codecs.contains(Codec::H264) {
                Codec::H264
            } else {
                let _ = s.refuse(now, conn, GoodbyeReason::Refused, "no codec in common");
                return;
            };
            let offer = SessionOffer {
                codec,
                fec: FecScheme::Gf16Leopard,
                parity_percent: opts.parity_percent,
                shard_payload: SHARD_PAYLOAD,
                data_port: opts.data_port,
                mode: hello.requested,
            };
            match s.accept(now, conn, offer) {
                Ok(session) => tracing::info!(
                    %conn,
                    client = %hello.client_name,
                    fingerprint = %fingerprint.short(),
                    paired,
                    mode = %hello.requested,
                    session,
                    "punktfunk/1 session offered"
                ),
                Err(e) => tracing::warn!(%conn, error = %e, "punktfunk/1: cannot accept"),
            }
        }
        HostEvent::Started { conn, params } => {
            if let Err(e) = media.start(conn, &params) {
                tracing::error!(%conn, error = %e, "punktfunk/1: cannot start the stream");
                let _ = s.goodbye(
                    now,
                    conn,
                    GoodbyeReason::Internal,
                    "the host could not start the stream",
                );
            }
        }
        HostEvent::ReconfigureRequested { conn, mode } => {
            // With a stream, Reconfigured goes out with the new mode's first frame.
            if !media.reconfigure(conn, mode)
                && let Err(e) = s.reconfigured(conn, mode, 0)
            {
                tracing::warn!(%conn, error = %e, "punktfunk/1: cannot reconfigure");
            }
        }
        HostEvent::IdrRequested { conn } => media.request_idr(conn),
        HostEvent::LossReport { conn, report } => media.loss_report(conn, &report),
        HostEvent::Stats { conn, stats } => tracing::debug!(%conn, ?stats, "punktfunk/1 stats"),
        HostEvent::Input { event, .. } => media.input(&event),
        HostEvent::KeyUpdated {
            conn,
            generation,
            key_material,
        } => media.key_updated(conn, generation, &key_material),
        HostEvent::Closed { conn, closed } => {
            media.stop(conn);
            tracing::info!(%conn, %closed, "punktfunk/1 connection closed");
        }
    }
}

impl Listener {
    /// Loads the pf1 identity and paired clients from `state`, binds the UDP port and starts
    /// the driver thread.
    pub fn start(state: &StateDir, opts: ListenerOptions) -> Result<Self, ListenerError> {
        let identity = trust::load_or_create_identity(state, Role::Host)?;
        let paired = trust::load_paired_clients(state)?.fingerprints();
        let fingerprint = identity.fingerprint();
        let mut config = HostConfig::new(identity, os_random::<32>()?);
        config.require_pairing = opts.require_pairing;
        let session = HostSession::new(config, paired).map_err(NetError::from)?;
        let socket = bind(&opts)?;
        let addr = socket.local_addr().map_err(|source| ListenerError::Bind {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, opts.port)),
            source,
        })?;
        let (driver, handle) = HostDriver::new(socket, session)?;
        let state = state.clone();
        let media_handle = handle.clone();
        let thread = std::thread::Builder::new()
            .name("punktfunk-pf1".into())
            .spawn(move || {
                let mut media = Pf1Media::new(
                    opts.media.clone(),
                    media_handle,
                    crate::input::open_default(),
                );
                if let Err(e) = driver.run(|s, ev| on_event(&state, &opts, &mut media, s, ev)) {
                    tracing::error!(error = %e, "punktfunk/1 listener stopped");
                }
            })
            .map_err(ListenerError::Thread)?;
        tracing::info!(%addr, fingerprint = %fingerprint, "punktfunk/1 listening");
        Ok(Self {
            handle,
            thread: Some(thread),
            addr,
            fingerprint,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host certificate's fingerprint (what clients pin).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A handle for other parts of the host (the management API arming a PIN, unpairing).
    pub fn handle(&self) -> HostHandle {
        self.handle.clone()
    }

    /// Arms `pin` for the next pairing client.
    pub fn arm_pin(&self, pin: Pin) {
        self.handle.send(HostCommand::ArmPin(pin));
    }

    /// Says Goodbye to every client and waits for the thread (a few seconds at most).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.send(HostCommand::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

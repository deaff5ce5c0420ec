//! `punktfunk serve`: opens the state directory, then runs nvhttp (HTTP + HTTPS), the
//! management API and mDNS until Ctrl-C or SIGTERM.
//!
//! ```text
//! Host::open(ServeOptions)          state dir (locked), identity, uniqueid, clients,
//!                                   settings.json, tuning profile, ports
//!   │  host.ports(), host.tuning(), host.settings().apps, host.identity()
//!   │        └──► the streaming side builds its SessionManager from these
//!   ▼                (RTSP listener on ports().rtsp(), video/audio/control ports)
//! host.run(sessions, shutdown)      binds base, base-5, management; mDNS; serves until
//!                                   shutdown resolves; removes run.json
//! ```
//!
//! The seam for RTSP/streaming is the [`SessionManager`] passed to [`Host::run`]:
//! [`run_blocking`] passes [`StreamingSessions`], which admits launches and drives the
//! streaming side (RTSP listener, control, video and audio), started from the same [`Host`]
//! before `run`. Tests pass `InMemorySessions` (books only, no media).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gamestream::identity::HostIdentity;
use crate::gamestream::nvhttp::HostInfo;
use crate::gamestream::pairing::{Pairing, PairingConfig};
use crate::gamestream::ports::{DEFAULT_BASE_PORT, PortRangeError, Ports};
use crate::gamestream::session::SessionManager;
use crate::input::InputDispatcher;
use crate::media::encoders::EncoderTable;
use crate::pf1::listener::{Listener, ListenerOptions};
use crate::stream::session::{InputHandler, StreamEndpoints, StreamHost, StreamOptions};

use super::sessions::StreamingSessions;

use super::api::{self, Api};
use super::mdns;
use super::nvhttp::{self, NvHttp};
use super::state::{Runtime, Settings, StateDir, StateError, StateLock, os_random};
use super::store::ClientStore;
use super::tls;

/// What `punktfunk serve` was asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// `--state-dir` (default [`StateDir::default_path`]).
    pub state_dir: Option<PathBuf>,
    /// `--profile`: a tuning profile (default: built-in defaults).
    pub profile: Option<PathBuf>,
    /// `--base-port` (default settings.json, else 47989).
    pub base_port: Option<u16>,
    /// `--api`: management API address (default settings.json, else 127.0.0.1:base+1).
    pub management_addr: Option<SocketAddr>,
    /// `--bind`: address for nvhttp (default all interfaces, IPv6 and IPv4).
    pub bind: Option<IpAddr>,
    /// `--no-mdns` turns this off.
    pub mdns: bool,
    /// `--pf1-port`: UDP port of the punktfunk/1 listener; `None` (`--no-pf1`): no listener.
    pub pf1_port: Option<u16>,
    /// `--allow-unpaired`: punktfunk/1 streams to clients that are not paired too (labs
    /// only; logged as a warning). Default: pairing required.
    pub allow_unpaired: bool,
}

/// Why the host could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// The tuning profile.
    #[error(transparent)]
    Profile(#[from] punktfunk_tuning::TuningError),
    /// The base port.
    #[error(transparent)]
    Ports(#[from] PortRangeError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    /// The profile's `[capture] source` cannot be used on this machine.
    #[error("{0}")]
    Capture(String),
    /// The punktfunk/1 listener could not start.
    #[error(transparent)]
    Pf1(#[from] crate::pf1::listener::ListenerError),
}

/// A host, opened and ready to run.
pub struct Host {
    state: StateDir,
    _lock: StateLock,
    identity: Arc<HostIdentity>,
    info: HostInfo,
    settings: Settings,
    tuning: punktfunk_tuning::Settings,
    clients: Arc<ClientStore>,
    token: String,
    management_addr: SocketAddr,
    bind: Option<IpAddr>,
    mdns: bool,
    pin_timeout: Duration,
    pf1: Option<crate::pf1::net::HostHandle>,
    listeners: Arc<crate::limits::ListenerRegistry>,
    encoders: EncoderTable,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("state", &self.state)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The system's host name (`/proc/sys/kernel/hostname`), or "punktfunk".
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "punktfunk".into())
}

impl Host {
    /// Opens the state directory (locking it), loads or creates the identity, `uniqueid`,
    /// clients and API token, and reads settings and the profile.
    pub fn open(opts: ServeOptions) -> Result<Self, ServeError> {
        let root = match opts.state_dir {
            Some(p) => p,
            None => StateDir::default_path()?,
        };
        let state = StateDir::open(root)?;
        let lock = state.lock()?;
        let settings = state.load_settings()?;
        let tuning = match &opts.profile {
            Some(p) => punktfunk_tuning::load(p)?.settings,
            None => punktfunk_tuning::Settings::default(),
        };
        let ports = Ports::new(
            opts.base_port
                .or(settings.base_port)
                .unwrap_or(DEFAULT_BASE_PORT),
        )?;
        // What this host encodes, from `[video] *_encoder` and this build's libavcodec:
        // advertised exactly (ServerCodecModeSupport, DESCRIBE markers).
        let encoders = EncoderTable::probe(&tuning.encoders).map_err(ServeError::Capture)?;
        let clients = state.load_clients()?;
        let identity = Arc::new(state.load_or_create_identity()?);
        let uniqueid = state.load_or_create_uniqueid()?;
        let token = state.load_or_create_api_token()?;
        // Validated by load_settings.
        let apps = settings
            .app_list()
            .unwrap_or_else(|_| vec![crate::gamestream::nvhttp::desktop()]);
        let info = HostInfo {
            hostname: settings.hostname.clone().unwrap_or_else(system_hostname),
            uniqueid,
            ports,
            codec_modes: encoders.codec_modes(),
            apps,
        };
        let management_addr = opts
            .management_addr
            .or(settings.management_addr)
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, ports.management())));
        let pin_timeout = Duration::from_secs(settings.pin_timeout_secs.unwrap_or(120).max(1));
        Ok(Self {
            clients: Arc::new(ClientStore::new(state.clone(), clients)),
            state,
            _lock: lock,
            identity,
            info,
            settings,
            tuning,
            token,
            management_addr,
            bind: opts.bind,
            mdns: opts.mdns,
            pin_timeout,
            pf1: None,
            listeners: Arc::default(),
            encoders,
        })
    }

    /// The ports.
    pub fn ports(&self) -> Ports {
        self.info.ports
    }

    /// What `/serverinfo` and `/applist` say.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }

    /// `settings.json` (apps with their commands).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The resolved tuning profile, for the engine.
    pub fn tuning(&self) -> &punktfunk_tuning::Settings {
        &self.tuning
    }

    /// The host identity.
    pub fn identity(&self) -> &Arc<HostIdentity> {
        &self.identity
    }

    /// The state directory.
    pub fn state_dir(&self) -> &StateDir {
        &self.state
    }

    /// The paired clients.
    pub fn clients(&self) -> &Arc<ClientStore> {
        &self.clients
    }

    /// Connects the management API's `/api/pf1/pin` to a running punktfunk/1 listener.
    pub fn set_pf1(&mut self, handle: crate::pf1::net::HostHandle) {
        self.pf1 = Some(handle);
    }

    /// The connection counters of every TCP listener, shown by `/api/status`; the RTSP
    /// listener is added here by whoever starts the streaming side.
    pub fn listeners(&self) -> &Arc<crate::limits::ListenerRegistry> {
        &self.listeners
    }

    async fn bind(&self, port: u16) -> Result<TcpListener, ServeError> {
        let candidates: Vec<IpAddr> = match self.bind {
            Some(ip) => vec![ip],
            // Dual-stack first; fall back to IPv4 where IPv6 is off.
            None => vec![
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ],
        };
        let mut last = None;
        for ip in candidates {
            let addr = SocketAddr::new(ip, port);
            match TcpListener::bind(addr).await {
                Ok(l) => return Ok(l),
                Err(source) => last = Some(ServeError::Bind { addr, source }),
            }
        }
        Err(last.unwrap_or(ServeError::Bind {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            source: std::io::Error::other("no address to bind"),
        }))
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(
        self,
        sessions: Arc<dyn SessionManager>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let ports = self.ports();
        let http = self.bind(ports.http()).await?;
        let https = self.bind(ports.https()).await?;
        let mgmt = TcpListener::bind(self.management_addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: self.management_addr,
                source,
            })?;
        let management_addr = mgmt.local_addr().unwrap_or(self.management_addr);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&self.identity)?);

        let pairing = Pairing::new(
            Arc::clone(&self.identity),
            PairingConfig {
                pin_timeout: self.pin_timeout,
                window_lifetime: self.pin_timeout,
                ..PairingConfig::default()
            },
            os_random::<32>()?,
        );
        let ctx = Arc::new(
            NvHttp::new(
                self.info.clone(),
                Arc::clone(&self.identity),
                pairing,
                Arc::clone(&self.clients),
                sessions,
                self.pin_timeout,
            )
            .with_listeners(Arc::clone(&self.listeners)),
        );
        let api =
            Arc::new(Api::new(Arc::clone(&ctx), self.token.clone()).with_pf1(self.pf1.clone()));

        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = [
            tokio::spawn(nvhttp::serve(Arc::clone(&ctx), http, None, stop_rx.clone())),
            tokio::spawn(nvhttp::serve(
                Arc::clone(&ctx),
                https,
                Some(acceptor),
                stop_rx.clone(),
            )),
            tokio::spawn(api::serve(api, mgmt, stop_rx)),
        ];

        self.state.write_runtime(&Runtime {
            pid: std::process::id(),
            management_addr,
            http_port: ports.http(),
            https_port: ports.https(),
        })?;

        let advert = if self.mdns {
            match mdns::advertise(&self.info.hostname, ports.http()) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS advertisement failed; add this host in Moonlight by address");
                    None
                }
            }
        } else {
            None
        };

        tracing::info!(
            hostname = %self.info.hostname,
            uniqueid = %self.info.uniqueid,
            http = ports.http(),
            https = ports.https(),
            rtsp = ports.rtsp(),
            api = %management_addr,
            paired_clients = self.clients.list().len(),
            state_dir = %self.state.path().display(),
            "punktfunk host ready"
        );

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        drop(advert);
        for t in tasks {
            let _ = t.await;
        }
        self.state.remove_runtime();
        Ok(())
    }
}

async fn ctrl_c_or_term() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Whether a socket bound to `::` takes IPv4 clients too; why not otherwise.
fn dual_stack() -> Result<(), String> {
    std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
        .map_err(|e| format!("no IPv6 socket: {e}"))?;
    match std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only") {
        Ok(v) if v.trim() == "1" => {
            Err("net.ipv6.bindv6only = 1 makes `::` sockets IPv6-only".into())
        }
        _ => Ok(()),
    }
}

/// `punktfunk serve`: opens the host, starts the streaming side (RTSP listener; control,
/// video and audio per stream) and runs nvhttp, the management API and mDNS until Ctrl-C or
/// SIGTERM.
pub fn run_blocking(opts: ServeOptions) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("punktfunk-host")
        .build()
        .map_err(ServeError::Runtime)?;
    // Streaming sockets (RTSP, video, audio, control) follow --bind, IPv4 or IPv6. Without it
    // they are dual-stack (`::`: IPv4 clients arrive as v4-mapped addresses) where the kernel
    // has IPv6 and does not make `::` sockets IPv6-only; otherwise all IPv4 interfaces.
    let stream_bind = match opts.bind {
        Some(ip) => ip,
        None => match dual_stack() {
            Ok(()) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            Err(why) => {
                tracing::info!(why = %why, "streaming sockets on IPv4 only");
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        },
    };
    tracing::info!(bind = %stream_bind, "streaming sockets");
    let pf1 = opts.pf1_port.map(|port| {
        let mut o = ListenerOptions::new(port);
        o.bind = opts.bind;
        o.allow_unpaired = opts.allow_unpaired;
        o
    });
    runtime.block_on(async {
        let mut host = Host::open(opts)?;
        tracing::info!(encoders = %host.encoders.describe(), "video encoders");
        if !crate::media::encoders::install(host.encoders.clone()) {
            tracing::warn!("video encoder table was set before serve; keeping that one");
        }
        // One source for both protocols: each session of either gets its own picture from it.
        let media = crate::media::select(
            host.tuning().source,
            host.tuning().pipewire_node.as_deref(),
            host.tuning().pattern_noise,
        )
        .map_err(ServeError::Capture)?;
        tracing::info!(source = ?media.choice, why = %media.why, "capture source");
        // punktfunk/1 runs on its own thread with blocking UDP (pf1::net).
        let pf1 = match pf1 {
            Some(mut o) => {
                o.apply_profile(host.tuning().session_profile());
                o.max_sessions = host.tuning().sessions.max;
                // punktfunk/1 streams H.264 (the encoder table's), whatever the profile prefers.
                o.codec = crate::pf1::Codec::H264;
                o.media = crate::pf1::media::MediaOptions {
                    bind: stream_bind,
                    bitrate_kbps: host.tuning().video.bitrate_kbps,
                    source: Arc::clone(&media.factory),
                    ..o.media
                };
                let l = Listener::start(host.state_dir(), o)?;
                host.set_pf1(l.handle());
                Some(l)
            }
            None => None,
        };
        let ports = host.ports();
        let endpoints = StreamEndpoints {
            bind: stream_bind,
            rtsp: ports.rtsp(),
            video: ports.video(),
            control: ports.control(),
            audio: ports.audio(),
        };
        let mut options = StreamOptions {
            profile: host.tuning().session_profile(),
            ..StreamOptions::default()
        };
        options.offer.hevc = host.encoders.hevc.is_some();
        options.offer.av1 = host.encoders.av1.is_some();
        let require_encryption = host.tuning().sessions.require_encryption;
        if require_encryption {
            // DESCRIBE asks for all three; ANNOUNCE refuses a client that did not turn them on.
            options.offer.encryption_requested = options.offer.encryption_supported;
        }
        tracing::info!(
            required = require_encryption,
            "gamestream encryption: RTSP for clients with corever >= 1, control, video, audio"
        );
        let input: Arc<std::sync::Mutex<dyn InputHandler>> = Arc::new(std::sync::Mutex::new(
            InputDispatcher::new(crate::input::open_default()),
        ));
        let streaming =
            StreamHost::start(endpoints, options, media.factory, input).map_err(|e| {
                ServeError::Bind {
                    addr: SocketAddr::new(stream_bind, ports.rtsp()),
                    source: e,
                }
            })?;
        host.listeners().add(streaming.rtsp_listener());
        // Validated when the settings were loaded.
        let commands = host.settings().app_commands().unwrap_or_default();
        let sessions = Arc::new(
            StreamingSessions::new(streaming, host.tuning().sessions.max)
                .with_app_commands(commands)
                .with_required_encryption(require_encryption),
        );
        let manager: Arc<dyn SessionManager> = sessions.clone();
        let result = host.run(manager, ctrl_c_or_term()).await;
        // Tell a connected client the app ended before the process goes away.
        if let Ok(s) = Arc::try_unwrap(sessions) {
            s.into_stream_host().shutdown();
        }
        if let Some(l) = pf1 {
            l.shutdown();
        }
        result
    })
}

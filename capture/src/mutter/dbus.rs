//! The D-Bus side of the Mutter back end (act): one session-bus connection, the RemoteDesktop
//! and ScreenCast session calls, the wait for the stream's PipeWire node, the input calls.
//!
//! Order (mutter 43): `RemoteDesktop.CreateSession` → session path; its `SessionId` property;
//! `ScreenCast.CreateSession({"remote-desktop-session-id": id})`; `RecordVirtual(options)` on
//! that session → stream path; subscribe to the stream's `PipeWireStreamAdded(u node_id)`;
//! `RemoteDesktop.Session.Start()`, which starts the linked screencast too (we never call the
//! ScreenCast session's own `Start`); the signal brings the node id. Seen on mutter 43.8: the
//! node arrives within milliseconds of `Start`.
//!
//! Mutter watches the D-Bus peer that created a session and closes the session when that peer
//! leaves the bus (`meta-dbus-session-watcher.c`), so the connection must live as long as the
//! session: [`Bus`] is kept by the display and by every input handle.

use std::collections::HashMap;
use std::time::Duration;

use futures_lite::StreamExt as _;
use zbus::zvariant::{OwnedObjectPath, Value};

use super::MutterError;
use super::plan::{self, InputCall, OptionValue, VirtualOptions};

const SCREEN_CAST: &str = "org.gnome.Mutter.ScreenCast";
const SCREEN_CAST_PATH: &str = "/org/gnome/Mutter/ScreenCast";
const SCREEN_CAST_SESSION: &str = "org.gnome.Mutter.ScreenCast.Session";
const SCREEN_CAST_STREAM: &str = "org.gnome.Mutter.ScreenCast.Stream";
const REMOTE_DESKTOP: &str = "org.gnome.Mutter.RemoteDesktop";
const REMOTE_DESKTOP_PATH: &str = "/org/gnome/Mutter/RemoteDesktop";
const REMOTE_DESKTOP_SESSION: &str = "org.gnome.Mutter.RemoteDesktop.Session";

/// A connection to the session bus (where Mutter's services live). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    conn: zbus::blocking::Connection,
    timeout: Duration,
}

fn dbus(what: &'static str) -> impl FnOnce(zbus::Error) -> MutterError {
    move |e| match e {
        zbus::Error::MethodError(name, text, _) => MutterError::Refused {
            call: what,
            name: name.to_string(),
            reason: text.unwrap_or_default(),
        },
        other => MutterError::Bus {
            what,
            error: other.to_string(),
        },
    }
}

impl Bus {
    /// Connects to `address` (a D-Bus address such as `unix:path=/run/user/1000/bus`), or to
    /// the session bus of `$DBUS_SESSION_BUS_ADDRESS` when `None`. Every method call waits at
    /// most `timeout`.
    pub fn connect(address: Option<&str>, timeout: Duration) -> Result<Self, MutterError> {
        let builder = match address {
            Some(address) => zbus::blocking::connection::Builder::address(address),
            None => zbus::blocking::connection::Builder::session(),
        }
        .map_err(dbus("session bus address"))?;
        let conn = builder
            .method_timeout(timeout)
            .build()
            .map_err(dbus("connect to the session bus"))?;
        Ok(Self { conn, timeout })
    }

    /// The deadline of every call and wait on this connection.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether Mutter's ScreenCast service has an owner on this bus (`NameHasOwner`).
    pub fn has_screen_cast(&self) -> Result<bool, MutterError> {
        let proxy = zbus::blocking::fdo::DBusProxy::new(&self.conn).map_err(dbus("DBus proxy"))?;
        let name =
            zbus::names::BusName::try_from(SCREEN_CAST).map_err(|e| dbus("bus name")(e.into()))?;
        proxy
            .name_has_owner(name)
            .map_err(|e| dbus("NameHasOwner")(e.into()))
    }

    fn proxy<'a>(
        &'a self,
        destination: &'static str,
        path: &'a str,
        interface: &'static str,
    ) -> Result<zbus::blocking::Proxy<'a>, MutterError> {
        zbus::blocking::Proxy::new(&self.conn, destination, path, interface).map_err(dbus("proxy"))
    }

    /// The `Version` property of `org.gnome.Mutter.ScreenCast`.
    pub fn screen_cast_version(&self) -> Result<i32, MutterError> {
        self.proxy(SCREEN_CAST, SCREEN_CAST_PATH, SCREEN_CAST)?
            .get_property::<i32>("Version")
            .map_err(dbus("ScreenCast.Version"))
    }

    /// Creates a RemoteDesktop session with a linked ScreenCast session and one virtual
    /// monitor stream, starts it and waits (up to the bus timeout) for the stream's node.
    pub(super) fn open_virtual(&self, options: VirtualOptions) -> Result<Session, MutterError> {
        let rd: OwnedObjectPath = self
            .proxy(REMOTE_DESKTOP, REMOTE_DESKTOP_PATH, REMOTE_DESKTOP)?
            .call("CreateSession", &())
            .map_err(dbus("RemoteDesktop.CreateSession"))?;
        // From here on a failure stops the session (it would otherwise live until we leave
        // the bus).
        let mut session = Session {
            bus: self.clone(),
            remote_desktop: rd.to_string(),
            stream: String::new(),
            node_id: 0,
            stopped: false,
        };
        let id: String = self
            .proxy(
                REMOTE_DESKTOP,
                &session.remote_desktop,
                REMOTE_DESKTOP_SESSION,
            )?
            .get_property("SessionId")
            .map_err(dbus("RemoteDesktop.Session.SessionId"))?;
        let sc: OwnedObjectPath = self
            .proxy(SCREEN_CAST, SCREEN_CAST_PATH, SCREEN_CAST)?
            .call(
                "CreateSession",
                &(dict(&plan::screencast_session_options(&id)),),
            )
            .map_err(dbus("ScreenCast.CreateSession"))?;
        let stream: OwnedObjectPath = self
            .proxy(SCREEN_CAST, sc.as_str(), SCREEN_CAST_SESSION)?
            .call(
                "RecordVirtual",
                &(dict(&plan::record_virtual_options(options)),),
            )
            .map_err(dbus("ScreenCast.Session.RecordVirtual"))?;
        session.stream = stream.to_string();
        session.node_id = self.start_and_wait_for_node(&session)?;
        Ok(session)
    }

    /// Subscribes to `PipeWireStreamAdded` on the stream, calls `Start` on the RemoteDesktop
    /// session, and waits for the signal.
    fn start_and_wait_for_node(&self, session: &Session) -> Result<u32, MutterError> {
        let conn = self.conn.inner().clone();
        let timeout = self.timeout;
        async_io::block_on(async move {
            let stream = zbus::Proxy::new(
                &conn,
                SCREEN_CAST,
                session.stream.as_str(),
                SCREEN_CAST_STREAM,
            )
            .await
            .map_err(dbus("stream proxy"))?;
            // Subscribed (match rule added) before Start: the signal cannot be missed.
            let mut added = stream
                .receive_signal("PipeWireStreamAdded")
                .await
                .map_err(dbus("subscribe PipeWireStreamAdded"))?;
            zbus::Proxy::new(
                &conn,
                REMOTE_DESKTOP,
                session.remote_desktop.as_str(),
                REMOTE_DESKTOP_SESSION,
            )
            .await
            .map_err(dbus("session proxy"))?
            .call_method("Start", &())
            .await
            .map_err(dbus("RemoteDesktop.Session.Start"))?;
            let message = futures_lite::future::or(added.next(), async {
                async_io::Timer::after(timeout).await;
                None
            })
            .await
            .ok_or(MutterError::Timeout {
                what: "PipeWireStreamAdded",
                timeout,
            })?;
            message
                .body()
                .deserialize::<u32>()
                .map_err(dbus("PipeWireStreamAdded arguments"))
        })
    }

    /// Sends one input call on the RemoteDesktop session `session` about stream `stream`.
    /// `reply`: wait for Mutter's answer (a refusal becomes [`MutterError::Refused`]); else the
    /// call carries `NO_REPLY_EXPECTED` and returns once it is queued on the connection (D-Bus
    /// keeps the order of one connection's messages to one peer, so calls still arrive in
    /// order; Mutter's errors are then not seen).
    pub(super) fn notify(
        &self,
        session: &str,
        stream: &str,
        call: InputCall,
        reply: bool,
    ) -> Result<(), MutterError> {
        let proxy = self.proxy(REMOTE_DESKTOP, session, REMOTE_DESKTOP_SESSION)?;
        let method = call.method();
        let sent = match call {
            InputCall::Keycode { code, pressed } => send(&proxy, method, &(code, pressed), reply),
            InputCall::Button { code, pressed } => send(&proxy, method, &(code, pressed), reply),
            InputCall::MotionAbsolute { x, y } => send(&proxy, method, &(stream, x, y), reply),
            InputCall::MotionRelative { dx, dy } => send(&proxy, method, &(dx, dy), reply),
            InputCall::Axis { dx, dy, flags } => send(&proxy, method, &(dx, dy, flags), reply),
            InputCall::AxisDiscrete { axis, steps } => {
                send(&proxy, method, &(axis.as_u32(), steps), reply)
            }
            InputCall::TouchDown { slot, x, y } | InputCall::TouchMotion { slot, x, y } => {
                send(&proxy, method, &(stream, slot, x, y), reply)
            }
            InputCall::TouchUp { slot } => send(&proxy, method, &(slot,), reply),
        };
        sent.map_err(dbus(method))
    }
}

/// One method call, waiting for the reply or not.
fn send<B>(
    proxy: &zbus::blocking::Proxy<'_>,
    method: &'static str,
    body: &B,
    reply: bool,
) -> zbus::Result<()>
where
    B: zbus::export::serde::ser::Serialize + zbus::zvariant::DynamicType,
{
    if reply {
        proxy.call_method(method, body).map(drop)
    } else {
        proxy.call_noreply(method, body)
    }
}

/// `a{sv}` from the option list.
fn dict<'a>(options: &'a [(&'static str, OptionValue)]) -> HashMap<&'static str, Value<'a>> {
    options
        .iter()
        .map(|(key, value)| {
            let value = match value {
                OptionValue::U32(v) => Value::from(*v),
                OptionValue::Bool(v) => Value::from(*v),
                OptionValue::Str(v) => Value::from(v.as_str()),
            };
            (*key, value)
        })
        .collect()
}

/// A started RemoteDesktop session with its virtual monitor stream; stopped on drop.
#[derive(Debug)]
pub(super) struct Session {
    bus: Bus,
    /// RemoteDesktop session object path.
    pub(super) remote_desktop: String,
    /// ScreenCast stream object path (the `stream` argument of absolute motion and touch).
    pub(super) stream: String,
    /// The stream's PipeWire node id.
    pub(super) node_id: u32,
    stopped: bool,
}

impl Session {
    /// `RemoteDesktop.Session.Stop()`: ends the screencast too (the virtual monitor goes).
    /// Stopping twice is not an error.
    pub(super) fn stop(&mut self) -> Result<(), MutterError> {
        if std::mem::replace(&mut self.stopped, true) {
            return Ok(());
        }
        self.bus
            .proxy(REMOTE_DESKTOP, &self.remote_desktop, REMOTE_DESKTOP_SESSION)?
            .call_method("Stop", &())
            .map(drop)
            .map_err(dbus("RemoteDesktop.Session.Stop"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(%e, session = %self.remote_desktop, "mutter: stopping the session");
        }
    }
}

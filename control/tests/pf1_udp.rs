//! punktfunk/1 over real UDP sockets on loopback: the blocking drivers (`pf1::net`) with the
//! host's default policy thread and a client, pairing with an armed PIN, a session, a
//! renegotiation, input, and shutdown.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::Duration;

use punktfunk_control::input::wire::InputEvent;
use punktfunk_control::pf1::net::{ClientCommand, ClientDriver, HostCommand, HostDriver};
use punktfunk_control::pf1::{
    ClientConfig, ClientEvent, Codec, FecScheme, GoodbyeReason, HostConfig, HostEvent, HostSession,
    Identity, Mode, Pin, SessionOffer,
};

#[test]
fn pair_stream_reconfigure_and_shut_down_over_loopback() {
    let host_id = Identity::generate("udp host").unwrap();
    let client_id = Identity::generate("udp client").unwrap();
    let mut hc = HostConfig::new(host_id.clone(), [1; 32]);
    hc.require_pairing = true;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let (driver, host) = HostDriver::new(socket, HostSession::new(hc, []).unwrap()).unwrap();
    host.send(HostCommand::ArmPin(Pin::parse("246810").unwrap()));
    let (htx, hrx) = mpsc::channel();
    let host_thread = std::thread::spawn(move || {
        driver
            .run(|s, ev| {
                let now = std::time::Instant::now();
                match &ev {
                    HostEvent::HelloReceived { conn, hello, .. } => {
                        s.accept(
                            now,
                            *conn,
                            SessionOffer {
                                codec: Codec::H264,
                                fec: FecScheme::Gf16Leopard,
                                parity_percent: 10,
                                shard_payload: 1200,
                                data_port: 47901,
                                mode: hello.requested,
                            },
                        )
                        .unwrap();
                    }
                    HostEvent::ReconfigureRequested { conn, mode } => {
                        s.reconfigured(*conn, *mode, 77).unwrap();
                    }
                    _ => {}
                }
                let _ = htx.send(ev);
            })
            .unwrap()
    });

    let mut cc = ClientConfig::new(client_id.clone(), "udp", Mode::new(1280, 720, 60), [2; 32]);
    cc.pair = true;
    cc.pin = Some(Pin::parse("246810").unwrap());
    let (client, handle) = ClientDriver::connect(cc, addr).unwrap();
    let input_handle = handle.clone();
    let mut client_events = Vec::new();
    let mut key = None;
    let closed = client
        .run(|s, ev| {
            match &ev {
                ClientEvent::Welcome(_) => {
                    let p = s.start(50_000).unwrap();
                    key = Some(p.key_material);
                    s.request_reconfigure(Mode::new(1920, 1080, 120)).unwrap();
                }
                ClientEvent::Reconfigured(r) => {
                    assert_eq!(r.first_frame_id, 77);
                    // From another thread, through the handle (wakes the driver).
                    let h = input_handle.clone();
                    std::thread::spawn(move || {
                        for i in 0..10 {
                            h.send(ClientCommand::Input(InputEvent::MouseMove { dx: i, dy: 1 }));
                        }
                        std::thread::sleep(Duration::from_millis(300));
                        h.send(ClientCommand::Goodbye(GoodbyeReason::Normal, "bye".into()));
                    });
                }
                _ => {}
            }
            client_events.push(ev);
        })
        .unwrap();
    assert_eq!(closed.reason, GoodbyeReason::Normal);
    assert!(
        client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::PairingResult { ok: true })),
        "{client_events:?}"
    );
    assert!(
        client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Reconfigured(r) if r.epoch == 1))
    );

    host.send(HostCommand::Shutdown);
    let session = host_thread.join().unwrap();
    assert!(session.is_trusted(&client_id.fingerprint()));
    let host_events: Vec<HostEvent> = hrx.try_iter().collect();
    let started = host_events
        .iter()
        .find_map(|e| match e {
            HostEvent::Started { params, .. } => Some(params.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(Some(started.key_material), key);
    assert_eq!(started.client_data_port, 50_000);
    let inputs = host_events
        .iter()
        .filter(|e| matches!(e, HostEvent::Input { .. }))
        .count();
    assert_eq!(inputs, 10, "loopback loses nothing");
    assert!(host_events.iter().any(|e| matches!(
        e,
        HostEvent::Closed { closed, .. } if closed.by_peer && closed.text == "bye"
    )));
}

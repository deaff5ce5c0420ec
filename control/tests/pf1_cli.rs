//! End to end with the real binaries over real sockets: `punktfunk serve` (temporary state
//! directory, random ports on 127.0.0.1, no mDNS), the operator's `punktfunk pin --pf1`, and
//! the reference client `punktfunk client`, all as separate processes.
//!
//! It walks the punktfunk/1 pairing window as an operator and a stranger meet it: an
//! unpaired client is refused with "not paired"; asking to pair with no window open is
//! "pairing closed"; three wrong PINs close the window (the client is told so, even with the
//! right PIN afterwards); `punktfunk pin --pf1` re-arms it and the right PIN pairs and
//! streams (frames counted in `--stats-json`); `punktfunk pin --pf1 --close` closes it.
//! `GET /api/status` shows each state. The per-address backoff (1 s, 2 s, 4 s) is honoured
//! the way a client would: on "try again in N s" it waits N s and tries again.
//!
//! No timing assertions: every wait is a generous upper bound on something that normally
//! takes a fraction of it. The server is killed when the test ends, whatever happens.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use punktfunk_control::host::cli::ApiClient;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_punktfunk");

/// Longest any one command may run (a client streams 2 s; the rest is set-up).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// A fresh directory under the system temp dir, removed by [`Server`]'s drop.
fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!(
        "punktfunk-pf1-cli-{}-{nanos}-{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tcp_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn udp_free(port: u16) -> bool {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A base port whose derived GameStream ports are free, and a punktfunk/1 port whose data
/// port (next one up) is free too. `attempt` moves the search on after a failed start.
fn free_ports(attempt: u32) -> (u16, u16) {
    let start = 20_000 + (std::process::id() * 97 + attempt * 1009) % 30_000;
    let mut base = start as u16;
    loop {
        let tcp = [base - 5, base, base + 1, base + 21];
        let udp = [base + 9, base + 10, base + 11];
        if tcp.iter().all(|&p| tcp_free(p)) && udp.iter().all(|&p| udp_free(p)) {
            break;
        }
        base += 50;
        assert!(base < 60_000, "no free base port");
    }
    let mut pf1 = base + 200;
    while !(udp_free(pf1) && udp_free(pf1 + 1)) {
        pf1 += 7;
        assert!(pf1 < 64_000, "no free punktfunk/1 port");
    }
    (base, pf1)
}

/// A running `punktfunk serve`; killed (and its directories removed) on drop, also when the
/// test panics.
struct Server {
    child: Child,
    state: PathBuf,
    client_state: PathBuf,
    log: PathBuf,
    pf1_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- punktfunk serve log (last 60 lines) ---\n{tail}");
        }
        let _ = std::fs::remove_dir_all(&self.state);
        let _ = std::fs::remove_dir_all(&self.client_state);
        if let Some(parent) = self.log.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

impl Server {
    /// Starts `punktfunk serve` and waits until its management API answers; tries other
    /// ports if they were taken in the meantime.
    fn start() -> Self {
        for attempt in 0..5 {
            let (base, pf1_port) = free_ports(attempt);
            let state = temp_dir("host");
            let client_state = temp_dir("client");
            let logs = temp_dir("log");
            let log = logs.join("serve.log");
            let child = Command::new(BIN)
                .args(["serve", "--state-dir"])
                .arg(&state)
                .args(["--base-port", &base.to_string()])
                .args(["--bind", "127.0.0.1", "--no-mdns"])
                .args(["--pf1-port", &pf1_port.to_string()])
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start punktfunk serve");
            let mut server = Self {
                child,
                state,
                client_state,
                log,
                pf1_port,
            };
            if server.wait_ready() {
                return server;
            }
            eprintln!(
                "punktfunk serve did not come up on base port {base} / pf1 {pf1_port}: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        panic!("punktfunk serve did not start");
    }

    /// Whether the API answers (run.json written, TCP accepts) before the process exits or
    /// a minute passes.
    fn wait_ready(&mut self) -> bool {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(api) = ApiClient::discover(&self.state, None)
                && api.request("GET", "/api/status", None).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn status(&self) -> Value {
        let api = ApiClient::discover(&self.state, None).unwrap();
        let (_, v) = api.request("GET", "/api/status", None).unwrap();
        assert!(v["pf1"].is_object(), "no pf1 status: {v}");
        v["pf1"].clone()
    }

    /// The status once `done` holds for it: a client's last packets (its Goodbye) may reach
    /// the host just after the client process has exited. Gives up after half a minute and
    /// returns the last status (the caller's assertion then shows it).
    fn status_when(&self, done: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.status();
            if done(&st) || Instant::now() > end {
                return st;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `punktfunk pin --pf1 [extra]`; returns (succeeded, stdout + stderr).
    fn pin(&self, extra: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(BIN);
        cmd.args(["pin", "--pf1"])
            .args(extra)
            .arg("--state-dir")
            .arg(&self.state);
        run(cmd)
    }

    /// Arms the window with a PIN the host generates; returns it.
    fn arm(&self) -> String {
        let (ok, out) = self.pin(&[]);
        assert!(ok, "pin --pf1 failed: {out}");
        let pin = out
            .split_whitespace()
            .skip_while(|w| *w != "PIN")
            .nth(1)
            .unwrap_or_else(|| panic!("no PIN in: {out}"))
            .trim_end_matches(',')
            .to_owned();
        assert!(
            pin.len() >= 4 && pin.bytes().all(|b| b.is_ascii_digit()),
            "{out}"
        );
        pin
    }

    /// Runs `punktfunk client` once; returns (succeeded, stdout + stderr).
    fn client(&self, pair: Option<&str>, stats: Option<&Path>) -> (bool, String) {
        let mut cmd = Command::new(BIN);
        cmd.arg("client")
            .arg(format!("127.0.0.1:{}", self.pf1_port))
            .args(["--mode", "640x480@30", "--duration", "2", "--name", "e2e"])
            .arg("--state-dir")
            .arg(&self.client_state);
        if let Some(p) = pair {
            cmd.args(["--pair", p]);
        }
        if let Some(f) = stats {
            cmd.arg("--stats-json").arg(f);
        }
        run(cmd)
    }

    /// Like [`Server::client`], but honours the host's per-address backoff: on "try again
    /// in N s" it waits N s and tries again (a few times at most).
    fn client_after_backoff(&self, pair: Option<&str>, stats: Option<&Path>) -> (bool, String) {
        for _ in 0..6 {
            let (ok, out) = self.client(pair, stats);
            let Some(secs) = retry_after(&out) else {
                return (ok, out);
            };
            assert!(!ok, "{out}");
            std::thread::sleep(Duration::from_secs(secs) + Duration::from_millis(300));
        }
        panic!("still backing off after six tries");
    }
}

/// The wait a "try again in N s" refusal asks for.
fn retry_after(out: &str) -> Option<u64> {
    let rest = out.split("try again in ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Runs a command to its end (killing it after [`COMMAND_LIMIT`]); (succeeded, output).
fn run(mut cmd: Command) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = out_reader.join().unwrap() + &err_reader.join().unwrap();
    let Some(status) = status else {
        panic!("{cmd:?} ran past {COMMAND_LIMIT:?}: {text}");
    };
    (status.success(), text)
}

/// A PIN of the same length as `pin` that differs from it in every digit.
fn wrong(pin: &str) -> String {
    pin.bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 5) % 10))
        .collect()
}

#[test]
fn pairing_window_end_to_end_with_the_real_binaries() {
    let server = Server::start();
    let st = server.status();
    assert_eq!(st["require_pairing"], true, "{st}");
    assert_eq!(st["window"]["open"], false, "{st}");
    assert_eq!(st["window"]["closed_because"], "not_armed", "{st}");

    // An unpaired client that does not ask to pair is refused: "not paired".
    let (ok, out) = server.client(None, None);
    assert!(!ok, "{out}");
    assert!(out.contains("client is not paired"), "{out}");
    // Asking to pair with no window open: "pairing closed".
    let (ok, out) = server.client(Some("123456"), None);
    assert!(!ok, "{out}");
    assert!(out.contains("pairing closed"), "{out}");
    let st = server.status_when(|s| s["refused"]["pairing_closed"] == 1);
    assert_eq!(st["refused"]["not_paired"], 1, "{st}");
    assert_eq!(st["refused"]["pairing_closed"], 1, "{st}");

    // The operator opens the window; three wrong PINs fail and close it.
    let pin = server.arm();
    let st = server.status();
    assert_eq!(st["window"]["open"], true, "{st}");
    assert_eq!(st["window"]["failures_left"], 3, "{st}");
    assert!(st["window"]["seconds_left"].as_u64().unwrap() > 0, "{st}");
    let bad = wrong(&pin);
    for i in 1..=3u64 {
        let (ok, out) = server.client_after_backoff(Some(&bad), None);
        assert!(!ok, "wrong PIN {i} paired: {out}");
        assert!(out.contains("pairing failed"), "wrong PIN {i}: {out}");
        let st = server.status_when(|s| s["window"]["failures"] == i);
        assert_eq!(st["window"]["failures"], i, "{st}");
        assert_eq!(st["backoff_addresses"], 1, "{st}");
    }
    let st = server.status();
    assert_eq!(st["window"]["open"], false, "{st}");
    assert_eq!(st["window"]["closed_because"], "exhausted", "{st}");
    assert_eq!(st["window"]["failures_left"], 0, "{st}");
    assert_eq!(st["pairing_failures"], 3, "{st}");
    // Now even the right PIN is told the window is closed.
    let (ok, out) = server.client_after_backoff(Some(&pin), None);
    assert!(!ok, "{out}");
    assert!(out.contains("pairing closed"), "{out}");
    assert!(out.contains("too many wrong PINs"), "{out}");

    // The operator re-arms; the right PIN pairs and the stream arrives.
    let pin = server.arm();
    let stats_file = server.client_state.join("stats.json");
    let (ok, out) = server.client_after_backoff(Some(&pin), Some(&stats_file));
    assert!(ok, "{out}");
    assert!(out.contains("paired"), "{out}");
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_file).unwrap()).expect("stats JSON");
    assert!(
        stats["frames_complete"].as_u64().unwrap() > 0,
        "no frames: {stats}"
    );
    let st = server.status_when(|s| s["pairings"] == 1);
    assert_eq!(st["pairings"], 1, "{st}");
    assert_eq!(st["window"]["closed_because"], "used", "{st}");
    assert_eq!(st["backoff_addresses"], 0, "{st}");

    // Paired now: the same client streams without a PIN.
    std::fs::remove_file(&stats_file).unwrap();
    let (ok, out) = server.client(None, Some(&stats_file));
    assert!(ok, "{out}");
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_file).unwrap()).expect("stats JSON");
    assert!(
        stats["frames_complete"].as_u64().unwrap() > 0,
        "no frames: {stats}"
    );

    // While it streams, `punktfunk status` lists its session (issue 8 point 4).
    let listed = std::thread::scope(|sc| {
        let client = sc.spawn(|| server.client(None, None));
        let mut listed = String::new();
        while !client.is_finished() {
            let mut cmd = Command::new(BIN);
            cmd.arg("status").arg("--state-dir").arg(&server.state);
            let (ok, out) = run(cmd);
            // A session is listed from its first packet ("connecting") but holds a
            // streaming slot only once its stream runs: wait for both.
            if ok && out.contains("640x480@30") && out.contains("punktfunk/1 1 of 4") {
                listed = out;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (ok, out) = client.join().unwrap();
        assert!(ok, "{out}");
        listed
    });
    assert!(listed.contains("punktfunk/1 1 of 4"), "{listed}");
    let row = listed
        .lines()
        .find(|l| l.starts_with("pf1"))
        .unwrap_or_default();
    assert!(row.contains("e2e") && row.contains("h264"), "{listed}");

    // `punktfunk pin --pf1 --close` closes an open window.
    server.arm();
    assert_eq!(server.status()["window"]["open"], true);
    let (ok, out) = server.pin(&["--close"]);
    assert!(ok, "{out}");
    let st = server.status();
    assert_eq!(st["window"]["open"], false, "{st}");
    assert_eq!(st["window"]["closed_because"], "closed_by_operator", "{st}");
    let (ok, out) = server.client(Some("2468"), None);
    assert!(!ok, "{out}");
    assert!(out.contains("pairing closed by the operator"), "{out}");
}

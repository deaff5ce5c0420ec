"""punktfunk's nvhttp host against moonlight-python, a real Moonlight client library.

Pairing uses moonlight-python's own 5-stage implementation (moonlight_python/pairing.py,
ported from moonlight-qt), the PIN is entered with the real `punktfunk pin` CLI, and every
request goes over moonlight-python's HTTP/HTTPS client with its client certificate.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import time
import urllib.request
from xml.etree import ElementTree

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from moonlight_python.exceptions import (
    HttpResponseError,
    WrongPinError,
)
from moonlight_python.pairing import _aes_decrypt_ecb, _aes_encrypt_ecb, pair
from PIL import Image

from conftest import Client, Host, wait_awaiting_pin, wait_for


def pair_now(c: Client, pin: str, patience: float = 60.0) -> bytes:
    """moonlight-python's pairing, run to the end here; an address still backing off after a
    wrong PIN (status 429) waits and tries again, anything else is raised."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return pair(c.http, c.identity, pin, c.server_info(), timeout=60)
        except HttpResponseError as e:
            if e.status_code != 429 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def fingerprint(c: Client) -> str:
    cert = x509.load_pem_x509_certificate(c.identity.cert_pem)
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def waiting(host: Host) -> list:
    return host.api("GET", "/api/pairing")["waiting"]


def xml_text(xml: str, tag: str) -> str | None:
    el = ElementTree.fromstring(xml).find(f".//{tag}")
    return el.text if el is not None else None


def launch(client: Client, app_id: int = 1) -> str | None:
    key, iv = os.urandom(16), os.urandom(16)
    return client.http.launch_app(app_id, 1280, 720, 60, 10000, 1, key, iv, 196610,
                                  sops=False, local_audio=False, launch_query_params="corever=1")


def test_serverinfo_over_http(host: Host, client_factory):
    c = client_factory()
    xml = c.http.get_server_info()
    info = c.http.parse_server_info(xml)
    assert info.app_version == "7.1.431.-1"
    assert info.gfe_version == "3.23.0.74"
    assert info.https_port == host.https_port
    assert xml_text(xml, "ExternalPort") == str(host.http_port)
    assert info.state == "SUNSHINE_SERVER_FREE"
    assert info.current_game == 0
    assert info.paired is False
    # Exactly what the host's encoder table (logged at start) can encode: H.264 always,
    # HEVC / AV1 (and their 10-bit and 4:4:4 profiles) where an encoder opened.
    table = re.search(r"video encoders encoders=h264=(.*?) hevc=(.*?) av1=(.*?)\s*$",
                      re.sub(r"\x1b\[[0-9;]*m", "", host.log()), re.M)
    assert table, host.log()[-2000:]
    h264, hevc, av1 = table.group(1), table.group(2), table.group(3)

    def full(s: str) -> tuple[bool, bool]:
        """(8-bit 4:4:4, 10-bit 4:4:4) from `EncoderTable::describe`: "4:4:4" alone is every
        depth the codec has, "8-bit 4:4:4" / "10-bit 4:4:4" only that one."""
        m = re.search(r"(\d+-bit )?4:4:4", s)
        if not m:
            return False, False
        if m.group(1):
            return m.group(1) == "8-bit ", m.group(1) == "10-bit "
        return True, "10-bit" in s

    want = 0x1 | (0x40000 if full(h264)[0] else 0)
    if hevc != "off":
        f8, f10 = full(hevc)
        want |= 0x100 | (0x200 if "10-bit" in hevc else 0) | (0x80000 if f8 else 0) \
            | (0x100000 if f10 else 0)
    if av1 != "off":
        f8, f10 = full(av1)
        want |= 0x10000 | (0x20000 if "10-bit" in av1 else 0) | (0x200000 if f8 else 0) \
            | (0x400000 if f10 else 0)
    assert info.server_codec_mode_support == want, (h264, hevc, av1)
    assert len(info.unique_id) == 16
    assert info.unique_id == (host.state_dir / "uniqueid").read_text().strip()
    assert info.mac == "00:00:00:00:00:00"


def test_unpaired_identity_is_refused(host: Host, client_factory):
    c = client_factory()
    for call in (lambda: c.http.verify_response_status(c.http.open_https("serverinfo")),
                 c.http.get_app_list,
                 lambda: launch(c),
                 lambda: c.http.quit_app()):
        with pytest.raises(HttpResponseError) as e:
            call()
        assert e.value.status_code == 401
    # Over plain HTTP there is no certificate at all: launch is refused too.
    with pytest.raises(HttpResponseError) as e:
        c.http.verify_response_status(c.http.open_http("launch", "appid=1"))
    assert e.value.status_code == 401
    # The TLS layer accepted the certificate (any certificate): the refusal is the XML 401.
    assert "PairStatus" not in c.http.open_https("serverinfo")


def test_wrong_pin_is_rejected(host: Host, client_factory):
    c = client_factory()
    result = c.start_pairing("1111")
    wait_awaiting_pin(host)
    cp = host.cli("pin", "2222")
    result["thread"].join(60)
    assert isinstance(result.get("error"), WrongPinError), result
    assert cp.returncode == 1, cp
    assert "pairing failed" in cp.stdout
    assert host.api("GET", "/api/clients") == []
    assert "no paired clients" in host.cli("clients").stdout
    with pytest.raises(HttpResponseError) as e:
        c.http.get_app_list()
    assert e.value.status_code == 401
    # The PIN was typed for that client: its window closed with the pairing, and the wrong
    # PIN counted against the address.
    pairing = host.api("GET", "/api/status")["pairing"]
    assert pairing["state"] == "idle"
    assert pairing["window"]["state"] == "closed"
    assert pairing["stats"]["failed"] == 1
    # The next pairing (once the 1 s backoff is over) succeeds.
    result = c.start_pairing("3333")
    deadline = time.monotonic() + 30
    while "error" not in result and not waiting(host) and time.monotonic() < deadline:
        time.sleep(0.05)
    if isinstance(result.get("error"), HttpResponseError):
        assert result["error"].status_code == 429, result
        assert "try again in" in result["error"].status_message
        time.sleep(1.5)
        result = c.start_pairing("3333")
    wait_awaiting_pin(host)
    assert host.cli("pin", "3333").returncode == 0
    result["thread"].join(60)
    assert "cert" in result, result
    assert len(host.api("GET", "/api/clients")) == 1


def test_pin_without_a_waiting_client_arms_the_window(host: Host):
    cp = host.cli("pin", "1234")
    assert cp.returncode == 0, cp
    assert "PIN armed for the next client" in cp.stdout
    window = host.api("GET", "/api/pairing")["window"]
    assert window["state"] == "open" and window["failures_left"] == 3
    assert 0 < window["expires_in_s"] <= 120
    cp = host.cli("pin", "12a4")
    assert cp.returncode == 2 and "4 digits" in cp.stderr
    cp = host.cli("pairing", "--close")
    assert cp.returncode == 0 and "pairing window: closed" in cp.stdout


def test_wrong_pins_close_the_window_until_the_operator_rearms(host: Host, client_factory):
    """Issue 7 point 2: the operator arms a PIN; three wrong PINs (moonlight-python's own
    pairing, from one address, each after that address's backoff) close the window, after
    which phase 1 is refused with the reason; `punktfunk pin` re-arms and the right PIN pairs."""
    c = client_factory()
    assert host.cli("pin", "4321").returncode == 0
    for guess in ("0000", "1111", "2222"):
        with pytest.raises(WrongPinError):
            pair_now(c, guess)
    pairing = host.api("GET", "/api/pairing")
    assert pairing["window"]["state"] == "exhausted", pairing
    assert pairing["stats"]["failed"] == 3
    assert pairing["stats"]["windows_exhausted"] == 1
    # Closed: even the right PIN is refused now, with a reason the client shows.
    with pytest.raises(HttpResponseError) as e:
        pair_now(c, "4321")
    assert e.value.status_code == 403
    assert "too many wrong PINs" in e.value.status_message
    assert host.api("GET", "/api/pairing")["stats"]["refused_closed"] >= 1
    assert host.api("GET", "/api/clients") == []
    assert "closed after too many wrong PINs" in host.cli("pairing").stdout
    assert "pairing window closed after too many wrong PINs" in host.log()
    # The operator re-arms; the right PIN pairs.
    cp = host.cli("pin", "5678", "--name", "after the storm")
    assert cp.returncode == 0, cp
    c.http.server_cert_pem = pair_now(c, "5678")
    assert [x["name"] for x in host.api("GET", "/api/clients")] == ["after the storm"]
    assert c.http.parse_server_info(c.http.get_server_info(use_https=True)).paired is True
    assert host.api("GET", "/api/pairing")["window"]["state"] == "used"


def test_pair_and_use(host: Host, client_factory):
    c = client_factory()
    cp = c.pair_with_pin("4711", name="pytest client")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    assert cp.stdout.startswith("paired: ")
    # The pinned certificate is the host's certificate file.
    assert c.http.server_cert_pem == host.host_cert_pem()

    # HTTPS /serverinfo says paired.
    xml = c.http.get_server_info(use_https=True)
    info = c.http.parse_server_info(xml)
    assert info.paired is True
    assert info.state == "SUNSHINE_SERVER_FREE"

    # The client list has it, by name.
    clients = host.api("GET", "/api/clients")
    assert [x["name"] for x in clients] == ["pytest client"]
    assert clients[0]["id"] in host.cli("clients").stdout

    # App list and box art.
    apps = c.http.get_app_list()
    assert (apps[0].id, apps[0].name) == (1, "Desktop")
    resp = _https_get(c, "appasset", "appid=1&AssetType=2&AssetIdx=0")
    assert resp.headers["Content-Type"] == "image/png"
    img = Image.open(io.BytesIO(resp.content))
    img.verify()
    assert img.size == (120, 160)

    # Launch: a session URL with the RTSP port (base + 21), encrypted RTSP (the client sent
    # corever=1), and a busy host.
    session_url = launch(c)
    assert session_url == f"rtspenc://127.0.0.1:{host.base + 21}"
    info = c.http.parse_server_info(c.http.get_server_info(use_https=True))
    assert info.state == "SUNSHINE_SERVER_BUSY"
    assert info.current_game == 1
    sessions = host.api("GET", "/api/sessions")
    assert len(sessions) == 1 and sessions[0]["client"]["name"] == "pytest client", sessions
    assert sessions[0]["protocol"] == "gamestream" and sessions[0]["state"] == "connecting"
    assert sessions[0]["mode"] == {"width": 1280, "height": 720, "fps": 60}

    # Resume with new keys, then quit.
    key, iv = os.urandom(16), os.urandom(16)
    assert c.http.resume_app(key, iv, 196610, launch_query_params="corever=1") == session_url
    # A resume without corever (a client that cannot encrypt) gets plain RTSP.
    plain = c.http.resume_app(os.urandom(16), os.urandom(16), 196610)
    assert plain == session_url.replace("rtspenc:", "rtsp:")
    c.http.quit_app()
    info = c.http.parse_server_info(c.http.get_server_info(use_https=True))
    assert (info.state, info.current_game) == ("SUNSHINE_SERVER_FREE", 0)

    # Malformed launch parameters are a 400 in the XML, not a crash.
    with pytest.raises(HttpResponseError) as e:
        c.http.verify_response_status(c.http.open_https("launch", "appid=1&mode=1x2&rikey=zz"))
    assert e.value.status_code == 400
    with pytest.raises(HttpResponseError) as e:
        launch(c, app_id=99)
    assert e.value.status_code == 404


def _https_get(c: Client, command: str, args: str):
    """A raw HTTPS GET with the client's certificate (for the PNG, which is not XML)."""
    import ssl
    import tempfile
    import urllib.request

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        open(cert, "wb").write(c.identity.cert_pem)
        open(key, "wb").write(c.identity.key_pem)
        ctx.load_cert_chain(cert, key)
    url = c.http._build_url(c.http.base_url_https, command, args)
    resp = urllib.request.urlopen(url, context=ctx, timeout=10)

    class R:
        headers = resp.headers
        content = resp.read()

    return R


def test_each_client_launches_resumes_and_quits_only_its_own_session(host: Host, client_factory):
    """Issue 8 point 4 at the nvhttp level: sessions are per client. Another client's launch
    does not disturb the first; a second launch by the same client rejoins its own session;
    /cancel ends only the caller's session; /serverinfo shows each client its own."""
    a, b = client_factory(), client_factory()
    a.pair_with_pin("1111", name="A")
    b.pair_with_pin("2222", name="B")
    assert launch(a).startswith("rtspenc://")
    # B has no session: nothing to resume, and its serverinfo shows a free host.
    with pytest.raises(HttpResponseError) as e:
        b.http.resume_app(os.urandom(16), os.urandom(16), 196610)
    assert e.value.status_code == 503
    info_b = b.http.parse_server_info(b.http.get_server_info(use_https=True))
    assert (info_b.state, info_b.current_game) == ("SUNSHINE_SERVER_FREE", 0)
    # A is still connecting from 127.0.0.1 (no RTSP yet): B at the same address must wait,
    # told why.
    with pytest.raises(HttpResponseError) as e:
        launch(b)
    assert e.value.status_code == 503 and "connecting" in e.value.status_message
    # A second launch by A rejoins its own session (same id, new keys).
    assert launch(a).startswith("rtspenc://")
    assert [s["client"]["name"] for s in host.api("GET", "/api/sessions")] == ["A"]
    # B's quit leaves A's session alone.
    b.http.quit_app()
    info_a = a.http.parse_server_info(a.http.get_server_info(use_https=True))
    assert (info_a.state, info_a.current_game) == ("SUNSHINE_SERVER_BUSY", 1)
    a.http.quit_app()
    assert host.api("GET", "/api/sessions") == []
    assert launch(b).startswith("rtspenc://")
    assert [s["client"]["name"] for s in host.api("GET", "/api/sessions")] == ["B"]


def test_a_strangers_pending_pairing_does_not_block_the_real_one(host: Host, client_factory):
    """Issue 7 point 5: a stranger parks a pairing; the real client still pairs. The operator
    sees both (address, certificate fingerprint, age), gives the PIN to the right one with
    --to, and cancels the stranger, whose client is told why."""
    stranger, real = client_factory(), client_factory()
    held = stranger.start_pairing("5555")
    wait_for(lambda: len(waiting(host)) == 1, what="the stranger to wait")
    result = real.start_pairing("6666")
    listed = wait_for(lambda: (w := waiting(host)) and len(w) == 2 and w,
                      what="both clients to wait")
    assert {w["address"] for w in listed} == {"127.0.0.1"}
    by_fp = {w["fingerprint"]: w for w in listed}
    assert set(by_fp) == {fingerprint(stranger), fingerprint(real)}
    real_id = by_fp[fingerprint(real)]["id"]
    stranger_id = by_fp[fingerprint(stranger)]["id"]
    # Without --to, the PIN is refused and the CLI lists who waits.
    cp = host.cli("pin", "6666")
    assert cp.returncode == 2, cp
    assert "2 clients are waiting" in cp.stderr and fingerprint(real) in cp.stderr
    shown = host.cli("pairing").stdout
    assert fingerprint(stranger) in shown and f"id {real_id}" in shown
    # The PIN goes to the real client, which pairs while the stranger still waits.
    cp = host.cli("pin", "6666", "--to", real_id, "--name", "real")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    result["thread"].join(60)
    assert "cert" in result, result
    assert [x["name"] for x in host.api("GET", "/api/clients")] == ["real"]
    assert [w["id"] for w in waiting(host)] == [stranger_id]
    # The operator cancels the stranger; its client gets the reason.
    cp = host.cli("pairing", "--cancel", stranger_id)
    assert cp.returncode == 0, cp
    held["thread"].join(30)
    assert isinstance(held.get("error"), HttpResponseError), held
    assert held["error"].status_code == 403
    assert "cancelled by the host" in held["error"].status_message
    assert host.api("GET", "/api/status")["pairing"]["state"] == "idle"
    assert host.cli("pairing", "--cancel", stranger_id).returncode == 2


def _phases_1_to_3(host: Host, c: Client, pin: str) -> None:
    """Pairing phases 1-3 done by hand (moonlight-python's pair() cannot be stopped between
    phases), with its AES helpers and identity."""
    def get(query: str) -> str:
        url = f"http://127.0.0.1:{host.http_port}/pair?uniqueid=0123456789ABCDEF&{query}"
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read().decode()

    salt = os.urandom(16)
    key = hashlib.sha256(salt + pin.encode()).digest()[:16]
    r1 = get(f"devicename=roth&phrase=getservercert&salt={salt.hex()}"
             f"&clientcert={c.identity.cert_pem.hex()}")
    assert xml_text(r1, "plaincert"), r1
    challenge = os.urandom(16)
    r2 = get(f"clientchallenge={_aes_encrypt_ecb(challenge, key).hex()}")
    resp = _aes_decrypt_ecb(bytes.fromhex(xml_text(r2, "challengeresponse")), key)
    secret = os.urandom(16)
    h = hashlib.sha256(resp[32:48] + c.identity.cert_signature() + secret).digest()
    r3 = get(f"serverchallengeresp={_aes_encrypt_ecb(h, key).hex()}")
    assert xml_text(r3, "pairingsecret"), r3


def test_no_half_paired_client_after_kill_9_between_phases(host: Host, client_factory):
    """Issue 7 point 6: the host is killed (SIGKILL) after phases 1-3 of a pairing with the
    right PIN; after a restart no client is stored, and the client can pair properly."""
    c = client_factory()
    assert host.cli("pin", "2580").returncode == 0
    _phases_1_to_3(host, c, "2580")
    assert host.api("GET", "/api/status")["pairing"]["state"] == "in_progress"
    host.proc.send_signal(signal.SIGKILL)
    host.proc.wait(timeout=10)
    host.proc = None
    assert not (host.state_dir / "clients.json").exists()
    # The killed host's run.json is stale; Host.start waits for the new one.
    (host.state_dir / "run.json").unlink()
    host.start()
    assert host.api("GET", "/api/clients") == []
    with pytest.raises(HttpResponseError) as e:
        c.http.get_app_list()
    assert e.value.status_code == 401
    c.pair_with_pin("2580")
    assert len(host.api("GET", "/api/clients")) == 1


def test_state_dir_is_made_private_and_crash_leftovers_removed(host: Host):
    """Issue 7 point 6: an existing state dir with mode 0755 becomes 0700 at start, and a
    temporary file a crash left mid-write is removed (both logged)."""
    host.stop()
    os.chmod(host.state_dir, 0o755)
    leftover = host.state_dir / ".clients.json.tmp999999"
    leftover.write_text('{"version": 1, "cli')
    host.start()
    assert (host.state_dir.stat().st_mode & 0o777) == 0o700
    assert not leftover.exists()
    log = host.log()
    assert "had mode 0755" in log and "left by an interrupted write" in log


def test_state_survives_restart_and_unpair(client_factory, host: Host):
    c = client_factory()
    c.pair_with_pin("8080", name="keeper")
    uniqueid = c.server_info().unique_id
    host.stop()
    host.start()
    info = c.http.parse_server_info(c.http.get_server_info(use_https=True))
    assert info.paired is True
    assert info.unique_id == uniqueid
    assert c.http.server_cert_pem == host.host_cert_pem()

    client_id = host.api("GET", "/api/clients")[0]["id"]
    cp = host.cli("unpair", client_id)
    assert cp.returncode == 0 and "keeper" in cp.stdout
    with pytest.raises(HttpResponseError) as e:
        c.http.get_app_list()
    assert e.value.status_code == 401
    assert host.cli("unpair", client_id).returncode == 2
    # The removal is durable, with the previous list kept as a backup.
    assert (host.state_dir / "clients.json.bak").exists()
    host.stop()
    host.start()
    assert host.api("GET", "/api/clients") == []


def test_ports_follow_the_base_port(host: Host):
    status = host.api("GET", "/api/status")
    p = status["ports"]
    assert (p["http"], p["https"], p["management"], p["video"], p["control"], p["audio"],
            p["rtsp"]) == tuple(host.base + off for off in (0, -5, 1, 9, 10, 11, 21))

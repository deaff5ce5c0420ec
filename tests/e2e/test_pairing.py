"""punktfunk's nvhttp host against moonlight-python, a real Moonlight client library.

Pairing uses moonlight-python's own 5-stage implementation (moonlight_python/pairing.py,
ported from moonlight-qt), the PIN is entered with the real `punktfunk pin` CLI, and every
request goes over moonlight-python's HTTP/HTTPS client with its client certificate.
"""

from __future__ import annotations

import io
import os
from xml.etree import ElementTree

import pytest
from moonlight_python.exceptions import (
    HttpResponseError,
    PairingAlreadyInProgress,
    WrongPinError,
)
from PIL import Image

from conftest import Client, Host, wait_awaiting_pin


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
    assert info.server_codec_mode_support == 1
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
    # The host is free for the next pairing, which succeeds.
    assert host.api("GET", "/api/status")["pairing"]["state"] == "idle"
    c.pair_with_pin("3333")
    assert len(host.api("GET", "/api/clients")) == 1


def test_pin_without_a_waiting_client(host: Host):
    cp = host.cli("pin", "1234")
    assert cp.returncode == 2
    assert "no client is waiting for a PIN" in cp.stderr
    cp = host.cli("pin", "12a4")
    assert cp.returncode == 2 and "4 digits" in cp.stderr


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

    # Launch: a session URL with the RTSP port (base + 21) and a busy host.
    session_url = launch(c)
    assert session_url == f"rtsp://127.0.0.1:{host.base + 21}"
    info = c.http.parse_server_info(c.http.get_server_info(use_https=True))
    assert info.state == "SUNSHINE_SERVER_BUSY"
    assert info.current_game == 1
    sessions = host.api("GET", "/api/sessions")
    assert len(sessions) == 1 and sessions[0]["owner"]["name"] == "pytest client"
    assert sessions[0]["mode"] == {"width": 1280, "height": 720, "fps": 60}

    # Resume with new keys, then quit.
    key, iv = os.urandom(16), os.urandom(16)
    assert c.http.resume_app(key, iv, 196610) == session_url
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


def test_one_session_at_a_time(host: Host, client_factory):
    a, b = client_factory(), client_factory()
    a.pair_with_pin("1111", name="A")
    b.pair_with_pin("2222", name="B")
    assert launch(a).startswith("rtsp://")
    with pytest.raises(HttpResponseError) as e:
        launch(b)
    assert e.value.status_code == 503 and "busy" in e.value.status_message
    with pytest.raises(HttpResponseError) as e:
        b.http.resume_app(os.urandom(16), os.urandom(16), 196610)
    assert e.value.status_code == 503
    # A second launch by the owner is "already running" (resume instead), as in Sunshine.
    with pytest.raises(HttpResponseError) as e:
        launch(a)
    assert e.value.status_code == 400
    # Any paired client may quit the app; then B can launch.
    b.http.quit_app()
    assert launch(b).startswith("rtsp://")


def test_one_pairing_at_a_time(host: Host, client_factory):
    a, b = client_factory(), client_factory()
    result = a.start_pairing("5555")
    wait_awaiting_pin(host)
    # moonlight-python reports the host's "busy" answer as PairingAlreadyInProgress.
    other = b.start_pairing("6666")
    other["thread"].join(30)
    assert isinstance(other.get("error"), PairingAlreadyInProgress), other
    # The first pairing was not disturbed by B's /unpair.
    assert host.api("GET", "/api/status")["pairing"]["state"] == "awaiting_pin"
    assert host.cli("pin", "5555").returncode == 0
    result["thread"].join(60)
    assert "cert" in result, result


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

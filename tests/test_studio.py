"""melody_studio: the server's answers, its refusals, its limits, and the whole loop in headless Chromium."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import VENV_BIN, write_mido_file

pytestmark = pytest.mark.studio

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "melody_plugin" / "studio" / "static"
# the browser test's primer: two 4/4 bars of quarter notes at 480 ticks per quarter, written by mido
PRIMER_NOTES = [(p, i * 480, (i + 1) * 480) for i, p in enumerate([62, 64, 66, 67, 69, 67, 66, 64])]


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory):
    """One studio for the session, offering the shipped model and a copy of it found under a --models_dir."""
    from melody_plugin.generate.generator import DEFAULT_MODEL_DIR
    from melody_plugin.studio import server

    runs = tmp_path_factory.mktemp("studio_runs")
    shutil.copytree(DEFAULT_MODEL_DIR, runs / "lab" / "folk_copy")
    with server.studio_session(models_dirs=[runs], timeout_s=120, workers=2) as studio:
        running = server.StudioServer(studio, "127.0.0.1", 0).start()
        yield running, studio
        running.stop()


def call(url, path, data=None, headers=None, method=None):
    """(status, JSON answer) of one request; the studio header is sent unless `headers` says otherwise."""
    headers = {"X-Melody-Studio": "1", **(headers or {})}
    if isinstance(data, dict):
        data, headers["Content-Type"] = json.dumps(data).encode(), "application/json"
    request = urllib.request.Request(url.rstrip("/") + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def raw_get(url, path) -> bytes:
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=30) as response:
        return response.read()


def mido_notes(data: bytes):
    """[(pitch, on_tick, off_tick)], ticks per quarter, end tick and seconds per tick, read with mido alone."""
    import mido

    mid = mido.MidiFile(file=io.BytesIO(data))
    notes, sounding, tick, tempo = [], {}, 0, 500000
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if msg.type == "set_tempo":
            tempo = msg.tempo
        elif msg.type == "note_on" and msg.velocity > 0:
            sounding[msg.note] = tick
        elif msg.type in ("note_on", "note_off") and msg.note in sounding:
            notes.append((msg.note, sounding.pop(msg.note), tick))
    return sorted(notes, key=lambda n: n[1]), mid.ticks_per_beat, tick, tempo / 1e6 / mid.ticks_per_beat


# --- the page and the API


def test_the_page_and_its_assets_ship_in_the_package_and_fetch_nothing_from_outside(studio_server):
    running, _ = studio_server
    page = raw_get(running.url, "/").decode()
    assert '<script src="/static/studio.js"></script>' in page
    for name in ("studio.js", "studio.css", "index.html"):
        assert raw_get(running.url, f"/static/{name}") == (STATIC / name).read_bytes()
        text = (STATIC / name).read_text()
        assert not re.search(r"""(src|href|url|fetch|import)\s*[=(]\s*["']?(https?:)?//""", text), name


def test_models_are_the_shipped_one_and_the_run_dirs_found(studio_server):
    running, _ = studio_server
    status, answer = call(running.url, "/api/models")
    assert status == 200
    assert [m["id"] for m in answer["models"]] == ["0", "1"]
    assert answer["models"][1]["name"].endswith("lab/folk_copy")
    assert answer["models"][1]["detail"].startswith("folk_lookback")


def test_generate_answers_notes_scores_and_files(studio_server):
    running, _ = studio_server
    status, answer = call(running.url, "/api/generate", {
        "model": "1", "primer_text": "G4:1 B4:1 D5:1 C5:2 A4:1 F#4:1", "time_signature": "3/4", "num_bars": 2,
        "num_outputs": 2, "seed": 11, "temperature": 0.8})
    assert status == 200, answer
    assert answer["seed"] == 11 and len(answer["outputs"]) == 2
    for out in answer["outputs"]:
        assert out["total_bars"] == 2 + 2  # two complete primer bars, then two new ones
        assert out["svg"].count('class="measure"') == 4
        notes, ppq, end, _ = mido_notes(raw_get(running.url, out["downloads"]["mid"]))
        assert end == 4 * 3 * ppq
        assert [n[0] for n in notes[:6]] == [67, 71, 74, 72, 69, 66]  # the primer, kept
        assert [n["pitch"] for n in out["notes"]] == [n[0] for n in notes]
        assert raw_get(running.url, out["downloads"]["abc"]).startswith(b"X:1\n")
        assert b"<score-partwise" in raw_get(running.url, out["downloads"]["musicxml"])


def test_two_generations_at_once_both_get_their_own_results(studio_server):
    running, _ = studio_server
    answers = {}

    def ask(seed):
        answers[seed] = call(running.url, "/api/generate", {"primer_text": "C4:1 E4:1 G4:2", "num_bars": 2,
                                                            "num_outputs": 1, "seed": seed})

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert {seed: status for seed, (status, _) in answers.items()} == {1: 200, 2: 200}
    assert answers[1][1]["job"] != answers[2][1]["job"]
    assert [a["outputs"][0]["seed"] for _, a in (answers[1], answers[2])] == [1, 2]


def upload(url, name, data: bytes, headers=None):
    return call(url, f"/api/primer?name={urllib.request.quote(name)}&model=0", data,
                {"Content-Type": "application/octet-stream", **(headers or {})})


def drums_midi(tmp_path) -> bytes:
    import mido

    mid = mido.MidiFile()
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for _ in range(8):
        track.append(mido.Message("note_on", channel=9, note=36, velocity=90, time=0))
        track.append(mido.Message("note_off", channel=9, note=36, velocity=0, time=240))
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


def zip_bomb() -> bytes:
    """An .mxl whose score unpacks to 200 MB from about 200 KB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/container.xml", '<?xml version="1.0"?><container><rootfiles>'
                         '<rootfile full-path="score.xml"/></rootfiles></container>')
        archive.writestr("score.xml", b"<" + b" " * (200 * 1024 * 1024))
    return buffer.getvalue()


@pytest.mark.parametrize("name, make, expected", [
    ("empty.mid", lambda tmp: b"", "empty.mid: empty file"),
    ("drums.mid", drums_midi, "drums.mid: only drum notes"),
    ("bomb.mxl", lambda tmp: zip_bomb(), "bomb.mxl: archive unpacks to"),
    ("notes.txt", lambda tmp: b"C4:1", "notes.txt: not a MIDI, ABC or MusicXML file"),
    ("../../etc/passwd", lambda tmp: b"root:x:0:0", "passwd: not a MIDI, ABC or MusicXML file"),
    ("tune.abc", lambda tmp: b"X:1\nT:none\nK:C\n", "tune.abc: "),
])
def test_bad_primers_get_a_one_line_message(studio_server, tmp_path, name, make, expected):
    running, studio = studio_server
    status, answer = upload(running.url, name, make(tmp_path))
    assert status in (400, 413)
    assert answer["error"].startswith(expected)
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    assert str(studio.work_dir) not in answer["error"]  # files are named as the user named them


def test_a_file_declared_too_big_is_refused_before_its_body_is_read(studio_server):
    """100 MB announced, a few bytes sent: the answer comes from the headers alone."""
    running, _ = studio_server
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as conn:
        conn.sendall(b"POST /api/primer?name=big.mid HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Melody-Studio: 1\r\n"
                     b"Content-Length: 104857600\r\n\r\nMThd")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):  # the headers, then the JSON body
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "big.mid: 104857600 bytes is over the 16777216 byte limit" in reply


def test_a_primer_outside_the_vocabulary_generates_and_says_what_changed(studio_server, tmp_path):
    running, _ = studio_server
    path = write_mido_file(tmp_path / "odd.mid", [(125, 0, 1560), (3, 1560, 4000), (127, 4000, 4017)])
    status, primer = upload(running.url, "odd.mid", path.read_bytes())
    assert status == 200, primer
    status, answer = call(running.url, "/api/generate", {"primer_id": primer["primer_id"], "num_bars": 1,
                                                         "num_outputs": 1, "seed": 3})
    assert status == 200, answer
    changed = [w for w in answer["warnings"] if w.startswith("primer note changed to fit the vocabulary")]
    assert len(changed) == 3  # each of the three notes, named
    assert all("/tmp" not in w for w in answer["warnings"])


def test_an_uploaded_name_is_only_a_name(studio_server, tmp_path):
    running, studio = studio_server
    primer = write_mido_file(tmp_path / "primer.mid", PRIMER_NOTES)
    status, answer = upload(running.url, "../../x.mid", primer.read_bytes())
    assert status == 200 and answer["name"] == "x.mid"
    saved = list(studio.work_dir.rglob("x.mid"))
    assert len(saved) == 1 and saved[0].parent.parent == studio.work_dir / "uploads"
    assert not (studio.work_dir.parent / "x.mid").exists()


@pytest.mark.parametrize("body, expected", [
    ({"temperature": "hot"}, "temperature must be a number, got 'hot'"),
    ({"num_bars": 500}, "num bars must be in [1, 64], got 500"),
    ({"model": "9"}, "no model '9'; reload the page"),
    ({"primer_id": "nope"}, "the dropped primer file is gone"),
    ({"primer_text": "C4:1 H9:2"}, "primer melody: cannot read 'H9:2'"),
    ({"scale": "Q:minor"}, ""),
])
def test_bad_settings_get_a_message(studio_server, body, expected):
    running, _ = studio_server
    status, answer = call(running.url, "/api/generate", {"num_bars": 1, "num_outputs": 1, **body})
    assert status == 400
    assert answer["error"].startswith(expected) and "Traceback" not in answer["error"]


def test_other_sites_cannot_drive_the_studio(studio_server):
    running, _ = studio_server
    status, answer = call(running.url, "/api/generate", {"num_bars": 1}, headers={"X-Melody-Studio": "0"})
    assert status == 403 and answer["error"] == "requests must come from the studio's page"
    request = urllib.request.Request(running.url + "api/models", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    status, answer = call(running.url, "/api/download/0123456789abcdef/..%2F..%2Fetc%2Fpasswd")
    assert status == 404


def test_a_generation_past_the_time_limit_is_stopped_with_a_message():
    from melody_plugin.studio import server

    with server.studio_session(timeout_s=0.05, workers=1, max_upload_bytes=1000) as studio:
        running = server.StudioServer(studio, "127.0.0.1", 0).start()
        try:
            status, answer = call(running.url, "/api/generate", {"num_bars": 64, "num_outputs": 8})
            assert status == 400
            assert answer["error"].startswith("stopped after 0.05 s: the generation took too long")
            assert not studio.pool._running  # its process is gone
            # a body that runs past the limit without saying its length is cut off at the limit
            status, answer = call(running.url, "/api/primer?name=long.mid", iter([b"M" * 800] * 3),
                                  {"Transfer-Encoding": "chunked"})
            assert status == 413 and answer["error"] == "long.mid: over the 1000 byte limit for a primer"
        finally:
            running.stop()
        work_dir = studio.work_dir
        assert work_dir.is_dir()
    assert not work_dir.exists()  # the temporary folder goes with the session


def test_the_server_refuses_other_interfaces_unless_asked(tmp_path):
    from melody_plugin.studio import server

    server.check_host("127.0.0.1", False)
    server.check_host("::1", False)
    with pytest.raises(server.StudioError, match="add --expose_to_network"):
        server.check_host("0.0.0.0", False)
    proc = subprocess.run([str(VENV_BIN / "melody_studio"), "--host=0.0.0.0", "--port=0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("melody_studio: error: --host=0.0.0.0 is not a loopback address")


def test_melody_studio_prints_its_url_serves_and_stops(tmp_path):
    proc = subprocess.Popen([str(VENV_BIN / "melody_studio"), "--port=0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"open (http://127\.0\.0\.1:\d+/) in your browser", line).group(1)
        status, answer = call(url, "/api/models")
        assert status == 200 and answer["models"][0]["id"] == "0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, 130)


# --- the whole loop in a real browser


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Debian Chromium driven by Selenium (no browser download: the system's chromium-driver)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Chromium and its driver: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    session.downloads = downloads
    yield session
    session.quit()


def wait_for(predicate, timeout_s=120.0, what="the page"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.browser
def test_the_page_generates_shows_plays_and_downloads(studio_server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    running, _ = studio_server
    primer = write_mido_file(tmp_path / "primer.mid", PRIMER_NOTES, tempos=[(0, 100)])
    browser.get(running.url)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#model option"), what="the model menu")
    # --- upload the primer, ask for 2 outputs of 4 bars
    browser.find_element(By.ID, "primer-file").send_keys(str(primer))
    wait_for(lambda: browser.find_element(By.ID, "primer-info").is_displayed(), what="the primer's summary")
    assert "4/4" in browser.find_element(By.ID, "primer-summary").text
    # --- a bad file after it: a message on the page, and the primer before it stays (the outputs below continue it)
    bad = tmp_path / "notes.mid"
    bad.write_text("not music at all\n")
    browser.find_element(By.ID, "primer-file").send_keys(str(bad))
    message = wait_for(lambda: "error" in browser.find_element(By.ID, "message").get_attribute("class")
                       and browser.find_element(By.ID, "message").text, 30, "the refusal")
    assert "not a MIDI file" in message and "(the primer before it, primer.mid, stays)" in message
    assert browser.find_element(By.ID, "primer-info").is_displayed()
    for field, value in (("num-bars", "4"), ("num-outputs", "2"), ("seed", "5")):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.ID, "primer-text").send_keys("C4:1 E4:1")  # typed while a file is the primer
    browser.find_element(By.ID, "generate").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "article.output")) == 2, what="two outputs")
    assert "error" not in browser.find_element(By.ID, "message").get_attribute("class")
    said = browser.find_element(By.ID, "message").text.splitlines()
    assert said[0] == "2 outputs continuing primer.mid, seed 5."
    assert "the typed primer was not used: the file primer.mid is the primer (✕ clears it)" in said
    for number in (1, 2):
        card = f"#output-{number}"
        # --- download the MIDI and read it with mido: 2 primer bars + 4 new, the primer kept
        browser.find_element(By.CSS_SELECTOR, f"{card} a.download[data-kind=mid]").click()
        name = browser.find_element(By.CSS_SELECTOR, f"{card} a.download[data-kind=mid]").get_attribute("download")
        target = browser.downloads / name
        midi = wait_for(lambda f=target: f.is_file() and f.read_bytes(), 30, f"{name} to download")
        notes, ppq, end, seconds_per_tick = mido_notes(midi)
        assert ppq == 480 and end == 6 * 4 * 480
        assert notes[:len(PRIMER_NOTES)] == PRIMER_NOTES
        # --- the score: one measure per bar, one drawn note per MIDI note (tied halves counted once)
        svg = f"{card} .score svg"
        assert len(browser.find_elements(By.CSS_SELECTOR, f"{svg} g.measure")) == 6
        drawn = len(browser.find_elements(By.CSS_SELECTOR, f"{svg} g.note"))
        # a tie across a line break is drawn twice: the second piece has the class "spanning"
        ties = len(browser.find_elements(By.CSS_SELECTOR, f"{svg} g.tie:not(.spanning)"))
        assert drawn - ties == len(notes)
        assert len(browser.find_elements(By.CSS_SELECTOR, f"{card} .roll rect.note-rect")) == len(notes)
        # --- play: the synth schedules one sound per note, at the MIDI's times, primer and continuation apart
        browser.find_element(By.CSS_SELECTOR, f"{card} button.play").click()
        schedule = wait_for(lambda: browser.execute_script("return window.studio.lastSchedule"), 10, "the synth")
        assert [s["pitch"] for s in schedule] == [n[0] for n in notes]
        assert [s["start_s"] for s in schedule] == pytest.approx([n[1] * seconds_per_tick for n in notes], abs=1e-3)
        parts = [s["part"] for s in schedule]
        assert parts == ["primer"] * len(PRIMER_NOTES) + ["continuation"] * (len(notes) - len(PRIMER_NOTES))
        assert Fraction(schedule[len(PRIMER_NOTES)]["start_s"]).limit_denominator(1000) == Fraction(24, 5)  # bar 3
        browser.find_element(By.CSS_SELECTOR, f"{card} button.stop").click()
    # --- keep one: it stays on the shelf with its downloads
    browser.find_element(By.CSS_SELECTOR, "#output-2 button.keep").click()
    kept = browser.find_elements(By.CSS_SELECTOR, "#kept article.output")
    assert len(kept) == 1 and kept[0].find_elements(By.CSS_SELECTOR, "a.download[data-kind=musicxml]")

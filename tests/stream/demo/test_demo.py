"""The Gradio demo, end to end: a real server on 127.0.0.1, driven by gradio_client and a real browser.

One app (SQLite gallery in a tmp dir, the session analyzer) serves the whole
module; the tests run in file order as one visitor would: enrol, identify,
verify, look-alike, delete. The webcam tab's function is fed the frames of the
Hamilton clip directly, since a headless browser has no camera.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import CHROMIUM_ARGS, EXAMPLES, GROUPS, HAMILTON, ROOT, free_port, launch_chromium

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.slow  # end-to-end: processes, browsers, servers (`make test-fast` skips it)

OBAMA = EXAMPLES / "Barack_Obama" / "obama.jpg"
OBAMA2 = EXAMPLES / "Barack_Obama" / "obama2.jpg"
BIDEN = EXAMPLES / "Joe_Biden" / "biden.jpg"
BIDEN2 = EXAMPLES / "Joe_Biden" / "biden2.jpg"
LIN = EXAMPLES / "Lin_Manuel_Miranda" / "lin-manuel-miranda.png"
KIT = EXAMPLES / "Kit_Harington" / "john1.jpeg"
ROSE = EXAMPLES / "Rose_Leslie" / "img1.jpg"
OBAMA_AND_BIDEN = GROUPS / "obama_and_biden.jpg"
KIT_WITH_ROSE = GROUPS / "kit_with_rose.jpg"
ADMIN = "admin-secret-token-0123456"


@pytest.fixture(scope="module")
def gallery_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('demo') / 'gallery.db'}"


@pytest.fixture(scope="module")
def service(analyzer, gallery_url):
    from facestream.stream.config import load_config
    from facestream.stream.demo import DemoService

    svc = DemoService(load_config(overrides={"gallery.url": gallery_url, "demo.admin_token": ADMIN}), analyzer=analyzer)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def app(service, tmp_path_factory):
    """The demo served on a free local port for the whole module (never a share link)."""
    from facestream.stream.demo import build_demo, launch_demo

    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    demo = build_demo(service, allow_enrolment=True)
    launch_demo(demo, "127.0.0.1", free_port(), block=False)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.local_url, verbose=False, download_files=False)


PEOPLE = {"Barack Obama": OBAMA, "Joe Biden": BIDEN, "Lin-Manuel Miranda": LIN, "Kit Harington": KIT}


@pytest.fixture
def enrolled(service, app) -> None:
    """Everyone in PEOPLE enrolled, so a test also runs alone (file order enrols them through the page)."""
    for name, photo in PEOPLE.items():
        if service.store.find_person(name) is None:
            assert service.enroll(name, [photo]).count == 1


def _names(table: dict) -> list[str]:
    col = table["headers"].index("name")
    return [row[col] for row in table["data"]]


def test_every_endpoint_is_named(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/live", "/identify", "/verify", "/lookalike", "/enroll", "/people", "/delete", "/not_this_person",
            "/this_is", "/undo_correction"} <= named


def test_no_telemetry_or_share_link(app):
    assert app.analytics_enabled is False  # no version check or analytics calls to the internet
    assert not app.share and app.share_url is None


def test_enrol_reports_a_verdict_per_photo(client, tmp_path):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("this is not a photo")
    table, status = client.predict(
        "Barack Obama",
        [handle_file(str(OBAMA)), handle_file(str(OBAMA_AND_BIDEN)), handle_file(str(not_an_image))],
        "", api_name="/enroll",
    )
    verdicts = {row[0]: row[1] for row in table["data"]}
    assert verdicts["obama.jpg"].startswith("enrolled")
    assert "faces" in verdicts["obama_and_biden.jpg"]  # several faces: which one is Obama?
    assert "not an image" in verdicts["notes.jpg"].lower()
    assert "Barack Obama" in status and "1 embedding" in status

    for name, photo in list(PEOPLE.items())[1:]:
        table, status = client.predict(name, [handle_file(str(photo))], "", api_name="/enroll")
        assert table["data"][0][1].startswith("enrolled"), table
    people = client.predict(api_name="/people")
    assert _names(people) == sorted(PEOPLE)


def test_enrol_without_a_name_is_a_readable_error(client):
    with pytest.raises(AppError, match="name"):
        client.predict("", [handle_file(str(BIDEN2))], "", api_name="/enroll")


def test_identify_names_everyone_in_a_group_photo(client, enrolled):
    annotated, table, summary = client.predict(handle_file(str(OBAMA_AND_BIDEN)), api_name="/identify")
    # Left to right: Biden, Obama (and, if the detector sees her, a girl at the bottom right: unknown).
    names = _names(table)
    assert names[:2] == ["Joe Biden", "Barack Obama"] and set(names[2:]) <= {"unknown"}, names
    sims = [float(row[2]) for row in table["data"][:2]]
    assert all(0.9 <= s <= 1.0 for s in sims), sims
    assert "recognised: Joe Biden, Barack Obama" in summary
    assert Path(annotated["path"] if isinstance(annotated, dict) else annotated).name.endswith((".jpeg", ".jpg"))
    # Rose Leslie is not enrolled: she must come back unknown while Kit is named.
    _, table, _ = client.predict(handle_file(str(KIT_WITH_ROSE)), api_name="/identify")
    assert sorted(_names(table)) == ["Kit Harington", "unknown"]


def test_identify_refuses_a_file_that_is_not_an_image(client, tmp_path):
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"\x89PNG but not really")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(bogus)), api_name="/identify")


def huge_png(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG of side x side pixels in a few kB: too big to decode, cheap to send."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_huge_image_is_refused_with_a_message(client, tmp_path):
    with pytest.raises(AppError, match=r"huge\.png has more than the 50 Mpx facestream reads") as err:
        client.predict(handle_file(str(huge_png(tmp_path / "huge.png"))), api_name="/identify")
    assert "/tmp" not in str(err.value)  # the visitor's file name, not the server's temp path


def test_verify_two_photos_and_a_photo_against_a_person(client, enrolled):
    same = client.predict(handle_file(str(OBAMA2)), None, "Barack Obama", api_name="/verify")
    assert "Same person" in same and "threshold" in same
    different = client.predict(handle_file(str(OBAMA2)), handle_file(str(BIDEN2)), None, api_name="/verify")
    assert "Different people" in different
    same_photos = client.predict(handle_file(str(BIDEN)), handle_file(str(BIDEN2)), "", api_name="/verify")
    assert "Same person" in same_photos


def test_verify_needs_one_face_and_a_known_person(client, tmp_path, enrolled):
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
    with pytest.raises(AppError, match="No face found in the second photo"):
        client.predict(handle_file(str(OBAMA2)), handle_file(str(blank)), None, api_name="/verify")
    with pytest.raises(AppError, match="Found [23] faces in the first photo"):
        client.predict(handle_file(str(OBAMA_AND_BIDEN)), handle_file(str(OBAMA2)), None, api_name="/verify")
    with pytest.raises(AppError, match="No person"):
        client.predict(handle_file(str(OBAMA2)), None, "Nobody Atall", api_name="/verify")


def test_verify_with_liveness_refuses_a_photo_held_up(client, enrolled, tmp_path):
    """A 2 s video of Obama's photo held up and turned: the face matches, but it is not verified."""
    from bench.attacks import render_attack
    from bench.scenes import face_sources
    from facestream.stream.engine.detect import FaceDetector

    source = face_sources([("Barack Obama", OBAMA)], FaceDetector())[0]
    video = tmp_path / "held_up.mp4"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    for rgb in render_attack(source, "print", np.random.default_rng(5), seconds=2.0):
        out.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out.release()
    text = client.predict(handle_file(str(video)), "Barack Obama", api_name="/verify_clip")
    assert "Not verified: no live person shown" in text and "Liveness: **spoof**" in text, text
    with pytest.raises(AppError, match="No person chosen"):
        client.predict(handle_file(str(video)), None, api_name="/verify_clip")


def test_verify_person_detects_once_and_agrees_with_the_cli(service, enrolled, monkeypatch):
    from facestream.stream.engine.imageio import load_image
    from facestream.stream.recognition import identify as recognize

    rgb = load_image(OBAMA2)
    calls = []
    detect = service.analyzer.detect
    monkeypatch.setattr(service.analyzer, "detect", lambda *a, **k: calls.append(1) or detect(*a, **k))
    result = service.verify_person(rgb, " Barack Obama ")
    assert len(calls) == 1  # one detection for the one-face check and the embedding alike
    monkeypatch.undo()
    cli = recognize.verify(service.analyzer, service.matcher, rgb, "Barack Obama")
    assert result.same and cli.same and result.similarity == pytest.approx(cli.similarity, abs=1e-4)
    assert result.threshold == cli.threshold and "Barack Obama" in result.against


def test_lookalike_ranks_the_right_person_first_with_a_photo(client, enrolled):
    gallery, table = client.predict(handle_file(str(BIDEN2)), api_name="/lookalike")
    assert table["data"][0][1] == "Joe Biden" and table["data"][0][3] == "yes"
    assert len(table["data"]) == 4  # everyone enrolled, at most five
    sims = [row[2] for row in table["data"]]
    assert sims == sorted(sims, reverse=True)
    assert len(gallery) == 4 and "Joe Biden" in gallery[0]["caption"]


def test_not_this_person_and_this_is_from_the_photo_tab(client, service, enrolled):
    """Correct a recognition from the page: "Not this person" makes that face unknown, Undo brings the name
    back; "This is…" names an unknown face through enrolment's checks."""
    _, table, _ = client.predict(handle_file(str(BIDEN2)), api_name="/identify")
    assert _names(table) == ["Joe Biden"]
    with pytest.raises(AppError, match="needs the admin token"):  # a visitor cannot change an enrolled person
        client.predict(1, "", "", api_name="/not_this_person")
    status = client.predict(1, "", ADMIN, api_name="/not_this_person")
    assert "not **Joe Biden**" in status
    assert len(service.store.negatives_of("Joe Biden")) == 1
    _, table, _ = client.predict(handle_file(str(BIDEN2)), api_name="/identify")
    assert _names(table) == ["unknown"]
    status = client.predict(ADMIN, api_name="/undo_correction")
    assert "Undone" in status and service.store.negatives_of("Joe Biden") == []
    _, table, _ = client.predict(handle_file(str(BIDEN2)), api_name="/identify")
    assert _names(table) == ["Joe Biden"]
    # Rose Leslie is not enrolled: name her from the photo where she stands next to Kit
    _, table, _ = client.predict(handle_file(str(KIT_WITH_ROSE)), api_name="/identify")
    rose = _names(table).index("unknown") + 1
    status = client.predict(rose, "Rose Leslie", "", api_name="/this_is")  # a new person: no token needed
    assert "**Rose Leslie**" in status
    _, table, _ = client.predict(handle_file(str(ROSE)), api_name="/identify")
    assert _names(table) == ["Rose Leslie"]
    with pytest.raises(AppError, match="no face 9"):
        client.predict(9, "Rose Leslie", "", api_name="/this_is")
    service.store.delete_person("Rose Leslie")  # the tests below expect the four people only


def test_delete_removes_the_person(client, enrolled):
    message, table, _ = client.predict("Kit Harington", ADMIN, api_name="/delete")
    assert "Kit Harington" in message
    assert "Kit Harington" not in _names(table)
    _, table, _ = client.predict(handle_file(str(KIT_WITH_ROSE)), api_name="/identify")
    assert _names(table) == ["unknown", "unknown"]
    with pytest.raises(AppError, match="No person"):
        client.predict("Kit Harington", ADMIN, api_name="/delete")


def test_enrolment_can_be_switched_off(service):
    from facestream.stream.demo import build_demo

    demo = build_demo(service, allow_enrolment=False)
    names = {fn.api_name for fn in demo.fns.values()}
    assert "enroll" not in names and "delete" not in names
    assert {"identify", "verify", "lookalike", "people", "live"} <= names


def test_live_names_lin_manuel_on_the_hamilton_clip(service, enrolled):
    """The webcam function on real video frames: one session's tracker names him on frames ~100-200."""
    session = service.new_live_session()
    cap = cv2.VideoCapture(str(HAMILTON))
    named, seen, live = [], 0, []
    index = 0
    while True:
        ok, bgr = cap.read()
        if not ok or index > 200:
            break
        if index >= 90 and index % 2 == 0:  # a browser delivers a subset of frames, too
            annotated, summary = service.live_frame(session, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            assert annotated.shape == (360, 640, 3) and annotated.dtype == np.uint8
            seen += 1
            assert f"{len(session.last_faces)} face(s)" in summary
            if "Lin-Manuel Miranda" in session.last_faces.name:
                named.append(index)
            if r"Lin\-Manuel Miranda** (live)" in summary:
                live.append(index)
        index += 1
    cap.release()
    assert seen > 40
    assert len(named) >= seen // 2, f"named on frames {named} of {seen}"
    assert live, "the webcam status never said Lin is live (liveness: report, the default)"


def _is_local(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))


def test_page_works_in_a_real_browser(app, tmp_path, enrolled):
    """Chromium loads the page without script errors, uploads a group photo and gets names back."""
    from playwright import sync_api
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian chromium is missing at /usr/bin/chromium; run `bash .ci/setup`")
    shot = tmp_path / "demo.png"
    errors: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda req: None if _is_local(req.url) else outside.append(req.url))
            page.goto(app.local_url, wait_until="domcontentloaded", timeout=60_000)
            for tab in ["Live", "Photo", "Verify", "Look-alike", "Enrol", "Gallery"]:
                page.get_by_role("tab", name=tab).wait_for(timeout=60_000)
            page.get_by_role("tab", name="Photo").click()
            page.locator("#photo-input input[type=file]").set_input_files(str(OBAMA_AND_BIDEN))
            page.get_by_role("button", name="Recognise faces").click()
            page.locator("#photo-faces").get_by_text("Joe Biden").wait_for(timeout=60_000)
            page.locator("#photo-output img").wait_for(timeout=30_000)
            status = page.locator("#photo-status").inner_text()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert not outside, f"the page reached outside this machine: {outside}"
    assert "Barack Obama" in status and "Joe Biden" in status, status
    assert shot.stat().st_size > 10_000
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(shot, artifacts / "demo.png")


def write_y4m(video: Path, out: Path, first: int, last: int) -> Path:
    """Frames ``first..last`` of a video as a Y4M file, the format Chromium's fake camera plays (in a loop)."""
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, first)
    ok, bgr = cap.read()
    assert ok, f"cannot read {video}"
    h, w = bgr.shape[:2]
    with open(out, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F30000:1001 Ip A1:1 C420jpeg\n".encode())
        for _ in range(first, last + 1):
            fh.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
            ok, bgr = cap.read()
            if not ok:
                break
    cap.release()
    return out


def test_live_tab_names_a_person_on_a_browser_webcam(app, tmp_path, enrolled):
    """Chromium's fake camera plays the Hamilton clip into the Live tab; the page names Lin-Manuel Miranda."""
    from playwright import sync_api
    camera = write_y4m(HAMILTON, tmp_path / "camera.y4m", 100, 160)
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"]
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, permissions=["camera"])
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(app.local_url, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_role("tab", name="Live").click()
            page.get_by_role("button", name="Click to Access Webcam").click()
            page.get_by_role("button", name="capture photo").click()  # gradio's Record button
            page.locator("#live-status").get_by_text("Lin-Manuel Miranda").wait_for(timeout=90_000)
            page.locator("#live-output img").wait_for(timeout=30_000)
            for _ in range(20):  # frames keep coming: keep a screenshot taken while he is named
                page.screenshot(path=str(tmp_path / "live.png"))
                status = page.locator("#live-status").inner_text()
                if "Lin-Manuel Miranda" in status:
                    break
        finally:
            browser.close()
    assert not errors, errors
    assert "frames/s" in status
    shutil.copy(tmp_path / "live.png", ROOT / "artifacts" / "demo-live.png")


def test_the_demo_service_works_on_a_redis_gallery(analyzer, redis_url):
    """Same page, shared store: enrol, identify and delete through Redis instead of SQLite."""
    from facestream.stream.config import load_config
    from facestream.stream.demo import DemoService
    from facestream.stream.engine.imageio import load_image

    svc = DemoService(load_config(overrides={"demo.admin_token": ADMIN}), analyzer=analyzer, gallery=redis_url)
    try:
        assert svc.enroll("Barack Obama", [OBAMA]).count == 1
        result = svc.identify(load_image(OBAMA_AND_BIDEN))
        assert [f.name for f in result.faces][:2] == ["unknown", "Barack Obama"]
        assert redis_url in svc.describe()
        assert "Barack Obama" in svc.delete("Barack Obama", ADMIN)
        assert svc.people() == []
    finally:
        svc.close()


def test_cli_demo_fails_clearly_on_a_bad_gallery(capsys):
    from facestream.stream.cli import main

    assert main(["demo", "--gallery", "ftp://nowhere/gallery", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "ftp://nowhere/gallery" in err and "Traceback" not in err


def test_names_are_shown_literally_in_markdown():
    from facestream.stream.demo.text import md

    assert md("[Win](http://evil.example) <b>x</b>") == r"\[Win\]\(http://evil.example\) \<b\>x\</b\>"
    assert md("Lin-Manuel Miranda") == r"Lin\-Manuel Miranda"

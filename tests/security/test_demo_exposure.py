"""Issue 22, item 6: the demo does not serve enrolled people to anonymous visitors beyond loopback."""

from __future__ import annotations

import pytest

from facestream.errors import FacestreamError
from facestream.stream.config import load_config


def test_listening_beyond_loopback_needs_a_login_or_public():
    with pytest.raises(FacestreamError, match="login"):
        load_config(overrides=["demo.host=0.0.0.0"], env={})
    assert load_config(overrides=["demo.host=0.0.0.0", "demo.login=admin:secret-pass"], env={}).demo.login
    public = load_config(overrides=["demo.host=0.0.0.0", "demo.public=true"], env={}).demo
    assert public.kiosk_mode  # anonymous visitors see no enrolled names or faces
    assert load_config(overrides=["demo.host=127.0.0.1"], env={}).demo.kiosk_mode is False


def test_the_cli_refuses_an_open_demo_before_loading_anything(capsys):
    from facestream.stream.cli import main

    assert main(["demo", "--host", "0.0.0.0", "--gallery", "sqlite:///:memory:"]) != 0
    assert "--public" in capsys.readouterr().err


def test_a_kiosk_never_suggests_a_name(tmp_path, analyzer):
    """A visitor who types a near miss learns nothing: no "Did you mean 'Barack Obama'?" on a kiosk, while a
    private demo still helps its operator."""
    import numpy as np

    from facestream.gallery.types import NewEmbedding
    from facestream.stream.demo import DemoService

    url = f"sqlite:///{tmp_path}/g.db"
    rgb = np.zeros((200, 200, 3), np.uint8)
    for kiosk, leaks in ((True, False), (False, True)):
        service = DemoService(load_config(overrides={"gallery.url": url, "demo.kiosk": kiosk}, env={}),
                              analyzer=analyzer)
        if service.store.find_person("Barack Obama") is None:
            v = np.ones(128, np.float32) / np.sqrt(128)
            service.store.enroll("Barack Obama", [NewEmbedding(v, analyzer.model_id, "h1")])
        with pytest.raises(FacestreamError) as err:
            service.verify_person(rgb, "Barack Obam")
        assert ("Barack Obama" in str(err.value)) is leaks, str(err.value)
        with pytest.raises(FacestreamError) as err:
            service.verify_clip(b"not even a video", "Barak Obama")
        assert ("Barack Obama" in str(err.value)) is leaks, str(err.value)
        service.close()

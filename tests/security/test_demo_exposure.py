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

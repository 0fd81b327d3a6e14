"""Configuration errors name the key and the fix, never a secret's value (issue 22, item 3)."""

from __future__ import annotations

import pytest

from facestream.errors import FacestreamError
from facestream.stream.config import load_config


@pytest.mark.parametrize("override, secret", [
    ("server.token=hunter2", "hunter2"),
    ("demo.admin_token=letmein", "letmein"),
    ("demo.login=alice-hunter2", "alice-hunter2"),
])
def test_a_bad_secret_is_named_not_shown(override, secret):
    with pytest.raises(FacestreamError) as err:
        load_config(overrides=[override], env={})
    text = str(err.value)
    assert override.split("=")[0] in text and secret not in text and "not shown" in text


def test_a_secret_from_the_environment_is_not_shown_either():
    with pytest.raises(FacestreamError) as err:
        load_config(env={"FACESTREAM__SERVER__TOKEN": "short1"})
    assert "short1" not in str(err.value) and "server.token" in str(err.value)
    with pytest.raises(FacestreamError, match="got 'abc'"):  # ordinary values are still quoted back
        load_config(overrides=["server.port=abc"], env={})


def test_a_token_file_is_made_private_and_links_hold_the_token_only_when_asked(tmp_path):
    import argparse
    import stat

    from facestream.stream.cli.common import sign_in_text, token_from

    path = tmp_path / "conf" / "token"
    args = argparse.Namespace(token=None, token_file=str(path), sign_in_link=False)
    token = token_from(args)
    assert token and len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token_from(args) == token  # read back, not made again
    config = load_config(overrides=[f"server.token={token}"], env={})
    quiet = sign_in_text(args, config, "127.0.0.1", 8765)
    assert token not in quiet and "sign in with the token" in quiet
    args.sign_in_link = True
    assert sign_in_text(args, config, "127.0.0.1", 8765).endswith(f"#token={token}")
    path.chmod(0o644)
    with pytest.raises(FacestreamError, match="chmod 600"):
        token_from(args)
    with pytest.raises(FacestreamError, match="Both --token and --token-file"):
        token_from(argparse.Namespace(token="x" * 20, token_file=str(path)))

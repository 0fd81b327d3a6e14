"""Configuration: defaults, YAML files, environment, overrides and the errors users meet."""

from __future__ import annotations

import pytest

from facestream.errors import FacestreamError
from facestream.stream.config import Config, load_config
from tests.conftest import ROOT


def test_default_yaml_matches_the_code_defaults():
    # configs/default.yaml documents the defaults; it must not drift from the models.
    assert load_config(env={}) == Config()
    # ...and it lists every setting, so it can be read as the reference of what may be set
    import yaml

    written = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())

    def keys(tree: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in tree.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
        return out

    assert keys(written) == keys(Config().model_dump())


def test_unknown_key_names_the_nearest_valid_one(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detector:\n  min_scor: 0.7\n")
    with pytest.raises(FacestreamError, match=r"unknown key 'detector.min_scor'.*Did you mean 'min_score'"):
        load_config(cfg, env={})


def test_unknown_section_names_the_nearest_section():
    with pytest.raises(FacestreamError, match=r"unknown key 'galery'.*Did you mean 'gallery'"):
        load_config(overrides=["galery.url=redis://x"], env={})


def test_out_of_bounds_value_is_refused_with_the_key():
    with pytest.raises(FacestreamError, match=r"'detector.min_score'.*less than or equal to 1"):
        load_config(overrides=["detector.min_score=3"], env={})


def test_precedence_file_then_env_then_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("match:\n  threshold: 0.5\n  top_k: 3\ndetector:\n  model: short\n")
    env = {"FACESTREAM__MATCH__THRESHOLD": "0.6", "FACESTREAM__TRACKING__EMBED_EVERY": "4", "HOME_X": "1"}
    conf = load_config(cfg, overrides=["match.threshold=0.7"], env=env)
    assert conf.match.threshold == 0.7
    assert conf.match.top_k == 3
    assert conf.tracking.embed_every == 4
    assert conf.detector.model == "short"


def test_sources_are_validated_per_item():
    conf = load_config(overrides={"sources": [{"url": "0"}, {"url": "rtsp://cam/1", "id": "door"}]}, env={})
    assert [s.id for s in conf.sources] == [None, "door"]
    with pytest.raises(FacestreamError, match=r"unknown key 'sources.0.urll'.*Did you mean 'url'"):
        load_config(overrides={"sources": [{"urll": "0"}]}, env={})


def test_bad_yaml_and_missing_file_are_clear(tmp_path):
    with pytest.raises(FacestreamError, match="Config file not found"):
        load_config(tmp_path / "nope.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: [unclosed\n")
    with pytest.raises(FacestreamError, match="not valid YAML"):
        load_config(bad, env={})
    with pytest.raises(FacestreamError, match="has no '='"):
        load_config(overrides=["detector.model"], env={})


def test_values_that_are_not_yaml_stay_text():
    # `--set k=[x` and FACESTREAM__... = "[x" used to end in a raw YAML traceback
    conf = load_config(overrides=["server.token=[x-token-1-0123456789abcdef"],
                       env={"FACESTREAM__DEMO__HOST": "{bad", "FACESTREAM__DEMO__PUBLIC": "true"})
    assert conf.server.token == "[x-token-1-0123456789abcdef" and conf.demo.host == "{bad"


def test_run_flags_arrive_as_typed(monkeypatch):
    """`run --token '#abc'` once turned auth off (a YAML comment) and `--token 12345` failed (a number)."""
    from facestream.stream.cli import build_parser
    from facestream.stream.cli.run import _config

    monkeypatch.delenv("FACESTREAM_GALLERY", raising=False)
    pad = "-0123456789abcdefghij"  # tokens of 22+ characters (128 bits)
    for token in ("#abc-token" + pad, "1234567890123456789012", "[x-token-1" + pad, "yes-token" + pad):
        args = build_parser().parse_args(["run", "clip.mp4", "--token", token, "--port", "0",
                                          "--gallery", "sqlite:///g #1.db"])
        config, _ = _config(args)
        assert config.server.token == token
        assert config.server.port == 0 and config.gallery.url == "sqlite:///g #1.db"


def test_cli_set_that_is_not_yaml_is_a_config_error_not_a_traceback(capsys):
    from facestream.stream.cli import main

    assert main(["detect", "missing.jpg", "--set", "detector.model=[x"]) == 2
    err = capsys.readouterr().err
    assert "Bad configuration" in err and "'detector.model'" in err and "Traceback" not in err


def test_gallery_env_sits_between_the_file_and_the_overrides(tmp_path):
    """$FACESTREAM_GALLERY lands in gallery.url, the one answer recognition and attendance both use."""
    from facestream.stream.recognition.identify import gallery_url

    cfg = tmp_path / "c.yaml"
    cfg.write_text("gallery:\n  url: sqlite:///file.db\n")
    env = {"FACESTREAM_GALLERY": "redis://127.0.0.1:6379/3"}
    assert load_config(cfg, env={}).gallery.url == "sqlite:///file.db"
    conf = load_config(cfg, env=env)
    assert conf.gallery.url == "redis://127.0.0.1:6379/3" == gallery_url(conf)
    assert load_config(cfg, ["gallery.url=sqlite:///flag.db"], env=env).gallery.url == "sqlite:///flag.db"
    both = {**env, "FACESTREAM__GALLERY__URL": "sqlite:///long.db"}  # the long form is the more specific
    assert load_config(env=both).gallery.url == "sqlite:///long.db"


def test_run_gallery_flag_wins_over_the_env_everywhere(monkeypatch):
    from facestream.stream.cli import build_parser
    from facestream.stream.cli.run import _config
    from facestream.stream.recognition.identify import gallery_url

    monkeypatch.setenv("FACESTREAM_GALLERY", "sqlite:///env.db")
    config, _ = _config(build_parser().parse_args(["run", "clip.mp4"]))
    assert config.gallery.url == gallery_url(config) == "sqlite:///env.db"
    config, _ = _config(build_parser().parse_args(["run", "clip.mp4", "--gallery", "sqlite:///flag.db"]))
    assert config.gallery.url == gallery_url(config) == "sqlite:///flag.db"

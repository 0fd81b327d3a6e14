"""Configuration: defaults, YAML files, environment, overrides and the errors users meet."""

from __future__ import annotations

import pytest

from stream.config import Config, load_config
from stream.errors import FacestreamError
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

"""Calibration on a user's gallery: leave-one-out genuine scores, impostor rates, the population shift."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.gallery.calibration import calibrate_gallery
from facestream.gallery.decision import ImpostorTail
from facestream.gallery.store import GalleryMatrix
from tests.gallery.test_decision import population


def matrix(vectors: np.ndarray) -> GalleryMatrix:
    """A gallery snapshot of (people, photos, D) vectors."""
    people, photos, dim = vectors.shape
    return GalleryMatrix(1, [f"p{i}" for i in range(people)], [f"P{i}" for i in range(people)],
                         vectors.reshape(-1, dim).astype(np.float32),
                         np.repeat(np.arange(people), photos).astype(np.int32))


@pytest.fixture(scope="module")
def model_tail() -> ImpostorTail:
    ref = population(np.random.default_rng(0), 800, 1)[:, 0]
    return ImpostorTail.fit((ref @ ref.T)[np.triu_indices(len(ref), 1)])


def test_a_population_like_the_models_keeps_its_calibration(model_tail):
    report = calibrate_gallery(matrix(population(np.random.default_rng(1), 120, 3)), model_tail, 1e-2)
    assert report.enough and abs(report.shift) < 0.01, report.shift
    chosen = next(r for r in report.rows if r.target_far == 1e-2)
    assert chosen.far_open_set is not None and chosen.far_open_set <= 3e-2
    assert chosen.frr is not None and len(report.genuine) == 360
    assert report.impostor_total == 360 * 119


def test_people_who_look_alike_shift_the_tail_up(model_tail):
    """A population of more similar faces (less identity spread): impostor scores sit higher, the measured
    shift says by how much, and the shifted tail names strangers near the target again."""
    rng = np.random.default_rng(2)
    common = np.zeros(64, np.float32)
    common[0] = 1.0
    identity = rng.standard_normal((150, 1, 64)).astype(np.float32) * 0.25  # alike
    noise = rng.standard_normal((150, 3, 64)).astype(np.float32) * 0.55 / 8 * 3
    v = common + identity + noise
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    report = calibrate_gallery(matrix(v), model_tail, 1e-2)
    assert report.shift is not None and report.shift > 0.01
    unshifted = calibrate_gallery(matrix(v), model_tail, 1e-2)
    naive = model_tail.threshold(1e-2, 150, 1)
    strangers_at_naive = float((unshifted.open_set >= naive).mean())
    chosen = next(r for r in report.rows if r.target_far == 1e-2)
    assert strangers_at_naive > 3 * 1e-2  # the model's number would name too many of them
    assert chosen.far_open_set <= 3e-2  # the calibrated one does not


def test_too_little_data_warns_and_strangers_count(model_tail):
    rng = np.random.default_rng(3)
    small = matrix(population(rng, 6, 1))
    report = calibrate_gallery(small, model_tail, 1e-3)
    assert not report.enough
    assert any("too few to measure" in w for w in report.warnings)
    assert any("pairs of the same person" in w for w in report.warnings)
    strangers = population(rng, 50, 1)[:, 0]
    with_strangers = calibrate_gallery(small, model_tail, 1e-3, strangers)
    assert with_strangers.impostor_total == report.impostor_total + 50 * 6 and with_strangers.strangers == 50
    with pytest.raises(ValueError, match="two enrolled people"):
        calibrate_gallery(matrix(population(rng, 1, 2)), model_tail, 1e-3)

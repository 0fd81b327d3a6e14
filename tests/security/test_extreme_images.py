"""Images of extreme proportions (a 2x20000 strip) get one clear per-image verdict; a batch goes on."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from facestream.errors import FacestreamError
from facestream.gallery import open_store
from facestream.stream.recognition.enroll import Enroller
from tests.conftest import EXAMPLES


@pytest.mark.parametrize("shape", [(2, 20000, 3), (20000, 2, 3)])
def test_a_strip_is_a_clear_error_not_a_crash(analyzer, shape):
    with pytest.raises(FacestreamError, match="strip"):
        analyzer.detect(np.zeros(shape, np.uint8))


def test_one_strip_never_stops_a_bulk_enrolment(analyzer, tmp_path):
    people = tmp_path / "people"
    (people / "Obama").mkdir(parents=True)
    shutil.copy(EXAMPLES / "Barack_Obama" / "obama.jpg", people / "Obama" / "obama.jpg")
    (people / "Strip").mkdir()
    assert cv2.imwrite(str(people / "Strip" / "strip.png"), np.full((2, 20000, 3), 200, np.uint8))
    store = open_store(f"sqlite:///{tmp_path}/g.db")
    report = Enroller(analyzer, store, progress=False).enroll_folder(people)
    verdicts = {v.person: v for v in report.verdicts}
    assert verdicts["Obama"].verdict == "enrolled"
    assert verdicts["Strip"].verdict == "unreadable" and "strip" in verdicts["Strip"].detail
    assert store.find_person("Obama") is not None and store.find_person("Strip") is None
    store.close()

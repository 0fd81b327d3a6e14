"""The built-in embedder's decision numbers, measured on the LFW calibration set (``bench/calibrate.py``).

Only numbers derived from that research set ship; the photos never do. To
recalibrate: ``python bench/calibrate.py`` and copy its ``ship`` section here.

* ``verify_threshold``: dlib's published decision boundary (Euclidean distance 0.6
  between raw descriptors) as a cosine similarity of normalised descriptors: the
  cosine that agrees with dlib's rule on the most LFW pairs.
* ``tail``: the share of strangers' faces (LFW impostor pairs, one photo against
  one photo) scoring each similarity or more, in log10, and how much closer
  strangers come to the mean of several photos (``photo_shift``) and a
  template of several views (``view_shift``, ``bench/templates.py``); see
  :mod:`facestream.gallery.decision`.
"""

from __future__ import annotations

from typing import Any

DLIB_RESNET_V1: dict[str, Any] = {
    # agrees with dlib's Euclidean 0.6 on 99.64% of 18.2M LFW pairs (0.9135 / 0.914 per fold of people);
    # on LFW: 0.47% false accepts (95%: 0.42-0.52%), 2.7% false rejects (1.9-3.9%)
    "verify_threshold": 0.914,
    "tail": {
        "scores": [0.82971, 0.85203, 0.86678, 0.87794, 0.88694, 0.89455, 0.90115, 0.90704, 0.91234, 0.91724, 0.92179, 0.92612, 0.93027, 0.93415, 0.93787, 0.94149, 0.94470, 0.94786, 0.95097, 0.95387, 0.95650, 0.95961, 0.96216, 0.96468, 0.96658],
        "log10_p": [-0.2500, -0.5000, -0.7500, -1.0000, -1.2500, -1.5000, -1.7500, -2.0000, -2.2500, -2.5000, -2.7500, -3.0000, -3.2500, -3.5000, -3.7500, -4.0001, -4.2500, -4.4998, -4.7502, -4.9994, -5.2508, -5.5036, -5.7543, -6.0042, -6.2594],
        "photo_shift": 0.0126,
        # a query template of v views (a live track's distinct frames): tail read view_shift * (1 - 1/v) lower;
        # the largest of shift / (1 - 1/v) over v = 2, 3, 5 and levels 1e-3..1e-5 on LFW (bench/templates.py)
        "view_shift": 0.01495,
        "source": "LFW calibration set: 6031 photos of 2706 people, impostor pairs (bench/calibrate.py)",
    },
}

"""Which face a photo of one person is of: the rule enrolment and the demo's one-face checks share."""

from __future__ import annotations

import numpy as np

# A second face at least this fraction of the largest face's width makes the photo ambiguous, unless the
# photo is framed on the largest one.
SECOND_FACE_RATIO = 0.5


def photo_subject(widths: np.ndarray, boxes: np.ndarray, shape: tuple[int, ...]) -> tuple[int | None, bool]:
    """Which face a photo of one person is of: (its index or None when it cannot be told, whether others
    of similar size are in the picture).

    The largest face, when no other is at least ``SECOND_FACE_RATIO`` of its width (a small bystander is
    fine). With people of similar size beside it, the largest face is still the one meant when it is the
    only face whose box holds the photo's centre: a portrait framed on its subject, as a badge photo or
    a news crop is (550 of LFW's 6,031 photos show a second face of half the subject's width or more; in
    531 the largest face is alone at the centre, and it is the filed person in 393 of the 397 that could
    be checked: ``bench/framing.py``). Otherwise: None.
    """
    if not len(widths):
        return None, False
    order = np.argsort(-np.asarray(widths))
    largest = int(order[0])
    if len(widths) == 1 or widths[order[1]] < SECOND_FACE_RATIO * widths[largest]:
        return largest, False
    cy, cx = shape[0] / 2, shape[1] / 2
    central = [i for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes)) if x0 <= cx <= x1 and y0 <= cy <= y1]
    return (largest if central == [largest] else None), True

"""Names for faces: the face engine meets the gallery.

Opening the gallery and its matcher for the engine's model (:mod:`.identify`),
naming the faces of a photo, 1:1 verification, and enrolment with a verdict per
photo (:mod:`.enroll`). Used by the live runtime, the products and the CLI.
"""

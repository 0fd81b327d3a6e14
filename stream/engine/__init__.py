"""The face engine: pixels to embeddings.

Images in (:mod:`.imageio`), faces found (:mod:`.detect`), dlib's 5-point
landmarks (:mod:`.landmarks`), chips aligned (:mod:`.align`) and embedded by a
model (:mod:`.model_store` finds and caches it, :mod:`.networks` defines it,
:mod:`.runtimes` runs it), all behind :class:`.analyzer.FaceAnalyzer`. Imports
nothing of facestream but the configuration, the root error type and the gallery's
decision rule (``ImpostorTail``: a model's shipped operating points are read into it).
"""

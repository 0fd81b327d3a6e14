"""facestream's vision runtime, in layers (each imports only those below it):

* :mod:`.config`: the validated configuration;
* :mod:`.engine`: pixels to embeddings;
* :mod:`.recognition`: the engine meets the gallery (identify, verify, enrol);
* :mod:`.live`: sources, tracking, the pipeline and the websocket server;
* :mod:`.attendance`, :mod:`.demo`, :mod:`.dashboard`: the products;
* :mod:`.cli`: the command line.
"""

"""The live runtime: sources, detection scheduling, tracker, the frame step, embedding batcher, pipeline and file
outputs (the server that publishes them is :mod:`facestream.stream.serve`)."""

"""The live runtime: sources, tracker, embedding batcher, pipeline, file outputs and the websocket server."""

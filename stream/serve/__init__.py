"""Serving: the websocket/HTTP server that `facestream run` and the gateway share.

:mod:`.server` (the Starlette app and its lifecycle), :mod:`.fanout` (per-client queues),
:mod:`.access` (Host, Origin, token, sessions) with :mod:`.rate_limit`, :mod:`.commands` (what
clients may send), :mod:`.http_api` and :mod:`.recognition_api` (the HTTP API), :mod:`.metrics`
(Prometheus) and the dashboard's files. Products (attendance) plug in through
:mod:`.extensions`; the live runtime below knows nothing of any of it.
"""

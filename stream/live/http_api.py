"""The HTTP API's frame: one FastAPI app per server, mounted at ``/api``, with the OpenAPI description at
``/api/openapi.json`` and interactive docs at ``/api/docs``.

Routes are added by the layers that own them (attendance, recognition and people: ``stream/cluster/api.py``).
Access (Host, Origin, token) is checked by the server's :class:`facestream.stream.live.server.Guard` before
a route runs; the bearer scheme is declared here so the docs page can send the token.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from facestream.errors import FacestreamError

API_VERSION = "1"  # the API's own version: routes and fields change only with it
BEARER = HTTPBearer(auto_error=False, description="server.token (`facestream token` makes one)")


class NotFound(FacestreamError):
    """Something named in the request does not exist (HTTP 404)."""


class TooLarge(FacestreamError):
    """An upload over the size limit (HTTP 413)."""


def _status(exc: FacestreamError) -> int:
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, NotFound) or type(exc).__name__ in ("SessionNotFound", "PersonNotFound"):
        return 404
    return 400


def new_api(title: str = "facestream") -> FastAPI:
    """An empty API app: FacestreamErrors become ``{"error", "fix"}`` with 400/404/413, bad fields 422."""
    app = FastAPI(title=title, version=API_VERSION, openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
                  dependencies=[Security(BEARER)],
                  description="Live face recognition: identify, verify, enrol, people and attendance. Send "
                              "`Authorization: Bearer TOKEN` when the server has a token.")

    @app.exception_handler(FacestreamError)
    async def facestream_error(request: Request, exc: FacestreamError) -> JSONResponse:
        return JSONResponse({"error": exc.problem, "fix": exc.fix}, _status(exc),
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse({"error": f"Bad request ({problems}).", "fix": "See /api/docs for the fields."}, 422)

    return app

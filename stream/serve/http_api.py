"""The HTTP API's frame: one FastAPI app per server, mounted at ``/api``, with the OpenAPI description at
``/api/openapi.json`` and interactive docs at ``/api/docs``.

Routes are added by the layers that own them (attendance, recognition and people: ``stream/cluster/api.py``).
Access (Host, Origin, token) is checked by the server's :class:`facestream.stream.serve.server.Guard` before
a route runs; the bearer scheme is declared here so the docs page can send the token.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer

from facestream.errors import FacestreamError, NotFound

DOCS_DIR = Path(str(importlib.resources.files("facestream.stream.serve") / "api_docs"))
DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
              "favicon-32x32.png": "image/png"}
API_VERSION = "1"  # the API's own version: routes and fields change only with it
BEARER = HTTPBearer(auto_error=False, description="server.token (`facestream token` makes one)")


class TooLarge(FacestreamError):
    """An upload over the size limit (HTTP 413)."""


def _status(exc: FacestreamError) -> int:
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, NotFound):
        return 404
    return 400


def new_api(title: str = "facestream") -> FastAPI:
    """An empty API app: FacestreamErrors become ``{"error", "fix"}`` with 400/404/413, bad fields 422."""
    app = FastAPI(title=title, version=API_VERSION, openapi_url="/openapi.json", docs_url=None, redoc_url=None,
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

    _docs(app)
    return app


def _docs(app: FastAPI) -> None:
    """Interactive docs from the Swagger UI files shipped in the package (no CDN), under a strict CSP."""

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} API",
                                   swagger_js_url=f"{root}/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs/static/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs/static/favicon-32x32.png")
        page.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
        return page

    @app.get("/docs/static/{name}", include_in_schema=False)
    async def docs_file(name: str) -> Response:
        if name not in DOCS_FILES:
            raise NotFound(f"No docs file {name!r}.", "See /api/docs.")
        path = DOCS_DIR / name
        return Response(path.read_bytes(), media_type=DOCS_FILES[name],
                        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})

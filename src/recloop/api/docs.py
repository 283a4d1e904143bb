"""``/docs`` and ``/redoc``: Swagger UI and ReDoc served from files installed with the
package, so the API's documentation opens on a machine with no internet (FastAPI's defaults
load them, and ReDoc's fonts, from CDNs).

The files are the ones the ``fastapi-offline`` package ships (Swagger UI 5, which reads the
OpenAPI 3.1 that FastAPI writes, and ReDoc's standalone bundle); only the files are used.
ReDoc is served without Google's fonts (the browser's own stand in) and with its sidebar
logo pointed at the local icon instead of Redocly's CDN.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

#: The installed Swagger UI and ReDoc files, and where they are served.
STATIC = Path(str(files("fastapi_offline") / "static"))
ASSETS = "/docs-assets"
#: ReDoc's bundle, as served (its logo made local).
REDOC_JS_URL = "/redoc-assets/redoc.standalone.js"
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _redoc_js() -> bytes:
    """ReDoc's bundle with its one remote image pointed at the local icon."""
    return (
        (STATIC / "redoc.standalone.js")
        .read_bytes()
        .replace(_REDOC_LOGO, f"{ASSETS}/favicon.png".encode())
    )


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets from the installed files (no key
    needed)."""
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=REDOC_JS_URL,
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(REDOC_JS_URL, include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(_redoc_js(), media_type="text/javascript")

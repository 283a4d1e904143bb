"""The web dashboard at ``/dashboard``: server-rendered pages, a stylesheet and a few lines
of script, all installed with the package (nothing is loaded from another host)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from recloop.api.dashboard.auth import SignInNeeded
from recloop.api.dashboard.routes import HEADERS, router

#: Where the dashboard's own stylesheet and script are served.
STATIC = "/dashboard/static"


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's pages and files; a page asked for without a sign-in sends the
    browser to the sign-in form."""

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/dashboard/login", status_code=303, headers=HEADERS)

    app.add_exception_handler(SignInNeeded, to_sign_in)
    app.mount(STATIC, StaticFiles(directory=Path(__file__).parent / "static"), name="dashboard")
    app.include_router(router)

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_root() -> Response:
        return RedirectResponse("/dashboard/", status_code=307)

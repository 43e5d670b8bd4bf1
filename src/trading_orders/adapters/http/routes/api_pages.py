"""The API's ReDoc page, with fastapi-offline's copy of ReDoc's script less its one request off the service."""

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

# Where FastAPIOffline serves the scripts, styles and icon it ships (its default).
OFFLINE_ASSETS = "/static-offline-docs"
REDOC_SCRIPT = "/redoc/redoc.standalone.js"
# ReDoc's script draws Redocly's logo beside "API docs by Redocly" from their CDN, whatever the
# page says, and a desk network reaches no CDN. An empty image fails to draw, which ReDoc
# handles by showing no logo: the same page, loaded from this service alone.
_REMOTE_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_SCRIPT = (
    resources.files("fastapi_offline")
    .joinpath("static", "redoc.standalone.js")
    .read_bytes()
    .replace(_REMOTE_LOGO, b"data:,")
)


@router.get("/redoc")
def redoc_page(request: Request) -> HTMLResponse:
    """The OpenAPI schema as ReDoc shows it."""
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{REDOC_SCRIPT}",
        redoc_favicon_url=f"{root}{OFFLINE_ASSETS}/favicon.png",
        with_google_fonts=False,
    )


@router.get(REDOC_SCRIPT)
def redoc_script() -> Response:
    """ReDoc's script, as the page above loads it."""
    return Response(_SCRIPT, media_type="text/javascript; charset=utf-8")

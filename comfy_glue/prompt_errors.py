"""Missing model files in core's loaders, worded like ours in the server's answer to a refused prompt.

ComfyUI refuses a prompt whose DualCLIPLoader / VAELoader / LoraLoader... names a file the folder lacks with
"Value not in list: clip_name1: 'clip_l.safetensors' not in [...]": the file, but not where it goes nor where it
comes from. Our loaders' own validation says both. A middleware on POST /prompt passes a refused prompt's answer
through ``model_check.explain_missing_files``, so the browser's error dialog, the HTTP API and ``kontext-atelier run``
show one kind of line per missing file whichever loader reads it. It changes only those errors' details, and passes
any other answer (accepted prompts, other routes, anything it cannot read) through untouched.
"""

from __future__ import annotations

import json

from aiohttp import web

from ..atelier_core import model_check

PROMPT_PATHS = ("/prompt", "/api/prompt")


@web.middleware
async def explain_missing_models(request: web.Request, handler):
    response = await handler(request)
    if request.method != "POST" or request.path not in PROMPT_PATHS or response.status != 400:
        return response
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return response
    try:
        answer = json.loads(response.text)
    except (TypeError, ValueError):
        return response
    if not isinstance(answer, dict) or not model_check.explain_missing_files(answer):
        return response
    return web.json_response(answer, status=response.status)


def install() -> bool:
    """Add the middleware to the running ComfyUI's server once; False where there is none to add it to (ComfyUI
    used as a library, a test harness) or it already serves (the app's middlewares freeze when it starts)."""
    try:
        from server import PromptServer
    except ImportError:
        return False
    app = getattr(getattr(PromptServer, "instance", None), "app", None)
    middlewares = getattr(app, "middlewares", None)
    if middlewares is None or getattr(middlewares, "frozen", True):
        return False
    if any(getattr(m, "__name__", "") == explain_missing_models.__name__ for m in middlewares):
        return True  # a second load of the pack in the same server
    middlewares.append(explain_missing_models)
    return True

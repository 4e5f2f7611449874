"""The Flask adapter (``DPoP`` extension) serving ``/protected``; run it under gunicorn sync workers."""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify

from dpop_middleware.flask import DPoP, current_dpop

from .config import build_verifier

app = Flask(__name__)
app.config["DPOP_VERIFIER"] = build_verifier(asynchronous=False)
dpop = DPoP(app)


@app.after_request
def tag_worker(response: Response) -> Response:
    response.headers["X-Worker-Pid"] = str(os.getpid())  # lets the test aim at every worker
    return response


@app.get("/health")
@dpop.exempt
def health() -> Response:
    return jsonify(ok=True)


@app.route("/protected", methods=["GET", "POST"])
@dpop.required
def protected() -> Response:
    return jsonify(sub=current_dpop.subject, pid=os.getpid())

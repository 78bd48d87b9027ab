"""The BentoML service inspection platforms call: tiers, scoring, explanations, draws, results.

A thin class (BentoML 1.4 style): everything it answers comes from pure modules —
``serving.runtime`` (champion and snapshot in memory), ``training.explain`` (explanations),
``serving.draws`` (the draw engine), ``serving.audit`` / ``serving.auth`` / ``serving.masking``.
Each endpoint authenticates the API key, checks the role, validates the body (pydantic, then the
domain checks), answers, and appends to the audit trail; a refused request answers 4xx with the
field and the problem and writes nothing but its refusal to the audit log.

Configuration (environment): ``RISK_WORKDIR`` (workspace with snapshots and validated sources),
``RISK_MLRUNS`` (MLflow home), ``RISK_DB`` (SQLAlchemy URL of the audit and key database;
default ``sqlite:///<workdir>/service.db``), ``RISK_MODEL`` (registered model name).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import anyio
import bentoml
from starlette.responses import JSONResponse, Response

from serving import runtime
from serving.audit import input_hash
from serving.auth import Forbidden, KeyStore, Permission, Unauthorized, has_permission
from serving.masking import mask_codes
from serving.schemas import (
    DrawCreate,
    DrawRef,
    ExplainRequest,
    IngestRequest,
    ScoreRequest,
    TiersRequest,
)
from serving.settings import settings

log = logging.getLogger("serving")


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


@dataclass(frozen=True)
class Answer:
    """A pre-rendered JSON answer (UTF-8) and the summary of it the audit trail keeps."""

    text: bytes
    summary: dict


def _explain_then_freeze(state: runtime.Loaded) -> None:
    """Reasons of the whole snapshot, then :func:`gc.freeze` again.

    Why freeze: a worker holds millions of long-lived objects (model, snapshot, libraries);
    every full (generation 2) collection walked them all — 0.4–0.6 s with the event loop
    stopped, measured under load, which was the 99th-percentile latency of tier requests.
    Frozen objects are left out of collections; garbage made while serving is still
    collected."""
    runtime.explain_all(state)
    gc.freeze()


def _json(obj: Any) -> Response:
    """Plain JSON (NaN → null, numpy and dates converted), UTF-8 without escapes."""
    from serving.audit import _plain

    body = json.dumps(_plain(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body, media_type="application/json")


_HEALTH = ["/metrics", "/healthz", "/livez", "/readyz"]  # BentoML's default skip_paths


@bentoml.service(
    name="credit-risk-supervision",
    traffic={"timeout": 120},
    workers=int(os.environ.get("RISK_WORKERS", "2")),
    # Defaults an operator can override in a BentoML configuration file (BENTOML_CONFIG):
    # the lean paths write no access-log line (each answer is in the audit trail, each refusal
    # in the service log) and open no OpenTelemetry span; Prometheus metrics still count them.
    logging={"access": {"skip_paths": [*_HEALTH, "/v1/tiers", "/v1/score"]}},
    tracing={"excluded_urls": ["/v1/tiers", "/v1/score"]},
)
class RiskService:
    """Loads the champion and the latest snapshot at start-up; not ready without both."""

    def __init__(self) -> None:
        from serving.audit import AuditLog, GroupCommit
        from serving.auth import KeyStore
        from serving.draw_desk import DrawDesk
        from serving.masking import install

        for name in ("", "bentoml", "serving"):  # individual businesses' codes never in logs
            install(logging.getLogger(name))
        cfg = settings()
        self.cfg = cfg
        self.audit = AuditLog(cfg.db, checkpoint_in_background=True)
        self.audit_writer = GroupCommit(self.audit)
        self.keys = KeyStore(cfg.db)
        self.desk = DrawDesk(cfg.db, cfg.workdir)
        self.problem = ""
        self.state: runtime.Loaded | None = None
        global _live
        _live = self
        try:
            self.state = runtime.load(cfg.workdir, cfg.mlruns, cfg.model)
            threading.Thread(
                target=_explain_then_freeze, args=(self.state,), name="reasons", daemon=True
            ).start()
        except runtime.NotReady as exc:
            self.problem = str(exc)
            log.error("not ready: %s", exc)
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.state is not None

    # -- plumbing ---------------------------------------------------------------------------

    def _loaded(self) -> runtime.Loaded:
        if self.state is None:
            raise runtime.NotReady(self.problem)
        return self.state

    def _versions(self) -> dict[str, str | None]:
        s = self.state
        return {
            "model_version": s.model_version if s else None,
            "snapshot_version": s.snapshot_version if s else None,
        }

    async def _serve(
        self,
        ctx: bentoml.Context,
        permission,
        action: str,
        body: dict,
        answer,
        *,
        clear_codes: bool = False,
    ) -> Response:
        """:meth:`_answer` for a request BentoML parsed (the status goes on ``ctx``: BentoML
        answers with ``ctx.response.status_code`` when an API takes a context)."""
        header = ctx.request.headers.get("authorization") or ctx.request.headers.get("x-api-key")
        shown = await self._answer(header, permission, action, body, answer, clear_codes)
        ctx.response.status_code = shown.status_code
        return shown

    async def _answer(
        self,
        header: str | None,
        permission,
        action: str,
        body: dict,
        answer,
        clear_codes: bool,
        principal=None,
    ) -> Response:
        """Authenticate, authorise, answer, mask, audit; refusals → 4xx naming the field.

        ``clear_codes``: the answer is about whom to inspect (a draw's targets), which the
        caller holding the permission needs in clear; everywhere else individual businesses'
        codes are masked for roles without ``UNMASKED``. Shared by the BentoML endpoints and
        the lean path (:class:`KeyFirst`), so both answer, refuse and audit alike.
        ``principal``: who :class:`KeyFirst` already authenticated ``header`` as, with this
        service's key store (the lean path), so the key is not checked twice."""
        try:
            if principal is None:
                principal = self.keys.authenticate(header)
            self.keys.authorize(principal, permission)
            result = await answer(principal)
        except Unauthorized as exc:
            return self._refuse(None, action, 401, "authorization", str(exc))
        except Forbidden as exc:
            return self._refuse(principal, action, 403, "authorization", str(exc))
        except runtime.NotReady as exc:
            return self._refuse(principal, action, 503, "service", f"not ready: {exc}")
        except runtime.BadRequest as exc:
            return self._refuse(principal, action, exc.status, exc.field, exc.message)
        if isinstance(result, Answer):  # pre-rendered JSON and what the audit keeps of it
            shown = Response(result.text, media_type="application/json")
            output = result.summary
        else:
            shown = _json(result if clear_codes else mask_codes(result, principal.role))
            output = result
        await self.audit_writer.append(
            principal.key_id,
            principal.role,
            action,
            payload={"request": body, "response": output},
            input_hash=input_hash(body),
            **self._versions(),
        )
        return shown

    def _refuse(self, principal, action, status, field, message) -> JSONResponse:
        """Refusals change no stored state: they go to the (masked) application log only."""
        from serving.masking import mask_text

        who = f"key {principal.key_id} ({principal.role})" if principal else "no valid key"
        log.warning("refused %s → %d %s: %s [%s]", action, status, field, mask_text(message), who)
        return _error(status, field, message)

    # -- tiers and scores -------------------------------------------------------------------

    @bentoml.api(route="/v1/tiers", input_spec=TiersRequest)
    async def tiers(self, codes, scheme, reasons, lang, ctx: bentoml.Context) -> dict:
        """Probability and tiers (active policy) for a batch of codes, with top reasons."""
        body, answer = self._tiers_job(codes, scheme, reasons, lang)
        return await self._serve(ctx, Permission.TIERS, "tiers", body, answer)

    def _tiers_job(self, codes, scheme, reasons, lang):
        """The audited request body of a tier request and how to answer it."""
        body = {"codes": codes, "scheme": scheme, "reasons": reasons, "lang": lang}

        async def answer(principal):
            state = self._loaded()
            masked = not has_permission(principal.role, Permission.UNMASKED)
            text, tiers = runtime.tiers(
                state, codes, scheme=scheme, reasons=reasons, lang=lang, masked=masked
            )
            raw = text.encode("utf-8")  # once, for the digest and the response
            return Answer(raw, {"tiers": tiers, "sha256": hashlib.sha256(raw).hexdigest()})

        return body, answer

    @bentoml.api(route="/v1/score", input_spec=ScoreRequest)
    async def score(self, rows, scheme, reasons, lang, ctx: bentoml.Context) -> dict:
        """Score supplied feature rows (platforms holding their own data)."""
        body, answer = self._score_job(rows, scheme, reasons, lang)
        return await self._serve(ctx, Permission.TIERS, "score", body, answer)

    def _score_job(self, rows, scheme, reasons, lang):
        plain = [r.model_dump() for r in rows]
        body = {"rows": plain, "scheme": scheme, "reasons": reasons, "lang": lang}

        async def answer(_):
            state = self._loaded()
            items = await anyio.to_thread.run_sync(
                lambda: runtime.score_rows(
                    state.model, plain, scheme=scheme, reasons=reasons, lang=lang
                )
            )
            return {"model_version": state.model_version, "results": items}

        return body, answer

    @bentoml.api(route="/v1/explain", input_spec=ExplainRequest)
    async def explain(self, credit_code, reasons, lang, ctx: bentoml.Context) -> dict:
        """Contributions, reasons, linked records and objections of one enterprise."""
        from training.explain.enterprise import explain_enterprise

        body = {"credit_code": credit_code, "reasons": reasons, "lang": lang}

        async def answer(_):
            state = self._loaded()
            if credit_code not in state.index:
                raise runtime.BadRequest(
                    "credit_code", f"{credit_code} is not in snapshot {state.snapshot_version}", 404
                )
            validated = self.cfg.validated
            e = await anyio.to_thread.run_sync(
                lambda: explain_enterprise(
                    state.model, validated, credit_code, state.as_of, k=reasons
                )
            )
            return {**self._versions(), **e.to_dict(lang)}

        return await self._serve(ctx, Permission.EXPLANATIONS, "explain", body, answer)

    # -- draws --------------------------------------------------------------------------------

    @bentoml.api(route="/v1/draws/create", input_spec=DrawCreate)
    async def draw_create(
        self, draw_id, draw_date, department, policy, scheme, inspectors, seed, ctx: bentoml.Context
    ) -> dict:
        """Commit to a draw and draw its targets and teams; the seed stays secret until publish.

        The draw runs on public references of individual businesses (``serving.public_refs``);
        the answer resolves them for the platform that inspects: each target's ``credit_code``
        (and each key of ``teams``) is the real code, ``public_ref`` how the target appears in
        the public record; ``parameters`` and ``policy`` are as committed (references)."""
        body = {"draw_id": draw_id, "draw_date": draw_date, "department": department,
                "policy": policy, "scheme": scheme, "inspectors": inspectors is not None}  # fmt: skip

        async def answer(principal):
            state = self._loaded()
            active = runtime.scheme_of(state.model, scheme)
            await anyio.to_thread.run_sync(
                lambda: self.desk.create(
                    state,
                    draw_id=draw_id,
                    draw_date=draw_date,
                    department=department,
                    policy=policy,
                    scheme=active,
                    actor=principal.key_id,
                    inspectors=inspectors,
                    seed=seed,
                )
            )
            return self.desk.fetch(draw_id)

        return await self._serve(
            ctx, Permission.DRAWS, "draw_create", body, answer, clear_codes=True
        )

    @bentoml.api(route="/v1/draws/get", input_spec=DrawRef)
    async def draw_get(self, draw_id, ctx: bentoml.Context) -> dict:
        """A draw's targets, teams and commitment (and its seed once published); targets resolved
        to real codes as in :meth:`draw_create`."""

        async def answer(_):
            return await anyio.to_thread.run_sync(lambda: self.desk.fetch(draw_id))

        body = {"draw_id": draw_id}
        return await self._serve(ctx, Permission.DRAWS, "draw_get", body, answer, clear_codes=True)

    @bentoml.api(route="/v1/draws/publish", input_spec=DrawRef)
    async def draw_publish(self, draw_id, ctx: bentoml.Context) -> dict:
        """Reveal the seed and write the public record (JSON and CSV); answers with the record
        exactly as published (public references: no individual business's code)."""

        async def answer(_):
            return await anyio.to_thread.run_sync(lambda: self.desk.publish(draw_id))

        body = {"draw_id": draw_id}
        return await self._serve(ctx, Permission.DRAWS, "draw_publish", body, answer)

    @bentoml.api(route="/v1/draws/verify", input_spec=DrawRef)
    async def draw_verify(self, draw_id, ctx: bentoml.Context) -> dict:
        """Re-run the draw from its inputs and seed and compare, as anyone can from the files."""

        async def answer(_):
            return await anyio.to_thread.run_sync(lambda: self.desk.verify(draw_id))

        body = {"draw_id": draw_id}
        return await self._serve(ctx, Permission.DRAWS, "draw_verify", body, answer)

    @bentoml.api(route="/v1/draws/lift", input_spec=DrawRef)
    async def draw_lift(self, draw_id, ctx: bentoml.Context) -> dict:
        """Problem rate of the risk-weighted arm over the control arm, with a 95 % interval."""

        async def answer(_):
            return await anyio.to_thread.run_sync(lambda: self.desk.lift(draw_id))

        return await self._serve(ctx, Permission.DRAWS, "draw_lift", {"draw_id": draw_id}, answer)

    @bentoml.api(route="/v1/results", input_spec=IngestRequest)
    async def ingest_results(self, results, ctx: bentoml.Context) -> dict:
        """Outcomes of drawn inspections (they feed the next training and each draw's lift)."""
        items = [r.model_dump() for r in results]

        async def answer(principal):
            return await anyio.to_thread.run_sync(lambda: self.desk.ingest(items, principal.key_id))

        return await self._serve(ctx, Permission.INGEST, "ingest", {"results": items}, answer)


#: The service instance of this worker process, for the lean path (set when it is created).
_live: Any = None

#: Paths the lean path answers, and what BentoML's access log and tracing skip by default.
LEAN_PATHS = ("/v1/tiers", "/v1/score")

_BENTOML_ERROR = {"error": "An unexpected error has occurred, please check the server log."}


@functools.cache
def _lean_jobs() -> dict[str, tuple[Any, str, str, str]]:
    """Lean path → (BentoML's own input model for it, job builder, permission, audit action)."""
    return {
        "/v1/tiers": (RiskService.apis["tiers"].input_spec, "_tiers_job", Permission.TIERS, "tiers"),
        "/v1/score": (RiskService.apis["score"].input_spec, "_score_job", Permission.TIERS, "score"),
    }  # fmt: skip


async def _read_body(receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            return None


async def lean_answer(
    service, path: str, header: str | None, raw: bytes, principal=None
) -> Response:
    """Answer a JSON POST to a :data:`LEAN_PATHS` path without BentoML's request machinery.

    The body is validated with the very input model BentoML builds for the endpoint, so a bad
    body gets BentoML's 400 byte for byte (``{"error": "N validation error for …", "detail":
    [...]}``); then the endpoint's own job runs through :meth:`RiskService._answer` —
    authentication (unless ``principal`` is who the caller already authenticated ``header``
    as, with ``service.keys``), role, masking, audit row, refusals — exactly as on the
    BentoML path."""
    from pydantic import ValidationError

    spec, job, permission, action = _lean_jobs()[path]
    try:
        try:
            request = spec.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            log.warning("refused %s → 400: %d validation error(s)", action, exc.error_count())
            data = {
                "error": f"{exc.error_count()} validation error for {exc.title}",
                "detail": exc.errors(include_context=False, include_input=False),
            }
            return JSONResponse(data, status_code=400)
        fields = {k: getattr(request, k) for k in type(request).model_fields}
        body, answer = getattr(service, job)(**fields)
        return await service._answer(header, permission, action, body, answer, False, principal)
    except Exception:
        log.exception("%s failed", action)
        return JSONResponse(_BENTOML_ERROR, status_code=500)


class KeyFirst:
    """ASGI middleware: a call to ``/v1/`` without a valid key is answered 401 before its body
    is read or validated, so anonymous callers learn nothing about the API's inputs.

    It is also the **lean path**: a JSON ``POST`` to ``/v1/tiers`` or ``/v1/score`` is answered
    here (:func:`lean_answer`) instead of being passed on to BentoML's router, request context,
    input-model plumbing and response building, which cost several times our own work per
    request. Everything else (other content types, methods and paths, a worker whose service
    is not created yet) goes on to BentoML unchanged. Outside this middleware BentoML still
    applies its Prometheus metrics (``/metrics`` counts these paths too), traffic timeout and
    error handling; its access log and OpenTelemetry spans skip :data:`LEAN_PATHS` by the
    service's configuration (see ``RiskService``)."""

    def __init__(self, app) -> None:
        self.app = app
        self.keys = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        live = _live
        if live is not None:  # the service's own store: one key cache per worker
            keys = live.keys
        else:
            if self.keys is None:
                self.keys = KeyStore(settings().db)
            keys = self.keys
        auth = api_key = content_type = None
        for k, v in scope["headers"]:
            name = k.lower()
            if name == b"authorization":
                auth = v
            elif name == b"x-api-key":
                api_key = v
            elif name == b"content-type" and content_type is None:
                content_type = v
        raw_header = auth or api_key
        header = raw_header.decode("latin-1") if raw_header is not None else None
        try:
            principal = keys.authenticate(header)
        except Unauthorized as exc:
            log.warning("refused %s → 401: %s", scope["path"], exc)
            await _error(401, "authorization", str(exc))(scope, receive, send)
            return
        path = scope["path"]
        media = (content_type or b"application/json").split(b";")[0].strip().lower()
        if (
            path not in LEAN_PATHS
            or scope["method"] != "POST"
            or media != b"application/json"
            or live is None
        ):
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        if raw is None:  # the client is gone: nothing to answer, nothing done
            return
        response = await lean_answer(live, path, header, raw, principal)
        # What ``response(scope, receive, send)`` sends once BentoML's ``server`` header is
        # appended, without building the response's mutable header view for it.
        headers = [*response.raw_headers, _SERVER_HEADER]
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": headers})  # fmt: skip
        await send({"type": "http.response.body", "body": response.body})


#: The ``server`` header BentoML's own responses carry, for the lean path's answers.
_SERVER_HEADER = (b"server", f"BentoML Service/{RiskService.name}".encode("latin-1"))

RiskService.add_asgi_middleware(KeyFirst)


def _patch_traffic_timeout() -> None:
    """Make BentoML's ``TimeoutMiddleware`` (1.4) let go of each request when it is answered.

    BentoML arms ``loop.call_later(timeout, …)`` per request and never cancels it, so every
    request's timer, future and context stay alive for the whole traffic timeout (120 s here):
    at 2,000 requests/s that is ~240,000 live timers per worker, which the event loop's timer
    heap and every full garbage collection walk (measured: gen-2 pauses of 40–60 ms that grew
    with the backlog). Same behaviour otherwise — a request not answered within the timeout
    still gets 504 — except that the timer is cancelled once the request is done, and a
    request whose handler ends (or fails) without answering no longer waits for the timeout.
    """
    import asyncio

    from bentoml._internal.server.http import traffic

    cls = traffic.TimeoutMiddleware
    if getattr(cls, "_risk_patched", False):
        return

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        def _done(_) -> None:
            if not waiter.done():
                waiter.set_result(None)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        fut.add_done_callback(_done)
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                resp = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504,
                )
                await resp(scope, receive, send)
        else:
            await fut
        finally:
            timer.cancel()

    cls.__call__ = __call__
    cls._risk_patched = True


_patch_traffic_timeout()

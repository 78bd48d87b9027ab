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
    """A pre-rendered JSON answer and the summary of it the audit trail keeps."""

    text: str
    summary: dict


def _json(obj: Any) -> Response:
    """Plain JSON (NaN → null, numpy and dates converted), UTF-8 without escapes."""
    from serving.audit import _plain

    body = json.dumps(_plain(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body, media_type="application/json")


@bentoml.service(
    name="credit-risk-supervision",
    traffic={"timeout": 120},
    workers=int(os.environ.get("RISK_WORKERS", "2")),
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
        self.audit = AuditLog(cfg.db)
        self.audit_writer = GroupCommit(self.audit)
        self.keys = KeyStore(cfg.db)
        self.desk = DrawDesk(cfg.db, cfg.workdir)
        self.problem = ""
        self.state: runtime.Loaded | None = None
        try:
            self.state = runtime.load(cfg.workdir, cfg.mlruns, cfg.model)
            threading.Thread(
                target=runtime.explain_all, args=(self.state,), name="reasons", daemon=True
            ).start()
        except runtime.NotReady as exc:
            self.problem = str(exc)
            log.error("not ready: %s", exc)

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
    ):
        """Authenticate, authorise, answer, mask, audit; refusals → 4xx naming the field.

        ``clear_codes``: the answer is about whom to inspect (a draw's targets), which the
        caller holding the permission needs in clear; everywhere else individual businesses'
        codes are masked for roles without ``UNMASKED``."""
        from serving.audit import input_hash
        from serving.auth import Forbidden, Unauthorized
        from serving.masking import mask_codes

        header = ctx.request.headers.get("authorization") or ctx.request.headers.get("x-api-key")
        principal = None
        try:
            principal = self.keys.authenticate(header)
            self.keys.authorize(principal, permission)
            result = await answer(principal)
        except Unauthorized as exc:
            return self._refuse(ctx, None, action, 401, "authorization", str(exc))
        except Forbidden as exc:
            return self._refuse(ctx, principal, action, 403, "authorization", str(exc))
        except runtime.NotReady as exc:
            return self._refuse(ctx, principal, action, 503, "service", f"not ready: {exc}")
        except runtime.BadRequest as exc:
            return self._refuse(ctx, principal, action, exc.status, exc.field, exc.message)
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

    def _refuse(self, ctx, principal, action, status, field, message) -> JSONResponse:
        """Refusals change no stored state: they go to the (masked) application log only.
        (BentoML answers with ``ctx.response.status_code`` when an API takes a context.)"""
        from serving.masking import mask_text

        ctx.response.status_code = status
        who = f"key {principal.key_id} ({principal.role})" if principal else "no valid key"
        log.warning("refused %s → %d %s: %s [%s]", action, status, field, mask_text(message), who)
        return _error(status, field, message)

    # -- tiers and scores -------------------------------------------------------------------

    @bentoml.api(route="/v1/tiers", input_spec=TiersRequest)
    async def tiers(self, codes, scheme, reasons, lang, ctx: bentoml.Context) -> dict:
        """Probability and tiers (active policy) for a batch of codes, with top reasons."""
        from serving.auth import Permission

        body = {"codes": codes, "scheme": scheme, "reasons": reasons, "lang": lang}

        async def answer(principal):
            from serving.auth import has_permission

            state = self._loaded()
            masked = not has_permission(principal.role, Permission.UNMASKED)
            text, tiers = runtime.tiers(
                state, codes, scheme=scheme, reasons=reasons, lang=lang, masked=masked
            )
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            return Answer(text, {"tiers": tiers, "sha256": digest})

        return await self._serve(ctx, Permission.TIERS, "tiers", body, answer)

    @bentoml.api(route="/v1/score", input_spec=ScoreRequest)
    async def score(self, rows, scheme, reasons, lang, ctx: bentoml.Context) -> dict:
        """Score supplied feature rows (platforms holding their own data)."""
        from serving.auth import Permission

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

        return await self._serve(ctx, Permission.TIERS, "score", body, answer)

    @bentoml.api(route="/v1/explain", input_spec=ExplainRequest)
    async def explain(self, credit_code, reasons, lang, ctx: bentoml.Context) -> dict:
        """Contributions, reasons, linked records and objections of one enterprise."""
        from serving.auth import Permission
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
        """Commit to a draw and draw its targets and teams; the seed stays secret until publish."""
        from serving.auth import Permission

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
        """A draw's targets, teams and commitment (and its seed once published)."""
        from serving.auth import Permission

        async def answer(_):
            return await anyio.to_thread.run_sync(lambda: self.desk.fetch(draw_id))

        body = {"draw_id": draw_id}
        return await self._serve(ctx, Permission.DRAWS, "draw_get", body, answer, clear_codes=True)

    @bentoml.api(route="/v1/draws/publish", input_spec=DrawRef)
    async def draw_publish(self, draw_id, ctx: bentoml.Context) -> dict:
        """Reveal the seed and write the public record (JSON and CSV)."""
        from serving.auth import Permission

        async def answer(_):
            return await anyio.to_thread.run_sync(lambda: self.desk.publish(draw_id))

        body = {"draw_id": draw_id}
        return await self._serve(
            ctx, Permission.DRAWS, "draw_publish", body, answer, clear_codes=True
        )

    @bentoml.api(route="/v1/draws/verify", input_spec=DrawRef)
    async def draw_verify(self, draw_id, ctx: bentoml.Context) -> dict:
        """Re-run the draw from its inputs and seed and compare, as anyone can from the files."""
        from serving.auth import Permission

        async def answer(_):
            return await anyio.to_thread.run_sync(lambda: self.desk.verify(draw_id))

        body = {"draw_id": draw_id}
        return await self._serve(ctx, Permission.DRAWS, "draw_verify", body, answer)

    @bentoml.api(route="/v1/draws/lift", input_spec=DrawRef)
    async def draw_lift(self, draw_id, ctx: bentoml.Context) -> dict:
        """Problem rate of the risk-weighted arm over the control arm, with a 95 % interval."""
        from serving.auth import Permission

        async def answer(_):
            return await anyio.to_thread.run_sync(lambda: self.desk.lift(draw_id))

        return await self._serve(ctx, Permission.DRAWS, "draw_lift", {"draw_id": draw_id}, answer)

    @bentoml.api(route="/v1/results", input_spec=IngestRequest)
    async def ingest_results(self, results, ctx: bentoml.Context) -> dict:
        """Outcomes of drawn inspections (they feed the next training and each draw's lift)."""
        from serving.auth import Permission

        items = [r.model_dump() for r in results]

        async def answer(principal):
            return await anyio.to_thread.run_sync(lambda: self.desk.ingest(items, principal.key_id))

        return await self._serve(ctx, Permission.INGEST, "ingest", {"results": items}, answer)


class KeyFirst:
    """ASGI middleware: a call to ``/v1/`` without a valid key is answered 401 before its body
    is read or validated, so anonymous callers learn nothing about the API's inputs."""

    def __init__(self, app) -> None:
        self.app = app
        self.keys = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        from serving.auth import KeyStore, Unauthorized

        if self.keys is None:
            self.keys = KeyStore(settings().db)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self.keys.authenticate(headers.get("authorization") or headers.get("x-api-key"))
        except Unauthorized as exc:
            log.warning("refused %s → 401: %s", scope["path"], exc)
            await _error(401, "authorization", str(exc))(scope, receive, send)
            return
        await self.app(scope, receive, send)


RiskService.add_asgi_middleware(KeyFirst)

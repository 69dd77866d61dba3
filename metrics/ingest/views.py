"""POST /api/ingest/ (docs/api.md "Ingest").

A DRF APIView for token authentication, permissions and the schema, but the body bypasses DRF's
parsers: it is read with a hard size bound, gunzipped with a bound on the output (a zip bomb stops
at INGEST_MAX_BODY_BYTES), and validated by pydantic straight from the bytes. Every answer about
bad input is a 4xx naming the field.

DRF stays: HTTP, Django's middleware, DRF and (cached) token authentication together cost about
1 ms of worker CPU per request, measured on the 415 path with a 40 KB body, against about 12 ms
for a whole 110-pod batch, so a plain Django view would save little.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from django.conf import settings
from django.http import JsonResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from metrics import clusters, telemetry
from metrics.auth import HasIngestScope
from metrics.outage import OUTAGE_ERRORS
from metrics.ingest import writer
from metrics.ingest.auth import CachedTokenAuthentication
from metrics.ingest.schema import BatchInvalid, IngestBatch, parse_batch
from metrics.models import ApiToken

# Clocks further ahead than this get an X-Kubemonitor-Clock-Skew warning header.
SKEW_WARNING_SECONDS = 10.0


def _error(status: int, field: str, message: str) -> JsonResponse:
    return JsonResponse({"errors": {field: [message]}}, status=status)


class _BodyError(Exception):
    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.response = _error(status, field, message)


def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped if need be, never more than `limit` bytes in or out."""
    meta = request.META
    if not meta.get("CONTENT_LENGTH") and "HTTP_TRANSFER_ENCODING" not in meta:
        raise _BodyError(400, "body", "The request body is empty.")
    media_type = meta.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise _BodyError(415, "Content-Type", "Send the batch as application/json.")
    encoding = meta.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise _BodyError(415, "Content-Encoding", "Only gzip (or no encoding) is accepted.")
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise _BodyError(400, "Content-Length", "Not a number.") from None
    if length > limit:
        raise _BodyError(413, "body", f"The body is larger than {limit} bytes.")
    # Django's own read (not request.body) so that DATA_UPLOAD_MAX_MEMORY_SIZE does not apply:
    # INGEST_MAX_BODY_BYTES is the limit here.
    if meta.get("CONTENT_LENGTH"):
        raw = request._request.read(limit + 1)
    else:
        # Transfer-Encoding: chunked: gunicorn de-chunks into wsgi.input and sets no
        # CONTENT_LENGTH, so Django's stream (bounded by CONTENT_LENGTH, i.e. 0) would read
        # nothing. Read the raw input, still never more than limit + 1 bytes.
        raw = _read_at_most(meta["wsgi.input"], limit + 1)
    if len(raw) > limit:
        raise _BodyError(413, "body", f"The body is larger than {limit} bytes.")
    if encoding != "gzip":
        return raw
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise _BodyError(400, "body", f"Malformed gzip data: {exc}.") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise _BodyError(413, "body", f"The body is larger than {limit} bytes once decompressed.")
    if not inflater.eof:
        raise _BodyError(400, "body", "Truncated gzip data.")
    if inflater.unused_data:
        raise _BodyError(400, "body", "Unexpected data after the gzip stream.")
    return body


def _read_at_most(stream: Any, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = stream.read(min(left, 64 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


@dataclass
class Outcome:
    """What a valid batch came to, for kubemonitor's own /metrics (metrics.telemetry)."""

    pods: int
    containers: int
    duplicate: bool = False
    conflict: bool = False
    failed_sources: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, batch: IngestBatch) -> "Outcome":
        sources = batch.collector.sources if batch.collector is not None else None
        return cls(
            pods=len(batch.pods),
            containers=sum(len(pod.containers) for pod in batch.pods),
            failed_sources=[name for name, status in (sources or {}).items() if not status.ok],
        )


_Stored = inline_serializer(
    "IngestStored",
    {
        "stored": serializers.BooleanField(),
        "pods": serializers.IntegerField(),
        "containers": serializers.IntegerField(),
    },
)
_Duplicate = inline_serializer(
    "IngestDuplicate",
    {"stored": serializers.BooleanField(), "duplicate": serializers.BooleanField()},
)
_Errors = inline_serializer(
    "IngestErrors",
    {"errors": serializers.DictField(child=serializers.ListField(child=serializers.CharField()))},
)


class IngestView(APIView):
    authentication_classes = [CachedTokenAuthentication]
    permission_classes = [HasIngestScope]
    renderer_classes = [JSONRenderer]
    parser_classes: list[Any] = []  # the body is read by read_body, never by DRF
    throttle_classes: list[Any] = []
    outcome: Outcome | None = None

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # Around DRF's dispatch so that refused tokens (401/403, answered before post()) count too.
        started = time.perf_counter()
        try:
            response = super().dispatch(request, *args, **kwargs)
        except Exception as exc:
            # metrics.outage answers a database outage with a 503; anything else is a 500.
            status = 503 if isinstance(exc, OUTAGE_ERRORS) else 500
            telemetry.observe_ingest(status, time.perf_counter() - started, None)
            raise
        telemetry.observe_ingest(response.status_code, time.perf_counter() - started, self.outcome)
        return response

    @extend_schema(
        operation_id="ingest_batch",
        summary="Store one collector batch (one node, one interval)",
        description=(
            "One JSON batch per node per interval; `time` is the END of the interval. Send "
            "`Content-Encoding: gzip` to compress. The whole batch is stored or nothing is; a "
            "batch whose (node, time, interval_seconds) was stored before is a retry and stores "
            "nothing (200); one overlapping another stored interval of its node is refused (400). "
            "Unknown keys are refused. Errors name each bad field by its path, e.g. "
            "`pods[3].containers[0].foo`. See docs/api.md."
        ),
        tags=["ingest"],
        request={"application/json": IngestBatch},
        responses={
            201: OpenApiResponse(_Stored, description="Stored."),
            200: OpenApiResponse(_Duplicate, description="Already stored (a retried batch); nothing written."),
            400: OpenApiResponse(
                _Errors,
                description=(
                    "Malformed JSON or gzip, duplicate keys, invalid fields or names, numbers past their "
                    "physical bounds, or an interval overlapping a stored one (each named)."
                ),
            ),
            401: OpenApiResponse(description="No token, or an unknown or revoked one."),
            403: OpenApiResponse(
                description="The token lacks the ingest scope, or is bound to another cluster than "
                "the batch's (`errors.cluster`)."
            ),
            409: OpenApiResponse(_Errors, description="The node belongs to another cluster than the batch names (`errors.cluster`)."),
            413: OpenApiResponse(_Errors, description="Body larger than INGEST_MAX_BODY_BYTES (before or after gunzip)."),
            415: OpenApiResponse(_Errors, description="Not application/json, or an encoding other than gzip."),
        },
        examples=[
            OpenApiExample(
                "Stored",
                value={"stored": True, "pods": 110, "containers": 237},
                response_only=True,
                status_codes=["201"],
            ),
            OpenApiExample(
                "Invalid",
                value={"errors": {"pods[3].containers[0].foo": ["Unknown field."]}},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def post(self, request: Request) -> JsonResponse:
        received = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        try:
            body = read_body(request, settings.INGEST_MAX_BODY_BYTES)
        except _BodyError as exc:
            return exc.response
        if not body:
            return _error(400, "body", "The request body is empty.")
        t1 = time.perf_counter()
        try:
            batch = parse_batch(body, received, timedelta(days=settings.RETENTION_RAW_DAYS))
        except BatchInvalid as exc:
            return JsonResponse({"errors": exc.errors}, status=400)
        t2 = time.perf_counter()
        self.outcome = Outcome.of(batch)
        try:
            stored = self._store(request, batch, received)
        except clusters.ClusterRefused as exc:
            return _error(exc.status, "cluster", exc.message)
        except writer.SampleConflict as exc:
            self.outcome.conflict = True
            return JsonResponse({"errors": exc.errors}, status=400)
        self.outcome.duplicate = stored.duplicate
        t3 = time.perf_counter()

        if stored.duplicate:
            response = JsonResponse({"stored": False, "duplicate": True}, status=200)
        else:
            response = JsonResponse(
                {"stored": True, "pods": stored.pods, "containers": stored.containers}, status=201
            )
        skew = (batch.time - received).total_seconds()
        if skew > SKEW_WARNING_SECONDS:
            response["X-Kubemonitor-Clock-Skew"] = (
                f"{skew:.1f}s; the node's clock is ahead of the server's, check its NTP"
            )
        # Where the time went, for bench/ingest.py and anyone looking at a slow collector.
        timings = {"read": t1 - t0, "validate": t2 - t1, **stored.timings, "write": t3 - t2}
        response["Server-Timing"] = ", ".join(f"{k};dur={v * 1000:.3f}" for k, v in timings.items())
        return response

    def _store(self, request: Request, batch: IngestBatch, received: datetime) -> writer.Stored:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        cluster = clusters.for_batch(batch.cluster, token)
        return writer.store(batch, received=received, clock=time.perf_counter, cluster=cluster)

"""`python -m segdemo serve`: the models as a Ray Serve application, one deployment per model.

Why Ray Serve: it batches, replicates, autoscales and restarts replicas, on a laptop as a local
cluster and unchanged on a real one, so SegDemo needs no server of its own. The application is an
HTTP router (one light replica) in front of one `ModelServer` deployment per model:

    GET  /v1/models                 the served models with their cards
    POST /v1/models/<id>:segment    an image file in the body ->
         JSON (`segdemo.wire`: classes, shares, timings with the batch size the photo was served
         in; `?probabilities=float16|float32` adds the input-size class probabilities,
         `?display_side=N` a mask and confidence map shrunk to N) or, with `?format=png` or
         `Accept: image/png`, the full-resolution mask PNG (class indices as pixel values).
         `?tta=flip` averages with the mirror image.

Photos from different clients share one network call through `@serve.batch` (`max_batch`,
`batch_wait_s`); a photo is decoded (and refused with a 400 when corrupt) before it joins a batch,
and a batch that fails is retried photo by photo (`batching.predict_isolated`), so a bad photo
fails alone. When a replica dies, the router sends its requests again (up to `RETRIES` times) to
another replica while Ray starts a replacement, so other clients' requests are not lost.

Ray is imported with this module: only the `serve` command (and tests) import it. (No
`from __future__ import annotations` here: FastAPI reads the route signatures at run time.)
"""
import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from segdemo.artifacts import read_card
from segdemo.batching import configure_threads, cpu_count, predict_isolated
from segdemo.errors import SegDemoError
from segdemo.images import ImageError, open_image
from segdemo.inference import TTA_MODES, mask_png
from segdemo.ray_cluster import connect
from segdemo.wire import PROBABILITY_DTYPES, result_json

LOG = logging.getLogger(__name__)
APP_NAME = "segdemo"
MAX_BODY_BYTES = 32 * 2**20  # a 12-megapixel JPEG is ~5 MB, an uncompressed PNG of it 36 MB
MAX_DISPLAY_SIDE = 4096
RETRIES = 3                  # sends of one request when replicas die under it
RETRY_PAUSE_S = 0.5


class ServeError(SegDemoError):
    """The serve command cannot start as asked (a model folder, the cluster, the options)."""


@dataclass(frozen=True)
class ServeOptions:
    """How the models are served. `autoscale` = (min, max) replicas per model replaces the fixed
    `replicas`; `replica_cpus` is what Ray reserves for each replica and the size of its
    TensorFlow thread pool (default: this machine's cores shared by every replica)."""

    models: dict[str, Path]
    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    max_batch: int = 8
    batch_wait_s: float = 0.01
    replica_cpus: float | None = None
    max_body_bytes: int = MAX_BODY_BYTES

    def cpus(self) -> float:
        if self.replica_cpus is not None:
            return self.replica_cpus
        replicas = self.autoscale[1] if self.autoscale else self.replicas
        return max(0.1, cpu_count() / max(1, replicas * len(self.models)))

    def check(self) -> None:
        problem = ("no model to serve" if not self.models else
                   "--replicas must be at least 1" if self.replicas < 1 else
                   "--max-batch must be at least 1" if self.max_batch < 1 else
                   "--batch-wait-ms must not be negative" if self.batch_wait_s < 0 else
                   "--autoscale needs 1 <= MIN <= MAX" if self.autoscale and not
                   1 <= self.autoscale[0] <= self.autoscale[1] else None)
        if problem:
            raise ServeError(f"{problem}.")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@serve.deployment(max_ongoing_requests=64)
class ModelServer:
    """One model: decodes photos, batches them into one network call, answers each."""

    def __init__(self, model_id: str, folder: str, max_batch: int, batch_wait_s: float,
                 threads: int):
        from segdemo.inference import Segmenter

        configure_threads(1, threads)  # before TensorFlow runs anything in this process
        self.model_id = model_id
        self.segmenters = {"none": Segmenter.load(folder)}
        self.segmenters["none"].warm_up()
        self._batch.set_max_batch_size(max_batch)
        self._batch.set_batch_wait_timeout_s(batch_wait_s)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.batches = 0  # network calls so far: with `replica`, names the call a photo was in

    async def segment(self, body: bytes, query: dict) -> tuple[int, dict | bytes, dict]:
        """(status, JSON object or PNG bytes, extra headers) for one request."""
        arrived = time.perf_counter()
        try:
            image = await asyncio.to_thread(open_image, body, "the request body")
        except ImageError as exc:
            return 400, {"error": str(exc)}, {}
        decoded = time.perf_counter()
        tta = query.get("tta", "none")
        output, error, network_s, size, started, call = await self._batch((image, tta, decoded))
        if error is not None:
            LOG.exception("segmenting failed", exc_info=error)
            return 500, {"error": f"segmenting failed: {error}"}, {}
        timings = {"decode_ms": round((decoded - arrived) * 1000, 2),
                   "queue_ms": round((started - decoded) * 1000, 2),
                   "network_ms": round(network_s * 1000, 2), "batch_size": size,
                   "replica": self.replica, "call": call}
        return await asyncio.to_thread(self._answer, output, query, timings, arrived)

    def _answer(self, prediction, query: dict, timings: dict, arrived: float):
        classes = self.segmenters["none"].classes
        if query.get("format") == "png":
            headers = {f"x-segdemo-{k.replace('_', '-')}": str(v) for k, v in timings.items()}
            return 200, mask_png(prediction.mask, classes), headers
        result = result_json(self.model_id, prediction, classes, timings,
                             query.get("probabilities"), query.get("display_side"))
        timings["server_ms"] = round((time.perf_counter() - arrived) * 1000, 2)
        return 200, result, {}

    def _segmenter(self, tta: str):
        """The model with `tta`: a second traced graph over the same weights, made on first use."""
        if tta not in self.segmenters:
            from segdemo.inference import Segmenter

            base = self.segmenters["none"]
            self.segmenters[tta] = Segmenter(base.model, base.card, tta=tta)
        return self.segmenters[tta]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batch(self, requests: list[tuple]) -> list[tuple]:
        """One network call per TTA setting among the waiting photos; per photo (output, error,
        network seconds, batch size, when its batch started, which network call it was in)."""
        started = time.perf_counter()
        answers: list[tuple | None] = [None] * len(requests)
        for tta in dict.fromkeys(r[1] for r in requests):
            indices = [i for i, r in enumerate(requests) if r[1] == tta]
            segmenter = self._segmenter(tta)
            self.batches += 1
            call = f"{self.replica}-{self.batches}"
            outcomes = await asyncio.to_thread(predict_isolated, segmenter,
                                               [requests[i][0] for i in indices])
            for i, outcome in zip(indices, outcomes):
                answers[i] = (*outcome, started, call)
        return answers

    def check_health(self) -> None:
        """Serve calls this periodically; an exception here makes Ray replace the replica."""


api = FastAPI(title="SegDemo", docs_url=None, redoc_url=None)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
@serve.ingress(api)
class Router:
    """The HTTP front: checks the request, sends it to its model's deployment, retries when a
    replica died under it."""

    def __init__(self, handles: dict, cards: dict[str, dict], max_body_bytes: int):
        self.handles, self.cards, self.max_body_bytes = handles, cards, max_body_bytes

    @api.get("/v1/models")
    async def models(self) -> dict:
        return {"models": [{"id": k, "card": card} for k, card in self.cards.items()]}

    @api.post("/v1/models/{model_id}:segment")
    async def segment(self, model_id: str, request: Request, format: str | None = None,
                      probabilities: str | None = None, display_side: str | None = None,
                      tta: str = "none") -> Response:
        if model_id not in self.handles:
            return _error(404, f"unknown model {model_id!r}; served: {', '.join(self.handles)}.")
        problem = self._check(request, format, probabilities, display_side, tta)
        if problem:
            return _error(*problem)
        side = int(display_side) if display_side else None
        body = await request.body()
        if len(body) > self.max_body_bytes:
            return _error(413, self._too_large(len(body)))
        if not body:
            return _error(400, "the request body is empty: send the image file as the body.")
        if format is None:
            format = "png" if "image/png" in request.headers.get("accept", "") else "json"
        query = {"format": format, "probabilities": probabilities, "display_side": side,
                 "tta": tta}
        status, content, headers = await self._send(model_id, body, query)
        if isinstance(content, bytes):
            return Response(content, status_code=status, media_type="image/png", headers=headers)
        return JSONResponse(content, status_code=status, headers=headers)

    def _check(self, request: Request, format, probabilities, display_side,
               tta) -> tuple[int, str] | None:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            return 413, self._too_large(int(length))
        if format not in (None, "json", "png"):
            return 400, f"format is json or png, not {format!r}."
        if probabilities not in (None, *PROBABILITY_DTYPES):
            return 400, (f"probabilities is {' or '.join(PROBABILITY_DTYPES)}, "
                         f"not {probabilities!r}.")
        if display_side and not (display_side.isdigit()
                                 and 1 <= int(display_side) <= MAX_DISPLAY_SIDE):
            return 400, f"display_side is a whole number 1..{MAX_DISPLAY_SIDE}, not {display_side!r}."
        if tta not in TTA_MODES:
            return 400, f"tta is {' or '.join(TTA_MODES)}, not {tta!r}."
        return None

    def _too_large(self, size: int) -> str:
        return (f"the image is {size / 2**20:.1f} MB; this server takes at most "
                f"{self.max_body_bytes / 2**20:.0f} MB.")

    async def _send(self, model_id: str, body: bytes, query: dict) -> tuple:
        for attempt in range(1, RETRIES + 1):
            try:
                return await self.handles[model_id].segment.remote(body, query)
            except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
                LOG.warning("a %s replica died under a request (send %d of %d): %s", model_id,
                            attempt, RETRIES, type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE_S * attempt)
        return 503, {"error": f"every {model_id} replica tried died under this request; "
                              "Ray is restarting them, try again shortly."}, {}


def build_app(options: ServeOptions):
    """The Serve application: the router bound to one `ModelServer` deployment per model."""
    options.check()
    cpus = options.cpus()
    scaling = ({"autoscaling_config": {"min_replicas": options.autoscale[0],
                                       "max_replicas": options.autoscale[1],
                                       "target_ongoing_requests": options.max_batch}}
               if options.autoscale else {"num_replicas": options.replicas})
    handles, cards = {}, {}
    for model_id, folder in options.models.items():
        try:
            cards[model_id] = read_card(folder)
        except SegDemoError as exc:
            raise ServeError(f"{model_id}: {exc}") from None
        handles[model_id] = ModelServer.options(
            name=f"model_{model_id}", ray_actor_options={"num_cpus": cpus}, **scaling,
        ).bind(model_id, str(folder), options.max_batch, options.batch_wait_s,
               max(1, round(cpus)))
    return Router.bind(handles, cards, options.max_body_bytes)


def start(options: ServeOptions, host: str = "127.0.0.1", port: int = 8000,
          address: str | None = None) -> str:
    """Deploy the application (waiting until every replica is up); returns its base URL."""
    connect(address)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(options), name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


def stop() -> None:
    """Remove the application, then Serve itself."""
    serve.delete(APP_NAME)
    serve.shutdown()

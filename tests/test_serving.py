"""A real Ray Serve (local cluster of 2 CPUs, 127.0.0.1, a tiny generated model in 2 replicas):
the HTTP API round trip, photos from concurrent clients sharing network calls, bad input answered
with 4xx and the reason, a replica killed without losing a request, and the dashboard (AppTest)
sending its inference there."""
from __future__ import annotations

import io
import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from segdemo.batching import shown_prediction
from segdemo.inference import Segmenter
from segdemo.serve_client import ServeClient, ServeRequestError, remote_predictor
from segdemo.wire import decode_array, shown_from_json
from test_app import APP, TIMEOUT_S, captions, upload
from test_dashboard import photo_bytes, write_tiny_model

MAX_BODY = 300_000
REPLICAS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint(ray_local, tmp_path_factory):
    """(url, weights root): `unet` served (2 replicas, batches wait up to 0.3 s for company);
    `unet_mobilenetv2` exists locally but is not served."""
    from segdemo import serving

    root = tmp_path_factory.mktemp("weights")
    write_tiny_model(root, "unet")
    write_tiny_model(root, "unet_mobilenetv2")
    options = serving.ServeOptions({"unet": root / "unet"}, replicas=REPLICAS, max_batch=8,
                                   batch_wait_s=0.3, replica_cpus=0.5, max_body_bytes=MAX_BODY)
    url = serving.start(options, port=free_port())
    yield url, root
    serving.stop()


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def photo(seed: int, size=(57, 43)) -> bytes:
    return photo_bytes(*size, seed=seed)


def test_models_are_listed_with_their_cards(endpoint):
    url, root = endpoint
    models = ServeClient(url).models()
    assert list(models) == ["unet"]
    assert models["unet"] == json.loads((root / "unet" / "card.json").read_text())


def test_json_and_png_answers_match_the_model_in_process(endpoint):
    url, root = endpoint
    segmenter = Segmenter.load(root / "unet")
    data = photo(1)
    local = segmenter.predict(Image.open(io.BytesIO(data)))
    result = ServeClient(url).segment_json("unet", data, probabilities="float32", display_side=20)
    assert (result["width"], result["height"], result["model"]) == (57, 43, "unet")
    assert {"decode_ms", "queue_ms", "network_ms", "batch_size", "server_ms"} <= set(
        result["timings"])
    there, here = shown_from_json(result), shown_prediction(local, 3, 20)
    assert there.mask.shape == here.mask.shape == (15, 20)
    np.testing.assert_allclose(there.input_probabilities, here.input_probabilities, atol=1e-5)
    assert (there.mask == here.mask).mean() > 0.99
    np.testing.assert_allclose(there.shares, here.shares, atol=0.01)
    for headers, query in (({"Accept": "image/png"}, ""), ({}, "?format=png")):
        status, answer_headers, body = post(f"{url}/v1/models/unet:segment{query}", data, headers)
        assert status == 200 and answer_headers["content-type"] == "image/png"
        mask = Image.open(io.BytesIO(body))
        assert mask.mode == "P" and mask.size == (57, 43)
        assert (np.asarray(mask) == local.mask).mean() > 0.99
        assert int(answer_headers["x-segdemo-batch-size"]) >= 1
    half = ServeClient(url).segment_json("unet", data, probabilities="float16")
    assert decode_array(half["probabilities"]).dtype == np.float16 and "display" not in half


def test_concurrent_requests_share_network_calls(endpoint):
    url, _ = endpoint
    client = ServeClient(url)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: client.segment_json("unet", photo(10 + i)), range(8)))
    calls: dict[str, list[dict]] = {}
    for result in results:
        calls.setdefault(result["timings"]["call"], []).append(result["timings"])
    assert len(calls) < len(results)  # several photos went through one network call
    for members in calls.values():
        assert all(t["batch_size"] == len(members) for t in members)
    assert len({r["width"] for r in results}) == 1  # every answer is for a photo of that size


def test_the_load_test_counts_what_its_clients_saw(endpoint):
    from segdemo.serve_load import run_level

    url, _ = endpoint
    result = run_level(ServeClient(url), "unet", [photo(i) for i in range(3)], clients=4,
                       requests=10)
    assert (result["ok"], result["errors"], result["requests"]) == (10, 0, 10)
    assert result["photos_per_s"] > 0 and 1 <= result["mean_batch"] <= result["largest_batch_seen"]
    assert result["latency_ms"]["p50"] >= result["in_replica_ms"]["p50"] > 0
    wrong = run_level(ServeClient(url), "nope", [photo(0)], clients=2, requests=3)
    assert (wrong["ok"], wrong["errors"]) == (0, 3) and "unknown model" in wrong["error_examples"][0]


def test_bad_input_gets_4xx_with_the_reason(endpoint):
    url, _ = endpoint
    cases = [("/v1/models/nope:segment", photo(0), 404, "unknown model 'nope'; served: unet"),
             ("/v1/models/unet:segment", b"not an image", 400, "not an image file"),
             ("/v1/models/unet:segment", photo(0)[:60], 400, "request body"),
             ("/v1/models/unet:segment", b"", 400, "empty"),
             ("/v1/models/unet:segment", b"\0" * (MAX_BODY + 1), 413, "at most"),
             ("/v1/models/unet:segment?display_side=big", photo(0), 400, "display_side"),
             ("/v1/models/unet:segment?tta=spin", photo(0), 400, "tta"),
             ("/v1/models/unet:segment?format=gif", photo(0), 400, "format")]
    for path, body, status, reason in cases:
        code, headers, answer = post(url + path, body)
        assert code == status, (path, answer)
        assert reason in json.loads(answer)["error"], (path, answer)
    with pytest.raises(ServeRequestError, match="404: unknown model") as caught:
        ServeClient(url).segment_json("nope", photo(0))
    assert caught.value.status == 404


def test_flip_tta_is_served(endpoint):
    url, root = endpoint
    flip = Segmenter.load(root / "unet", tta="flip")
    data = photo(3)
    result = ServeClient(url).segment_json("unet", data, probabilities="float32", tta="flip")
    np.testing.assert_allclose(decode_array(result["probabilities"]),
                               flip.predict(Image.open(io.BytesIO(data))).input_probabilities,
                               atol=1e-5)


def test_the_dashboard_sends_its_inference_to_the_endpoint(endpoint, monkeypatch):
    url, root = endpoint
    monkeypatch.setenv("SEGDEMO_WEIGHTS", str(root))
    monkeypatch.setenv("SEGDEMO_SERVE_URL", url)
    monkeypatch.delenv("SEGDEMO_DATA", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    sidebar = [c.value for c in at.sidebar.caption]
    assert any("Ray Serve at" in c for c in sidebar)
    assert any("not served by" in c for c in sidebar)  # unet_mobilenetv2: only local
    assert at.sidebar.checkbox(key="model_unet_mobilenetv2").disabled
    assert at.sidebar.toggle(key="ensemble").disabled
    at = upload(at, ("cat.png", photo(5, (64, 48))))
    assert not at.exception and not at.error
    shown = captions(at)
    assert any("Overlay" in c for c in shown)
    assert any("batch of" in m.value for m in at.markdown)


def test_a_killed_replica_loses_no_request_and_is_replaced(endpoint, ray_local):
    from ray import serve

    url, _ = endpoint
    client = ServeClient(url)

    def replicas() -> list[dict]:
        return [a for a in ray_local.util.list_named_actors(all_namespaces=True)
                if "SERVE_REPLICA" in a["name"] and "model_unet" in a["name"]]

    before = replicas()
    assert len(before) == REPLICAS
    victim = before[0]
    with ThreadPoolExecutor(8) as pool:
        running = [pool.submit(client.segment_json, "unet", photo(30 + i)) for i in range(4)]
        ray_local.kill(ray_local.get_actor(victim["name"], namespace=victim["namespace"]),
                       no_restart=True)
        running += [pool.submit(client.segment_json, "unet", photo(40 + i)) for i in range(8)]
        results = [f.result(timeout=120) for f in running]
    assert all(r["model"] == "unet" for r in results)  # every request answered
    deadline, names, states = time.monotonic() + 90, [], {}
    while time.monotonic() < deadline:
        names = [a["name"] for a in replicas()]
        states = serve.status().applications["segdemo"].deployments["model_unet"].replica_states
        if victim["name"] not in names and len(names) == REPLICAS and \
                states.get("RUNNING") == REPLICAS:
            break
        time.sleep(1)
    assert victim["name"] not in names and len(names) == REPLICAS, names  # a new one took over
    assert states.get("RUNNING") == REPLICAS, states

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def tiny_benchmark_weights(tmp_path_factory) -> Path:
    """A weights folder with a tiny trained-looking U-Net and an unusable fcn8s_vgg16 folder."""
    from fixtures import BENCH_OPTIONS
    from segdemo.artifacts import write_json
    from segdemo.classes import PET_CLASSES
    from segdemo.models import build_model

    root = tmp_path_factory.mktemp("weights")
    folder = root / "unet"
    folder.mkdir()
    build_model("unet", 3, (32, 32), **BENCH_OPTIONS).save_weights(folder / "model.weights.h5")
    write_json(folder / "card.json", {
        "id": "unet", "title": "U-Net", "classes": [c.to_json() for c in PET_CLASSES],
        "input_size": [32, 32], "preprocessing": "unit", "options": BENCH_OPTIONS,
    })
    broken = root / "fcn8s_vgg16"
    broken.mkdir()
    (broken / "card.json").write_text((folder / "card.json").read_text())
    return root


@pytest.fixture(scope="session")
def tiny_benchmark(tiny_benchmark_weights) -> dict:
    """One real benchmark run over `tiny_benchmark_weights` (writes its benchmark.json)."""
    from fixtures import BENCH_FAST
    from segdemo.benchmark import run_benchmark

    return run_benchmark(weights_dir=tiny_benchmark_weights, **BENCH_FAST)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster of 2 CPUs on 127.0.0.1 for the serving and Ray Data tests (no dashboard,
    no usage statistics), shut down after the session; the tests skip, saying why, where Ray is not
    installed or cannot start."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (requirements.txt: ray[serve,data])")
    from segdemo.ray_cluster import RayClusterError, connect

    try:
        connect(num_cpus=2)
    except RayClusterError as exc:
        pytest.skip(f"Ray cannot start here: {exc}")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def converted_files_cache(tmp_path_factory):
    """Converted ONNX / TFLite files go to a session folder, never to the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("segdemo-cache")
        patch.setenv("SEGDEMO_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny U-Net model folder with sharpened logits (fixtures.write_tiny_unet)."""
    from fixtures import write_tiny_unet

    return write_tiny_unet(tmp_path_factory.mktemp("tiny") / "unet")

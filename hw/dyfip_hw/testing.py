"""Test helpers shared by tests/test_hw_*.py and tests/test_dataflow*.py (cached per process)."""
from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=4)
def built_bundle(bundle: str, board: str = "Pynq-Z2") -> dict:
    """Run ``dyfip build --estimate`` on ``bundle`` once; returns estimates + timing."""
    from .build import main

    t0 = time.perf_counter()
    est = main(Path(bundle), board)
    est["_wall_seconds"] = time.perf_counter() - t0
    return est


@functools.lru_cache(maxsize=4)
def generic_graphs(bundle: str) -> dict:
    """The folded dataflow graphs of a built bundle, mapped to generic ops (exec_mode='')."""
    from qonnx.core.modelwrapper import ModelWrapper

    from .finn_env import setup

    setup()
    from .transforms import ToGenericOps

    return {s: ModelWrapper(str(Path(bundle) / "accel" / f"{s}_dataflow.onnx")
                            ).transform(ToGenericOps()) for s in ("stage_a", "stage_b")}


def finn_execute(graphs: dict, pixels_nhwc: np.ndarray, mask: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Both stages with FINN's Python execution, one image at a time (batch-1 graphs)."""
    from qonnx.core.onnx_exec import execute_onnx

    from .transforms import MASK_NAME

    ga, gb = graphs["stage_a"], graphs["stage_b"]
    data_b = next(i.name for i in gb.graph.input if i.name != MASK_NAME)
    feats, logits = [], []
    for i in range(len(pixels_nhwc)):
        f = execute_onnx(ga, {ga.graph.input[0].name: pixels_nhwc[i:i + 1].astype(np.float32)}
                         )[ga.graph.output[0].name]
        lo = execute_onnx(gb, {data_b: f, MASK_NAME: mask[i:i + 1].astype(np.float32)}
                          )[gb.graph.output[0].name]
        feats.append(f)
        logits.append(lo)
    return (np.concatenate(feats).astype(np.int64), np.concatenate(logits).astype(np.int64))


def calibrated_model(dataset: str = "digits", **changes):
    """A small untrained network with calibrated BatchNorm (exactness needs no accuracy)."""
    import torch

    from dyfip.config import preset
    from dyfip.data import load_digits
    from dyfip.model import build_model, images_to_float

    data = load_digits()
    model = build_model(preset(dataset, **changes), data.image_shape, data.num_classes)
    model.train()
    with torch.no_grad():
        for i in range(0, 400, 100):
            model(images_to_float(data.train.images[i:i + 100]))
    return model.eval()


@functools.lru_cache(maxsize=2)
def calibrated_bundle(**changes) -> str:
    """A temporary bundle holding only a calibrated model.pt (config ``changes`` to the
    digits preset), built once per process."""
    import atexit
    import shutil
    import tempfile

    from dyfip.model import save_checkpoint

    out = Path(tempfile.mkdtemp(prefix="dyfip_hw_bundle_"))
    atexit.register(shutil.rmtree, out, True)
    save_checkpoint(calibrated_model(**changes), out / "model.pt")
    built_bundle(str(out))
    return str(out)

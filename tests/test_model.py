import numpy as np
import pytest
import torch

from dyfip.model import build_model, images_to_float, load_checkpoint, model_hash, save_checkpoint
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def model(digits):
    m = build_model(tiny_config(), digits.image_shape, 10)
    m.eval()
    return m


def test_input_quant_is_exactly_the_pixels(model, digits):
    x = images_to_float(digits.test.images[:16])
    model.input_quant.return_quant_tensor = True
    try:
        q = model.input_quant(x)
    finally:
        model.input_quant.return_quant_tensor = False
    assert torch.equal(q.int(), torch.from_numpy(digits.test.images[:16]).int())


def test_masked_filters_are_exact_zeros(model, digits):
    feats = model.features(images_to_float(digits.test.images[:4]))
    block = model.stage_b[0]
    mask = torch.zeros(4, block.spec.out_channels)
    mask[:, ::5] = 1
    out = block(feats, mask)
    assert torch.all(out[:, mask[0] == 0] == 0)
    assert torch.equal(out[:, mask[0] == 1], block(feats)[:, mask[0] == 1])


def test_wrong_shape_and_dtype(model):
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        model.features(torch.zeros(2, 1, 28, 28))
    with pytest.raises(TypeError, match="uint8"):
        images_to_float(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="expected 2 layer masks"):
        model.stage_b_logits(torch.zeros(1, 32, 4, 4), [torch.ones(1, 64)])


def test_no_images(model):
    from dyfip.inference import dyfip_predict, full_predict, stage_a_outputs

    empty = np.zeros((0, 1, 8, 8), np.uint8)
    for run in (lambda: stage_a_outputs(model, empty), lambda: full_predict(model, empty),
                lambda: dyfip_predict(model, empty, None, 2, 0.9)):
        with pytest.raises(ValueError, match=r"no images to run: .* shape \(0, 1, 8, 8\)"):
            run()


def test_checkpoint_roundtrip_and_hash(model, tmp_path, digits):
    save_checkpoint(model, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert model_hash(loaded) == model_hash(model)
    x = images_to_float(digits.test.images[:8])
    assert torch.equal(loaded(x)[0], model(x)[0])
    with torch.no_grad():
        loaded.head[-1].weight[0, 0] += 1
    assert model_hash(loaded) != model_hash(model)


def test_geometry_macs(model):
    geo = {g.name: g for g in model.geometry}
    assert geo["stage_b.0"].macs() == 16 * 9 * 32 * 64
    assert model.prunable_layers == ["stage_b.0", "stage_b.1"]
    assert model.filters_per_layer == [64, 64]

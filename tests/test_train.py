import numpy as np
import torch

from dyfip.config import preset
from dyfip.data import load_digits
from dyfip.model import build_model, images_to_float
from dyfip.train import recalibrate_batchnorm


def test_batchnorm_recalibration_averages_the_whole_split():
    data = load_digits()
    model = build_model(preset("digits", quick=True), data.image_shape, data.num_classes)
    bn = model.stage_a[0].bn
    bn.running_mean.fill_(5.0)  # stale statistics from "the last batches"
    recalibrate_batchnorm(model, data.train, batch_size=len(data.train))
    with torch.no_grad():
        pre_bn = model.stage_a[0].conv(model.input_quant(images_to_float(data.train.images)))
    assert torch.allclose(bn.running_mean, pre_bn.mean(dim=(0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # settings restored, eval mode


def test_routed_images_are_the_ones_the_branch_does_not_exit_on():
    import pytest

    from dyfip.decision import decide
    from dyfip.train import FrozenOutputs

    gen = torch.Generator().manual_seed(0)
    branch = torch.randn(64, 10, generator=gen) * 3
    frozen = FrozenOutputs(torch.arange(64.0)[:, None], branch, torch.zeros(64, 10),
                           torch.arange(64) % 10)
    routed = frozen.routed(0.9)
    stay = ~decide(branch.double().numpy(), 2, 0.9).exit
    assert 0 < len(routed) < len(frozen) and len(routed) == stay.sum()
    assert routed.features[:, 0].long().tolist() == np.flatnonzero(stay).tolist()
    with pytest.raises(ValueError, match="exits on every training image at tau=0.0"):
        frozen.routed(0.0)

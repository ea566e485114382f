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


def test_fine_tuning_sets_drawn_from_the_branch_hold_the_label():
    from types import SimpleNamespace

    from dyfip.train import candidate_sets

    table = SimpleNamespace(k=2, k_max=2)
    branch = torch.tensor([[4.0, 3.0, 0.0, -1.0]]).repeat(400, 1)
    labels = torch.zeros(400, dtype=torch.long)
    rng = np.random.default_rng(0)
    top = candidate_sets(branch, labels, table, 1.0, rng)
    assert (top == torch.tensor([0, 1])).all()  # no temperature: the branch's top-2
    drawn = candidate_sets(branch, labels, table, 1.0, rng, temperature=1.0)
    assert (drawn == 0).any(dim=1).all()  # the label is always in the set
    partners = drawn.max(dim=1).values.bincount(minlength=4).tolist()
    assert partners[1] > partners[2] > partners[3] > 0  # drawn by the branch's probabilities


def test_shift_augmentation_moves_each_image_by_at_most_max_shift():
    import pytest
    import torch.nn.functional as F

    from dyfip.config import Config
    from dyfip.train import augment

    x = torch.rand(64, 1, 8, 8)
    gen = torch.Generator().manual_seed(0)
    assert augment(x, gen, False, max_shift=0).equal(x)
    padded = F.pad(x, (1, 1, 1, 1))
    candidates = torch.stack([padded[:, :, dy:dy + 8, dx:dx + 8]  # (9, n, 1, 8, 8)
                              for dy in range(3) for dx in range(3)])
    for per_image in (False, True):
        out = augment(x, gen, False, max_shift=1, per_image=per_image)
        match = (candidates == out).flatten(2).all(2)  # (9, n): which shift each image got
        assert match.any(0).all()  # every image is its own, shifted by at most one pixel
        shifts = set(match.float().argmax(0).tolist())
        assert (len(shifts) > 1) == per_image  # one shift per batch, or one per image
    with pytest.raises(ValueError, match="max_shift=-1"):
        Config(max_shift=-1).validate(10)


def test_validation_every_n_epochs_leaves_training_unchanged():
    """Validation passes change no weight, BN statistic or random draw of training."""
    from dyfip.train import train_joint

    data = load_digits()
    runs = []
    for val_every in (1, 2):
        config = preset("digits", quick=True, epochs=3, val_every=val_every)
        model = build_model(config, data.image_shape, data.num_classes)
        runs.append((train_joint(model, data, config), model.state_dict()))
    (every, state_1), (second, state_2) = runs
    assert [("val_accuracy" in h) for h in second[:3]] == [False, True, True]  # 2nd and last
    assert all("val_accuracy" in h for h in every)
    assert [h["loss"] for h in every[:3]] == [h["loss"] for h in second[:3]]
    assert every[2]["val_accuracy"] == second[2]["val_accuracy"]
    assert state_1.keys() == state_2.keys()
    assert all(torch.equal(state_1[k], state_2[k]) for k in state_1)

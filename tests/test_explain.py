import numpy as np
import pytest

from dyfip.data import Split
from dyfip.explain import compute_importance, sample_per_class
from dyfip.model import load_checkpoint


def test_importance_shapes_and_methods(tiny_bundle, digits):
    model = load_checkpoint(tiny_bundle / "model.pt")
    gxa = compute_importance(model, digits.train, "grad_x_act", per_class=4)
    ig = compute_importance(model, digits.train, "integrated_gradients", per_class=4)
    rnd = compute_importance(model, digits.train, "random", per_class=4)
    for imp in (gxa, ig, rnd):
        assert list(imp) == ["stage_b.0", "stage_b.1"]
        assert imp["stage_b.0"].shape == (10, 10, 64)
    own = np.einsum("ccf->cf", gxa["stage_b.1"])
    assert np.isfinite(own).all() and np.abs(own).sum() > 0
    # gradient x activation and integrated gradients broadly agree, random does not
    corr = np.corrcoef(own.ravel(), np.einsum("ccf->cf", ig["stage_b.1"]).ravel())[0, 1]
    assert corr > 0.5
    with pytest.raises(ValueError, match="unknown attribution method"):
        compute_importance(model, digits.train, "lrp-magic")


def test_empty_class_cannot_be_explained():
    split = Split(np.zeros((4, 1, 8, 8), np.uint8), np.array([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="class 2 has no training images"):
        sample_per_class(split, 2, 3, 0)


def test_one_pass_over_all_layers_equals_one_pass_per_layer(tiny_bundle, digits, monkeypatch):
    import dyfip.explain as explain
    model = load_checkpoint(tiny_bundle / "model.pt")
    together = compute_importance(model, digits.train, "grad_x_act", per_class=4)
    monkeypatch.setattr(explain, "MULTI_LAYER", ())
    apart = compute_importance(model, digits.train, "grad_x_act", per_class=4)
    for name in together:
        np.testing.assert_allclose(together[name], apart[name], rtol=1e-6, atol=1e-9)


def test_config_names_every_attribution_method():
    """``--xai-method`` choices (checked before training) are the methods explain runs."""
    from dyfip.config import XAI_METHODS
    from dyfip.explain import ATTRIBUTION_METHODS

    assert set(XAI_METHODS) == set(ATTRIBUTION_METHODS) | {"random"}

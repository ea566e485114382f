"""Hardware in the loop: the whole test split on the board (DYFIP_BOARD=pynq) or, by
default, on the simulated board; results must equal the PyTorch reference (reference.npz)."""
from __future__ import annotations

import pytest

from board_conftest import (assert_matches_reference, board_kind, bundle_dir,  # noqa: F401
                            reference)

pytestmark = [pytest.mark.hil, pytest.mark.board_env]
pytest.importorskip("pynq")

from dyfip.driver import DyFiP  # noqa: E402


@pytest.fixture(scope="module")
def accel(bundle_dir):
    return DyFiP.open(bundle_dir, board=board_kind())


@pytest.fixture(scope="module")
def results(accel, reference):
    return accel.classify(reference["images"])


def test_accuracy_equals_reference_up_to_genuine_ties(accel, results, reference):
    """Results.accuracy is the reference's accuracy, except for images whose class differs
    at a genuine integer-logit tie (checked by assert_matches_reference); there the board's
    own class counts."""
    assert_matches_reference(results, reference, accel.deployment.table)
    labels = reference["labels"]
    ties = results.classes != reference["classes"]
    ref_right = reference["classes"] == labels
    want = (ref_right[~ties].sum() + (results.classes == labels)[ties].sum()) / len(labels)
    assert results.accuracy(labels) == pytest.approx(want, rel=0, abs=1e-12)


def test_every_path_and_mask_matches_reference(accel, results, reference):
    assert len(results) == len(reference["labels"])
    assert_matches_reference(results, reference, accel.deployment.table)


def test_timing_fields_present_and_positive(results):
    for key in ("stage_a_s", "host_s", "total_s", "model_s"):
        assert results.timings[key] > 0, key
    assert (results.model_cycles > 0).all()
    assert results[0].timings["total_s"] > 0


def test_single_images_agree_with_the_batch(accel, reference, results):
    for i in range(3):
        one = accel.classify(reference["images"][i])[0]
        assert one.cls == results.classes[i] and one.path == results.paths[i]

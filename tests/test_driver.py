"""DyFiP driver on the simulated PYNQ board: results, timings and every error path."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from board_conftest import (assert_matches_reference, bundle_dir, copy_bundle,  # noqa: F401
                            reference)

pytestmark = pytest.mark.board_env
pynq = pytest.importorskip("pynq")

from dyfip.bundle import write_npz  # noqa: E402
from dyfip.dataflow import stage_cycles  # noqa: E402
from dyfip.driver import (BitfileMissingError, BundleError, BundleMismatchError,  # noqa: E402
                          DMATimeoutError, DriverError, DyFiP, InputError, NoBoardError)
from dyfip.driver import sim  # noqa: E402
from dyfip.driver.board import is_simulated, open_overlay  # noqa: E402
from dyfip.tables import set_key  # noqa: E402


@pytest.fixture(scope="module")
def accel(bundle_dir):
    return DyFiP.open(bundle_dir, board="sim", batch_size=32)


@pytest.fixture
def fresh(bundle_dir):
    """A DyFiP on its own simulated device (for fault injection)."""
    device = sim.fresh_device()
    yield DyFiP(bundle_dir, bitfile=sim.simulated_bitstream(bundle_dir), device=device,
                timeout_s=0.2)
    sim.fresh_device()


def test_batch_matches_reference(accel, reference):
    n = 80  # more than batch_size: several DMA chunks
    res = accel.classify(reference["images"][:n])
    ref = {k: (v[:n] if np.ndim(v) else v) for k, v in reference.items()}
    assert_matches_reference(res, ref, accel.deployment.table)
    assert all(res.timings[k] > 0 for k in ("stage_a_s", "host_s", "total_s", "model_s",
                                            "device_model_s"))


def test_single_image_result(accel, reference):
    """One (C, H, W) image of each path (chosen from reference.npz's ``exited``) gives one
    Result with the reference's path and class; a routed one carries its set and mask."""
    exited = reference["exited"]
    for i in (np.flatnonzero(~exited)[0], np.flatnonzero(exited)[0]):
        res = accel.classify(reference["images"][i])  # (C, H, W)
        r = res[0]
        assert len(res) == 1 and r.path == ("exit" if exited[i] else "pruned")
        assert r.cls == reference["classes"][i] and r.timings["total_s"] > 0
        if exited[i]:
            assert r.subset is None and r.mask is None and r.model_cycles == accel.cycles.stage_a
        else:
            assert r.subset == set_key(reference["subsets"][i]) and r.cls in r.subset
            assert r.mask.shape == (sum(accel.deployment.table.filters),)
            assert r.model_cycles > accel.cycles.stage_a


def test_modelled_cycles_follow_the_mask(accel, reference):
    """Per image: stage A, plus stage B under the table's masks of its candidate set."""
    res = accel.classify(reference["images"][:64])
    dep = accel.deployment
    a = stage_cycles(dep.stage_spec("stage_a"))
    assert not res.exited.all()
    for i in range(len(res)):
        b = 0 if res.exited[i] else stage_cycles(dep.stage_spec("stage_b"),
                                                 dep.table.masks_for(res.subsets[i]))
        assert res.model_cycles[i] == a + b
    full = accel.classify_full(reference["images"][:16])
    assert (full.model_cycles == accel.cycles.full).all()
    assert res.model_cycles.max() <= accel.cycles.full
    assert full.timings["device_model_s"] > 0 and (full.paths == "full").all()


def test_every_table_row_has_its_sets_mask_and_cycles(accel):
    """For EVERY candidate set of the table, the driver's mask row (set -> row lookup) and
    its modelled stage-B cycles are those of ``table.masks_for(set)`` (a row off by one
    streams another set's mask and models its cycles)."""
    dep, pol, cycles = accel.deployment, accel.policy, accel.cycles
    subsets = dep.table.subsets
    rows = np.array([pol.index[tuple(s.tolist())] for s in subsets])  # as HostPolicy.step
    want = [stage_cycles(dep.stage_spec("stage_b"), dep.table.masks_for(s)) for s in subsets]
    assert len(set(want)) > 1  # else a shifted row would go unnoticed
    np.testing.assert_array_equal(cycles.per_image(rows) - cycles.stage_a, want)
    np.testing.assert_array_equal(pol.masks(rows), [dep.table.mask_vector(s) for s in subsets])


def test_routed_classes_stay_in_their_candidate_set(accel, reference, monkeypatch):
    """The class of a routed image is the argmax WITHIN its candidate set: stage-B logits
    whose global argmax is outside the set must not leak that class."""
    images = reference["images"][:64]
    real = accel.classify(images)
    run = np.flatnonzero(~real.exited)
    assert len(run), "no routed image among the first 64"
    sets = real.subsets[run]
    logits = np.zeros((len(run), accel.deployment.num_classes), np.int64)
    for row, s in zip(logits, sets):
        row[s] = s + 1  # in the set: the highest class index wins
        row[np.setdiff1d(np.arange(len(row)), s)[0]] = 100  # global argmax: outside the set

    def stage_b(features, mask):
        assert len(features) == len(mask) == len(run)
        return logits.copy()

    monkeypatch.setattr(accel.stage_b, "run", stage_b)
    res = accel.classify(images)
    np.testing.assert_array_equal(res.subsets[run], sets)
    assert all(top not in s for top, s in zip(logits.argmax(axis=1), sets))
    assert all(c in s for c, s in zip(res.classes[run], sets))
    np.testing.assert_array_equal(res.classes[run], sets.max(axis=1))


def test_every_image_exits_at_a_tiny_tau(bundle_dir, reference):
    acc = DyFiP.open(bundle_dir, board="sim", tau=1e-6)  # top probability >= 1/classes
    acc.device.runs.clear()
    res = acc.classify(reference["images"][:8])
    assert res.exited.all() and (res.classes == res.branch_pred).all()
    assert (res.masks == 0).all() and np.isnan(res.logits).all()
    assert (res.model_cycles == acc.cycles.stage_a).all()
    assert {r["stage"] for r in acc.device.runs} == {"stage_a"}  # stage B never started


def test_empty_batch(accel, reference):
    empty = reference["images"][:0]
    for res in (accel.classify(empty), accel.classify_full(empty)):
        assert len(res) == 0 and res.summary()["images"] == 0
        assert res.masks.shape == (0, sum(accel.deployment.table.filters))
        assert res.logits.shape == (0, accel.deployment.num_classes)
    with pytest.raises(ValueError, match="at least one image"):
        accel.throughput(empty)


def test_throughput_counts_images(accel, reference):
    assert accel.throughput(reference["images"][0])["dyfip"]["images"] == 1  # one (C, H, W)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1; got 0"):
        accel.throughput(reference["images"][:2], repeats=0)


def test_simulated_device_is_in_pynqs_registry(accel):
    from pynq.pl_server.device import DeviceMeta

    assert DeviceMeta._subclasses[sim.SimDevice._probe_priority_] is sim.SimDevice
    assert pynq.Device.active_device is accel.device
    assert set(accel.overlay.ip_dict) >= {"idma0", "odma0", "idma1", "idma2", "odma1"}
    buf = pynq.allocate((4,), dtype=np.uint8)  # pynq's own allocate, on the simulation
    assert buf.device_address > 0


def test_probe_follows_the_environment(monkeypatch):
    monkeypatch.delenv(sim.ENV, raising=False)
    assert sim.SimDevice._probe_() == []
    monkeypatch.setenv(sim.ENV, "1")
    assert isinstance(sim.SimDevice._probe_()[0], sim.SimDevice)


def test_auto_board_follows_the_sim_board_hint(bundle_dir, monkeypatch):
    """DYFIP_SIM_BOARD=1 (NO_BOARD_HINT's advice) makes pynq probe the simulated board:
    auto mode must then use it (no real bitstream), as one device, not a second one."""
    monkeypatch.setenv(sim.ENV, "1")
    monkeypatch.delenv("DYFIP_BOARD", raising=False)
    for name in ("_devices", "_active_device"):  # pynq probes afresh; restored afterwards
        monkeypatch.setattr(pynq.Device, name, None, raising=False)
        monkeypatch.delattr(pynq.Device, name)
    monkeypatch.setattr(sim, "_device", None)
    acc = DyFiP.open(bundle_dir)
    assert isinstance(acc.device, sim.SimDevice) and pynq.Device.active_device is acc.device
    assert pynq.Device.devices == [acc.device]


def test_auto_board_without_a_device_is_the_simulation(bundle_dir, monkeypatch):
    monkeypatch.delenv(sim.ENV, raising=False)
    monkeypatch.delenv("DYFIP_BOARD", raising=False)
    monkeypatch.setattr(pynq.Device, "_devices", [], raising=False)
    monkeypatch.delattr(pynq.Device, "_active_device", raising=False)
    assert isinstance(DyFiP.open(bundle_dir).device, sim.SimDevice)


def test_unflushed_input_is_not_seen_by_the_device(fresh, reference):
    """Simulated DDR is only updated by flush(): the driver's cache handling is exercised."""
    buf = fresh.stage_a.ibuf["pixels"]
    buf[:] = 7
    assert fresh.device.memory.read(buf.device_address, 4).tolist() == [0, 0, 0, 0]
    buf.flush()
    assert fresh.device.memory.read(buf.device_address, 4).tolist() == [7, 7, 7, 7]


# -- errors -------------------------------------------------------------------------------
def test_missing_bitfile(bundle_dir, tmp_path):
    with pytest.raises(BitfileMissingError, match=r"none\.bit not found"):
        DyFiP(bundle_dir, bitfile=tmp_path / "none.bit", device=sim.install())
    with pytest.raises(BitfileMissingError) as err:  # the default: <bundle>/accel/dyfip.bit
        DyFiP.open(bundle_dir, board="pynq")
    msg = str(err.value)  # what builds it, and the way without it
    assert f"{bundle_dir / 'accel' / 'dyfip.bit'} not found" in msg
    assert "'dyfip build --bitstream' (needs Vivado; writes accel/dyfip.bit" in msg
    assert "board='sim'" in msg


def test_real_bitstream_needs_its_hwh(tmp_path):
    """On a real device pynq reads the block design from the .hwh next to the .bit: a
    missing one is named before pynq fails with its own error."""
    bit = tmp_path / "dyfip.bit"
    bit.write_bytes(b"\x00\x09\x0f\xf0 real bitstream bytes")
    with pytest.raises(BitfileMissingError, match=r"dyfip\.hwh not found: pynq reads the "
                       r"block design of .*dyfip\.bit"):
        open_overlay(bit, device=object())


def test_board_script_runs_on_the_simulated_board(bundle_dir, tmp_path):
    """A script written for the board (bitfile=, device=) runs on the simulation too."""
    with pytest.warns(UserWarning, match="simulated bitstream, not the given bitfile"):
        accel = DyFiP.open(bundle_dir, board="sim", bitfile=tmp_path / "dyfip.bit",
                           device=None)
    assert is_simulated(accel.device)


def test_no_board(bundle_dir, monkeypatch):
    monkeypatch.delattr(pynq.Device, "_active_device", raising=False)
    monkeypatch.setattr(pynq.Device, "_devices", [], raising=False)
    with pytest.raises(NoBoardError, match="simulated board"):
        DyFiP(bundle_dir, bitfile=sim.simulated_bitstream(bundle_dir))


def test_not_a_simulated_bitstream(bundle_dir, tmp_path):
    bit = tmp_path / "dyfip.bit"
    bit.write_bytes(b"\x00\x09\x0f\xf0 real bitstream bytes")
    with pytest.raises(DriverError, match="not a simulated DyFiP bitstream"):
        DyFiP(bundle_dir, bitfile=bit, device=sim.install())


def test_unknown_board_name(bundle_dir):
    """DyFiP.open knows 'auto', 'pynq' and 'sim' only."""
    with pytest.raises(ValueError, match=r"board must be 'auto', 'pynq' or 'sim'; got 'fpga'"):
        DyFiP.open(bundle_dir, board="fpga")


def test_simulated_board_without_pynq(bundle_dir, monkeypatch):
    """Without pynq, board='sim' raises NoBoardError saying so (not a raw ImportError)."""
    monkeypatch.setitem(sys.modules, "pynq", None)  # 'import pynq' now fails
    for name in [m for m in sys.modules if m.startswith(sim.__name__)]:
        monkeypatch.delitem(sys.modules, name)  # re-imported (and failing) in open()
    with pytest.raises(NoBoardError, match=r"the simulated board needs pynq \(.*pynq.*\): "
                       r"use the board environment \(make board-env\)"):
        DyFiP.open(bundle_dir, board="sim")


def test_no_bundle(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        DyFiP.open(tmp_path / "nothing", board="sim")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(BundleError, match="dyfip build --estimate"):
        DyFiP.open(tmp_path / "half", board="sim")


@pytest.mark.parametrize("kwargs, match", [
    ({"tau": 5}, r"tau must be a probability in \(0, 1\].*got 5"),
    ({"tau": -1}, "tau .* got -1"),
    ({"tau": 0.0}, "tau .* got 0.0"),
    ({"tau": float("nan")}, "tau .* got nan"),
    ({"tau": "high"}, "tau .* got 'high'"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1; got 0"),
    ({"batch_size": -3}, "batch_size .* got -3"),
    ({"batch_size": 2.5}, "batch_size .* got 2.5"),
    ({"timeout_s": float("nan")}, "timeout_s must be a finite number > 0; got nan"),
    ({"timeout_s": float("inf")}, "timeout_s .* got inf"),
    ({"timeout_s": 0}, "timeout_s .* got 0"),
    ({"timeout_s": -1.0}, "timeout_s .* got -1.0"),
    ({"timeout_s": "long"}, "timeout_s .* got 'long'"),
], ids=["tau=5", "tau=-1", "tau=0", "tau=nan", "tau=str", "batch=0", "batch=-3", "batch=2.5",
        "timeout=nan", "timeout=inf", "timeout=0", "timeout=-1", "timeout=str"])
def test_bad_parameters(bundle_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DyFiP.open(bundle_dir, board="sim", **kwargs)


def test_boundary_parameters(bundle_dir, reference):
    acc = DyFiP.open(bundle_dir, board="sim", tau=1.0, batch_size=1)
    assert acc.deployment.tau == 1.0 and len(acc.classify(reference["images"][:3])) == 3


def _junk(path: Path) -> None:
    path.write_bytes(b"not a bundle file " * 8)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, **changes) -> None:
    data = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))


_DROP = object()


def _set(path: Path, dotted: str, value=_DROP) -> None:
    """Set (default: remove) the nested JSON field ``dotted`` (``"stages.stage_b.layers"``,
    ``"stages.stage_a.inputs.0.shape"``)."""
    data = json.loads(path.read_text())
    *parents, last = (int(k) if k.isdigit() else k for k in dotted.split("."))
    node = data
    for key in parents:
        node = node[key]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    path.write_text(json.dumps(data))


def _drop(path: Path, dotted: str) -> None:
    _set(path, dotted)


@pytest.mark.parametrize("name, damage, match", [
    ("branch.npz", _junk, r"branch\.npz is corrupt \(ValueError: Cannot load file containing "
     "pickled data"),
    ("branch.npz", _truncate, r"branch\.npz is corrupt \(BadZipFile"),
    ("estimates.json", lambda p: p.write_text("{"), r"estimates\.json is corrupt "
     r"\(JSONDecodeError"),
    ("config.json", lambda p: p.write_text("[1]"), r"config\.json is corrupt \(a JSON list"),
    ("config.json", lambda p: _edit_json(p, tau=None), r"config\.json has no field 'tau'"),
    ("config.json", lambda p: _edit_json(p, tau=5), r"config\.json: tau must be a probability"),
    ("config.json", lambda p: _edit_json(p, k=2.5), r"config\.json: field 'k' must be an "
     r"integer; got 2\.5"),
    ("accel/layers.json", lambda p: _edit_json(p, filters_per_layer=[8.5, True]),
     r"layers\.json: field 'filters_per_layer' must be a list of integers > 0; got \[8\.5"),
    ("config.json", lambda p: _edit_json(p, k="two"), r"config\.json: field 'k' must be an "
     r"integer; got 'two'"),
    ("accel/stage_b.npz", Path.unlink, r"stage_b\.npz not found: .*dyfip build --estimate"),
    ("estimates.json", lambda p: _edit_json(p, clk_ns=0), r"estimates\.json: field 'clk_ns' "
     r"must be a finite number > 0; got 0.*dyfip build --estimate"),
    ("estimates.json", lambda p: _edit_json(p, clk_ns=-10), r"estimates\.json: field "
     r"'clk_ns' .* got -10"),
    ("estimates.json", lambda p: _edit_json(p, clk_ns="fast"), r"estimates\.json: field "
     r"'clk_ns' must be a number; got 'fast'"),
    ("accel/layers.json", lambda p: _drop(p, "filters_per_layer"), r"layers\.json has no "
     r"field 'filters_per_layer': .*dyfip build --estimate"),
    ("accel/layers.json", lambda p: _drop(p, "feature_scale"), r"layers\.json has no field "
     r"'feature_scale': .*dyfip build --estimate"),
    ("accel/layers.json", lambda p: _drop(p, "stages.stage_b.layers"), r"layers\.json has no "
     r"field 'stages\.stage_b\.layers': .*dyfip build --estimate"),
    ("accel/layers.json", lambda p: _edit_json(p, filters_per_layer="64"), r"layers\.json: "
     r"field 'filters_per_layer' must be a list; got '64'"),
    ("accel/layers.json", lambda p: _drop(p, "stages.stage_a.outputs.0.shape"), r"layers\.json "
     r"has no field 'stages\.stage_a\.outputs\.0\.shape'"),
    ("accel/layers.json", lambda p: _set(p, "stages.stage_b.inputs", ["x"]), r"layers\.json: "
     r"field 'stages\.stage_b\.inputs\.0' must be a JSON object; got 'x'"),
    ("accel/layers.json", lambda p: _set(p, "stages.stage_a.inputs.0.shape", [1, 8, 8]),
     r"field 'stages\.stage_a\.inputs\.0\.shape' must have 4 dimensions; got \[1, 8, 8\]"),
    ("accel/layers.json", lambda p: _drop(p, "stages.stage_a.inputs.0.datatype"),
     r"has no field 'stages\.stage_a\.inputs\.0\.datatype'"),
    ("accel/layers.json", lambda p: _set(p, "stages.stage_b.outputs.0.datatype", "INT99X"),
     r"field 'stages\.stage_b\.outputs\.0\.datatype' is 'INT99X', not a FINN data type"),
    ("accel/layers.json", lambda p: _set(p, "stages.stage_b.inputs.1.role", "masks"),
     r"the inputs of stage_b have roles \['features', 'masks'\]; the driver streams "
     r"\['features', 'mask'\]"),
    ("config.json", lambda p: _edit_json(p, set_mass="abc"), r"config\.json: field "
     r"'set_mass' must be a number; got 'abc'.*dyfip run"),
    ("config.json", lambda p: _edit_json(p, set_mass=1.5), r"config\.json: field 'set_mass' "
     r"must be in \(0, 1\]"),
    ("config.json", lambda p: _edit_json(p, k_max="abc"), r"config\.json: field 'k_max' must "
     r"be an integer; got 'abc'.*dyfip run"),
    ("tables.npz", _junk, r"tables\.npz is corrupt \(ValueError: Cannot load file containing "
     "pickled data"),
    ("tables.npz", _truncate, r"tables\.npz is corrupt \(BadZipFile"),
    ("tables.npz", Path.unlink, r"tables\.npz not found: run 'dyfip finetune' first"),
    ("tables.npz", lambda p: _drop_npz(p, "subsets"), r"table file .*tables\.npz is missing "
     "field 'subsets'"),
], ids=["junk-branch", "truncated-branch", "estimates-brace", "config-list", "config-no-tau",
        "config-tau-5", "config-k-float", "filters-float", "config-k-str", "no-stage-b",
        "clk-0", "clk-negative", "clk-str", "no-filters", "no-feature-scale",
        "no-stage-b-layers", "filters-str", "no-output-shape", "inputs-str", "pixels-rank-3",
        "no-datatype", "bad-datatype", "mask-role", "set-mass-str", "set-mass-1.5", "k-max-str",
        "junk-tables", "truncated-tables", "no-tables", "tables-no-subsets"])
def test_corrupt_bundle_file_is_named(bundle_dir, tmp_path, name, damage, match):
    other = copy_bundle(bundle_dir, tmp_path / "other")
    damage(other / name)
    with pytest.raises(BundleError, match=match):
        DyFiP.open(other, board="sim")


def test_bitstream_streams_must_be_the_accelerators(bundle_dir, tmp_path):
    """driver.json (written by the bitstream build) is checked against accel/layers.json:
    an edited or foreign one is named instead of failing at the first transfer."""
    from dyfip.driver.deployment import Deployment
    from dyfip.driver.iospec import derive_io, driver_settings, load_io

    accel = Deployment.load(bundle_dir).accel
    io = derive_io(accel)
    settings = driver_settings(io, "digest", "hash", 10.0)
    path = tmp_path / "driver.json"
    path.write_text(json.dumps(settings))
    assert load_io(tmp_path, accel) == io
    _set(path, "stages.stage_b.inputs.1.shape_packed", [1, 3])
    with pytest.raises(BundleMismatchError, match=r"the mask stream of stage_b is .*, the "
                       r"accelerator's accel/layers\.json gives"):
        load_io(tmp_path, accel)
    _drop(path, "stages.stage_b")
    with pytest.raises(BundleMismatchError, match=r"the features stream of stage_b is None"):
        load_io(tmp_path, accel)
    _set(path, "stages", [1])
    with pytest.raises(BundleError, match=r"is not a DyFiP driver settings file"):
        load_io(tmp_path, accel)
    bit = sim.simulated_bitstream(bundle_dir, tmp_path / "sim")
    _set(bit.parent / "driver.json", "design_digest", 5)
    with pytest.raises(BundleError, match=r"driver\.json: field 'design_digest' must be a "
                       r"string; got 5"):
        DyFiP(bundle_dir, bitfile=bit, device=sim.install())


@pytest.mark.parametrize("damage", [_junk, _truncate])
def test_corrupt_reference_only_fails_when_used(bundle_dir, tmp_path, reference, damage):
    """reference.npz is HIL ground truth: the driver runs without it, using it names it."""
    other = copy_bundle(bundle_dir, tmp_path / "other")
    damage(other / "reference.npz")
    acc = DyFiP.open(other, board="sim")
    assert len(acc.classify(reference["images"][:4])) == 4
    with pytest.raises(BundleError, match=r"reference\.npz is corrupt"):
        acc.deployment.reference()


def _rewrite_npz(path, **changes):
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    write_npz(path, **{**data, **changes})


def _drop_npz(path: Path, key: str) -> None:
    with np.load(path) as z:
        data = {k: z[k] for k in z.files if k != key}
    write_npz(path, **data)


def _drop_class(path: Path, cls: int) -> None:
    """Keep only the tables' sets without class ``cls`` (and their masks)."""
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    keep = ~(data["subsets"] == cls).any(axis=1)
    data.update({k: v[keep] for k, v in data.items() if k == "subsets" or
                 k.startswith("masks_")})
    write_npz(path, **data)


def test_tables_missing_a_class_are_refused(accel, bundle_dir, tmp_path):
    """Tables covering fewer classes than the branch (9 of 10) are refused when the bundle
    is opened, naming both counts and files (not a KeyError inside classify)."""
    other = copy_bundle(bundle_dir, tmp_path / "other")
    n = accel.deployment.num_classes
    _drop_class(other / "tables.npz", n - 1)
    with pytest.raises(BundleMismatchError, match=rf"is inconsistent .*tables\.npz covers "
                       rf"{n - 1} classes, branch\.npz has {n}"):
        DyFiP.open(other, board="sim")


def test_tables_for_other_set_sizes_are_refused(accel, bundle_dir, tmp_path):
    """config.json's k (also one above the number of classes) must be the tables' smallest
    set size."""
    other = copy_bundle(bundle_dir, tmp_path / "other")
    table = accel.deployment.table
    k, k_max, n = table.k, table.k_max, table.num_classes
    for bad_k in (k + 1, n + 1):
        _edit_json(other / "config.json", k=bad_k)
        with pytest.raises(BundleMismatchError, match=rf"is inconsistent .*tables\.npz has "
                           rf"masks for sets of {k}\.\.{k_max} classes, config\.json asks "
                           rf"for {bad_k}\.\.{max(bad_k, k_max)}"):
            DyFiP.open(other, board="sim")


def test_tables_of_another_accelerator_are_refused(bundle_dir, tmp_path):
    """The tables' filters per layer must be the accelerator's (accel/layers.json)."""
    other = copy_bundle(bundle_dir, tmp_path / "other")
    layers = other / "accel" / "layers.json"
    filters = json.loads(layers.read_text())["filters_per_layer"]
    _edit_json(layers, filters_per_layer=[f * 2 for f in filters])
    with pytest.raises(BundleMismatchError, match=rf"is inconsistent .*tables have "
                       rf"\[{', '.join(map(str, filters))}\] filters per layer, the "
                       rf"accelerator \[{', '.join(str(f * 2) for f in filters)}\]"):
        DyFiP.open(other, board="sim")


def test_bundle_from_another_model(bundle_dir, tmp_path):
    other = copy_bundle(bundle_dir, tmp_path / "other")
    _rewrite_npz(other / "branch.npz", model_hash=np.array("f" * 64))
    with pytest.raises(BundleMismatchError, match="mixes models"):
        DyFiP.open(other, board="sim")
    tables = copy_bundle(bundle_dir, tmp_path / "tables")
    _rewrite_npz(tables / "tables.npz", model_hash=np.array("e" * 64))
    with pytest.raises(BundleMismatchError, match=r"mixes models \(tables\.npz: eeeeeeeeeeee"):
        DyFiP.open(tables, board="sim")
    with pytest.raises(BundleMismatchError, match="mixes models"):
        DyFiP.open(bundle_dir, board="sim", model_hash="0" * 64)


def test_branch_of_another_model(bundle_dir, tmp_path):
    other = copy_bundle(bundle_dir, tmp_path / "other")
    with np.load(other / "branch.npz") as z:
        scale = float(z["feature_scale"])
    _rewrite_npz(other / "branch.npz", feature_scale=np.float64(scale * 1.5))
    with pytest.raises(BundleMismatchError, match="feature scale"):
        DyFiP.open(other, board="sim")


def test_bitstream_of_another_accelerator(bundle_dir, tmp_path):
    other = copy_bundle(bundle_dir, tmp_path / "other")
    params = other / "accel" / "stage_b.npz"
    with np.load(params) as z:
        key = next(k for k in z.files if k.endswith(".weights"))
        w = z[key]
    _rewrite_npz(params, **{key: -w})
    bit = sim.simulated_bitstream(bundle_dir)  # built from the original accelerator
    with pytest.raises(BundleMismatchError, match="another accelerator"):
        DyFiP(other, bitfile=bit, device=sim.install())


@pytest.mark.parametrize("images, match", [
    (np.zeros((2, 1, 8, 8), np.float32), "uint8"),
    (np.zeros((2, 3, 8, 8), np.uint8), "shape"),
    (np.zeros((8, 8), np.uint8), "shape"),
    ([[0, 1]], "numpy array"),
])
def test_wrong_images(accel, images, match):
    if match == "shape" and images.shape[1:] == accel.image_shape:
        pytest.skip("this bundle's images have that shape")
    with pytest.raises(InputError, match=match):
        accel.classify(images)


def test_stuck_dma_times_out(fresh, reference):
    fresh.device.stuck.add(fresh.io["stage_b"].output.dma)
    images = reference["images"][:4]
    t0 = time.perf_counter()
    with pytest.raises(DMATimeoutError, match="did not complete within 0.2 s"):
        fresh.classify_full(images)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(DriverError, match="not idle"):  # no silent reuse of a stuck DMA
        fresh.classify_full(images)


def test_overhead_benchmark(bundle_dir, tmp_path, monkeypatch):
    """The benchmark's exit code is 0 exactly when the median it writes is under target."""
    import runpy

    bench = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "driver_overhead.py"))
    main, out = bench["main"], tmp_path / "overhead.json"
    args = ["--bundle", str(bundle_dir), "--out", str(out), "--repeats", "1"]
    rc = main(args)
    res = json.loads(out.read_text())
    assert res["single_image_us"]["median"] > 0 and res["batched_us_per_image"] > 0
    assert rc == (0 if res["single_image_us"]["median"] < res["target_us"] else 1)
    slow = {**res, "single_image_us": {**res["single_image_us"], "median": res["target_us"]}}
    monkeypatch.setitem(main.__globals__, "measure", lambda bundle, repeats: slow)
    assert main(args) == 1  # a median AT the target misses it
    assert json.loads(out.read_text())["single_image_us"]["median"] == res["target_us"]

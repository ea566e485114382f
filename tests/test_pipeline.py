"""End to end on a tiny digits configuration, plus the CLI's error paths."""
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import dyfip
from dyfip import bundle
from dyfip.cli import main
from dyfip.data import load_dataset
from dyfip.decision import Decision
from dyfip.evaluate import METHODS, pareto_front
from dyfip.inference import Prediction, dyfip_predict
from dyfip.model import images_to_float, load_checkpoint, model_hash
from dyfip.tables import MaskTable


def test_bundle_has_every_artifact(tiny_bundle):
    for name in ("config.json", "base.pt", "model.pt", "importance.npz", "importance.png",
                 "tables.npz", "branch.npz", "reference.npz", "report.json", "report.md",
                 "pareto.png"):
        assert (tiny_bundle / name).stat().st_size > 0, name
    assert not list(tiny_bundle.glob(".*.tmp*")), "temporary files left behind"
    history = json.loads((tiny_bundle / "train_history.json").read_text())
    assert history[-1]["epoch"] == "bn_recalibrated"  # BN re-estimated (the default)


def test_report_contract(tiny_bundle):
    report = json.loads((tiny_bundle / "report.json").read_text())
    for m in METHODS:
        r = report[m]
        assert 0 <= r["accuracy"] <= 1
        for key in ("macs_avg", "macs_worst", "cycles_avg", "cycles_worst"):
            assert r[key] > 0
        assert r["macs_avg"] <= r["macs_worst"] * (1 + 1e-9)
    d = report["dyfip"]
    assert 0 <= d["exit_rate"] <= 1 and 0 <= d["topk_hit_rate"] <= 1
    assert abs(sum(d["errors"].values()) - (1 - d["accuracy"])) < 1e-9
    # the label misses the set only on routed images: set_miss = routed share x miss rate
    assert d["errors"]["set_miss"] == pytest.approx((1 - d["exit_rate"])
                                                    * (1 - d["routed_hit_rate"]))
    within = d["within_set_errors"]  # same images and definition as errors["stage_b"]
    assert within["dyfip"] == pytest.approx(d["errors"]["stage_b"])
    assert 0 <= within["unpruned"] <= 1
    assert within["static_exit"] >= 0
    paired = d["vs_static_exit"]
    assert paired["margin"] == pytest.approx(report["margin_vs_static_exit"])
    assert paired["paired_se"] >= 0 and min(paired["only_this"], paired["only_baseline"]) >= 0
    gap = d["vs_full"]  # the gap to the full network, with its paired s.e.
    assert gap["margin"] == pytest.approx(d["accuracy"] - report["full"]["accuracy"])
    assert f"DyFiP minus the full network: {gap['margin'] * 100:+.2f}" in (
        tiny_bundle / "report.md").read_text()
    val = report["validation"]  # the same comparison on the held-out validation split
    assert val["images"] == len(load_dataset("digits").val)
    assert val["margin"] == pytest.approx(val["dyfip"] - val["static_exit"])
    assert 0 < val["full"] <= 1
    assert val["vs_full"]["margin"] == pytest.approx(val["dyfip"] - val["full"])
    assert f"full {val['full']:.2%}, static+exit" in (tiny_bundle / "report.md").read_text()
    assert set(val["within_set_errors"]) == set(within)
    assert "validation images" in (tiny_bundle / "report.md").read_text()
    assert "(share of validation images)" in (tiny_bundle / "report.md").read_text()
    assert ("k=2..3 (sets holding 90% of the branch's probability)" in  # QUICK's adaptive sets
            (tiny_bundle / "report.md").read_text())
    assert d["macs_worst"] < report["full"]["macs_worst"]
    assert report["static"]["macs_worst"] == report["static"]["macs_avg"]
    assert set(report["params"]) >= {"k", "tau", "budget", "seed", "dataset"}
    assert report["dyfip_version"] == dyfip.__version__  # which DyFiP made the bundle
    assert report["sweep"] and all("dyfip" in p for p in report["sweep"])
    targets = report["targets"]  # the digits bars, checked on this run's own figures
    assert targets["full_minus_dyfip"]["value"] == pytest.approx(-gap["margin"])
    assert targets["dyfip_macs_worst"]["value"] == d["macs_worst_ratio"]
    assert f"Targets (digits, this seed): full_accuracy {report['full']['accuracy']:.2%}" in (
        tiny_bundle / "report.md").read_text()


def test_estimates_hold_the_paths_cycles(tiny_bundle):
    est = json.loads((tiny_bundle / "estimates.json").read_text())
    report = json.loads((tiny_bundle / "report.json").read_text())
    assert est["paths"]["dyfip"]["cycles_worst"] == report["dyfip"]["cycles_worst"]
    assert est["stages"]["stage_b"]["latency_cycles"] > 0
    folding = json.loads((tiny_bundle / "folding.json").read_text())
    assert folding["group_size"] == est["group_size"]  # tables and accelerator agree


def test_tables_bound_to_deployed_model(tiny_bundle):
    model = load_checkpoint(tiny_bundle / "model.pt")
    table = MaskTable.load(tiny_bundle / "tables.npz", model_hash(model), model.filters_per_layer)
    base = load_checkpoint(tiny_bundle / "base.pt")
    with pytest.raises(ValueError, match="rebuild the tables"):
        MaskTable.load(tiny_bundle / "tables.npz", model_hash(base))
    assert table.k == 2


def _dyfip_by_hand(model, table, image, k, tau, k_max, set_mass):
    """One image: exit on the branch's top softmax probability >= tau, else the fewest top
    classes (k..k_max) holding set_mass, stage B under their masks, best class of the set."""
    model.eval()
    with torch.no_grad():
        feats = model.features(images_to_float(image[None]))
        z = [float(v) for v in model.branch_logits(feats).double()[0]]
        e = [math.exp(v - max(z)) for v in z]
        probs = [v / sum(e) for v in e]
        ranked = sorted(range(len(z)), key=lambda c: (-z[c], c))  # ties: lower class
        if probs[ranked[0]] >= tau:
            return ranked[0], True, None
        size, mass = 0, 0.0
        while size < len(ranked) and mass < set_mass:
            mass += probs[ranked[size]]
            size += 1
        subset = sorted(ranked[:min(max(size, k), k_max)])
        masks = [torch.from_numpy(m[None].astype(np.float32)) for m in table.masks_for(subset)]
        logits = [float(v) for v in model.stage_b_logits(feats, masks)[0]]
    return max(subset, key=lambda c: (logits[c], -c)), False, subset


def test_per_image_equals_batched_and_reference(tiny_bundle):
    model = load_checkpoint(tiny_bundle / "model.pt")
    table = MaskTable.load(tiny_bundle / "tables.npz")
    with np.load(tiny_bundle / "reference.npz") as ref:
        images, classes, exited = ref["images"], ref["classes"], ref["exited"]
        k, tau = int(ref["k"]), float(ref["tau"])
        rule = dict(k_max=int(ref["k_max"]), set_mass=float(ref["set_mass"]))
    assert rule["k_max"] == 3  # the quick preset's adaptive sets: the general rule
    batched = dyfip_predict(model, images[:40], table, k, tau, **rule)
    # reference.npz is written by dyfip_predict too: it pins the bundle, not the rule
    assert np.array_equal(batched.classes, classes[:40])
    assert np.array_equal(batched.exited, exited[:40])
    assert 0 < batched.exited.sum() < 40  # both paths below
    for i in range(40):  # the rule written out per image, without dyfip.decision
        cls, exits, subset = _dyfip_by_hand(model, table, images[i], k, tau, **rule)
        assert (batched.classes[i], bool(batched.exited[i])) == (cls, exits), i
        if not exits:
            assert set(batched.decision.subsets[i].tolist()) == set(subset), i
    for i in range(0, 40, 7):
        single = dyfip_predict(model, images[i:i + 1], table, k, tau, **rule)
        assert single.classes[0] == batched.classes[i]
        if not single.exited[0]:
            assert single.classes[0] in single.decision.subsets[0]


def test_shared_stage_a_outputs_give_the_same_predictions(tiny_bundle):
    from dyfip.inference import full_predict, stage_a_outputs

    base = load_checkpoint(tiny_bundle / "base.pt")
    model = load_checkpoint(tiny_bundle / "model.pt")
    table = MaskTable.load(tiny_bundle / "tables.npz")
    with np.load(tiny_bundle / "reference.npz") as ref:
        images = ref["images"][:50]
    shared = stage_a_outputs(base, images, batch_size=16)  # the fine-tune shares stage A
    for static in (False, True):
        a = dyfip_predict(model, images, table, 2, 0.5, static=static, batch_size=16, k_max=3)
        b = dyfip_predict(model, images, table, 2, 0.5, static=static, batch_size=16, k_max=3,
                          stage_a=shared)
        assert np.array_equal(a.classes, b.classes)
        assert np.array_equal(a.logits, b.logits, equal_nan=True)
    assert np.array_equal(full_predict(model, images, table, batch_size=16),
                          full_predict(model, images, table, batch_size=16, stage_a=shared))
    with pytest.raises(ValueError, match="of 50 images for 49 images"):
        dyfip_predict(model, images[:49], table, 2, 0.5, k_max=3, stage_a=shared)
    with torch.no_grad():
        model.branch[2].bias += 1.0  # another branch: its decisions would be base's
    with pytest.raises(ValueError, match="stage A or branch differs"):
        full_predict(model, images, stage_a=shared)


def test_unpruned_reference_restricted_to_the_sets(tiny_bundle):
    from dyfip.evaluate import within_set_errors

    base = load_checkpoint(tiny_bundle / "base.pt")
    model = load_checkpoint(tiny_bundle / "model.pt")
    table = MaskTable.load(tiny_bundle / "tables.npz")
    split = load_dataset("digits").test
    y = split.labels
    k, tau, rule = table.k, 0.95, dict(k_max=table.k_max, set_mass=0.9)
    unpruned = dyfip_predict(base, split.images, None, k, tau)
    p = dyfip_predict(model, split.images, table, k, tau, **rule)
    run = ~p.exited
    assert run.any()
    # the real static+exit baseline: same branch, so same routing and sets as DyFiP
    static_exit = dyfip_predict(load_checkpoint(tiny_bundle / "baseline_static_exit.pt"),
                                split.images, table, k, tau, static=True, **rule)
    assert np.array_equal(static_exit.exited, p.exited)
    assert np.array_equal(static_exit.decision.subsets, p.decision.subsets)
    correct = static_exit.classes == y
    errors = within_set_errors(unpruned, p, y, correct)
    # independently: each method's errors on the routed images with the label in the set
    within = run & (p.decision.subsets == y[:, None]).any(axis=1)
    assert errors["static_exit"] == pytest.approx(np.sum(within & ~correct) / len(y))
    assert errors["dyfip"] == pytest.approx(np.sum(within & (p.classes != y)) / len(y))
    # ... and the base network's stage-B logits, best class of the set per image
    hit = np.flatnonzero(within)
    with torch.no_grad():
        logits = base.stage_b_logits(base.features(images_to_float(split.images[hit]))).numpy()
    best = [max(set(s), key=lambda c: row[c]) for row, s in zip(logits, p.decision.subsets[hit])]
    assert errors["unpruned"] == pytest.approx(np.sum(np.array(best) != y[hit]) / len(y))
    moved = Prediction(p.classes, Decision(p.exited, np.roll(p.decision.branch_pred, 1),
                                           p.decision.subsets, p.decision.confidence), p.logits)
    with pytest.raises(RuntimeError, match="branch decisions differ"):
        within_set_errors(unpruned, moved, y, correct)


def test_masked_stage_b_activations_are_zero(tiny_bundle):
    model = load_checkpoint(tiny_bundle / "model.pt")
    table = MaskTable.load(tiny_bundle / "tables.npz")
    with np.load(tiny_bundle / "reference.npz") as ref:
        x = images_to_float(ref["images"][:5])
    masks = [torch.from_numpy(m).float().expand(5, -1) for m in table.masks_for((3, 8))]
    with torch.no_grad():
        y = model.features(x)
        for block, m in zip(model.stage_b, masks):
            y = block(y, m)
            assert torch.all(y[:, m[0] == 0] == 0)


def test_branch_npz_reproduces_branch_logits(tiny_bundle):
    model = load_checkpoint(tiny_bundle / "model.pt")
    with np.load(tiny_bundle / "branch.npz") as b:
        w, bias, scale, pool = b["weight"], b["bias"], float(b["feature_scale"]), int(b["pool"])
    with np.load(tiny_bundle / "reference.npz") as ref:
        x = torch.from_numpy(ref["images"][:16]).float() / 255
    with torch.no_grad():
        feats = model.features(x)
        want = model.branch_logits(feats).double().numpy()
    ints = np.round(feats.double().numpy() / scale)
    assert np.allclose(ints * scale, feats.double().numpy(), atol=1e-6)
    n, c, h, _ = ints.shape
    pooled = ints.reshape(n, c, h // pool, pool, h // pool, pool).mean(axis=(3, 5)) * scale
    assert np.allclose(pooled.reshape(n, -1) @ w.T + bias, want, atol=1e-4)


def test_bundle_board(tiny_bundle, tmp_path):
    from dyfip.pipeline import bundle_board

    assert bundle_board(tiny_bundle) == "Pynq-Z2"
    assert bundle_board(tmp_path) == "Pynq-Z2"
    (tmp_path / "config.json").write_text(json.dumps({"board": "none"}))
    with pytest.raises(ValueError, match="pass --board"):
        bundle_board(tmp_path)


def test_pareto_front():
    pts = [(1.0, 0.9), (0.5, 0.8), (0.5, 0.85), (0.7, 0.7), (0.2, 0.5)]
    assert sorted(pareto_front(pts)) == [0, 2, 4]


def test_per_layer_budget_config():
    """A budget per stage-B layer: a list becomes a tuple (hashable, as the sweep needs),
    survives config.json, and a wrong count or value is rejected."""
    from dyfip.config import Config, preset

    c = preset("fashion-mnist", budget=[0.25, 0.3125, 0.3125])
    assert c.budget == (0.25, 0.3125, 0.3125) and {c.budget}
    assert Config.from_dict(json.loads(c.to_json())) == c
    c.validate(10)
    for bad, message in (((0.25, 0.3125), "2 budgets for 3 prunable layers"),
                         ((0.25, 0.0, 0.5), "budget 0.0 must be a kept fraction in")):
        with pytest.raises(ValueError, match=f"budget={re.escape(str(bad))}: {message}"):
            c.replace(budget=bad).validate(10)


@pytest.mark.parametrize("quick", [False, True])
def test_every_preset_passes_its_own_checks(quick):
    from dyfip.config import PRESETS, preset

    for dataset in PRESETS:
        preset(dataset, quick).validate(10)


def test_cli_errors(tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["evaluate", "--out", str(tmp_path / "typo")]) == 2
    assert "bundle folder" in capsys.readouterr().err and not (tmp_path / "typo").exists()
    assert main(["run", "--out", str(tmp_path), "--k", "10", "--epochs", "1"]) == 2
    assert "k=10" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "digits"}))
    assert main(["explain", "--out", str(tmp_path), "--dataset", "cifar10"]) == 2
    assert "holds a digits run" in capsys.readouterr().err
    assert main(["explain", "--out", str(tmp_path), "--set", "nope=1"]) == 2
    assert "expected FIELD=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--out", str(tmp_path / "x"), "--budget", "half"])
    assert "--budget: invalid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"dyfip {dyfip.__version__}"


BAD_SETTINGS = [  # (command-line options, what the error must name)
    (["--set", "k_max=10"], "k_max=10"),
    (["--set", "set_mass=0"], "set_mass=0"),
    (["--set", "weight_scaling=row"], "weight_scaling='row'"),
    (["--set", "recalibrate_bn=yes"], "recalibrate_bn='yes' must be true or false"),
    (["--set", "mask_blocks=1"], "mask_blocks=1 must be true or false"),
    (["--set", "edge_weight_bits=16"], "edge_weight_bits=16 must be 0"),
    (["--set", "mask_pe_max=-1"], "mask_pe_max=-1 must be >= 0"),
    (["--set", "fixed_target_cycles=-1"], "fixed_target_cycles=-1 must be >= 0"),
    (["--set", "mask_target_cycles=-1"], "mask_target_cycles=-1 must be >= 0"),
    (["--set", "val_every=0"], "val_every=0 must be >= 1"),
    (["--set", "permute_cluster=0"], "permute_cluster=0 must be >= 1"),
    (["--set", "finetune_set_temperature=-1"], "finetune_set_temperature=-1 must be >= 0"),
    (["--budget", "0.5,0.25,0.25"], "3 budgets for 2 prunable layers"),
    (["--set", "k=abc"], "k='abc' must be a whole number"),
    (["--set", "tau=null"], "tau=None must be a number"),
    (["--set", "lr=0"], "lr=0 must be > 0"),
    (["--set", "batch_size=0"], "batch_size=0 must be >= 1"),
    (["--set", "weight_bits=0"], "weight_bits=0 must be in 2..8"),
    (["--set", "xai_method=shap"], "xai_method='shap' must be one of"),
    (["--set", 'stage_b=[{"filters": 8}]'], "unexpected keyword argument 'filters'"),
    (["--k", "4"], "--set k_max=N, or --set k_max=0"),  # the digits preset's k_max is 3
    (["--set", 'stage_b=[{"out_channels": "64"}]'], "stage_b[0].out_channels='64' must be a"),
    (["--set", 'stage_a=[{"out_channels": 0}]'], "stage_a[0]: out_channels=0 must be >= 1"),
    (["--set", 'stage_b=[{"out_channels": 8, "pool": "yes"}]'], "stage_b[0].pool='yes'"),
    (["--set", "stage_b=[]"], "stage_b must have at least one conv block"),
    (["--set", "head_hidden=[0]"], "head_hidden=[0]: every layer needs >= 1 unit"),
    (["--set", "sweep_budget=[1.5]"], "sweep_budget=[1.5]: budget 1.5 must be"),
    (["--set", "sweep_k=[0]"], "sweep_k=[0]: 0 must be in 1..9"),
    (["--set", "sweep_tau=[1.5]"], "sweep_tau=[1.5]: 1.5 must be in (0, 1]"),
    (["--set", "mask_blocks=true", "--group-size", "2"], "it needs group_size=0"),
    (["--set", "branch_distill=-1"], "branch_distill=-1 must be >= 0"),
    (["--set", "finetune_distill=-0.5"], "finetune_distill=-0.5 must be >= 0"),
    (["--board", "Nope"], "unknown board 'Nope'"),
]


@pytest.mark.parametrize("options, message", BAD_SETTINGS, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_cli_rejects_bad_settings(tmp_path, capsys, options, message):
    assert main(["run", "--out", str(tmp_path / "x"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before any work


def _check_clusters_of_two_groups(out):
    """The fold's permutation clusters 2 x PE filters (``permute_cluster=2``), not PE
    (then the clusters into the mask blocks, ``mask_blocks=true``)."""
    from dyfip.costs import mask_block_sizes
    from dyfip_hw.permute import cluster_permutation

    perms = json.loads((out / "permutation.json").read_text())["perms"]
    folding = json.loads((out / "folding.json").read_text())
    blocks = mask_block_sizes(folding["stages"]["stage_b"])
    with np.load(out / bundle.IMPORTANCE) as z:
        for name, perm in perms.items():
            unpermuted, g = z[name][..., np.argsort(perm)], folding["group_size"][name]
            assert cluster_permutation(unpermuted, 2 * g, blocks[name]).tolist() == perm
            assert cluster_permutation(unpermuted, g, blocks[name]).tolist() != perm


def test_cluster_sizes_must_tile_layers_and_blocks(tmp_path):
    from types import SimpleNamespace

    from dyfip.config import preset
    from dyfip.pipeline import Pipeline

    model = SimpleNamespace(prunable_layers=["stage_b.0", "stage_b.1"],
                            filters_per_layer=[64, 64])
    est = {"group_size": {"stage_b.0": 2, "stage_b.1": 2}}
    p = Pipeline(preset("digits", permute_cluster=2), tmp_path)
    assert p.cluster_sizes(est, model) == {"stage_b.0": 4, "stage_b.1": 4}
    with pytest.raises(ValueError, match="mask blocks of 6 filters"):
        p.cluster_sizes(est, model, {"stage_b.0": 6, "stage_b.1": 2})
    p.config = preset("digits", permute_cluster=3)
    with pytest.raises(ValueError, match="clusters of 6 filters do not divide layer stage_b.0"):
        p.cluster_sizes(est, model)


def test_cli_step_by_step(tmp_path):
    out = str(tmp_path)
    assert main(["train", "--out", out, "--quick", "--epochs", "1", "--set", "k_max=0",
                 "--set", "set_mass=0.8", "--set", "mask_blocks=true", "--set", "finetune_routed=true",
                 "--budget", "0.5,0.25", "--set", "permute_cluster=2",
                 "--set", "finetune_distill=1.0"]
                ) == 0  # fixed sets of k=2 (quick: adaptive); masks in the fewest SIMD blocks;
    # a budget per stage-B layer; the permutation clusters two PE groups at a time; fine-tuning
    # distils from the unpruned network (the digits preset does not)
    assert main(["explain", "--out", out]) == 0
    assert main(["finetune", "--out", out]) == 2  # needs the folding first
    assert main(["fold", "--out", out]) == 0
    assert (tmp_path / "folding.json").exists() and (tmp_path / "permutation.json").exists()
    _check_clusters_of_two_groups(tmp_path)
    assert main(["finetune", "--out", out, "--finetune-epochs", "1"]) == 0
    assert main(["evaluate", "--out", out, "--no-sweep"]) == 0
    report = json.loads((tmp_path / bundle.REPORT_JSON).read_text())
    assert report["sweep"] == [] and report["params"]["permuted"]
    assert report["params"]["finetune_epochs"] == 1  # the fine-tune's own setting
    assert report["params"]["budget"] == [0.5, 0.25]
    table = MaskTable.load(tmp_path / bundle.TABLES)
    assert [int(m.sum(axis=1).max()) for m in table.masks] == [32, 16]  # of 64 / 64 filters
    # steps run by separate commands still report their times, evaluate's own too
    assert set(report["timings_s"]) >= {"train", "explain", "fold", "finetune", "evaluate"}
    # and each step's software and torch threads, which the float results depend on
    env = report["environment"]
    assert set(env) == set(report["timings_s"])
    assert env["train"]["threads"] == torch.get_num_threads()
    assert env["evaluate"]["cpu"] == torch.backends.cpu.get_cpu_capability()
    assert env["finetune"]["torch"] == torch.__version__ and env["explain"]["brevitas"]
    assert (f"torch threads {torch.get_num_threads()} in every step"
            in (tmp_path / bundle.REPORT_MD).read_text())
    assert not (tmp_path / "pareto.png").exists()  # no sweep, no Pareto plot
    assert "pareto.png" not in (tmp_path / bundle.REPORT_MD).read_text()
    assert (report["params"]["k_max"], report["params"]["set_mass"]) == (2, 0.8)
    assert report["dyfip"]["mean_set_size"] in (0.0, 2.0)
    assert "FINN folding for Pynq-Z2" in report["params"]["cycle_model"]
    table = MaskTable.load(tmp_path / "tables.npz")
    assert table.block_sizes[0] > table.group_sizes[0]  # the next layer's SIMD
    # every mask costs the same cycles: DyFiP's worst case is the static mask's
    assert report["dyfip"]["cycles_worst"] == report["static_exit"]["cycles_worst"]


def test_step_rerun_with_overrides_updates_the_bundle_config(tiny_bundle, tmp_path, capsys):
    """Re-evaluating at another tau: the driver deploys what the report and reference hold."""
    from dyfip.driver.deployment import Deployment

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    assert main(["evaluate", "--out", str(out), "--tau", "0.7", "--no-sweep"]) == 0
    report = json.loads((out / bundle.REPORT_JSON).read_text())
    with np.load(out / bundle.REFERENCE) as ref:
        ref_tau = float(ref["tau"])
    assert report["params"]["tau"] == ref_tau == Deployment.load(out).tau == 0.7
    assert json.loads((out / bundle.CONFIG).read_text())["sweep_tau"] == []  # as run
    # budget, k, ... are the fine-tune's: evaluate refuses others, config unchanged
    for options, message in ((["--budget", "0.5"], "budget=0.5 (fine-tuned: "),
                             (["--k", "3"], "k=3 (fine-tuned: 2)"),
                             (["--importance-mode", "contrast"], "importance_mode='contrast'"),
                             (["--group-size", "1"], "group_size=1 (fine-tuned: 0)"),
                             (["--epochs", "5"], "epochs=5")):
        assert main(["evaluate", "--out", str(out), "--no-sweep", *options]) == 2
        assert message in capsys.readouterr().err
    config = json.loads((out / bundle.CONFIG).read_text())
    built = json.loads((tiny_bundle / bundle.CONFIG).read_text())
    assert (config["tau"], config["k"], config["budget"]) == (0.7, 2, built["budget"])


def test_refold_applies_this_runs_settings(tiny_bundle, tmp_path):
    """``dyfip fold --set mask_pe_max=1`` on a trained bundle folds with the new cap, not
    the one saved with the trained weights."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    before = json.loads((out / "folding.json").read_text())["group_size"]
    assert max(before.values()) > 1
    assert main(["fold", "--out", str(out), "--set", "mask_pe_max=1"]) == 0
    after = json.loads((out / "folding.json").read_text())["group_size"]
    assert after == {name: 1 for name in before}


def test_fold_notes_a_folding_the_board_cannot_hold(tiny_bundle, tmp_path, capsys):
    """A folding whose estimate exceeds the board is kept (its figures hold), with a note that
    'dyfip build --bitstream' will refuse it; the filter-enable layers' cycle target
    (``mask_target_cycles``, replacing the board file's) is part of the folding."""
    from dyfip.cli import main

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    assert main(["fold", "--out", str(out), "--set", "mask_target_cycles=16"]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps its lines
    assert re.search(r"note: by FINN's estimate this folding does not fit Pynq-Z2 \(LUT \d+ > "
                     r"53200, .*'dyfip build --bitstream' will refuse it", err), err
    folding = json.loads((out / "folding.json").read_text())
    assert folding["fits"] is False and folding["target_cycles_per_frame"] == 16
    assert folding["folded_for"]["mask_target_cycles"] == 16
    assert main(["fold", "--out", str(out), "--set", "mask_target_cycles=0"]) == 0
    assert "note:" not in capsys.readouterr().err  # the board file's folding fits


def test_refold_and_reexplain_start_from_the_trained_order(tiny_bundle, tmp_path, capsys):
    """A second fold (or explain) undoes the first fold's permutation: the same
    permutation, the same fold gain, the same function; a folding made for another budget
    or board is refused by the later steps, before anything is written."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    first = json.loads((out / "permutation.json").read_text())
    x = images_to_float(load_dataset("digits").test.images[:32])
    with torch.no_grad():
        want = load_checkpoint(out / "base.pt")(x)[0]
    for step in ("fold", "fold", "explain", "fold"):
        assert main([step, "--out", str(out)]) == 0
        with torch.no_grad():
            assert torch.allclose(load_checkpoint(out / "base.pt")(x)[0], want, atol=1e-5)
    again = json.loads((out / "permutation.json").read_text())
    assert again["unpermuted"] == first["unpermuted"]
    assert again["perms"] == first["perms"]
    assert main(["finetune", "--out", str(out), "--budget", "0.5"]) == 2
    assert "folded for other settings: budget=0.5" in capsys.readouterr().err
    assert main(["finetune", "--out", str(out), "--set", "mask_target_cycles=4096"]) == 2
    assert ("folded for other settings: mask_target_cycles=4096 (folded for 0)"
            in capsys.readouterr().err)
    accel = {p.name: p.stat().st_mtime_ns for p in (out / "accel").iterdir()}
    assert main(["build", "--bundle", str(out), "--board", "KV260"]) == 2
    assert "made for the Pynq-Z2 folding" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "accel").iterdir()} == accel
    # a new network in the same folder has no folding or permutation yet
    assert main(["train", "--out", str(out), "--quick", "--epochs", "1"]) == 0
    assert not (out / "folding.json").exists() and not (out / "permutation.json").exists()


@pytest.mark.parametrize("step, options, writer, last, names", [
    # a permuted network with importance in the old order would pick the wrong filters
    ("fold", ["--set", "mask_pe_max=1"], "write_json", "folding.json",
     ("base.pt", "importance.npz", "permutation.json", "folding.json")),
    # baselines fine-tuned at another budget than model.pt would give a wrong margin
    ("finetune", ["--finetune-epochs", "1"], "write_npz", "branch.npz",
     ("baseline_static.pt", "baseline_static_exit.pt", "model.pt", "tables.npz",
      "branch.npz")),
])
def test_interrupted_step_changes_nothing(tiny_bundle, tmp_path, monkeypatch, capsys, step,
                                          options, writer, last, names):
    """fold and finetune replace the files that must agree as one: a failure at the last
    write leaves them all as they were, and no temporary file."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    before = {n: (out / n).read_bytes() for n in names}
    write = getattr(bundle, writer)

    def failing(path, *args, **kwargs):
        if Path(path).name == last:
            raise OSError("No space left on device")
        write(path, *args, **kwargs)

    monkeypatch.setattr(bundle, writer, failing)
    assert main([step, "--out", str(out), *options]) == 2
    assert f"dyfip {step}: error: No space left on device" in capsys.readouterr().err
    assert {n: (out / n).read_bytes() for n in names} == before
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_later_steps_keep_the_trained_settings(tiny_bundle, tmp_path, capsys):
    """Settings the trained weights embody are refused after training (a base.pt re-saved
    with 8-bit quantizers on 4-bit weights, or a report naming another seed, would
    misdescribe the network); nothing is written."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for step, options, message in (
            ("fold", ["--set", "weight_bits=8"], "weight_bits=8 (trained: 4)"),
            ("explain", ["--seed", "7"], "seed=7 (trained: 0)"),
            ("finetune", ["--set", "lr=0.1"], "lr=0.1 (trained: "),
            ("evaluate", ["--set", 'stage_b=[{"out_channels": 16}]'], "stage_b=")):
        assert main([step, "--out", str(out), *options]) == 2
        err = capsys.readouterr().err
        assert message in err and "fixed by training" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_finetune_epochs_zero_keeps_stage_b(tiny_bundle, tmp_path):
    """``--finetune-epochs 0`` (the no-fine-tuning ablation) leaves stage B as trained."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    assert main(["finetune", "--out", str(out), "--finetune-epochs", "0"]) == 0
    base, tuned = (load_checkpoint(out / n).state_dict() for n in ("base.pt", "model.pt"))
    assert all(torch.equal(base[k], tuned[k]) for k in base)


def test_finetune_after_a_new_explain_needs_a_new_fold(tiny_bundle, tmp_path, capsys):
    """explain restores the trained filter order; fine-tuning before folding again would
    deploy it as if permuted (report and cycles)."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    assert main(["explain", "--out", str(out)]) == 0
    for step in ("finetune", "evaluate"):
        assert main([step, "--out", str(out), "--no-sweep"]) == 2
        assert "run 'dyfip fold' again" in capsys.readouterr().err
    assert main(["fold", "--out", str(out)]) == 0


@pytest.mark.parametrize("name, damage, message", [
    ("config.json", b"{", "config.json is corrupt"),
    ("config.json", b'{"kk": 1}', "does not hold a DyFiP config"),
    ("model.pt", b"junk", "is corrupt (UnpicklingError"),
    ("importance.npz", b"junk", "importance.npz is corrupt"),
    ("folding.json", b"[", "folding.json is corrupt"),
    ("folding.json", b"[1]", "folding.json: the file must be a JSON object"),
    ("permutation.json", b"{}", "permutation.json has no field 'perms'"),
])
def test_corrupt_bundle_files_are_named(tiny_bundle, tmp_path, capsys, name, damage, message):
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    (out / name).write_bytes(damage)
    step = {"importance.npz": "finetune", "permutation.json": "fold"}.get(name, "evaluate")
    assert main([step, "--out", str(out), "--no-sweep"]) == 2
    err = capsys.readouterr().err
    assert message in err and name in err
    writer = {"model.pt": "finetune", "importance.npz": "explain", "folding.json": "fold",
              "permutation.json": "fold"}
    if name in writer:  # and the step that writes it
        assert f"run 'dyfip {writer[name]}' first" in err
    if name == "config.json":  # `dyfip build` reads the board from it
        assert main(["build", "--bundle", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count(name) == 1


def test_finetuning_keeps_stage_a_and_branch(tiny_bundle):
    from dyfip.train import check_decisions_frozen

    base = load_checkpoint(tiny_bundle / "base.pt")
    deployed = load_checkpoint(tiny_bundle / "model.pt")
    with np.load(tiny_bundle / "reference.npz") as ref:
        images = ref["images"]
    check_decisions_frozen(base, deployed, images, k=2, tau=0.5)
    with torch.no_grad():
        deployed.branch[2].bias += 5 * torch.arange(10.0)
    with pytest.raises(RuntimeError, match="changed stage A or the branch"):
        check_decisions_frozen(base, deployed, images, k=2, tau=0.5)


def test_report_names_each_steps_threads_when_they_differ():
    from dyfip.report import _environment

    same = {"threads": 2, "cpu": "AVX2", "torch": "2.13.0", "brevitas": "0.12.1"}
    line, _ = _environment({"train": same, "evaluate": {**same, "threads": 1}})
    assert "torch threads train 2, evaluate 1 (" in line
    assert line.count("cpu AVX2, torch 2.13.0") == 1  # the same software is named once
    assert _environment(None) == []  # reports from before the record


@pytest.mark.parametrize("record", ["timings.json", "environment.json"])
def test_corrupt_step_record_names_itself_and_the_remedy(tiny_bundle, tmp_path, capsys, record):
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    (out / record).write_text('{"train": ')
    assert main(["evaluate", "--out", str(out), "--no-sweep"]) == 2
    err = capsys.readouterr().err
    assert f"{out / record} is corrupt" in err and "delete it" in err
    (out / record).unlink()  # the remedy: the step runs and records afresh
    assert main(["evaluate", "--out", str(out), "--no-sweep"]) == 0
    assert set(json.loads((out / record).read_text())) == {"evaluate"}

import json
from pathlib import Path

import pytest

from dyfip.aggregate import aggregate, format_summary
from dyfip.evaluate import METHODS


def _report(path, seed, dy, se, paired_se=None, gap_paired_se=None):
    r = {m: {"accuracy": 0.9, "macs_avg_ratio": 1.0, "macs_worst_ratio": 1.0,
             "cycles_avg_ratio": 1.0, "cycles_worst_ratio": 1.0} for m in METHODS}
    r["dyfip"]["accuracy"], r["static_exit"]["accuracy"] = dy, se
    if paired_se is not None:
        r["dyfip"]["vs_static_exit"] = {"paired_se": paired_se}
    if gap_paired_se is not None:
        r["dyfip"]["vs_full"] = {"paired_se": gap_paired_se}
    r["margin_vs_static_exit"] = dy - se
    r["params"] = {"seed": seed, "dataset": "digits"}
    path.write_text(json.dumps(r))
    return path


def test_mean_and_standard_error(tmp_path):
    paths = [_report(tmp_path / f"r{s}.json", s, 0.91 + 0.01 * s, 0.90, [None, 0.0021, 0.002][s],
                     [None, None, 0.0043][s])
             for s in range(3)]
    out = aggregate(paths)
    assert out["seeds"] == [0, 1, 2]
    assert out["margin_vs_static_exit"]["mean"] == pytest.approx(0.02)
    assert out["margin_vs_static_exit"]["se"] == pytest.approx(0.01 / 3 ** 0.5)
    assert out["dyfip"]["accuracy"]["values"] == pytest.approx([0.91, 0.92, 0.93])
    text = format_summary(out)
    assert "+2.00" in text  # mean margin
    assert out["margin_paired_se"] == [None, 0.0021, 0.002]
    assert out["gap_paired_se"] == [None, None, 0.0043]
    assert "   2   90.00       90.00   93.00   +3.00   0.20  -3.00   0.43" in text  # seed 2's row
    assert "   0   90.00       90.00   91.00   +1.00      -  -1.00      -" in text  # no paired s.e.


def test_runs_listed_by_seed_not_by_folder_name(tmp_path):
    paths = [_report(tmp_path / f"seed{s}.json", s, 0.9 + s / 1000, 0.9) for s in (10, 2, 1)]
    out = aggregate(sorted(paths))  # as a shell glob gives them: seed1, seed10, seed2
    assert out["seeds"] == [1, 2, 10]
    assert out["runs"] == [str(tmp_path / f"seed{s}.json") for s in (1, 2, 10)]
    assert out["dyfip"]["accuracy"]["values"] == pytest.approx([0.901, 0.902, 0.91])


def test_recovered_share_shown_when_every_run_has_it(tmp_path):
    paths = [_report(tmp_path / f"r{s}.json", s, 0.92, 0.91) for s in range(2)]
    assert "recovered" not in aggregate(paths)
    for path, share in zip(paths, (0.25, 0.5)):
        r = json.loads(path.read_text())
        r["dyfip"]["within_set_errors"] = {"recovered": share}
        path.write_text(json.dumps(r))
    out = aggregate(paths)
    assert out["recovered"]["mean"] == pytest.approx(0.375)
    assert "DyFiP avoids: 25% / 50% (mean 38%)" in format_summary(out)


def test_pooled_paired_comparisons_over_every_runs_images(tmp_path):
    paths = [_report(tmp_path / f"r{s}.json", s, 0.92, 0.91) for s in range(2)]
    counts = {"vs_static_exit": [(3, 1), (5, 2)], "vs_full": [(1, 4), (2, 2)]}
    for s, path in enumerate(paths):
        r = json.loads(path.read_text())
        r["test_images"] = 100 * (s + 1)
        for comparison, pairs in counts.items():
            r["dyfip"][comparison] = {"only_this": pairs[s][0], "only_baseline": pairs[s][1]}
        path.write_text(json.dumps(r))
    out = aggregate(paths)
    assert out["pooled_vs_static_exit"]["images"] == 300
    assert out["pooled_vs_static_exit"]["margin"] == pytest.approx((8 - 3) / 300)
    assert out["pooled_vs_full"]["margin"] == pytest.approx((3 - 6) / 300)
    se = (3 + 6 - 3 ** 2 / 300) ** 0.5 / 300  # McNemar over the 300 shared images
    assert out["pooled_vs_full"]["paired_se"] == pytest.approx(se)
    assert (f"pooled over 300 test predictions (runs x test images): DyFiP - static_exit "
            f"+1.67 +- "
            f"{100 * out['pooled_vs_static_exit']['paired_se']:.2f}; full - DyFiP 1.00 +- "
            f"{100 * se:.2f} points") in format_summary(out)
    r = json.loads(paths[1].read_text())
    del r["dyfip"]["vs_full"]  # a report from before vs_full: nothing pooled for it
    paths[1].write_text(json.dumps(r))
    out = aggregate(paths)
    assert "pooled_vs_full" not in out and "pooled_vs_static_exit" in out
    assert "full - DyFiP 1.00" not in format_summary(out)


def test_validation_splits_summarised_beside_the_test_splits(tmp_path):
    """Each run's held-out validation split: margin and gap per seed, and pooled."""
    paths = [_report(tmp_path / f"r{s}.json", s, 0.92, 0.91) for s in range(2)]
    assert "validation" not in aggregate(paths)  # reports from before it
    for s, path in enumerate(paths):
        r = json.loads(path.read_text())
        r["validation"] = {"images": 200, "full": 0.95, "static_exit": 0.9, "dyfip": 0.92 + s / 100,
                           "margin": 0.02 + s / 100, "only_this": 6 + 2 * s, "only_baseline": 2,
                           "vs_full": {"only_this": 1, "only_baseline": 7 - 2 * s}}
        path.write_text(json.dumps(r))
    v = aggregate(paths)["validation"]
    assert v["margin"]["values"] == pytest.approx([0.02, 0.03])
    assert v["gap"]["mean"] == pytest.approx(0.025)
    assert v["pooled_vs_static_exit"]["margin"] == pytest.approx((14 - 4) / 400)
    assert v["pooled_vs_full"]["margin"] == pytest.approx((2 - 12) / 400)
    text = format_summary(aggregate(paths))
    assert "validation splits: DyFiP - static_exit +2.50 +- 0.50 (per seed +2.00 / +3.00); " \
           "full - DyFiP 2.50 +- 0.50 points" in text
    assert "pooled over 400 validation predictions (runs x validation images): DyFiP - " \
           "static_exit +2.50 +- " in text


def test_paired_margin_counts_the_images_only_one_method_gets_right():
    import numpy as np

    from dyfip.evaluate import paired_margin

    better = np.array([1, 1, 1, 0, 1, 0, 1, 1], bool)
    baseline = np.array([1, 0, 0, 1, 1, 0, 1, 1], bool)
    p = paired_margin(better, baseline)
    assert (p["only_this"], p["only_baseline"]) == (2, 1)
    assert p["margin"] == pytest.approx(better.mean() - baseline.mean())
    diff = better.astype(float) - baseline
    assert p["paired_se"] == pytest.approx(diff.std() / np.sqrt(len(diff)))


def test_mixed_datasets_rejected(tmp_path):
    a = _report(tmp_path / "a.json", 0, 0.9, 0.9)
    b = tmp_path / "b.json"
    data = json.loads(a.read_text())
    data["params"]["dataset"] = "fashion-mnist"
    b.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="mix settings: data sets \"digits\" / \"fashion-mnist\""):
        aggregate([a, b])


def test_bundle_folders_and_bad_reports(tmp_path):
    for s in range(2):
        (tmp_path / f"run{s}").mkdir()
        _report(tmp_path / f"run{s}" / "report.json", s, 0.92, 0.91)
    assert aggregate([tmp_path / "run0", tmp_path / "run1"])["seeds"] == [0, 1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no report at .*empty/report.json"):
        aggregate([tmp_path / "run0", tmp_path / "empty"])
    (tmp_path / "cut.json").write_text('{"params": ')
    with pytest.raises(ValueError, match="cut.json is not a valid report.json"):
        aggregate([tmp_path / "cut.json"])
    summary = tmp_path / "seeds.json"  # an aggregate's own output given back to it
    summary.write_text(json.dumps(aggregate([tmp_path / "run0", tmp_path / "run1"])))
    with pytest.raises(ValueError, match="seeds.json is not a run's report.json"):
        aggregate([tmp_path / "run0", summary])


def test_out_writes_the_summary_and_its_plot(tmp_path, capsys):
    from dyfip.aggregate import main

    paths = [_report(tmp_path / f"r{s}.json", s, 0.92, 0.91, 0.002, [None, 0.003][s])
             for s in range(2)]
    summary = main(paths, tmp_path / "seeds.json")
    assert json.loads((tmp_path / "seeds.json").read_text())["seeds"] == summary["seeds"]
    assert (tmp_path / "seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "digits: 2 runs" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r0.json", "r1.json", "seeds.json",
                                                          "seeds.png"]  # no temporary left


def test_targets_counted_per_seed(tmp_path):
    paths = [_report(tmp_path / f"r{s}.json", s, 0.9 + d, 0.9) for s, d in enumerate(
        (0.0, -0.002, 0.004, -0.006))]  # DyFiP level, 0.2 below, 0.4 above, 0.6 below
    out = aggregate(paths)
    assert out["targets"]["full_minus_dyfip"] == {"held": 3, "runs": 4, "missed_seeds": [3]}
    assert out["targets"]["dyfip_minus_static_exit"] == {"held": 2, "runs": 4,
                                                        "missed_seeds": [1, 3]}
    assert out["targets"]["dyfip_macs_worst"]["missed_seeds"] == [0, 1, 2, 3]  # 1.0 > 0.40
    assert ("dyfip_minus_static_exit 2/4 (missed: seeds 1, 3)" in format_summary(out))


def test_a_report_given_twice_is_refused(tmp_path, monkeypatch):
    (tmp_path / "run0").mkdir()
    _report(tmp_path / "run0" / "report.json", 0, 0.92, 0.91)
    monkeypatch.chdir(tmp_path)
    for twice in (["run0", "run0/report.json"], ["run0", "run0/"]):
        with pytest.raises(ValueError, match="seed 0 in run0"):
            aggregate([Path(p) for p in twice])


def test_runs_with_the_same_seed_are_refused(tmp_path):
    for variant in ("a", "b"):  # two variants trained with the same seed
        (tmp_path / variant).mkdir()
        _report(tmp_path / variant / "report.json", 0, 0.92, 0.91)
    _report(tmp_path / "c.json", 1, 0.92, 0.91)
    with pytest.raises(ValueError, match=rf"seed 0 .*{tmp_path / 'a'}, {tmp_path / 'b'}"):
        aggregate([tmp_path / "a", tmp_path / "c.json", tmp_path / "b"])


def test_runs_of_other_settings_are_refused(tmp_path):
    runs = [_report(tmp_path / f"r{s}.json", s, 0.92, 0.91) for s in range(2)]
    for path, budget in zip(runs, (0.1875, 0.25)):
        r = json.loads(path.read_text())
        r["params"]["budget"] = budget
        path.write_text(json.dumps(r))
    with pytest.raises(ValueError, match="mix settings: budget 0.1875 / 0.25"):
        aggregate(runs)


def test_runs_differing_in_any_config_setting_are_refused(tmp_path):
    """Every config field counts (e.g. ``finetune_distill``, which ``params`` omits), but not
    where each run found its data, nor its sweep (``--no-sweep`` empties it)."""
    runs = [_report(tmp_path / f"r{s}.json", s, 0.92, 0.91) for s in range(2)]
    for path, (distill, data_dir, sweep) in zip(runs, ((0.0, "/a", [0.9]), (1.0, "/b", []))):
        r = json.loads(path.read_text())
        r["config"] = {"seed": r["params"]["seed"], "data_dir": data_dir,
                       "finetune_distill": distill, "stage_b": [{"out_channels": 64}],
                       "sweep_tau": sweep, "sweep_budget": sweep}
        path.write_text(json.dumps(r))
    with pytest.raises(ValueError, match="mix settings: finetune_distill 0.0 / 1.0$"):
        aggregate(runs)
    r = json.loads(runs[1].read_text())
    r["config"]["finetune_distill"] = 0.0
    runs[1].write_text(json.dumps(r))
    assert aggregate(runs)["seeds"] == [0, 1]


def test_machines_that_trained_the_runs_are_counted(tmp_path):
    paths = [_report(tmp_path / f"r{s}.json", s, 0.92, 0.91) for s in range(3)]
    for path, cpu in zip(paths[1:], ("AVX512", "AVX2")):
        r = json.loads(path.read_text())
        r["environment"] = {"train": {"cpu": cpu, "threads": 2}, "evaluate": {"cpu": "x"}}
        path.write_text(json.dumps(r))
    out = aggregate(paths)
    assert out["machines"] == {"not recorded": 1, "AVX512, 2 threads": 1, "AVX2, 2 threads": 1}
    assert ("seeds [0, 1, 2]; trained on not recorded (1 run); AVX512, 2 threads (1 run); "
            "AVX2, 2 threads (1 run)") in format_summary(out)

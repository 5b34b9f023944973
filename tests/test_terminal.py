"""What a new user reads: the answer at the end of a run's output, the full tables with
``--full`` in a pipe (80 columns, no colour), scenarios named after their overrides, a
multirun's jobs side by side, the run directory."""

from __future__ import annotations

import io
import re

import polars as pl
import pytest
from rich.console import Console

from kibs_mc.analysis.report import MONEY_SCENARIOS, money_sentence
from kibs_mc.experiments.compare import name_unnamed, overrides_name
from kibs_mc.models import get_model
from kibs_mc.terminal import CLEAR, number, results_table

from .conftest import run_cli

KIBS_FAST = ["cluster=small", "model.steps=20", "executor=serial", "tracking=none"]


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    """One small compare_governance run through the CLI with every table (``--full``), its
    stdout captured by a pipe."""
    cwd = tmp_path_factory.mktemp("compare")
    proc = run_cli(
        "experiment=compare_governance", "replicates=4", *KIBS_FAST, "hydra.run.dir=run", "--full", cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, cwd / "run"


@pytest.mark.slow
def test_the_summary_in_a_pipe_fits_80_columns_and_marks_clear_effects_in_words(compare_run):
    proc, run = compare_run
    out = proc.stdout
    assert "\x1b[" not in out  # no colour codes in a pipe
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out  # nothing cut
    outcomes = list(get_model("kibs").outcomes)  # replicates.parquet also holds records (the ledger)
    for outcome in outcomes:  # every outcome, not the first four
        assert re.search(rf"^ {outcome}\s*$", out, re.M), outcome
    effects = pl.read_parquet(run / "effects.parquet")
    verdict = "clear" if "clear" in effects.columns else "significant"
    current, found = None, set()
    for line in out.splitlines():
        if re.fullmatch(r" \w+\s*", line):
            current = line.strip()
        elif current and line.startswith("   ") and line.rstrip().endswith(CLEAR):
            found.add((line.split()[0], current))
    expected = {(r["scenario"], r["outcome"]) for r in effects.filter(pl.col(verdict)).iter_rows(named=True)}
    assert expected and found == expected


@pytest.mark.slow
def test_without_full_the_output_ends_with_the_answer_and_where_the_files_are(compare_run):
    _, run = compare_run
    proc = run_cli(
        "experiment=compare_governance",
        "replicates=4",
        *KIBS_FAST,
        "resume=true",
        f"hydra.run.dir={run}",
        cwd=run.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "± 95% CI" not in out and "mean" in out  # no table, the answer's numbers
    assert max(len(line) for line in out.splitlines()) <= 80
    report = (run / "report.md").read_text()
    summary = report.split("## Executive summary\n", 1)[1].split("\n## ", 1)[0]
    first = summary.strip().splitlines()[0].replace("**", "").replace("`", "")
    assert " ".join(out.split()).count(" ".join(first.split())) == 1  # the decision, said once
    lines = out.rstrip().splitlines()
    answer = next(i for i, line in enumerate(lines) if line.startswith("Answer"))
    results = next(i for i, line in enumerate(lines) if line.startswith("results: "))
    assert answer < results and len(lines) - results <= 4  # the answer, then where the files are
    assert str(run) in " ".join(lines[results:]).replace("\n", "")
    assert "Parameters:" in out and "--full" in out


@pytest.mark.slow
def test_replicates_are_counted_per_scenario_in_the_summary_and_the_report(compare_run):
    proc, run = compare_run
    assert "6 scenarios x 4 replicates" in proc.stdout
    assert "24 replicates" not in proc.stdout
    report = (run / "report.md").read_text()
    assert report.splitlines()[0].endswith("6 scenarios x 4 replicates")
    assert report.endswith("\n") and not report.endswith("\n\n")
    assert (run / "report.html").read_text().endswith("</html>\n")


def _money_parts(line: str) -> dict[str, dict[str, float]]:
    """Scenario -> {instrument or 'not spent': amount} of a report's money line."""
    body = line.split("by instrument: ", 1)[1].split(". Largest", 1)[0]
    parts = {}
    for part in body.split("; "):
        name, rest = re.fullmatch(r"(`[^`]+`|all \d+ scenarios) (.*)", part).groups()
        amounts = dict(re.findall(r"(\w+) ([-\d.e+]+)", rest.replace("not spent", "not_spent")))
        parts[name.strip("`")] = {k: float(v) for k, v in amounts.items()}
    return parts


@pytest.mark.slow
def test_the_money_line_reads_every_replicates_ledger(compare_run):
    """The executive summary ends with the money line: per scenario the mean money at work per
    interface and what was not spent, from replicates.parquet's ledger, and the largest
    conservation residual of any replicate. Equal money: at work plus not spent is the same
    budget in every scenario but the baseline, which spends nothing."""
    _, run = compare_run
    summary = (run / "report.md").read_text().split("## Executive summary\n", 1)[1].split("\n## ", 1)[0]
    line = summary.strip().splitlines()[-1]
    assert line.startswith("- Money: at work per replicate, by instrument: ")
    rows = pl.read_parquet(run / "replicates.parquet")
    levers = [c.removeprefix("money_at_work_") for c in rows.columns if c.startswith("money_at_work_")]
    assert {"strategic", "management", "business", "information"} <= set(levers)
    means = rows.group_by("scenario").mean()
    parts = _money_parts(line)
    assert set(parts) == set(rows["scenario"]) and parts["baseline"] == {}
    budgets = set()
    for row in means.filter(pl.col("scenario") != "baseline").iter_rows(named=True):
        shown = parts[row["scenario"]]
        for lever in levers:
            work = row[f"money_at_work_{lever}"]
            assert shown.get(lever, 0.0) == pytest.approx(work, rel=1e-3), (row["scenario"], lever)
        unspent = sum(row[f"money_unspent_{lever}"] for lever in levers)
        assert shown.get("not_spent", 0.0) == pytest.approx(unspent, rel=1e-3, abs=1e-12)
        budgets.add(sum(shown.values()))
    # the line shows 4 significant digits: 95.19 at work + 4.805 not spent is the budget of 100
    assert min(budgets) > 0 and max(budgets) == pytest.approx(min(budgets), rel=1e-3)
    residual = float(re.search(r"residual of any replicate (\S+) ", line).group(1))
    assert residual == pytest.approx(rows["money_residual"].abs().max(), rel=0.05)
    assert residual < 1e-9 * rows["money_costs_out"].max()  # money is conserved


def test_the_money_line_names_the_largest_residual_and_pools_many_scenarios(tmp_path):
    """The largest residual in size (a negative one too); past MONEY_SCENARIOS the means over
    all scenarios; nothing not spent, no 'not spent'; no ledger, no line."""
    n = MONEY_SCENARIOS + 1
    frame = pl.DataFrame(
        {
            "scenario": [f"s{i}" for i in range(n) for _ in range(2)],
            "money_residual": [1e-8] * (2 * n - 1) + [-3e-6],
            "money_at_work_strategic": [float(i % 2) * 10 for i in range(2 * n)],
            "money_at_work_information": [0.0] * (2 * n),
            "money_unspent_strategic": [0.0] * (2 * n),
        }
    )
    frame.write_parquet(tmp_path / "replicates.parquet")
    line = money_sentence(tmp_path / "replicates.parquet")
    assert _money_parts(line) == {f"all {n} scenarios": {"strategic": 5.0}}
    assert "residual of any replicate -3e-06 " not in line and "residual of any replicate 3e-06 " in line
    frame.head(4).write_parquet(tmp_path / "replicates.parquet")
    assert set(_money_parts(money_sentence(tmp_path / "replicates.parquet"))) == {"s0", "s1"}
    frame.drop("money_residual").write_parquet(tmp_path / "replicates.parquet")
    assert money_sentence(tmp_path / "replicates.parquet") is None
    assert money_sentence(tmp_path / "missing.parquet") is None


@pytest.mark.slow
def test_the_run_directory_holds_no_empty_hydra_log(compare_run):
    _, run = compare_run
    assert not list(run.glob("*.log"))


def test_a_single_scenario_is_named_after_what_its_overrides_simulate():
    overrides = [
        "governance=information",
        "governance.information=0.5",
        "replicates=50",
        "seed=3",
        "executor=serial",
        "tracking=none",
        "hydra.run.dir=x",
        "experiment=single",
        "resume=true",
    ]
    assert overrides_name(overrides) == "governance=information governance.information=0.5"
    assert overrides_name(["replicates=5"]) == "default"
    specs = name_unnamed([("default", []), ("named", ["cluster=small"])], ["cluster=large"])
    assert specs == [("cluster=large", []), ("named", ["cluster=small"])]


def test_the_results_table_folds_long_names_instead_of_cutting_them():
    name = "governance=information governance.information=0.5 cluster=small model.steps=20"
    frame = pl.DataFrame(
        {
            "scenario": ["base", name],
            "outcome": ["network_density"] * 2,
            "mean": [0.08483, 0.09621],
            "ci_low": [0.0837, 0.0948],
            "ci_high": [0.0859, 0.0976],
            "effect": [None, 0.0114],
            "effect_ci_low": [None, 0.0101],
            "effect_ci_high": [None, 0.0127],
            "clear": [None, True],
        }
    )
    console = Console(width=80, record=True, no_color=True)
    console.print(results_table(frame, ["network_density"], ["base", name], "base", "t"))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert all(word in text.split() for word in name.split())  # wrapped, every part kept
    assert "+0.0114" in text and "± 0.0013" in text and CLEAR in text
    assert number(1234.5678) == "1235" and number(0.000123) == "0.000123" and number(2.5e7) == "2.5e+07"


@pytest.mark.parametrize("width", [36, 50, 60, 64, 72, 100])
def test_the_results_table_cuts_nothing_in_a_narrow_terminal(width):
    """Below the width the columns need (names folded to NAME_MIN), each scenario's numbers
    go on lines of their own; at any width every name, number and verdict is there whole."""
    names = ["baseline", "management", "information_and_strategic"]
    frame = pl.DataFrame(
        {
            "scenario": names,
            "outcome": ["innovations_independent"] * 3,
            "mean": [0.06814, 0.07181, 123456.7],
            "ci_low": [0.0670, 0.0705, 123000.0],
            "ci_high": [0.0692, 0.0731, 124000.0],
            "effect": [None, 0.00367, -12345.6],
            "effect_ci_low": [None, 0.0031, -12400.0],
            "effect_ci_high": [None, 0.0042, -12300.0],
            "clear": [None, True, False],
        }
    )
    console = Console(width=width, file=io.StringIO(), record=True, no_color=True)
    console.print(results_table(frame, ["innovations_independent"], names, "baseline", "t"))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    for cell in (
        "0.06814",
        "± 0.0011",
        "0.07181",
        "± 0.0013",
        "+0.00367",
        "± 0.00055",
        "123500",
        "± 500",
        "-12300",
        "± 50",
        "management",
    ):
        assert cell in text, (width, cell)
    assert re.search(rf"{CLEAR}\s*$", text.split("management", 1)[1].split("information", 1)[0], re.M)
    stacked = "± 95% CI" not in text
    assert stacked == (width < 63)  # 14 (names) + 37 (numbers) + 10 (gaps) + 2 (edges) = 63 needed
    if stacked:
        assert "information_and_strategic" in text and "innovations_independent" in text


@pytest.mark.slow
def test_a_multirun_names_its_jobs_and_compares_them_paired(tmp_path):
    proc = run_cli("-m", "governance.information=0,1", "replicates=3", *KIBS_FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = next((tmp_path / "multirun" / "single").iterdir())
    for job, name in (("0", "governance.information=0"), ("1", "governance.information=1")):
        rows = pl.read_parquet(sweep / job / "replicates.parquet")
        assert rows["scenario"].unique().to_list() == [f"{name} {' '.join(KIBS_FAST[:2])}"]
    effects = pl.read_parquet(sweep / "effects.parquet")
    assert set(effects["scenario"]) == {"governance.information=1"}
    assert set(effects["baseline"]) == {"governance.information=0"}
    # paired on common seeds: the effect is the mean of per-replicate differences
    a = pl.read_parquet(sweep / "0" / "replicates.parquet").sort("replicate")
    b = pl.read_parquet(sweep / "1" / "replicates.parquet").sort("replicate")
    assert (a["seed"] == b["seed"]).all()
    density = effects.filter(pl.col("outcome") == "network_density")["effect"][0]
    assert density == pytest.approx((b["network_density"] - a["network_density"]).mean())
    assert "multirun: 2 jobs side by side, paired" in proc.stdout
    assert "governance.information=1" in proc.stdout
    # the same report and figures as an experiment, and its answer at the end
    for name in ("report.md", "report.html", "effects.png", "distributions.png", "ranks.parquet"):
        assert (sweep / name).is_file(), name
    report = (sweep / "report.md").read_text()
    # the answer's first line names the best job, or says that the jobs are tied (with 3
    # replicates the information interface's effect on this tiny cluster can be within chance)
    assert "## Executive summary" in report
    assert re.search(r"\*\*Best( \(tied\))? for `innovations_total`", report), report[:600]
    assert proc.stdout.index("Answer") < proc.stdout.index(f"results: {sweep.relative_to(tmp_path)}")


def test_a_fresh_install_is_told_that_the_kernels_compile_first(tmp_path, monkeypatch):
    """No compiled kernels in Numba's cache (a fresh install): the first run says it compiles
    them; once the cache holds the model's kernels, it does not."""
    from kibs_mc.cli import kernels_cold

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert kernels_cold("kibs") and kernels_cold("cowan_jonard")
    (tmp_path / "kibs_0123abcd").mkdir()
    (tmp_path / "kibs_0123abcd" / "step.run_replicate-40.py311.nbi").write_bytes(b"")  # Numba's naming
    assert not kernels_cold("kibs") and kernels_cold("cowan_jonard")


@pytest.mark.slow
def test_mlflow_says_nothing_between_the_progress_bar_and_the_answer(tmp_path):
    """A first run creates the MLflow store and its experiment: MLflow's INFO lines about it
    stay out of the terminal."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    quiet = ["replicates=2", *KIBS_FAST[:2], "executor=serial", "figures=false"]
    proc = run_cli(*quiet, f"tracking.uri={uri}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "mlflow.db").is_file() and "MLflow run " in proc.stdout
    assert " INFO " not in proc.stdout + proc.stderr

"""`make run`'s job: papermill executes every solution notebook on the cpu profile.

One run of ``course_lib.run_lab`` (what ``make run`` calls) executes the four
solution notebooks end to end with the bundled models; any cell error fails.
The executed copies are checked for error outputs, the HTML renderings and
the comparison summary for real figures.
"""
import json
import re
from pathlib import Path

import nbformat
import pytest

from course_lib import run_lab

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").rglob("*.ipynb"))


# lab_run (one `make run` into a temporary folder) is in conftest.py, shared with test_notebook_claims.py


def test_there_are_five_lab_notebooks_each_with_a_parameters_cell():
    assert [p.name for p in SOLUTIONS] == ["1_reward_and_data.ipynb", "2_ppo_happy.ipynb",
                                           "3_evaluate_and_pessimistic.ipynb", "4_inside_ppo.ipynb",
                                           "5_beyond_ppo.ipynb"]
    for p in SOLUTIONS:
        nb = nbformat.read(p, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{p.name}: one parameters cell expected"
        assert 'profile = "cpu"' in tagged[0].source and "seed = " in tagged[0].source


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_every_solution_notebook_executes_without_error_on_the_cpu_profile(lab_run, capsys):
    code, out = lab_run
    assert code == 0, "a notebook failed; see the executed copies in " + str(out / "executed")
    for src in SOLUTIONS:
        executed = out / "executed" / src.name
        nb = nbformat.read(executed, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{src.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        assert (out / "executed" / src.with_suffix(".html").name).stat().st_size > 10_000
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and 'profile = "cpu"' in injected[0].source


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_the_run_reports_tuned_models_beating_the_reference(lab_run):
    code, out = lab_run
    summary = json.loads((out / "results" / "part3_comparison.json").read_text())
    assert summary["n_prompts"] >= 512
    pos, neg = summary["POSITIVE"], summary["NEGATIVE"]
    # the bundled checkpoints' effect, measured in the notebook on held-out prompts; their cards report
    # gains of +1.76 (happy) and +1.98 (pessimistic) with 95% CIs of about +-0.07
    assert pos["happy"]["mean"] > pos["reference"]["mean"] + 1.3
    assert neg["pessimistic"]["mean"] > neg["reference"]["mean"] + 1.3
    assert pos["happy"]["ci95"][0] > pos["reference"]["ci95"][1]


def test_run_lab_rejects_an_unknown_profile_and_handles_no_notebooks(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run_lab.main(["--profile", "tpu", "--out", str(tmp_path)])
    assert e.value.code == 2 and "cpu, gpu" in capsys.readouterr().err
    empty = tmp_path / "none"
    empty.mkdir()
    assert run_lab.main(["--notebooks", str(empty), "--out", str(tmp_path)]) == 0
    assert "nothing to execute" in capsys.readouterr().out


def test_run_lab_gives_its_kernels_the_malloc_settings_the_makefile_exports(tmp_path, monkeypatch):
    import re

    exported = dict(re.findall(r"^export (MALLOC_\w+) \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M))
    assert exported == run_lab.MALLOC_ENV
    folder = tmp_path / "nbs"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell('profile = "cpu"\nseed = 0', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import json, os\n"
                                          "open('env.json', 'w').write(json.dumps({k: os.environ.get(k) for k in "
                                          f"{sorted(run_lab.MALLOC_ENV)!r}}}))")]
    nbformat.write(nb, folder / "probe.ipynb")
    for key in run_lab.MALLOC_ENV:  # as when run_lab is called without make
        monkeypatch.delenv(key, raising=False)
    assert run_lab.main(["--notebooks", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((folder / "env.json").read_text()) == run_lab.MALLOC_ENV


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_part1_shows_the_reward_models_margins_on_the_labs_own_examples(lab_run):
    """The "how far to trust the reward model" table prints what the bundled classifier really says."""
    from course_lib.config import make_config
    from course_lib.models import load_sentiment_pipeline
    from course_lib.reward import sentiment_scores

    code, out = lab_run
    nb = nbformat.read(out / "executed" / "1_reward_and_data.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == "nb1-trust-code")
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    rows = re.findall(r"^ *([+-]\d+\.\d\d)  (POSITIVE|NEGATIVE) +(POSITIVE|NEGATIVE)  '(.*)'", text, re.M)
    printed = {t: (float(margin), verdict, reader) for margin, verdict, reader, t in rows}
    assert {"this movie was really good!!", "this movie was really bad!!", "not bad at all"} <= set(printed)
    cfg = make_config("cpu")
    pipe = load_sentiment_pipeline(cfg.reward_model, device=-1)
    texts = list(printed)
    pos = sentiment_scores(pipe, texts, "POSITIVE", cfg.sent_kwargs)
    neg = sentiment_scores(pipe, texts, "NEGATIVE", cfg.sent_kwargs)
    for t, p, n in zip(texts, pos, neg):
        margin, verdict, _ = printed[t]
        assert abs(margin - (p - n)) < 0.01, (t, margin, p - n)
        assert verdict == ("POSITIVE" if p > n else "NEGATIVE")
    agree = sum((m > 0) == (r == "POSITIVE") for m, _, r in printed.values())
    assert f"{agree} of {len(printed)} on the reader's side" in text

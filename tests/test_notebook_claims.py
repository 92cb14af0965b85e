"""What the notebooks say matches what they compute (issue 23: prose that matches the run).

Two kinds of checks:

* against the course itself (fast): counts, numbering, sizes and settings the
  prose states are compared with the solution notebooks, ``course_lib.config``
  and the bundled statistics;
* against the run (slow): the executed notebooks of one ``make run``
  (``lab_run`` in conftest.py, shared with test_notebooks.py; ``LAB_RUN_DIR=build``
  checks the output of your own ``make run``) are read, and every figure a
  cell prints beside a claim is checked against that claim.  Every warning
  a cell shows must be one the notebook explains before it.

A claim the run can contradict is either computed and printed in the notebook
(and checked here) or worded so that no run can contradict it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").rglob("*.ipynb"))
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}


def _nb(path):
    return nbformat.read(path, as_version=4)


def _cell(nb, cid):
    hits = [c for c in nb.cells if c.get("id") == cid]
    assert len(hits) == 1, f"cell {cid!r} not found"
    return hits[0]


def _prose(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _out(cell, streams=("stdout",)) -> str:
    """A code cell's printed text (stream outputs of the given names, and text/plain results)."""
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream" and o.get("name") in streams:
            parts.append(o.get("text", ""))
        elif o.get("output_type") in ("execute_result", "display_data") and "stdout" in streams:
            parts.append(o.get("data", {}).get("text/plain", ""))
    return "".join(parts)


# ---- against the course (no run needed) --------------------------------------------------------
def test_the_stated_number_of_notebooks_is_the_number_there_is():
    title = _nb(SOLUTIONS[0]).cells[0].source
    m = re.search(r"Over (\w+) notebooks", title)
    assert m, "notebook 1's title cell should say over how many notebooks the course runs"
    assert NUMBER_WORDS.get(m.group(1)) == len(SOLUTIONS), \
        f"notebook 1 says 'over {m.group(1)} notebooks'; there are {len(SOLUTIONS)}"


def test_exercises_and_written_answers_are_numbered_once_across_the_course():
    exercises, written, written_ids = [], [], []
    for p in SOLUTIONS:
        nb = _nb(p)
        for c in nb.cells:
            if c.cell_type == "markdown":
                exercises += [int(n) for n in re.findall(r"^#+ Exercise (\d+) ·", c.source, re.M)]
                written += [int(n) for n in re.findall(r"^#+ Written answer (\d+) ·", c.source, re.M)]
            gid = c.metadata.get("nbgrader", {}).get("grade_id", "")
            if gid.startswith("written"):
                written_ids.append(int(re.match(r"written(\d+)", gid).group(1)))
    assert exercises == list(range(1, len(exercises) + 1)), exercises
    assert written == list(range(1, len(written) + 1)), f"written answers numbered {written}"
    assert written_ids == written, f"headings {written} but graded cells {written_ids}"


def test_the_settings_the_prose_states_are_the_profiles_settings():
    from course_lib.config import make_config

    cpu, gpu = make_config("cpu"), make_config("gpu")
    nb2 = _nb(SOLUTIONS[1])
    params = _cell(nb2, "nb2-02").source
    assert f"cpu: {cpu.steps}," in params and f"cpu: {cpu.batch_size}," in params and f"gpu: {gpu.batch_size})" in params
    nb3 = _nb(SOLUTIONS[2])
    assert f"(cpu {cpu.eval_prompts}, gpu {gpu.eval_prompts})" in _cell(nb3, "nb3-01").source
    assert f"between {cpu.response_min_tokens} and {cpu.response_max_tokens} new tokens" in _prose(nb2)
    assert f"first {cpu.prompt_min_tokens}–{cpu.prompt_max_tokens} tokens" in _prose(_nb(SOLUTIONS[0]))
    assert "batch 128, learning rate 1.41e-5" in _prose(nb2) and gpu.learning_rate == 1.41e-5
    assert f"longer than {cpu.min_review_chars} characters" in _prose(_nb(SOLUTIONS[0]))


def test_the_diversity_floor_and_vaders_lexicon_are_what_the_prose_says():
    import vaderSentiment

    from course_lib.evaluate import DIVERSITY_FLOOR

    prose = _prose(_nb(SOLUTIONS[2]))
    assert f"falls below {DIVERSITY_FLOOR}" in prose
    lexicon = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt").read_text(encoding="utf-8").splitlines()
    assert "about 7,500" in prose and abs(len(lexicon) - 7500) < 250, len(lexicon)


def test_the_bundled_experiments_are_what_notebook_4_says_they_are():
    from course_lib.assets import bundled

    exp = json.loads((bundled("inside-ppo-runs") / "runs.json").read_text())
    prose = _prose(_nb(SOLUTIONS[3]))
    frontier = {k: r for k, r in exp["runs"].items() if k.startswith("frontier-")}
    steps = {len(r["records"]) for r in exp["runs"].values()}
    assert steps == {exp["settings"]["steps"]} and exp["settings"]["adap_kl_ctrl"] is False  # "fixed beta"
    betas = ", ".join(f"{b:g}" for b in sorted(r["init_kl_coef"] for r in frontier.values()))
    assert betas == "0.03, 0.3, 1" and "fixed $\\beta$ of 0.03, 0.3 and\n1.0" in prose
    assert f"{exp['settings']['steps']} steps of {exp['frontier_batch']} prompts from the starting model" in prose
    assert f"{exp['settings']['steps']} steps of {exp['ablation_batch']} prompts with each estimator" in prose
    assert len(exp["ablation_seeds"]) == 3 and "three seeds each" in prose
    assert f"the same $\\beta = {exp['ablation_kl']:g}$" in prose
    assert "plot_reward_kl_frontier(frontier, window=3)" in _cell(_nb(SOLUTIONS[3]), "caafd776").source
    assert "each point averages 3 training steps" in prose


def test_the_full_gpt2s_output_layer_share_is_about_a_third():
    share = 50257 * 768 / (50257 * 768 + 12 * 12 * 768 ** 2)   # the count of notebook 4, on GPT-2's shape
    assert 0.28 < share < 0.36 and "on the full GPT-2 (768 wide, 12 layers) the\noutput layer is about a third" in _prose(_nb(SOLUTIONS[3]))


def test_no_notebook_types_a_speed_or_a_ratio_of_speeds():
    """Speeds depend on the student's machine and its load: print them, never type them."""
    for p in SOLUTIONS:
        prose = _prose(_nb(p))
        typed = re.findall(r"\d+(?:\.\d+)?\s*(?:times|x) (?:faster|slower)|\d+(?:\.\d+)? ?s(?:econds)? per step", prose)
        assert not typed, f"{p.name} states a speed in its prose: {typed}"


# ---- against the run -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executed(lab_run):
    code, out = lab_run
    assert code == 0, f"make run failed; see {out / 'executed'}"
    return {p.stem: _nb(out / "executed" / p.name) for p in SOLUTIONS}, out


@pytest.mark.parametrize("name", [p.stem for p in SOLUTIONS])
@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_every_warning_shown_is_explained_before_it(executed, name):
    nb = executed[0][name]
    explained = {  # what a warning's text contains -> what the notebook's prose must say before it
        "`PPOConfig` is deprecated": "FutureWarning",
        "`PPOTrainer` is deprecated": "FutureWarning",
        "Skipping batch.": "Skipping batch.",
    }
    earlier = _prose(executed[0][SOLUTIONS[1].stem]) if name > SOLUTIONS[1].stem else ""  # Part 2 explains them
    seen = ""
    for c in nb.cells:
        if c.cell_type == "markdown":
            seen += c.source
            continue
        err = _out(c, streams=("stderr",))
        for line in re.findall(r"^.*\b\w*Warning: .*$", err, re.M):
            keys = [k for k in explained if k in line]
            assert keys, f"{name}, cell {c.get('id')}: a warning the notebook does not explain: {line.strip()}"
            assert explained[keys[0]] in seen, f"{name}, cell {c.get('id')}: {line.strip()!r} is not explained before it"
            if name > SOLUTIONS[1].stem:
                assert explained[keys[0]] in earlier


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_no_numpy_scalar_reprs_and_the_thread_count_each_notebook_prints(executed):
    from course_lib.machine import torch_threads

    for name, nb in executed[0].items():
        printed = "".join(_out(c) for c in nb.cells if c.cell_type == "code")
        assert not re.search(r"np\.(int|float)\d+\(", printed), f"{name} prints NumPy scalar reprs"
        m = re.search(r"torch threads\s*:\s*(\d+)", printed)
        assert m, f"{name} does not print its torch thread count"
        assert int(m.group(1)) == torch_threads(), (name, m.group(1))


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_notebook_1_prompt_lengths_and_the_logit_ceiling(executed):
    nb = executed[0][SOLUTIONS[0].stem]
    lengths = re.search(r"ten prompt lengths: \[([\d, ]+)\]", _out(_cell(nb, "nb1-14")))
    assert lengths and all(2 <= int(x) <= 8 for x in lengths.group(1).split(","))
    vocab = int(re.search(r"vocabulary size : (\d+)", _out(_cell(nb, "nb1-10"))).group(1))
    assert f"{vocab:,} tokens" in _prose(nb), "the prose states the tokenizer's size"
    top = float(re.search(r"largest logit of either label on these texts: ([+-][\d.]+)", _out(_cell(nb, "nb1-trust-code"))).group(1))
    nb3 = executed[0][SOLUTIONS[2].stem]
    pattern = r"^(\w+)\s+POSITIVE logit: 99% of responses below ([+-][\d.]+), largest ([+-][\d.]+)"
    rows = {m: (float(q), float(x)) for m, q, x in re.findall(pattern, _out(_cell(nb3, "nb3-09")), re.M)}
    assert set(rows) == {"reference", "happy"}, rows
    q99, largest = rows["happy"]
    # "the rewards pile up against a ceiling ... no text a POSITIVE logit much above it": the tuned model's best
    # responses sit just under its largest, and no response goes far beyond what clear texts get in Part 1
    assert largest - q99 < 0.5, rows
    assert largest < top + 1.0, (largest, top)


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_notebook_2_says_what_its_run_prints(executed):
    nb, out = executed[0][SOLUTIONS[1].stem], executed[1]
    setup = _out(_cell(nb, "nb2-03"))
    saved_to = re.search(r"the live run will be saved to (\S+)", setup).group(1)
    assert Path(saved_to) == out / "checkpoints" / "happy" and Path(saved_to).is_dir(), saved_to
    config = _out(_cell(nb, "nb2-05"))
    lr = float(re.search(r"^learning_rate\s+(\S+)", config, re.M).group(1))
    assert lr > 10 * 1.41e-5, "the prose says the cpu profile's learning rate is far above the lab's"
    assert re.search(r"^reward_scale\s+\S+", config, re.M)
    params = float(re.search(r"([\d.]+)M parameters", _out(_cell(nb, "nb2-07"))).group(1))
    assert round(params) == 7 and "about 7M parameters" in _prose(nb)

    stats_out = _out(_cell(nb, "nb2-20"))
    m = re.search(r"(\d+) statistics in all\. This step: clip fraction ([\d.]+), approximate KL ([\d.]+) "
                  r"nats per token: the policy moved (\w+)\.", stats_out)
    assert m, stats_out[-400:]
    clipfrac, approxkl, verdict = float(m.group(2)), float(m.group(3)), m.group(4)
    assert int(m.group(1)) > 20
    expected = "far" if clipfrac >= 0.2 or approxkl >= 0.1 else "moderately" if clipfrac >= 0.05 else "little"
    assert verdict == expected

    live = _out(_cell(nb, "nb2-25"))
    kl = re.search(r"KL to the reference: ([\d.-]+) nats at the hand-made step of section 5, ([\d.-]+) at the live "
                   r"run's step 1, ([\d.-]+) at step (\d+)", live)
    assert kl, live[-400:]
    hand, first = float(kl.group(1)), float(kl.group(2))
    assert abs(hand) < 0.01, "the prose says the hand-made step measured a KL of 0"
    assert first > 0.05, "the prose says the live run's first KL is not 0"
    beta = re.search(r"KL coefficient beta: ([\d.]+) at step 1, ([\d.]+) at step \d+", live)
    b0, b1 = float(beta.group(1)), float(beta.group(2))
    assert abs(b1 - b0) / b0 < 0.01, "exercise 6 says beta barely moves in a short live run"


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_notebook_3_compares_on_hundreds_of_prompts_and_saves_under_the_output_folder(executed):
    nb, out = executed[0][SOLUTIONS[2].stem], executed[1]
    n = int(re.search(r"comparing on (\d+)", _out(_cell(nb, "nb3-02"))).group(1))
    assert n >= 200, "the notebook says it compares on hundreds of prompts"
    assert (out / "checkpoints" / "pessimistic").is_dir()


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_the_long_cells_show_a_progress_bar(executed):
    long_cells = {SOLUTIONS[1].stem: ["nb2-25"], SOLUTIONS[2].stem: ["nb3-07", "nb3-11", "nb3-17"]}
    for name, cells in long_cells.items():
        for cid in cells:
            c = _cell(executed[0][name], cid)
            bar = any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in c.outputs) or \
                re.search(r"\d+/\d+ \[", _out(c, streams=("stderr",)))
            assert bar, f"{name}, cell {cid}: no progress bar"


@pytest.mark.slow
@pytest.mark.xdist_group("lab-run")
def test_notebook_4_counts_the_output_layer_it_talks_about(executed):
    nb = executed[0][SOLUTIONS[3].stem]
    share = re.search(r"the output layer is (\d+)% of them", _out(_cell(nb, "nb4-outlayer-code")))
    assert share and int(share.group(1)) > 50, "the prose says the output layer is most of the small model's arithmetic"


# ---- notebook 5: the frontier's prose against the bundled statistics ----------------------------
def _frontier_rows() -> dict:
    from course_lib.assets import ASSETS_DIR

    data = json.loads((ASSETS_DIR / "frontier-runs" / "runs.json").read_text())
    return {row["run"]: row for row in data["summary"]}


def _nb5_answer() -> str:
    nb = _nb(ROOT / "solutions" / "rlhf_ppo" / "5_beyond_ppo.ipynb")
    hits = [c.source for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            == "written4-frontier"]
    assert len(hits) == 1
    return hits[0]


def test_notebook_5_model_answer_quotes_the_frontier_as_bundled():
    rows, text = _frontier_rows(), " ".join(_nb5_answer().split())
    quoted = re.findall(r"([+-]\d\.\d\d) \(([a-z0-9.-]+)\)", text)
    assert len(quoted) >= 3, text[:300]
    for value, run in quoted:
        assert run in rows, f"the answer names run {run!r}, which the frontier does not have"
        assert f"{rows[run]['reward']:+.2f}" == value, f"{run}: the answer says {value}, the runs {rows[run]['reward']:+.3f}"
    within = [r for r in rows.values() if r["curve"] == "dpo" and r["kl_to_reference"] <= 25]
    best = max(within, key=lambda r: r["reward"])
    assert f"reaches {best['reward']:+.2f} and {best['vader_positive_rate']:.1%}" in text
    online = [r for r in rows.values() if r["curve"] == "online-dpo"]
    lost = [r for r in online if r["distinct_2_ratio"] < 0.7]
    words = {v: k for k, v in NUMBER_WORDS.items()}
    assert f"{words[len(lost)]} of its {words[len(online)]} runs lost their variety" in text
    assert f"down to {min(r['distinct_2_ratio'] for r in lost):.2f}x" in text
    bundled = rows["dpo-beta0.1-online4-1ep"]
    assert f"({bundled['train_seconds']:.0f} s, drawing {bundled['samples']:,} samples" in text
    long_run = rows["dpo-beta0.01-long"]
    assert f"still get {long_run['reward']:+.2f} from the classifier but only {long_run['vader_positive_rate']:.0%}" in text

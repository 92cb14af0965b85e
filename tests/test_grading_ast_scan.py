"""course_instructor.grading.astscan: answers taken from trl, course_lib or course_instructor, however named."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from course_instructor.grading import astscan, scan

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["1_reward_and_data.ipynb", "2_ppo_happy.ipynb", "3_evaluate_and_pessimistic.ipynb", "4_inside_ppo.ipynb",
             "5_beyond_ppo.ipynb"]
_cache: dict[str, dict] = {}


def _load(path: Path) -> dict:
    if str(path) not in _cache:
        _cache[str(path)] = json.loads(path.read_text(encoding="utf-8"))
    return copy.deepcopy(_cache[str(path)])


def _released(name: str) -> dict:
    return _load(ROOT / "notebooks" / "rlhf_ppo" / name)


def _grade_id(cell: dict):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _honest(name: str) -> dict:
    """The solution notebook as a student who solved everything would submit it (no solution markers)."""
    nb = _load(ROOT / "solutions" / "rlhf_ppo" / name)
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = "\n".join(line for line in src.splitlines()
                                   if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
    return nb


def _submit(name: str, solutions: dict[str, str] | None = None, added: list[str] = ()) -> list[str]:
    """Flags of the honest notebook ``name`` with some solution cells replaced and code cells appended."""
    nb = _honest(name)
    for cell in nb["cells"]:
        if _grade_id(cell) in (solutions or {}):
            cell["source"] = solutions[_grade_id(cell)]
    for i, code in enumerate(added):
        nb["cells"].append({"cell_type": "code", "id": f"added-{i}", "metadata": {}, "source": code,
                            "outputs": [], "execution_count": None})
    return astscan.twin_flags(nb, _released(name))


NB4 = "4_inside_ppo.ipynb"
GAE = "ex12-gae-solution"
POLICY = "ex13-policyloss-solution"
WHITEN = "twin:gae:trl.core.masked_whiten"
ADV = "twin:gae:trl.PPOTrainer.compute_advantages"


def _gae(body: str, head: str = "") -> dict[str, str]:
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    return {GAE: f"{head}\ndef gae(values, rewards, gamma, lam):\n{indented}"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_honest_solutions_raise_no_flag(name):
    assert _submit(name) == []
    flags = scan.scan_notebook(_honest(name), _released(name))
    ours = ("twin:", "dynamic-access", "instructor-package", "too-large-to-scan", "library-twin")
    assert not [f for f in flags if f.startswith(ours)], flags


W = "(values, rewards), values"
ALIASES = {
    "import as": ("import trl.core as c", "return c.masked_whiten{W}"),
    "plain import": ("import trl.core", "return trl.core.masked_whiten{W}"),
    "from import": ("from trl.core import masked_whiten as mw", "return mw{W}"),
    "from import of the module": ("from trl import core", "return core.masked_whiten{W}"),
    "star import": ("from trl.core import *", "return masked_whiten{W}"),
    "re-export": ("from trl.trainer.ppo_trainer import masked_whiten", "return masked_whiten{W}"),
    "importlib": ("import importlib", "return importlib.import_module('trl.core').masked_whiten{W}"),
    "from importlib": ("from importlib import import_module as im", "m = im('trl.core')\nreturn m.masked_whiten{W}"),
    "__import__ top": ("", "return __import__('trl').core.masked_whiten{W}"),
    "__import__ fromlist": ("", "m = __import__('trl.core', fromlist=['x'])\nreturn m.masked_whiten{W}"),
    "sys.modules": ("import sys, trl.core", "return sys.modules['trl.core'].masked_whiten{W}"),
    "sys.modules.get": ("import sys", "return sys.modules.get('trl.core').masked_whiten{W}"),
    "getattr on a module": ("import trl", "f = getattr(getattr(trl, 'core'), 'mask' 'ed_whiten')\nreturn f{W}"),
    "vars of a module": ("import trl.core", "return vars(trl.core)['masked_whiten']{W}"),
    "__dict__ of a module": ("import trl.core", "return trl.core.__dict__['masked_whiten']{W}"),
    "pkgutil": ("import pkgutil", "return pkgutil.resolve_name('trl.core:masked_whiten'){W}"),
    "assignment chain": ("import trl as t0\nt = t0\nc = t.core\nf = c.masked_whiten", "return f{W}"),
    "tuple and container": ("import trl\nx, y = trl.core, 1\nfs = [x]", "return fs[0].masked_whiten{W}"),
    "default argument": ("import trl.core",
                         "def inner(v, m, c=trl.core):\n    return c.masked_whiten(v, m)\nreturn inner{W}"),
    "walrus": ("", "return (c := __import__('trl.core', fromlist=['x'])).masked_whiten{W}"),
    "constant exec": ("exec('from trl.core import masked_whiten as w')", "return w{W}"),
    "constant exec via builtins": ("import builtins\nbuiltins.exec('from trl.core import masked_whiten as w')",
                                   "return w{W}"),
    "%time magic": ("%time import trl.core as c2", "return c2.masked_whiten{W}"),
}


@pytest.mark.parametrize("form", sorted(ALIASES))
def test_every_alias_form_is_followed(form):
    head, body = ALIASES[form]
    body = body.replace("{W}", W)
    assert WHITEN in _submit(NB4, _gae(body, head)), form


def test_a_method_of_any_object_counts():
    assert ADV in _submit(NB4, _gae("return anything.compute_advantages(values, rewards, 1)[1:]"))
    assert ADV in _submit(NB4, _gae("return getattr(obj, 'compute_advantages')(values, rewards, 1)[1:]"))
    assert ADV in _submit(NB4, _gae("return ppo_trainer.compute_advantages(values[None], rewards[None], m)[1:]"))
    # the trainer of the locked cells, reached through the namespace
    assert ADV in _submit(NB4, _gae("t = globals()['ppo_trainer']\n"
                                    "return t.compute_advantages(values, rewards, 1)[1:]"))
    policy = ("def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):\n"
              "    pg, _, stats = {}\n    return pg, stats['policy/clipfrac']\n")
    loss = "twin:clipped_policy_loss:trl.PPOTrainer.loss"
    assert loss in _submit(NB4, {POLICY: policy.format("whatever.loss(old_logprobs, logprobs)")})
    assert loss in _submit(NB4, {POLICY: policy.format("__import__('__main__').ppo_trainer.loss")})
    assert loss in _submit(NB4, {POLICY: policy.format("trl_loss(old_logprobs, 0, 0, logprobs, mask, advantages, 0)")})
    step = "twin:response_logprobs_and_values:trl.PPOTrainer.step"
    assert step in _submit(NB4, {"ex11-logprobs-solution": (
        "import __main__\ndef response_logprobs_and_values(model, query, response):\n"
        "    s = __main__.ppo_trainer.step([query], [response], [0])\n    return s['objective/logprobs'], None\n")})


def test_common_names_are_not_taken_for_trl():
    ok = ("def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):\n"
          "    out = model(old_logprobs)\n    model.train()\n    return out.loss, model.step\n")
    assert _submit(NB4, {POLICY: ok}) == []
    gen = "twin:generate_response:trl.PPOTrainer.generate"
    body = "def generate_response(model, query_tensor, n_tokens):\n    return {}\n"
    assert _submit("2_ppo_happy.ipynb", {"ex5-generate-solution": body.format(
        "model.generate(query_tensor[None], max_new_tokens=n_tokens)[0]")}) == []
    assert gen in _submit("2_ppo_happy.ipynb", {"ex5-generate-solution": body.format(
        "ppo_trainer.generate(query_tensor, return_prompt=False, max_new_tokens=n_tokens)")})
    assert gen in _submit("2_ppo_happy.ipynb", {"ex5-generate-solution": body.format(
        "thing.generate(query_tensor, return_prompt=False)")})


def test_course_lib_twins_are_flagged_only_for_their_exercise():
    nb2 = "2_ppo_happy.ipynb"
    body = ("import course_lib.rollout as r\ndef generate_response(model, query_tensor, n_tokens):\n"
            "    return r.generate_responses(model, tokenizer, [query_tensor], [n_tokens], gen_kwargs)[0]\n")
    assert _submit(nb2, {"ex5-generate-solution": body}) == [
        "twin:generate_response:course_lib.rollout.generate_responses"]
    # exercise 6 re-derives trl's adaptive KL controller: the controller itself answers it
    ctl = ("from trl.trainer.utils import AdaptiveKLController as C\n"
           "def next_kl_coef(beta, kl, target, horizon, n_responses):\n"
           "    c = C(beta, target, horizon)\n    c.update(kl, n_responses)\n    return float(c.value)\n")
    flags = _submit(nb2, {"ex6-step-solution": ctl})
    assert "twin:next_kl_coef:trl.trainer.utils.AdaptiveKLController" in flags, flags
    assert all(f.startswith("twin:next_kl_coef:trl.trainer") for f in flags), flags
    assert _submit("3_evaluate_and_pessimistic.ipynb", {"ex8-table-solution": (
        "from course_lib import evaluate\ndef comparison_table(queries, before, after, label):\n"
        "    return evaluate.score_texts(queries, {'before': before}, sentiment_pipe)\n")}) == [
        "twin:comparison_table:course_lib.evaluate.score_texts"]


def test_helpers_are_followed_across_cells():
    # a helper in an added cell (trl's compute_advantages is used by the locked cells, so only reachability finds it)
    helper = "def helper(v, r):\n    return ppo_trainer.compute_advantages(v[None], r[None], torch.ones(1, len(v)))"
    assert ADV in _submit(NB4, _gae("return helper(values, rewards)[1:]"), added=[helper])
    assert _submit(NB4, added=[helper]) == []
    # the exercise's name rebound in an added cell
    assert ADV in _submit(NB4, added=["gae = lambda v, r, g, l: ppo_trainer.compute_advantages(v, r, 1)[1:]"])
    # a helper hidden in another exercise's cell counts for the exercise that calls it, not for its host
    host = _gae("return values, values", head="def _pl(*a):\n    return ppo_trainer.loss(*a)\n")[GAE]
    policy = ("def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):\n"
              "    return _pl(old_logprobs, logprobs)[:2]\n")
    assert _submit(NB4, {GAE: host, POLICY: policy}) == ["twin:clipped_policy_loss:trl.PPOTrainer.loss"]
    # an object patched in an added cell: torch.clamp = ... is followed from an exercise that uses torch
    patch = "import torch, trl.core\ntorch.clamp = trl.core.clip_by_value"
    assert "twin:clipped_policy_loss:trl.core.clip_by_value" in _submit(NB4, added=[patch])


def test_added_cells():
    # copying a locked cell is not suspicious ...
    nb4 = _released(NB4)
    locked = next("".join(c["source"]) for c in nb4["cells"] if "compute_advantages" in "".join(c["source"]))
    assert _submit(NB4, added=[locked]) == []
    nb2 = _released("2_ppo_happy.ipynb")
    locked = next("".join(c["source"]) for c in nb2["cells"] if "generate_responses(" in "".join(c["source"]))
    assert _submit("2_ppo_happy.ipynb", added=[locked]) == []
    # ... a twin the locked cells never use is, even when nothing calls it yet
    assert _submit(NB4, added=["from trl.core import masked_whiten"]) == [WHITEN]
    assert _submit(NB4, added=["import trl\nx = trl.core.masked_mean"]) == [
        "twin:clipped_policy_loss:trl.core.masked_mean", "twin:clipped_value_loss:trl.core.masked_mean"]


def test_instructor_package():
    forms = ["import course_instructor.ppo", "from course_instructor.ppo import gae as g",
             "import importlib\nm = importlib.import_module('course_instructor.ppo')",
             "m = __import__('course_instructor')", "import sys\nm = sys.modules['course_instructor.ppo']",
             "from course_instructor import reference as r"]
    for code in forms:
        assert _submit(NB4, added=[code]) == ["instructor-package"], code
        assert "instructor-package" in _submit(NB4, _gae("return values, values", head=code)), code


DYNAMIC = [
    "import trl.core\nname = 'masked_' + 'whiten'\nf = getattr(trl.core, name)",
    "f = eval(open('x.py').read())",
    "exec(compile(source, 'x', 'exec'))",
    "m = __import__(name)",
    "import importlib\nm = importlib.import_module('trl.' + x)",
    "import pkgutil\nf = pkgutil.resolve_name(s)",
    "f = globals()[name]",
    "f = vars()[name]",
    "g = globals()",
    "import sys\nm = sys.modules[name]",
    "import sys\nfor m in sys.modules.values(): pass",
    "import trl.core\nf = trl.core.__dict__[name]",
    "import pickle\nf = pickle.loads(blob)",
    "import importlib.util\nspec = importlib.util.spec_from_file_location('m', 'm.py')",
    "import operator\nf = operator.attrgetter(name)(obj)",
    "f = obj.__getattribute__(name)",
    "!echo 'from trl.core import *' > helper.py",
    "%run helper.py",
    "%%bash\necho hi",
    "%%writefile helper.py\nfrom trl.core import masked_whiten",
]


@pytest.mark.parametrize("code", DYNAMIC)
def test_what_cannot_be_followed_is_flagged(code):
    assert "dynamic-access" in _submit(NB4, added=[code]), code


def test_constant_forms_are_not_dynamic():
    for code in ["import trl\nf = getattr(trl, 'core')", "x = globals()['model']", "exec('y = 1')",
                 "import sys\nm = sys.modules['torch']", "%matplotlib inline", "%%time\ny = 2"]:
        assert "dynamic-access" not in _submit(NB4, added=[code]), code


def test_syntax_errors_and_magics_do_not_stop_the_scan():
    broken = ["def gae(:\n    pass", "x = (", "\x00", "", "%%time", "print('unterminated", "await something()"]
    for code in broken:
        assert _submit(NB4, _gae("return values, values", head=code), added=[code]) in ([], ["dynamic-access"]), code
    # the magic lines go, the rest of the cell is still read
    magic = "%load_ext autoreload\n%autoreload 2\nimport trl.core as c\n"
    assert WHITEN in _submit(NB4, _gae("return c.masked_whiten(values, rewards), values", head=magic))
    body = "%%time\nfrom trl.core import masked_whiten as w\n"
    assert WHITEN in _submit(NB4, _gae("return w(values, rewards), values"), added=[body])
    # odd cells: a list source with a non-string, a cell with no source
    nb = _honest(NB4)
    nb["cells"].append({"cell_type": "code", "metadata": {}, "source": ["x = 1", 5]})
    nb["cells"].append({"cell_type": "code", "metadata": {}})
    nb["cells"].append("not a cell")
    assert astscan.twin_flags(nb, _released(NB4)) == []


def test_scan_notebook_reports_the_twins():
    nb = _honest(NB4)
    for cell in nb["cells"]:
        if _grade_id(cell) == GAE:
            cell["source"] = _gae("return anything.compute_advantages(values, rewards, 1)[1:]")[GAE]
    assert ADV in scan.scan_notebook(nb, _released(NB4))


def test_every_exercise_has_a_twin_entry():
    """EXERCISE_TWINS names every exercise of the four notebooks (an empty tuple: nothing to call)."""
    names = set()
    for name in NOTEBOOKS:
        for cell in _released(name)["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("solution") and cell["cell_type"] == "code":
                names |= set(astscan.exercise_names("".join(cell["source"])))
    assert names == set(astscan.EXERCISE_TWINS)


def test_a_library_function_named_like_the_exercise_is_a_twin():
    """The old library-twin check: course_lib (or trl) with a function of the exercise's name."""
    nb1 = "1_reward_and_data.ipynb"
    code = "from course_lib.padding import pad_to_length\n"
    assert _submit(nb1, {"ex1-pad-solution": code}) == ["twin:pad_to_length:course_lib.padding.pad_to_length"]
    code = ("import course_lib.padding as p\ndef pad_to_length(seq, length, pad_token_id):\n"
            "    return p.pad_to_length(seq, length, pad_token_id)\n")
    assert _submit(nb1, {"ex1-pad-solution": code}) == ["twin:pad_to_length:course_lib.padding.pad_to_length"]
    # a method of the same name on an unknown object is not (tokenizer.tokenize is a tokenizer's own)
    code = "def tokenize(sample):\n    sample['input_ids'] = tokenizer.tokenize(sample['review'])\n    return sample\n"
    assert _submit(nb1, {"ex2-tokenize-solution": code}) == []


def test_a_huge_cell_is_not_scanned_past_a_bound(monkeypatch):
    monkeypatch.setattr(astscan, "_MAX_SOURCE", 1000)
    assert "too-large-to-scan" in _submit(NB4, added=["x = 1\n" * 500])


def test_more_reflective_forms():
    loss = "twin:clipped_policy_loss:trl.PPOTrainer.loss"
    policy = ("def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):\n"
              "    f = {}\n    return f(old_logprobs, logprobs)[:2]\n")
    for form in ["eval('ppo_trainer').loss", "ppo_trainer.__getattribute__('loss')",
                 "object.__getattribute__(ppo_trainer, 'loss')", "type(ppo_trainer).loss",
                 "__import__('course_lib.train', fromlist=['x']).PPOTrainer.loss"]:
        assert loss in _submit(NB4, {POLICY: policy.format(form)}), form
    assert WHITEN in _submit(NB4, _gae("import operator, trl.core\nreturn operator.attrgetter('core.masked_whiten')(trl)"))
    assert WHITEN in _submit(NB4, _gae("import importlib\nreturn importlib.import_module('.core', 'trl').masked_whiten"))
    for code in ["import functools, trl\nf = functools.reduce(getattr, path, trl)", "f = list(map(getattr, objs, names))",
                 "import inspect, trl.core\nfs = dict(inspect.getmembers(trl.core))", "f = getattr(*args)"]:
        assert "dynamic-access" in _submit(NB4, added=[code]), code


def test_a_patch_is_not_a_use():
    """Replacing a library function is the library-patched pattern's business; reading it is a use."""
    assert _submit(NB4, added=["import trl.core\ntrl.core.masked_whiten = None"]) == []
    assert _submit(NB4, added=["import trl.core\nw = trl.core.masked_whiten"]) == [WHITEN]

"""Which exercise answers a submission took from a library: an AST scan of the cells a student may edit.

Notebook 4 (and a few exercises before it) re-derive functions that a
library already has: trl 0.11.4's ``PPOTrainer.compute_rewards``,
``compute_advantages``, ``batched_forward_pass``, ``loss`` and the helpers
of ``trl.core``, and some helpers of ``course_lib``.  A student who calls one
of them passes the exercise without doing it.  :data:`EXERCISE_TWINS` lists,
for each exercise function (the ``def`` of the released solution cell), the
dotted names that compute its answer; :func:`twin_flags` returns

``twin:<exercise>:<target>``
    the code of the exercise references ``<target>``: the exercise's solution
    cell, any top-level statement of an editable cell that rebinds the
    exercise's name, and, transitively, every top-level statement of the
    notebook (editable or locked) that binds or mutates a global name that
    code uses.  A statement of an added cell that references a twin of any
    of the notebook's exercises is flagged too, unless the released notebook's
    own (locked) code references that target as well (a copied locked cell
    is not suspicious; a helper that the exercise calls is still found by
    following the names);
``dynamic-access``
    the editable code reaches names in a way a static scan cannot follow:
    ``getattr`` / ``attrgetter`` / ``__getattribute__`` with a computed name,
    ``eval`` / ``exec`` / ``compile`` of a computed string (constant strings
    are parsed and scanned like the cell), ``__import__`` /
    ``importlib.import_module`` / ``pkgutil.resolve_name`` of a computed name,
    ``importlib.util`` / ``runpy`` / ``types.ModuleType`` / ``pickle``-style
    loaders, ``sys.modules``, ``globals()`` / ``locals()`` / ``vars()`` or a
    ``__dict__`` used other than with a constant key, and IPython shell
    escapes and magics that run other code (``!cmd``, ``%run``, ``%load``,
    ``%%bash``, ``%%writefile``...);
``instructor-package``
    the editable code imports or references ``course_instructor`` (the
    instructor's package, which holds reference solutions), by any of the
    forms below;
``too-large-to-scan``
    the editable code is longer than ``_MAX_SOURCE`` characters; the cells
    past it are not scanned (the scan's time grows with the code).

A function of ``course_lib`` or trl with the exercise's own name is a twin
too (``twin:pad_to_length:course_lib.padding.pad_to_length``), found by its
resolved name only, never as a method of an unknown object
(``tokenizer.tokenize`` is the tokenizer's own).

How names are followed.  Every code cell is parsed separately, after
IPython's own input transformation (magics become ``get_ipython()`` calls;
without IPython, lines starting with ``%`` or ``!`` are dropped), and a cell
that does not parse is skipped (it does not run either).  One flow- and
scope-insensitive table maps each name to the dotted names it may hold,
built to a fixed point from ``import x.y as z``, ``from x import y as z``
(and ``*``), assignments (chains ``t = trl; c = t.core; f = c.masked_whiten``,
tuples, containers, walrus, ``for``, default arguments, ``setattr`` and
attribute stores), ``importlib.import_module("x")``, ``__import__("x")``,
``pkgutil.resolve_name``, ``sys.modules["x"]`` / ``.get("x")``,
``getattr(obj, "name")``, ``vars(m)["name"]`` / ``m.__dict__["name"]``,
``globals()["name"]``, ``__main__.name`` and ``type(obj)``; a call of a
class (or of ``course_lib.train.make_trainer``) gives an instance of it.
A target matches a dotted name with the same top-level package and the same
last part (trl re-exports ``trl.core``'s helpers from several modules).
A target's name also matches as an attribute of *any* object
(``anything.compute_advantages``, ``m().masked_whiten``), as
``getattr(x, "...")`` and as a string constant equal to it, except the
common names of :data:`GENERIC`: those match only on a value known to be
the library's (``ppo_trainer.step``, where the locked cells made
``ppo_trainer`` with ``make_trainer``); ``.loss(...)`` also when called on
anything, ``.generate(...)`` also with one of ``PPOTrainer.generate``'s own
keywords (``return_prompt``...).

What remains (not found by this scan; a human reviewer, the similarity of
submissions or the sandbox has to catch it):

- code built from strings at run time (``exec(a + b)``, ``getattr(m, name)``
  with a computed name, ``importlib.import_module(f"trl.{x}")``): flagged as
  ``dynamic-access``, but what it reaches is unknown;
- code that arrives as data: pickled or marshalled functions, a module
  written to disk by a shell command and imported, trl's source read from
  site-packages and exec'd (the exec of a non-constant string is flagged as
  ``dynamic-access``; the shell escape too);
- objects found by introspection (``gc.get_objects()``, frames, ``__code__``,
  ``__subclasses__``), which the regex flags ``introspection`` cover in part;
- values returned by the student's own functions (``def m(): return trl.core``
  then ``m().masked_whiten``) are not tracked, only the references inside
  their bodies and distinctive attribute names; a helper reached through an
  object the student built at run time rather than a global name is missed;
- a function that reimplements the exercise by calling lower-level library
  pieces that are not in :data:`EXERCISE_TWINS` (``torch`` itself is fair);
- the common method names (``step``, ``generate``, ``train``...) on an object
  the scan cannot tell is trl's (found through ``gc``, say);
- trl's code copied by hand into the cell: that is the student doing the
  work from a reference; the similarity flag or a human catches it.

False alarms are possible too, for a human to dismiss: the name table does
not know order or scope, so a name that holds trl's module in one place
makes every use of that name look like one; and an added cell that
references a twin is flagged even if nothing calls it (unless a locked cell
references the same target).
"""
from __future__ import annotations

import ast
import builtins
import re
import symtable
from dataclasses import dataclass, field

#: exercise function -> dotted names that compute (part of) its answer.
#: ``trl.PPOTrainer.<method>`` stands for the method of trl 0.11.4's PPOTrainer
#: however the class or an instance is reached.  course_instructor (reference
#: solutions) is flagged separately as ``instructor-package``.
EXERCISE_TWINS: dict[str, tuple[str, ...]] = {
    # notebook 1: no twin left in trl or course_lib (the references are in course_instructor.reference)
    "pad_to_length": (),
    "tokenize": (),
    "collator": (),
    "score_for_label": (),
    # notebook 2
    "generate_response": ("trl.PPOTrainer.generate", "trl.PPOTrainer._generate_batched", "trl.core.respond_to_batch",
                          "course_lib.rollout.generate_responses", "course_lib.rollout.generate_some_text",
                          "course_lib.evaluate.generate_for_eval"),
    # trl's adaptive controller itself (the trainer keeps one as .kl_ctl)
    "next_kl_coef": ("trl.trainer.utils.AdaptiveKLController", "trl.trainer.AdaptiveKLController",
                     "trl.PPOTrainer.kl_ctl"),
    "kl_shaped_rewards": ("trl.PPOTrainer.compute_rewards", "trl.PPOTrainer._kl_penalty"),
    # notebook 3
    "comparison_table": ("course_lib.evaluate.score_texts", "course_lib.evaluate.compare_models"),
    "stutter_share": (),
    "happy_vs_pessimistic": ("course_lib.evaluate.summarize", "course_lib.evaluate.summary_frame"),
    # notebook 4: trl's PPOTrainer.batched_forward_pass / compute_advantages / loss and trl.core
    "response_logprobs_and_values": ("trl.PPOTrainer.batched_forward_pass", "trl.core.logprobs_from_logits",
                                     "trl.PPOTrainer.step", "course_lib.evaluate.response_logprobs"),
    "gae": ("trl.PPOTrainer.compute_advantages", "trl.core.masked_whiten", "trl.core.whiten"),
    "clipped_policy_loss": ("trl.PPOTrainer.loss", "trl.PPOTrainer.train_minibatch", "trl.core.masked_mean",
                            "trl.core.clip_by_value"),
    "clipped_value_loss": ("trl.PPOTrainer.loss", "trl.PPOTrainer.train_minibatch", "trl.core.masked_mean",
                           "trl.core.masked_var", "trl.core.clip_by_value"),
    # trl's RLOOTrainer computes the leave-one-out baseline inline in train(): no function to call
    "rloo_advantages": (),
    # notebook 5: trl 0.11's DPOTrainer has the DPO loss; it has no GRPO (the course's is course_instructor.grpo)
    "preference_pairs": (),
    "dpo_loss": ("trl.DPOTrainer.dpo_loss", "trl.trainer.DPOTrainer.dpo_loss",
                 "trl.trainer.dpo_trainer.DPOTrainer.dpo_loss"),
    "group_advantages": (),
    "k3_kl": (),
    "grpo_loss": (),
}

INSTRUCTOR = "course_instructor"
#: a function of these packages with an exercise's name is a twin of it too (the old library-twin check)
_LIBRARIES = ("course_lib", "trl")
#: editable code beyond this many characters is not scanned (flag too-large-to-scan): the scan's time grows with it
_MAX_SOURCE = 300_000
#: names too common to flag as an attribute of an unknown object
GENERIC = frozenset({"loss", "step", "generate", "train", "run", "summarize"})
#: keywords only trl's PPOTrainer.generate takes (a model's generate does not)
_PPO_GENERATE_KW = frozenset({"return_prompt", "length_sampler", "generate_ref_response", "remove_padding"})
#: callables whose result is a trl PPOTrainer
_TRAINER_FACTORIES = {"course_lib.train.make_trainer": "trl.PPOTrainer",
                      "course_lib.train._trainer_class": "trl.PPOTrainer"}
_MAX_VALUES, _MAX_DOTS, _MAX_PASSES = 256, 12, 200     # what one name may hold: at most so many dotted names, so long
_BINDERS = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr, ast.For, ast.AsyncFor,
            ast.comprehension, ast.With, ast.AsyncWith, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.Call)
_MUTATORS = frozenset({"append", "extend", "insert", "update", "setdefault", "add", "__setitem__", "__setattr__"})
#: anything reached under these loads code the scan cannot read
_DYNAMIC_PREFIXES = ("importlib.util", "importlib.machinery", "importlib.abc", "importlib._bootstrap", "runpy",
                     "imp.", "zipimport", "pickle.load", "pickle.Unpickler", "_pickle", "marshal.load", "dill",
                     "cloudpickle", "types.ModuleType", "types.FunctionType",
                     "types.CodeType", "shelve", "code.InteractiveInterpreter", "code.InteractiveConsole",
                     "code.interact", "codeop", "inspect.getmembers")
_REFLECTIVE = {"builtins.getattr", "builtins.eval", "builtins.exec", "builtins.compile", "builtins.__import__",
               "importlib.import_module", "importlib.__import__", "pkgutil.resolve_name", "operator.attrgetter",
               "operator.methodcaller", "inspect.getattr_static", "builtins.globals", "builtins.locals"}
_IMPORTERS = {"builtins.__import__", "importlib.import_module", "importlib.__import__", "pkgutil.resolve_name"}
_NAMESPACES = {"builtins.globals", "builtins.locals", "builtins.vars"}
#: IPython magics whose argument or body is Python run in the kernel (scanned like the cell)
_PY_LINE_MAGICS = frozenset({"time", "timeit", "prun", "debug"})
_PY_CELL_MAGICS = frozenset({"time", "timeit", "prun", "debug", "capture"})
#: magics that only change display or state, run nothing
_QUIET_MAGICS = frozenset({"matplotlib", "pinfo", "pinfo2", "psource", "pdoc", "pdef", "config", "autoreload",
                           "load_ext", "env", "pwd", "who", "whos", "precision", "html", "markdown", "latex"})


def _root(name: str) -> str:
    return name.split(".", 1)[0]


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _all_targets() -> set[str]:
    return {t for ts in EXERCISE_TWINS.values() for t in ts}


def _is_method(target: str) -> bool:
    parts = target.split(".")
    return len(parts) >= 3 and parts[-2][:1].isupper()


def _const_str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_compile(node) -> bool:
    """``compile("...", ...)``, whose string exec and eval run."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "compile"
            and bool(node.args))


def _dotted(node) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _root_name(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def to_python(source: str) -> str:
    """The Python that IPython runs for a cell (magics as ``get_ipython()`` calls)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # no IPython, or its transformer fails on odd input
        return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def parse_cell(source: str) -> ast.Module | None:
    """The cell's module, or None when it does not parse (it does not run either)."""
    for text in (to_python(source), "\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!")))):
        try:
            return ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return None


def _parse_code(text: str, mode: str = "exec") -> list[ast.AST]:
    try:
        tree = ast.parse(text, mode=mode)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        try:
            tree = ast.parse(text, mode="exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return []
    return [tree]


@dataclass
class _Unit:
    """One top-level statement of a cell, with the code it carries (constant exec strings, Python magics)."""
    node: ast.stmt
    cell: int
    editable: bool
    extra: list = field(default_factory=list)
    binds: set = field(default_factory=set)
    uses: set = field(default_factory=set)
    targets: set = field(default_factory=set)
    dynamic: bool = False
    instructor: bool = False
    _nodes: tuple | None = None

    def nodes(self) -> list:
        if self._nodes is None or self._nodes[0] != len(self.extra):
            self._nodes = (len(self.extra), [n for top in [self.node, *self.extra] for n in ast.walk(top)])
        return self._nodes[1]


def _ipython_call(node) -> tuple[str, list] | None:
    """``("run_line_magic", args)`` for ``get_ipython().run_line_magic(...)`` and the like."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call)
            and isinstance(node.func.value.func, ast.Name) and node.func.value.func.id == "get_ipython"):
        return node.func.attr, node.args
    return None


class _Analysis:
    def __init__(self, units: list[_Unit], exercises=()):
        self.units = units
        self.exercises = set(exercises)
        self.env: dict[str, set[str]] = {}
        self.star: set[str] = set()
        self.targets = _all_targets()
        self._by_last: dict[str, list[str]] = {}
        for t in self.targets:
            self._by_last.setdefault(_last(t), []).append(t)
        self._memo: dict[int, set[str]] | None = None
        self._evals: dict[str, list] = {}
        self._expand_code_strings()
        binders = [n for u in units for n in u.nodes() if isinstance(n, _BINDERS)]
        for _ in range(_MAX_PASSES):              # bindings to a fixed point (alias chains in any order)
            before = sum(len(v) for v in self.env.values()), len(self.env), len(self.star)
            for n in binders:
                self._bind(n)
            if (sum(len(v) for v in self.env.values()), len(self.env), len(self.star)) == before:
                break
        self._memo = {}                           # the table is final: expressions can be cached
        for u in units:
            self._scope(u)
            self._findings(u)

    # -- code hidden in constant strings: exec("..."), %time ..., %%capture -------------------------
    def _expand_code_strings(self):
        for u in self.units:
            todo, seen = [u.node], 0
            while todo and seen < 50:
                seen += 1
                for n in ast.walk(todo.pop()):
                    if not isinstance(n, ast.Call):
                        continue
                    found = []
                    called = n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", None)
                    if called in ("exec", "eval", "compile") and n.args:    # builtins.exec(...) too
                        src = n.args[0]
                        if _is_compile(src):
                            src = src.args[0]
                        text = _const_str(src)
                        if text is not None:
                            found = _parse_code(text, "eval" if called == "eval" else "exec")
                    ip = _ipython_call(n)
                    if ip:
                        kind, args = ip
                        name = _const_str(args[0]) if args else None
                        line = _const_str(args[1]) if len(args) > 1 else None
                        if kind == "run_line_magic" and name in _PY_LINE_MAGICS and line:
                            found = _parse_code(_const_str(args[1]))
                        elif kind == "run_cell_magic" and len(args) > 2 and _const_str(args[2]) is not None:
                            found = _parse_code(_const_str(args[2]))    # writefile bodies too: they are Python
                    u.extra += found
                    todo += found

    # -- what a name may hold ------------------------------------------------------------------------
    def _add(self, key: str, vals) -> None:
        have = self.env.setdefault(key, set())
        for v in vals:                     # bounded, so that `x = x.a; x = x.b` cannot grow without end
            if len(have) >= _MAX_VALUES:
                break
            if v.count(".") <= _MAX_DOTS:
                have.add(v)

    def _bind_target(self, target, value) -> None:
        vals = self.resolve(value) if value is not None else set()
        if isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) \
                    and not any(isinstance(e, ast.Starred) for e in target.elts + value.elts):
                for t, v in zip(target.elts, value.elts):
                    self._bind_target(t, v)
            else:
                for t in target.elts:
                    self._bind_vals(t, vals)
        else:
            self._bind_vals(target, vals)

    def _bind_vals(self, target, vals: set[str]) -> None:
        if isinstance(target, ast.Name):
            self._add(target.id, vals)
        elif isinstance(target, ast.Starred):
            self._bind_vals(target.value, vals)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._bind_vals(t, vals)
        elif isinstance(target, ast.Attribute):
            key = _dotted(target)
            if key:
                self._add(key, vals)
        elif isinstance(target, ast.Subscript):   # a container holds what is put in it
            root = _root_name(target)
            if root:
                self._add(root, vals)

    def _bind(self, n) -> None:
        if isinstance(n, ast.Import):
            for a in n.names:
                if a.asname:
                    self._add(a.asname, {a.name})
                else:
                    self._add(_root(a.name), {_root(a.name)})
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            for a in n.names:
                if a.name == "*":
                    self.star.add(n.module)
                else:
                    self._add(a.asname or a.name, {f"{n.module}.{a.name}"})
        elif isinstance(n, ast.Assign):
            for t in n.targets:
                self._bind_target(t, n.value)
        elif isinstance(n, (ast.AnnAssign, ast.AugAssign)) and n.value is not None:
            self._bind_target(n.target, n.value)
        elif isinstance(n, ast.NamedExpr):
            self._bind_target(n.target, n.value)
        elif isinstance(n, (ast.For, ast.AsyncFor, ast.comprehension)):
            self._bind_vals(n.target, self.resolve(n.iter))
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            for item in n.items:
                if item.optional_vars is not None:
                    self._bind_vals(item.optional_vars, self.resolve(item.context_expr))
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = n.args
            pos = a.posonlyargs + a.args
            for arg, default in zip(pos[len(pos) - len(a.defaults):], a.defaults):
                self._add(arg.arg, self.resolve(default))
            for arg, default in zip(a.kwonlyargs, a.kw_defaults):
                if default is not None:
                    self._add(arg.arg, self.resolve(default))
        elif isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Name) and f.id == "setattr" and len(n.args) >= 3:
                base, name = _dotted(n.args[0]), _const_str(n.args[1])
                if base and name:
                    self._add(f"{base}.{name}", self.resolve(n.args[2]))
            elif isinstance(f, ast.Attribute) and f.attr in _MUTATORS:
                root = _root_name(f.value)
                if root:
                    for arg in [*n.args, *(k.value for k in n.keywords)]:
                        self._add(root, self.resolve(arg))

    def resolve_name(self, name: str) -> set[str]:
        out = set(self.env.get(name, ()))
        out |= {f"{m}.{name}" for m in self.star}
        if hasattr(builtins, name):
            out.add(f"builtins.{name}")
        return out

    def resolve(self, node, depth: int = 0) -> set[str]:
        """The dotted names an expression may evaluate to (empty when unknown)."""
        if depth > 40 or node is None:
            return set()
        if self._memo is not None:
            key = id(node)
            if key not in self._memo:
                self._memo[key] = self._resolve(node, depth)
            return self._memo[key]
        return self._resolve(node, depth)

    def _resolve(self, node, depth: int) -> set[str]:
        r = lambda x: self.resolve(x, depth + 1)    # noqa: E731
        if isinstance(node, ast.Name):
            return self.resolve_name(node.id)
        if isinstance(node, ast.Attribute):
            out = set()
            for b in r(node.value):
                out.add(f"{b}.{node.attr}")
                if b == "__main__":
                    out |= self.resolve_name(node.attr)
            key = _dotted(node)
            if key and key in self.env:
                out |= self.env[key]
            return out
        if isinstance(node, ast.Subscript):
            base = r(node.value)
            key = _const_str(node.slice)
            if key is not None:
                out = set()
                for b in base:
                    if b == "sys.modules":
                        out.add(key)
                    elif b.endswith(".__dict__"):
                        out.add(f"{b[:-len('.__dict__')]}.{key}")
                    elif b in ("builtins.globals()", "builtins.locals()", "builtins.vars()"):
                        out |= self.resolve_name(key)
                if out:
                    return out
            return {b for b in base if not b.startswith("builtins.") and b != "sys.modules"}  # a container's elements
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(r(e) for e in node.elts)) if node.elts else set()
        if isinstance(node, ast.Dict):
            return set().union(*(r(v) for v in node.values)) if node.values else set()
        if isinstance(node, ast.IfExp):
            return r(node.body) | r(node.orelse)
        if isinstance(node, ast.BoolOp):
            return set().union(*(r(v) for v in node.values))
        if isinstance(node, (ast.NamedExpr, ast.Starred)):
            return r(node.value)
        if isinstance(node, ast.Call):
            return self._resolve_call(node, depth)
        return set()

    def _resolve_call(self, node: ast.Call, depth: int) -> set[str]:
        r = lambda x: self.resolve(x, depth + 1)    # noqa: E731
        fn = r(node.func)
        args = node.args
        out: set[str] = set()
        first = _const_str(args[0]) if args else None
        if fn & {"importlib.import_module", "importlib.__import__", "builtins.__import__"} and first:
            package = _const_str(args[1]) if len(args) > 1 else None
            if first.startswith(".") and package:     # import_module(".core", "trl")
                first = package + first
            out |= {first, _root(first)}
        if "builtins.eval" in fn and first is not None:    # eval("ppo_trainer"): what the expression is
            for tree in self._eval_tree(first):
                out |= r(tree.body)
        if "pkgutil.resolve_name" in fn and first:
            out.add(first.replace(":", "."))
        if fn & {"builtins.getattr", "inspect.getattr_static", "builtins.object.__getattribute__",
                 "builtins.type.__getattribute__"} and len(args) >= 2 and _const_str(args[1]):
            out |= {f"{b}.{_const_str(args[1])}" for b in r(args[0])}
        if isinstance(node.func, ast.Attribute) and node.func.attr == "__getattribute__" and len(args) == 1 and first:
            out |= {f"{b}.{first}" for b in r(node.func.value)}
        if "builtins.vars" in fn:
            out |= {f"{b}.__dict__" for b in r(args[0])} if args else {"builtins.vars()"}
        if fn & {"builtins.globals", "builtins.locals"}:
            out.add("builtins.globals()")
        if fn & {"builtins.type", "copy.copy", "copy.deepcopy", "functools.partial", "importlib.reload"} and args:
            out |= r(args[0])
        if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and first:
            for b in r(node.func.value):
                if b == "sys.modules":
                    out.add(first)
                elif b.endswith(".__dict__"):
                    out.add(f"{b[:-len('.__dict__')]}.{first}")
                elif b in ("builtins.globals()", "builtins.vars()"):
                    out |= self.resolve_name(first)
        for f in fn:
            for factory, made in _TRAINER_FACTORIES.items():
                if f == factory or (_root(f) == _root(factory) and _last(f) == _last(factory)):
                    out.add(made)
            if _last(f)[:1].isupper() and not f.startswith("builtins."):
                out.add(f)                          # an instance of a class: its attributes are the class's
        return out

    def _eval_tree(self, text: str) -> list:
        """The parsed expression of ``eval("...")``, kept (the resolution cache is keyed by node identity)."""
        if text not in self._evals:
            try:
                self._evals[text] = [ast.parse(text, mode="eval")]
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                self._evals[text] = []
        return self._evals[text]

    # -- scopes: which global names a statement binds and uses ---------------------------------------
    def _scope(self, u: _Unit) -> None:
        tops = [u.node, *u.extra]
        for top in tops:
            try:
                src = ast.unparse(top)
                table = symtable.symtable(src, "<cell>", "exec")
            except (SyntaxError, ValueError, RecursionError, MemoryError, TypeError):
                u.uses |= {n.id for n in ast.walk(top) if isinstance(n, ast.Name)}
                u.binds |= {n.id for n in ast.walk(top) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                continue
            stack = [table]
            while stack:
                t = stack.pop()
                module = t.get_type() == "module"
                for s in t.get_symbols():
                    if module or s.is_global():
                        if s.is_referenced():
                            u.uses.add(s.get_name())
                        if s.is_assigned() or s.is_imported() or (module and s.is_declared_global()):
                            u.binds.add(s.get_name())
                stack += t.get_children()
        for n in u.nodes():                          # mutations: X.a = ..., X[k] = ..., X.append(...), setattr(X, ...)
            if isinstance(n, (ast.Attribute, ast.Subscript)) and isinstance(n.ctx, (ast.Store, ast.Del)):
                root = _root_name(n)
                if root:
                    u.binds.add(root)
            elif isinstance(n, ast.Call):
                if isinstance(n.func, ast.Attribute) and n.func.attr in _MUTATORS:
                    root = _root_name(n.func.value)
                    if root:
                        u.binds.add(root)
                elif isinstance(n.func, ast.Name) and n.func.id in ("setattr", "delattr") and n.args:
                    root = _root_name(n.args[0])
                    if root:
                        u.binds.add(root)
            # names reached through the namespace: globals()["x"], __main__.x
            if isinstance(n, ast.Subscript) and _const_str(n.slice) is not None:
                if self.resolve(n.value) & {"builtins.globals()", "builtins.locals()", "builtins.vars()"}:
                    u.uses.add(_const_str(n.slice))
            elif isinstance(n, ast.Attribute) and "__main__" in self.resolve(n.value):
                u.uses.add(n.attr)

    # -- what a statement references -----------------------------------------------------------------
    def _match(self, value: str) -> set[str]:
        """The targets ``value`` names: the same last part, and the same package or owner (a common name: owner).

        ``trl.trainer.ppo_trainer.masked_whiten`` is ``trl.core.masked_whiten`` (re-exported);
        ``course_lib.train.PPOTrainer.loss`` is ``trl.PPOTrainer.loss`` (the class reached through a module
        that imported it); ``model.train`` is not ``course_lib.train.train``.
        """
        parent = value.split(".")[-2:-1]
        return {t for t in self._by_last.get(_last(value), ())
                if (parent == t.split(".")[-2:-1] or (_root(value) == _root(t) and _last(t) not in GENERIC))}

    def _findings(self, u: _Unit) -> None:
        targets = self.targets
        methods = {_last(t): t for t in targets if _is_method(t)}
        distinctive = {_last(t): t for t in targets if _last(t) not in GENERIC}
        parents = {}
        for n in u.nodes():
            for c in ast.iter_child_nodes(n):
                parents[c] = n
        for n in u.nodes():
            vals: set[str] = set()
            stored = isinstance(getattr(n, "ctx", None), (ast.Store, ast.Del))   # a patch, not a use
            if isinstance(n, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)) and not stored:
                vals = self.resolve(n)
                for v in vals:
                    u.targets |= self._match(v)
                    if _last(v) in self.exercises and _root(v) in _LIBRARIES:
                        u.targets.add(v)          # a library function named like the exercise
                if u.editable and any(_root(v) == INSTRUCTOR for v in vals):
                    u.instructor = True
            if isinstance(n, ast.ImportFrom) and n.module and not n.level:
                for alias in n.names:
                    u.targets |= self._match(f"{n.module}.{alias.name}")
                    if alias.name in self.exercises and _root(n.module) in _LIBRARIES:
                        u.targets.add(f"{n.module}.{alias.name}")
            if isinstance(n, ast.Attribute) and not stored:
                called = isinstance(parents.get(n), ast.Call) and parents[n].func is n
                if n.attr in distinctive:
                    u.targets.add(distinctive[n.attr])
                elif n.attr == "loss" and called and "loss" in methods:
                    u.targets.add(methods["loss"])
                elif n.attr == "generate" and called and "generate" in methods and \
                        {k.arg for k in parents[n].keywords} & _PPO_GENERATE_KW:
                    u.targets.add(methods["generate"])
            s = _const_str(n)
            if s is not None and len(s) < 1000:
                last = re.split(r"[.:]", s)[-1]
                if last in distinctive:              # "compute_advantages", "core.masked_whiten" (attrgetter)
                    u.targets.add(distinctive[last])
                if "." in s or ":" in s:
                    u.targets |= self._match(s.replace(":", "."))
                if u.editable and _root(s.replace(":", ".")) == INSTRUCTOR:
                    u.instructor = True
            if u.editable:
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
                    if any(_root(m) == INSTRUCTOR for m in mods):
                        u.instructor = True
                if self._dynamic(n, parents):
                    u.dynamic = True

    def _dynamic(self, n, parents) -> bool:
        if isinstance(n, ast.Call):
            fn = self.resolve(n.func)
            args = n.args
            name_arg = args[1] if len(args) > 1 else None
            if fn & {"builtins.getattr", "inspect.getattr_static", "builtins.object.__getattribute__",
                     "builtins.type.__getattribute__"} and (name_arg is None or _const_str(name_arg) is None):
                return True
            if isinstance(n.func, ast.Attribute) and n.func.attr == "__getattribute__" and \
                    (not args or _const_str(args[-1]) is None):
                return True
            if fn & {"operator.attrgetter", "operator.methodcaller"} and (not args or _const_str(args[0]) is None):
                return True
            if fn & {"builtins.getattr", "builtins.eval", "builtins.exec"} and any(
                    isinstance(a, ast.Starred) for a in args):
                return True
            if fn & {"builtins.eval", "builtins.exec", "builtins.compile"}:
                src = args[0] if args else None
                if _is_compile(src):
                    src = src.args[0]
                if _const_str(src) is None:
                    return True
            if fn & _IMPORTERS and (not args or _const_str(args[0]) is None):
                return True
            ip = _ipython_call(n)
            if ip:
                kind, ipargs = ip
                name = _const_str(ipargs[0]) if ipargs else None
                if kind in ("system", "getoutput"):
                    return True
                if kind == "run_line_magic" and name not in _PY_LINE_MAGICS | _QUIET_MAGICS:
                    return True
                if kind == "run_cell_magic" and name not in _PY_CELL_MAGICS:
                    return True
        if isinstance(n, (ast.Name, ast.Attribute)):
            vals = self.resolve(n)
            if any(v.startswith(p) for v in vals for p in _DYNAMIC_PREFIXES):
                return True
            parent = parents.get(n)
            if vals & _REFLECTIVE and not (isinstance(parent, ast.Call) and parent.func is n):
                return True                          # map(getattr, ...), reduce(getattr, path, trl): not followed
            # sys.modules, globals() & co, __dict__: only a constant key can be followed
            if "sys.modules" in vals and not self._const_use(n, parents):
                return True
            if isinstance(n, ast.Attribute) and n.attr == "__dict__" and not self._const_use(n, parents):
                return True
            if vals & _NAMESPACES and isinstance(parent, ast.Call) and parent.func is n:
                return not self._const_use(parent, parents)
        return False

    @staticmethod
    def _const_use(n, parents) -> bool:
        """``n["name"]`` or ``n.get("name")``."""
        p = parents.get(n)
        if isinstance(p, ast.Subscript) and p.value is n:
            return _const_str(p.slice) is not None
        if isinstance(p, ast.Attribute) and p.value is n and p.attr == "get":
            call = parents.get(p)
            return isinstance(call, ast.Call) and bool(call.args) and _const_str(call.args[0]) is not None
        return False


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    try:
        return "".join(src) if isinstance(src, list) else str(src)
    except TypeError:
        return ""


def _meta(cell: dict) -> dict:
    m = cell.get("metadata", {})
    m = m.get("nbgrader", {}) if isinstance(m, dict) else {}
    return m if isinstance(m, dict) else {}


def exercise_names(source: str) -> list[str]:
    """The functions a released solution cell asks for (its top-level ``def``)."""
    tree = parse_cell(source)
    if tree is None:
        return re.findall(r"^def\s+(\w+)", source, re.M)
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _answers(exercise: str, target: str) -> bool:
    """Whether ``target`` (a canonical twin, or a library name found in the code) answers ``exercise``."""
    return target in EXERCISE_TWINS.get(exercise, ()) or (_last(target) == exercise and _root(target) in _LIBRARIES)


def twin_flags(nb: dict, released: dict) -> list[str]:
    """``twin:<exercise>:<target>``, ``dynamic-access`` and ``instructor-package`` for a submitted notebook."""
    rel_cells = [c for c in released.get("cells", []) if isinstance(c, dict)]
    rel_by_id = {_meta(c).get("grade_id"): c for c in rel_cells if _meta(c).get("grade_id")}
    exercises_of: dict[str, list[str]] = {}
    for gid, c in rel_by_id.items():
        if _meta(c).get("solution") and c.get("cell_type") == "code":
            exercises_of[gid] = exercise_names(_source(c))
    notebook_exercises = sorted({e for names in exercises_of.values() for e in names})

    units: list[_Unit] = []
    cells_of_exercise: dict[str, list[int]] = {}
    added: set[int] = set()
    k = 0

    budget = [_MAX_SOURCE]
    skipped: set[str] = set()

    def add_cell(source: str, editable: bool) -> int:
        nonlocal k
        k += 1
        if editable:
            budget[0] -= len(source)
            if budget[0] < 0:                        # the scan's time grows with the code: a bound
                skipped.add("too-large-to-scan")
                return k
        tree = parse_cell(source)
        for stmt in tree.body if tree is not None else ():
            units.append(_Unit(stmt, k, editable))
        return k

    for c in rel_cells:                              # the code the student cannot change
        if c.get("cell_type") == "code" and not _meta(c).get("solution"):
            add_cell(_source(c), False)
    for c in nb.get("cells", []):
        if not isinstance(c, dict) or c.get("cell_type") != "code":
            continue
        gid = _meta(c).get("grade_id")
        ref = rel_by_id.get(gid) if isinstance(gid, str) and gid else None   # student metadata may be anything
        if ref is None:
            added.add(add_cell(_source(c), True))
        elif _meta(ref).get("solution") and ref.get("cell_type") == "code":
            i = add_cell(_source(c), True)
            for e in exercises_of.get(gid, ()):
                cells_of_exercise.setdefault(e, []).append(i)

    _Analysis(units, notebook_exercises)
    flags: set[str] = set(skipped)
    if any(u.dynamic for u in units):
        flags.add("dynamic-access")
    if any(u.instructor for u in units):
        flags.add("instructor-package")

    contributors: dict[str, list[_Unit]] = {}
    for u in units:
        for name in u.binds:
            contributors.setdefault(name, []).append(u)
    for ex in notebook_exercises:
        todo = [u for u in units if u.cell in cells_of_exercise.get(ex, ())]
        todo += [u for u in contributors.get(ex, ()) if u.editable]
        seen: set[int] = set()
        while todo:
            u = todo.pop()
            if id(u) in seen:
                continue
            seen.add(id(u))
            flags |= {f"twin:{ex}:{t}" for t in u.targets if _answers(ex, t)}
            for name in u.uses:
                todo += contributors.get(name, ())
    # what the released notebook's own code references, judged without the student's bindings
    # (a student's `x = trl.core.masked_mean` must not make the locked cells' `x` look like a use of it)
    locked = [_Unit(stmt, 0, False) for c in rel_cells if c.get("cell_type") == "code" and not _meta(c).get("solution")
              for stmt in getattr(parse_cell(_source(c)), "body", ())]
    locked_refs = set().union(*(u.targets for u in _Analysis(locked, notebook_exercises).units)) if locked else set()
    for u in units:
        if u.cell in added:
            for ex in notebook_exercises:
                flags |= {f"twin:{ex}:{t}" for t in u.targets - locked_refs if _answers(ex, t)}
    return sorted(flags)

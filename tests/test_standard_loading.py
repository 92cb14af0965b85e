"""The bundled adapters load with the standard calls, from any working directory, offline.

peft's ``AutoPeftModelForCausalLM.from_pretrained(folder)`` and trl 0.11's
``AutoModelForCausalLMWithValueHead.from_pretrained(folder)`` read the base's
name from ``adapter_config.json`` (``gpt2-imdb-mini``) and, offline, look it
up in the Hugging Face cache, where ``course_lib.assets.register_in_hf_cache``
(called by the cpu profile's ``make_config``) has registered the bundled base.
Each call runs in a fresh process, in an empty temporary working directory,
with a fresh cache, as a student's notebook would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from course_lib.assets import ASSETS_DIR

ADAPTERS = [p.name for p in sorted(ASSETS_DIR.iterdir()) if (p / "adapter_config.json").is_file()]

SCRIPT = r"""
import json, sys
import torch
from course_lib.config import make_config
make_config("cpu")  # offline, and the bundled base registered in the (fresh) cache
folder = sys.argv[1]
from peft import AutoPeftModelForCausalLM
from trl import AutoModelForCausalLMWithValueHead
from course_lib.models import load_policy
peft_model = AutoPeftModelForCausalLM.from_pretrained(folder).eval()
trl_model = AutoModelForCausalLMWithValueHead.from_pretrained(folder).eval()
course = load_policy(folder, value_head=False).eval()
ids = torch.tensor([[40, 1842, 428, 3807, 13, 632]])
with torch.no_grad():
    a = peft_model(input_ids=ids).logits
    b = trl_model(input_ids=ids)[0]
    c = course(input_ids=ids).logits
out = {"peft_vs_course": float((a - c).abs().max()), "trl_vs_course": float((b - c).abs().max()),
       "base": peft_model.peft_config["default"].base_model_name_or_path}
try:
    from safetensors.torch import load_file
    head = load_file(folder + "/model.safetensors")
    out["v_head_diff"] = float((trl_model.v_head.summary.weight - head["v_head.summary.weight"].float()).abs().max())
except FileNotFoundError:
    out["v_head_diff"] = None
print("RESULT", json.dumps(out))
"""


@pytest.mark.parametrize("name", ADAPTERS)
def test_standard_loaders_from_an_empty_working_directory(name, tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_CACHE", None)
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ASSETS_DIR / name)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["base"] == "gpt2-imdb-mini"
    # float16 adapter weights merged (course) or not (peft): the same model up to rounding
    assert out["peft_vs_course"] < 1e-3 and out["trl_vs_course"] < 1e-3
    if (ASSETS_DIR / name / "model.safetensors").is_file():
        assert out["v_head_diff"] < 1e-3  # trl found the trained value head
    assert not list(work.iterdir())  # nothing written to the working directory


def test_registration_is_idempotent_and_links_the_verified_files(tmp_path):
    from course_lib.assets import register_in_hf_cache

    first = register_in_hf_cache(cache_dir=tmp_path)
    again = register_in_hf_cache(cache_dir=tmp_path)
    assert first == again and len(first) == 2
    snap = first[0]
    assert (snap / "config.json").resolve() == (ASSETS_DIR / "gpt2-imdb-mini" / "config.json").resolve()
    assert (tmp_path / "models--gpt2-imdb-mini" / "refs" / "main").read_text() == snap.name


def test_an_unwritable_cache_is_skipped_quietly(tmp_path):
    from course_lib.assets import register_in_hf_cache

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert register_in_hf_cache(cache_dir=blocked, quiet=True) == []
    with pytest.warns(UserWarning, match="could not register"):
        register_in_hf_cache(cache_dir=blocked)

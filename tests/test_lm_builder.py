"""The LM builder's reduced-vocabulary trick is exact, and its warm start inverts the export.

A tiny random model stands in for ``gpt2-imdb-mini``: what is checked is the
arithmetic of ``course_instructor.builders.lm`` (rare-token bucket, pinned dimension,
export to the full vocabulary and back), not the trained weights.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_instructor.builders import lm

VOCAB, KEEP, EOS = 64, 16, 63


@pytest.fixture()
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, VOCAB)
    counts[:KEEP] += 1000  # the first tokens are the frequent ones
    counts[EOS] = 500
    rv = lm.ReducedVocab(counts, KEEP, EOS)
    torch.manual_seed(0)
    model = lm.build_model(KEEP, layers=1, dim=8, heads=2, ctx=12)
    with torch.no_grad():  # make the pinned dimension matter: spread its embedding entries
        model.transformer.wte.weight[:, -1].normal_(0, 0.5)
    tok = type("Tok", (), {"eos_token_id": EOS, "__len__": lambda self: VOCAB})()
    out = tmp_path / "full"
    out.mkdir()
    lm.export_full(model, rv, out, tok)
    return rv, model, out


def test_exported_full_model_computes_the_trained_loss(tiny):
    from transformers import GPT2LMHeadModel

    rv, model, out = tiny
    model.eval()
    full = GPT2LMHeadModel.from_pretrained(out, torch_dtype=torch.float32).eval()
    kept = [int(t) for t in rv.kept[:6]]
    rare = [t for t in range(VOCAB) if rv.to_small[t] == rv.bucket][:5]
    ids = torch.tensor([[kept[0], rare[0], kept[1], EOS, rare[1], kept[2], rare[2], kept[3], rare[3],
                         kept[4], rare[4], EOS]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        trained, n = lm.forward_loss(model, ids, mask, torch.as_tensor(rv.to_small), rv.input_shift(),
                                     torch.tensor(rv.log_q, dtype=torch.float32))
        logits = full(input_ids=ids).logits[:, :-1]
        exported = F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    assert int(n) == ids.shape[1] - 1
    assert len(rare) == 5 and EOS in rv.kept
    assert float(exported) == pytest.approx(float(trained), abs=2e-3)  # float16 storage


def test_warm_start_loads_the_export_back(tiny):
    rv, model, out = tiny
    again = lm.build_model(KEEP, layers=1, dim=8, heads=2, ctx=12)
    lm.load_full_into_small(again, rv, out)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.allclose(a, b.float(), atol=2e-3), name
    assert again.transformer.ln_f.bias[-1] == lm.PIN_VALUE and again.transformer.ln_f.weight[-1] == 0


def test_warm_start_refuses_a_different_shape(tiny):
    rv, _, out = tiny
    other = lm.build_model(KEEP, layers=2, dim=8, heads=2, ctx=12)
    with pytest.raises(ValueError, match="n_layer=1 but the run asks for 2"):
        lm.load_full_into_small(other, rv, out)


@pytest.mark.parametrize("extra, message", [
    (["--order-seed", "7"], "--order-seed only applies with --init-from"),
    (["--init-from", "x", "--resume"], "--init-from and --resume exclude each other"),
])
def test_command_line_rejects_options_that_do_not_combine(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        lm.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "out")] + extra)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

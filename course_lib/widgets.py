""""Try the models yourself": a prompt box that shows every model's continuation and score."""
from __future__ import annotations

import html
from typing import Mapping


def continuations(models: Mapping, tokenizer, sentiment_pipe, prompt: str, gen_kwargs: dict, sent_kwargs: dict,
                  max_new_tokens: int = 24, seed: int | None = None) -> list[dict]:
    """For each model: the sampled continuation of ``prompt`` and its POSITIVE and NEGATIVE logits."""
    import torch

    from course_lib.reward import label_logits
    from course_lib.rollout import generate_some_text

    rows = []
    for name, model in models.items():
        if seed is not None:
            torch.manual_seed(seed)
        text = generate_some_text(model, tokenizer, prompt, gen_kwargs, max_new_tokens=max_new_tokens)
        logits = label_logits(sentiment_pipe, [text], ["POSITIVE", "NEGATIVE"])
        rows.append({"model": name, "text": text, "POSITIVE": logits["POSITIVE"][0],
                     "NEGATIVE": logits["NEGATIVE"][0]})
    return rows


def rows_to_html(rows: list[dict]) -> str:
    cells = "".join(
        f'<div class="try-card" data-model="{html.escape(r["model"])}" style="flex:1;min-width:14em;'
        f'border:1px solid #ccc;border-radius:6px;padding:0.6em;margin:0.3em">'
        f'<b>{html.escape(r["model"])}</b><br><span class="try-text">{html.escape(r["text"])}</span><br>'
        f'<span class="try-score">POSITIVE {r["POSITIVE"]:+.2f} · NEGATIVE {r["NEGATIVE"]:+.2f}</span></div>'
        for r in rows)
    return f'<div class="try-results" style="display:flex;flex-wrap:wrap">{cells}</div>'


def try_models(models: Mapping, tokenizer, sentiment_pipe, cfg, prompt: str = "This movie"):
    """An ipywidgets box: type a prompt, press Generate, see each model's continuation side by side."""
    import ipywidgets as w

    box = w.Text(value=prompt, description="Prompt:", placeholder="Type the start of a review",
                 layout=w.Layout(width="60%"))
    button = w.Button(description="Generate", button_style="primary")
    out = w.HTML(value="")
    gen_kwargs = cfg.generation_kwargs(tokenizer)

    def run(_=None):
        if not box.value.strip():
            out.value = "<i>Type a prompt first.</i>"
            return
        button.disabled = True
        out.value = "<i>generating...</i>"
        try:
            rows = continuations(models, tokenizer, sentiment_pipe, box.value, gen_kwargs, cfg.sent_kwargs)
            out.value = rows_to_html(rows)
        finally:
            button.disabled = False

    button.on_click(run)
    return w.VBox([w.HBox([box, button]), out])

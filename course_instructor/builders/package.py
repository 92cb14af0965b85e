"""Turn a trained model folder into a bundled asset: minimal files, model card, manifest.

The new folder is assembled next to the old one and swapped in with renames,
so an interrupted build never leaves a half-written asset behind.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from course_lib.assets import staging_folder, swap_in_folder, write_manifest

# tokenizer.json duplicates vocab.json + merges.txt / vocab.txt (and is larger);
# transformers rebuilds the fast tokenizer from those in ~0.1 s.
DROP = {"tokenizer.json", "training_args.bin"}


def assemble(src: Path, dest: Path, card: str, model_max_length: int | None = None,
             extra_files: dict[str, str] | None = None) -> Path:
    """Copy ``src`` to ``dest`` without the files in DROP, add README.md and SHA256SUMS."""
    src, dest = Path(src), Path(dest)
    tmp = staging_folder(dest)
    tmp.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in DROP and f.name != "README.md":
            shutil.copy2(f, tmp / f.name)
    model_cfg = tmp / "config.json"
    if model_cfg.exists():  # transformers records the folder it loaded from: a path of the build machine
        data = json.loads(model_cfg.read_text())
        if data.pop("_name_or_path", None) is not None:
            model_cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    cfg = tmp / "tokenizer_config.json"
    if model_max_length and cfg.exists():
        data = json.loads(cfg.read_text())
        data["model_max_length"] = model_max_length
        cfg.write_text(json.dumps(data, indent=2) + "\n")
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text, encoding="utf-8")
    (tmp / "README.md").write_text(card, encoding="utf-8")
    write_manifest(tmp)
    for f in tmp.iterdir():  # readable by everyone: the grading sandbox runs as another user
        f.chmod(0o644)
    tmp.chmod(0o755)
    return swap_in_folder(tmp, dest)


def folder_size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file()) / 1e6

"""PPO training of the Happy and the Pessimistic LLM with trl 0.11's ``PPOTrainer``.

Every trl-specific call of the course lives here (and in ``config.ppo_config``),
so a migration to another trl touches one place.

One PPO step, as the notebooks show it:

1. **rollout**   sample a response of 4-16 tokens for every query of the batch
                 (one batched ``generate`` call, see ``rollout.generate_responses``);
2. **reward**    score ``query + response`` with the sentiment pipeline and read
                 the logit of the wanted label by name (``reward.sentiment_rewards``);
3. **optimise**  ``ppo_trainer.step(queries, responses, rewards)``: trl adds the
                 KL penalty to the reference model, computes advantages and runs
                 ``ppo_epochs`` passes of clipped policy and value updates.

Command line::

    python -m course_lib.train --sentiment POSITIVE --profile cpu --steps 40 --output build/happy

Several processes (data parallel: each process takes its own ``batch_size``
prompts per step, trl averages the gradients, so a step covers
``batch_size x processes`` prompts)::

    accelerate launch --multi_gpu --num_processes 4 -m course_lib.train --sentiment POSITIVE --profile gpu ...
    torchrun --standalone --nproc_per_node 2 -m course_lib.train ...      # also on a CPU (gloo)

After every step the processes compare fingerprints of their policy
parameters (:func:`check_params_in_sync`); the statistics and the mean reward
cover the prompts of all processes; process 0 alone writes the checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import os
import random
import sys
import time
from pathlib import Path

from course_lib.config import PROFILES, SENTIMENTS, LabConfig, make_config
from course_lib.jsonio import load_json, save_json

STATS_FILE = "training_stats.json"


def set_seed(seed: int) -> None:
    """One seed for Python, NumPy and torch (CPU runs then repeat exactly)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_sentiment(label: str) -> str:
    if label not in SENTIMENTS:
        raise ValueError(f"unknown sentiment {label!r}; valid: {', '.join(SENTIMENTS)}")
    return label


def make_trainer(cfg: LabConfig, model, ref_model, tokenizer, dataset):
    """A ``PPOTrainer`` over ``dataset`` whose batches are columns taken from ``datasets`` itself.

    (Strictly a subclass that fixes trl's averaging of the statistics over
    several processes, see :func:`_trainer_class`; identical in one process.)

    Raises ``ValueError`` if the dataset holds fewer prompts than one batch
    (trl drops incomplete batches: the lab's padding with fake samples is not
    needed and would bias the statistics).
    """
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"the dataset has {len(dataset)} prompts, fewer than one batch of {cfg.batch_size}")
    trainer = _trainer_class()(cfg.ppo_config(), model, ref_model, tokenizer, dataset=dataset)
    check_process_group(trainer.accelerator)
    return trainer


_TRAINER_CLASS = None


class _Columns:
    """A ``datasets.Dataset`` seen by torch's ``DataLoader``: a batch of indices is fetched as columns.

    torch's loader asks ``__getitems__`` for a whole batch when a dataset has it.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def __getitems__(self, indices) -> dict:
        return self.dataset[list(indices)]


def _column_lists(columns: dict) -> dict:
    """A batch fetched as columns, each a list: ``datasets`` stacks a column whose rows have one shape.

    trl's ``step`` wants a *list* of query tensors, so a stacked column is cut
    back into its rows.
    """
    import torch

    return {k: list(v) if isinstance(v, torch.Tensor) else v for k, v in columns.items()}


def _trainer_class():
    """trl's ``PPOTrainer`` with its statistics averaged correctly over several processes.

    trl 0.11's ``gather_stats`` all-reduces ``v.to(accelerator.device)`` and
    then divides ``v``: when a statistic is not already on that device the
    sum goes into a copy, and each process reports its *own* value divided by
    the number of processes.  On a CPU that is every statistic (the tensors
    live on ``cpu``, accelerate's device is ``cpu:0``, and ``.to`` copies).
    Measured with 2 processes: ``ppo/mean_scores`` was half of process 0's
    mean score.  This subclass reduces the moved tensor and keeps the result.
    """
    global _TRAINER_CLASS
    if _TRAINER_CLASS is None:
        import torch
        from trl import PPOTrainer

        class CoursePPOTrainer(PPOTrainer):
            def prepare_dataloader(self, dataset, data_collator=None):
                """trl's loader (shuffled, whole batches only), fetching each batch as columns.

                ``dataset[[i, j, ...]]`` of a ``datasets.Dataset`` is already a dict of
                lists (one per column), which is what the training loop reads
                (``batch["input_ids"]``, ``batch["query"]``): no collator is needed.  The
                shuffle draws from torch's generator exactly as trl's own loader does.
                """
                from torch.utils.data import DataLoader

                if hasattr(dataset, "column_names"):
                    dataset = self._remove_unused_columns(dataset)
                return DataLoader(_Columns(dataset), batch_size=self.config.batch_size, shuffle=True,
                                  drop_last=True, collate_fn=_column_lists)

            def gather_stats(self, stats):
                import torch.distributed as dist

                dist.barrier()
                n = self.accelerator.num_processes
                for key, value in stats.items():
                    if isinstance(value, torch.Tensor):
                        total = value.to(self.accelerator.device)
                        if total is value:
                            total = value.clone()
                        dist.all_reduce(total, dist.ReduceOp.SUM)
                        stats[key] = (total / n).to(value.device)
                return stats

        _TRAINER_CLASS = CoursePPOTrainer
    return _TRAINER_CLASS


def join_processes():
    """Create accelerate's process state, before anything else does; returns it.

    trl's model wrapper creates it on loading (``PartialState()``, to pick a
    device), and the first creation decides for the whole process.  Without a
    GPU it must be created with ``cpu=True``: only then does accelerate join the
    processes that ``torchrun`` or ``accelerate launch`` started into one gloo
    group (``MULTI_CPU``) instead of treating each as a separate run.  With a
    GPU, accelerate's defaults apply (nccl).
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE`` of torchrun / accelerate launch; 1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_process_group(accelerator) -> None:
    """Raise ``RuntimeError`` unless accelerate joined every launched process into one group.

    A launcher that started N processes which accelerate then treats as N
    separate single-process runs (``DistributedType.NO``) would train N
    copies on the same data, each writing the checkpoint.
    """
    launched = launched_processes()
    if accelerator.num_processes != launched:
        raise RuntimeError(
            f"the launcher started {launched} processes (WORLD_SIZE), but accelerate runs "
            f"{accelerator.num_processes} ({accelerator.distributed_type}): the processes would each train "
            "alone. Call course_lib.train.join_processes() before loading any model (run() does), so that "
            "accelerate's process state is created with cpu=True when there is no GPU.")


def param_fingerprint(model):
    """A float64 vector summarising the parameters: per parameter (sorted by name), its sum and sum of squares.

    Processes whose parameters are bit-identical get bit-identical
    fingerprints; any difference in any parameter changes it (almost surely).
    Cheap: two reductions per tensor, no copy to the host.
    """
    import torch

    parts = []
    for _, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        t = p.detach()
        parts += [t.sum(dtype=torch.float64), t.square().sum(dtype=torch.float64)]
    return torch.stack(parts)


def fingerprint_digest(fingerprint) -> str:
    """A short hex digest of a fingerprint's exact bytes (16 hex digits)."""
    return hashlib.sha256(fingerprint.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def check_params_in_sync(ppo_trainer, step: int | None = None) -> list[str]:
    """Digests of the policy's parameters on every process (process order); ``RuntimeError`` if they differ.

    Data-parallel PPO keeps one policy: every process applies the same
    averaged gradients, so the parameters must stay bit-identical.  A
    collective call: every process must make it.
    """
    accelerator = ppo_trainer.accelerator
    model = accelerator.unwrap_model(ppo_trainer.model)
    fp = param_fingerprint(model).to(accelerator.device)
    gathered = accelerator.gather(fp.unsqueeze(0)).reshape(accelerator.num_processes, -1)
    digests = [fingerprint_digest(row) for row in gathered]
    if len(set(digests)) > 1:
        when = f"after PPO step {step}" if step is not None else "now"
        raise RuntimeError(f"the policy parameters differ between processes {when} "
                           f"(fingerprint digests by process: {', '.join(digests)})")
    return digests


def response_length_sampler(cfg: LabConfig):
    """trl's ``LengthSampler`` over ``response_min_tokens``..``response_max_tokens`` (inclusive)."""
    from trl.core import LengthSampler

    return LengthSampler(cfg.response_min_tokens, cfg.response_max_tokens + 1)


def ppo_step(ppo_trainer, tokenizer, sentiment_pipe, batch: dict, cfg: LabConfig, length_sampler) -> dict:
    """Rollout, reward and optimisation for one batch; returns the step's record.

    The record is JSON-serialisable: trl's scalar statistics under their own
    names (``ppo/loss/total``, ``objective/kl``, ...; under several processes
    trl averages its tensor statistics over them, while ``tokens/*`` stay
    process 0's); ``env/reward_mean`` and ``env/reward_std`` (the classifier's
    logit for ``cfg.target_label``, before ``reward_scale``) over the prompts
    of all processes, ``env/reward_n`` prompts, and
    ``env/reward_mean_by_process``; ``dist/processes`` and
    ``dist/param_digests`` (the policy's fingerprint on each process after the
    step, checked equal by :func:`check_params_in_sync`); and the time of
    each part in seconds (process 0's).
    """
    import numpy as np
    import torch

    from course_lib.reward import sentiment_scores
    from course_lib.rollout import generate_responses

    t0 = time.perf_counter()
    query_tensors = batch["input_ids"]
    lengths = [length_sampler() for _ in query_tensors]
    model = ppo_trainer.accelerator.unwrap_model(ppo_trainer.model)
    response_tensors = generate_responses(model, tokenizer, query_tensors, lengths, cfg.generation_kwargs(tokenizer))
    batch["response"] = tokenizer.batch_decode(response_tensors, skip_special_tokens=True)
    t1 = time.perf_counter()

    texts = [q + r for q, r in zip(batch["query"], batch["response"])]
    scores = sentiment_scores(sentiment_pipe, texts, cfg.target_label, cfg.sent_kwargs)
    rewards = [torch.tensor(cfg.reward_scale * s) for s in scores]
    t2 = time.perf_counter()

    stats = ppo_trainer.step(query_tensors, response_tensors, rewards)
    ppo_trainer.log_stats(stats, batch, rewards)
    t3 = time.perf_counter()

    accelerator = ppo_trainer.accelerator
    scores_t = torch.tensor(scores, device=accelerator.device)
    # every process scored batch_size texts; gather puts them in process order
    all_scores = accelerator.gather(scores_t).float().cpu()
    digests = check_params_in_sync(ppo_trainer)
    record = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in stats.items() if np.asarray(v).size == 1}
    record.update({
        "env/reward_mean": float(all_scores.mean()),
        "env/reward_std": float(all_scores.std()) if len(all_scores) > 1 else 0.0,
        "env/reward_n": len(all_scores),
        "env/reward_mean_by_process": [float(m) for m in all_scores.reshape(accelerator.num_processes, -1).mean(1)],
        "dist/processes": accelerator.num_processes,
        "dist/param_digests": digests,
        "time/rollout/generate": t1 - t0,
        "time/rollout/score": t2 - t1,
        "time/ppo/optimise": t3 - t2,
        "time/step": t3 - t0,
    })
    return record


def train(ppo_trainer, tokenizer, sentiment_pipe, cfg: LabConfig, steps: int | None = None,
          progress: bool = True, on_step=None) -> list[dict]:
    """Run ``steps`` PPO steps (default ``cfg.steps``; ``None`` = one epoch). Returns the records.

    The progress bar (tqdm.auto: a widget in JupyterLab, plain lines in logs)
    shows the running mean reward.  ``on_step(step, record, batch)`` is called
    after each step.
    """
    from tqdm.auto import tqdm

    check_sentiment(cfg.target_label)
    steps = cfg.steps if steps is None else steps
    n_batches = len(ppo_trainer.dataloader)
    if n_batches == 0:
        raise ValueError("the PPO dataloader yields no batch: the dataset is smaller than one batch")
    total = n_batches if steps is None else steps
    length_sampler = response_length_sampler(cfg)
    records: list[dict] = []
    # one progress bar, process 0's, however many processes train
    bar = tqdm(total=total, desc=f"PPO {cfg.target_label}",
               disable=not progress or not ppo_trainer.accelerator.is_main_process)
    while len(records) < total:
        for batch in ppo_trainer.dataloader:
            record = ppo_step(ppo_trainer, tokenizer, sentiment_pipe, batch, cfg, length_sampler)
            record["step"] = len(records) + 1
            records.append(record)
            if on_step is not None:
                on_step(record["step"], record, batch)
            recent = records[-10:]
            bar.set_postfix(reward=f"{sum(r['env/reward_mean'] for r in recent) / len(recent):+.2f}",
                            kl=f"{record.get('objective/kl', float('nan')):.2f}")
            bar.update(1)
            if len(records) >= total:
                break
    bar.close()
    return records


def save_checkpoint(model, tokenizer, out_dir: str | Path, records: list[dict] | None = None,
                    cfg: LabConfig | None = None, dtype=None) -> Path:
    """Save the policy (with its value head) and tokenizer; statistics as JSON, never pickle.

    Writes into a temporary folder renamed into place at the end, so an
    interrupted save leaves any previous checkpoint intact.  ``dtype`` (e.g.
    ``torch.float16``) stores a cast copy; the model in memory is unchanged.

    Under several processes (``torch.distributed`` initialised) every process
    calls it: process 0 alone writes (all processes hold the same policy),
    the others wait until the checkpoint is complete.  The statistics file
    records ``processes`` and ``saved_by_process``.
    """
    from course_lib.assets import staging_folder, swap_in_folder

    out_dir = Path(out_dir)
    rank, world = process_rank()
    if world > 1:
        _barrier()  # every process has finished its last step
    if rank == 0:
        model = getattr(model, "module", model)
        if dtype is not None:
            model = copy.deepcopy(model).to(dtype)
        tmp = staging_folder(out_dir)
        if is_peft_policy(model):
            from course_lib.models import save_adapter

            save_adapter(model, tmp)  # the tokenizer is the base model's
        else:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / "tokenizer.json").unlink(missing_ok=True)  # vocab.json + merges.txt suffice
        if records is not None:
            save_json({"config": cfg.to_dict() if cfg else None, "processes": world, "saved_by_process": rank,
                       "steps": records}, tmp / STATS_FILE)
        swap_in_folder(tmp, out_dir)
    if world > 1:
        _barrier()  # nobody goes on before the checkpoint exists
    return out_dir


def is_peft_policy(model) -> bool:
    """True when trl's value-head model wraps a PEFT model (PPO with LoRA)."""
    return bool(getattr(model, "is_peft_model", False))


def process_rank() -> tuple[int, int]:
    """(this process's index, number of processes) of the ``torch.distributed`` group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def load_stats(path: str | Path) -> list[dict]:
    """The per-step records of a checkpoint folder (or of a ``training_stats.json`` file)."""
    path = Path(path)
    f = path / STATS_FILE if path.is_dir() else path
    if not f.is_file():
        raise FileNotFoundError(f"no training statistics at {f}: is {path} a checkpoint saved by save_checkpoint?")
    data = load_json(f)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ValueError(f"{f} is not a training statistics file (expected a 'steps' list)")
    return data["steps"]


def load_checkpoint(path: str | Path, value_head: bool = False, device=None):
    """Load a tuned policy and its tokenizer from a checkpoint folder (bundled or saved).

    Raises ``FileNotFoundError`` naming the folder when it holds no model.
    """
    from course_lib.assets import resolve
    from course_lib.models import adapter_base_location, is_adapter_folder, load_policy, load_tokenizer

    p = Path(path)
    adapter = is_adapter_folder(p)
    if not adapter and not (p / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint at {p} (expected config.json and model.safetensors, or a LoRA "
                                "adapter's adapter_config.json); train one with `python -m course_lib.train` "
                                "or use a bundled one")
    resolved = resolve(str(p))
    # an adapter folder carries no tokenizer: it is its base model's
    tok_source = adapter_base_location(resolved) if adapter and not (p / "tokenizer_config.json").is_file() \
        else resolved
    return load_policy(resolved, value_head=value_head, device=device), load_tokenizer(tok_source)


def load_policy_and_reference(cfg: LabConfig):
    """(policy, reference) for PPO: two copies of ``cfg.policy_model`` with value heads, or with
    ``cfg.lora_r > 0`` a policy with a new LoRA adapter and ``None``: its adapter-disabled self is
    the reference (trl's ``ref_model=None``), so no second copy is loaded."""
    from course_lib.models import load_policy

    model = load_policy(cfg.policy_model, peft_config=cfg.peft_config())
    return model, (None if cfg.lora_r else load_policy(cfg.policy_model))


def run(cfg: LabConfig, output: str | Path | None, progress: bool = True, dtype=None) -> tuple[list[dict], object]:
    """Everything the command line does: load, build the dataset, train, save. Returns (records, trainer)."""
    from course_lib.data import build_dataset
    from course_lib.models import load_sentiment_pipeline, load_tokenizer

    join_processes()
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.policy_model)
    model, ref_model = load_policy_and_reference(cfg)
    dataset = build_dataset(cfg, tokenizer)
    trainer = make_trainer(cfg, model, ref_model, tokenizer, dataset)
    pipe = load_sentiment_pipeline(cfg.reward_model, device=trainer.accelerator.device)
    records = train(trainer, tokenizer, pipe, cfg, progress=progress)
    if output is not None:
        # every process calls it; process 0 writes, the others wait for it
        save_checkpoint(trainer.model, tokenizer, output, records, cfg, dtype=dtype)
    return records, trainer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Tune the policy with PPO toward one sentiment.")
    p.add_argument("--sentiment", required=True, help=f"target label: {' or '.join(SENTIMENTS)}")
    p.add_argument("--profile", default="cpu", help=f"one of: {', '.join(PROFILES)}")
    p.add_argument("--steps", type=int, default=None, help="PPO steps (default: the profile's; gpu: one epoch)")
    p.add_argument("--output", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="override any LabConfig value, e.g. --set learning_rate=1e-4 batch_size=64")
    args = p.parse_args(argv)
    if args.sentiment not in SENTIMENTS:
        p.error(f"unknown sentiment {args.sentiment!r}; valid: {', '.join(SENTIMENTS)}")
    if args.profile not in PROFILES:
        p.error(f"unknown profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    overrides = {"target_label": args.sentiment, "seed": args.seed}
    if args.steps is not None:
        overrides["steps"] = args.steps
    overrides.update(parse_set(p, args.set))
    try:
        cfg = make_config(args.profile, **overrides)
    except ValueError as e:
        p.error(str(e))
    records, trainer = run(cfg, args.output)
    acc = trainer.accelerator
    if acc.num_processes > 1:
        print(f"process {acc.process_index} of {acc.num_processes} finished {len(records)} PPO steps "
              f"(parameters in sync after every step: {records[-1]['dist/param_digests'][0]})", flush=True)
    if acc.is_main_process:
        first = records[0]["env/reward_mean"]
        last = sum(r["env/reward_mean"] for r in records[-5:]) / len(records[-5:])
        print(f"{len(records)} steps; mean {cfg.target_label} reward {first:+.3f} (first step) -> {last:+.3f} "
              f"(last 5) over {records[-1]['env/reward_n']} prompts a step; saved to {args.output}", flush=True)
    return 0


def parse_set(parser: argparse.ArgumentParser, items: list[str]) -> dict:
    """``--set NAME=VALUE ...`` as overrides for ``make_config`` (numbers, True/False/None parsed);
    an item without ``=`` is a usage error of ``parser``."""
    overrides = {}
    for item in items:
        if "=" not in item:
            parser.error(f"--set takes NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        overrides[name] = _parse_value(value)
    return overrides


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    return text


if __name__ == "__main__":
    sys.exit(main())

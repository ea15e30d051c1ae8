"""The one training loop, for every model: plug-ins bring modules, data and a loss (see ``tasks/``).

A step: take ``grad_accum`` planned micro-batches from this rank's stream, forward the task's
loss under autocast, backward each optimizer's loss into its own parameters, skip the step if
anything is not finite, clip, step AdamW, update the EMA, then log, sample and checkpoint.
Everything a step depends on (weights, optimizer moments, RNG states, data position) is in the
checkpoint, so a resumed run repeats an uninterrupted one exactly on the CPU. With
``time_limit_minutes``, or on SIGTERM (``kill PID``), a run ends early at a step boundary,
checkpointed and exported as if that step were its last, and the same command resumes it.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.tensor import DTensor

from kinetoscope.data.batching import PlanState
from kinetoscope.data.loader import LoadedBatch, load_batches
from kinetoscope.data.seeding import derive_seed
from kinetoscope.devices import training_autocast
from kinetoscope.errors import CheckpointError, ConfigError, KinetoscopeError
from kinetoscope.files import atomic_write_json
from kinetoscope.progress import ProgressBar
from kinetoscope.train import checkpoint as ckpt
from kinetoscope.train.config import TrainConfig
from kinetoscope.train.distributed import (
    DistInfo,
    all_reduce_mean,
    any_rank,
    apply_activation_checkpointing,
    apply_compile,
    barrier,
    gradient_sync,
    init_distributed,
    shutdown_distributed,
    wrap,
)
from kinetoscope.train.ema import EMA
from kinetoscope.train.logging import LogWindow, MetricsLogger, SkippedFiles
from kinetoscope.train.tasks import StepContext, Task, task_class

CONFIG_FILE = "config.json"
FINAL_DIR = "final"
SAMPLES_DIR = "samples"
#: What one invocation did: steps, why it stopped, wall time, device (rank 0 writes it at the end).
SUMMARY_FILE = "summary.json"


class TrainingStopped(KinetoscopeError):
    """The run cannot go on (e.g. the loss stayed NaN); the last good checkpoint is intact."""

    code = "training_stopped"


def train(config: TrainConfig, resume: str | Path | None = None) -> Path:
    """Train as ``config`` says (under torchrun too); returns the final model directory."""
    info = init_distributed()
    try:
        return Trainer(config, info, resume).run()
    finally:
        shutdown_distributed()


class Trainer:
    def __init__(self, config: TrainConfig, info: DistInfo, resume: str | Path | None = None):
        self.config = config
        self.info = info
        self.run_dir = Path(config.run_dir)
        self.resume_from = resume
        if not (config.data.batch_size or config.data.token_budget):
            raise ConfigError(
                "Set data.token_budget (work per micro-batch) or data.batch_size (samples per micro-batch)."
            )
        task_cls = task_class(config.task_kind)
        options = task_cls.config_class.from_dict(config.task_options)
        self.task: Task = task_cls(options, config, info, self.run_dir)
        self.device = info.device
        self.autocast_dtype = training_autocast(config.precision, self.device, warn=info.is_main)

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> int:
        """Build everything and load the checkpoint to resume from; return the first step to run."""
        cfg, info = self.config, self.info
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_partial_checkpoints(self.run_dir)
            atomic_write_json(self.run_dir / CONFIG_FILE, cfg.to_dict())
        barrier(info)
        checkpoint = self._checkpoint_to_resume()
        self.task.prepare()

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.plain = {name: m.to(self.device) for name, m in self.task.build_models().items()}
        self.root = nn.ModuleDict(self.plain)  # one namespace for state dicts: "<module>.<param>"
        self.wrapped = {name: self._parallelize(name, m) for name, m in self.plain.items()}
        specs = self.task.optimizers(self.plain)
        self.optimizers = {name: self._adamw([self.plain[m] for m in spec.modules]) for name, spec in specs.items()}
        self.base_lrs = {name: cfg.optim.lr * spec.lr_scale for name, spec in specs.items()}
        self.params = {
            name: [p for m in spec.modules for p in self.plain[m].parameters() if p.requires_grad]
            for name, spec in specs.items()
        }
        ema_modules = {n: m for n, m in self.plain.items() if n not in self.task.no_ema}
        self.ema = EMA(ema_modules, cfg.ema.decay, cfg.ema.warmup) if cfg.ema.decay > 0 else None

        self.generator = torch.Generator()  # on the CPU, like kinetoscope.flow's draws; move what it makes
        self.generator.manual_seed(derive_seed(cfg.seed, "task", info.rank))
        torch.manual_seed(derive_seed(cfg.seed, "rank", info.rank))
        if self.device.type == "cuda":
            torch.cuda.manual_seed(derive_seed(cfg.seed, "rank", info.rank))
        self.nan_skipped, self.nan_streak = 0, 0
        self.prior_seconds = 0.0  # training time of earlier invocations, from the checkpoint
        self.prior_cpu_seconds = 0.0
        self.skipped = SkippedFiles(self.run_dir)
        self.data_state = PlanState()
        if checkpoint is None:
            return 0
        return self._load(checkpoint)

    def _checkpoint_to_resume(self) -> Path | None:
        if self.resume_from is not None:
            return ckpt.resolve_checkpoint(self.resume_from)
        return ckpt.latest_checkpoint(self.run_dir)

    def _parallelize(self, name: str, module: nn.Module) -> nn.Module:
        cfg = self.config
        blocks = self.task.blocks(name, module)
        if cfg.activation_checkpointing:
            apply_activation_checkpointing(blocks)
        if cfg.compile:
            apply_compile(module, blocks)
        mode = "ddp" if cfg.parallel == "fsdp" and name in self.task.replicate_only else cfg.parallel
        return wrap(module, mode, blocks, self.info)

    def _adamw(self, modules: list[nn.Module]) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices only (not on biases, norms or embeddings' scales)."""
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        o = self.config.optim
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=o.lr, betas=o.betas, eps=o.eps)

    # ------------------------------------------------------------------ checkpoints
    def _full_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_state_dict(self.root, tuple(self.optimizers.values()), options=options)

    def _save(self, step: int) -> Path:
        """Checkpoint after ``step`` steps (every rank calls this)."""
        model_state, optim_state = self._full_state()
        tensors = {"model": model_state}
        if self.ema is not None:
            tensors["ema"] = self.ema.full_state_dict()
        rank_state = {
            "torch_cpu": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "data": self.data_state.to_dict(),
            "skipped": self.skipped.count,
        }
        if self.device.type == "cuda":
            rank_state["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        trainer_state = {
            "task": self.config.task_kind,
            "schedule": {"kind": self.config.schedule.kind, "next_step": step},
            "nan_skipped": self.nan_skipped,
            "nan_streak": self.nan_streak,
            "train_seconds": self._train_seconds(),
            "cpu_seconds": self._cpu_seconds(),
        }
        return ckpt.save_checkpoint(
            self.run_dir,
            step,
            self.info,
            tensors=tensors if self.info.is_main else {},
            objects={"optimizer": optim_state} if self.info.is_main else {},
            trainer_state=trainer_state,
            rank_state=rank_state,
            keep_last=self.config.keep_last,
        )

    def _load(self, directory: Path) -> int:
        state = ckpt.read_trainer_state(directory)
        if state.get("task") != self.config.task_kind:
            raise CheckpointError(
                f"Checkpoint {directory} was saved by task {state.get('task')!r}, not {self.config.task_kind!r}."
            )
        model_state = ckpt.load_tensors(directory, "model")
        optim_state = ckpt.load_object(directory, "optimizer")
        try:
            set_state_dict(
                self.root,
                tuple(self.optimizers.values()),
                model_state_dict=model_state,
                optim_state_dict=optim_state,
                options=StateDictOptions(full_state_dict=True),
            )
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"Checkpoint {directory} does not fit this model: {e}") from None
        if self.ema is not None:
            self.ema.load_full_state_dict(ckpt.load_tensors(directory, "ema"))
        self.nan_skipped = int(state.get("nan_skipped", 0))
        self.nan_streak = int(state.get("nan_streak", 0))
        self.prior_seconds = float(state.get("train_seconds", 0.0))
        # A checkpoint from before cpu_seconds was kept: its time counted at today's thread count.
        self.prior_cpu_seconds = float(state.get("cpu_seconds", self.prior_seconds * self._cores()))
        rank_state = ckpt.load_rank_state(directory, self.info.rank)
        step = int(state["step"])
        if rank_state is not None and state["world_size"] == self.info.world_size:
            torch.set_rng_state(rank_state["torch_cpu"])
            self.generator.set_state(rank_state["generator"])
            if self.device.type == "cuda" and "torch_cuda" in rank_state:
                torch.cuda.set_rng_state(rank_state["torch_cuda"], self.device)
            self.data_state = PlanState.from_dict(rank_state["data"])
            self.skipped.count = int(rank_state.get("skipped", 0))
        else:
            # Another number of ranks: the shares of the stream differ, so start each rank past
            # everything any old rank had read (nothing is seen twice), with fresh RNG streams.
            positions = [ckpt.load_rank_state(directory, r)["data"]["next"] for r in range(state["world_size"])]
            start = max(positions) * state["world_size"] // self.info.world_size + 1
            self.data_state = PlanState(start, ())
            torch.manual_seed(derive_seed(self.config.seed, "rank", self.info.rank, step))
            self.generator.manual_seed(derive_seed(self.config.seed, "task", self.info.rank, step))
        return step

    # ------------------------------------------------------------------ the loop
    def run(self) -> Path:
        self.started = time.monotonic()  # the time limit counts from here, set-up included
        self.stop_asked = False
        with self._stop_on_sigterm():
            return self._run()

    @contextlib.contextmanager
    def _stop_on_sigterm(self) -> Iterator[None]:
        """SIGTERM asks the loop to stop after the current step, as the time limit does: a run on a
        shared machine is paused for a test or a benchmark without losing a step."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask(signum: int, frame: Any) -> None:
            self.stop_asked = True

        previous = signal.signal(signal.SIGTERM, ask)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _run(self) -> Path:
        cfg, info = self.config, self.info
        start = done = self._setup()
        logger = MetricsLogger(self.run_dir, start) if info.is_main else None
        batches = self._batches()
        window = LogWindow()
        shown: dict[str, float] = {}
        out_of_time = False
        try:
            with ProgressBar(
                cfg.steps - start, f"train {cfg.task_kind}", unit="step", disable=None if info.is_main else True
            ) as bar:
                for step in range(start, cfg.steps):
                    stats = self._train_step(step, batches)
                    window.add(stats)
                    done = step + 1
                    out_of_time = self._out_of_time()
                    last = done == cfg.steps or out_of_time
                    if done % cfg.log_every == 0 or last:
                        row = self._metrics_row(step, window)
                        if logger is not None:
                            logger.log(done, row)
                        window = LogWindow()
                        shown = {"loss": row["loss"], "lr": row["lr"], "samples/s": row["samples_per_s"]}
                    bar.advance(1, **shown)
                    if cfg.sample_every and self.task.can_sample and done % cfg.sample_every == 0:
                        self._sample(done)
                    if done % cfg.checkpoint_every == 0 or last:
                        self._save(done)
                    if out_of_time:
                        break
            if out_of_time and info.is_main:
                why = "asked to (SIGTERM)" if self.stop_asked else f"the time limit of {cfg.time_limit_minutes:g} minutes is spent"
                print(
                    f"Stopped at step {done} of {cfg.steps}: {why}; the checkpoint and final model hold step {done} "
                    "(run the same command again to go on).",
                    file=sys.stderr,
                )
            final = self._export()
            if info.is_main:
                self._write_summary(start, done, out_of_time)
            return final
        finally:
            if logger is not None:
                logger.close()

    def _out_of_time(self) -> bool:
        """Rank 0's clock (or any rank's SIGTERM) decides and every rank gets its answer, so all ranks
        stop at the same step."""
        limit = self.config.time_limit_minutes
        spent = limit is not None and self.info.is_main and time.monotonic() - self.started >= 60.0 * limit
        return any_rank(spent or self.stop_asked, self.info)

    def _train_seconds(self) -> float:
        """Wall time spent training this run, over every invocation (set-up and waits included)."""
        return self.prior_seconds + time.monotonic() - self.started

    def _cores(self) -> int:
        return torch.get_num_threads() * self.info.world_size

    def _cpu_seconds(self) -> float:
        """Core-seconds of this run over every invocation: wall time times the threads of every rank
        (what a training leg of the bundled model is measured in, whatever threads each part ran)."""
        return self.prior_cpu_seconds + (time.monotonic() - self.started) * self._cores()

    def _write_summary(self, start: int, done: int, out_of_time: bool) -> None:
        device = self.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        summary = {
            "task": self.config.task_kind,
            "started_at_step": start,
            "steps_done": done,
            "steps": self.config.steps,
            "stopped_by": ("signal" if self.stop_asked else "time_limit") if out_of_time else "steps",
            "time_limit_minutes": self.config.time_limit_minutes,
            "wall_seconds": round(time.monotonic() - self.started, 3),
            "train_seconds": round(self._train_seconds(), 3),
            "cpu_seconds": round(self._cpu_seconds(), 3),
            "device": f"{self.info.world_size} x {name}",
            "threads": torch.get_num_threads(),
        }
        atomic_write_json(self.run_dir / SUMMARY_FILE, summary)

    def _batches(self) -> Iterator[LoadedBatch]:
        source, collate = self.task.data()
        d = self.config.data
        budget = d.token_budget or None
        return load_batches(
            source,
            collate,
            self.data_state,
            budget=budget,
            max_samples=d.batch_size or None,
            lookahead=d.lookahead,
            rank=self.info.rank,
            world_size=self.info.world_size,
            num_workers=d.num_workers,
        )

    def _next_batch(self, batches: Iterator[LoadedBatch]) -> LoadedBatch:
        """The next batch with at least one readable sample; unreadable ones are recorded."""
        while True:
            batch = next(batches)
            self.data_state = batch.plan.after
            if batch.skipped:
                self.skipped.record(batch.skipped)
            if batch.data is not None:
                return batch

    def _train_step(self, step: int, batches: Iterator[LoadedBatch]) -> dict[str, Any]:
        cfg = self.config
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lrs[name] * cfg.schedule.factor(step, cfg.steps)
        ctx = StepContext(step, self.device, self.generator)
        losses_sum: dict[str, float] = {}
        metrics_sum: dict[str, float] = {}
        samples = tokens = 0
        finite = True
        for micro in range(cfg.grad_accum):
            batch = self._next_batch(batches)
            samples += batch.num_samples
            if not finite:  # the step is lost; still read its data so positions stay a function of the step
                continue
            last = micro == cfg.grad_accum - 1
            with gradient_sync(list(self.wrapped.values()), enabled=last), self._autocast():
                out = self.task.loss(self.wrapped, batch.data, ctx)
            values = {name: float(loss.detach()) for name, loss in out.losses.items()}
            finite = not any_rank(not all(math.isfinite(v) for v in values.values()), self.info)
            if not finite:
                continue
            with gradient_sync(list(self.wrapped.values()), enabled=last):
                self._backward(out.losses)
            for name, v in values.items():
                losses_sum[name] = losses_sum.get(name, 0.0) + v / cfg.grad_accum
            for name, v in out.metrics.items():
                metrics_sum[name] = metrics_sum.get(name, 0.0) + float(v) / cfg.grad_accum
            tokens += out.tokens
        norms = self._clip() if finite else {}
        finite = finite and all(math.isfinite(n) for n in norms.values())
        if finite:
            for opt in self.optimizers.values():
                opt.step()
            if self.ema is not None:
                self.ema.update(step)
            self.nan_streak = 0
        else:
            self.nan_skipped += 1
            self.nan_streak += 1
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        if self.nan_streak > cfg.max_nan_streak:
            latest = ckpt.latest_checkpoint(self.run_dir)
            raise TrainingStopped(
                f"Stopped at step {step + 1}: the loss or gradients were not finite for {self.nan_streak} steps in a row "
                f"(max_nan_streak={cfg.max_nan_streak}); lower optim.lr or check the data, the last good checkpoint is "
                f"{latest if latest is not None else 'none (no checkpoint was written yet)'}."
            )
        return {
            "finite": finite,
            "losses": losses_sum,
            "metrics": metrics_sum,
            "norms": norms,
            "samples": samples,
            "tokens": tokens,
        }

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _backward(self, losses: dict[str, torch.Tensor]) -> None:
        """Each optimizer's loss into its own parameters only (a generator's loss must not train its critic)."""
        scale = 1.0 / self.config.grad_accum
        if len(losses) == 1:
            (next(iter(losses.values())) * scale).backward()
            return
        names = list(losses)
        for i, name in enumerate(names):
            torch.autograd.backward(losses[name] * scale, inputs=self.params[name], retain_graph=i < len(names) - 1)

    def _clip(self) -> dict[str, float]:
        """Clip each optimizer's gradients; return their norms before clipping."""
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        norms = {}
        for name, params in self.params.items():
            if not any(p.grad is not None for p in params):  # e.g. a discriminator before its warm-up
                continue
            norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)
            norms[name] = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
        return norms

    def _metrics_row(self, step: int, window: LogWindow) -> dict[str, Any]:
        """Averages over the logging window and over ranks, plus throughput and counters."""
        names = list(self.optimizers)  # every optimizer, also one not active yet (a discriminator)
        metric_names = sorted(window.metrics)
        local = torch.tensor(
            [window.mean_loss(n) for n in names]
            + [window.mean_metric(n) for n in metric_names]
            + [float(window.samples), float(window.tokens), float(self.skipped.count)],
            dtype=torch.float64,
            device=self.device,
        )
        reduced = all_reduce_mean(local, self.info).tolist()
        elapsed = max(time.perf_counter() - window.started, 1e-9)
        world = self.info.world_size
        losses = dict(zip(names, reduced[: len(names)]))
        main = next(iter(self.optimizers))
        row: dict[str, Any] = {"loss": losses.pop(main, math.nan)}
        row.update({f"loss_{n}": v for n, v in losses.items()})
        row.update(dict(zip(metric_names, reduced[len(names) : len(names) + len(metric_names)])))
        row["lr"] = self.optimizers[main].param_groups[0]["lr"]
        row["grad_norm"] = window.last_norm.get(main, math.nan)
        row["steps_per_s"] = window.steps / elapsed
        row["samples_per_s"] = reduced[-3] * world / elapsed
        row["tokens_per_s"] = reduced[-2] * world / elapsed
        row["nan_skipped"] = self.nan_skipped
        row["skipped_files"] = round(reduced[-1] * world)
        return row

    # ------------------------------------------------------------------ samples and export
    def _plain_copies(self, use_ema: bool) -> dict[str, nn.Module] | None:
        """Unwrapped modules holding the EMA (or current) weights, on rank 0; None elsewhere (collective)."""
        state = get_model_state_dict(self.root, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if use_ema and self.ema is not None:
            state = {**state, **self.ema.full_state_dict()}
        if not self.info.is_main:
            return None
        with torch.random.fork_rng(devices=[]):  # building must not move the RNG a resumed run restores
            models = self.task.build_models()
        for name, module in models.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
            module.to(self.device).eval()
        return models

    def _sample(self, step: int) -> None:
        models = self._plain_copies(use_ema=True)
        if models is not None:
            self.task.sample(models, step, self.run_dir / SAMPLES_DIR)
        barrier(self.info)

    def _export(self) -> Path:
        out = self.run_dir / FINAL_DIR
        models = self._plain_copies(use_ema=self.config.export_ema)
        if models is not None:
            self.task.export(models, out)
        barrier(self.info)
        return out

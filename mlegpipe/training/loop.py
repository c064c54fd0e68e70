"""The training engine every trainable model in mlegpipe uses.

:class:`TrainLoop` runs a model's ``step_fn(step) -> {loss name: value}`` for a
number of optimizer *steps*, and around it does what every model needs:
learning-rate schedule, validation every ``validate_every`` steps with a
physics metric (lower is better) and best-state selection, a progress bar
(tqdm on stderr, shown when ``ctx.progress``), NaN/inf detection (raises
:class:`~mlegpipe.exceptions.TrainingError` naming the stage and step and puts
the last good state back), atomic periodic checkpoints in
``ctx.run_dir/checkpoints/``, and exact resume: modules, optimizers, the random
generators the step uses and the global torch RNG are all restored, so a
resumed run ends with the same weights as an uninterrupted one.

Example:
    >>> import torch
    >>> from mlegpipe.context import StageContext
    >>> net = torch.nn.Linear(1, 1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> x = torch.linspace(-1, 1, 32)[:, None]
    >>> def step(i):
    ...     opt.zero_grad()
    ...     loss = ((net(x) - 3 * x) ** 2).mean()
    ...     loss.backward()
    ...     opt.step()
    ...     return {"mse": loss.item()}
    >>> loop = TrainLoop(StageContext("toy"), step, steps=200, modules={"net": net}, optimizers={"opt": opt},
    ...                  validate_fn=lambda i: ((net(x) - 3 * x) ** 2).mean().item(), validate_every=50)
    >>> history = loop.run()
    >>> len(history), loop.best_step, loop.best_metric < 1e-3
    (200, 200, True)
"""

from __future__ import annotations

import copy
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mlegpipe.checkpoint import load_checkpoint, save_checkpoint
from mlegpipe.context import StageContext
from mlegpipe.exceptions import CheckpointError, ConfigError, TrainingError

__all__ = ["TrainLoop", "cosine_schedule", "warmup_schedule"]

StepFn = Callable[[int], Mapping[str, float]]
ValidateFn = Callable[[int], float | Mapping[str, float]]
_CKPT_KIND = "training-state"


def cosine_schedule(steps: int, warmup: int = 0, final: float = 0.0) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to ``final``.

    Example:
        >>> f = cosine_schedule(100, warmup=10, final=0.1)
        >>> round(f(0), 2), f(10), round(f(99), 2)
        (0.1, 1.0, 0.1)
    """
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup - 1)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def warmup_schedule(warmup: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then constant.

    Example:
        >>> warmup_schedule(4)(1), warmup_schedule(4)(100)
        (0.5, 1.0)
    """
    return lambda step: min(1.0, (step + 1) / max(1, warmup))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "stage"


class TrainLoop:
    """Runs a training step function with validation, checkpoints, resume and NaN guards.

    Arguments:
        ctx: the stage's context (name for errors, run folder, progress flag).
        step_fn: does one optimizer step for step index ``i`` (0-based) and returns
            the losses as floats.
        steps: total number of steps.
        modules: the networks whose weights are trained, by name (checkpointed,
            best state kept).
        optimizers: their optimizers, by name (checkpointed; the lr schedule
            applies to all of them).
        validate_fn: returns the tracked metric for the model after step ``i``
            (lower is better), or a dict of figures holding ``metric``. It
            must draw randomness only from its own fixed-seed generators.
        validate_every: validate every this many steps (and after the last); 0: never.
        metric: the key of the tracked figure in ``validate_fn``'s dict.
        lr_schedule: factor on each optimizer's initial learning rate, by step.
        checkpoint_every: write ``ctx.run_dir/checkpoints/<name>-last.pt`` every this
            many steps (and after the last); 0: only in memory. Needs ``ctx.run_dir``.
        generators: torch generators the step draws from (batch sampling, noise),
            saved and restored for exact resume.
        rngs: NumPy generators the step draws from, likewise.
        restore_best: load the best validated state into ``modules`` at the end.
        checkpoint_name: file stem of the checkpoints (default: ``ctx.name``).
        desc: progress-bar label (default: ``ctx.name``).
        fingerprint: a string identifying the configuration and data (e.g. a hash);
            stored in checkpoints. ``run(resume=True)`` skips a last checkpoint of
            another fingerprint; resuming from an explicit path of another
            fingerprint raises :class:`CheckpointError`.

    Attributes (after :meth:`run`):
        history: one dict per step: ``step`` (1-based count of steps done), the
            losses, ``lr``, and ``metric`` (plus other figures) on validation steps.
        best_step, best_metric: the best validation (None without validation).
        last_good_step: the step of the last state known to be finite.
    """

    def __init__(
        self,
        ctx: StageContext,
        step_fn: StepFn,
        steps: int,
        *,
        modules: Mapping[str, torch.nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        validate_fn: ValidateFn | None = None,
        validate_every: int = 0,
        metric: str = "metric",
        lr_schedule: Callable[[int], float] | None = None,
        checkpoint_every: int = 0,
        generators: Mapping[str, torch.Generator] | None = None,
        rngs: Mapping[str, np.random.Generator] | None = None,
        restore_best: bool = True,
        checkpoint_name: str | None = None,
        desc: str | None = None,
        fingerprint: str = "",
    ) -> None:
        if steps < 0:
            raise ConfigError("the number of training steps must be >= 0", path=f"{ctx.name}.steps", value=steps)
        if validate_every < 0 or checkpoint_every < 0:
            raise ConfigError("validate_every and checkpoint_every must be >= 0", path=ctx.name,
                              value=(validate_every, checkpoint_every))
        self.ctx = ctx
        self.step_fn = step_fn
        self.steps = int(steps)
        self.modules = dict(modules)
        self.optimizers = dict(optimizers or {})
        self.validate_fn = validate_fn
        self.validate_every = int(validate_every)
        self.metric = metric
        self.lr_schedule = lr_schedule
        self.checkpoint_every = int(checkpoint_every)
        self.generators = dict(generators or {})
        self.rngs = dict(rngs or {})
        self.restore_best = restore_best
        self.checkpoint_name = _safe_name(checkpoint_name or ctx.name)
        self.desc = desc or ctx.name
        self.fingerprint = fingerprint
        self._base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.optimizers.items()}
        self.history: list[dict[str, float]] = []
        self.step = 0
        self.best_step: int | None = None
        self.best_metric: float | None = None
        self._best_modules: dict[str, dict[str, torch.Tensor]] | None = None
        self.last_good_step = 0
        self._last_good: dict[str, Any] | None = None

    # -- paths ------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path | None:
        """``ctx.run_dir/checkpoints`` (None outside a run)."""
        return None if self.ctx.run_dir is None else Path(self.ctx.run_dir) / "checkpoints"

    @property
    def last_path(self) -> Path | None:
        """The periodic checkpoint file (None outside a run)."""
        d = self.checkpoint_dir
        return None if d is None else d / f"{self.checkpoint_name}-last.pt"

    @property
    def best_path(self) -> Path | None:
        """The best-validated weights file (None outside a run)."""
        d = self.checkpoint_dir
        return None if d is None else d / f"{self.checkpoint_name}-best.pt"

    # -- state --------------------------------------------------------------------------
    def _module_states(self) -> dict[str, dict[str, torch.Tensor]]:
        return {k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in self.modules.items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly where it stands."""
        return {
            "step": self.step,
            "modules": self._module_states(),
            "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()},
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "rngs": {k: copy.deepcopy(r.bit_generator.state) for k, r in self.rngs.items()},
            "torch_rng": torch.get_rng_state(),
            "history": [dict(h) for h in self.history],
            "best_step": self.best_step,
            "best_metric": self.best_metric,
            "best_modules": self._best_modules,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (or a checkpoint's state)."""
        for key, owner in (("modules", self.modules), ("optimizers", self.optimizers),
                           ("generators", self.generators), ("rngs", self.rngs)):
            missing = set(owner) - set(state.get(key, {}))
            if missing:
                raise CheckpointError(f"training state has no {key} named {sorted(missing)} "
                                      f"(it has {sorted(state.get(key, {}))})", path=self.ctx.name)
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, g in self.generators.items():
            g.set_state(state["generators"][k])
        for k, r in self.rngs.items():
            r.bit_generator.state = state["rngs"][k]
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.history = [dict(h) for h in state.get("history", [])]
        self.best_step = state.get("best_step")
        self.best_metric = state.get("best_metric")
        self._best_modules = state.get("best_modules")
        self.last_good_step = self.step
        self._last_good = {"step": self.step, "modules": self._module_states(),
                           "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()}}

    def _save_last(self) -> None:
        self._last_good = {"step": self.step, "modules": self._module_states(),
                           "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()}}
        self.last_good_step = self.step
        if self.last_path is not None and self.checkpoint_every:
            save_checkpoint(self.last_path, self.state_dict(), kind=_CKPT_KIND, plugin=self.checkpoint_name,
                            seed=self.ctx.seed, extra={"step": self.step, "fingerprint": self.fingerprint})

    def _restore_last_good(self) -> None:
        if self._last_good is None:
            return
        for k, m in self.modules.items():
            m.load_state_dict(self._last_good["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(self._last_good["optimizers"][k])

    # -- the loop -----------------------------------------------------------------------
    def _apply_lr(self, step: int) -> float | None:
        if self.lr_schedule is None:
            first = next(iter(self.optimizers.values()), None)
            return None if first is None else float(first.param_groups[0]["lr"])
        factor = float(self.lr_schedule(step))
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self._base_lrs[name], strict=True):
                group["lr"] = base * factor
        first = next(iter(self._base_lrs.values()), [None])[0]
        return None if first is None else first * factor

    def _nonfinite(self, what: str, value: float) -> TrainingError:
        self._restore_last_good()
        where = f"the last good checkpoint {self.last_path} (step {self.last_good_step})" \
            if self.last_path is not None and self.checkpoint_every and self.last_path.exists() \
            else f"the last good state (step {self.last_good_step}) was put back in memory"
        return TrainingError(f"training diverged: {what} is {value} at step {self.step + 1} of {self.steps}; "
                             f"{where} is kept", path=self.ctx.name,
                             hint="lower the learning rate, or check the inputs for extreme values")

    def _validate(self, record: dict[str, float]) -> None:
        result = self.validate_fn(self.step - 1)  # type: ignore[misc]
        figures = {self.metric: float(result)} if isinstance(result, int | float) else \
            {k: float(v) for k, v in result.items()}
        if self.metric not in figures:
            raise TrainingError(f"validation returned no {self.metric!r} figure (got {sorted(figures)})",
                                path=self.ctx.name)
        value = figures[self.metric]
        if not math.isfinite(value):
            self.step -= 1
            raise self._nonfinite(f"validation metric {self.metric!r}", value)
        record.update(figures)
        if self.best_metric is None or value < self.best_metric:
            self.best_metric, self.best_step = value, self.step
            self._best_modules = self._module_states()
            if self.best_path is not None and self.checkpoint_every:
                save_checkpoint(self.best_path, {"modules": self._best_modules}, kind="training-best",
                                plugin=self.checkpoint_name, seed=self.ctx.seed,
                                extra={"step": self.step, "metric": value})

    def run(self, resume: str | os.PathLike[str] | bool | None = None) -> list[dict[str, float]]:
        """Train to ``steps``; return the history.

        Arguments:
            resume: a checkpoint to continue from; ``True`` continues from
                :attr:`last_path` if it exists.

        Raises:
            TrainingError: a loss or the metric became NaN/inf (the last good
                state is put back into the modules; its checkpoint file is kept).
            CheckpointError: the resume checkpoint is unsafe or belongs to another model.
        """
        ckpt = None
        if resume is True:
            if self.last_path is not None and self.last_path.exists():
                ckpt = load_checkpoint(self.last_path, expect_kind=_CKPT_KIND)
                if ckpt.metadata.get("fingerprint", "") != self.fingerprint:
                    self.ctx.log.warning("not resuming from %s: it was written for another configuration or "
                                         "data", self.last_path)
                    ckpt = None
            resume = self.last_path if ckpt is not None else None
        elif resume:
            ckpt = load_checkpoint(resume, expect_kind=_CKPT_KIND)
            if ckpt.metadata.get("fingerprint", "") != self.fingerprint:
                raise CheckpointError("training checkpoint was written for another configuration or data "
                                      f"(fingerprint {ckpt.metadata.get('fingerprint')!r}, expected "
                                      f"{self.fingerprint!r})", path=str(resume))
        if ckpt is not None:
            if ckpt.metadata.get("plugin") != self.checkpoint_name:
                raise CheckpointError(f"training checkpoint belongs to stage {ckpt.metadata.get('plugin')!r}, not "
                                      f"to {self.checkpoint_name!r}", path=str(resume))
            self.load_state_dict(ckpt.state)
            self.ctx.log.info("resumed %s from %s at step %d", self.ctx.name, resume, self.step)
        else:
            self._last_good = {"step": 0, "modules": self._module_states(),
                               "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()}}
        refresh = max(1, self.steps // 200)
        interrupted: list[int] = []
        previous = None
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C finishes the current step, saves a checkpoint, then stops: `mlegpipe run --resume` goes on.
            previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
        bar = tqdm(total=self.steps, initial=self.step, desc=self.desc, file=sys.stderr,
                   disable=not self.ctx.progress, dynamic_ncols=True, leave=False)
        try:
            while self.step < self.steps:
                lr = self._apply_lr(self.step)
                losses = self.step_fn(self.step)
                record = {"step": self.step + 1}
                for name, value in losses.items():
                    value = float(value)
                    if not math.isfinite(value):
                        raise self._nonfinite(f"loss {name!r}", value)
                    record[name] = value
                if lr is not None:
                    record["lr"] = lr
                self.step += 1
                validate = self.validate_fn is not None and self.validate_every > 0 and (
                    self.step % self.validate_every == 0 or self.step == self.steps)
                if validate:
                    self._validate(record)
                self.history.append(record)
                if (self.checkpoint_every and self.step % self.checkpoint_every == 0) or self.step == self.steps:
                    self._save_last()
                bar.update(1)
                if self.ctx.progress and (self.step % refresh == 0 or validate):
                    shown = {k: f"{v:.4g}" for k, v in record.items() if k not in ("step", "lr")}
                    if self.best_metric is not None:
                        shown["best"] = f"{self.best_metric:.4g}"
                    bar.set_postfix(shown, refresh=False)
                if interrupted:
                    self._save_last()
                    self.ctx.log.warning("%s: interrupted at step %d; checkpoint saved in %s (continue with "
                                         "`mlegpipe run ... --resume`)", self.ctx.name, self.step,
                                         self.checkpoint_dir)
                    raise KeyboardInterrupt
        finally:
            bar.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self.restore_best and self._best_modules is not None:
            for k, m in self.modules.items():
                m.load_state_dict(self._best_modules[k])
        return self.history

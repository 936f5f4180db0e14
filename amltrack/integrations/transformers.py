"""A Hugging Face Transformers callback: ``Trainer(..., callbacks=[AmltrackCallback("glue")])``.

    from amltrack.integrations.transformers import AmltrackCallback
    trainer = transformers.Trainer(model, args, callbacks=[AmltrackCallback("glue")], ...)

Pass ``report_to=[]`` (or ``"none"``) in ``TrainingArguments`` so that Transformers adds no other
tracker's callback beside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._logger import Logger as _RunLogger
from ._common import RunRef, flatten, numbers, upload_path

try:
    from transformers import TrainerCallback as _Base
except ImportError:
    raise ImportError(
        "amltrack.integrations.transformers needs transformers: pip install transformers"
    ) from None


def metric_name(key: str) -> str:
    """Transformers' log key as a metric name, as the W&B callback names it: ``eval_loss`` is
    ``eval/loss``, ``test_x`` is ``test/x``, and every other key goes under ``train/`` as it is
    (``loss``: ``train/loss``; the closing ``train_loss``: ``train/train_loss``)."""
    for stage in ("eval", "test"):
        if key.startswith(stage + "_"):
            return f"{stage}/{key[len(stage) + 1 :]}"
    return f"train/{key}"


class AmltrackCallback(_Base):
    """Transformers' logs, settings and (with ``log_checkpoints``) checkpoints, into an amltrack run.

    On train begin, ``TrainingArguments`` and the model's config become the run's params
    (flattened, the arguments winning a clash); every ``on_log`` becomes one row at
    ``state.global_step``, named by ``metric_name()`` (``train/loss``, ``eval/loss``); the run ends
    on train end if this callback started it. Only the main process (world rank 0) logs.
    ``log_checkpoints=True`` stores each saved checkpoint folder as artifacts under
    ``checkpoints/checkpoint-<step>/``. Other keyword arguments go to ``amltrack.get_logger()``.

        trainer = Trainer(model, args, train_dataset=ds, callbacks=[AmltrackCallback("glue")])
    """

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
        store: str | os.PathLike[str] | None = None,
        log_checkpoints: bool = False,
        **options: Any,
    ) -> None:
        self._run = RunRef(experiment, name, tags, store, options)
        self._log_checkpoints = log_checkpoints

    @property
    def logger(self) -> _RunLogger:
        """The amltrack ``Logger`` of the run (opened on first use)."""
        return self._run.get()

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        params: dict[str, Any] = {}
        config = getattr(model, "config", None)
        if config is not None:
            params.update(flatten(config))
        params.update(flatten(args))  # TrainingArguments.to_dict() hides tokens
        self.logger.log_params(params)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        row = {metric_name(k): v for k, v in numbers(logs).items()}
        if row:
            self.logger.log_metrics(row, step=state.global_step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not (self._log_checkpoints and state.is_world_process_zero):
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder):
            upload_path(self.logger, f"checkpoints/checkpoint-{state.global_step}", folder)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._run.end("completed")

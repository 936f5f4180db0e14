"""A Keras 3 callback: ``model.fit(x, y, callbacks=[AmltrackCallback("mnist")])``.

from amltrack.integrations.keras import AmltrackCallback
model.fit(x, y, epochs=3, callbacks=[AmltrackCallback("mnist", log_every_n_batches=10)])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._logger import Logger as _RunLogger
from ._common import RunRef, flatten, numbers

try:
    import keras
except ImportError:
    raise ImportError("amltrack.integrations.keras needs Keras 3: pip install keras") from None

_Base: Any = keras.callbacks.Callback


class AmltrackCallback(_Base):
    """Keras' epoch logs (and batch logs every ``log_every_n_batches``), the optimizer's config and
    ``fit``'s arguments, into an amltrack run.

    Each epoch's logs are one row at the epoch's index (``loss``, ``accuracy``, ``val_loss``, ... as
    Keras names them); with ``log_every_n_batches=N``, every Nth batch's logs are a row of
    ``batch/<name>`` at the count of batches since training began. On train begin, the optimizer's
    ``get_config()`` becomes params under ``optimizer/`` and ``fit``'s ``epochs`` and ``steps`` (per
    epoch) under ``fit/``. The run ends on train end if this callback started it. Other keyword
    arguments go to ``amltrack.get_logger()``.

        model.fit(x, y, epochs=5, validation_split=0.1, callbacks=[AmltrackCallback("mnist")])
    """

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
        store: str | os.PathLike[str] | None = None,
        log_every_n_batches: int = 0,
        **options: Any,
    ) -> None:
        super().__init__()
        if type(log_every_n_batches) is not int or log_every_n_batches < 0:
            raise ValueError(
                f"log_every_n_batches={log_every_n_batches!r} is not an int >= 0 (0: no batch logs)"
            )
        self._run = RunRef(experiment, name, tags, store, options)
        self._every = log_every_n_batches
        self._batches = 0  # since training began, across epochs

    @property
    def logger(self) -> _RunLogger:
        """The amltrack ``Logger`` of the run (opened on first use)."""
        return self._run.get()

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._batches = 0
        params: dict[str, Any] = {}
        fit = {k: v for k, v in (self.params or {}).items() if k in ("epochs", "steps")}
        params.update(flatten(fit, "fit"))
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            params.update(flatten(optimizer.get_config(), "optimizer"))
        self.logger.log_params(params)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batches += 1
        if self._every and logs and self._batches % self._every == 0:
            row = {f"batch/{k}": v for k, v in numbers(logs).items()}
            if row:
                self.logger.log_metrics(row, step=self._batches - 1)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        row = numbers(logs or {})
        if row:
            self.logger.log_metrics(row, step=epoch)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._run.end("completed")

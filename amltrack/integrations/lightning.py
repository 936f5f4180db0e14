"""A PyTorch Lightning logger: ``Trainer(logger=AmltrackLogger("mnist"))``.

    from amltrack.integrations.lightning import AmltrackLogger
    trainer = lightning.pytorch.Trainer(max_epochs=3, logger=AmltrackLogger("mnist", log_model=True))

It subclasses ``lightning.pytorch.loggers.Logger``, or ``pytorch_lightning.loggers.Logger`` when only
that package is installed or when it, not ``lightning``, is the one imported already.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from .._logger import Logger as _RunLogger
from ._common import RunRef, flatten, numbers, upload_path

if "pytorch_lightning" in sys.modules and "lightning" not in sys.modules:
    import pytorch_lightning as _pl  # type: ignore[import-not-found,unused-ignore]
else:
    try:
        import lightning.pytorch as _pl  # type: ignore[import-not-found,unused-ignore,no-redef]
    except ImportError:
        try:
            import pytorch_lightning as _pl  # type: ignore[import-not-found,unused-ignore,no-redef]
        except ImportError:
            raise ImportError(
                "amltrack.integrations.lightning needs PyTorch Lightning: pip install lightning"
            ) from None

_Base: Any = _pl.loggers.Logger
_rank_zero_only: Any = _pl.utilities.rank_zero_only
_rank_zero_experiment: Any = _pl.loggers.logger.rank_zero_experiment

# Lightning's finalize() statuses, as a run's
_STATUS = {"success": "completed", "finished": "completed", "failed": "failed"}


class AmltrackLogger(_Base):
    """Lightning's metrics, hyperparameters and (with ``log_model``) checkpoints, into an amltrack run.

    It logs into the process's open run if there is one; otherwise it starts a run in ``experiment``
    named ``name`` (with ``tags``, in ``store``) on first use and ends it when training ends. Only
    the process of global rank 0 logs. ``log_model``: False, no checkpoints; True, those the
    ``ModelCheckpoint`` keeps, stored when training ends; ``"all"``, each one as it is saved.
    ``save_dir`` is where Lightning writes checkpoints (None: the Trainer's ``default_root_dir``).
    Other keyword arguments go to ``amltrack.get_logger()`` (``outputs=``, ``system_metrics=``, ...).

        trainer = Trainer(logger=AmltrackLogger("mnist", name="baseline", log_model=True))
    """

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
        store: str | os.PathLike[str] | None = None,
        log_model: bool | str = False,
        save_dir: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if log_model not in (True, False, "all"):
            raise ValueError(f"log_model={log_model!r} is not True, False or 'all'")
        self._run = RunRef(experiment, name, tags, store, options)
        self._log_model = log_model
        self._save_dir = None if save_dir is None else os.fspath(save_dir)
        self._checkpoint_callback: Any = None
        self._logged: dict[str, float] = {}  # checkpoint path: its mtime when stored

    @property
    @_rank_zero_experiment
    def experiment(self) -> _RunLogger:
        """The amltrack ``Logger`` of the run, opened on first use: ``.log()``, ``.upload()``, ..."""
        return self._run.get()

    @property
    def name(self) -> str:
        """The run's experiment."""
        if self._run.logger is None and self._run.experiment is not None:
            return self._run.experiment
        info = self.experiment._identity or {}
        return str(info.get("experiment") or self._run.experiment or "default")

    @property
    def version(self) -> str:
        """The run's id."""
        return self.experiment.run_id

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @_rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """The hyperparameters as the run's params, flattened (``docs/integrations.md``)."""
        self.experiment.log_params(flatten(params))

    @_rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """One row of the metrics, at Lightning's step."""
        row = numbers(metrics)
        if row:
            self.experiment.log_metrics(row, step=step)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._store_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    @_rank_zero_only
    def finalize(self, status: str) -> None:
        """At the end of training: the kept checkpoints stored, the run ended with the matching status
        (success: completed, failed: failed) if this logger started it, else only flushed."""
        if self._run.logger is None:
            return
        if self._checkpoint_callback is not None:
            self._store_checkpoints(self._checkpoint_callback)
        self._run.end(_STATUS.get(status, "completed"))

    @_rank_zero_only
    def _store_checkpoints(self, callback: Any) -> None:
        paths = {*getattr(callback, "best_k_models", {}), callback.last_model_path, callback.best_model_path}
        for path in sorted(p for p in paths if p and os.path.isfile(p)):
            mtime = os.path.getmtime(path)
            if self._logged.get(path) == mtime:
                continue  # stored already, and not saved again since
            upload_path(self.experiment, f"checkpoints/{os.path.basename(path)}", path)
            self._logged[path] = mtime

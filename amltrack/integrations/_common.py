"""What the integrations share: the run they log into, and how a framework's settings become params."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._lifecycle import registry
from .._logger import Logger, get_logger

MAX_PARAM_CHARS = 1000  # a longer value (a long list, an object's repr) is cut to this, ending in "..."
_SCALARS = (str, int, float, bool, type(None))


class RunRef:
    """The run an integration logs into: the process's open one, else one it starts (and ends) itself.

    It is opened on first use, so that creating the logger or callback costs nothing and, under
    data-parallel training, only the main process ever opens a run.
    """

    def __init__(
        self,
        experiment: str | None,
        name: str | None,
        tags: Mapping[str, Any] | None,
        store: str | os.PathLike[str] | None,
        options: dict[str, Any],
    ) -> None:
        self.experiment, self.name, self.tags, self.store = experiment, name, tags, store
        self.options = options
        self.logger: Logger | None = None
        self.owned = False  # started here: ended here

    def get(self) -> Logger:
        logger = self.logger
        if logger is not None and not logger.finished:
            return logger
        if logger is not None and self.owned:
            # Ended by an earlier end of training (Lightning's fit, then test): the same run goes on.
            self.logger = get_logger(store=logger.store, resume=logger.run_id, **self._kept())
            return self.logger
        current = registry.current
        if current is not None and not current.finished:
            self.logger, self.owned = current, False
        else:
            self.logger = get_logger(
                self.experiment, name=self.name, tags=self.tags, store=self.store, **self.options
            )
            self.owned = True
        return self.logger

    def _kept(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k in ("outputs", "system_metrics")}

    def end(self, status: str) -> None:
        """End the run with ``status`` if it was started here; flush it otherwise (its owner ends it)."""
        logger = self.logger
        if logger is None or logger.finished:
            return
        if self.owned:
            logger.finish(status)
        else:
            logger.flush()


def flatten(params: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """A framework's settings as flat params, by the rule docs/integrations.md gives: nested mappings
    (and argparse Namespaces, dataclasses, objects with ``to_dict()``) become ``outer/inner`` names;
    str, int, float, bool and None stay as they are; numpy and torch scalars become numbers; lists
    and tuples become their JSON text (``"[64, 32]"``); anything else its ``str()``; every string cut
    to 1,000 characters.

        flatten({"model": {"layers": [64, 32], "act": "relu"}, "lr": 0.1})
        # {"model/layers": "[64, 32]", "model/act": "relu", "lr": 0.1}
    """
    out = {} if out is None else out
    mapping = _as_mapping(params)
    if mapping is None:
        if prefix:
            out[prefix] = _param_value(params)
        return out
    for key, value in mapping.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if _as_mapping(value) is not None:
            flatten(value, name, out)
        else:
            out[name] = _param_value(value)
    return out


def _as_mapping(value: Any) -> Mapping[Any, Any] | None:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, type):
        return None
    # to_dict() first: TrainingArguments is a dataclass whose to_dict() hides its tokens.
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            d = to_dict()
        except Exception:
            d = None
        if isinstance(d, Mapping):
            return d
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if type(value).__name__ == "Namespace" and hasattr(value, "__dict__"):
        return vars(value)
    return None


def _param_value(value: Any) -> Any:
    if not isinstance(value, _SCALARS):
        item = getattr(value, "item", None)
        if callable(item) and getattr(value, "ndim", 0) == 0:
            try:
                value = item()
            except Exception:
                pass
    if isinstance(value, (list, tuple)):
        try:
            value = json.dumps(value, default=str)
        except (TypeError, ValueError):
            value = str(value)
    elif not isinstance(value, _SCALARS):
        value = str(value)
    if isinstance(value, str) and len(value) > MAX_PARAM_CHARS:
        value = value[: MAX_PARAM_CHARS - 3] + "..."
    return value


def numbers(values: Mapping[str, Any]) -> dict[str, float | int | bool]:
    """The entries of a framework's logs that are numbers (tensors and numpy scalars included)."""
    out: dict[str, float | int | bool] = {}
    for key, value in values.items():
        if not isinstance(value, (int, float, bool)):
            item = getattr(value, "item", None)
            if not callable(item) or getattr(value, "ndim", 0) != 0:
                continue
            try:
                value = item()
            except Exception:
                continue
            if not isinstance(value, (int, float, bool)):
                continue
        out[str(key)] = value
    return out


def upload_path(logger: Logger, artifact: str, path: str | os.PathLike[str]) -> None:
    """Store a file, or every file under a folder, as the run's artifact(s) under ``artifact``."""
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file() and not f.is_symlink():
                logger.upload_file(f"{artifact}/{f.relative_to(p).as_posix()}", f)
    elif p.is_file():
        logger.upload_file(artifact, p)

"""Pushing promoted assets (``amltrack history promote``) with the runs, exactly once.

Every version of every asset in the store goes to an amltrack server after the runs (with ``--run``,
only the versions promoted from those runs). Each version's ledger,
``assets/<name>/<version>/sync/<remote-key>.json``, records the version it became on that remote,
so a later sync asks nothing about it; ``--all`` asks again. The server places a version once,
however often its asset.json is sent (``server/_assets.py``), and numbers it among that server's
versions of the name: a team's server numbers what everyone pushes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from .. import _assets
from .. import _format as fmt
from .._errors import AmltrackError
from . import _ledger as ledger
from ._errors import SyncError
from ._remote import Progress, Remote


@dataclass
class AssetOutcome:
    """What sync did with one asset version: ``pushed``, ``up_to_date``, ``would_push`` or ``failed``.

    ``remote_ref`` is the version it is on the remote (``NAME:VERSION``; the numbers are the
    remote's own); ``reason`` says why it failed.
    """

    ref: str
    outcome: str
    remote_ref: str | None = None
    bytes: int = 0
    reason: str | None = None


def push_assets(
    chosen: list[_assets.Asset],
    remote: Remote,
    key: str,
    *,
    all_assets: bool,
    dry_run: bool,
    progress: Progress,
    not_tried: str,
) -> tuple[list[AssetOutcome], SyncError | None]:
    """Push the asset versions ``chosen`` to an amltrack server.

    One version failing does not stop the others; an error every version would meet (returned) does:
    the versions after it are reported failed, "not tried".
    """
    out: list[AssetOutcome] = []
    for i, asset in enumerate(chosen):
        result = AssetOutcome(asset.ref, "up_to_date")
        out.append(result)
        try:
            body = (asset.dir / _assets.ASSET_FILE).read_bytes()  # read once: its hash names the push
            origin = hashlib.sha256(body).hexdigest()
            entry = ledger.read(asset.dir, key)
            if not all_assets and entry and entry.get("origin") == origin and entry.get("remote_ref"):
                result.remote_ref = entry["remote_ref"]
            else:
                pushed = remote.push_asset(asset, body, progress, dry_run=dry_run)  # type: ignore[attr-defined]
                if dry_run:
                    result.bytes = pushed.planned
                    result.outcome = "would_push" if pushed.planned else "up_to_date"
                else:
                    result.bytes, result.remote_ref = pushed.sent, pushed.remote_ref
                    # Already there: placed by an earlier push (whose answer may have been lost), or
                    # the remote's latest version of the name holds the same files.
                    result.outcome = "up_to_date" if pushed.existing else "pushed"
                    ledger.write(
                        asset.dir,
                        key,
                        {
                            "kind": remote.kind,
                            "remote": remote.url,
                            "asset": asset.ref,
                            "remote_ref": pushed.remote_ref,
                            "origin": origin,
                            "pushed": fmt.utc_iso(time.time()),
                        },
                    )
        except SyncError as e:
            result.outcome, result.reason = "failed", str(e)
            if e.remote_wide:
                out += [AssetOutcome(a.ref, "failed", reason=f"{not_tried}: {e}") for a in chosen[i + 1 :]]
                return out, e
        except (AmltrackError, OSError) as e:
            result.outcome, result.reason = "failed", str(e)
        finally:
            progress.finish()
    return out, None


def asset_counts(outcomes: list[AssetOutcome]) -> dict[str, Any]:
    counts = {k: 0 for k in ("pushed", "up_to_date", "would_push", "failed")}
    for a in outcomes:
        counts[a.outcome] += 1
    return counts

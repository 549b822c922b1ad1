"""Live module settings: :class:`ppe.config.EdgeConfig` updated from module-twin desired properties.

The twin's desired properties use EdgeConfig's field names. Only the fields in :data:`LIVE_FIELDS`
can change at run time; other keys (and the twin's ``$version``) are ignored with a log line.
Values are checked strictly (pydantic strict mode, plus EdgeConfig's bounds): JSON numbers only,
never a string or a boolean for a number (``true`` is not 1), an integer where the field is an
integer, and no infinity or NaN. A patch is validated as a whole first; if that fails, each key is
tried on its own so the valid ones still apply, and every rejected key is logged with the reason
while its old value stays. A ``null`` value (a property removed from the twin) restores the
default.

The last applied settings are saved as JSON next to the outbox, so a module that restarts while
the hub is unreachable keeps the configuration it was last given.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ppe.config import EdgeConfig

logger = logging.getLogger(__name__)

#: EdgeConfig fields the module twin may change while the module runs.
LIVE_FIELDS: tuple[str, ...] = (
    "score_threshold",
    "alert_min_frames",
    "alert_window_frames",
    "alert_cooldown_s",
    "telemetry_interval_s",
)
STATE_FILE = "settings.json"

Listener = Callable[[EdgeConfig], None]


def _refuse_constant(name: str) -> Any:
    """``json.loads`` hook: ``Infinity``/``NaN`` are not JSON and never valid settings."""
    raise ValueError(f"{name} is not a valid JSON number")


class LiveSettings:
    """The settings in force, with validation, persistence and change listeners. Thread-safe.

    Args:
        initial: the starting settings (defaults or the packaged config).
        state_file: where the last applied twin settings are kept (None: not kept).
    """

    def __init__(self, initial: EdgeConfig | None = None, state_file: Path | None = None) -> None:
        self._config = (initial or EdgeConfig()).model_copy()
        self._state_file = state_file
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._load_state()

    def _load_state(self) -> None:
        if self._state_file is None or not self._state_file.is_file():
            return
        try:
            saved = json.loads(
                self._state_file.read_text(encoding="utf-8"), parse_constant=_refuse_constant
            )
            restored = {key: saved[key] for key in LIVE_FIELDS if key in saved}
            merged = {**self._config.model_dump(), **restored}
            self._config = EdgeConfig.model_validate(merged, strict=True)
        except (OSError, ValueError, TypeError, ValidationError) as error:
            logger.warning("ignoring saved settings %s: %s", self._state_file, error)
            return
        logger.info("restored settings from %s: %s", self._state_file, self.live_values())

    def _save_state(self) -> None:
        if self._state_file is None:
            return
        tmp = self._state_file.with_name(self._state_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.live_values(), indent=2, allow_nan=False), "utf-8")
            tmp.replace(self._state_file)
        except OSError as error:
            logger.warning("cannot save settings to %s: %s", self._state_file, error)

    @property
    def config(self) -> EdgeConfig:
        """A copy of the settings in force."""
        with self._lock:
            return self._config.model_copy()

    def live_values(self) -> dict[str, Any]:
        """The live-updatable fields and their values."""
        values = self._config.model_dump()
        return {name: values[name] for name in LIVE_FIELDS}

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(config)`` after every change (from the thread that applied it)."""
        self._listeners.append(listener)

    def apply(self, desired: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Apply a desired-properties patch (or the full desired document).

        Args:
            desired: twin desired properties; ``$``-prefixed keys are metadata and ignored.

        Returns:
            ``(applied, rejected)``: the keys that changed with their new values, and the keys
            refused with the reason. Unknown keys are logged and in neither.
        """
        defaults = EdgeConfig().model_dump()
        wanted: dict[str, Any] = {}
        for key, value in desired.items():
            if key.startswith("$"):
                continue
            if key not in LIVE_FIELDS:
                logger.warning(
                    "twin property %r ignored: the module applies %s", key, ", ".join(LIVE_FIELDS)
                )
                continue
            wanted[key] = defaults[key] if value is None else value
        rejected: dict[str, str] = {}
        with self._lock:
            current = self._config.model_dump()
            try:
                candidate = EdgeConfig.model_validate({**current, **wanted}, strict=True)
            except ValidationError:
                # Try key by key (window length before K so a joint change can pass).
                accepted = dict(current)
                for key in sorted(wanted, key=lambda name: name != "alert_window_frames"):
                    try:
                        EdgeConfig.model_validate({**accepted, key: wanted[key]}, strict=True)
                    except ValidationError as error:
                        reason = "; ".join(
                            str(item["msg"]).removeprefix("Value error, ")
                            for item in error.errors()
                        )
                        rejected[key] = reason
                        logger.error(
                            "twin property %s=%r rejected (%s); keeping %r",
                            key,
                            wanted[key],
                            reason,
                            current[key],
                        )
                    else:
                        accepted[key] = wanted[key]
                candidate = EdgeConfig.model_validate(accepted, strict=True)
            new = candidate.model_dump()
            applied = {key: new[key] for key in LIVE_FIELDS if new[key] != current[key]}
            self._config = candidate
            if applied:
                self._save_state()
        if applied:
            logger.info("settings applied from the module twin: %s", applied)
            for listener in self._listeners:
                listener(candidate.model_copy())
        return applied, rejected

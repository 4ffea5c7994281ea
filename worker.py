"""An inference worker for ORCHESTRATOR_BACKEND=redis: `python -m worker` (same settings as the gateways).

Takes meetings from the Redis jobs stream, transcribes them live, finishes them (speakers,
summary, hooks, store) and sends everything back to the gateway holding the WebSocket. Run any
number of them; a worker that dies has its meetings taken over by another one. The logic is in
`services/redis_backend/` (`worker_process.py`).
"""

from __future__ import annotations

import asyncio
import logging

from services.errors import ConfigurationError
from services.logging_setup import configure_logging
from services.redis_backend.worker_process import run_worker
from services.setting_names import unknown_setting_warnings
from services.settings import get_settings

logger = logging.getLogger("meeting_assistant.worker")


def main() -> None:
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        raise SystemExit(f"meeting assistant worker: {exc}") from None
    if settings.orchestrator_backend != "redis":
        raise SystemExit("meeting assistant worker: set ORCHESTRATOR_BACKEND=redis and REDIS_URL to run workers")
    configure_logging(settings)
    for warning in unknown_setting_warnings():
        logger.warning(warning)
    try:
        asyncio.run(run_worker(settings))
    except ConfigurationError as exc:
        raise SystemExit(f"meeting assistant worker: {exc}") from None


if __name__ == "__main__":
    main()

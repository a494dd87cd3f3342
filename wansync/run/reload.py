"""SIGHUP: a new config everywhere at once (one `Live`), and the key; folders need a
restart (docs/service.md). The loop calls `reload` between two steps of a tick."""

from __future__ import annotations

import dataclasses

from wansync import config, log
from wansync.config import Live
from wansync.core.errors import ConfigError
from wansync.core.scheduler import Scheduler
from wansync.remote.api import TaskApi


def reload(live: Live, scheduler: Scheduler, api: TaskApi) -> bool:
    """Read the config file and the key again and apply both; False (logged, the old
    ones kept) when either is unusable."""
    logger = log.get("wansync.daemon")
    old = live.cfg
    try:
        new = config.load(str(old.source) if old.source else None, required=False)
        key = config.load_api_key(new)
    except ConfigError as exc:
        logger.error("config.reload_failed", error=str(exc), detail="keeping the old one")
        return False
    log.add_secret(key)
    if (new.inbox, new.outbox, new.failed) != (old.inbox, old.outbox, old.failed):
        logger.warning("config.folders_unchanged", detail="folders change on restart only")
    live.cfg = dataclasses.replace(new, inbox=old.inbox, outbox=old.outbox, failed=old.failed)
    log.set_level(new.log.level)
    scheduler.interval = new.poll.interval
    scheduler.max_per_second = new.poll.max_per_second
    api.set_key(key)
    logger.info("config.reloaded", source=str(new.source))
    return True

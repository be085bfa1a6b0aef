"""Queueing Celery tasks by name: a service never imports the tasks module that calls it back.

Tasks import their services; services queue tasks through here, by the name each task is
registered under (``@shared_task(name=...)``). An unknown name fails at once (KeyError) rather than
queueing a message no worker would ever take, and every call site is exercised by the tests.

A task queued after a commit may fail to reach the Celery broker (Redis down or restarting). The
change it follows is committed by then, and every task's work is also found by a periodic sweep
from the database, so the failure is logged and the caller's answer stands: a person whose request
was accepted never gets a server error because Redis hiccupped.
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import current_app
from django.db import transaction

log = logging.getLogger(__name__)


def _task(name: str):
    tasks = current_app.tasks
    if name not in tasks:
        # A web process registers the task modules (each app's tasks.py) on first use.
        current_app.loader.import_default_modules()
    return tasks[name]


def enqueue(name: str, *args, eta: datetime | None = None) -> None:
    """Send the task now (with an ETA if given)."""
    task = _task(name)
    if eta is None:
        task.delay(*args)
    else:
        task.apply_async(args, eta=eta)


def enqueue_safely(name: str, *args, eta: datetime | None = None) -> bool:
    """Send the task now; if the Celery broker cannot take it, log that and return False.

    For work that a periodic sweep also finds in the database, so that a lost message only delays it.
    """
    _task(name)  # an unknown name is a bug: raise it
    try:
        enqueue(name, *args, eta=eta)
    except Exception:
        if current_app.conf.task_always_eager:
            raise  # the task itself failed, in this process (tests): never hide that
        log.error("could not queue %s%r; the periodic sweep will do it", name, args, exc_info=True)
        return False
    return True


def enqueue_on_commit(name: str, *args, eta: datetime | None = None) -> None:
    """Send the task once the current transaction has committed (never from inside it).

    A failure to send is logged, never raised into the committed caller (see above).
    """
    _task(name)
    transaction.on_commit(lambda: enqueue_safely(name, *args, eta=eta))

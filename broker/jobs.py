"""Queueing Celery tasks by name: a service never imports the tasks module that calls it back.

Tasks import their services; services queue tasks through here, by the name each task is
registered under (``@shared_task(name=...)``). An unknown name fails at once (KeyError) rather than
queueing a message no worker would ever take, and every call site is exercised by the tests.
"""

from __future__ import annotations

from datetime import datetime

from celery import current_app
from django.db import transaction


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


def enqueue_on_commit(name: str, *args, eta: datetime | None = None) -> None:
    """Send the task once the current transaction has committed (never from inside it)."""
    transaction.on_commit(lambda: enqueue(name, *args, eta=eta))

"""The Celery app: ``celery -A broker worker --beat`` runs a worker with the scheduler."""

import logging
import os

from celery import Celery
from celery.signals import beat_init, worker_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")

app = Celery("broker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The request id travels from a request into the tasks it queues (message headers), in the web
# processes and in the worker alike.
import broker.telemetry.context  # noqa: E402, F401
from broker.telemetry.multiproc import remove_dead_files  # noqa: E402


@beat_init.connect
def _first_heartbeat(**kwargs) -> None:
    """Beat queues a heartbeat as it starts, not one HEARTBEAT_INTERVAL later: /readyz is ready as soon
    as a worker runs it."""
    try:
        app.send_task("broker.tasks.heartbeat", expires=60)
    except Exception:
        logging.getLogger(__name__).warning("could not queue the first heartbeat", exc_info=True)


@worker_init.connect
def _clean_metrics(**kwargs) -> None:
    """A starting worker clears the metrics files of processes that are gone (gunicorn does the same)."""
    remove_dead_files()


log = logging.getLogger(__name__)

# What a worker has done as soon as it is up, rather than one SWEEP_INTERVAL later (beat's first
# run): a worker that replaces a crashed one ends the overdue grants at once, and queues again the
# expiry ticks the crashed one held (grants/push.py). By name: the kernel imports no app.
CATCH_UP = (
    ("grants.tasks.sweep", {"rearm": True}),
    ("approvals.tasks.sweep_eligibility", {}),
    ("approvals.tasks.expire_requests", {}),
)


@worker_ready.connect
def catch_up(**kwargs) -> None:
    for name, options in CATCH_UP:
        try:
            app.send_task(name, kwargs=options)
        except Exception:
            log.warning("could not queue %s at start", name, exc_info=True)

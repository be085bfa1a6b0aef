"""The Celery app: ``celery -A broker worker --beat`` runs a worker with the scheduler."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")

app = Celery("broker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The request id travels from a request into the tasks it queues (message headers), in the web
# processes and in the worker alike.
import broker.telemetry.context  # noqa: E402, F401

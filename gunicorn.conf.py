"""gunicorn for the broker: ``gunicorn -c gunicorn.conf.py broker.wsgi`` (the Procfile's web process).

Everything comes from the environment, like the broker's own settings (README, "Production"):

- ``GUNICORN_BIND`` (default ``0.0.0.0:$PORT``, PORT 8000), ``WEB_CONCURRENCY`` worker processes
  (default 2 per core plus one, at most 8), ``GUNICORN_TIMEOUT`` (30 s: a request is cut off after it;
  every call the broker makes is bounded well below), ``GUNICORN_MAX_REQUESTS`` (recycling).
- Forwarded headers follow ``TRUSTED_PROXY_COUNT``: with 0 (no proxy) gunicorn trusts no
  ``X-Forwarded-*`` header from anyone; with proxies, from the addresses in ``FORWARDED_ALLOW_IPS``
  (default the loopback, where a local reverse proxy connects from). The client address in the
  access log and the audit trail is the one the nearest trusted proxy saw.
- The access log (stdout) names the client, the request line without its query string, the status,
  the size, the time and the request id; paths are redacted (approver links carry a token).
  ``LOG_FORMAT=json`` makes both gunicorn logs JSON lines like the application's.
- ``PROMETHEUS_MULTIPROC_DIR``: the folder the workers write their metrics to (see docs/operations.md);
  the master clears the files of processes that are gone when it starts.
"""

import os

from broker.telemetry.multiproc import remove_dead_files

_cores = os.cpu_count() or 1
_proxies = int(os.environ.get("TRUSTED_PROXY_COUNT", "0") or 0)

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", str(min(2 * _cores + 1, 8))))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = max_requests // 10
# Heartbeat files of the workers in memory, not on a disk that may stall.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - gunicorn's documented advice

# Forwarded headers: trusted only when the broker is told there are proxies, and only from them.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1" if _proxies else "")
if not _proxies:
    secure_scheme_headers = {}

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = "broker.telemetry.gunicorn.Logger"
access_log_format = '%(client)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s "%(a)s"'


def on_starting(server):
    removed = remove_dead_files()
    if removed:
        server.log.info("metrics: removed the files of %s process(es) that are gone", removed)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

"""What the broker tells its operators about itself: request ids, structured logs, process metrics.

Kernel plumbing every app may use (one-line calls from services and connectors). The endpoints that
serve it (``/healthz``, ``/readyz``, ``/metrics``) and the figures read from the database live in
the shell, ``broker/ops/``, because they read every app's rows.
"""

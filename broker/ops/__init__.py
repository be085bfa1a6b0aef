"""The operator's endpoints: ``/healthz``, ``/readyz`` and ``/metrics`` (docs/operations.md).

In the shell: the figures read every app's rows. The counters kept by the code paths themselves
are kernel plumbing, in ``broker/telemetry/``.
"""

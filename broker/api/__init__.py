"""The REST API: plumbing shared by every API view (errors, parsers, strict input, filters, pagination,
schema, audit context) and, in ``views`` and ``urls``, the endpoints that span the apps.

Modules named in REST_FRAMEWORK's settings are imported by DRF while its own views are still
loading: they must not import DRF's views (nor anything that does).
"""

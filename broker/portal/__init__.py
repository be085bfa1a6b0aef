"""The web portal's shared pieces: helpers, the ask form, middleware, context processors, charts, tags.

All of it is kernel (no app imported) except ``home``, the one page that belongs to no app.
"""

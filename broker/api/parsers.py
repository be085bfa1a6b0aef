"""Reading request bodies and choosing the answer's format: JSON only, bounded, never a 500.

Named in REST_FRAMEWORK's settings, so DRF imports this module while ``rest_framework.views`` is
still loading: it must not import DRF's views (nor anything that does).
"""

from __future__ import annotations

from rest_framework import exceptions, negotiation, parsers
from rest_framework.utils import json

# No API body is anywhere near this; a larger one is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = f"the request body is larger than {MAX_BODY_BYTES} bytes"
    default_code = "payload_too_large"


class JSONParser(parsers.JSONParser):
    """UTF-8 JSON (RFC 8259), bounded in size. Whatever cannot be read is a 400, never a 500:
    bad UTF-8, NaN, or nesting deep enough to exhaust the stack. Bodies are read as UTF-8 whatever
    charset parameter they declare (RFC 8259: JSON exchanged between systems is UTF-8)."""

    max_bytes = MAX_BODY_BYTES

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read(self.max_bytes + 1)
        if len(raw) > self.max_bytes:
            raise PayloadTooLarge(f"the request body is larger than {self.max_bytes} bytes")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=json.strict_constant)
        except UnicodeDecodeError:
            raise exceptions.ParseError("the body is not UTF-8") from None
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"the body is not valid JSON: {str(exc)[:200]}") from None


class JSONOnly(negotiation.DefaultContentNegotiation):
    """Answers are JSON whatever Accept says (no 406); the audit export picks its format by `format`."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

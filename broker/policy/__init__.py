"""Policy as code: read, validate and apply the roles-and-eligibility YAML file (docs/policy.md).

Validation is complete before anything is written: a bad file changes nothing and every problem
is reported with its line in the file. Applying is idempotent: a second run finds nothing to do,
writes nothing and audits nothing.

`reader` turns YAML into plain data with a line for every path, `schema` says what the file may
contain, `apply` makes the catalog match a validated policy.
"""

from broker.policy.apply import NOT_CHANGES, Change, apply
from broker.policy.reader import PolicyError, PolicyInvalid
from broker.policy.schema import Policy, load

__all__ = ["NOT_CHANGES", "Change", "Policy", "PolicyError", "PolicyInvalid", "apply", "load"]

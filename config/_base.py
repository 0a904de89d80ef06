"""What every config model shares: unknown keys refused, immutable, inputs kept out of errors."""

from __future__ import annotations

from pydantic import ConfigDict

# hide_input_in_errors: a ValidationError's str() would otherwise echo the offending value,
# which for a secret field (or a literal pasted in the wrong key) is the secret itself.
MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

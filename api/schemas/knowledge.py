"""The JSON schema of `advanced.knowledge`: the core's rules for identifiers and prompt templates
(`persguard_core.spec.Knowledge`), spelled as JSON Schema so that `/openapi.json` states them.

The core enforces them (its messages name the rule broken); these patterns say the same thing, and
tests/api/test_openapi_conformance.py checks that they accept exactly what the core accepts.
"""

from __future__ import annotations

from typing import Any

from persguard_core.spec import MAX_IDENTIFIER_LENGTH, MAX_IDENTIFIERS, MAX_TEMPLATE_LENGTH, MAX_TEMPLATES

# Python's str.isspace() characters, which the core refuses in an identifier; `\s` differs between regex dialects.
_WHITESPACE = "".join(f"\\u{ord(c):04x}" for c in map(chr, range(0x3001)) if c.isspace())
IDENTIFIER_PATTERN = rf"^[^{{}}{_WHITESPACE}]+$"

# A template is a sequence of literal characters, escaped braces `{{` `}}` and the two plain fields, holding each
# field at least once. The tokens are unambiguous, so the pattern matches exactly the templates the core accepts.
_TOKEN = r"(?:[^{}]|\{\{|\}\}|\{identifier\}|\{class_noun\})"
TEMPLATE_PATTERN = (
    rf"^{_TOKEN}*(?:\{{identifier\}}{_TOKEN}*\{{class_noun\}}|\{{class_noun\}}{_TOKEN}*\{{identifier\}}){_TOKEN}*$"
)

KNOWLEDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "who the attacker is assumed to be: the identifiers and prompt templates the protection is keyed "
    "on. Templates are filled in with the identifier and the subject's class noun; their only replacement fields "
    "are the plain {identifier} and {class_noun} (both required), literal braces are written {{ and }}",
    "properties": {
        "mode": {"type": "string", "enum": ["white-box", "gray-box"]},
        "identifiers": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_IDENTIFIERS,
            "items": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_IDENTIFIER_LENGTH,
                "pattern": IDENTIFIER_PATTERN,
                "description": "one word: no whitespace, no braces",
            },
        },
        "templates": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_TEMPLATES,
            "items": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_TEMPLATE_LENGTH,
                "pattern": TEMPLATE_PATTERN,
                "description": 'e.g. "a photo of {identifier} {class_noun}"',
            },
        },
    },
}

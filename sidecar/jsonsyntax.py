"""Is this text JSON? Without recursion, so that nesting of any depth gets a true answer.

Only used on the error path, when the C parser gives up on depth: there, a document nested
too deeply (valid JSON, refused with 422) must be told from one that is not JSON at all (400).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    rb"""[ \t\n\r]*(?:
      (?P<string>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")
    | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    | (?P<literal>true|false|null)
    | (?P<punct>[{}\[\]:,])
    )""",
    re.VERBOSE,
)
_TRAILING_SPACE = re.compile(rb"[ \t\n\r]*\Z")


def is_json(data: bytes) -> bool:
    """One JSON value and nothing else (RFC 8259), checked with an explicit stack."""
    # What may come next: "value", "key" (or "}" right after "{"), ":", "," or a closer.
    stack: list[bytes] = []  # open containers: b"{" or b"["
    expect = "value"
    first_in_container = False
    position = 0
    while True:
        if expect == "end" and not stack:
            return _TRAILING_SPACE.match(data, position) is not None
        match = _TOKEN.match(data, position)
        if match is None:
            return False
        position = match.end()
        punct = match.group("punct")
        if expect in ("value", "key"):
            closing = punct in (b"]", b"}") and first_in_container
            if closing and stack and (punct == b"]") == (stack[-1] == b"["):
                stack.pop()
                expect, first_in_container = "end", False
            elif expect == "key":
                if match.group("string") is None:
                    return False
                expect, first_in_container = ":", False
            elif punct in (b"{", b"["):
                stack.append(punct)
                expect = "key" if punct == b"{" else "value"
                first_in_container = True
            elif punct is None:
                expect, first_in_container = "end", False
            else:
                return False
        elif expect == ":":
            if punct != b":":
                return False
            expect = "value"
        else:  # after a value: "," or the container's closer
            if not stack:
                return False
            if punct == b",":
                expect = "key" if stack[-1] == b"{" else "value"
            elif punct == (b"}" if stack[-1] == b"{" else b"]"):
                stack.pop()
            else:
                return False

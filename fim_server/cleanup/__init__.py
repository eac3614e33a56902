"""Post-processing: turn the model's raw middle into the edit worth showing as ghost text.

One rule a file (its golden cases in tests/golden/, named in the file's docstring), each
mode's rule list in chain.py, which runs it on whole answers (`clean_edit`) and on
streamed ones (`completion_done`, the early stop handed to backends). Everything works on
"\\n" line breaks. docs/modes.md lists the rules per mode.
"""

from .chain import BLOCK_RULES, LINE_RULES, RULES, clean_edit, completion_done
from .degenerate import is_degenerate
from .rule import CleanupTrace, Edit, Rule, RuleStep, Stream
from .special_tokens import strip_special_tokens
from .syntax import SyntaxCheck

__all__ = [
    "BLOCK_RULES",
    "LINE_RULES",
    "RULES",
    "CleanupTrace",
    "Edit",
    "Rule",
    "RuleStep",
    "Stream",
    "SyntaxCheck",
    "clean_edit",
    "completion_done",
    "is_degenerate",
    "strip_special_tokens",
]

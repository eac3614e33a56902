"""What the model is shown at the cursor: the document (documents.py, texts and their
incremental syntax trees), its language (languages.py, the grammars), the completion mode
(modes.py), the window around the cursor (window.py) and other files' chunks
(crossfile.py), put together by context.py (`build_context`). This package's names are
context.py's: the rest of the server imports them from here.
"""

from .context import (
    CompletionContext,
    ContextSettings,
    CountTokens,
    CrossFileIndex,
    Literal,
    Mode,
    Source,
    build_context,
    decide_mode,
    text_for_context,
)

__all__ = [
    "CompletionContext",
    "ContextSettings",
    "CountTokens",
    "CrossFileIndex",
    "Literal",
    "Mode",
    "Source",
    "build_context",
    "decide_mode",
    "text_for_context",
]

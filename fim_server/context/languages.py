"""The languages the server understands: grammar, how an editor names them, and the few
syntax facts the context builder and post-processor need about each.

Everything else treats a language as data from this registry; a file in a language not
listed here still gets completions from plain-text context.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

import tree_sitter
import tree_sitter_bash
import tree_sitter_c
import tree_sitter_cpp
import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript
import tree_sitter_lua
import tree_sitter_python
import tree_sitter_rust
import tree_sitter_typescript

# A token that opens a body, mapped to the parent node types where it really does (a `{`
# opens a function body, not an object literal); None: wherever it appears.
Openers = dict[str, frozenset[str] | None]

_BRACE_CLOSERS = ("}",)


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    grammar: Callable[[], object] = field(repr=False)  # the wheel's language() capsule
    language_ids: tuple[str, ...]  # LSP languageId values
    extensions: tuple[str, ...]
    line_comment: str
    # Nodes whose first lines (class line, function signature) stay in the window however
    # far above the cursor they are.
    scope_types: frozenset[str]
    block_openers: Openers
    # What may follow the opener of an empty body: its closer or the next clause.
    block_closers: tuple[str, ...]
    # Bodies delimited by indentation alone (Python): no closer to look for.
    indented_blocks: bool = False
    # Words that open / close a nesting level inside a completion, for languages whose
    # blocks end with a keyword; braces are counted for every language but Python.
    nesting_words: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())

    @property
    def tree_sitter_language(self) -> tree_sitter.Language:
        return _language(self.name)


def _brace_openers(*parents: str) -> Openers:
    return {"{": frozenset(parents)}


_JS_SCOPES = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "arrow_function",
        "method_definition",
        "class_declaration",
        "class",
    }
)
_TS_SCOPES = _JS_SCOPES | {
    "interface_declaration",
    "abstract_class_declaration",
    "internal_module",
    "enum_declaration",
}
_JS_BODIES = ("statement_block", "class_body", "switch_body")
_TS_BODIES = (*_JS_BODIES, "interface_body", "enum_body")
_C_BODIES = ("compound_statement", "field_declaration_list", "enumerator_list")

LANGUAGES: dict[str, LanguageSpec] = {
    spec.name: spec
    for spec in (
        LanguageSpec(
            name="python",
            grammar=tree_sitter_python.language,
            language_ids=("python",),
            extensions=(".py", ".pyi", ".pyw"),
            line_comment="#",
            scope_types=frozenset({"function_definition", "class_definition"}),
            block_openers={":": None},
            block_closers=(),
            indented_blocks=True,
        ),
        LanguageSpec(
            name="javascript",
            grammar=tree_sitter_javascript.language,
            language_ids=("javascript", "javascriptreact", "js", "jsx"),
            extensions=(".js", ".mjs", ".cjs", ".jsx"),
            line_comment="//",
            scope_types=_JS_SCOPES,
            block_openers=_brace_openers(*_JS_BODIES),
            block_closers=_BRACE_CLOSERS,
        ),
        LanguageSpec(
            name="typescript",
            grammar=tree_sitter_typescript.language_typescript,
            language_ids=("typescript",),
            extensions=(".ts", ".mts", ".cts"),
            line_comment="//",
            scope_types=_TS_SCOPES,
            block_openers=_brace_openers(*_TS_BODIES),
            block_closers=_BRACE_CLOSERS,
        ),
        LanguageSpec(
            name="tsx",
            grammar=tree_sitter_typescript.language_tsx,
            language_ids=("typescriptreact", "tsx"),
            extensions=(".tsx",),
            line_comment="//",
            scope_types=_TS_SCOPES,
            block_openers=_brace_openers(*_TS_BODIES),
            block_closers=_BRACE_CLOSERS,
        ),
        LanguageSpec(
            name="go",
            grammar=tree_sitter_go.language,
            language_ids=("go",),
            extensions=(".go",),
            line_comment="//",
            scope_types=frozenset(
                {"function_declaration", "method_declaration", "func_literal", "type_declaration"}
            ),
            block_openers=_brace_openers(
                "block",
                "field_declaration_list",
                "interface_type",
                "expression_switch_statement",
                "type_switch_statement",
                "select_statement",
            ),
            block_closers=_BRACE_CLOSERS,
        ),
        LanguageSpec(
            name="rust",
            grammar=tree_sitter_rust.language,
            language_ids=("rust",),
            extensions=(".rs",),
            line_comment="//",
            scope_types=frozenset(
                {
                    "function_item",
                    "impl_item",
                    "trait_item",
                    "mod_item",
                    "struct_item",
                    "enum_item",
                    "closure_expression",
                }
            ),
            block_openers=_brace_openers(
                "block",
                "declaration_list",
                "field_declaration_list",
                "enum_variant_list",
                "match_block",
            ),
            block_closers=_BRACE_CLOSERS,
        ),
        LanguageSpec(
            name="java",
            grammar=tree_sitter_java.language,
            language_ids=("java",),
            extensions=(".java",),
            line_comment="//",
            scope_types=frozenset(
                {
                    "class_declaration",
                    "interface_declaration",
                    "enum_declaration",
                    "record_declaration",
                    "method_declaration",
                    "constructor_declaration",
                }
            ),
            block_openers=_brace_openers(
                "block",
                "class_body",
                "interface_body",
                "enum_body",
                "switch_block",
                "constructor_body",
            ),
            block_closers=_BRACE_CLOSERS,
        ),
        LanguageSpec(
            name="c",
            grammar=tree_sitter_c.language,
            language_ids=("c",),
            extensions=(".c", ".h"),
            line_comment="//",
            scope_types=frozenset({"function_definition", "struct_specifier", "enum_specifier"}),
            block_openers=_brace_openers(*_C_BODIES),
            block_closers=_BRACE_CLOSERS,
        ),
        LanguageSpec(
            name="cpp",
            grammar=tree_sitter_cpp.language,
            language_ids=("cpp", "cuda-cpp", "c++"),
            extensions=(".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".cu"),
            line_comment="//",
            scope_types=frozenset(
                {
                    "function_definition",
                    "class_specifier",
                    "struct_specifier",
                    "enum_specifier",
                    "namespace_definition",
                }
            ),
            block_openers=_brace_openers(*_C_BODIES, "declaration_list"),
            block_closers=_BRACE_CLOSERS,
        ),
        LanguageSpec(
            name="lua",
            grammar=tree_sitter_lua.language,
            language_ids=("lua",),
            extensions=(".lua",),
            line_comment="--",
            scope_types=frozenset({"function_declaration", "function_definition"}),
            # `)` ends a function's parameter list: the body comes next.
            block_openers={
                "then": None,
                "do": None,
                "else": None,
                "repeat": None,
                ")": frozenset({"parameters"}),
            },
            block_closers=("end", "until", "else", "elseif"),
            nesting_words=(
                frozenset({"function", "do", "then", "repeat"}),
                frozenset({"end", "until", "elseif"}),
            ),
        ),
        LanguageSpec(
            name="bash",
            grammar=tree_sitter_bash.language,
            language_ids=("shellscript", "bash", "sh"),
            extensions=(".sh", ".bash"),
            line_comment="#",
            scope_types=frozenset({"function_definition"}),
            block_openers={
                "then": None,
                "do": None,
                "else": None,
                "{": frozenset({"compound_statement"}),
            },
            block_closers=("fi", "done", "}", "else", "elif", "esac"),
            nesting_words=(
                frozenset({"then", "do", "case"}),
                frozenset({"fi", "done", "esac", "elif"}),
            ),
        ),
    )
}

_BY_LANGUAGE_ID = {lid: spec for spec in LANGUAGES.values() for lid in spec.language_ids}
_BY_EXTENSION = {ext: spec for spec in LANGUAGES.values() for ext in spec.extensions}


@cache
def _language(name: str) -> tree_sitter.Language:
    return tree_sitter.Language(LANGUAGES[name].grammar())


def language_from_path(path: str) -> LanguageSpec | None:
    """The language of a file path or `file:` URI, by its extension."""
    if "://" in path:
        path = unquote(urlparse(path).path)
    return _BY_EXTENSION.get(PurePosixPath(path.replace("\\", "/")).suffix.lower())


def resolve_language(language: str | None, path: str | None = None) -> LanguageSpec | None:
    """The language named by an LSP languageId (or one of our own names), else the one
    the path's extension says; None for plain text."""
    if language:
        key = language.lower()
        spec = _BY_LANGUAGE_ID.get(key) or LANGUAGES.get(key)
        if spec is not None:
            return spec
    return language_from_path(path) if path else None


_parsers = threading.local()


def parser_for(spec: LanguageSpec) -> tree_sitter.Parser:
    """A parser for `spec` owned by the calling thread (parsers are not thread-safe)."""
    cached: dict[str, tree_sitter.Parser] | None = getattr(_parsers, "by_name", None)
    if cached is None:
        cached = _parsers.by_name = {}
    parser = cached.get(spec.name)
    if parser is None:
        parser = cached[spec.name] = tree_sitter.Parser(spec.tree_sitter_language)
    return parser


def parse(spec: LanguageSpec, source: bytes, old_tree: tree_sitter.Tree | None = None):
    """Parse `source`; with `old_tree` (already edited to match) only the changed parts
    are re-parsed."""
    parser = parser_for(spec)
    return parser.parse(source, old_tree) if old_tree is not None else parser.parse(source)


def syntax_root(language: str, source: bytes) -> tree_sitter.Node | None:
    """The root of `source`'s syntax tree in the grammar named `language` (a LANGUAGES
    key), None where the registry has none: the parser the server hands the model's
    training data code (fim_model.data), which samples syntax-node spans with it."""
    spec = LANGUAGES.get(language)
    return None if spec is None else parse(spec, source).root_node

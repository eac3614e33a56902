"""Golden cases of the cleanup rules: one file per rule in tests/golden/, each case a
document with the cursor, the model's raw text and the document after accepting what the
server offers (no model: the raw text stands in for it).

File format (plain text, readable as it is):

    # Rule: what the file checks.            comment lines before the first case
    # Rules: cut at dedent, fit to line      the cleanup rules it pins (trace names): each
                                             changes the text in at least one case
    # Languages: python javascript ...       each must have at least one case
    === javascript: what this case shows     a case: language and title
    --- document                             the document; <|> marks the cursor
    --- model                                the model's raw text (exact; no final newline)
    --- expected                             the document after accepting the edit, or
                                             `(nothing)` when nothing is offered
    --- mode                                 optional: the completion mode expected

Blank lines at the end of a section are dropped; the document and expected sections end
with one newline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fim_server.cleanup import RULES, CleanupTrace, clean_edit
from fim_server.cleanup.chain import FIT_TO_LINE, NOTHING_NEW, REPEATS_NEXT_LINES, SYNTAX_CHECK
from fim_server.context import build_context
from fim_server.languages import LANGUAGES

GOLDEN = Path(__file__).parent / "golden"
CURSOR = "<|>"
NOTHING = "(nothing)"
SECTIONS = ("document", "model", "expected", "mode")


@dataclass
class Case:
    file: str
    language: str
    title: str
    sections: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.language}:{self.title}"


@dataclass
class RuleFile:
    name: str
    languages: list[str]
    rules: list[str]
    cases: list[Case]


def _section_text(name: str, lines: list[str]) -> str:
    while lines and not lines[-1].strip():
        lines.pop()
    text = "\n".join(lines)
    return text + "\n" if name in ("document", "expected") and text != NOTHING else text


def parse_rule_file(path: Path) -> RuleFile:
    languages: list[str] = []
    rules: list[str] = []
    cases: list[Case] = []
    section: str | None = None
    lines: list[str] = []

    def close_section() -> None:
        if cases and section is not None:
            cases[-1].sections[section] = _section_text(section, lines)

    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("=== "):
            close_section()
            language, _, title = line[4:].partition(": ")
            cases.append(Case(path.stem, language.strip(), title.strip()))
            section, lines = None, []
        elif line.startswith("--- ") and cases and line[4:].strip() in SECTIONS:
            close_section()
            section, lines = line[4:].strip(), []
        elif not cases:
            if line.lower().startswith("# languages:"):
                languages = line.split(":", 1)[1].split()
            elif line.lower().startswith("# rules:"):
                rules = [rule.strip() for rule in line.split(":", 1)[1].split(",")]
        else:
            lines.append(line)
    close_section()
    return RuleFile(path.stem, languages, rules, cases)


RULE_FILES = [parse_rule_file(path) for path in sorted(GOLDEN.glob("*.txt"))]
CASES = [case for rule in RULE_FILES for case in rule.cases]


def test_every_rule_file_covers_its_languages() -> None:
    assert RULE_FILES, f"no golden files in {GOLDEN}"
    for rule in RULE_FILES:
        assert rule.languages, f"{rule.name}: no '# Languages:' line"
        assert set(rule.languages) <= set(LANGUAGES), rule.name
        covered = {case.language for case in rule.cases}
        assert set(rule.languages) <= covered, (rule.name, set(rule.languages) - covered)


# What a golden file may pin: the modes' rules and the edit stage's steps, by trace name.
RULE_NAMES = {rule.name for rules in RULES.values() for rule in rules} | {
    FIT_TO_LINE,
    NOTHING_NEW,
    REPEATS_NEXT_LINES,
    SYNTAX_CHECK,
}


def context_of(case: Case):
    marked = case.sections["document"]
    offset = marked.index(CURSOR)
    text = marked.replace(CURSOR, "")
    return build_context(text, offset, lambda t: len(t.split()), language=case.language)


def test_every_rule_file_pins_rules_that_act_in_it() -> None:
    """Each golden file names the rules it pins (the rule modules name it back), and each
    of them changes the model's text in at least one of its cases: a rule whose cases no
    longer reach it is not pinned by them."""
    for rule_file in RULE_FILES:
        assert rule_file.rules, f"{rule_file.name}: no '# Rules:' line"
        assert set(rule_file.rules) <= RULE_NAMES, set(rule_file.rules) - RULE_NAMES
        acted: set[str] = set()
        for case in rule_file.cases:
            trace = CleanupTrace()
            clean_edit(case.sections["model"], context_of(case), trace)
            acted |= {step.rule for step in trace.steps}
        assert set(rule_file.rules) <= acted, (rule_file.name, set(rule_file.rules) - acted)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_golden_case(case: Case) -> None:
    assert case.language in LANGUAGES, case.language
    missing = {"document", "model", "expected"} - set(case.sections)
    assert not missing, f"sections missing: {missing}"
    marked = case.sections["document"]
    assert marked.count(CURSOR) == 1, "the document needs exactly one cursor"
    offset = marked.index(CURSOR)
    text = marked.replace(CURSOR, "")
    ctx = build_context(text, offset, lambda t: len(t.split()), language=case.language)
    if "mode" in case.sections:
        assert str(ctx.mode) == case.sections["mode"].strip(), ctx.reason
    edit = clean_edit(case.sections["model"], ctx)
    expected = case.sections["expected"]
    if expected == NOTHING:
        assert edit.text == "", f"offered {edit!r} ({ctx.reason})"
        return
    assert edit.text, f"nothing offered ({ctx.mode}: {ctx.reason})"
    accepted = text[:offset] + edit.text + text[offset + edit.replace_chars :]
    assert accepted == expected

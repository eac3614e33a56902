"""Per-language fixtures: language resolution, completion modes, the window and every
post-processing rule, for the ten languages (no model: a whitespace tokenizer)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fim_server.cleanup import Edit, SyntaxCheck, clean_edit
from fim_server.cleanup.block_exit import cut_at_block_exit
from fim_server.cleanup.indentation import match_indentation
from fim_server.cleanup.repeated_suffix_lines import drop_repeated_suffix_lines
from fim_server.context import ContextSettings, Literal, Mode, build_context, decide_mode
from fim_server.languages import LANGUAGES, language_from_path, parse, resolve_language


def count_words(text: str) -> int:
    return len(text.split())


def at_cursor(marked: str) -> tuple[str, int]:
    assert marked.count("|") == 1, marked
    return marked.replace("|", ""), marked.index("|")


@dataclass(frozen=True)
class Fixture:
    language: str
    path: str
    # A file: `before` (top-level code above), `header` (the enclosing scopes' first
    # lines), `filler` (one body statement, `{i}` numbered), `cursor_line` (with `|` in
    # a call's parentheses), `after` (the rest of the scope and a following top-level
    # node).
    before: str
    header: str
    filler: str
    cursor_line: str
    after: str
    header_lines: tuple[str, ...]  # the header lines the window must keep
    none: str  # cursor inside an identifier
    single_line: str  # cursor at the end of an unfinished statement
    block: str  # an empty body after its opener
    block_indent: int
    body_exists: str  # a new line at the top of a body that has statements
    not_a_body: str  # braces that are no body (a literal): one line only
    comment: str
    string: str
    statement: str  # one statement of a body, as the model would write it
    closer: str  # what ends the body the block fixture opens
    unbalanced: str  # a rest-of-line completion that leaves a bracket or quote open
    balanced: str  # it, closed, followed by the existing closers
    indent_unit: str  # how the fixture files indent
    after_statement: str  # a new line after the first statement of a body
    # A member started in a class-like body (only words before the cursor); None where the
    # language has no such bodies.
    member: str | None
    # A body opener whose closers the editor inserted after the cursor (`{|})`); None where
    # bodies have no bracket to close (Python, Lua).
    closed_block: str | None

    def scoped_file(self, filler_lines: int = 40) -> str:
        body = "".join(self.filler.format(i=i) for i in range(filler_lines))
        return self.before + self.header + body + self.cursor_line + self.after


FIXTURES = [
    Fixture(
        language="python",
        path="cart.py",
        before="def helper(a):\n    return a + 1\n\n\n",
        header="class Cart:\n    def total(self, items):\n",
        filler="        x{i} = {i}\n",
        cursor_line="        result = compute(|)\n",
        after="        return result\n\n\ndef other():\n    return 2\n",
        header_lines=("class Cart:\n", "    def total(self, items):\n"),
        none="result = comp|ute()\n",
        single_line="def f(a):\n    total = a +|\n",
        block="def f(a):\n    |\n\n\nprint(f(1))\n",
        block_indent=4,
        body_exists="def f(a):\n    |\n    return a\n",
        not_a_body="point = {\n    |\n}\n",
        comment="# the total of|\nx = 1\n",
        string='s = "hello |"\n',
        statement="return a + 1",
        closer="",
        unbalanced="len(items",
        balanced="len(items))",
        indent_unit="    ",
        after_statement="def f(a):\n    b = a\n    |\n",
        member="class A:\n    def |\n",
        closed_block=None,
    ),
    Fixture(
        language="javascript",
        path="cart.js",
        before="function helper(a) {\n  return a + 1;\n}\n\n",
        header="class Cart {\n  total(items) {\n",
        filler="    let x{i} = {i};\n",
        cursor_line="    const result = compute(|);\n",
        after="    return result;\n  }\n}\n\nfunction other() {\n  return 2;\n}\n",
        header_lines=("class Cart {\n", "  total(items) {\n"),
        none="const result = comp|ute();\n",
        single_line="function f(a) {\n  const total = a +|\n}\n",
        block="function f(a) {\n  |\n}\n",
        block_indent=2,
        body_exists="function f(a) {\n  |\n  return a;\n}\n",
        not_a_body="const point = {\n  |\n};\n",
        comment="// the total of|\nconst x = 1;\n",
        string='const s = "hello |";\n',
        statement="return a + 1;",
        closer="}",
        unbalanced="items.map((x",
        balanced="items.map((x)));",
        indent_unit="  ",
        after_statement="function f(a) {\n  const b = a;\n  |\n}\n",
        member="class A {\n  get |\n}\n",
        closed_block="stream.on('data', (d) => {|});\n",
    ),
    Fixture(
        language="typescript",
        path="cart.ts",
        before="function helper(a: number): number {\n  return a + 1;\n}\n\n",
        header="class Cart {\n  total(items: number[]): number {\n",
        filler="    let x{i}: number = {i};\n",
        cursor_line="    const result = compute(|);\n",
        after="    return result;\n  }\n}\n\nfunction other(): number {\n  return 2;\n}\n",
        header_lines=("class Cart {\n", "  total(items: number[]): number {\n"),
        none="const result = comp|ute();\n",
        single_line="function f(a: number) {\n  const total = a +|\n}\n",
        block="interface Shape {\n  |\n}\n",
        block_indent=2,
        body_exists="interface Shape {\n  |\n  name: string;\n}\n",
        not_a_body="const point = {\n  |\n};\n",
        comment="// the total of|\nconst x = 1;\n",
        string="const s = 'hello |';\n",
        statement="area(): number;",
        closer="}",
        unbalanced="items.length + f(1",
        balanced="items.length + f(1));",
        indent_unit="  ",
        after_statement="function f(a: number) {\n  const b = a;\n  |\n}\n",
        member="class A {\n  private |\n}\n",
        closed_block="items.forEach((x: number) => {|});\n",
    ),
    Fixture(
        language="tsx",
        path="View.tsx",
        before="function Helper(props: Props) {\n  return <div>{props.a}</div>;\n}\n\n",
        header="function View(props: Props) {\n",
        filler="  const x{i} = {i};\n",
        cursor_line="  const result = compute(|);\n",
        after="  return <span>{result}</span>;\n}\n\nfunction Other() {\n  return <p />;\n}\n",
        header_lines=("function View(props: Props) {\n",),
        none="const result = comp|ute();\n",
        single_line="function View() {\n  const total = 1 +|\n}\n",
        block="function View(props: Props) {\n  |\n}\n",
        block_indent=2,
        body_exists="function View() {\n  |\n  return <div />;\n}\n",
        not_a_body="const style = {\n  |\n};\n",
        comment="// the total of|\nconst x = 1;\n",
        string='const s = "hello |";\n',
        statement="return <div>{props.title}</div>;",
        closer="}",
        unbalanced="[props.a",
        balanced="[props.a]);",
        indent_unit="  ",
        after_statement="function View() {\n  const a = 1;\n  |\n}\n",
        member="class A {\n  get |\n}\n",
        closed_block="const f = () => {|};\n",
    ),
    Fixture(
        language="go",
        path="cart.go",
        before="package cart\n\nfunc helper(a int) int {\n\treturn a + 1\n}\n\n",
        header="func (c *Cart) Total(items []int) int {\n",
        filler="\tx{i} := {i}\n",
        cursor_line="\tresult := compute(|)\n",
        after="\treturn result\n}\n\nfunc other() int {\n\treturn 2\n}\n",
        header_lines=("func (c *Cart) Total(items []int) int {\n",),
        none="package m\n\nfunc f() {\n\tresult := comp|ute()\n}\n",
        single_line="package m\n\nfunc f(a int) {\n\ttotal := a +|\n}\n",
        block="package m\n\nfunc f(a int) int {\n\t|\n}\n",
        block_indent=1,
        body_exists="package m\n\nfunc f(a int) int {\n\t|\n\treturn a\n}\n",
        not_a_body="package m\n\nvar p = Point{\n\t|\n}\n",
        comment="package m\n\n// the total of|\nvar x = 1\n",
        string='package m\n\nvar s = "hello |"\n',
        statement="return a + 1",
        closer="}",
        unbalanced="len(items",
        balanced="len(items))",
        indent_unit="\t",
        after_statement="package m\n\nfunc f(a int) int {\n\tb := a\n\t|\n}\n",
        member=None,
        closed_block="package m\n\nfunc f(xs []int) {\n\tsort.Slice(xs, func(i, j int) bool {|})\n"
        "}\n",
    ),
    Fixture(
        language="rust",
        path="cart.rs",
        before="fn helper(a: i32) -> i32 {\n    a + 1\n}\n\n",
        header="impl Cart {\n    fn total(&self, items: &[i32]) -> i32 {\n",
        filler="        let x{i} = {i};\n",
        cursor_line="        let result = compute(|);\n",
        after="        result\n    }\n}\n\nfn other() -> i32 {\n    2\n}\n",
        header_lines=("impl Cart {\n", "    fn total(&self, items: &[i32]) -> i32 {\n"),
        none="fn f() {\n    let result = comp|ute();\n}\n",
        single_line="fn f(a: i32) {\n    let total = a +|\n}\n",
        block="fn f(a: i32) -> i32 {\n    |\n}\n",
        block_indent=4,
        body_exists="fn f(a: i32) -> i32 {\n    |\n    a\n}\n",
        not_a_body="fn f() {\n    let p = Point {\n        |\n    };\n}\n",
        comment="// the total of|\nconst X: i32 = 1;\n",
        string='const S: &str = "hello |";\n',
        statement="let y = a + 1;",
        closer="}",
        unbalanced="items.len(",
        balanced="items.len());",
        indent_unit="    ",
        after_statement="fn f(a: i32) -> i32 {\n    let b = a;\n    |\n}\n",
        member="impl A {\n    pub |\n}\n",
        closed_block="fn f(x: i32) -> i32 {\n    let y = match x {|};\n    y\n}\n",
    ),
    Fixture(
        language="java",
        path="Cart.java",
        before="class Helper {\n    int helper(int a) {\n        return a + 1;\n    }\n}\n\n",
        header="class Cart {\n    int total(int[] items) {\n",
        filler="        int x{i} = {i};\n",
        cursor_line="        int result = compute(|);\n",
        after="        return result;\n    }\n}\n\nclass Other {\n    int other() {\n"
        "        return 2;\n    }\n}\n",
        header_lines=("class Cart {\n", "    int total(int[] items) {\n"),
        none="class A {\n    int r = comp|ute();\n}\n",
        single_line="class A {\n    int f(int a) {\n        int total = a +|\n    }\n}\n",
        block="class A {\n    int f(int a) {\n        |\n    }\n}\n",
        block_indent=8,
        body_exists="class A {\n    int f(int a) {\n        |\n        return a;\n    }\n}\n",
        not_a_body="class A {\n    int[] xs = {\n        |\n    };\n}\n",
        comment="// the total of|\nclass A {}\n",
        string='class A {\n    String s = "hello |";\n}\n',
        statement="return a + 1;",
        closer="}",
        unbalanced="Math.max(a, b",
        balanced="Math.max(a, b));",
        indent_unit="    ",
        after_statement="class A {\n    int f(int a) {\n        int b = a;\n        |\n    }\n}\n",
        member="class A {\n    public |\n}\n",
        closed_block="class A {\n    void f() {\n        run(() -> {|});\n    }\n}\n",
    ),
    Fixture(
        language="c",
        path="cart.c",
        before="int helper(int a) {\n    return a + 1;\n}\n\n",
        header="int total(int *items) {\n",
        filler="    int x{i} = {i};\n",
        cursor_line="    int result = compute(|);\n",
        after="    return result;\n}\n\nint other(void) {\n    return 2;\n}\n",
        header_lines=("int total(int *items) {\n",),
        none="int f(void) {\n    int r = comp|ute();\n}\n",
        single_line="int f(int a) {\n    int total = a +|\n}\n",
        block="int f(int a) {\n    |\n}\n",
        block_indent=4,
        body_exists="int f(int a) {\n    |\n    return a;\n}\n",
        not_a_body="int xs[] = {\n    |\n};\n",
        comment="// the total of|\nint x = 1;\n",
        string='char *s = "hello |";\n',
        statement="return a + 1;",
        closer="}",
        unbalanced="abs(a",
        balanced="abs(a));",
        indent_unit="    ",
        after_statement="int f(int a) {\n    int b = a;\n    |\n}\n",
        member=None,
        closed_block="int f(int a) {\n    if (a) {|}\n}\n",
    ),
    Fixture(
        language="cpp",
        path="cart.cpp",
        before="int helper(int a) {\n    return a + 1;\n}\n\n",
        header="class Cart {\n  public:\n    int total(int *items) {\n",
        filler="        int x{i} = {i};\n",
        cursor_line="        int result = compute(|);\n",
        after="        return result;\n    }\n};\n\nint other() {\n    return 2;\n}\n",
        header_lines=("class Cart {\n", "    int total(int *items) {\n"),
        none="int f() {\n    int r = comp|ute();\n}\n",
        single_line="int f(int a) {\n    int total = a +|\n}\n",
        block="namespace cart {\nint f(int a) {\n    |\n}\n}\n",
        block_indent=4,
        body_exists="int f(int a) {\n    |\n    return a;\n}\n",
        not_a_body="std::vector<int> xs = {\n    |\n};\n",
        comment="// the total of|\nint x = 1;\n",
        string='const char *s = "hello |";\n',
        statement="return a + 1;",
        closer="}",
        unbalanced="std::max(a, b",
        balanced="std::max(a, b));",
        indent_unit="    ",
        after_statement="int f(int a) {\n    int b = a;\n    |\n}\n",
        member="class A {\n  public:\n    int |\n};\n",
        closed_block="void f() {\n    auto g = [](int x) {|};\n}\n",
    ),
    Fixture(
        language="lua",
        path="cart.lua",
        before="local function helper(a)\n  return a + 1\nend\n\n",
        header="function Cart:total(items)\n",
        filler="  local x{i} = {i}\n",
        cursor_line="  local result = compute(|)\n",
        after="  return result\nend\n\nlocal function other()\n  return 2\nend\n",
        header_lines=("function Cart:total(items)\n",),
        none="local result = comp|ute()\n",
        single_line="local function f(a)\n  local total = a +|\nend\n",
        block="local function f(a)\n  |\nend\n",
        block_indent=2,
        body_exists="local function f(a)\n  |\n  return a\nend\n",
        not_a_body="local point = {\n  |\n}\n",
        comment="-- the total of|\nlocal x = 1\n",
        string='local s = "hello |"\n',
        statement="local y = a + 1",
        closer="end",
        unbalanced="math.max(a, b",
        balanced="math.max(a, b))",
        indent_unit="  ",
        after_statement="local function f(a)\n  local b = a\n  |\nend\n",
        member=None,
        closed_block=None,
    ),
    Fixture(
        language="bash",
        path="cart.sh",
        before='helper() {\n  echo "$1"\n}\n\n',
        header="total() {\n",
        filler="  x{i}=$((1 + {i}))\n",
        cursor_line='  result=$(compute "$1"|)\n',
        after='  echo "$result"\n}\n\nother() {\n  echo 2\n}\n',
        header_lines=("total() {\n",),
        none="result=$(comp|ute)\n",
        single_line="f() {\n  local total=\n  echo|\n}\n",
        block='if [ -n "$1" ]; then\n  |\nfi\n',
        block_indent=2,
        body_exists="f() {\n  |\n  echo a\n}\n",
        not_a_body="items=(\n  |\n)\n",
        comment="# the total of|\nx=1\n",
        string='s="hello |"\n',
        statement='echo "$1"',
        closer="fi",
        unbalanced='"$2',
        balanced='"$2")',
        indent_unit="  ",
        after_statement="f() {\n  local b=1\n  |\n}\n",
        member=None,
        closed_block="f() {|}\n",
    ),
]

BY_NAME = {f.language: f for f in FIXTURES}


def fixture_id(fixture: Fixture) -> str:
    return fixture.language


every_language = pytest.mark.parametrize("fx", FIXTURES, ids=fixture_id)


def test_every_language_has_a_fixture() -> None:
    assert sorted(BY_NAME) == sorted(LANGUAGES)


def context(fx: Fixture, marked: str, settings: ContextSettings | None = None):
    text, offset = at_cursor(marked)
    return build_context(text, offset, count_words, settings, language=fx.language)


# -- languages -----------------------------------------------------------------------


@every_language
def test_language_from_its_extension_and_the_fixtures_parse(fx: Fixture) -> None:
    spec = language_from_path(f"file:///src/{fx.path}")
    assert spec is not None and spec.name == fx.language
    text = fx.scoped_file().replace("|", "")
    tree = parse(spec, text.encode())
    assert not tree.root_node.has_error, str(tree.root_node)


@pytest.mark.parametrize(
    ("language_id", "path", "expected"),
    [
        ("python", None, "python"),
        ("javascriptreact", None, "javascript"),
        ("typescriptreact", None, "tsx"),
        ("shellscript", None, "bash"),
        ("cpp", None, "cpp"),
        # eglot names the language after the major mode, without "-mode"
        ("js", None, "javascript"),
        ("c++", None, "cpp"),
        ("sh", None, "bash"),
        ("python-ts", "file:///x/app.py", "python"),
        ("cobol", "file:///x/main.rs", "rust"),  # unknown id: the extension decides
        (None, "/x/include/list.h", "c"),
        (None, "C:\\src\\Main.JAVA", "java"),
        ("plaintext", "notes.txt", None),
    ],
)
def test_resolve_language(language_id: str | None, path: str | None, expected: str | None) -> None:
    spec = resolve_language(language_id, path)
    assert (spec.name if spec else None) == expected


def test_unknown_language_gets_plain_text_context() -> None:
    text, offset = at_cursor("some notes\nfoo(|)\nmore\n")
    ctx = build_context(text, offset, count_words, language=None)
    assert ctx.mode is Mode.REST_OF_LINE and ctx.language is None
    assert ctx.prefix == "some notes\nfoo(" and ctx.suffix == ")\nmore\n"
    assert clean_edit("))((", ctx) == Edit("))((")  # nothing to check it against


# -- modes ---------------------------------------------------------------------------


@every_language
def test_mode_none_inside_an_identifier(fx: Fixture) -> None:
    decision = decide_mode(*at_cursor(fx.none), language=fx.language)
    assert decision.mode is Mode.NONE, decision.reason


@every_language
def test_mode_block_inside_brackets_that_end_the_line(fx: Fixture) -> None:
    # `compute(|)`: an editor closed the bracket; a callback or more lines may follow.
    text, offset = at_cursor(fx.scoped_file(3))
    decision = decide_mode(text, offset, language=fx.language)
    if text[offset - 1] not in "([{,":  # bash: `$(compute "$1"|)`, after an argument
        assert decision.mode is Mode.REST_OF_LINE, decision.reason
        return
    assert decision.mode is Mode.MULTI_LINE, decision.reason
    line = text[text.rfind("\n", 0, offset) + 1 : offset]
    assert decision.block_indent == len(line) - len(line.lstrip()) + 1


@every_language
def test_mode_rest_of_line_before_other_code(fx: Fixture) -> None:
    text, offset = at_cursor(fx.scoped_file(3))
    end = text.index("\n", offset)
    text = text[:end] + " + 1" + text[end:]  # not only closers after the cursor any more
    decision = decide_mode(text, offset, language=fx.language)
    assert decision.mode is Mode.REST_OF_LINE, decision.reason


@every_language
def test_mode_single_line_at_the_end_of_a_statement(fx: Fixture) -> None:
    decision = decide_mode(*at_cursor(fx.single_line), language=fx.language)
    assert decision.mode is Mode.SINGLE_LINE, decision.reason


@every_language
def test_mode_block_in_an_empty_body(fx: Fixture) -> None:
    decision = decide_mode(*at_cursor(fx.block), language=fx.language)
    assert decision.mode is Mode.MULTI_LINE, decision.reason
    assert decision.block_indent == fx.block_indent


@every_language
def test_mode_block_at_the_end_of_the_opener_line(fx: Fixture) -> None:
    # The same empty body with the cursor right after its opener.
    text, offset = at_cursor(fx.block)
    line_start = text.rfind("\n", 0, offset) + 1
    text = text[: line_start - 1] + text[offset:]
    decision = decide_mode(text, line_start - 1, language=fx.language)
    assert decision.mode is Mode.MULTI_LINE, decision.reason
    opener_line = text[: line_start - 1].rsplit("\n", 1)[-1]
    assert decision.block_indent == len(opener_line) - len(opener_line.lstrip()) + 1


@every_language
def test_mode_block_at_the_top_of_an_existing_body(fx: Fixture) -> None:
    decision = decide_mode(*at_cursor(fx.body_exists), language=fx.language)
    assert decision.mode is Mode.MULTI_LINE, decision.reason
    assert decision.block_indent == fx.block_indent


@every_language
def test_mode_block_on_a_new_line_after_a_statement(fx: Fixture) -> None:
    decision = decide_mode(*at_cursor(fx.after_statement), language=fx.language)
    assert decision.mode is Mode.MULTI_LINE, decision.reason
    assert decision.block_indent == fx.block_indent


@pytest.mark.parametrize("fx", [f for f in FIXTURES if f.member], ids=fixture_id)
def test_mode_block_for_a_member_being_started(fx: Fixture) -> None:
    assert fx.member is not None
    text, offset = at_cursor(fx.member)
    decision = decide_mode(text, offset, language=fx.language)
    assert decision.mode is Mode.MULTI_LINE, decision.reason
    # It continues the member's line: lines at that line's indentation are past its end.
    line = text[text.rfind("\n", 0, offset) + 1 : offset]
    assert decision.block_indent == len(line) - len(line.lstrip()) + 1


def test_words_outside_a_class_body_stay_one_line() -> None:
    for language, marked in [
        ("javascript", "function f() {\n  return total|\n}\n"),
        ("python", "def f():\n    return total|\n"),
        ("java", "class A {\n    void f() {\n        return|\n    }\n}\n"),
    ]:
        decision = decide_mode(*at_cursor(marked), language=language)
        assert decision.mode is Mode.SINGLE_LINE, (language, decision.reason)


@pytest.mark.parametrize("fx", [f for f in FIXTURES if f.closed_block], ids=fixture_id)
def test_mode_block_after_an_opener_the_editor_closed(fx: Fixture) -> None:
    assert fx.closed_block is not None
    text, offset = at_cursor(fx.closed_block)
    decision = decide_mode(text, offset, language=fx.language)
    assert decision.mode is Mode.MULTI_LINE, decision.reason
    line = text[text.rfind("\n", 0, offset) + 1 : offset]
    assert decision.block_indent == len(line) - len(line.lstrip()) + 1


@every_language
def test_mode_single_line_at_the_top_level(fx: Fixture) -> None:
    text, offset = at_cursor(fx.scoped_file(1))
    top = text.index("\n\n", offset) + 1  # the blank line after the cursor's scope
    decision = decide_mode(text, top, language=fx.language)
    assert decision.mode is Mode.SINGLE_LINE, decision.reason


@every_language
def test_mode_single_line_in_braces_that_are_no_body(fx: Fixture) -> None:
    decision = decide_mode(*at_cursor(fx.not_a_body), language=fx.language)
    assert decision.mode is Mode.SINGLE_LINE, decision.reason


@every_language
def test_comments_and_strings_get_the_short_budget(fx: Fixture) -> None:
    settings = ContextSettings(single_line_tokens=40, literal_tokens=10)
    comment = context(fx, fx.comment, settings)
    assert (comment.mode, comment.literal) == (Mode.SINGLE_LINE, Literal.COMMENT)
    string = context(fx, fx.string, settings)
    assert (string.mode, string.literal) == (Mode.REST_OF_LINE, Literal.STRING)
    code = context(fx, fx.single_line, settings)
    assert code.literal is Literal.NONE
    assert (comment.max_tokens, string.max_tokens, code.max_tokens) == (10, 10, 40)


def test_unclosed_brace_opens_a_block() -> None:
    marked = "function f(a) {\n  |\n\nfunction g() {\n  return 1;\n}\n"
    decision = decide_mode(*at_cursor(marked), language="javascript")
    assert decision.mode is Mode.MULTI_LINE, decision.reason


def test_template_substitution_is_code_not_string() -> None:
    decision = decide_mode(*at_cursor("const s = `a ${f(|)} b`;\n"), language="javascript")
    assert decision.literal is Literal.NONE


def test_closed_block_comment_ends_before_the_cursor() -> None:
    decision = decide_mode(*at_cursor("int x = 1; /* note */|\n"), language="c")
    assert decision.literal is Literal.NONE
    decision = decide_mode(*at_cursor("int x = 1; /* note | */\n"), language="c")
    assert decision.literal is Literal.COMMENT


# -- window --------------------------------------------------------------------------


@every_language
def test_window_keeps_the_enclosing_scope_headers(fx: Fixture) -> None:
    text, offset = at_cursor(fx.scoped_file(40))
    settings = ContextSettings(prefix_tokens=40, suffix_tokens=20, cross_file_tokens=0)
    ctx = build_context(text, offset, count_words, settings, language=fx.language)
    headers = "".join(fx.header_lines)
    assert ctx.prefix.startswith(headers), ctx.prefix[:200]
    window = ctx.prefix[len(headers) :]
    # The rest is whole lines ending at the cursor, far below the headers.
    assert text[:offset].endswith(window)
    assert text[offset - len(window) - 1] == "\n"
    assert fx.filler.format(i=0) not in window
    assert count_words(ctx.prefix) <= 40 + 20


@every_language
def test_window_does_not_cut_into_the_top_level_node_above(fx: Fixture) -> None:
    text, offset = at_cursor(fx.scoped_file(2))
    before_lines = fx.before.count("\n")
    # A budget that would reach half-way into `before` line by line.
    above = text[:offset].split("\n")
    cursor_part = count_words(above[-1])
    tokens_up_to_header = sum(count_words(line) for line in above[before_lines:-1])
    half_before = sum(count_words(line) for line in above[before_lines // 2 : before_lines])
    budget = cursor_part + tokens_up_to_header + max(half_before - 1, 1)
    settings = ContextSettings(prefix_tokens=budget, suffix_tokens=0, cross_file_tokens=0)
    ctx = build_context(text, offset, count_words, settings, language=fx.language)
    # Whole lines from the blank line after `before`: none of its lines.
    assert ctx.prefix.lstrip("\n") == text[len(fx.before) : offset], ctx.prefix[:120]


@every_language
def test_window_suffix_leaves_out_a_top_level_node_it_cannot_hold(fx: Fixture) -> None:
    text, offset = at_cursor(fx.scoped_file(2))
    rest = text[offset:]
    # Everything up to the end of the cursor's scope, plus a little of the next node.
    scope_end = rest.rstrip("\n").rfind("\n\n") + 2
    budget = count_words(rest[:scope_end]) + 2
    settings = ContextSettings(prefix_tokens=0, suffix_tokens=budget, cross_file_tokens=0)
    ctx = build_context(text, offset, count_words, settings, language=fx.language)
    assert rest[:scope_end].startswith(ctx.suffix)
    assert ctx.suffix.rstrip("\n").endswith(rest[:scope_end].rstrip("\n"))


@every_language
def test_window_shares_the_budget(fx: Fixture) -> None:
    text, offset = at_cursor(fx.scoped_file(2))
    # The whole file above fits in the prefix share: the suffix gets the rest.
    settings = ContextSettings(prefix_tokens=1000, suffix_tokens=1, cross_file_tokens=0)
    ctx = build_context(text, offset, count_words, settings, language=fx.language)
    assert ctx.prefix == text[:offset]
    assert ctx.suffix == text[offset:]


# -- post-processing -----------------------------------------------------------------


def block_context(fx: Fixture):
    return context(fx, fx.block)


@every_language
def test_block_completion_stops_where_it_leaves_the_block(fx: Fixture) -> None:
    ctx = block_context(fx)
    pad = " " * fx.block_indent if fx.indent_unit != "\t" else "\t" * fx.block_indent
    outside = fx.scoped_file(1).replace("|", "").split("\n")[0]
    raw = f"{fx.statement}\n{pad}{fx.statement}\n{fx.closer}\n\n{outside}\n"
    edit = clean_edit(raw, ctx)
    assert edit == Edit(f"{fx.statement}\n{pad}{fx.statement}")


@pytest.mark.parametrize(
    ("language", "raw", "kept"),
    [
        (
            "javascript",
            "if (a) {\n    b();\n  }\n  c(); }\nfunction g() {}",
            "if (a) {\n    b();\n  }\n  c();",
        ),
        ("go", "x := 1 }", "x := 1"),
        ("rust", 'let s = "}";\n    s }', 'let s = "}";\n    s'),
        ("lua", "if a then\n    b()\n  end\n  c() end", "if a then\n    b()\n  end\n  c()"),
        (
            "lua",
            "local f = function() return 1 end\n  elseif x then",
            "local f = function() return 1 end",
        ),
        (
            "bash",
            "for i in 1 2; do\n    echo $i\n  done\n  fi",
            "for i in 1 2; do\n    echo $i\n  done",
        ),
    ],
)
def test_block_exit_by_syntax_at_the_same_indentation(language: str, raw: str, kept: str) -> None:
    assert cut_at_block_exit(raw, LANGUAGES[language]) == kept


@every_language
def test_lines_repeating_the_suffix_are_dropped(fx: Fixture) -> None:
    ctx = context(fx, fx.body_exists)
    repeated = [line for line in ctx.suffix.split("\n") if line.strip()]
    assert repeated, "the fixture needs code after the cursor"
    raw = fx.statement + "\n" + "\n".join(repeated)
    assert drop_repeated_suffix_lines(raw, ctx.suffix) == fx.statement
    # The same through the whole chain, which also drops a completion that is only the
    # repetition.
    assert clean_edit(raw, ctx) == Edit(fx.statement)
    assert clean_edit("\n".join(line.strip() for line in repeated), ctx) == Edit("")


@every_language
def test_closing_brackets_after_the_cursor_are_replaced_by_a_balanced_completion(
    fx: Fixture,
) -> None:
    ctx = context(fx, fx.scoped_file(2))
    assert ctx.line_suffix.strip() in (")", ");", ")")
    edit = clean_edit(fx.unbalanced, ctx)
    assert edit == Edit(fx.balanced, len(ctx.line_suffix))
    # Without the range the same text could only be inserted, leaving the line unbalanced.
    assert SyntaxCheck(ctx).damages(Edit(fx.unbalanced), empty_blocks=False)


@every_language
def test_completion_writing_the_existing_closers_replaces_them(fx: Fixture) -> None:
    ctx = context(fx, fx.scoped_file(2))
    edit = clean_edit("x" + ctx.line_suffix, ctx)
    assert edit == Edit("x" + ctx.line_suffix, len(ctx.line_suffix))


@every_language
def test_completion_that_adds_parse_errors_is_rejected(fx: Fixture) -> None:
    ctx = context(fx, fx.scoped_file(2))
    assert not SyntaxCheck(ctx).damages(Edit("x"), empty_blocks=False)
    assert clean_edit("] ) ] (", ctx) == Edit("")


@every_language
def test_errors_at_the_end_of_an_unfinished_file_do_not_block_completions(fx: Fixture) -> None:
    text, offset = at_cursor(fx.scoped_file(2))
    # The file ends at the cursor line: the scope is not closed yet.
    cut = text[: text.index("\n", offset) + 1]
    ctx = build_context(cut, offset, count_words, language=fx.language)
    assert not SyntaxCheck(ctx).damages(Edit("x"), empty_blocks=False)


@every_language
def test_indentation_follows_the_file(fx: Fixture) -> None:
    ctx = block_context(fx)
    assert ctx.indent_unit == fx.indent_unit
    other = "    " if fx.indent_unit == "\t" else "\t"
    raw = f"{fx.statement}\n{other * 1}{fx.statement}"
    converted = match_indentation(raw, ctx.indent_unit)
    second = converted.split("\n")[1]
    lead = second[: len(second) - len(second.lstrip())]
    assert lead and set(lead) == set(fx.indent_unit), repr(converted)

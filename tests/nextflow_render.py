"""Render a Nextflow process's `script:`/`stub:` blocks as Nextflow would, without Nextflow.

A small interpreter for the Groovy subset that nf-core style modules use in their process
definitions, so that tests can run the real command text of a module against the real CLI:

- directives and declarations as Groovy command calls: `tag "$meta.id"`, `label 'x'`,
  `tuple val(meta), path(fasta)`, `path models`, `val n`, `..., emit: name, optional: true`;
- statements: `def x = expr`, `x = expr` (no `def`: visible to the output declarations, as in
  Nextflow), `if (cond) stmt [else stmt]`, blocks `{ ... }`, `error "message"`;
- expressions: '...' strings, "..." and triple-quoted GStrings with `${expr}` and `$a.b`
  interpolation and Groovy's escapes, numbers, true/false/null, lists `[a, b]`, maps
  `[k: v]`, property access (`a.b`, `a?.b`), the elvis operator `a ?: b`, ternaries, `||`, `&&`,
  `!`, `==`, `!=`, `+`, and a few methods (`contains`, `startsWith`, `endsWith`, `trim`,
  `toString`, `join`).

Groovy truth (null, false, '', [], [:], 0 are false) and Groovy's string forms (null ->
"null", lists -> "[a, b]") are followed. The script text is the value of the block's last
statement, indentation stripped as Nextflow does. Anything outside the subset raises
`UnsupportedGroovy` rather than being guessed at.

Not modelled: closures, the container ternaries that nf-core modules use for singularity
(not needed: the modules here name one image), and Nextflow's file-staging details beyond
"a staged input renders as its file name".
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class UnsupportedGroovy(Exception):
    """The module uses Groovy that this renderer does not interpret."""


class ProcessError(Exception):
    """`error "..."` in the process body (Nextflow stops the run with this message)."""


class MissingOutput(Exception):
    """A non-optional output declaration matched no file (Nextflow fails the task)."""


# --- lexer ---------------------------------------------------------------------------------

OPERATORS = ["?.", "?:", "||", "&&", "==", "!=", "<=", ">=", "=~", "(", ")", "[", "]", "{", "}"]
OPERATORS += [",", ":", "?", ".", "=", "!", "+", "-", "<", ">", ";"]
KEYWORDS = {"def", "if", "else", "true", "false", "null", "in"}


@dataclass
class Token:
    kind: str  # IDENT, NUMBER, STRING (no interpolation), GSTRING (raw body), OP, NEWLINE, EOF
    value: str
    line: int


def tokenize(source: str, first_line: int = 1) -> list[Token]:
    tokens: list[Token] = []
    i, line, depth = 0, first_line, 0  # depth: open ( and [ (newlines inside them are ignored)
    n = len(source)
    while i < n:
        c = source[i]
        if c == "\n":
            if depth == 0 and tokens and tokens[-1].kind != "NEWLINE":
                tokens.append(Token("NEWLINE", "\n", line))
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "\\" and source.startswith("\\\n", i):  # explicit line continuation
            line += 1
            i += 2
        elif source.startswith("//", i):
            while i < n and source[i] != "\n":
                i += 1
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end < 0:
                raise UnsupportedGroovy(f"line {line}: unterminated comment")
            line += source.count("\n", i, end)
            i = end + 2
        elif source.startswith('"""', i) or source.startswith("'''", i):
            quote = source[i : i + 3]
            j = i + 3
            while True:
                if j >= n:
                    raise UnsupportedGroovy(f"line {line}: unterminated {quote} string")
                if source[j] == "\\":
                    j += 2
                    continue
                if source.startswith(quote, j):
                    break
                j += 1
            body = source[i + 3 : j]
            kind = "GSTRING" if quote == '"""' else "STRING"
            tokens.append(Token(kind, body if kind == "GSTRING" else unescape(body), line))
            line += body.count("\n")
            i = j + 3
        elif c in "\"'":
            j = i + 1
            while j < n and source[j] != c:
                if source[j] == "\n":
                    raise UnsupportedGroovy(f"line {line}: newline in a {c}-quoted string")
                j += 2 if source[j] == "\\" else 1
            if j >= n:
                raise UnsupportedGroovy(f"line {line}: unterminated string")
            body = source[i + 1 : j]
            tokens.append(
                Token("GSTRING", body, line) if c == '"' else Token("STRING", unescape(body), line)
            )
            i = j + 1
        elif c.isdigit():
            m = re.match(r"\d+(\.\d+)?", source[i:])
            tokens.append(Token("NUMBER", m.group(0), line))
            i += len(m.group(0))
        elif c.isalpha() or c == "_":
            m = re.match(r"[A-Za-z_]\w*", source[i:])
            tokens.append(Token("IDENT", m.group(0), line))
            i += len(m.group(0))
        else:
            for op in OPERATORS:
                if source.startswith(op, i):
                    if op in "([":
                        depth += 1
                    elif op in ")]":
                        depth = max(0, depth - 1)
                    tokens.append(Token("OP", op, line))
                    i += len(op)
                    break
            else:
                raise UnsupportedGroovy(f"line {line}: unexpected character {c!r}")
    tokens.append(Token("EOF", "", line))
    return tokens


ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "\\": "\\", "'": "'", '"': '"'}
ESCAPES["$"] = "$"


def unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "\n":  # backslash-newline in a Groovy string: the newline is dropped
                i += 2
                continue
            if nxt not in ESCAPES:
                raise UnsupportedGroovy(f"unsupported escape \\{nxt}")
            out.append(ESCAPES[nxt])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# --- syntax tree -----------------------------------------------------------------------------


@dataclass
class Node:
    kind: str  # lit, gstring, var, prop, call, method, list, map, unary, binary, ternary, elvis
    args: tuple = ()
    line: int = 0


@dataclass
class Stmt:
    kind: str  # def, assign, if, block, command, expr
    args: tuple = ()
    line: int = 0


class Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens, self.pos = tokens, 0

    # helpers
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def at(self, kind: str, value: str | None = None, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind == kind and (value is None or token.value == value)

    def expect(self, kind: str, value: str | None = None) -> Token:
        if not self.at(kind, value):
            token = self.peek()
            raise UnsupportedGroovy(
                f"line {token.line}: expected {value or kind}, got {token.value!r}"
            )
        return self.next()

    def skip_newlines(self) -> None:
        while self.at("NEWLINE") or self.at("OP", ";"):
            self.next()

    # statements
    def statements(self, until: str | None = None) -> list[Stmt]:
        body: list[Stmt] = []
        self.skip_newlines()
        while not self.at("EOF") and not (until and self.at("OP", until)):
            body.append(self.statement())
            at_end = self.at("EOF") or (until and self.at("OP", until))
            if not at_end and not (self.at("NEWLINE") or self.at("OP", ";")):
                token = self.peek()
                raise UnsupportedGroovy(f"line {token.line}: unexpected {token.value!r}")
            self.skip_newlines()
        return body

    def statement(self) -> Stmt:
        token = self.peek()
        if self.at("IDENT", "def"):
            self.next()
            name = self.expect("IDENT").value
            self.expect("OP", "=")
            return Stmt("def", (name, self.expression()), token.line)
        if self.at("IDENT", "if"):
            self.next()
            self.expect("OP", "(")
            condition = self.expression()
            self.expect("OP", ")")
            then = self.body()
            otherwise = None
            save = self.pos
            self.skip_newlines()
            if self.at("IDENT", "else"):
                self.next()
                otherwise = self.body()
            else:
                self.pos = save
            return Stmt("if", (condition, then, otherwise), token.line)
        if self.at("OP", "{"):
            return self.body()
        if token.kind == "IDENT" and token.value not in KEYWORDS:
            if self.at("OP", "=", 1):
                self.next()
                self.next()
                return Stmt("assign", (token.value, self.expression()), token.line)
            follower = self.peek(1)
            starts_argument = follower.kind in ("IDENT", "STRING", "GSTRING", "NUMBER")
            if starts_argument and follower.value not in ("in",):
                self.next()
                return Stmt("command", (token.value, self.arguments(end=None)), token.line)
        return Stmt("expr", (self.expression(),), token.line)

    def body(self) -> Stmt:
        token = self.peek()
        if self.at("OP", "{"):
            self.next()
            inner = self.statements(until="}")
            self.expect("OP", "}")
            return Stmt("block", (inner,), token.line)
        self.skip_newlines()
        return self.statement()

    def arguments(self, end: str | None) -> list[tuple[str | None, Node]]:
        """Call arguments: expressions and `name: expr` pairs, up to `end` or the line's end."""
        args: list[tuple[str | None, Node]] = []
        if end and self.at("OP", end):
            return args
        while True:
            if self.at("IDENT") and self.at("OP", ":", 1):
                name = self.next().value
                self.next()
                args.append((name, self.expression()))
            else:
                args.append((None, self.expression()))
            if self.at("OP", ","):
                self.next()
                continue
            return args

    # expressions, lowest precedence first
    def expression(self) -> Node:
        condition = self.logical_or()
        if self.at("OP", "?:"):
            line = self.next().line
            return Node("elvis", (condition, self.expression()), line)
        if self.at("OP", "?"):
            line = self.next().line
            then = self.expression()
            self.expect("OP", ":")
            return Node("ternary", (condition, then, self.expression()), line)
        return condition

    def binary_level(self, operators: tuple[str, ...], operand) -> Node:
        left = operand()
        while self.peek().kind == "OP" and self.peek().value in operators:
            token = self.next()
            left = Node("binary", (token.value, left, operand()), token.line)
        return left

    def logical_or(self) -> Node:
        return self.binary_level(("||",), self.logical_and)

    def logical_and(self) -> Node:
        return self.binary_level(("&&",), self.equality)

    def equality(self) -> Node:
        return self.binary_level(("==", "!="), self.additive)

    def additive(self) -> Node:
        return self.binary_level(("+",), self.unary)

    def unary(self) -> Node:
        if self.at("OP", "!"):
            line = self.next().line
            return Node("unary", ("!", self.unary()), line)
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while True:
            if self.at("OP", ".") or self.at("OP", "?."):
                safe = self.next().value == "?."
                name = self.expect("IDENT").value
                if self.at("OP", "("):
                    self.next()
                    args = self.arguments(end=")")
                    self.expect("OP", ")")
                    node = Node("method", (node, name, args, safe), node.line)
                else:
                    node = Node("prop", (node, name, safe), node.line)
            elif self.at("OP", "(") and node.kind == "var":
                self.next()
                args = self.arguments(end=")")
                self.expect("OP", ")")
                node = Node("call", (node.args[0], args), node.line)
            else:
                return node

    def primary(self) -> Node:
        token = self.next()
        if token.kind == "STRING":
            return Node("lit", (token.value,), token.line)
        if token.kind == "GSTRING":
            return Node("gstring", (parse_gstring(token.value, token.line),), token.line)
        if token.kind == "NUMBER":
            value = float(token.value) if "." in token.value else int(token.value)
            return Node("lit", (value,), token.line)
        if token.kind == "IDENT":
            constants = {"true": True, "false": False, "null": None}
            if token.value in constants:
                return Node("lit", (constants[token.value],), token.line)
            if token.value in KEYWORDS:
                raise UnsupportedGroovy(f"line {token.line}: unexpected {token.value!r}")
            return Node("var", (token.value,), token.line)
        if token.kind == "OP" and token.value == "(":
            inner = self.expression()
            self.expect("OP", ")")
            return inner
        if token.kind == "OP" and token.value == "[":
            if self.at("OP", ":") and self.at("OP", "]", 1):
                self.next()
                self.next()
                return Node("map", ((),), token.line)
            args = self.arguments(end="]")
            self.expect("OP", "]")
            named = [name is not None for name, _ in args]
            if args and all(named):
                return Node("map", (tuple((name, value) for name, value in args),), token.line)
            if any(named):
                raise UnsupportedGroovy(f"line {token.line}: mixed list/map literal")
            return Node("list", (tuple(value for _, value in args),), token.line)
        raise UnsupportedGroovy(f"line {token.line}: unexpected {token.value!r}")


def parse_expression(text: str, line: int = 0) -> Node:
    parser = Parser(tokenize(text, line))
    node = parser.expression()
    parser.skip_newlines()
    parser.expect("EOF")
    return node


def parse_gstring(raw: str, line: int) -> tuple:
    """A GString body -> parts: str (escapes applied) or Node (interpolated expression)."""
    parts: list[Any] = []
    text: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            text.append(raw[i : i + 2])
            i += 2
        elif c == "$" and raw.startswith("${", i):
            depth, j = 1, i + 2
            while j < len(raw) and depth:
                if raw[j] in "\"'":  # a quoted string inside ${...}
                    end = raw.find(raw[j], j + 1)
                    if end < 0:
                        raise UnsupportedGroovy(f"line {line}: unterminated string in ${{...}}")
                    j = end + 1
                    continue
                depth += {"{": 1, "}": -1}.get(raw[j], 0)
                j += 1
            if depth:
                raise UnsupportedGroovy(f"line {line}: unterminated ${{...}}")
            parts.extend([unescape("".join(text)), parse_expression(raw[i + 2 : j - 1], line)])
            text = []
            i = j
        elif c == "$" and i + 1 < len(raw) and (raw[i + 1].isalpha() or raw[i + 1] == "_"):
            m = re.match(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", raw[i + 1 :])
            parts.extend([unescape("".join(text)), parse_expression(m.group(0), line)])
            text = []
            i += 1 + len(m.group(0))
        elif c == "$":
            raise UnsupportedGroovy(f"line {line}: a bare $ in a GString (write \\$)")
        else:
            text.append(c)
            i += 1
    parts.append(unescape("".join(text)))
    return tuple(part for part in parts if part != "")


# --- values and evaluation ------------------------------------------------------------------


@dataclass(frozen=True)
class StagedPath:
    """A staged `path` input: renders as its name in the task's work folder, as in Nextflow."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class Accelerator:
    """Nextflow's AcceleratorResource: `accelerator 1` in the config gives request 1."""

    request: int = 1
    type: str | None = None
    limit: int | None = None


@dataclass
class Task:
    """The `task` object that a process body sees."""

    process: str
    cpus: int = 1
    ext: dict[str, Any] = field(default_factory=dict)
    accelerator: Accelerator | None = None
    attempt: int = 1
    memory: str | None = None


def groovy_truth(value: Any) -> bool:
    if isinstance(value, StagedPath):
        return True
    if isinstance(value, (Task, Accelerator)):
        return True
    return bool(value)  # None, False, '', [], {}, 0 are false, as in Groovy


def groovy_str(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, list):
        return "[" + ", ".join(groovy_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{k}:{groovy_str(v)}" for k, v in value.items()) + "]"
    return str(value)


def groovy_equal(a: Any, b: Any) -> bool:
    if isinstance(a, StagedPath) or isinstance(b, StagedPath):
        return str(a) == str(b)
    return a == b


class Scope:
    """Variables: the inputs, `task`, globals (assigned without def) and locals (def)."""

    def __init__(self, base: dict[str, Any]):
        self.base = dict(base)
        self.globals: dict[str, Any] = {}
        self.locals: dict[str, Any] = {}

    def lookup(self, name: str, line: int) -> Any:
        for table in (self.locals, self.globals, self.base):
            if name in table:
                return table[name]
        raise UnsupportedGroovy(f"line {line}: unknown variable {name!r}")


def get_property(value: Any, name: str, line: int) -> Any:
    if isinstance(value, dict):
        return value.get(name)  # Groovy maps: a missing key is null
    if isinstance(value, (Task, Accelerator)) and hasattr(value, name):
        return getattr(value, name)
    raise UnsupportedGroovy(f"line {line}: no property {name!r} on {type(value).__name__}")


def call_method(value: Any, name: str, args: list[Any], line: int) -> Any:
    if isinstance(value, (str, StagedPath)):
        text = str(value)
        if name == "contains":
            return str(args[0]) in text
        if name == "startsWith":
            return text.startswith(str(args[0]))
        if name == "endsWith":
            return text.endswith(str(args[0]))
        if name == "trim":
            return text.strip()
        if name == "toString":
            return text
    if isinstance(value, list) and name == "join":
        return (str(args[0]) if args else "").join(groovy_str(v) for v in value)
    raise UnsupportedGroovy(f"line {line}: method {name}() on {type(value).__name__}")


def evaluate(node: Node, scope: Scope) -> Any:
    kind, args = node.kind, node.args
    if kind == "lit":
        return args[0]
    if kind == "gstring":
        return "".join(p if isinstance(p, str) else groovy_str(evaluate(p, scope)) for p in args[0])
    if kind == "var":
        return scope.lookup(args[0], node.line)
    if kind == "prop":
        target = evaluate(args[0], scope)
        if target is None and args[2]:
            return None
        if target is None:
            raise UnsupportedGroovy(f"line {node.line}: .{args[1]} on null")
        return get_property(target, args[1], node.line)
    if kind == "method":
        target = evaluate(args[0], scope)
        if target is None and args[3]:
            return None
        values = [evaluate(value, scope) for name, value in args[2] if name is None]
        return call_method(target, args[1], values, node.line)
    if kind == "list":
        return [evaluate(value, scope) for value in args[0]]
    if kind == "map":
        return {name: evaluate(value, scope) for name, value in args[0]}
    if kind == "unary":
        return not groovy_truth(evaluate(args[1], scope))
    if kind == "elvis":
        value = evaluate(args[0], scope)
        return value if groovy_truth(value) else evaluate(args[1], scope)
    if kind == "ternary":
        chosen = args[1] if groovy_truth(evaluate(args[0], scope)) else args[2]
        return evaluate(chosen, scope)
    if kind == "binary":
        op, left, right = args
        if op == "||":
            return groovy_truth(evaluate(left, scope)) or groovy_truth(evaluate(right, scope))
        if op == "&&":
            return groovy_truth(evaluate(left, scope)) and groovy_truth(evaluate(right, scope))
        a, b = evaluate(left, scope), evaluate(right, scope)
        if op == "==":
            return groovy_equal(a, b)
        if op == "!=":
            return not groovy_equal(a, b)
        if op == "+":
            if isinstance(a, (str, StagedPath)):
                return str(a) + groovy_str(b)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                return a + b
            if isinstance(a, list):
                return [*a, *(b if isinstance(b, list) else [b])]
        raise UnsupportedGroovy(f"line {node.line}: operator {op} on these values")
    if kind == "call":
        raise UnsupportedGroovy(f"line {node.line}: call of {args[0]}() in an expression")
    raise UnsupportedGroovy(f"line {node.line}: {kind}")


def execute(statements: list[Stmt], scope: Scope) -> Any:
    """Run statements; the value of the last one (Groovy closure semantics)."""
    result = None
    for stmt in statements:
        kind, args = stmt.kind, stmt.args
        if kind == "def":
            scope.locals[args[0]] = result = evaluate(args[1], scope)
        elif kind == "assign":
            if args[0] in scope.locals:
                scope.locals[args[0]] = result = evaluate(args[1], scope)
            else:
                scope.globals[args[0]] = result = evaluate(args[1], scope)
        elif kind == "if":
            condition, then, otherwise = args
            if groovy_truth(evaluate(condition, scope)):
                result = execute([then], scope)
            elif otherwise is not None:
                result = execute([otherwise], scope)
            else:
                result = None
        elif kind == "block":
            result = execute(list(args[0]), scope)
        elif kind == "command":
            name, arguments = args
            if name == "error":
                raise ProcessError(groovy_str(evaluate(arguments[0][1], scope)))
            raise UnsupportedGroovy(f"line {stmt.line}: command {name!r} in a script block")
        elif kind == "expr":
            result = evaluate(args[0], scope)
    return result


# --- the process ------------------------------------------------------------------------------

SECTIONS = ("input", "output", "when", "script", "shell", "exec", "stub")


@dataclass
class Declaration:
    """One input or output line: its elements [(qualifier, Node)] and named options."""

    elements: list[tuple[str, Node]]
    options: dict[str, Node]
    line: int

    def option(self, name: str) -> Any:
        node = self.options.get(name)
        if node is None:
            return None
        if node.kind == "var":  # `emit: per_frame` names a channel, it is no variable
            return node.args[0]
        return evaluate(node, Scope({}))


@dataclass
class Rendered:
    """A rendered script or stub: the command text and what the outputs need."""

    section: str
    script: str
    scope: Scope
    process: NextflowProcess
    inputs: list[Any]
    task: Task


@dataclass
class Output:
    emit: str | None
    topic: str | None
    optional: bool
    values: list[Any]  # per element: the val value, the matched files (list[Path]), eval stdout


class NextflowProcess:
    def __init__(self, path: Path, module_dir: Path | None = None):
        self.path = Path(path)
        self.module_dir = Path(module_dir or self.path.parent)
        source = self.path.read_text()
        m = re.search(r"^process\s+(\w+)\s*\{", source, re.MULTILINE)
        if not m:
            raise UnsupportedGroovy(f"{path}: no process definition")
        self.name = m.group(1)
        tokens = tokenize(source[m.end() :], source.count("\n", 0, m.end()) + 1)
        body = self._process_body(tokens)
        self.sections = self._split_sections(body)
        self.directives = self._parse_statements(self.sections.get("directives", []))
        self.inputs = self._declarations("input")
        self.outputs = self._declarations("output")
        when = self._parse_statements(self.sections.get("when", []))
        self.when = when[0].args[0] if when else None
        self.script = self._parse_statements(self.sections.get("script", []))
        self.stub = self._parse_statements(self.sections.get("stub", []))

    @staticmethod
    def _process_body(tokens: list[Token]) -> list[Token]:
        depth = 1
        for index, token in enumerate(tokens):
            if token.kind == "OP" and token.value == "{":
                depth += 1
            elif token.kind == "OP" and token.value == "}":
                depth -= 1
                if depth == 0:
                    return tokens[:index]
        raise UnsupportedGroovy("process body not closed")

    @staticmethod
    def _split_sections(tokens: list[Token]) -> dict[str, list[Token]]:
        sections: dict[str, list[Token]] = {"directives": []}
        current = "directives"
        start_of_line, depth, i = True, 0, 0
        while i < len(tokens):
            token = tokens[i]
            is_label = (
                start_of_line
                and depth == 0
                and token.kind == "IDENT"
                and token.value in SECTIONS
                and i + 1 < len(tokens)
                and tokens[i + 1].kind == "OP"
                and tokens[i + 1].value == ":"
            )
            if is_label:
                current = token.value
                if current in sections:
                    raise UnsupportedGroovy(f"line {token.line}: second {current}: section")
                sections[current] = []
                i += 2
                continue
            if token.kind == "OP" and token.value == "{":
                depth += 1
            elif token.kind == "OP" and token.value == "}":
                depth -= 1
            sections[current].append(token)
            start_of_line = token.kind == "NEWLINE"
            i += 1
        return sections

    @staticmethod
    def _parse_statements(tokens: list[Token]) -> list[Stmt]:
        line = tokens[-1].line if tokens else 0
        return Parser([*tokens, Token("EOF", "", line)]).statements()

    def _declarations(self, section: str) -> list[Declaration]:
        declarations = []
        for stmt in self._parse_statements(self.sections.get(section, [])):
            if stmt.kind != "command":
                raise UnsupportedGroovy(f"line {stmt.line}: not a declaration in {section}:")
            qualifier, arguments = stmt.args
            elements: list[tuple[str, Node]] = []
            options: dict[str, Node] = {}
            if qualifier == "tuple":
                for name, node in arguments:
                    if name is not None:
                        options[name] = node
                    elif node.kind == "call" and len(node.args[1]) == 1:
                        elements.append((node.args[0], node.args[1][0][1]))
                    else:
                        raise UnsupportedGroovy(f"line {stmt.line}: tuple element")
            else:
                positional = [node for name, node in arguments if name is None]
                options = {name: node for name, node in arguments if name is not None}
                if len(positional) != 1:
                    raise UnsupportedGroovy(f"line {stmt.line}: {qualifier} declaration")
                elements.append((qualifier, positional[0]))
            for qualifier_name, _ in elements:
                if qualifier_name not in ("val", "path", "eval", "env", "stdout"):
                    raise UnsupportedGroovy(f"line {stmt.line}: qualifier {qualifier_name}")
            declarations.append(Declaration(elements, options, stmt.line))
        return declarations

    # directives ------------------------------------------------------------------------------
    def directive(self, name: str, inputs: list[Any] | None = None, task: Task | None = None):
        """The value of a directive (`tag`, `label`, `conda`, `container`), all if repeated."""
        scope = self._scope(inputs or [], task) if inputs is not None else self._base_scope(task)
        values = [
            evaluate(stmt.args[1][0][1], scope)
            for stmt in self.directives
            if stmt.kind == "command" and stmt.args[0] == name
        ]
        return values

    def _base_scope(self, task: Task | None) -> Scope:
        return Scope(
            {
                "task": task or Task(self.name),
                "moduleDir": str(self.module_dir),
                "workflow": {"containerEngine": None, "profile": "standard"},
                "params": {},
            }
        )

    def _scope(self, inputs: list[Any], task: Task | None) -> Scope:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"{self.name} takes {len(self.inputs)} inputs, got {len(inputs)}")
        scope = self._base_scope(task)
        for declaration, value in zip(self.inputs, inputs, strict=True):
            values = list(value) if len(declaration.elements) > 1 else [value]
            if len(values) != len(declaration.elements):
                raise ValueError(f"input at line {declaration.line}: {len(values)} values")
            for (qualifier, node), item in zip(declaration.elements, values, strict=True):
                if node.kind != "var":
                    raise UnsupportedGroovy(f"line {declaration.line}: input element")
                scope.base[node.args[0]] = stage(item) if qualifier == "path" else item
        return scope

    # rendering ---------------------------------------------------------------------------------
    def input_files(self, inputs: list[Any]) -> list[Path]:
        """The files that Nextflow would stage for these inputs (path elements)."""
        files: list[Path] = []
        for declaration, value in zip(self.inputs, inputs, strict=True):
            values = list(value) if len(declaration.elements) > 1 else [value]
            for (qualifier, _), item in zip(declaration.elements, values, strict=True):
                if qualifier == "path":
                    items = item if isinstance(item, list) else [item]
                    files.extend(Path(i) for i in items)
        return files

    def when_true(self, inputs: list[Any], task: Task) -> bool:
        return self.when is None or groovy_truth(evaluate(self.when, self._scope(inputs, task)))

    def render(self, section: str, inputs: list[Any], task: Task) -> Rendered:
        statements = {"script": self.script, "stub": self.stub}[section]
        scope = self._scope(inputs, task)
        value = execute(statements, scope)
        if not isinstance(value, str):
            raise UnsupportedGroovy(f"{section}: the block's value is {type(value).__name__}")
        return Rendered(section, strip_indent(value), scope, self, inputs, task)

    def collect_outputs(
        self, rendered: Rendered, work_dir: Path, env: dict[str, str] | None = None
    ) -> list[Output]:
        """Evaluate the output declarations in the work folder after the command ran.

        `eval` commands run there with bash in `env` (the task's environment)."""
        staged = {Path(work_dir, f.name).resolve() for f in self.input_files(rendered.inputs)}
        outputs = []
        for declaration in self.outputs:
            optional = bool(declaration.option("optional"))
            values: list[Any] = []
            missing = False
            for qualifier, node in declaration.elements:
                if qualifier == "val":
                    values.append(evaluate(node, rendered.scope))
                elif qualifier == "path":
                    pattern = groovy_str(evaluate(node, rendered.scope))
                    matches = sorted(
                        p
                        for p in Path(work_dir).glob(pattern)
                        if p.resolve() not in staged and not p.name.startswith(".")
                    )
                    missing |= not matches
                    values.append(matches)
                elif qualifier == "eval":
                    command = groovy_str(evaluate(node, rendered.scope))
                    values.append(run_eval(command, work_dir, env))
                else:
                    raise UnsupportedGroovy(f"line {declaration.line}: output {qualifier}")
            if missing and not optional:
                raise MissingOutput(
                    f"line {declaration.line}: no file for {declaration.option('emit')}"
                )
            if missing:
                continue  # an optional output that matched nothing emits nothing
            outputs.append(
                Output(declaration.option("emit"), declaration.option("topic"), optional, values)
            )
        return outputs


def stage(item: Any) -> Any:
    """A path input's value inside the task: the staged name; [] stays an empty list."""
    if isinstance(item, list):
        return [stage(i) for i in item]
    return StagedPath(Path(item).name)


def strip_indent(text: str) -> str:
    """Nextflow strips the script's common indentation and its first empty line."""
    if text.startswith("\n"):
        text = text[1:]
    return textwrap.dedent(text)


def run_eval(command: str, work_dir: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["bash", "-c", command], cwd=work_dir, capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise MissingOutput(f"eval {command!r} failed ({done.returncode}): {done.stderr}")
    return done.stdout.strip()


def stage_inputs(process: NextflowProcess, inputs: list[Any], work_dir: Path) -> None:
    """Link the path inputs into the work folder under their names, as Nextflow stages them."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for source in process.input_files(inputs):
        link = work_dir / source.name
        if not link.exists():
            link.symlink_to(Path(source).resolve())

"""Jinja placeholders in a sandbox, for every service that fills texts from records:
automation's rule actions and campaigns, conversations' message templates.

`problem` checks a template when it is saved (syntax, the names it may use, the fields of
those names); `STRICT` renders with a missing value as an error (automation: the action
fails, logged), `LENIENT` with a missing value as empty text (a message template: a contact
without a deal, an empty field)."""
from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_PRODUCT = 100_000  # characters or items a `*` may make; `**` up to this exponent
MAX_EXPONENT = 64


class _Bounded(SandboxedEnvironment):
    """A sandbox whose `*` and `**` cannot make a text, list or number big enough to stall
    the process (`{{ "x" * 10**9 }}`)."""
    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise SecurityError("Exponent too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and \
                        len(seq) * times > MAX_PRODUCT:
                    raise SecurityError("Repeated text too long")
        return super().call_binop(context, operator, left, right)


STRICT = _Bounded(undefined=StrictUndefined, autoescape=False)
LENIENT = _Bounded(undefined=ChainableUndefined, autoescape=False)


# no other files: there are none to load (they would fail only when the text is filled)
NOT_ALLOWED = {nodes.Include: "include", nodes.Extends: "extends", nodes.Import: "import",
               nodes.FromImport: "from ... import"}


def problem(source, allowed, path_problem=None):
    """None when `source` is fine, else (line, message): a syntax error (an unknown filter
    too), `include` / `extends` / `import`, a name outside `allowed`, or a `name.attr` that
    `path_problem(path)` refuses (it returns why, or None)."""
    try:
        parsed = STRICT.parse(source)
        undeclared = meta.find_undeclared_variables(parsed)  # compiles: unknown filters fail
    except TemplateSyntaxError as error:
        return error.lineno, f"Template syntax error line {error.lineno}: {error.message}"
    for kind, word in NOT_ALLOWED.items():
        for node in parsed.find_all(kind):
            return node.lineno, f"Template syntax error line {node.lineno}: no {word} here"
    for name in sorted(undeclared):
        if name not in allowed:
            line = next((n.lineno for n in parsed.find_all(nodes.Name) if n.name == name), 1)
            return line, (f"Unknown placeholder {name!r}; available: "
                          + ", ".join(sorted(allowed)))
    for node in parsed.find_all(nodes.Getattr):
        if path_problem and isinstance(node.node, nodes.Name):
            found = path_problem(f"{node.node.name}.{node.attr}")
            if found:
                return node.lineno, f"Unknown placeholder: {found}"
    return None

"""Property tests: a spec string is data in the built module, however it is written.

Any string in a free-text field either fails validation cleanly (problems, SpecError)
or builds a module with the same statements as a plain string would, holding that
exact string. And `pycode.literal()` writes literals that Python reads back, laid out as
`ruff format` leaves them.
"""

from __future__ import annotations

import ast
import difflib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from conftest import import_file
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from endpointgen.compiler import pipeline
from endpointgen.compiler.pycode import comment, flat, lines, literal, string_literal
from endpointgen.errors import Problem, SpecError

ROOT = Path(__file__).resolve().parents[2]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# --- strings worth trying ------------------------------------------------------------

NASTY = [
    "'",
    '"',
    "'''",
    '"""',
    "\\",
    "\\n",
    "\\x00",
    "\n",
    "\r",
    "\r\n",
    "\t",
    "\x00",
    "\x0b\x0c\x1c\x1d\x1e\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\u202e",
    "\x1b[31m",
    "{{ plan }}",
    "{{",
    "}}",
    "{% if true %}",
    "{% endif %}",
    "{#",
    "#",
    "😀",
    "\U0001f600\U0010fffd",
    "é\u0301",
    '"); import os; os.system("id"); ("',
    "'''\nimport os\n'''",
    '"""\nimport os\n"""',
    "\nimport os\n",
    "${HOME}",
    " ",
    "",
    "yes",
    "null",
    "~",
    "- a",
    ": b",
    "&x *x",
    "!!python/object",
    "---",
]

CHARS = st.characters(exclude_categories=["Cs"])  # YAML cannot carry lone surrogates
STRINGS = st.one_of(
    st.text(CHARS, max_size=30),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(CHARS, max_size=4)), max_size=6).map(
        "".join
    ),
)


def like(pattern: str) -> st.SearchStrategy[str]:
    """Strings the pattern takes (with, now and then, the trailing newline that `$`
    lets through in Python's `re`), and strings it does not."""
    return st.one_of(st.from_regex(pattern), STRINGS)


def image_env(tree: ast.Module) -> dict[str, str]:
    """The mapping passed to `.env(...)` on the Modal image."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "env"
            and node.args
            and isinstance(node.args[0], ast.Dict)
        ):
            return ast.literal_eval(node.args[0])
    raise AssertionError("no .env(...) in the module")


# --- building ------------------------------------------------------------------------


class _Blank(ast.NodeTransformer):
    """Every string constant (and route function name) replaced by one placeholder: what
    is left is the shape of the module, its statements and expressions."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str):
            return ast.copy_location(ast.Constant("<str>"), node)
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        # A route's function is named after its path: an identifier made from the path's
        # letters and digits, never the path's text.
        assert node.name.isidentifier()
        node.name = "<route>"
        self.generic_visit(node)
        return node


class Unrepresentable(Exception):
    """A value YAML itself cannot carry: not endpointgen's to handle."""


@dataclass(frozen=True)
class Result:
    source: str
    module: ModuleType
    env: dict[str, str]  # what the Modal image's `.env(...)` sets
    imports: list[str]
    shape: str


def attempt(spec: dict[str, Any], allow_unicode: bool = False) -> Result | None:
    """Write, validate and build `spec`; None when it is (cleanly) invalid."""
    text = yaml.safe_dump(spec, allow_unicode=allow_unicode, sort_keys=False)
    if yaml.safe_load(text) != spec:
        raise Unrepresentable(text)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "spec"
        folder.mkdir()
        path = folder / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        out = Path(tmp) / "out"
        problems = pipeline.validate(path)
        if problems:
            for problem in problems:
                assert isinstance(problem, Problem)
                line = str(problem)
                assert line.startswith(f"{path}:")
                assert len(line.splitlines()) == 1, line
            with pytest.raises(SpecError):
                pipeline.build(path, out)
            return None
        built = pipeline.build(path, out)
        out.mkdir()
        built.path.write_text(built.source, encoding="utf-8")
        tree = ast.parse(built.source)
        env = image_env(tree)
        imports = sorted(
            ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
        )
        shape = ast.dump(_Blank().visit(tree))
        module = import_file(built.path)  # with the real `modal`: defines, runs nothing
        sys.modules.pop(module.__name__, None)
        return Result(built.source, module, env, imports, shape)


# --- a valid spec, and where each free-text field sits in it -------------------------


def base_spec() -> dict[str, Any]:
    return {
        "name": "prop",
        "description": "plain",
        "model": {"id": "gpt2", "task": "text-generation", "revision": "main"},
        "secrets": ["plain-secret"],
        "env": {"MY_VAR": "plain"},
        "auth": {
            "mode": "api_key",
            "secret": "prop-keys",
            "header": "X-Plain-Key",
            "audience": "plain",
            "issuer": "plain",
        },
        "cors": {"origins": ["https://plain.example.com"]},
        "routes": [
            {
                "path": "/generate",
                "method": "POST",
                "action": "generate",
                "summary": "plain",
            },
            {"path": "/health", "action": "health"},
        ],
    }


def _set(*path: str | int) -> Callable[[dict[str, Any], str], None]:
    def put(spec: dict[str, Any], value: str) -> None:
        here: Any = spec
        for part in path[:-1]:
            here = here[part]
        here[path[-1]] = value

    return put


def _put_env_key(spec: dict[str, Any], value: str) -> None:
    spec["env"] = {value: "plain"}


def _put_origin(spec: dict[str, Any], value: str) -> None:
    spec["cors"]["origins"] = [value]


def _put_secret(spec: dict[str, Any], value: str) -> None:
    spec["secrets"] = [value]


def _jwt(key: str) -> Callable[[dict[str, Any], str], None]:
    def put(spec: dict[str, Any], value: str) -> None:
        spec["auth"] = {"mode": "jwt", "secret": "prop-keys", key: value}

    return put


def _keyword(result: Result, function: str, key: str) -> Any:
    """The literal passed as `key=` to `function(...)` in the module."""
    for node in ast.walk(ast.parse(result.source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == function:
            for keyword in node.keywords:
                if keyword.arg == key:
                    return ast.literal_eval(keyword.value)
    raise AssertionError(f"no {function}({key}=...) in the module")


def _served(result: Result) -> Any:
    from endpointgen.local.serve import load_app

    return load_app(result.module, load=False)


def _check_description(result: Result, value: str) -> None:
    assert result.module.DESCRIPTION == value
    assert _served(result).openapi()["info"].get("description", "") == value


def _check_model_id(result: Result, value: str) -> None:
    assert result.module.MODEL_ID == value
    assert result.module.model.id == value


def _check_revision(result: Result, value: str) -> None:
    assert result.module.MODEL_REVISION == value
    assert result.module.model.revision == value


def _check_summary(result: Result, value: str) -> None:
    # An empty summary is no summary: FastAPI's own, from the function's name, stands in.
    operation = _served(result).openapi()["paths"]["/generate"]["post"]
    assert operation["summary"] == (value or "Generate")


def _check_env_value(result: Result, value: str) -> None:
    assert result.env["MY_VAR"] == value


def _check_env_key(result: Result, value: str) -> None:
    assert result.env[value] == "plain"


def _check_origin(result: Result, value: str) -> None:
    assert _keyword(result, "http.Cors", "origins") == [value]
    response = TestClient(_served(result)).options(
        "/generate", headers={"Origin": value, "Access-Control-Request-Method": "POST"}
    )
    assert response.headers["access-control-allow-origin"] == value


def _check_header(result: Result, value: str) -> None:
    assert _keyword(result, "auth.api_key", "header") == value
    assert value in _keyword(result, "http.Cors", "headers")
    schemes = _served(result).openapi()["components"]["securitySchemes"]
    assert [s["name"] for s in schemes.values()] == [value]


def _check_secret(result: Result, value: str) -> None:
    info = result.module.Server._get_class_service_function().info()
    expected = sorted([value, "prop-keys"])
    assert sorted(info.secrets) == [f"modal.Secret.from_name({name!r})" for name in expected]


def _check_path(result: Result, value: str) -> None:
    assert value in _served(result).openapi()["paths"]


def _check_jwt(key: str) -> Callable[[Result, str], None]:
    def check(result: Result, value: str) -> None:
        assert _keyword(result, "auth.jwt", key) == value

    return check


def _check_name(result: Result, value: str) -> None:
    assert result.module.APP_NAME == value
    assert result.module.app.name == value


@dataclass(frozen=True)
class Field:
    id: str
    put: Callable[[dict[str, Any], str], None]
    check: Callable[[Result, str], None] | None  # None: it does not reach the module
    strategy: st.SearchStrategy[str] = STRINGS
    plain: str = "plain"
    skip: Callable[[str], bool] = lambda value: False


FIELDS = [
    Field("description", _set("description"), _check_description),
    Field("model.id", _set("model", "id"), _check_model_id, plain="gpt2"),
    Field("model.revision", _set("model", "revision"), _check_revision),
    Field("routes[0].summary", _set("routes", 0, "summary"), _check_summary),
    Field("env value", _set("env", "MY_VAR"), _check_env_value),
    Field(
        "env key",
        _put_env_key,
        _check_env_key,
        like(r"^[A-Za-z_][A-Za-z0-9_]{0,12}$"),
        plain="PLAIN",
        # HF_HOME is set by the build too: naming it changes how many there are.
        skip=lambda value: value == "HF_HOME",
    ),
    Field(
        "cors.origins[0]",
        _put_origin,
        _check_origin,
        like(r"^https?://[A-Za-z0-9.-]{1,20}(:[0-9]{1,5})?$"),
        plain="https://plain.example.com",
    ),
    Field(
        "auth.header",
        _set("auth", "header"),
        _check_header,
        like(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$"),
        plain="X-Plain-Key",
        # A header the CORS list holds already is not added twice.
        skip=lambda value: value in ("Content-Type", "X-Request-ID"),
    ),
    Field("auth.audience", _set("auth", "audience"), None),  # api_key mode: unused
    Field("auth.audience (jwt)", _jwt("audience"), _check_jwt("audience")),
    Field("auth.issuer (jwt)", _jwt("issuer"), _check_jwt("issuer")),
    Field(
        "secrets[0]",
        _put_secret,
        _check_secret,
        like(r"^[A-Za-z0-9._-]{1,20}$"),
        plain="plain-secret",
        skip=lambda value: value == "prop-keys",  # the auth secret: listed once
    ),
    Field(
        "routes[0].path",
        _set("routes", 0, "path"),
        _check_path,
        like(r"^/[A-Za-z0-9._~/-]{0,20}$"),
        plain="/generate",
        skip=lambda value: value == "/health",  # the other route: a duplicate
    ),
    Field(
        "name",
        _set("name"),
        _check_name,
        like(r"^[a-z][a-z0-9-]{0,20}$"),
        plain="prop",
    ),
]

_baselines: dict[tuple[str, str], Result] = {}


def baseline(field: Field, plain: str) -> Result:
    key = (field.id, plain)
    if key not in _baselines:
        spec = base_spec()
        field.put(spec, plain)
        result = attempt(spec)
        assert result is not None, f"the baseline for {field.id} must build"
        _baselines[key] = result
    return _baselines[key]


def check_value(field: Field, value: str, allow_unicode: bool = False) -> None:
    """`value` in `field`: a clean refusal, or a module shaped as the plain one that
    holds `value` exactly."""
    spec = base_spec()
    field.put(spec, value)
    result = attempt(spec, allow_unicode)
    if result is None:
        return
    plain = field.plain
    if field.id == "routes[0].summary" and not value:
        plain = ""  # no summary at all: the decorator has no `summary=`
    if field.id == "model.id" and hasattr(result.module, "MODEL_DIR"):
        plain = "./local-model"  # a directory: the app ships it, so more code
    expected = baseline(field, plain)
    diff = "".join(
        difflib.unified_diff(expected.source.splitlines(True), result.source.splitlines(True))
    )
    assert result.shape == expected.shape, diff
    assert result.imports == expected.imports
    # A value never adds a statement: every literal of one is one string constant.
    assert len(ast.parse(result.source).body) == len(ast.parse(expected.source).body), diff
    if field.check is not None:
        field.check(result, value)


@pytest.mark.parametrize("field", FIELDS, ids=[f.id for f in FIELDS])
@pytest.mark.slow
def test_any_string_in_a_field_is_data(field: Field) -> None:
    @SETTINGS
    @given(value=field.strategy, allow_unicode=st.booleans())
    def check(value: str, allow_unicode: bool) -> None:
        assume(not field.skip(value))
        try:
            check_value(field, value, allow_unicode)
        except Unrepresentable:
            assume(False)

    check()


@pytest.mark.parametrize("field", FIELDS, ids=[f.id for f in FIELDS])
def test_the_nastiest_strings_in_each_field(field: Field, tmp_path: Path) -> None:
    """The NASTY strings in a few groups, and all at once, without sampling; each module
    that builds is as `ruff format` would write it, however long the value."""
    groups = [NASTY[i : i + 6] for i in range(0, len(NASTY), 6)]
    for i, value in enumerate(["".join(NASTY), *("".join(group) for group in groups)]):
        if not field.skip(value):
            spec = base_spec()
            field.put(spec, value)
            result = attempt(spec)
            if result is not None:
                (tmp_path / f"m{i}.py").write_text(result.source, encoding="utf-8")
            check_value(field, value)
    if any(tmp_path.glob("*.py")):
        formatted = _ruff_diff(tmp_path)
        assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_a_string_can_break_nothing_out() -> None:
    """The classic escapes, spelled out: each stays one constant in DESCRIPTION."""
    field = FIELDS[0]
    assert field.id == "description"
    for value in [
        '"\nimport os\nos.system("id")\n"',
        "'''\nimport os\n'''",
        '\\"); import os; ("',
        "{{ plan.__class__ }}{% raw %}",
        "\u2028import os\u2028",
        "\\\n\\",
    ]:
        check_value(field, value)


# --- pycode.literal(): literals -----------------------------------------------------------

JSON_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=[])),  # surrogates too: escaped
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

TRICKY_VALUES: list[Any] = [
    1e16,
    1e300,
    1.5e-7,
    -0.0,
    2.5,
    10**30,
    -7,
    "",
    "'",
    '"',
    "'\"",
    'a"b"c\'',
    "\\",
    "\x00\x7f\x85\u2028\u2029\ufeff\u200b\u202e",
    "\ud800",
    "é\u0301",
    "😀",
    "{{ x }}",
    "x" * 200,
    {"k": ["v" * 100, {"n": None}], "": []},
    [[[]], {}],
]


def laid_out(value: Any, indent: int = 0) -> str:
    """The literal as `pycode.lines` lays it out, without the assignment around it."""
    text = "\n".join(lines(["X = ", literal(value)], indent))
    return text.strip()[len("X = ") :]


def test_py_reads_back_tricky_values() -> None:
    for value in TRICKY_VALUES:
        assert ast.literal_eval(flat(literal(value))) == value
        assert ast.literal_eval(laid_out(value, 8)) == value


@SETTINGS
@given(JSON_LIKE)
def test_py_reads_back(value: Any) -> None:
    assert ast.literal_eval(flat(literal(value))) == value
    assert ast.literal_eval(laid_out(value, 4)) == value


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=[])))
def test_string_literal_is_one_printable_line(text: str) -> None:
    literal = string_literal(text)
    assert ast.literal_eval(literal) == text
    assert literal.isprintable(), literal
    assert len(literal.splitlines()) == 1
    # Double quotes, unless that takes more escapes (as ruff prefers).
    assert literal[0] == ("'" if text.count('"') > text.count("'") else '"')


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=[])))
def test_comment_stays_a_comment(text: str) -> None:
    line = comment(text)
    assert line.isprintable()
    tree = ast.parse(f"x = 1  # {line}.\n")
    assert len(tree.body) == 1


def _ruff_diff(path: Path) -> subprocess.CompletedProcess[str]:
    if RUFF is None:
        pytest.skip("ruff is not installed")
    return subprocess.run(
        [str(RUFF), "format", "--diff", "--isolated", "--target-version", "py311", path],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )


def test_py_is_what_ruff_format_writes(tmp_path: Path) -> None:
    """One file of `X = <literal(v)>` statements, top level and indented, is as ruff
    formats it."""
    values: list[Any] = list(TRICKY_VALUES)

    @settings(max_examples=100, deadline=None)
    @given(JSON_LIKE)
    def collect(value: Any) -> None:
        values.append(value)

    collect()
    source = []
    for i, value in enumerate(values):
        statement = "\n".join(lines([f"X{i} = ", literal(value)]))
        inner = "\n".join(lines(["X = ", literal(value)], 4))
        source.append(f"{statement}\n")
        source.append(f"\n\nclass C{i}:\n{inner}\n\n\n")
    path = tmp_path / "literals.py"
    path.write_text("".join(source).rstrip("\n") + "\n", encoding="utf-8")
    result = _ruff_diff(path)
    assert result.returncode == 0, result.stdout + result.stderr

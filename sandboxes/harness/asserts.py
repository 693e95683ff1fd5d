# The assert-test converter (data.py comes first in the same source). The
# reward server runs it in a sandbox instance of its own, where no submitted
# program ever runs, when it loads an `assert` item
# (reward-server/src/code/asserts.rs). Its input: a line "1" (convert) or
# "0" (only check that the tests compile), then the test code. Its answer:
# one JSON object, {"error": "..."} when the tests do not compile, else
# {"steps": [...]}, the test code as the steps the host will run. Run as
# `__main__` it reads one input from stdin and prints the answer; the host
# usually keeps it alive instead and calls `serve()`, which takes one input
# after another over the door (reward-server/src/sandbox/served.rs). The
# steps:
#
#   {"line", "call", "args", "kwargs", "wrap", "check", "text"}
#       an assert the host decides itself: call `call(*args, **kwargs)` in
#       the program's globals (then `wrap`: set, frozenset, sorted, list or
#       tuple, when the test wraps the call), and `check` the value:
#       {"kind": "eq", "value"}, {"kind": "is", "value"} (True, False or
#       None), {"kind": "truthy"}, {"kind": "falsy"},
#       {"kind": "isclose", "value", "rel_tol", "abs_tol"} or
#       {"kind": "absdiff", "value", "eps", "strict"}. Values are typed JSON
#       texts (data.py); the expected ones never reach the program's sandbox.
#   {"line", "code", "lines"}
#       statements that run as they are, from line `line` (`lines`: the
#       first line of each statement), in the tests' own interpreter, where
#       the program's functions are proxies that call it through the host.
#
# An assert is converted when it is `assert CALL == VALUE` (either side),
# `assert CALL is True|False|None`, `assert CALL`, `assert not CALL`,
# `assert math.isclose(CALL, VALUE, ...)` or `assert abs(CALL - VALUE) < EPS`
# (or `<=`, either order), where CALL is `f(VALUE, ..., k=VALUE)`, maybe
# wrapped in set/frozenset/sorted/list/tuple, `f` is a name the test code
# never binds and no builtin has (so the program's), and every VALUE is a
# literal (or arithmetic on literals, or a wrapper of one). HumanEval's form,
# `def check(candidate): <asserts on candidate(...)>` followed by
# `check(f)`, is converted when every statement of `check` is. Other
# statements stay code, except a few that cannot matter: `pass`,
# docstrings, `assert True`, assignments of literals to names nothing reads
# (`METADATA = {...}`), and imports when no other statement stays.

import ast
import builtins
import json
import math
import os
import sys

encode, _ = _typed_codec()
BUILTINS = frozenset(dir(builtins))
WRAPPERS = {"set": set, "frozenset": frozenset, "sorted": sorted, "list": list, "tuple": tuple}
OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}


class NotConvertible(Exception):
    pass


def typed(value):
    """`value` as typed JSON; NotConvertible when it has no data form."""
    try:
        return encode(value)
    except (TypeError, ValueError, RecursionError):
        raise NotConvertible


def names_in(tree):
    """(names the code binds anywhere, how often each name is read)."""
    global imported_a_module
    bound, reads = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                reads[node.id] = reads.get(node.id, 0) + 1
            else:
                bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    # The module's public names: load it here to list them.
                    # Importing runs the module's code here, so a served
                    # converter does not vouch for its state afterwards.
                    imported_a_module = True
                    try:
                        module = __import__(node.module or "", fromlist=["*"])
                        bound.update(getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")])
                    except BaseException:
                        raise NotConvertible
                else:
                    bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound, reads


class Converter:
    def __init__(self, source, tree):
        self.source = source
        self.tree = tree
        self.bound, self.reads = names_in(tree)
        # `math.isclose` is the math module's only when `math` is bound by
        # `import math` and nothing else.
        imports_of_math = sum(
            1
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name == "math" and alias.asname is None
        )
        self.math_is_math = imports_of_math > 0 and not any(
            isinstance(node, ast.Name) and node.id == "math" and not isinstance(node.ctx, ast.Load)
            for node in ast.walk(tree)
        )

    def free(self, name):
        """A name the test code never binds."""
        return name not in self.bound

    def programs(self, name):
        """A name the program must define: one the test code never binds and
        no builtin has (a call of `len` or `max` is the builtin's, which the
        program must not be able to replace)."""
        return self.free(name) and name not in BUILTINS

    def value(self, node):
        """The value of a literal expression, evaluated here."""
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            a, b = self.value(node.left), self.value(node.right)
            if not all(type(x) in (int, float) for x in (a, b)):
                raise NotConvertible
            try:
                return OPS[type(node.op)](a, b)
            except ArithmeticError:
                raise NotConvertible
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            a, b = self.value(node.left), self.value(node.right)
            if not (type(a) in (int, float) and type(b) in (int, float) and abs(b) <= 64 and abs(a) < 2**64):
                raise NotConvertible
            try:
                return a**b
            except ArithmeticError:
                raise NotConvertible
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.value(node.operand)
            if type(v) not in (int, float):
                raise NotConvertible
            return -v if isinstance(node.op, ast.USub) else v
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in WRAPPERS
            and self.free(node.func.id)
            and len(node.args) <= 1
            and not node.keywords
        ):
            inner = [self.value(a) for a in node.args]
            try:
                return WRAPPERS[node.func.id](*inner)
            except (TypeError, ValueError):
                raise NotConvertible
        raise NotConvertible

    def call(self, node, candidate):
        """The program call of `node`: {"call", "args", "kwargs", "wrap",
        "text"}; `candidate` = (parameter name, the program's name) inside a
        HumanEval check function."""
        wrap = None
        outer = node
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in WRAPPERS
            and self.free(node.func.id)
            and len(node.args) == 1
            and not node.keywords
        ):
            wrap, node = node.func.id, node.args[0]
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise NotConvertible
        name = node.func.id
        if candidate is not None and name == candidate[0]:
            name = candidate[1]
        elif not self.programs(name):
            raise NotConvertible
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise NotConvertible
        args = [self.value(a) for a in node.args]
        kwargs = {k.arg: self.value(k.value) for k in node.keywords}
        text = ast.get_source_segment(self.source, outer) or name + "(...)"
        if candidate is not None:
            text = text.replace(candidate[0], candidate[1], 1)
        return {
            "call": name,
            "args": typed(args),
            "kwargs": typed(kwargs) if kwargs else None,
            "wrap": wrap,
            "text": text if len(text) <= 300 else text[:300] + "...",
        }

    def check(self, test, candidate):
        """The host check of `assert test`, with its call."""
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            left, op, right = test.left, test.ops[0], test.comparators[0]
            if isinstance(op, ast.Eq):
                for call_side, value_side in ((left, right), (right, left)):
                    try:
                        found = self.call(call_side, candidate)
                        return found, {"kind": "eq", "value": typed(self.value(value_side))}
                    except NotConvertible:
                        pass
                raise NotConvertible
            if isinstance(op, ast.Is):
                for call_side, value_side in ((left, right), (right, left)):
                    if isinstance(value_side, ast.Constant) and value_side.value in (True, False, None):
                        if type(value_side.value) in (bool, type(None)):
                            return self.call(call_side, candidate), {"kind": "is", "value": typed(value_side.value)}
                raise NotConvertible
            if isinstance(op, (ast.Lt, ast.LtE)) and self.is_abs_of_difference(left):
                eps = self.value(right)
                if type(eps) not in (int, float):
                    raise NotConvertible
                a, b = left.args[0].left, left.args[0].right
                for call_side, value_side in ((a, b), (b, a)):
                    try:
                        found = self.call(call_side, candidate)
                        expected = self.value(value_side)
                    except NotConvertible:
                        continue
                    if type(expected) not in (int, float):
                        raise NotConvertible
                    return found, {
                        "kind": "absdiff",
                        "value": typed(expected),
                        "eps": typed(eps),
                        "strict": isinstance(op, ast.Lt),
                    }
            raise NotConvertible
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return self.call(test.operand, candidate), {"kind": "falsy"}
        if (
            isinstance(test, ast.Call)
            and isinstance(test.func, ast.Attribute)
            and isinstance(test.func.value, ast.Name)
            and test.func.value.id == "math"
            and test.func.attr == "isclose"
        ):
            if not self.math_is_math or len(test.args) != 2:
                raise NotConvertible
            tolerances = {"rel_tol": 1e-09, "abs_tol": 0.0}
            for k in test.keywords:
                if k.arg not in tolerances:
                    raise NotConvertible
                tolerances[k.arg] = float(self.value(k.value))
            for call_side, value_side in ((test.args[0], test.args[1]), (test.args[1], test.args[0])):
                try:
                    found = self.call(call_side, candidate)
                    expected = self.value(value_side)
                except NotConvertible:
                    continue
                if type(expected) not in (int, float):
                    raise NotConvertible
                return found, {"kind": "isclose", "value": typed(expected), **tolerances}
            raise NotConvertible
        return self.call(test, candidate), {"kind": "truthy"}

    def is_abs_of_difference(self, node):
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "abs"
            and self.free("abs")
            and len(node.args) == 1
            and not node.keywords
            and isinstance(node.args[0], ast.BinOp)
            and isinstance(node.args[0].op, ast.Sub)
        )

    def inert(self, stmt):
        """A statement that cannot matter to a verdict."""
        if isinstance(stmt, ast.Pass):
            return True
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            return True
        if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Constant) and stmt.test.value:
            return True
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if not all(isinstance(t, ast.Name) and self.reads.get(t.id, 0) == 0 for t in targets):
                return False
            try:
                self.value(stmt.value)
                return True
            except NotConvertible:
                return False
        return False

    def assert_step(self, stmt, candidate=None):
        if not isinstance(stmt, ast.Assert):
            raise NotConvertible
        found, check = self.check(stmt.test, candidate)
        return dict(found, line=stmt.lineno, check=check)

    def check_function(self, stmt):
        """For `check(f)` on a top-level HumanEval check function: its
        steps; NotConvertible when any statement of it is not an assert the
        host can decide."""
        if not (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and len(stmt.value.args) == 1
            and not stmt.value.keywords
            and isinstance(stmt.value.args[0], ast.Name)
        ):
            raise NotConvertible
        name, entry = stmt.value.func.id, stmt.value.args[0].id
        definition = self.checks.get(name)
        if definition is None or self.reads.get(name, 0) != 1 or not self.programs(entry):
            raise NotConvertible
        parameter = definition.args.args[0].arg
        steps = []
        for inner in definition.body:
            if self.inert(inner) or isinstance(inner, ast.Import):
                continue
            steps.append(self.assert_step(inner, (parameter, entry)))
        self.expanded.add(name)
        return steps

    def convert(self):
        body = self.tree.body
        self.checks = {
            stmt.name: stmt
            for stmt in body
            if isinstance(stmt, ast.FunctionDef)
            and not stmt.decorator_list
            and len(stmt.args.args) == 1
            and not (stmt.args.posonlyargs or stmt.args.kwonlyargs or stmt.args.vararg or stmt.args.kwarg)
            and sum(1 for s in body if isinstance(s, ast.FunctionDef) and s.name == stmt.name) == 1
        }
        self.expanded = set()
        spans = [(first_line(stmt), stmt.end_lineno) for stmt in body]
        planned = []
        for k, stmt in enumerate(body):
            start, end = spans[k]
            shares_a_line = any(
                j != k and spans[j][0] <= end and start <= spans[j][1] for j in range(max(0, k - 1), min(len(body), k + 2))
            )
            if not shares_a_line:
                try:
                    planned.append(("steps", [self.assert_step(stmt)]))
                    continue
                except NotConvertible:
                    pass
                try:
                    planned.append(("steps", self.check_function(stmt)))
                    continue
                except NotConvertible:
                    pass
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                planned.append(("import", k))
            elif self.inert(stmt):
                planned.append(("drop", k))
            else:
                planned.append(("code", k))
        planned = [
            ("drop", what) if kind == "code" and getattr(body[what], "name", None) in self.expanded else (kind, what)
            for kind, what in planned
        ]
        # Imports matter only to other test code: with none, the tests need
        # no interpreter of their own.
        other_code = any(kind == "code" for kind, _ in planned)
        steps = []
        for kind, what in planned:
            if kind == "drop" or (kind == "import" and not other_code):
                continue
            if kind == "steps":
                steps.extend(what)
                continue
            start, end = spans[what]
            last = steps[-1] if steps else None
            if last is not None and "code" in last and last["end"] == what - 1:
                last["code"] = self.lines(last["line"], end)
                last["end"] = what
                last["lines"].append(start)
            else:
                steps.append({"line": start, "code": self.lines(start, end), "end": what, "lines": [start]})
        for step in steps:
            step.pop("end", None)
        return steps

    def lines(self, start, end):
        return "\n".join(self.source.split("\n")[start - 1 : end])


def first_line(stmt):
    decorators = getattr(stmt, "decorator_list", None) or []
    return min([stmt.lineno] + [d.lineno for d in decorators])


def answer_for(text):
    """The answer (JSON text) to one input."""
    flag, _, source = text.partition("\n")
    try:
        tree = ast.parse(source, "<tests>")
        compile(tree, "<tests>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as error:
        return json.dumps({"error": type(error).__name__ + ": " + str(error)})
    if flag != "1" or not tree.body:
        steps = []
        if tree.body:
            lines = [first_line(stmt) for stmt in tree.body]
            steps = [{"line": 1, "code": source, "lines": lines}]
        return json.dumps({"steps": steps})
    try:
        steps = Converter(source, tree).convert()
    except NotConvertible:
        steps = [{"line": 1, "code": source, "lines": [first_line(s) for s in tree.body]}]
    return json.dumps({"steps": steps})


# Set when a conversion imported a module (`from m import *`).
imported_a_module = False


def serve():
    """One input after another over the door, until the host says quit."""
    import _host

    call = _host.call
    frame = b'{"op":"next"}'
    while True:
        job = json.loads(call(frame))
        if job.get("quit"):
            break
        answer = answer_for(job["input"])
        frame = json.dumps({"op": "answer", "answer": answer, "keep": not imported_a_module}).encode()


if __name__ == "__main__":
    print(answer_for(sys.stdin.read()))
    # The answer is out; tearing the interpreter down (a full collection and
    # a free of every object) would only cost time.
    sys.stdout.flush()
    os._exit(0)

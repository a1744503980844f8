"""Rules of the code's shape, checked from its text:

(a) every guarded ``UPDATE jobs … SET status = 'x' … WHERE … status = 'y' | IN (…)`` in
    ``sql/queries/jobs.sql`` moves a job only along ``veo.jobs.TRANSITIONS``, and no update
    sets a status without a guard on the current one;
(b) only ``src/veo/lifecycle.py`` calls the repository methods that change a job's state.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from veo import db as dbmod
from veo import jobs

ROOT = Path(__file__).resolve().parents[2]
JOBS_SQL = ROOT / "sql" / "queries" / "jobs.sql"
SRC = ROOT / "src" / "veo"

STATE_WRITERS = frozenset({
    "claim_job", "finish_job", "requeue_running", "pause_job", "pause_queued_flow",
    "resume_flow", "resume_api_due", "cancel_job", "retry_job", "retry_failed_flow",
    "redo_clip", "rebuild_final", "requeue_orphans", "fail_overdue", "delete_job",
})


# ---- (a) the SQL moves jobs only along TRANSITIONS ---------------------------------------------

def _top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses, quotes and CASE … END."""
    parts, depth, cases, start, i, quoted = [], 0, 0, 0, 0, False
    upper = text.upper()
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif re.match(r"\bCASE\b", upper[i:]) and (i == 0 or not text[i - 1].isalnum()):
                cases += 1
            elif re.match(r"\bEND\b", upper[i:]) and (i == 0 or not text[i - 1].isalnum()):
                cases -= 1
            elif depth == 0 and cases == 0 and text.startswith(sep, i):
                parts.append(text[start:i])
                start = i + len(sep)
                i += len(sep)
                continue
        i += 1
    parts.append(text[start:])
    return parts


def _depth_zero(text: str) -> str:
    """``text`` with every parenthesised part blanked (subqueries, function arguments)."""
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        out.append(ch if depth == 0 else " ")
        if ch == ")":
            depth -= 1
    return "".join(out)


_UPDATE_JOBS = re.compile(r"^\s*UPDATE\s+jobs(?:\s+(?!SET\b)(\w+))?\s+SET\s+(.*?)\s+WHERE\s+(.*?)"
                          r"(?:\s+RETURNING\b.*)?;?\s*$", re.IGNORECASE | re.DOTALL)
_IN_LIST = r"\(\s*('[a-z_]+'(?:\s*,\s*'[a-z_]+')*)\s*\)"


def _values(listing: str) -> set[str]:
    return set(re.findall(r"'([a-z_]+)'", listing))


def moves(sql: str) -> tuple[set[str], set[str]] | None:
    """(from-statuses, to-statuses) of one ``UPDATE jobs`` that sets ``status``; None when
    the statement does not set it. Raises AssertionError for a move without a guard."""
    m = _UPDATE_JOBS.match(sql)
    if m is None:
        return None
    alias, assignments, where = m.group(1), m.group(2), m.group(3)
    col = rf"(?:\b{alias}\.)?" if alias else ""
    targets: set[str] | None = None
    for assignment in _top_level(assignments, ","):
        lhs, _, rhs = assignment.partition("=")
        if lhs.strip().lower() != "status":
            continue
        rhs = rhs.strip()
        if re.fullmatch(r"'[a-z_]+'", rhs):
            targets = _values(rhs)
        elif re.fullmatch(r"\$\d+", rhs):
            # a parameter: the WHERE clause must pin what it may be
            found = re.search(re.escape(rhs) + r"\s+IN\s+" + _IN_LIST, where, re.IGNORECASE)
            assert found, f"status = {rhs} without `{rhs} IN (...)` in the guard:\n{sql}"
            targets = _values(found.group(1))
        else:
            raise AssertionError(f"status set to something the test cannot read: {rhs}")
    if targets is None:
        return None
    top = _depth_zero(where)
    # the guard is on the updated row itself (not on a subquery's rows)
    sources: set[str] = set()
    pattern = rf"(?<![\w.]){col}status\s*(?:=\s*'([a-z_]+)'|IN\s*\(([^)]*)\))"
    for found in re.finditer(pattern, where, re.IGNORECASE):
        if top[found.start():found.start() + 6].strip() == "":
            continue  # inside parentheses: not the row's own status
        sources |= {found.group(1)} if found.group(1) else _values(found.group(2))
    assert sources, f"an UPDATE sets status without guarding the current one:\n{sql}"
    return sources, targets


def _job_updates() -> dict[str, str]:
    queries = dbmod.load_queries(JOBS_SQL.parent)
    text = JOBS_SQL.read_text()
    names = re.findall(r"^--\s*name:\s*(\w+)", text, re.MULTILINE)
    return {n: queries[n] for n in names}


def test_every_status_update_in_jobs_sql_follows_the_transitions() -> None:
    checked = {}
    for name, sql in _job_updates().items():
        found = moves(sql)
        if found is None:
            continue
        sources, targets = found
        for src in sources:
            for dst in targets:
                assert jobs.can_move(src, dst), f"{name}: {src} -> {dst} is not a transition"
        checked[name] = (sources, targets)
    # the test must really have read the transitions (a parser that finds nothing passes all)
    assert checked["claim_job"] == ({"queued"}, {"running"})
    assert checked["finish_job"] == ({"running"}, {"succeeded", "failed"})
    assert checked["cancel_job"] == ({"queued", "running", "paused"}, {"canceled"})
    assert checked["resume_api_due"] == ({"paused"}, {"queued"})
    assert checked["fail_overdue"] == ({"running"}, {"failed"})
    assert checked["pause_job"] == ({"running", "queued"}, {"paused"})
    assert len(checked) >= 14, sorted(checked)


@pytest.mark.parametrize(("sql", "problem"), [
    ("UPDATE jobs SET status = 'succeeded' WHERE id = $1 AND status = 'queued' RETURNING *;",
     "transition"),
    ("UPDATE jobs SET status = 'queued', updated_at = now() WHERE id = $1;", "guard"),
    ("UPDATE jobs j SET status = 'failed' WHERE EXISTS (SELECT 1 FROM clips c "
     "WHERE c.status = 'running');", "guard"),
    ("UPDATE jobs SET status = $2 WHERE id = $1 AND status = 'running';", "IN"),
])
def test_the_sql_check_catches_bad_updates(sql: str, problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        found = moves(sql)
        assert found is not None
        for src in found[0]:
            for dst in found[1]:
                assert jobs.can_move(src, dst), f"{src} -> {dst} is not a transition"


# ---- (b) only the lifecycle changes a job's state --------------------------------------------

def _is_repository(node: ast.expr) -> bool:
    """Whether a call's receiver is the repository: ``db``, ``x.db``, ``self.db``,
    ``ctx["services"].db`` or the class ``Db`` itself (the service's one naming of it)."""
    if isinstance(node, ast.Name):
        return node.id in ("db", "Db")
    return isinstance(node, ast.Attribute) and node.attr == "db"


def state_writes(source: str) -> list[tuple[int, str]]:
    """(line, method) of every call of a state-writing repository method in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in STATE_WRITERS and _is_repository(node.func.value)):
            found.append((node.lineno, node.func.attr))
    return sorted(found)


def test_only_the_lifecycle_calls_state_writing_db_methods() -> None:
    defined = {n.name for n in ast.walk(ast.parse((SRC / "db.py").read_text()))
               if isinstance(n, ast.AsyncFunctionDef)}
    assert defined >= STATE_WRITERS, STATE_WRITERS - defined
    offenders = []
    called_by_lifecycle = set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for line, name in state_writes(path.read_text()):
            if rel == "lifecycle.py":
                called_by_lifecycle.add(name)
            else:
                offenders.append(f"src/veo/{rel}:{line} calls {name}")
    assert not offenders, "\n".join(offenders)
    assert called_by_lifecycle == STATE_WRITERS  # each one has its owner


def test_the_call_check_sees_repository_calls_however_reached() -> None:
    src = ("async def f(svc, db, ctx, client):\n"
           "    await svc.db.cancel_job('j')\n"
           "    row = await db.finish_job('j', 1, 'failed', None)\n"
           "    x = [await self.db.requeue_orphans(30)]\n"
           "    await ctx['services'].db.claim_job('j', 0, 'w')\n"
           "    await svc.lifecycle.cancel_job('j')  # not the repository\n"
           "    await client.retry_job('j')  # an HTTP client\n")
    assert [name for _, name in state_writes(src)] == ["cancel_job", "finish_job",
                                                       "requeue_orphans", "claim_job"]

"""Prepared statements for the hot requests: a Core statement compiled once per dialect and run on the DBAPI
connection of the request's transaction.

Through `Session.execute` a statement costs 40–130 µs of SQLAlchemy's execution machinery (the ORM's dispatch,
an execution context, a cache key, a result object) before and after the 5–25 µs the driver takes; a request
runs ten of them. A prepared statement runs the same SQL, with the same parameter and result conversions of its
column types (the compiled statement's bind and result processors), in the same transaction, without that
machinery. What stays as SQLAlchemy does it:
- the SQL text (compiled by the dialect, with its casts and quoting; rows of given columns as an executemany);
- the errors: a driver error is raised as SQLAlchemy's (`sqlalchemy.exc.IntegrityError`, `OperationalError`, …),
  a value its column type refuses as a `StatementError` (answered 422), a value missing for a bind parameter as a
  `StatementError` (a logged 500), a lost connection invalidates the pool, and a stored value that does not
  convert back is raised as it is (the service's error, a logged 500);
- the engine's `before_cursor_execute` and `after_cursor_execute` listeners see each statement (the statement
  counts in the tests);
- the session's pending ORM changes are flushed before the statement (autoflush).
What it leaves out: `handle_error` listeners, SQLAlchemy's statement logging (`echo`), and listeners that rewrite
a statement (`retval=True`); the service uses none of them.

Only statements whose every value comes from the caller are accepted: a Python-side column default or onupdate
(which SQLAlchemy computes in its execution context) is refused when the statement is first compiled, and so is
an expanding IN (its SQL depends on the values)"""
from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement


class PreparedRow(tuple):  # type: ignore[type-arg]
    """A result row: its columns by position and as attributes (like SQLAlchemy's Row)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))

    def _asdict(self) -> dict[str, Any]:
        return self._mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._fields.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (self._fields, tuple(self))


def _rebuild(fields: tuple[str, ...], values: tuple[Any, ...]) -> PreparedRow:
    return _row_class(fields)(values)


@functools.cache
def _row_class(fields: tuple[str, ...]) -> type[PreparedRow]:
    namespace: dict[str, Any] = {"__slots__": (), "_fields": fields}
    for i, name in enumerate(fields):
        if name.isidentifier() and not name.startswith("_"):
            namespace[name] = property(operator.itemgetter(i))
    return type("PreparedRow", (PreparedRow,), namespace)


class Outcome:
    """What a prepared statement did: the rows it returned (if any) and how many rows it changed."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[PreparedRow], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def first(self) -> PreparedRow | None:
        return self.rows[0] if self.rows else None

    def all(self) -> list[PreparedRow]:
        return self.rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class _Compiled:
    __slots__ = ("sql", "compiled", "binds", "order", "returns", "fields", "results", "row")

    def __init__(self, statement: ClauseElement, dialect: Dialect, keys: Sequence[str] | None) -> None:
        # rows of given columns are an executemany: compiled as one (on PostgreSQL, without an implicit RETURNING)
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None,
                                          for_executemany=keys is not None)
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise ValueError("a prepared statement takes every value from its caller; this one has Python-side "
                             f"column defaults: {statement}")
        if any(getattr(b, "expanding", False) for b in compiled.binds.values()):
            raise ValueError(f"a prepared statement cannot have an expanding IN: {statement}")
        self.compiled = compiled
        self.sql: str = compiled.string
        self.binds: dict[str, Callable[[Any], Any]] = dict(compiled._bind_processors)
        self.order: tuple[str, ...] | None = tuple(compiled.positiontup) if compiled.positional else None
        columns = compiled._result_columns or []
        self.returns = bool(columns)
        self.fields = [c[0] for c in columns]
        self.results: list[Callable[[Any], Any] | None] | None = None  # from the first cursor's description
        self.row = _row_class(tuple(self.fields)) if columns else PreparedRow

    def parameters(self, values: Mapping[str, Any] | None) -> Any:
        params = self.compiled.construct_params(values or {})  # a value missing for a bind parameter is an error
        for name, process in self.binds.items():
            if name in params:
                params[name] = process(params[name])
        return tuple(params[name] for name in self.order) if self.order is not None else params

    def processors(self, dialect: Dialect, description: Any) -> list[Callable[[Any], Any] | None]:
        if self.results is None:
            types = [c[3] for c in self.compiled._result_columns]
            self.results = [t._cached_result_processor(dialect, d[1]) for t, d in zip(types, description, strict=True)]
        return self.results


class Prepared:
    """A Core statement run on the session's connection without SQLAlchemy's execution machinery (module doc).
    `keys`: an INSERT's columns, when its parameters are given as rows of those columns."""

    def __init__(self, statement: ClauseElement, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = keys
        self._by_dialect: dict[tuple[str, str], _Compiled] = {}

    def __repr__(self) -> str:
        return f"Prepared({self.statement})"

    def _compiled(self, dialect: Dialect) -> _Compiled:
        kind = (dialect.name, dialect.driver)
        found = self._by_dialect.get(kind)
        if found is None:
            found = self._by_dialect[kind] = _Compiled(self.statement, dialect, self.keys)
        return found

    def execute(self, session: Session | Connection,
                values: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> Outcome:
        """Run the statement with one set of values, or with each of a list of them (executemany; no rows): in a
        session's transaction (its pending changes flushed first) or on a plain connection."""
        if isinstance(session, Connection):
            return self.run(session, values)
        session._autoflush()
        return self.run(session.connection(), values)

    def run(self, connection: Connection, values: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
            ) -> Outcome:
        dialect = connection.dialect
        compiled = self._compiled(dialect)
        many = isinstance(values, list | tuple)
        try:
            params: Any = ([compiled.parameters(v) for v in values] if many  # type: ignore[union-attr,arg-type]
                           else compiled.parameters(values))  # type: ignore[arg-type]
        except exc.StatementError:
            raise
        except Exception as e:  # a value its column type refuses, a missing value: SQLAlchemy's StatementError
            raise exc.StatementError(f"({type(e).__module__}.{type(e).__name__}) {e}", compiled.sql, values,
                                     e) from e
        dbapi_connection: Any = None
        cursor: Any = None
        try:
            try:
                dbapi_connection = connection.connection.dbapi_connection
                cursor = dbapi_connection.cursor()
                events = connection._has_events or connection.engine._has_events
                if events:
                    connection.dispatch.before_cursor_execute(connection, cursor, compiled.sql, params, None, many)
                if many:
                    cursor.executemany(compiled.sql, params)
                else:
                    cursor.execute(compiled.sql, params)
                if events:
                    connection.dispatch.after_cursor_execute(connection, cursor, compiled.sql, params, None, many)
                raw = cursor.fetchall() if compiled.returns and not many else []
                rowcount = cursor.rowcount
            except dialect.loaded_dbapi.Error as e:
                invalidated = dialect.is_disconnect(e, dbapi_connection, cursor)
                if invalidated:  # as SQLAlchemy does: the pool's older connections go too, then this one
                    connection.engine.pool._invalidate(connection.connection, e)
                    connection.invalidate(e)
                raise exc.DBAPIError.instance(compiled.sql, params, e, dialect.loaded_dbapi.Error,
                                              connection_invalidated=invalidated, dialect=dialect) from e
            rows: list[PreparedRow] = []
            if raw:
                # a stored value that does not convert is the service's error, raised as it is (SQLAlchemy does
                # not wrap its result conversions either)
                processors = compiled.processors(dialect, cursor.description)
                make = compiled.row
                rows = [make([p(v) if p is not None else v for p, v in zip(processors, r, strict=True)]) for r in raw]
            return Outcome(rows, rowcount)
        finally:
            if cursor is not None:
                cursor.close()

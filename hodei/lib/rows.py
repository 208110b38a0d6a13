"""The hot paths' own statements, beside the ORM: run prepared on the server
(``execute``, ``fetch_all``), several as one (``execute_together``), a model's INSERT
(``insert``), and model instances from the rows a statement returns (``from_rows``;
with an object they point to, ``fetch_joined``), their values converted as the ORM
converts them."""

import time

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, models, transaction

# model -> its columns' converters, as (index, column, converters); the same for every
# call on one backend, and costly to look up (a tenth of a millisecond per model).
_converters: dict = {}
_select_lists: dict = {}
_inserts: dict = {}
_joins: dict = {}


def select_list(model, alias: str = "") -> str:
    """The model's columns, in its field order, for a SELECT or a RETURNING."""
    key = (model, alias, connection.vendor)
    if key not in _select_lists:
        prefix = f"{alias}." if alias else ""
        _select_lists[key] = ", ".join(
            prefix + connection.ops.quote_name(f.column) for f in model._meta.concrete_fields
        )
    return _select_lists[key]


def _converters_of(model) -> list:
    key = (model, connection.vendor)
    if key not in _converters:
        found_all = []
        for i, field in enumerate(model._meta.concrete_fields):
            column = field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                found_all.append((i, column, found))
        _converters[key] = found_all
    return _converters[key]


def from_rows(model, rows, *, start: int = 0) -> list:
    """An instance of ``model`` from each row's values at ``start`` onwards (in
    ``select_list`` order): the backend's and the fields' own converters applied."""
    fields = model._meta.concrete_fields
    converters = _converters_of(model)
    names = [f.attname for f in fields]
    instances = []
    for row in rows:
        values = list(row[start : start + len(fields)])
        for i, column, found in converters:
            for convert in found:
                values[i] = convert(values[i], column, connection)
        instances.append(model.from_db(connection.alias, names, values))
    return instances


def fetch_joined(model, relation: str, where: str, params: list) -> list:
    """The instances of ``model`` that ``where`` matches, each with the object its
    foreign key ``relation`` points to: what ``select_related(relation).filter(...)``
    gives, as one prepared statement whose join is not compiled again on every call
    (for the lookups that start every request: a token, a worker credential). In
    ``where``, ``t.`` is the model's table and ``r.`` the related one's."""
    field = model._meta.get_field(relation)
    related = field.related_model
    key = (model, relation, where, connection.vendor)
    if key not in _joins:
        quote = connection.ops.quote_name
        _joins[key] = (
            f"SELECT {select_list(model, 't')}, {select_list(related, 'r')} "
            f"FROM {quote(model._meta.db_table)} t JOIN {quote(related._meta.db_table)} r "
            f"ON r.{quote(field.target_field.column)} = t.{quote(field.column)} WHERE {where}"
        )
    found = fetch_all(_joins[key], params)
    instances = from_rows(model, found)
    others = from_rows(related, found, start=len(model._meta.concrete_fields))
    for instance, other in zip(instances, others, strict=True):
        setattr(instance, relation, other)
    return instances


def fetch_all(sql: str, params: list) -> list[tuple]:
    """Run one statement of a hot path and return its rows: ``execute``, then fetch."""
    return execute(sql, params, fetch=True)


def execute(sql: str, params: list, *, fetch: bool = False) -> list[tuple] | None:
    """Run one statement of a hot path (a claim, a settle, an event). On PostgreSQL it is
    prepared on the server (psycopg's own cursor on Django's connection, so in its
    transaction): parsed and planned once per connection instead of on every call,
    which for a claim cost more than running it, and its parameters are sent apart
    rather than quoted into the text in Python. Errors are Django's, as from
    ``connection.cursor()``.

    It is also the connection's health check (CONN_HEALTH_CHECKS) when it comes first
    in a request: instead of Django's ``SELECT 1`` before the first query, a statement
    that worked proves the connection; one that fails on a connection that died while
    it waited (a restart of the server) is run again on a new one, once, as the health
    check would have arranged."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the proxy costs a lookup
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if fetch else None
    checking = (
        db.connection is not None
        and db.health_check_enabled
        and not db.health_check_done
        and not db.in_atomic_block
    )
    try:
        result = _execute(db, sql, params, fetch)
    except DatabaseError:
        if not checking or db.is_usable():
            raise
        db.close()
        result = _execute(db, sql, params, fetch)
    if checking:
        db.health_check_done = True
    return result


def _execute(db, sql: str, params: list, fetch: bool) -> list[tuple] | None:
    db.ensure_connection()
    started = time.monotonic()
    try:
        with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchall() if fetch else None
    finally:
        if db.queries_logged:
            # Seen where Django's own queries are (DEBUG, CaptureQueriesContext), as
            # Django's debug cursor records them.
            db.queries_log.append(
                {"sql": f"{sql} -- {params!r}", "time": f"{time.monotonic() - started:.3f}"}
            )


def execute_together(statements: list[tuple[str, list]]) -> None:
    """Statements whose results nobody reads, as one transaction in one round trip.

    On PostgreSQL every statement but the last must be an INSERT, UPDATE or DELETE: they
    become data-modifying WITH clauses of the last (any statement: a ``SELECT
    pg_notify``, say). The one statement that makes is atomic by itself: outside a
    transaction it commits on its own, with no BEGIN and no COMMIT to wait for; inside
    one it is part of it. On SQLite they run one after another, in a transaction."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            for sql, params in statements:
                execute(sql, params)
        return
    *first, (last_sql, last_params) = statements
    clauses = [f"s{i} AS ({sql})" for i, (sql, _) in enumerate(first)]
    sql = f"WITH {', '.join(clauses)} {last_sql}" if clauses else last_sql
    execute(sql, [p for _, params in statements for p in params])


def insert(instance) -> None:
    """``instance.save(force_insert=True)`` as one prepared INSERT (``execute``), for a
    hot path's model whose every column is set in Python (no column the database fills
    in and returns). The same values the ORM would send (each field's ``pre_save`` and
    ``get_db_prep_save``), without compiling the statement again on every call; no
    ``pre_save``/``post_save`` signals (nothing in Hodei listens to them)."""
    execute(*insert_statement(instance))
    inserted(instance)


def insert_statement(instance) -> tuple[str, list]:
    """The statement ``insert`` runs, and its values (for ``execute_together``; then
    ``inserted``)."""
    model = type(instance)
    fields = model._meta.concrete_fields
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the proxy looks it up again
    key = (model, db.vendor)
    if key not in _inserts:
        if model._meta.db_returning_fields:
            raise ValueError(f"{model.__name__} has columns the database fills in")
        quote = db.ops.quote_name
        _inserts[key] = (
            f"INSERT INTO {quote(model._meta.db_table)} "
            f"({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))})",
            [(f, f.attname, _kept_as_is(f)) for f in fields],
        )
    sql, savers = _inserts[key]
    values = []
    for field, attname, as_is in savers:
        value = instance.__dict__.get(attname, _MISSING)
        if type(value) not in as_is:
            value = field.get_db_prep_save(field.pre_save(instance, True), db)
        values.append(value)
    return sql, values


_MISSING = object()
# Python values that a field of that class sends to the database as they are, on every
# backend: calling the field's pre_save and get_db_prep_save for them (two to three
# microseconds each, for thirty-odd columns per INSERT) would return the same value.
_AS_IS = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.BooleanField: (bool,),
    models.IntegerField: (int,),
    models.SmallIntegerField: (int,),
    models.BigIntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
    models.PositiveBigIntegerField: (int,),
    models.FloatField: (float,),
}


def _kept_as_is(field) -> tuple:
    """The types whose values ``field`` stores unchanged: those of ``_AS_IS`` for its
    exact class, and None where it may be NULL; nothing for a field whose pre_save fills
    in values, and no None for a JSONField (it may mean JSON null)."""
    as_is = _AS_IS.get(type(field), ())
    if field.null and not isinstance(field, models.JSONField):
        as_is += (type(None),)
    fills_in = type(field).pre_save is not models.Field.pre_save
    if isinstance(field, models.DateField):  # its pre_save fills in only auto_now(_add)
        fills_in = field.auto_now or field.auto_now_add
    return () if fills_in else as_is


def inserted(instance) -> None:
    """Mark ``instance`` as stored, as ``save()`` does."""
    instance._state.adding = False
    instance._state.db = connection.alias

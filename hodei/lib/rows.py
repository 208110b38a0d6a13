"""Model instances from the rows of a raw statement (a hot path's one-statement claim or
lookup), their values converted as the ORM converts them."""

from django.db import connection


def select_list(model, alias: str = "") -> str:
    """The model's columns, in its field order, for a SELECT or a RETURNING."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(
        prefix + connection.ops.quote_name(f.column) for f in model._meta.concrete_fields
    )


def from_rows(model, rows, *, start: int = 0) -> list:
    """An instance of ``model`` from each row's values at ``start`` onwards (in
    ``select_list`` order): the backend's and the fields' own converters applied."""
    fields = model._meta.concrete_fields
    converters = []
    for i, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converters.append((i, column, found))
    names = [f.attname for f in fields]
    instances = []
    for row in rows:
        values = list(row[start : start + len(fields)])
        for i, column, found in converters:
            for convert in found:
                values[i] = convert(values[i], column, connection)
        instances.append(model.from_db(connection.alias, names, values))
    return instances

"""Several statements of a hot path in one round trip to PostgreSQL (libpq's pipeline
mode, through psycopg, on Django's connection).

Between processes that sleep between requests, each round trip to the database costs
far more than the statement: the server's backend and then the client must be woken and
scheduled (0.3 to 0.8 ms each way on an idle 2-core VM, against 0.1 ms when busy). A
transaction of BEGIN, an INSERT, a NOTIFY, an event and COMMIT pays that five times;
pipelined, twice (the statements, then COMMIT).

Only for statements whose answers nothing reads before the pipeline syncs: a query's
rows are fetched correctly (fetching syncs), but ``cursor.rowcount`` is not known until
then, so ORM code that reads it (a conditional transition, a ``save()`` that updates)
must not run inside. ``leave()`` ends the pipeline early, before such code."""

from django.db import connection


class pipelined:
    """Context manager: the statements inside are pipelined on PostgreSQL (when
    ``enabled``); elsewhere, or disabled, it does nothing. Only inside a
    ``transaction.atomic()``: BEGIN goes with the first statement, and the transaction's
    own control (autocommit, COMMIT) stays outside pipeline mode, where psycopg handles
    it (changing autocommit in pipeline mode failed once a statement had been prepared
    there: "connection in transaction status ACTIVE"). Outside a transaction it does
    nothing."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and connection.vendor == "postgresql"
        self._pipeline = None

    def __enter__(self) -> "pipelined":
        if self.enabled and connection.in_atomic_block:
            connection.ensure_connection()
            with connection.wrap_database_errors:
                self._pipeline = connection.connection.pipeline()
                self._pipeline.__enter__()
        return self

    def leave(self) -> None:
        """Send what is queued, wait for the answers, and go on without pipelining."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            with connection.wrap_database_errors:
                pipeline.__exit__(None, None, None)

    def __exit__(self, *exc) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            with connection.wrap_database_errors:
                pipeline.__exit__(*exc)

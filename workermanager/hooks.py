"""The one way the worker manager tells higher layers that an execution changed.

Apps above the worker manager (pipeline runs, for instance) must learn when an execution
is queued, starts or ends, but the worker manager never imports them. Instead they
register a listener here, in their ``AppConfig.ready()``:

    from workermanager import hooks
    hooks.on_execution_changed(pipeline_run_advance_for)

``workermanager.services`` calls every listener after each state change of an
execution (creation included), inside the transaction that made the change and after the
change itself and its retry are written, with the execution in its new state. A listener
that raises rolls the change back: keep listeners short and deterministic."""

from collections.abc import Callable

Listener = Callable[[object], None]
_listeners: list[Listener] = []


def on_execution_changed(listener: Listener) -> Listener:
    """Register ``listener(execution)``; registering the same one twice is harmless."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def execution_changed(execution) -> None:
    for listener in _listeners:
        listener(execution)

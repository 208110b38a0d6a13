"""What the worker manager tells the layers above it (hodei.lib.hooks).

``execution_changed(execution)``: after every state change of an execution (its
creation included), in the transaction that made it, after the change itself and its
retry are written, with the execution in its new state. Pipeline runs advance on it.

``explain_pending(execution)``: asked why a pending execution (a job of a pipeline run)
waits; a listener answers ``(code, message)`` or None. Pipeline runs name the jobs it
needs that have not finished."""

from hodei.lib.hooks import Hook

execution_changed = Hook("execution_changed")
explain_pending = Hook("explain_pending")

"""What the worker manager tells the layers above it (hodei.lib.hooks).

``execution_changed(execution)``: after every state change of an execution (its
creation included), in the transaction that made it, after the change itself and its
retry are written, with the execution in its new state. Pipeline runs advance on it."""

from hodei.lib.hooks import Hook

execution_changed = Hook("execution_changed")

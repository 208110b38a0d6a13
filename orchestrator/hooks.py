"""What the orchestrator tells the layers above it (hodei.lib.hooks).

``pipeline_changed(pipeline, changed)``: after a pipeline's settings change (``changed``
names them), in the same transaction. Pipeline runs resume when their pipeline does."""

from hodei.lib.hooks import Hook

pipeline_changed = Hook("pipeline_changed")

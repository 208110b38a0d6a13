"""Hooks: how a lower layer tells higher ones that something happened, without importing
them (README, "Layout"). The lower layer declares a hook and fires it; a higher layer
registers a listener in its ``AppConfig.ready()``. Listeners run synchronously, in the
transaction of the change and after it, so what they write commits (or rolls back) with
it; one that raises rolls the change back: keep them short and deterministic."""

from collections.abc import Callable


class Hook:
    def __init__(self, name: str):
        self.name = name
        self._listeners: list[Callable] = []

    def connect(self, listener: Callable) -> Callable:
        """Register ``listener``; registering the same one twice is harmless."""
        if listener not in self._listeners:
            self._listeners.append(listener)
        return listener

    def fire(self, *args, **kwargs) -> None:
        for listener in self._listeners:
            listener(*args, **kwargs)

    def fire_each(self, *args, log, **kwargs) -> None:
        """``fire``, but a listener that raises is logged (on ``log``) and the others still
        run: for hooks outside any change's transaction (a relay's periodic tick)."""
        for listener in self._listeners:
            try:
                listener(*args, **kwargs)
            except Exception:
                log.exception("%s: %s failed", self.name, getattr(listener, "__name__", listener))

    def disconnect(self, listener: Callable) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def first(self, *args, **kwargs):
        """Ask the listeners in turn; the first answer that is not None (or None)."""
        for listener in self._listeners:
            answer = listener(*args, **kwargs)
            if answer is not None:
                return answer
        return None

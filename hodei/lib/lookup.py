"""Finding a row by its id or by a unique prefix of it: the short ids (8+ hex digits) the
admin shows work wherever an id is typed (the CLI's commands, the admin's search)."""

import uuid

from hodei.exceptions import InvalidInput, NotFound


def id_prefix_range(term: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The UUIDs that start with ``term`` (8+ hex digits, dashes allowed), or None."""
    digits = term.replace("-", "").lower()
    if not 8 <= len(digits) < 32 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def by_id_or_prefix(queryset, value: str):
    """The row whose id is ``value`` or starts with it. NotFound if none; InvalidInput
    if the prefix is ambiguous."""
    noun = queryset.model._meta.verbose_name
    term = (value or "").strip().lower()
    try:
        return queryset.get(pk=uuid.UUID(term))
    except ValueError:
        pass
    except queryset.model.DoesNotExist:
        raise NotFound(f"No {noun} {value!r}.") from None
    bounds = id_prefix_range(term)
    if bounds is None:
        raise NotFound(f"No {noun} {value!r}: give its id or at least its first 8 characters.")
    matches = list(queryset.filter(pk__gte=bounds[0], pk__lte=bounds[1])[:2])
    if not matches:
        raise NotFound(f"No {noun} starts with {value!r}.")
    if len(matches) > 1:
        raise InvalidInput(
            f"More than one {noun} starts with {value!r}; give more of the id.",
            fields={"id": [f"{value!r} is ambiguous."]},
        )
    return matches[0]


def id_search(queryset, term: str):
    """The rows a full id or a short one (8+ characters, as lists show them) names, or
    None when ``term`` is not an id: then the caller searches its text fields."""
    try:
        return queryset.filter(pk=uuid.UUID(term))
    except ValueError:
        pass
    bounds = id_prefix_range(term)
    if bounds is not None:
        # The short ids the lists show: a range on the primary key.
        return queryset.filter(pk__gte=bounds[0], pk__lte=bounds[1])
    return None

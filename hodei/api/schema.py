"""Additions to the generated OpenAPI documents."""

LINK_HEADER = {
    "description": (
        'RFC 8288 links to the neighbouring pages, `<url>; rel="next"` and '
        '`<url>; rel="prev"`; absent when there is no other page. Follow them as given: '
        "the cursor in them is opaque."
    ),
    "schema": {"type": "string"},
}


def document_link_header(result, generator, request, public):
    """drf-spectacular postprocessing hook: every paginated list (a GET that takes a
    ``cursor``) documents the ``Link`` header of its 200 response, since the body is a
    bare array with no room for paging links."""
    for path_item in result.get("paths", {}).values():
        operation = path_item.get("get")
        if not operation:
            continue
        parameters = operation.get("parameters", [])
        if not any(p.get("in") == "query" and p.get("name") == "cursor" for p in parameters):
            continue
        response = operation.get("responses", {}).get("200")
        if response is not None:
            response.setdefault("headers", {})["Link"] = LINK_HEADER
    return result

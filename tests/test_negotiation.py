"""hodei.api.negotiation.ContentNegotiation gives the answer DRF's own negotiation gives,
whatever the request asks for."""

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from hodei.api.negotiation import ContentNegotiation
from hodei.api.renderers import PlainTextRenderer

RENDERER_LISTS = [
    [JSONRenderer(), BrowsableAPIRenderer()],
    [BrowsableAPIRenderer(), JSONRenderer()],
    [JSONRenderer(), BrowsableAPIRenderer(), PlainTextRenderer()],
]


def answer(negotiation, request, renderers, suffix):
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except NotAcceptable:
        return "406"
    except Http404:  # a format no renderer has
        return "404"
    return type(renderer), media_type


@pytest.mark.parametrize("renderers", RENDERER_LISTS, ids=["json-first", "html-first", "text"])
@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "",
        "application/json",
        "text/html",
        "text/plain",
        "image/png",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "application/json; indent=4",
        "*/*; q=0.5",
    ],
)
@pytest.mark.parametrize("query", ["", "format=json", "format=api", "format=text", "page=2"])
@pytest.mark.parametrize("suffix", [None, "json"])
def test_the_answer_is_drfs(renderers, accept, query, suffix):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    django_request = APIRequestFactory().get(
        f"/api/v1/jobs?{query}" if query else "/api/v1/jobs", **headers
    )
    request = Request(django_request)
    ours = answer(ContentNegotiation(), request, renderers, suffix)
    assert ours == answer(DefaultContentNegotiation(), request, renderers, suffix)


def test_a_request_stating_no_preference_gets_json_without_parsing_its_query():
    request = Request(APIRequestFactory().get("/api/v1/jobs"))
    renderer, media_type = ContentNegotiation().select_renderer(
        request, [JSONRenderer(), BrowsableAPIRenderer()]
    )
    assert (type(renderer), media_type) == (JSONRenderer, "application/json")
    assert "GET" not in request._request.__dict__  # the query's dictionary was not built

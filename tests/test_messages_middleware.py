"""hodei.middleware.MessageMiddleware: Django's messages, with the storage made only when a
request uses it."""

from django.contrib import messages
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty

from hodei.middleware import MessageMiddleware


def run(view, cookies=None):
    request = RequestFactory().get("/admin/")
    request.COOKIES.update(cookies or {})
    response = SessionMiddleware(MessageMiddleware(view))(request)
    return request, response


def test_a_request_that_never_uses_messages_builds_no_storage_and_stores_nothing():
    request, response = run(lambda request: HttpResponse("ok"))
    assert request._messages._wrapped is empty
    assert "messages" not in response.cookies


def test_a_message_added_is_stored_and_shown_by_the_next_request_then_cleared():
    def add(request):
        messages.success(request, "Execution cancelled.")
        return HttpResponse("ok")

    shown = []

    def show(request):
        shown.extend(str(m) for m in messages.get_messages(request))
        return HttpResponse("ok")

    _, first = run(add)
    assert first.cookies["messages"].value
    _, second = run(show, cookies={"messages": first.cookies["messages"].value})
    assert shown == ["Execution cancelled."]
    assert second.cookies["messages"].value == ""  # shown, so deleted

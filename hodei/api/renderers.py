import json

from rest_framework.renderers import BaseRenderer


class PlainTextRenderer(BaseRenderer):
    """Lets ``?format=text`` (or ``Accept: text/plain``) reach a view that answers with
    text itself, such as a log download; errors still render as JSON."""

    media_type = "text/plain"
    format = "text"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, str | bytes):
            return data
        return json.dumps(data)


class YAMLRenderer(BaseRenderer):
    """``Accept: application/yaml`` (pipeline definitions)."""

    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        import yaml

        if isinstance(data, str | bytes):
            return data
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

"""How the API's authentication appears in the OpenAPI documents."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An API token: `hodei createtoken USER --role operator` (or viewer), or the "
                "one `make run` keeps in var/admin-credentials."
            ),
        }

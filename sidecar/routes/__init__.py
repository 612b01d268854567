"""Thin HTTP handlers: decode and check the input, call the store, encode the answer."""

from sidecar.routes.definitions import DEFINITION_ROUTES
from sidecar.routes.docs import DOCS_ROUTES
from sidecar.routes.feed import FEED_ROUTES
from sidecar.routes.operations import OPERATION_ROUTES
from sidecar.routes.pages import PAGE_ROUTES
from sidecar.routes.progress import PROGRESS_ROUTES
from sidecar.routes.stats import STATS_ROUTES
from sidecar.routes.users import USER_ROUTES

ROUTES = [
    *DEFINITION_ROUTES,
    *PROGRESS_ROUTES,
    *USER_ROUTES,
    *FEED_ROUTES,
    *STATS_ROUTES,
    *OPERATION_ROUTES,
    *DOCS_ROUTES,
    *PAGE_ROUTES,
]

"""A Python client for a running recloop service, sync (`Client`) and async (`AsyncClient`).

    from recloop.client import Client

    with Client("http://127.0.0.1:8000", api_key) as recloop:
        recloop.put_item("v1", title="Quiet Harbor", category="Travel")
        served = recloop.recommend("alice", surface="home", limit=10)
        recloop.send_events(
            [{"userId": "alice", "itemId": served.items[0].item_id, "eventType": "click",
              "requestId": served.request_id, "position": 0}]
        )

Events get an ``eventId`` made on the client when they have none and are sent in batches, so
a retry after a 503, a 429 or a lost connection never stores one twice. Errors are one tree
(``errors``), each naming the field and the rule the service gave.
"""

from recloop.client.clients import AsyncClient, Client
from recloop.client.errors import (
    ApiError,
    ClientError,
    Conflict,
    FieldError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from recloop.client.models import (
    EventsResult,
    Recommendations,
    RecommendedItem,
    Rejected,
    Suggestion,
    Suggestions,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "Conflict",
    "EventsResult",
    "FieldError",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Recommendations",
    "RecommendedItem",
    "Rejected",
    "Suggestion",
    "Suggestions",
    "Unauthorized",
    "Unavailable",
]

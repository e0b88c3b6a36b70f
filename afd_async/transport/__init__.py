"""ZeroMQ transport: the feed (feeder → learners) and weight sync (learner → actors).

- `FeedServer` / `FeedClient`: credit-based batch delivery with acks, heartbeats
  and zero-copy tensor frames (`feed_server.py`, `feed_client.py`, `feed_wire.py`).
- `WeightPublisher` / `WeightSubscriber`: versioned, hashed, chunked weights,
  announced on PUB and pulled over ROUTER/DEALER (`weights_*.py`).
- CURVE keys (`CurveServerKeys`, `CurveClientKeys`) are optional on every socket.
"""

from __future__ import annotations

from afd_async.transport._sockets import CurveClientKeys, CurveServerKeys
from afd_async.transport.errors import FeedEnded, TransportError, TransportTimeout, WeightsRejected
from afd_async.transport.feed_client import FeedClient, FeedClientStats
from afd_async.transport.feed_server import FeedServer, FeedServerStats
from afd_async.transport.feed_wire import Batch, ReceivedBatch
from afd_async.transport.weights_layout import Manifest
from afd_async.transport.weights_publisher import WeightPublisher, WeightPublisherStats
from afd_async.transport.weights_subscriber import WeightSubscriber, WeightSubscriberStats, WeightsUpdate

__all__ = [
    "Batch", "CurveClientKeys", "CurveServerKeys", "FeedClient", "FeedClientStats", "FeedEnded", "FeedServer",
    "FeedServerStats", "Manifest", "ReceivedBatch", "TransportError", "TransportTimeout", "WeightPublisher",
    "WeightPublisherStats", "WeightSubscriber", "WeightSubscriberStats", "WeightsRejected", "WeightsUpdate",
]

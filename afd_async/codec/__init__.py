"""Wire codecs shared by the replay and the ZeroMQ transport."""

from __future__ import annotations

from afd_async.codec.msg import DTYPES, MessageError, frame_to_tensor, pack, pack_parts, tensor_to_frame, unpack

__all__ = ["DTYPES", "MessageError", "frame_to_tensor", "pack", "pack_parts", "tensor_to_frame", "unpack"]

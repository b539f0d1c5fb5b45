"""Secrets come from the environment only; this keeps them out of anything we write or send."""

import os
import re
from typing import Any

SECRET_ENV_VARS = (
    "WANDB_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "YOUTUBE_STREAM_KEY",
    "RTMP_STREAM_KEY",
)
SECRET_NAME = re.compile(r"(api_?key|secret|token|password|stream_key)", re.IGNORECASE)
REDACTED = "<redacted>"


def secret_values() -> list[str]:
    """The values of the secret environment variables that are set (long enough to be real)."""
    return [v for name in SECRET_ENV_VARS if len(v := os.environ.get(name, "")) >= 4]


def redact(tree: Any) -> Any:
    """A copy of a plain config tree with secret-named keys and any secret value replaced by <redacted>."""
    secrets = secret_values()

    def clean(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: clean(v, str(k)) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [clean(v) for v in node]
        if isinstance(node, str):
            if (SECRET_NAME.search(key) and node) or any(s in node for s in secrets):
                return REDACTED
        return node

    return clean(tree)

"""A configuration error names the setting and what is wrong, never its value: the Redis url, API keys and webhook
url may hold secrets, and `vigil api` / `vigil worker` / `vigil ingest` print these errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SECRET = "hunter2-redis-pw"


@pytest.mark.parametrize("command", ["api", "worker", "ingest"])
def test_a_wrong_redis_url_is_named_without_its_password(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_REDIS__URL"] = f"http://:{SECRET}@redis.example:6379/0"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", command], env=env, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "redis url must start with redis://" in output
    assert SECRET not in output

"""keep_freed_memory: a freed large CPU tensor's pages are reused by the next one instead of being mapped and faulted
in again. Measured in fresh processes (the policy is process-wide), by page faults, not by time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
import torch
from models.cpu_memory import keep_freed_memory
applied = keep_freed_memory() if {keep} else None
def cycle():  # 64 MiB, above any mmap threshold glibc uses: allocated, written, freed, as an activation is
    t = torch.empty(16 * 2**20).fill_(1.0)
    del t
for _ in range(5):  # the heap settles: its first chunks are split (aligned) and merged again
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(json.dumps({{"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""


def _faults(keep: bool) -> dict[str, object]:
    code = CHILD.format(root=str(ROOT), keep=keep)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_freed_tensors_are_reused_instead_of_faulted_in_again() -> None:
    default, kept = _faults(keep=False), _faults(keep=True)
    assert kept["applied"] is True  # glibc (Debian, the Docker image): the policy took
    pages = 10 * 64 * 2**20 // 4096
    assert default["faults"] > pages // 2  # type: ignore[operator]  # each 64 MiB tensor mapped and zeroed anew
    assert kept["faults"] < pages // 4  # type: ignore[operator]  # the heap's pages, faulted in once, are reused

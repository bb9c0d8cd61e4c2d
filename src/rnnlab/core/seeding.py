"""Seeds for the random streams of generated data, the same on every machine.

A task names each stream of a run (``"train"``, ``"valid"``, ``("fresh", epoch)``) and
draws it from its own ``torch.Generator``, seeded from a hash of (namespace, run seed,
stream name): one stream never shifts another, and adding a stream changes none.
"""

from __future__ import annotations

import hashlib

import torch


def stream_seed(namespace: str, seed: int, *stream: object, digest: str = "sha256") -> int:
    """A 63-bit seed for one named stream of a run's seed.

    ``digest`` is the hash; "sha256" unless a task's records were first made with
    another one (the addition task's streams were defined with "blake2b", and its data
    stays identical to those records).
    """
    text = "/".join([namespace, str(seed), *map(str, stream)]).encode()
    if digest == "blake2b":
        raw = hashlib.blake2b(text, digest_size=8).digest()
    else:
        raw = hashlib.new(digest, text).digest()[:8]
    return int.from_bytes(raw, "little") >> 1


def stream_generator(namespace: str, seed: int, *stream: object,
                     digest: str = "sha256") -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(namespace, seed, *stream, digest=digest))

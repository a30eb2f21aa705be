"""Decision ids: random version 4 UUIDs, read from ``os.urandom`` a pool at a time."""

from __future__ import annotations

import os
import threading
import uuid

from gatekeeper.audit import new_decision_id


def test_ids_are_distinct_version_4_uuids_in_their_canonical_text() -> None:
    ids = [new_decision_id() for _ in range(20_000)]  # many pools
    assert len(set(ids)) == len(ids)
    for text in ids[:600]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text


def test_threads_never_share_an_id() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_decision_id() for _ in range(5_000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [text for into in found for text in into]
    assert len(set(every)) == len(every) == 20_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_decision_id()  # the parent has a pool the child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids and leave at once
        os.close(read)
        os.write(write, "\n".join(new_decision_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode().split("\n")
    os.waitpid(pid, 0)
    parent = [new_decision_id() for _ in range(10)]
    assert len(child) == 10
    assert not set(child) & set(parent)

"""The one reader of server-sent events (the harness writes them in `harness.mock.formats`)."""

from __future__ import annotations


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event, in order; multi-line data is joined."""
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            events.append((name, "\n".join(data)))
    return events

"""The event log: one compact columnar record per op or transfer (for the timeline export).

Components append (track, name, layer, expert, start, end, bytes) to typed arrays (8 bytes or less per
field, no per-event objects); tracks are (process, thread) name pairs and names are interned strings.
Recording is optional: the engine passes `log=None` unless a timeline is wanted, and every aggregate the
summary needs is kept by the components themselves.
"""

from __future__ import annotations

from array import array


class EventLog:
    def __init__(self) -> None:
        self.tracks: list[tuple[str, str]] = []  # (process name, thread name) per track id
        self.names: list[str] = []
        self._name_ids: dict[str, int] = {}
        self.track_id = array("i")
        self.name_id = array("i")
        self.layer = array("i")   # MoE layer, -1 when not layer-specific
        self.expert = array("i")  # routed expert id, -1 when none
        self.start = array("d")   # seconds
        self.end = array("d")     # seconds
        self.nbytes = array("d")  # bytes moved (transfers) or read (ops)

    def track(self, process: str, thread: str) -> int:
        self.tracks.append((process, thread))
        return len(self.tracks) - 1

    def add(self, track: int, name: str, layer: int, expert: int, start: float, end: float,
            nbytes: float = 0.0) -> None:
        nid = self._name_ids.get(name)
        if nid is None:
            nid = self._name_ids[name] = len(self.names)
            self.names.append(name)
        self.track_id.append(track)
        self.name_id.append(nid)
        self.layer.append(layer)
        self.expert.append(expert)
        self.start.append(start)
        self.end.append(end)
        self.nbytes.append(nbytes)

    def __len__(self) -> int:
        return len(self.start)

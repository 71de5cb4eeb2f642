"""The life of a Keep, as one transition table.

keepmgr is the only party that moves a Keep between states, in answer to
events from the Keep's processes (frames on the control channel, process
exit) and to client requests. Anything not in the table is refused, so a
misbehaving Keep or client cannot skip a step (for example, provision a Keep
that was never attested).

::

    starting --ready--> ready --attested--> attested --provisioned--> provisioned
                                  ^   |                                    |
                                  +---+ (a client may attest again)   workload_started
                                                                           v
     any live state --crashed--> failed                                 running --exited--> exited

``exited`` and ``failed`` are terminal; ``DELETE`` removes a Keep in any state
(stopping its processes first when it is live).
"""

from __future__ import annotations

from typing import Final, Literal

from arx.errors import KeepStateError
from arx.protocol.messages import KeepStateName

Event = Literal["ready", "attested", "provisioned", "workload_started", "exited", "crashed"]
Request = Literal["attest", "provision"]

LIVE_STATES: Final = frozenset({"starting", "ready", "attested", "provisioned", "running"})
TERMINAL_STATES: Final = frozenset({"exited", "failed"})

TRANSITIONS: Final[dict[tuple[KeepStateName, Event], KeepStateName]] = {
    ("starting", "ready"): "ready",
    ("ready", "attested"): "attested",
    ("attested", "attested"): "attested",
    ("attested", "provisioned"): "provisioned",
    ("provisioned", "workload_started"): "running",
    # A workload that fails before it starts (invalid module, upload cut off)
    # ends the Keep straight from provisioned.
    ("provisioned", "exited"): "exited",
    ("running", "exited"): "exited",
    **{(state, "crashed"): "failed" for state in LIVE_STATES},  # type: ignore[misc]
}

# Which client requests a Keep accepts in which state.
REQUESTS: Final[dict[Request, frozenset[KeepStateName]]] = {
    "attest": frozenset({"ready", "attested"}),
    "provision": frozenset({"attested"}),
}


def next_state(state: KeepStateName, event: Event) -> KeepStateName:
    """The state after ``event``; raises ``KeepStateError`` when the table has no such move."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise KeepStateError(f"event {event!r} is not valid for a Keep that is {state}") from None


def check_request(state: KeepStateName, request: Request) -> None:
    if state not in REQUESTS[request]:
        allowed = " or ".join(sorted(REQUESTS[request]))
        raise KeepStateError(f"cannot {request} a Keep that is {state} (it must be {allowed})")

"""Ports chosen before their server starts stay clear of the ones the kernel hands out itself."""

from __future__ import annotations

import random
import socket

import pytest

from sandbox.ports import chosen_range, ephemeral_range, free_port


def test_a_chosen_port_is_outside_the_ephemeral_range_and_can_be_bound() -> None:
    first, last = ephemeral_range()
    port = free_port()
    assert not first <= port <= last
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


def test_a_port_someone_holds_or_the_caller_avoids_is_never_chosen() -> None:
    ports = chosen_range()
    draws = random.Random(7)
    held_port, avoided, third = (draws.choice(ports) for _ in range(3))
    with socket.socket() as held:
        held.bind(("127.0.0.1", held_port))
        held.listen()
        # The same draws: the first is held, the second avoided, so the third is the answer.
        assert free_port(rng=random.Random(7), avoid={avoided}) == third


def test_shares_do_not_overlap_and_stay_outside_the_ephemeral_range() -> None:
    first, last = ephemeral_range()
    shares = [set(chosen_range((index, 3))) for index in range(3)]
    assert all(len(share) >= 1000 for share in shares)
    assert not shares[0] & shares[1] and not shares[1] & shares[2] and not shares[0] & shares[2]
    assert not any(first <= port <= last for share in shares for port in share)


def test_a_share_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="share 2 of 2 does not exist"):
        chosen_range((2, 2))

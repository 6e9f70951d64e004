"""The one free-port helper: distinct ports, each bindable by the caller."""

from __future__ import annotations

import socket

from trl_nats.ports import free_port, free_ports


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in [*ports, free_port()]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))

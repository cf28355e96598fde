"""A Docker-free Azure Service Bus emulator: an AMQP 1.0 broker on python-qpid-proton that the unmodified
azure-servicebus SDK talks to. See docs/servicebus-emulator.md."""

from .launcher import connection_string, start_emulator

__all__ = ["connection_string", "start_emulator"]

"""Azure Functions entry point of the alert consumer (Python v2 programming model).

A Service Bus queue trigger on the queue IoT Hub routes the module's ``alerts`` output to. The
work is :class:`ppe.alerts.consumer.AlertConsumer`; this file only adapts the trigger's message.
The host completes the message when the function returns and abandons it when it raises, so a
failed notification is retried and a malformed message reaches the dead-letter sub-queue after
the queue's ``max_delivery_count`` attempts.

Settings (set by Terraform, infrastructure/modules/alerts): ``ALERTS_QUEUE_NAME``, the identity
connection ``ALERTS_SERVICE_BUS__fullyQualifiedNamespace`` / ``__credential`` / ``__clientId``,
and those of :mod:`ppe.alerts.settings`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import lru_cache

import azure.functions as func

from ppe.alerts.consumer import AlertConsumer, Outcome
from ppe.alerts.settings import consumer_from_settings
from ppe.errors import MalformedAlertError

#: App setting naming the queue, and the prefix of the Service Bus identity connection settings.
QUEUE_SETTING = "ALERTS_QUEUE_NAME"
CONNECTION = "ALERTS_SERVICE_BUS"

app = func.FunctionApp()


@lru_cache(maxsize=1)
def _consumer() -> AlertConsumer:
    return consumer_from_settings(dict(os.environ))


def handle_message(message: func.ServiceBusMessage, consumer: AlertConsumer) -> Outcome:
    """Hand one queue message to the consumer.

    Raises:
        MalformedAlertError: Logged as such; the host abandons the message until it dead-letters.
        NotificationError: The host abandons the message and it is redelivered.
    """
    properties: Mapping[str, object] = message.application_properties or {}
    try:
        return consumer.handle(
            message.get_body(),
            message_id=message.message_id,
            sequence_number=int(message.sequence_number or 0),
            properties=properties,
        )
    except MalformedAlertError as error:
        logging.error("%s (delivery %s; dead-letters at max_delivery_count)", error,
                      message.delivery_count)  # fmt: skip
        raise


@app.function_name("alerts")
@app.service_bus_queue_trigger(
    arg_name="message", queue_name=f"%{QUEUE_SETTING}%", connection=CONNECTION
)
def alerts(message: func.ServiceBusMessage) -> None:
    """Service Bus trigger: one alert message."""
    outcome = handle_message(message, _consumer())
    logging.info("message %s: %s", message.message_id, outcome)

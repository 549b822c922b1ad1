"""The cloud consumer of the edge module's no-helmet alerts.

IoT Hub routes the module's ``alerts`` output to a Service Bus queue; an Azure Functions app reads
the queue (``environments/functions/alerts/function_app.py``) and hands each message to
:class:`ppe.alerts.consumer.AlertConsumer`, which keeps one record per alert id in Blob Storage and
notifies people once per alert id however often the device re-sends it.
"""

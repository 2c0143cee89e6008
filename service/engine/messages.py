"""Messages from outside: their variables land in the instance's data."""
from __future__ import annotations

from typing import Any

from SpiffWorkflow.camunda.specs.event_definitions import MessageEventDefinition


class GovflowMessageEventDefinition(MessageEventDefinition):
    """A Camunda message whose payload (a dict of variables) is merged into the catching task's data."""

    def update_internal_data(self, my_task: Any, event: Any) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {"payload": event.payload}
        my_task.internal_data[self.name] = payload

    def update_task_data(self, my_task: Any) -> None:
        event_data = my_task.internal_data.get(self.name) or {}
        variables = event_data.get("payload")
        if isinstance(variables, dict):
            my_task.data.update(variables)
        elif variables is not None and event_data.get("result_var"):
            my_task.data[event_data["result_var"]] = variables

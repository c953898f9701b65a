"""End-user keywords in the templates: ACS's system topic, the SMSReceived subscription to the
function, its dead-letter destination in storage, and the topic's access to it."""

from __future__ import annotations

from blueprints.eventgrid_api import FUNCTION_NAME
from tests.infra import bicep
from tests.infra.bicep import Expr, dig


def test_the_system_topic_is_on_the_acs_resource_with_its_own_identity() -> None:
    (topic,) = bicep.file("modules/sms-events-topic.bicep").resources("Microsoft.EventGrid/systemTopics")
    body = topic.value()
    assert body["location"] == "global"
    assert dig(body, "identity", "type") == "SystemAssigned"
    assert dig(body, "properties", "topicType") == "Microsoft.Communication.CommunicationServices"
    assert dig(body, "properties", "source") == Expr("communicationServiceId")
    main = {m.name: m.value() for m in bicep.file("main.bicep").declarations("module")}
    assert main["smsEventsTopic"]["params"]["communicationServiceId"] == Expr("communication.outputs.id")


def test_the_subscription_delivers_only_sms_received_to_the_function_one_at_a_time() -> None:
    module = bicep.file("modules/sms-events-subscription.bicep")
    (subscription,) = module.resources("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    props = dig(subscription.value(), "properties")
    assert dig(props, "destination", "endpointType") == "AzureFunction"
    assert "/functions/${functionName}" in dig(props, "destination", "properties", "resourceId").text
    assert dig(props, "destination", "properties", "maxEventsPerBatch") == 1
    assert dig(props, "filter", "includedEventTypes") == ["Microsoft.Communication.SMSReceived"]
    params = {p.name: p.value() for p in module.declarations("param")}
    assert params["functionName"] == FUNCTION_NAME  # the blueprint's name: the subscription finds the function
    assert params["eventDeliverySchema"] == "EventGridSchema"


def test_undeliverable_events_are_dead_lettered_to_private_storage_with_the_topic_identity() -> None:
    (subscription,) = bicep.file("modules/sms-events-subscription.bicep").resources(
        "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    dead_letter = dig(subscription.value(), "properties", "deadLetterWithResourceIdentity")
    assert dig(dead_letter, "identity", "type") == "SystemAssigned"
    assert dig(dead_letter, "deadLetterDestination", "endpointType") == "StorageBlob"
    assert dig(dead_letter, "deadLetterDestination", "properties", "blobContainerName") == Expr(
        "deadLetterContainerName")
    storage = bicep.file("modules/storage.bicep")
    containers = [c.value() for c in storage.resources("Microsoft.Storage/storageAccounts/blobServices/containers")]
    assert {"name": Expr("eventDeadLetterContainerName"), "parent": Expr("blobService"),
            "properties": {"publicAccess": "None"}} in [
        {k: c[k] for k in ("name", "parent", "properties")} for c in containers]
    main = bicep.file("main.bicep")
    modules = {m.name: m for m in main.declarations("module")}
    access = modules["deadLetterAccess"].value()["params"]
    assert access["containerName"] == Expr("storage.outputs.eventDeadLetterContainerName")
    assert "smsEventsTopic.outputs.principalId" in bicep.text(modules["deadLetterAccess"].node)
    subscription_module = modules["smsEventsSubscriptionToFunction"]
    assert "if (smsEventsSubscription)" in bicep.text(subscription_module.node)
    assert "deadLetterAccess" in bicep.text(subscription_module.node)  # the role exists before any delivery

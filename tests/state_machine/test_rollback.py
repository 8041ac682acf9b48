"""A blue/green update whose new model fails its health check is rolled back; the old model keeps serving."""

from __future__ import annotations

from state_machine_harness import Pipeline, assert_failed_in


def test_unhealthy_second_model_is_rolled_back_and_the_old_one_keeps_serving(
    pipeline: Pipeline, dataset_zip: bytes
) -> None:
    # GIVEN an endpoint serving the model of a first, successful run
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause
    assert first.output is not None
    old_config, old_job = first.output["deployment"]["endpoint_config"], first.output["training"]["job_name"]
    # AND training code that now packages a model whose every prediction fails
    pipeline.code.behave(model="broken")
    # WHEN a second run trains, passes the rule gate and starts the blue/green update
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the new fleet failed its health check, the endpoint went back to the old config, and the run failed
    # with DeploymentRolledBack naming both configs
    assert second.status == "FAILED"
    assert second.error == "DeploymentRolledBack", second.cause
    assert_failed_in(second, "GetEndpointStatus")
    deployment = second.state_output("DeployEndpoint")["deployment"]
    assert (deployment["action"], deployment["previous_endpoint_config"]) == ("update", old_config)
    new_config = deployment["endpoint_config"]
    assert f"serves {old_config} again instead of {new_config}" in second.cause_message
    assert "weights produce NaN for every input" in second.cause_message
    assert "The previous model kept serving." in second.cause_message
    # AND NotifyFailure published it
    assert second.times_entered("NotifyFailure") == 1
    ((subject, message),) = pipeline.notifications()
    assert subject.startswith("Retraining failed: DeploymentRolledBack (")
    assert f"Endpoint config: {new_config}" in message
    # AND the endpoint is InService on the old config, and the old model still answers
    endpoint = pipeline.endpoint()
    assert endpoint is not None
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", old_config)
    assert pipeline.ask_endpoint()["model"] == old_job

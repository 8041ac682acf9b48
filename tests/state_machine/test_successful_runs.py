"""Successful runs of the real state machine: an upload creates the endpoint, the next one updates it blue/green."""

from __future__ import annotations

import pytest
from state_machine_harness import HAPPY_PATH, TEMPLATE_PARAMETERS, Pipeline


@pytest.mark.parametrize(
    "template_parameters", [TEMPLATE_PARAMETERS | {"MaxTuningJobs": "2"}], ids=["two-trials"], indirect=True
)
def test_first_upload_creates_the_endpoint_that_serves_the_new_model(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN the stack as template.yaml defines it, with no endpoint yet
    assert pipeline.endpoint() is None
    # WHEN a dataset zip lands under incoming/ (the template's EventBridge rule starts the execution)
    run = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN every state ran once in order, the poll loops aside, and the run succeeded
    assert run.status == "SUCCEEDED", run.cause
    assert run.path == HAPPY_PATH
    assert run.lambda_errors() == []
    assert pipeline.notifications() == []
    # AND each state left its small, readable part of the story
    assert run.output is not None
    dataset, best, deployment = run.output["dataset"], run.output["best"], run.output["deployment"]
    assert (dataset["key"], dataset["trigger"], dataset["class_count"]) == ("incoming/dogImages.zip", "s3", 3)
    assert dataset["counts"] == {"train": 6, "valid": 3, "test": 3}
    assert run.output["tuning"]["status"]["trials"]["completed"] == 2, run.output["tuning"]
    # AND PickBestJob chose the trial with the higher validation accuracy (the fake prints lr x epochs)
    objectives = pipeline.trial_objectives(run.output["tuning"]["job_name"])
    assert len(objectives) == 2
    assert best["training_job_name"] == max(objectives, key=objectives.__getitem__)
    assert best["objective"] == {"name": "validation:accuracy", "value": max(objectives.values())}
    assert run.output["rules"]["passed"] is True
    assert set(run.output["rules"]["rules"]) >= {"LossNotDecreasing", "VanishingGradient", "ProfilerReport"}
    assert (deployment["action"], deployment["previous_endpoint_config"]) == ("create", None)
    # AND the endpoint is InService on this run's config, and the model this run trained answers
    endpoint = pipeline.endpoint()
    assert endpoint is not None
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", deployment["endpoint_config"])
    assert run.output["deployment"]["status"]["serving_config"] == deployment["endpoint_config"]
    (training_job,) = pipeline.training_jobs()
    assert training_job == run.output["training"]["job_name"]
    answer = pipeline.ask_endpoint()
    assert answer["model"] == training_job
    assert answer["input"]["content_type"] == "image/jpeg"


def test_second_upload_updates_the_endpoint_blue_green(pipeline: Pipeline, dataset_zip: bytes) -> None:
    # GIVEN an endpoint created by a first run
    first = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    assert first.status == "SUCCEEDED", first.cause
    assert first.output is not None
    old_config = first.output["deployment"]["endpoint_config"]
    # WHEN a new version of the dataset is uploaded
    second = pipeline.upload_and_run("incoming/dogImages.zip", dataset_zip)
    # THEN the second run succeeded through the same path, as an update of the serving endpoint
    assert second.status == "SUCCEEDED", second.cause
    assert second.path == HAPPY_PATH
    assert second.output is not None
    deployment = second.output["deployment"]
    assert deployment["action"] == "update"
    assert deployment["previous_endpoint_config"] == old_config
    assert deployment["endpoint_config"] != old_config
    # AND UpdateEndpoint carried a blue/green DeploymentConfig with the template's rollback alarms
    endpoint = pipeline.endpoint()
    assert endpoint is not None
    blue_green = endpoint["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert blue_green["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert blue_green["TerminationWaitInSeconds"] == 0
    alarms = {a["AlarmName"] for a in endpoint["LastDeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]}
    assert alarms == set(pipeline.stack.functions["DeployEndpointFunction"].environment["ROLLBACK_ALARMS"].split(","))
    # AND the endpoint now serves the new config, and the model of the second run answers
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", deployment["endpoint_config"])
    assert pipeline.ask_endpoint()["model"] == second.output["training"]["job_name"]
    assert len(pipeline.training_jobs()) == 2

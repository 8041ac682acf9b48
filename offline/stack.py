"""template.yaml, brought up in moto: the offline run's AWS side is created from the template itself.

The SAM template is read as data and its intrinsic functions are evaluated here (moto's CloudFormation skips the
SAM resources and ignores DefinitionSubstitutions), so the bucket, the functions with their environment, the state
machine with its substitutions, the EventBridge rules with the template's patterns and the topic are exactly what
``sam deploy`` would create. A drift between the template and the offline run cannot happen: there is no second copy.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"
NO_VALUE = object()
DATA_BUCKET = "DataBucket"  # logical ID of the bucket the pipeline reads and writes


class TemplateError(Exception):
    """The template uses something this evaluator does not understand."""


@dataclass
class Function:
    logical_id: str
    name: str
    arn: str
    handler: str
    runtime: str
    timeout: int
    memory: int
    environment: dict[str, str]
    # EventBridgeRule events: (rule name, pattern); EventBridge invokes the function with the matching event.
    rules: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class StateMachineEvent:
    logical_id: str
    kind: str  # "EventBridgeRule" or "Schedule"
    rule_name: str
    pattern: dict[str, Any] | None = None
    schedule: str | None = None
    enabled: bool = True
    input: str | None = None


@dataclass
class StateMachine:
    logical_id: str
    name: str
    arn: str
    definition: str
    events: list[StateMachineEvent] = field(default_factory=list)


@functools.lru_cache(maxsize=8)
def _parsed_template(text: str) -> dict[str, Any]:
    """The template's YAML, parsed once per text: pure-Python YAML takes 0.1 s for ours (more under coverage), and
    every offline pipeline and state-machine test builds a Template. Callers get a deep copy (1 ms)."""
    parsed: dict[str, Any] = yaml_parse(text)
    return parsed


class Template:
    """A SAM template with its parameters applied and its intrinsic functions evaluable."""

    def __init__(
        self,
        path: Path = TEMPLATE_PATH,
        *,
        parameters: dict[str, str] | None = None,
        stack_name: str = "dog-breed-retraining",
        region: str = "us-east-1",
        account_id: str = ACCOUNT_ID,
    ) -> None:
        self.path = path
        self.body: dict[str, Any] = copy.deepcopy(_parsed_template(path.read_text()))
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        declared = self.body.get("Parameters", {})
        unknown = set(parameters or {}) - set(declared)
        if unknown:
            raise TemplateError(f"unknown template parameters: {sorted(unknown)}")
        self.parameters: dict[str, Any] = {}
        for name, spec in declared.items():
            value = (parameters or {}).get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no default; pass a value")
            allowed = spec.get("AllowedValues")
            if allowed and str(value) not in [str(v) for v in allowed]:
                raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
            self.parameters[name] = str(value)
        for rule_name, rule in self.body.get("Rules", {}).items():
            # As CloudFormation before it creates anything; a RuleCondition limits where the rule applies.
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule["Assertions"]:
                if not self.resolve(assertion["Assert"]):
                    raise TemplateError(f"rule {rule_name}: {assertion['AssertDescription']}")
        self.conditions: dict[str, bool] = {}
        for name in self.body.get("Conditions", {}):
            self._condition(name)
        self.resources: dict[str, dict[str, Any]] = {
            logical_id: resource
            for logical_id, resource in self.body["Resources"].items()
            if "Condition" not in resource or self._condition(resource["Condition"])
        }

    # -- intrinsic functions -------------------------------------------------------------------------------------

    def _condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.body["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Condition":
                return self._condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _function(self, name: str, arg: Any) -> Any:
        if name == "GetAtt":
            logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.attribute(logical_id, attribute)
        if name == "Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self._sub_variable(m.group(1), variables)), text)
        if name == "If":
            condition, when_true, when_false = arg
            return self.resolve(when_true if self._condition(condition) else when_false)
        if name == "Equals":
            left, right = self.resolve(arg)
            return str(left) == str(right)
        if name == "Not":
            return not self.resolve(arg[0])
        if name == "And":
            return all(self.resolve(arg))
        if name == "Or":
            return any(self.resolve(arg))
        if name == "FindInMap":
            mapping, top, second = self.resolve(arg)
            return self.body["Mappings"][mapping][top][second]
        if name == "Join":
            separator, items = arg
            return separator.join(str(i) for i in self.resolve(items))
        if name == "Split":
            separator, text = self.resolve(arg)
            return text.split(separator)
        if name == "Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if name == "Contains":  # a Rules function: whether the list holds the value
            items, item = self.resolve(arg)
            return item in items
        if name == "ToJsonString":
            return json.dumps(self.resolve(arg))
        raise TemplateError(f"Fn::{name} is not supported by the offline evaluator")

    def _sub_variable(self, name: str, variables: dict[str, Any]) -> Any:
        if name in variables:
            return variables[name]
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return self.attribute(logical_id, attribute)
        return self._ref(name)

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/offline",
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            if self.body["Parameters"][name].get("Type") == "CommaDelimitedList":
                return self.parameters[name].split(",")  # as CloudFormation: "" is [""]
            return self.parameters[name]
        return self.physical_id(name)

    # -- resources ------------------------------------------------------------------------------------------------

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id].get("Properties", {})

    def _type(self, logical_id: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"{logical_id} is not a resource of the template (or its condition is false)")
        return str(self.resources[logical_id]["Type"])

    def _name(self, logical_id: str, name_property: str, lower: bool = False) -> str:
        explicit = self.properties(logical_id).get(name_property)
        name = self.resolve(explicit) if explicit is not None else f"{self.stack_name}-{logical_id}"
        return str(name).lower() if lower else str(name)

    def physical_id(self, logical_id: str) -> str:
        kind = self._type(logical_id)
        if kind == "AWS::S3::Bucket":
            return self._name(logical_id, "BucketName", lower=True)
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            return self._name(logical_id, "FunctionName")
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{self.region}:{self.account_id}:{self._name(logical_id, 'TopicName')}"
        if kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            name = self._name(logical_id, "Name")
            return f"arn:aws:states:{self.region}:{self.account_id}:stateMachine:{name}"
        if kind == "AWS::IAM::Role":
            return self._name(logical_id, "RoleName")
        if kind == "AWS::CloudWatch::Alarm":
            return self._name(logical_id, "AlarmName")
        if kind == "AWS::Logs::LogGroup":
            return self._name(logical_id, "LogGroupName")
        if kind == "AWS::DynamoDB::Table":
            return self._name(logical_id, "TableName")
        return f"{self.stack_name}-{logical_id}"

    def attribute(self, logical_id: str, attribute: str) -> str:
        kind = self._type(logical_id)
        physical = self.physical_id(logical_id)
        if attribute == "Arn":
            arns = {
                "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
                "AWS::Serverless::Function": f"arn:aws:lambda:{self.region}:{self.account_id}:function:{physical}",
                "AWS::Lambda::Function": f"arn:aws:lambda:{self.region}:{self.account_id}:function:{physical}",
                "AWS::IAM::Role": f"arn:aws:iam::{self.account_id}:role/{physical}",
                "AWS::CloudWatch::Alarm": f"arn:aws:cloudwatch:{self.region}:{self.account_id}:alarm:{physical}",
                "AWS::Logs::LogGroup": f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{physical}:*",
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{physical}",
                "AWS::SQS::Queue": f"arn:aws:sqs:{self.region}:{self.account_id}:{physical}",
            }
            if kind in arns:
                return arns[kind]
            if physical.startswith("arn:"):
                return physical
        if attribute in ("Name", "TopicName", "StateMachineName"):
            return physical.rsplit(":", 1)[-1]
        raise TemplateError(f"GetAtt {logical_id}.{attribute} ({kind}) is not supported offline")

    def functions(self) -> dict[str, Function]:
        globals_ = self.body.get("Globals", {}).get("Function", {})
        global_env = self.resolve(globals_.get("Environment", {}).get("Variables", {}))
        result = {}
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            props = self.resolve(resource.get("Properties", {}))
            env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            name = self.physical_id(logical_id)
            result[logical_id] = Function(
                logical_id=logical_id,
                name=name,
                arn=self.attribute(logical_id, "Arn"),
                handler=props.get("Handler", self.resolve(globals_.get("Handler"))),
                runtime=props.get("Runtime", self.resolve(globals_.get("Runtime", "python3.12"))),
                timeout=int(props.get("Timeout", self.resolve(globals_.get("Timeout", 3)))),
                memory=int(props.get("MemorySize", self.resolve(globals_.get("MemorySize", 128)))),
                environment={k: str(v) for k, v in env.items()},
                rules=[
                    (f"{self.stack_name}-{logical_id}{event_id}", event["Properties"]["Pattern"])
                    for event_id, event in props.get("Events", {}).items()
                    if event["Type"] == "EventBridgeRule"
                ],
            )
        if unsupported := [
            f"{logical_id}.{event_id} ({event['Type']})"
            for logical_id, resource in self.resources.items()
            if resource["Type"] == "AWS::Serverless::Function"
            for event_id, event in resource.get("Properties", {}).get("Events", {}).items()
            if event["Type"] != "EventBridgeRule"
        ]:
            raise TemplateError(f"function event types not supported offline: {unsupported}")
        return result

    def state_machine(self) -> StateMachine:
        (logical_id,) = [k for k, r in self.resources.items() if r["Type"] == "AWS::Serverless::StateMachine"]
        props = self.properties(logical_id)
        definition = (self.path.parent / props["DefinitionUri"]).read_text()
        substitutions = self.resolve(props.get("DefinitionSubstitutions", {}))
        missing = set(re.findall(r"\$\{(\w+)\}", definition)) - set(substitutions)
        if missing:
            raise TemplateError(f"DefinitionSubstitutions lacks {sorted(missing)}")
        for key, value in substitutions.items():
            definition = definition.replace(f"${{{key}}}", str(value))
        arn = self.physical_id(logical_id)
        events = []
        for event_id, event in props.get("Events", {}).items():
            spec = self.resolve(event.get("Properties", {}))
            rule_name = spec.get("RuleName") or spec.get("Name") or f"{self.stack_name}-{logical_id}{event_id}"
            if event["Type"] == "EventBridgeRule":
                events.append(
                    StateMachineEvent(
                        event_id, "EventBridgeRule", rule_name, pattern=spec["Pattern"], input=spec.get("Input")
                    )
                )
            elif event["Type"] in ("Schedule", "ScheduleV2"):
                enabled = spec.get("Enabled", spec.get("State", "ENABLED") != "DISABLED")
                events.append(
                    StateMachineEvent(
                        event_id,
                        "Schedule",
                        rule_name,
                        schedule=spec.get("Schedule") or spec.get("ScheduleExpression"),
                        enabled=str(enabled).lower() not in ("false", "disabled"),
                        input=spec.get("Input"),
                    )
                )
            else:
                raise TemplateError(f"state machine event type {event['Type']} is not supported offline")
        return StateMachine(logical_id, arn.rsplit(":", 1)[-1], arn, definition, events)

    def of_type(self, kind: str) -> list[str]:
        return [logical_id for logical_id, r in self.resources.items() if r["Type"] == kind]

    def output(self, name: str) -> Any:
        return self.resolve(self.body["Outputs"][name]["Value"])


@dataclass
class DeployedStack:
    template: Template
    bucket: str
    topic_arn: str
    state_machine_arn: str
    functions: dict[str, Function]
    rules: dict[str, StateMachineEvent]
    tables: dict[str, str] = field(default_factory=dict)


def _placeholder_code() -> bytes:
    # moto stores the code but never runs it: the in-process Lambda patch imports the Handler from this checkout.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "offline: handlers run in-process from the repository checkout\n")
    return buffer.getvalue()


# The table properties moto's CreateTable takes as they are; TTL and point-in-time recovery are separate calls.
_CREATE_TABLE_PROPERTIES = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "ProvisionedThroughput",
    "StreamSpecification",
    "SSESpecification",
)


def create_table(template: Template, logical_id: str) -> str:
    """A DynamoDB table from the template's own properties (key schema, billing, TTL, point-in-time recovery)."""
    import boto3

    dynamodb = boto3.client("dynamodb", region_name=template.region)
    props = template.resolve(template.properties(logical_id))
    name = template.physical_id(logical_id)
    request = {key: props[key] for key in _CREATE_TABLE_PROPERTIES if key in props}
    dynamodb.create_table(TableName=name, **request)
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
        )
    recovery = props.get("PointInTimeRecoverySpecification")
    if recovery:
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={
                "PointInTimeRecoveryEnabled": bool(recovery.get("PointInTimeRecoveryEnabled", False))
            },
        )
    return name


def deploy_to_moto(template: Template) -> DeployedStack:
    """Create the template's resources in the active moto mock and return what the runner needs."""
    import boto3

    region = template.region
    s3 = boto3.client("s3", region_name=region)
    iam = boto3.client("iam", region_name=region)
    lambda_ = boto3.client("lambda", region_name=region)
    sfn = boto3.client("stepfunctions", region_name=region)
    events = boto3.client("events", region_name=region)
    sns = boto3.client("sns", region_name=region)

    bucket = template.physical_id(DATA_BUCKET)  # the access-log bucket has no part in an offline run
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})

    tables = {table_id: create_table(template, table_id) for table_id in template.of_type("AWS::DynamoDB::Table")}

    topic_arn = ""
    for topic_id in template.of_type("AWS::SNS::Topic"):
        topic_arn = sns.create_topic(Name=template.attribute(topic_id, "TopicName"))["TopicArn"]

    assume = json.dumps({"Version": "2012-10-17", "Statement": []})
    for role_id in template.of_type("AWS::IAM::Role"):
        iam.create_role(RoleName=template.physical_id(role_id), AssumeRolePolicyDocument=assume)
    lambda_role = iam.create_role(RoleName=f"{template.stack_name}-offline-lambda", AssumeRolePolicyDocument=assume)

    functions = template.functions()
    for function in functions.values():
        lambda_.create_function(
            FunctionName=function.name,
            Runtime=function.runtime,
            Role=lambda_role["Role"]["Arn"],
            Handler=function.handler,
            Code={"ZipFile": _placeholder_code()},
            Timeout=function.timeout,
            MemorySize=function.memory,
            Environment={"Variables": function.environment},
        )

    machine = template.state_machine()
    sfn_role = iam.create_role(RoleName=f"{template.stack_name}-offline-states", AssumeRolePolicyDocument=assume)
    state_machine_arn = sfn.create_state_machine(
        name=machine.name, definition=machine.definition, roleArn=sfn_role["Role"]["Arn"], type="STANDARD"
    )["stateMachineArn"]

    rules = {}
    for event in machine.events:
        if event.kind == "EventBridgeRule":
            events.put_rule(Name=event.rule_name, EventPattern=json.dumps(event.pattern), State="ENABLED")
        else:
            events.put_rule(
                Name=event.rule_name,
                ScheduleExpression=str(event.schedule),
                State="ENABLED" if event.enabled else "DISABLED",
            )
        target: dict[str, Any] = {"Id": "StateMachine", "Arn": state_machine_arn, "RoleArn": sfn_role["Role"]["Arn"]}
        if event.input is not None:
            target["Input"] = event.input if isinstance(event.input, str) else json.dumps(event.input)
        events.put_targets(Rule=event.rule_name, Targets=[target])
        rules[event.logical_id] = event

    for function in functions.values():
        for rule_name, pattern in function.rules:
            events.put_rule(Name=rule_name, EventPattern=json.dumps(pattern), State="ENABLED")
            events.put_targets(Rule=rule_name, Targets=[{"Id": function.logical_id, "Arn": function.arn}])

    return DeployedStack(template, bucket, topic_arn, state_machine_arn, functions, rules, tables)

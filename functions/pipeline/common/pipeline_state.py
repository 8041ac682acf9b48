"""The pipeline table: the one-run-at-a-time lease, the waiting trigger, and which datasets were trained.

One DynamoDB table (template.yaml ``PipelineTable``, key ``pk``), four kinds of item:

``LEASE``
    Who runs now: ``holder`` (execution ARN), ``acquired_at``, ``expires_at`` (epoch seconds). Taken with a
    conditional write (absent, expired, or already ours); a holder whose execution is no longer RUNNING is taken
    over at once. ``handed_over_by`` is set when the previous holder passed the lease to the run it started.
``PENDING``
    The one trigger waiting for the running run (coalesced: a write only replaces a trigger that is not newer).
    ``recency`` orders triggers: the trigger's own time to the second (S3 and EventBridge events carry no more),
    then when it was queued, so two triggers of the same second keep their order of arrival.
``DATASET#<bucket>/<key>#<version id>#<etag>``
    A dataset identity that was trained (by which run, with which outcome, when).
``LAST_TRAINED``
    The newest of those, for the scheduled run's "is there anything newer" check.
``APPROVAL#<model package ARN>``
    A run waiting for a person's decision on that package (ApprovalMode manual): the Step Functions task token,
    the execution, the deadline. Written by RequestApproval, taken (deleted, once) by ResumeApproval, so a
    duplicate registry event finds nothing to resume.

Leases and pending triggers carry ``ttl`` (the table's TTL attribute) so DynamoDB removes abandoned ones; the
conditions never rely on TTL deletion, which may lag by days. Every DynamoDB error code is translated here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

LEASE_KEY = "LEASE"
PENDING_KEY = "PENDING"
LAST_TRAINED_KEY = "LAST_TRAINED"
APPROVAL_PREFIX = "APPROVAL#"
# The table's TimeToLiveSpecification.AttributeName in template.yaml.
TTL_ATTRIBUTE = "ttl"
# Removed by DynamoDB's TTL a day after the lease expired / a week after the trigger was queued.
LEASE_TTL_GRACE_SECONDS = 24 * 3600
PENDING_TTL_SECONDS = 7 * 24 * 3600

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _SERIALIZER.serialize(value) for key, value in values.items() if value is not None}


def _from_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if not item:
        return None
    return {key: _plain(_DESERIALIZER.deserialize(value)) for key, value in item.items()}


def _plain(value: Any) -> Any:
    # DynamoDB numbers come back as Decimal; every number we store is a whole number of seconds.
    if hasattr(value, "as_integer_ratio") and not isinstance(value, (int, float)):
        return int(value)
    return value


def _values(**values: Any) -> dict[str, Any]:
    return {f":{name}": _SERIALIZER.serialize(value) for name, value in values.items()}


def _is_condition_failure(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code", "")) in (
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    )


def iso(moment: datetime) -> str:
    """UTC, fixed width, so that ISO strings order as the moments do (DynamoDB compares strings)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Lease:
    holder: str
    acquired_at: str
    expires_at: int
    handed_over_by: str | None = None
    successor_input: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Lease:
        return cls(
            holder=str(item["holder"]),
            acquired_at=str(item.get("acquired_at", "")),
            expires_at=int(item.get("expires_at", 0)),
            handed_over_by=item.get("handed_over_by"),
            successor_input=item.get("successor_input"),
        )


@dataclass(frozen=True)
class PendingTrigger:
    """A trigger that arrived while a run held the lease."""

    trigger: dict[str, Any]
    recency: str
    queued_by: str
    queued_at: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> PendingTrigger:
        return cls(
            trigger=json.loads(item["trigger"]),
            recency=str(item["recency"]),
            queued_by=str(item["queued_by"]),
            queued_at=str(item["queued_at"]),
        )


@dataclass(frozen=True)
class DatasetIdentity:
    bucket: str
    key: str
    version_id: str | None
    etag: str | None

    @property
    def item_key(self) -> str:
        return f"DATASET#{self.bucket}/{self.key}#{self.version_id or '-'}#{(self.etag or '-').strip(chr(34))}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def describe(self) -> str:
        parts = [f"version {self.version_id}" if self.version_id else None, f"ETag {self.etag}" if self.etag else None]
        detail = ", ".join(p for p in parts if p)
        return f"{self.uri} ({detail})" if detail else self.uri

    def as_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id, "etag": self.etag}

    @classmethod
    def of(cls, dataset: dict[str, Any]) -> DatasetIdentity:
        return cls(
            bucket=str(dataset["bucket"]),
            key=str(dataset["key"]),
            version_id=dataset.get("version_id"),
            etag=dataset.get("etag"),
        )


class PipelineTable:
    """The table's items, through a boto3 DynamoDB client (moto in tests)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.name = table_name

    # -- lease --------------------------------------------------------------------------------------------------

    def get_lease(self) -> Lease | None:
        item = self._get(LEASE_KEY)
        return Lease.from_item(item) if item else None

    def try_acquire(self, holder: str, now: datetime, lease_seconds: int) -> tuple[bool, Lease | None]:
        """Take the lease if it is free, expired or already ours. Returns (acquired, the lease before)."""
        expires = int(now.timestamp()) + lease_seconds
        try:
            response = self.client.put_item(
                TableName=self.name,
                Item=self._lease_item(holder, now, expires),
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now OR holder = :me",
                ExpressionAttributeValues=_values(now=int(now.timestamp()), me=holder),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            old = _from_item(error.response.get("Item"))
            return False, Lease.from_item(old) if old else self.get_lease()
        old = _from_item(response.get("Attributes"))
        return True, Lease.from_item(old) if old else None

    def take_over(self, dead: Lease, holder: str, now: datetime, lease_seconds: int) -> bool:
        """Replace a dead holder's lease; only one of several racing callers succeeds."""
        try:
            self.client.put_item(
                TableName=self.name,
                Item=self._lease_item(holder, now, int(now.timestamp()) + lease_seconds),
                ConditionExpression="holder = :dead AND acquired_at = :acquired",
                ExpressionAttributeValues=_values(dead=dead.holder, acquired=dead.acquired_at),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def release(self, holder: str) -> bool:
        """Delete our lease, but only while no trigger waits (else the caller must hand the lease over)."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.name,
                            "Key": _to_item({"pk": LEASE_KEY}),
                            "ConditionExpression": "holder = :me",
                            "ExpressionAttributeValues": _values(me=holder),
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": self.name,
                            "Key": _to_item({"pk": PENDING_KEY}),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def hand_over(
        self, holder: str, pending: PendingTrigger, successor: str, now: datetime, lease_seconds: int
    ) -> bool:
        """In one transaction: take the waiting trigger and pass our lease to the run that will run it."""
        expires = int(now.timestamp()) + lease_seconds
        lease = self._lease_item(successor, now, expires) | _to_item(
            {"handed_over_by": holder, "successor_input": json.dumps(pending.trigger, sort_keys=True)}
        )
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.name,
                            "Item": lease,
                            "ConditionExpression": "holder = :me",
                            "ExpressionAttributeValues": _values(me=holder),
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self.name,
                            "Key": _to_item({"pk": PENDING_KEY}),
                            "ConditionExpression": "queued_by = :queued_by AND recency = :recency",
                            "ExpressionAttributeValues": _values(queued_by=pending.queued_by, recency=pending.recency),
                        }
                    },
                ]
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def _lease_item(self, holder: str, now: datetime, expires: int) -> dict[str, Any]:
        return _to_item(
            {
                "pk": LEASE_KEY,
                "holder": holder,
                "acquired_at": iso(now),
                "expires_at": expires,
                TTL_ATTRIBUTE: expires + LEASE_TTL_GRACE_SECONDS,
            }
        )

    def extend_lease(self, holder: str, expires: int) -> bool:
        """Keep our lease until ``expires`` (a run waiting for approval); False when it is not ours."""
        try:
            self.client.update_item(
                TableName=self.name,
                Key=_to_item({"pk": LEASE_KEY}),
                UpdateExpression="SET expires_at = :expires, #ttl = :ttl",
                ConditionExpression="holder = :me",
                ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues=_values(expires=expires, ttl=expires + LEASE_TTL_GRACE_SECONDS, me=holder),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    # -- a run waiting for approval ---------------------------------------------------------------------------------

    def await_approval(self, package_arn: str, task_token: str, execution: str, deadline: int) -> None:
        self.client.put_item(
            TableName=self.name,
            Item=_to_item(
                {
                    "pk": f"{APPROVAL_PREFIX}{package_arn}",
                    "task_token": task_token,
                    "execution": execution,
                    "deadline": deadline,
                    TTL_ATTRIBUTE: deadline + LEASE_TTL_GRACE_SECONDS,
                }
            ),
        )

    def take_approval(self, package_arn: str) -> dict[str, Any] | None:
        """The waiting run's entry, removed in the same call: of two events for one decision, one gets it."""
        response = self.client.delete_item(
            TableName=self.name, Key=_to_item({"pk": f"{APPROVAL_PREFIX}{package_arn}"}), ReturnValues="ALL_OLD"
        )
        return _from_item(response.get("Attributes"))

    # -- the waiting trigger --------------------------------------------------------------------------------------

    def get_pending(self) -> PendingTrigger | None:
        item = self._get(PENDING_KEY)
        return PendingTrigger.from_item(item) if item else None

    def queue(self, trigger: dict[str, Any], recency: str, queued_by: str, now: datetime) -> bool:
        """Record the trigger as the waiting one unless a newer one already waits."""
        try:
            self.client.put_item(
                TableName=self.name,
                Item=_to_item(
                    {
                        "pk": PENDING_KEY,
                        "trigger": json.dumps(trigger, sort_keys=True),
                        "recency": recency,
                        "queued_by": queued_by,
                        "queued_at": iso(now),
                        TTL_ATTRIBUTE: int(now.timestamp()) + PENDING_TTL_SECONDS,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR recency <= :recency",
                ExpressionAttributeValues=_values(recency=recency),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def drop_pending(self, queued_by: str) -> bool:
        """Delete the waiting trigger if it is still the one ``queued_by`` recorded."""
        try:
            self.client.delete_item(
                TableName=self.name,
                Key=_to_item({"pk": PENDING_KEY}),
                ConditionExpression="queued_by = :queued_by",
                ExpressionAttributeValues=_values(queued_by=queued_by),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def drop_superseded(self, recency: str) -> PendingTrigger | None:
        """Delete the waiting trigger if it is not newer than ``recency``; returns what was deleted."""
        try:
            response = self.client.delete_item(
                TableName=self.name,
                Key=_to_item({"pk": PENDING_KEY}),
                ConditionExpression="recency <= :recency",
                ExpressionAttributeValues=_values(recency=recency),
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        old = _from_item(response.get("Attributes"))
        return PendingTrigger.from_item(old) if old else None

    # -- trained datasets -----------------------------------------------------------------------------------------

    def trained(self, identity: DatasetIdentity) -> dict[str, Any] | None:
        return self._get(identity.item_key)

    def last_trained(self) -> dict[str, Any] | None:
        return self._get(LAST_TRAINED_KEY)

    def mark_trained(self, identity: DatasetIdentity, run: str, outcome: str, now: datetime) -> None:
        record = {
            "dataset": json.dumps(identity.as_dict(), sort_keys=True),
            "uri": identity.uri,
            "run": run,
            "outcome": outcome,
            "trained_at": iso(now),
        }
        self.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.name, "Item": _to_item({"pk": identity.item_key, **record})}},
                {"Put": {"TableName": self.name, "Item": _to_item({"pk": LAST_TRAINED_KEY, **record})}},
            ]
        )

    def _get(self, key: str) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.name, Key=_to_item({"pk": key}), ConsistentRead=True)
        return _from_item(response.get("Item"))

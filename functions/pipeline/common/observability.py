"""Powertools Logger, Tracer and Metrics shared by every handler (one service, one namespace)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="DogBreedRetraining")

"""The offline run: the real pipeline on this machine with moto, in-process handlers and local SageMaker jobs."""

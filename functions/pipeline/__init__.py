"""Lambda handlers of the dog-breed retraining pipeline: one module per Step Functions state."""

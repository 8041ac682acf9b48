"""Tuning trials: a short training (4 epochs) whose per-epoch valid_accuracy is the tuning objective.

SageMaker runs ``python hpo.py --batch_size 64 --learning_rate 0.01 --epochs 4 ...``; everything else (data,
model, loop, artifact) is shared with train_model.py through training_job.py. No local debug trial by default:
tuning jobs take no Debugger configuration, and a trial per tuning candidate would only cost disk.
"""

from __future__ import annotations

import sys

from training_job import main

if __name__ == "__main__":
    main(sys.argv[1:], job="hpo", epochs=4, debug_dir_default="", evaluate_debug_rules=False)

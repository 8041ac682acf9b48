"""The final training (10 epochs by default) with the smdebug hook and our Debugger rule checks.

SageMaker runs ``python train_model.py --batch_size 64 --learning_rate 0.01 ...`` with the best tuning job's
hyperparameters. With a Debugger config in the job, the hook follows it; without one, a small local trial
(losses, and scalar summaries of gradients, weights and ReLU inputs) goes to ``SM_OUTPUT_DATA_DIR/debug-trial``.
Either way our rule equivalents (debug_rules.py) run on it at the end and ``rule_report.json`` in the output data
records their results, so the pipeline's gate has evidence when SageMaker Debugger is off for the account.
The artifact also carries the int8 check (``--int8_check``, on here): what a CPU endpoint may serve. Then the saved
model, and the serving one when the job has a ``champion`` channel, score the test split as the endpoint will serve
them (``--evaluation``, on here): ``evaluation.json`` in the output data, the paired figures the gate decides on.
"""

from __future__ import annotations

import sys

from training_job import main

DEBUG_DIR_DEFAULT = "{output_data_dir}/debug-trial"

if __name__ == "__main__":
    main(
        sys.argv[1:],
        job="train_model",
        epochs=10,
        debug_dir_default=DEBUG_DIR_DEFAULT,
        evaluate_debug_rules=True,
        int8_check_default=True,
        evaluation_default=True,
    )
